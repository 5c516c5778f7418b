import numpy as np
import pytest

import gpubp as gp
from gpubp.tensor import Function


class WrongSigmoidGrad(Function):
    """A deliberately broken op: its backward forgets the (1 − s) factor."""

    def forward(self, x):
        y = 1 / (1 + np.exp(-x))
        self.save(y)
        return y

    def backward(self, g):
        (y,) = self.saved
        return g * y


def test_passes_a_correct_gradient_with_the_notes_criterion() -> None:
    w = gp.randn(3, 2, dtype="float64", requires_grad=True)
    x = gp.randn(4, 3, dtype="float64")
    report = gp.gradcheck(lambda w, x: gp.sigmoid(x @ w).sum(), [w, x])
    assert report.ok and set(report.differences) == {0} and report.differences[0] < 1e-7


def test_catches_a_wrong_gradient_and_names_input_and_entry() -> None:
    x = gp.randn(5, dtype="float64", requires_grad=True)
    with pytest.raises(gp.GradcheckError, match=r"input 0 \(shape \(5,\)\).*worst entry \(\d,\)"):
        gp.gradcheck(lambda t: WrongSigmoidGrad()(t), [x])
    report = gp.gradcheck(lambda t: WrongSigmoidGrad()(t), [x], raise_exception=False)
    assert not report.ok and report.differences[0] > 1e-3


def test_float32_inputs_are_checked_in_float64() -> None:
    x = gp.randn(3, requires_grad=True)
    assert gp.gradcheck(lambda t: (t * t).sum(), [x])
    assert x.grad is None  # the caller's tensors are untouched


def test_whole_mlp_with_l2_term() -> None:
    """The notes' recipe: check every parameter of an MLP, the regularised cost included."""
    gp.manual_seed(0)
    x = gp.randn(6, 4, dtype="float64")
    labels = np.array([0, 1, 2, 1, 0, 2])
    params = [
        gp.randn(5, 4, dtype="float64", requires_grad=True),
        gp.randn(5, dtype="float64", requires_grad=True),
        gp.randn(3, 5, dtype="float64", requires_grad=True),
        gp.randn(3, dtype="float64", requires_grad=True),
    ]
    lam = 0.1

    def cost(w1, b1, w2, b2):
        a1 = gp.linear(x, w1, b1, "sigmoid")
        data_term = gp.cross_entropy(gp.linear(a1, w2, b2), labels)
        return data_term + lam / (2 * len(labels)) * ((w1**2).sum() + (w2**2).sum())

    report = gp.gradcheck(cost, params)
    assert report.ok and len(report.differences) == 4


def test_needs_an_input_that_requires_grad() -> None:
    with pytest.raises(ValueError, match="no input requires grad"):
        gp.gradcheck(lambda t: t.sum(), [gp.randn(2)])
