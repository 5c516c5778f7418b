import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import gpubp as gp
from gpubp.ops import activation
from tests.opcheck import OpCase, away_from_zero, normal, op_tests


def np_sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * x))


def np_log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


_erf = np.vectorize(math.erf)


def np_gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def np_gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def twin(name: str, **kwargs: Any) -> Callable[..., Any]:
    """torch.nn.functional's op of that name with ``kwargs``, imported when the
    cross-check runs (which skips first where PyTorch is not installed)."""

    def op(*tensors: Any) -> Any:
        import torch.nn.functional

        return getattr(torch.nn.functional, name)(*tensors, **kwargs)

    return op


CASES = [
    OpCase("sigmoid", gp.sigmoid, np_sigmoid, [normal(4, 5)], torch=twin("sigmoid")),
    OpCase("tanh", gp.tanh, np.tanh, [normal(4, 5)], torch=twin("tanh")),
    OpCase("relu", gp.relu, lambda x: np.maximum(x, 0), [away_from_zero(4, 5)], torch=twin("relu")),
    OpCase("softmax", gp.softmax, lambda x: np.exp(np_log_softmax(x)), [normal(3, 5)], torch=twin("softmax", dim=-1)),
    OpCase(
        "softmax_axis0",
        lambda x: gp.softmax(x, axis=0),
        lambda x: np.exp(np_log_softmax(x, 0)),
        [normal(3, 5)],
        torch=twin("softmax", dim=0),
    ),
    OpCase(
        "softmax_dim1_3d",
        lambda x: gp.softmax(x, dim=1),
        lambda x: np.exp(np_log_softmax(x, 1)),
        [normal(2, 3, 4)],
        torch=twin("softmax", dim=1),
    ),
    OpCase("log_softmax", gp.log_softmax, np_log_softmax, [normal(3, 5)], torch=twin("log_softmax", dim=-1)),
    OpCase(
        "log_softmax_axis0",
        lambda x: gp.log_softmax(x, 0),
        lambda x: np_log_softmax(x, 0),
        [normal(3, 5)],
        torch=twin("log_softmax", dim=0),
    ),
    OpCase(
        "log_softmax_dim1_3d",
        lambda x: gp.log_softmax(x, dim=1),
        lambda x: np_log_softmax(x, 1),
        [normal(2, 3, 4)],
        torch=twin("log_softmax", dim=1),
    ),
    OpCase(
        "leaky_relu",
        activation.leaky_relu,
        lambda x: np.where(x > 0, x, 0.01 * x),
        [away_from_zero(4, 5)],
        torch=twin("leaky_relu"),
    ),
    OpCase(
        "leaky_relu_slope",
        lambda x: activation.leaky_relu(x, negative_slope=-0.3),
        lambda x: np.where(x > 0, x, -0.3 * x),
        [away_from_zero(4, 5)],
        torch=twin("leaky_relu", negative_slope=-0.3),
    ),
    OpCase("gelu", activation.gelu, np_gelu, [lambda rng: 3 * rng.standard_normal((4, 5))], torch=twin("gelu")),
    OpCase(
        "gelu_tanh",
        lambda x: activation.gelu(x, approximate="tanh"),
        np_gelu_tanh,
        [lambda rng: 3 * rng.standard_normal((4, 5))],
        torch=twin("gelu", approximate="tanh"),
    ),
]


test_forward, test_gradient, test_against_torch = op_tests(CASES)


@pytest.mark.parametrize(
    "fn",
    [gp.sigmoid, gp.tanh, gp.softmax, gp.log_softmax, activation.leaky_relu, activation.gelu],
    ids=lambda f: f.__name__,
)
def test_finite_for_huge_inputs_without_warnings(fn, dtype: np.dtype, device: str) -> None:
    x = gp.tensor([[-1000.0, 0.0, 1000.0], [1000.0, 1000.0, -1000.0]], dtype=dtype, device=device, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = fn(x)
        y.sum().backward()
    assert np.isfinite(y.numpy()).all() and np.isfinite(x.grad.numpy()).all()
    assert y.dtype == dtype and x.grad.dtype == dtype


def test_sigmoid_limits() -> None:
    y = gp.sigmoid(gp.tensor([-1000.0, 1000.0]))
    np.testing.assert_array_equal(y.numpy(), [0.0, 1.0])


def test_sigmoid_backward_uses_saved_output_not_exp(monkeypatch: pytest.MonkeyPatch) -> None:
    x = gp.randn(3, requires_grad=True)
    y = gp.sigmoid(x)
    backend = x.backend
    calls = []
    monkeypatch.setattr(backend.xp, "exp", lambda *a, **k: calls.append(1))
    y.sum().backward()
    assert calls == []
    s = y.numpy()
    np.testing.assert_allclose(x.grad.numpy(), s * (1 - s), rtol=1e-6)


# -- softmax's dim and its axis alias -----------------------------------------------------
def test_softmax_dim_is_positional_and_axis_a_keyword_alias() -> None:
    x = gp.randn(2, 3, 4)
    for fn in (gp.softmax, gp.log_softmax):
        want = fn(x, 1).numpy()
        np.testing.assert_array_equal(fn(x, dim=1).numpy(), want)
        np.testing.assert_array_equal(fn(x, axis=1).numpy(), want)
        np.testing.assert_array_equal(x.softmax(1).numpy(), gp.softmax(x, 1).numpy())  # Tensor method passes dim
        with pytest.raises(TypeError, match="both dim=1 and axis=2"):
            fn(x, 1, axis=2)
        with pytest.raises(TypeError, match="dim must be an integer"):
            fn(x, 1.5)


# -- GELU's erf ------------------------------------------------------------------------------
def test_erf_on_the_cpu_is_libm_erf_in_float64() -> None:
    z = np.concatenate([np.linspace(-7, 7, 2001), [0.0, -0.0, 1e-300, -1e-20, 30.0, -30.0, np.inf, -np.inf]])
    got = activation.erf(np, z)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, [math.erf(v) for v in z])  # bit for bit
    assert np.isnan(activation.erf(np, np.array([np.nan]))).all()
    assert activation.erf(np, np.array(0.5)).shape == ()  # 0-d stays an array
    assert activation.erf(np, np.array([0.5], np.float32)).dtype == np.float32


@pytest.mark.torch
def test_gelu_float64_matches_torch_to_rounding_over_its_range() -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed; the cross-check is optional")
    x = np.linspace(-6, 6, 1001)
    ours = activation.gelu(gp.tensor(x, dtype="float64")).numpy()
    theirs = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    # 1 + erf(x/√2) cancels for negative x in both, so compare to an ulp of x.
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=2.3e-16 * np.abs(x).max())


def test_gelu_float16_computes_in_float32_and_rounds_once() -> None:
    x = np.random.default_rng(0).standard_normal(50).astype(np.float16)
    t = gp.tensor(x, requires_grad=True)
    y = activation.gelu(t)
    y.sum().backward()
    assert y.dtype == np.float16 and t.grad.dtype == np.float16
    np.testing.assert_array_equal(y.numpy(), np_gelu(x.astype(np.float32)).astype(np.float16))


def test_gelu_rejects_unknown_approximations() -> None:
    with pytest.raises(ValueError, match=r"approximate must be one of \('none', 'tanh'\), got 'erf'"):
        activation.gelu(gp.randn(3), approximate="erf")


def test_leaky_relu_gradient_at_zero_is_the_slope_as_torch() -> None:
    x = gp.tensor([0.0, -1.0, 2.0], requires_grad=True)
    activation.leaky_relu(x, 0.2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.2, 0.2, 1.0])
