import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import gpubp as gp
from gpubp.backends import NumpyBackend
from gpubp.ops.loss import ClassCrossEntropy, CrossEntropy, nll_loss
from gpubp.tensor import _wrap
from tests.opcheck import OpCase, normal, op_tests
from tests.ops.test_activation import np_log_softmax

LABELS = np.array([0, 3, 1, 3, 2])
IGNORED = np.array([0, -100, 1, 3, -100])  # rows 1 and 4 left out
WEIGHT = [0.5, 2.0, 1.0, 3.0]  # a list: it takes the logits' dtype
LABELS_4D = np.random.default_rng(1).integers(0, 4, (2, 3, 2))
LABELS_4D[0, 1, 1] = LABELS_4D[1, 2, 0] = -100


def np_cross_entropy(x, labels=None, probs=None, weight=None, ignore_index=None, eps=0.0, reduction="mean"):
    """PyTorch's cross_entropy in NumPy, along the class axis (1, or 0 of a 1-D input)."""
    axis = 0 if x.ndim == 1 else 1
    classes = x.shape[axis]
    logp = np_log_softmax(x, axis)
    w = np.ones(classes) if weight is None else np.asarray(weight, dtype=np.float64)
    w_along = w.reshape([classes if i == axis else 1 for i in range(x.ndim)])
    if probs is not None:
        t = (1 - eps) * probs + eps / classes
        rows = -(w_along * t * logp).sum(axis)
        counted = np.float64(x.size // classes)
    else:
        keep = np.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
        safe = np.where(keep, labels, 0)
        picked = np.take_along_axis(logp, np.expand_dims(safe, axis), axis).squeeze(axis)
        rows = (1 - eps) * -w[safe] * picked - eps / classes * (w_along * logp).sum(axis)
        rows = np.where(keep, rows, 0.0)
        counted = np.where(keep, w[safe], 0.0).sum()
    return {"none": rows, "sum": rows.sum(), "mean": rows.sum() / counted}[reduction]


def np_bce(x, t, weight=1.0, pos_weight=1.0, reduction="mean"):
    s = 0.5 * (1 + np.tanh(0.5 * x))
    losses = -weight * (pos_weight * t * np.log(s) + (1 - t) * np.log(1 - s))
    return {"none": losses, "sum": losses.sum(), "mean": losses.mean()}[reduction]


def probabilities(*shape: int, axis: int = 1) -> Callable[[np.random.Generator], np.ndarray]:
    def make(rng: np.random.Generator) -> np.ndarray:
        p = rng.uniform(0.1, 1.0, shape)
        return p / p.sum(axis=axis, keepdims=True)

    return make


def targets(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 1, (4, 3))


def torch_twin(name: str, *constants: Any, **kwargs: Any) -> Callable[..., Any]:
    """torch.nn.functional's ``name`` applied to the case's inputs followed by
    ``constants`` (NumPy integer arrays become long tensors, lists float64 ones),
    imported when the cross-check runs (it skips first without PyTorch)."""

    def op(*tensors: Any) -> Any:
        import torch

        def convert(value: Any) -> Any:
            if isinstance(value, np.ndarray) and value.dtype.kind in "iu":
                return torch.from_numpy(value)
            if isinstance(value, (list, np.ndarray)):
                return torch.tensor(value, dtype=torch.float64)
            return value

        kw = {k: convert(v) for k, v in kwargs.items()}
        return getattr(torch.nn.functional, name)(*tensors, *map(convert, constants), **kw)

    return op


def ce_case(name: str, shape: tuple[int, ...], labels: np.ndarray, **options: Any) -> OpCase:
    """A cross_entropy case with class labels; ``options`` are gpubp's (weight,
    ignore_index, reduction, label_smoothing), passed to PyTorch as they are."""
    reference_options = {
        "weight": options.get("weight"),
        "ignore_index": options.get("ignore_index"),
        "eps": options.get("label_smoothing", 0.0),
        "reduction": options.get("reduction", "mean"),
    }
    torch_options = {k: v for k, v in options.items() if v is not None}
    return OpCase(
        name,
        lambda x: gp.cross_entropy(x, labels, **options),
        lambda x: np_cross_entropy(x, labels, **reference_options),
        [normal(*shape)],
        torch=torch_twin("cross_entropy", labels, **torch_options),
    )


def probs_case(name: str, shape: tuple[int, ...], **options: Any) -> OpCase:
    """A cross_entropy case with class-probability targets, differentiable in both."""
    reference_options = {
        "weight": options.get("weight"),
        "eps": options.get("label_smoothing", 0.0),
        "reduction": options.get("reduction", "mean"),
    }
    return OpCase(
        name,
        lambda x, t: gp.cross_entropy(x, t, **options),
        lambda x, t: np_cross_entropy(x, probs=t, **reference_options),
        [normal(*shape), probabilities(*shape, axis=0 if len(shape) == 1 else 1)],
        torch=torch_twin("cross_entropy", **options),
    )


def nll_case(name: str, shape: tuple[int, ...], labels: np.ndarray, **options: Any) -> OpCase:
    """An nll_loss case on log-probabilities (any values: the loss is linear in them)."""

    def reference(x: np.ndarray) -> np.ndarray:
        axis = 0 if x.ndim == 1 else 1
        # cross_entropy's reference on logits whose log_softmax is x: x itself when x is already normalised
        return np_cross_entropy(np_log_softmax(x, axis), labels, **_reference(options))

    return OpCase(
        name,
        lambda x: nll_loss(gp.log_softmax(x, dim=0 if x.ndim == 1 else 1), labels, **options),
        reference,
        [normal(*shape)],
        torch=lambda x: torch_twin("nll_loss", labels, **options)(x.log_softmax(dim=0 if x.ndim == 1 else 1)),
    )


def _reference(options: dict) -> dict:
    return {
        "weight": options.get("weight"),
        "ignore_index": options.get("ignore_index"),
        "reduction": options.get("reduction", "mean"),
    }


CASES = [
    # The plain case (one fused op) and the generic one.
    ce_case("cross_entropy", (5, 4), LABELS),
    ce_case("cross_entropy_sum", (5, 4), LABELS, reduction="sum"),
    ce_case("cross_entropy_none", (5, 4), LABELS, reduction="none"),
    ce_case("ce_ignore_index", (5, 4), IGNORED, ignore_index=-100),
    ce_case("ce_ignore_index_sum", (5, 4), IGNORED, ignore_index=-100, reduction="sum"),
    ce_case("ce_ignore_index_in_range", (5, 4), LABELS, ignore_index=3),
    ce_case("ce_weight", (5, 4), LABELS, weight=WEIGHT),
    ce_case("ce_weight_none", (5, 4), LABELS, weight=WEIGHT, reduction="none"),
    ce_case("ce_smoothing", (5, 4), LABELS, label_smoothing=0.2),
    ce_case("ce_smoothing_full", (5, 4), LABELS, label_smoothing=1.0),
    ce_case("ce_all_options", (5, 4), IGNORED, weight=WEIGHT, ignore_index=-100, label_smoothing=0.3),
    ce_case(
        "ce_all_options_sum", (5, 4), IGNORED, weight=WEIGHT, ignore_index=-100, label_smoothing=0.3, reduction="sum"
    ),
    ce_case("ce_4d", (2, 4, 3, 2), LABELS_4D, ignore_index=-100),
    ce_case(
        "ce_4d_all_options_none",
        (2, 4, 3, 2),
        LABELS_4D,
        weight=WEIGHT,
        ignore_index=-100,
        label_smoothing=0.1,
        reduction="none",
    ),
    ce_case("ce_1d", (4,), np.array(2)),
    ce_case("ce_1d_none_smoothing", (4,), np.array(2), reduction="none", label_smoothing=0.1),
    probs_case("ce_probs", (5, 4)),
    probs_case("ce_probs_options_none", (5, 4), weight=WEIGHT, label_smoothing=0.2, reduction="none"),
    probs_case("ce_probs_4d_sum", (2, 4, 3), reduction="sum", label_smoothing=0.1),
    probs_case("ce_probs_1d", (4,)),
    nll_case("nll", (5, 4), LABELS),
    nll_case("nll_options_sum", (5, 4), IGNORED, weight=WEIGHT, ignore_index=-100, reduction="sum"),
    nll_case("nll_4d_none", (2, 4, 3, 2), LABELS_4D, ignore_index=-100, reduction="none"),
    OpCase(
        "mse",
        gp.mse_loss,
        lambda a, b: ((a - b) ** 2).mean(),
        [normal(4, 3), normal(4, 3)],
        torch=torch_twin("mse_loss"),
    ),
    OpCase(
        "mse_sum",
        lambda a, b: gp.mse_loss(a, b, "sum"),
        lambda a, b: ((a - b) ** 2).sum(),
        [normal(4, 3), normal(4, 3)],
        torch=torch_twin("mse_loss", reduction="sum"),
    ),
    OpCase(
        "mse_none",
        lambda a, b: gp.mse_loss(a, b, reduction="none"),
        lambda a, b: (a - b) ** 2,
        [normal(4, 3), normal(4, 3)],
        torch=torch_twin("mse_loss", reduction="none"),
    ),
    OpCase(
        "bce_with_logits",
        gp.binary_cross_entropy_with_logits,
        np_bce,
        [normal(4, 3), targets],
        torch=torch_twin("binary_cross_entropy_with_logits"),
    ),
    OpCase(
        "bce_with_logits_none",
        lambda x, t: gp.binary_cross_entropy_with_logits(x, t, reduction="none"),
        lambda x, t: np_bce(x, t, reduction="none"),
        [normal(4, 3), targets],
        torch=torch_twin("binary_cross_entropy_with_logits", reduction="none"),
    ),
    OpCase(
        "bce_with_logits_pos_weight",
        lambda x, t: gp.binary_cross_entropy_with_logits(x, t, pos_weight=[0.5, 2.0, 3.0]),
        lambda x, t: np_bce(x, t, pos_weight=np.array([0.5, 2.0, 3.0])),
        [normal(4, 3), targets],
        torch=torch_twin("binary_cross_entropy_with_logits", pos_weight=[0.5, 2.0, 3.0]),
    ),
    OpCase(
        "bce_with_logits_weights_sum",
        lambda x, t: gp.binary_cross_entropy_with_logits(
            x, t, [[1.0], [0.5], [2.0], [0.0]], pos_weight=[0.5, 2.0, 3.0], reduction="sum"
        ),
        lambda x, t: np_bce(x, t, np.array([[1.0], [0.5], [2.0], [0.0]]), np.array([0.5, 2.0, 3.0]), reduction="sum"),
        [normal(4, 3), targets],
        torch=torch_twin(
            "binary_cross_entropy_with_logits",
            [[1.0], [0.5], [2.0], [0.0]],
            pos_weight=[0.5, 2.0, 3.0],
            reduction="sum",
        ),
    ),
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


# -- which path: the plain case stays one fused op -------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_plain_case_is_the_fused_op(reduction: str) -> None:
    loss = gp.cross_entropy(gp.randn(5, 4, requires_grad=True), LABELS, reduction=reduction)
    node = loss.grad_fn if reduction == "mean" else loss.grad_fn.inputs[0].grad_fn
    assert type(node) is CrossEntropy


@pytest.mark.parametrize(
    "options",
    [{"reduction": "none"}, {"ignore_index": -100}, {"weight": WEIGHT}, {"label_smoothing": 0.1}],
    ids=["none", "ignore_index", "weight", "smoothing"],
)
def test_any_option_takes_the_generic_op_with_the_same_result(options: dict, device: str) -> None:
    logits = gp.randn(5, 4, dtype="float64", device=device, requires_grad=True)
    loss = gp.cross_entropy(logits, LABELS, **options)
    assert type(loss.grad_fn) is ClassCrossEntropy
    plain = {k: v for k, v in options.items() if k == "reduction"}
    if plain or "ignore_index" in options:  # no label is ignored: the plain case's numbers
        want = gp.cross_entropy(logits.detach(), LABELS, reduction="none" if plain else "mean")
        np.testing.assert_allclose(loss.numpy(), want.numpy(), rtol=1e-14)


# -- ignore_index ----------------------------------------------------------------------------
def test_ignored_rows_add_nothing_and_the_mean_counts_the_others(device: str) -> None:
    x = gp.randn(5, 4, dtype="float64", device=device, requires_grad=True)
    loss = gp.cross_entropy(x, IGNORED, ignore_index=-100)
    loss.backward()
    kept = IGNORED != -100
    subset = gp.tensor(x.numpy()[kept], device=device, requires_grad=True)
    want = gp.cross_entropy(subset, IGNORED[kept])
    want.backward()
    np.testing.assert_allclose(loss.item(), want.item(), rtol=1e-14)
    grad = x.grad.numpy()
    np.testing.assert_array_equal(grad[~kept], 0.0)
    np.testing.assert_allclose(grad[kept], subset.grad.numpy(), rtol=1e-13)


@pytest.mark.parametrize(("reduction", "loss"), [("mean", np.nan), ("sum", 0.0)])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_all_rows_ignored_as_torch(reduction: str, loss: float, label_smoothing: float, device: str) -> None:
    x = gp.randn(3, 4, device=device, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = gp.cross_entropy(x, [-100] * 3, ignore_index=-100, reduction=reduction, label_smoothing=label_smoothing)
        value.backward()
    np.testing.assert_array_equal(value.numpy(), loss)  # mean: 0/0 = NaN, as PyTorch
    np.testing.assert_array_equal(x.grad.numpy(), 0.0)  # and zero gradients, as PyTorch


def test_ignored_rows_may_hold_anything() -> None:
    x = gp.tensor([[np.nan, 0.0, 1.0], [0.5, 0.0, 1.0]], requires_grad=True)
    loss = gp.cross_entropy(x, [-100, 2], ignore_index=-100, label_smoothing=0.1)
    loss.backward()
    assert np.isfinite(loss.item()) and np.isfinite(x.grad.numpy()).all()
    np.testing.assert_array_equal(x.grad.numpy()[0], 0.0)


@pytest.mark.parametrize(
    "call",
    [
        lambda x: gp.cross_entropy(x, [0, -100]),
        lambda x: gp.cross_entropy(x, [0, -100], reduction="none"),
        lambda x: gp.cross_entropy(x, [0, -100], label_smoothing=0.1),
        lambda x: nll_loss(x, [0, -100]),
    ],
    ids=["plain", "none", "smoothing", "nll"],
)
def test_ignore_index_defaults_to_none_and_label_minus_100_is_an_error_with_a_hint(call) -> None:
    with pytest.raises(IndexError, match=r"label -100 is out of range for 3 classes.*pass ignore_index=-100"):
        call(gp.randn(2, 3))


@pytest.mark.parametrize("bad", [3, -1, -100])
@pytest.mark.parametrize(
    "options",
    [
        {"ignore_index": -5},
        {"ignore_index": 0, "reduction": "none"},
        {"weight": [1.0, 2.0, 3.0]},
        {"label_smoothing": 0.5},
    ],
    ids=["ignore", "ignore_in_range", "weight", "smoothing"],
)
def test_out_of_range_labels_are_errors_with_every_option(bad: int, options: dict, device: str) -> None:
    logits = gp.randn(4, 3, device=device)
    # On the CPU at once; on a GPU the fused kernel flags it, reported at the next read.
    with pytest.raises(IndexError, match=rf"label {bad} is out of range for 3 classes"):
        gp.cross_entropy(logits, [0, options.get("ignore_index", 1), bad, 1], **options).numpy()


# -- shapes, dtypes and other bad input ------------------------------------------------------
@pytest.mark.parametrize(
    ("logits_shape", "labels", "shape"),
    [((5, 4), LABELS, (5,)), ((2, 4, 3, 2), np.abs(LABELS_4D) % 4, (2, 3, 2)), ((4,), np.array(1), ())],
)
def test_reduction_none_keeps_the_target_shape(logits_shape, labels, shape) -> None:
    x = gp.randn(*logits_shape)
    assert gp.cross_entropy(x, labels, reduction="none").shape == shape
    assert gp.cross_entropy(x, labels, reduction="none", ignore_index=-100).shape == shape
    assert nll_loss(x, labels, reduction="none").shape == shape
    probs = gp.softmax(gp.randn(*logits_shape), dim=0 if len(logits_shape) == 1 else 1)
    assert gp.cross_entropy(x, probs, reduction="none").shape == shape


@pytest.mark.parametrize(
    ("logits", "labels", "error", "message"),
    [
        ((2, 4), [0, 4], IndexError, r"label 4 is out of range for 4 classes"),
        ((2, 4), [0, -1], IndexError, r"label -1 is out of range"),
        (
            (2, 4),
            [0, 1, 2],
            ValueError,
            r"labels have shape \(3,\) but the input has shape \(2, 4\); expected "
            r"labels of shape \(2,\)",
        ),
        ((2, 4, 3), np.zeros((2, 4), np.int64), ValueError, r"expected labels of shape \(2, 3\)"),
        ((4,), [1], ValueError, r"expected labels of shape \(\) \(the input's shape without its class axis\)"),
        ((2, 4), np.zeros((2, 4), np.int64), ValueError, r"expected labels of shape \(2,\)"),
        ((2, 4), [0.0, 1.0], TypeError, r"labels must be integers .* must have the logits' shape \(2, 4\)"),
        ((2, 4), np.array([True, False]), TypeError, r"labels must be integers \(class indices\), got dtype bool"),
        ((), [0], ValueError, r"must have a class axis"),
    ],
)
def test_bad_labels(logits, labels, error, message) -> None:
    with pytest.raises(error, match=message):
        gp.cross_entropy(gp.randn(*logits), labels)


def test_bad_options() -> None:
    x = gp.randn(2, 4)
    with pytest.raises(ValueError, match=r"reduction must be one of \('none', 'mean', 'sum'\), got 'avg'"):
        gp.cross_entropy(x, [0, 1], reduction="avg")
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\], got 1.5"):
        gp.cross_entropy(x, [0, 1], label_smoothing=1.5)
    with pytest.raises(TypeError, match="ignore_index must be an integer or None"):
        gp.cross_entropy(x, [0, 1], ignore_index=1.0)
    with pytest.raises(
        TypeError,
        match=r"weight must be a tensor of class weights, got the string 'sum'; "
        r"pass reduction='sum'",
    ):
        gp.cross_entropy(x, [0, 1], "sum")
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\), one per class, got \(3,\)"):
        gp.cross_entropy(x, [0, 1], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="weight is a constant here and gets no gradient"):
        gp.cross_entropy(x, [0, 1], gp.ones(4, requires_grad=True))
    with pytest.raises(TypeError, match="dtype mismatch"):
        gp.cross_entropy(x, [0, 1], np.ones(4))  # a NumPy array keeps its float64
    with pytest.raises(TypeError, match="input must be floating-point, got dtype int64"):
        gp.cross_entropy(gp.tensor([[1, 2]]), [0], reduction="none")
    with pytest.raises(ValueError, match="has no classes"):
        gp.cross_entropy(gp.zeros(2, 0), [0, 0], ignore_index=-100)


def test_probability_targets_take_only_negative_ignore_index() -> None:
    x, t = gp.randn(2, 3), gp.softmax(gp.randn(2, 3))
    with pytest.raises(ValueError, match="ignore_index is not supported for class-probability targets"):
        gp.cross_entropy(x, t, ignore_index=0)
    assert gp.cross_entropy(x, t, ignore_index=-100).item() == gp.cross_entropy(x, t).item()  # as PyTorch


def test_probability_targets_as_list_or_numpy_array(dtype: np.dtype, device: str) -> None:
    x = gp.randn(2, 3, dtype=dtype, device=device, requires_grad=True)
    t = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]], dtype=dtype)
    want = gp.cross_entropy(x, gp.tensor(t, device=device)).item()
    assert gp.cross_entropy(x, t).item() == want
    assert gp.cross_entropy(x, t.tolist()).item() == want  # a list takes the logits' dtype
    other = np.float64 if dtype == np.float32 else np.float32
    with pytest.raises(TypeError, match="dtype mismatch"):
        gp.cross_entropy(x, t.astype(other))


def test_float16_takes_the_generic_path_in_float32() -> None:
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float16)
    t = gp.tensor(x, requires_grad=True)
    loss = gp.cross_entropy(t, IGNORED, WEIGHT, ignore_index=-100, label_smoothing=0.1)
    loss.backward()
    assert loss.dtype == np.float16 and t.grad.dtype == np.float16
    want = np_cross_entropy(x.astype(np.float64), IGNORED, weight=WEIGHT, ignore_index=-100, eps=0.1)
    np.testing.assert_allclose(loss.item(), want, rtol=1e-3)


@pytest.mark.parametrize(
    "options", [{}, {"weight": WEIGHT}, {"ignore_index": -100, "reduction": "none"}], ids=["plain", "weight", "none"]
)
def test_nll_of_log_softmax_is_cross_entropy(options: dict) -> None:
    x = gp.randn(2, 4, 3, 2, dtype="float64")
    labels = LABELS_4D if "ignore_index" in options else np.where(LABELS_4D < 0, 0, LABELS_4D)
    np.testing.assert_allclose(
        nll_loss(gp.log_softmax(x, dim=1), labels, **options).numpy(),
        gp.cross_entropy(x, labels, **options).numpy(),
        rtol=1e-13,
    )


def test_nll_loss_needs_integer_labels() -> None:
    with pytest.raises(TypeError, match="nll_loss: labels must be integers"):
        nll_loss(gp.randn(2, 3), gp.softmax(gp.randn(2, 3)))


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: gp.cross_entropy(x, [0, 1]),
        lambda x: gp.cross_entropy(x, [0, -100], ignore_index=-100, label_smoothing=0.1, reduction="none"),
        lambda x: gp.cross_entropy(x, gp.softmax(x.detach()), label_smoothing=0.1),
        lambda x: gp.binary_cross_entropy_with_logits(x, np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=x.dtype)),
        lambda x: gp.binary_cross_entropy_with_logits(x, gp.sigmoid(x.detach()), pos_weight=[2.0, 0.5, 1.0]),
    ],
    ids=["cross_entropy", "cross_entropy_options", "cross_entropy_probs", "bce", "bce_pos_weight"],
)
def test_stable_for_huge_logits(fn, dtype: np.dtype, device: str) -> None:
    x = gp.tensor([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 1000.0]], dtype=dtype, device=device, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = fn(x)
        loss.sum().backward()
    assert np.isfinite(loss.numpy()).all() and np.isfinite(x.grad.numpy()).all()
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
    assert gp.cross_entropy(logits, [0, 2], [1.0, 2.0, 3.0], ignore_index=0).device == "fake:0"
    target = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    assert gp.cross_entropy(logits, target).device == "fake:0"
    assert gp.binary_cross_entropy_with_logits(logits, target, pos_weight=[1.0, 2.0, 3.0]).device == "fake:0"
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
    with pytest.raises(ValueError, match=r"cross_entropy: target is on fake:0 but the logits are on cpu"):
        gp.cross_entropy(logits, _wrap(np.full((2, 3), 1 / 3, np.float32), FAKE))
    with pytest.raises(ValueError, match=r"cross_entropy: weight is on fake:0 but the input is on cpu"):
        gp.cross_entropy(logits, [0, 1], _wrap(np.ones(3, np.float32), FAKE))


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


def test_mse_shape_mismatch() -> None:
    with pytest.raises(ValueError, match=r"target shape \(3,\) must equal input shape \(3, 1\)"):
        gp.mse_loss(gp.randn(3, 1), gp.randn(3))


def test_bce_weights_must_broadcast_and_be_constants() -> None:
    x, t = gp.randn(4, 3), gp.zeros(4, 3)
    with pytest.raises(
        ValueError, match=r"pos_weight of shape \(4,\) does not broadcast to the input's shape \(4, 3\)"
    ):
        gp.binary_cross_entropy_with_logits(x, t, pos_weight=[1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match=r"weight of shape \(2, 3\) does not broadcast"):
        gp.binary_cross_entropy_with_logits(x, t, gp.ones(2, 3))
    with pytest.raises(ValueError, match="pos_weight is a constant here"):
        gp.binary_cross_entropy_with_logits(x, t, pos_weight=gp.ones(3, requires_grad=True))
    with pytest.raises(TypeError, match=r"got the string 'sum'; pass reduction='sum'"):
        gp.binary_cross_entropy_with_logits(x, t, "sum")
    with pytest.raises(ValueError, match="reduction must be one of"):
        gp.binary_cross_entropy_with_logits(x, t, reduction="avg")
    with pytest.raises(ValueError, match="reduction must be one of"):
        gp.mse_loss(x, t, reduction="avg")


# -- the options under gp.jit: no host reads or copies, so a step stays capturable -------------
def test_a_jitted_step_with_the_options_runs_as_the_eager_one() -> None:
    results = []
    for use_jit in (False, True):
        gp.manual_seed(0)
        model = gp.nn.Sequential(gp.nn.Linear(6, 4))
        opt = gp.optim.SGD(model.parameters(), lr=0.1)
        weight = gp.tensor(WEIGHT)

        def step(x: gp.Tensor, labels: gp.Tensor) -> gp.Tensor:
            loss = gp.cross_entropy(model(x), labels, weight, ignore_index=-100, label_smoothing=0.1)  # noqa: B023
            opt.zero_grad()  # noqa: B023
            loss.backward()
            gp.nn.utils.clip_grad_norm_(model.parameters(), 0.5)  # noqa: B023
            opt.step()  # noqa: B023
            return loss

        step = gp.jit(step) if use_jit else step
        rng = np.random.default_rng(0)
        losses = [
            step(gp.tensor(rng.standard_normal((5, 6)).astype(np.float32)), gp.tensor(IGNORED)).item() for _ in range(5)
        ]
        results.append((losses, [p.numpy() for p in model.parameters()]))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(a, b)
