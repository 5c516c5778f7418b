import numpy as np
import pytest

import gpubp as gp


def test_inverted_dropout_scales_kept_entries(device: str) -> None:
    x = gp.ones(200, 100, device=device, requires_grad=True)
    y = gp.dropout(x, p=0.25)
    values = np.unique(y.numpy())
    np.testing.assert_allclose(values, [0.0, 1 / 0.75], rtol=1e-6)
    kept = (y.numpy() != 0).mean()
    assert abs(kept - 0.75) < 0.01
    assert abs(y.numpy().mean() - 1.0) < 0.02  # expectation unchanged


def test_backward_uses_the_same_mask(device: str) -> None:
    x = gp.randn(50, 40, device=device, requires_grad=True)
    y = gp.dropout(x, p=0.5)
    y.sum().backward()
    mask = (y.numpy() != 0) * 2.0
    np.testing.assert_allclose(x.grad.numpy(), mask)


def test_eval_and_p0_are_identity() -> None:
    x = gp.randn(3, 4)
    assert gp.dropout(x, 0.5, training=False) is x
    assert gp.dropout(x, 0.0) is x


def test_p1_drops_everything() -> None:
    np.testing.assert_array_equal(gp.dropout(gp.ones(3), 1.0).numpy(), 0)


def test_dropout_gradient_matches_finite_differences() -> None:
    x = gp.randn(4, 5, dtype="float64", requires_grad=True)

    def fn(t: gp.Tensor) -> gp.Tensor:
        gp.manual_seed(7)  # the same mask on every evaluation
        return gp.dropout(t, 0.3)

    assert gp.gradcheck(fn, [x])


def test_module_is_identity_in_eval() -> None:
    layer = gp.nn.Dropout(0.5).eval()
    x = gp.randn(10)
    np.testing.assert_array_equal(layer(x).numpy(), x.numpy())


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_bad_p(p: float) -> None:
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        gp.nn.Dropout(p)
