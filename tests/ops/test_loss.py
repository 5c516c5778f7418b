import warnings

import numpy as np
import pytest

import gpubp as gp
from gpubp.backends import NumpyBackend
from gpubp.tensor import _wrap
from tests.opcheck import OpCase, normal, op_tests
from tests.ops.test_activation import np_log_softmax

LABELS = np.array([0, 3, 1, 3, 2])


def np_cross_entropy(logits: np.ndarray) -> np.ndarray:
    return -np_log_softmax(logits)[np.arange(len(LABELS)), LABELS].mean()


def np_bce(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    s = 0.5 * (1 + np.tanh(0.5 * x))
    return -(t * np.log(s) + (1 - t) * np.log(1 - s)).mean()


def targets(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 1, (4, 3))


CASES = [
    OpCase("cross_entropy", lambda x: gp.cross_entropy(x, LABELS), np_cross_entropy, [normal(5, 4)]),
    OpCase(
        "cross_entropy_sum",
        lambda x: gp.cross_entropy(x, LABELS, reduction="sum"),
        lambda x: np_cross_entropy(x) * len(LABELS),
        [normal(5, 4)],
    ),
    OpCase("mse", gp.mse_loss, lambda a, b: ((a - b) ** 2).mean(), [normal(4, 3), normal(4, 3)]),
    OpCase(
        "mse_sum",
        lambda a, b: gp.mse_loss(a, b, "sum"),
        lambda a, b: ((a - b) ** 2).sum(),
        [normal(4, 3), normal(4, 3)],
    ),
    OpCase("bce_with_logits", gp.binary_cross_entropy_with_logits, np_bce, [normal(4, 3), targets]),
]


test_forward, test_gradient, test_against_torch = op_tests(CASES)


def test_cross_entropy_gradient_is_softmax_minus_onehot_over_n() -> None:
    logits = gp.randn(5, 4, requires_grad=True)
    gp.cross_entropy(logits, LABELS).backward()
    probs = np.exp(np_log_softmax(logits.numpy().astype(np.float64)))
    expected = (probs - np.eye(4)[LABELS]) / 5
    np.testing.assert_allclose(logits.grad.numpy(), expected, rtol=1e-5, atol=1e-7)


def test_cross_entropy_labels_as_tensor() -> None:
    logits = gp.randn(5, 4)
    a = gp.cross_entropy(logits, LABELS).item()
    b = gp.cross_entropy(logits, gp.tensor(LABELS)).item()
    assert a == b


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: gp.cross_entropy(x, [0, 1]),
        lambda x: gp.binary_cross_entropy_with_logits(x, np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=x.dtype)),
    ],
    ids=["cross_entropy", "bce"],
)
def test_stable_for_huge_logits(fn, dtype: np.dtype, device: str) -> None:
    x = gp.tensor([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 1000.0]], dtype=dtype, device=device, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = fn(x)
        loss.backward()
    assert np.isfinite(loss.item()) and np.isfinite(x.grad.numpy()).all()
    assert loss.dtype == dtype and x.grad.dtype == dtype


# -- labels and targets beside the logits: lists and NumPy arrays are copied to the
# logits' device, arrays already there are used as is, Tensors elsewhere are an error.
class FakeDeviceBackend(NumpyBackend):
    """A second backend object: tensors wrapped with it are on another device."""

    device = "fake:0"


FAKE = FakeDeviceBackend()


@pytest.mark.parametrize(
    "make",
    [lambda a: a.tolist(), lambda a: a, lambda a: a.astype(np.int32)],
    ids=["list", "numpy", "numpy_int32"],
)
def test_labels_as_list_or_numpy_array_are_copied_to_the_logits_device(make, device: str) -> None:
    logits = gp.randn(5, 4, device=device, requires_grad=True)
    loss = gp.cross_entropy(logits, make(LABELS))
    loss.backward()
    want = gp.cross_entropy(logits.detach(), gp.tensor(LABELS, device=device))
    assert loss.device == logits.device and loss.item() == want.item()
    assert logits.grad.device == logits.device


@pytest.mark.parametrize("loss", [gp.mse_loss, gp.binary_cross_entropy_with_logits], ids=["mse", "bce"])
def test_targets_as_list_or_numpy_array_are_copied_to_the_input_device(loss, dtype: np.dtype, device: str) -> None:
    x = gp.randn(2, 3, dtype=dtype, device=device, requires_grad=True)
    target = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=dtype)
    want = loss(x, gp.tensor(target, device=device)).item()
    assert loss(x, target).item() == want
    assert loss(x, target.tolist()).item() == want  # a list takes the input's dtype
    loss(x, target).backward()
    assert x.grad.device == x.device
    other = np.float64 if dtype == np.float32 else np.float32
    with pytest.raises(TypeError, match="dtype mismatch"):  # a NumPy array keeps its own dtype
        loss(x, target.astype(other))


def test_labels_and_targets_on_the_logits_device_are_used_there() -> None:
    logits = _wrap(np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32), FAKE)
    assert gp.cross_entropy(logits, [0, 2]).device == "fake:0"
    assert gp.cross_entropy(logits, np.array([0, 2])).device == "fake:0"
    target = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    assert gp.binary_cross_entropy_with_logits(logits, target).device == "fake:0"
    assert gp.mse_loss(logits, target.tolist()).device == "fake:0"


def test_labels_on_another_device_are_an_error_naming_both() -> None:
    logits = gp.randn(2, 3)
    message = r"cross_entropy: labels are on fake:0 but the logits are on cpu; move them with \.to\('cpu'\)"
    with pytest.raises(ValueError, match=message):
        gp.cross_entropy(logits, _wrap(np.array([0, 1]), FAKE))
    with pytest.raises(
        ValueError, match=r"labels are on cpu but the logits are on fake:0; move them with \.to\('fake:0'\)"
    ):
        gp.cross_entropy(_wrap(logits.data, FAKE), gp.tensor([0, 1]))


@pytest.mark.parametrize("loss", [gp.mse_loss, gp.binary_cross_entropy_with_logits], ids=["mse", "bce"])
def test_target_on_another_device_is_an_error_naming_both(loss) -> None:
    x = gp.randn(2, 3)
    name = loss.__name__
    with pytest.raises(
        ValueError, match=rf"{name}: target is on fake:0 but the input is on cpu; move it with \.to\('cpu'\)"
    ):
        loss(x, _wrap(np.zeros((2, 3), dtype=np.float32), FAKE))
    with pytest.raises(ValueError, match=rf"{name}: target is on cpu but the input is on fake:0"):
        loss(_wrap(x.data, FAKE), gp.zeros(2, 3))


@pytest.mark.parametrize(
    ("labels", "error", "message"),
    [
        ([0, 4], IndexError, r"label 4 is out of range for 4 classes"),
        ([0, -1], IndexError, r"label -1 is out of range"),
        ([0, 1, 2], ValueError, r"labels have shape \(3,\) but the logits have a batch of 2"),
        ([0.0, 1.0], TypeError, "labels must be integers"),
    ],
)
def test_bad_labels(labels, error, message) -> None:
    with pytest.raises(error, match=message):
        gp.cross_entropy(gp.randn(2, 4), np.array(labels))


def test_cross_entropy_needs_2d_logits() -> None:
    with pytest.raises(ValueError, match=r"logits must be 2-D"):
        gp.cross_entropy(gp.randn(4), [1])


def test_mse_shape_mismatch() -> None:
    with pytest.raises(ValueError, match=r"target shape \(3,\) must equal input shape \(3, 1\)"):
        gp.mse_loss(gp.randn(3, 1), gp.randn(3))
