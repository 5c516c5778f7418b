import warnings

import numpy as np
import pytest

import gpubp as gp
from tests.opcheck import OpCase, away_from_zero, normal, op_tests


def np_sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * x))


def np_log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


CASES = [
    OpCase("sigmoid", gp.sigmoid, np_sigmoid, [normal(4, 5)]),
    OpCase("tanh", gp.tanh, np.tanh, [normal(4, 5)]),
    OpCase("relu", gp.relu, lambda x: np.maximum(x, 0), [away_from_zero(4, 5)]),
    OpCase("softmax", gp.softmax, lambda x: np.exp(np_log_softmax(x)), [normal(3, 5)]),
    OpCase("softmax_axis0", lambda x: gp.softmax(x, axis=0), lambda x: np.exp(np_log_softmax(x, 0)), [normal(3, 5)]),
    OpCase("log_softmax", gp.log_softmax, np_log_softmax, [normal(3, 5)]),
    OpCase("log_softmax_axis0", lambda x: gp.log_softmax(x, 0), lambda x: np_log_softmax(x, 0), [normal(3, 5)]),
]


test_forward, test_gradient, test_against_torch = op_tests(CASES)


@pytest.mark.parametrize("fn", [gp.sigmoid, gp.tanh, gp.softmax, gp.log_softmax], ids=lambda f: f.__name__)
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
