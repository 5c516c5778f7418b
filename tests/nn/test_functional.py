"""gp.nn.functional: PyTorch's names and arguments over gpubp's ops."""

import warnings

import numpy as np
import pytest

import gpubp as gp
import gpubp.nn.functional as F  # noqa: N812 (PyTorch's name)


def test_import_as_f_and_attribute_access_are_the_same_module() -> None:
    assert gp.nn.functional is F
    for name in F.__all__:
        assert callable(getattr(F, name)), name


def test_functions_are_the_ops() -> None:
    x = gp.randn(3, 4)
    labels = np.array([0, 1, 3])
    assert F.cross_entropy(x, labels).item() == gp.cross_entropy(x, labels).item()
    np.testing.assert_array_equal(F.relu(x).numpy(), gp.relu(x).numpy())
    np.testing.assert_array_equal(F.sigmoid(x).numpy(), gp.sigmoid(x).numpy())
    np.testing.assert_array_equal(F.tanh(x).numpy(), gp.tanh(x).numpy())
    np.testing.assert_array_equal(F.softmax(x, dim=1).numpy(), gp.softmax(x, 1).numpy())
    np.testing.assert_array_equal(F.log_softmax(x, 0).numpy(), gp.log_softmax(x, 0).numpy())
    w, b = gp.randn(2, 4), gp.randn(2)
    np.testing.assert_array_equal(F.linear(x, w, b).numpy(), gp.linear(x, w, b).numpy())
    np.testing.assert_array_equal(F.leaky_relu(x, 0.2).numpy(), np.where(x.numpy() > 0, x.numpy(), 0.2 * x.numpy()))
    assert F.gelu(x, approximate="tanh").shape == x.shape


def test_dropout_trains_by_default_as_torch() -> None:
    x = gp.ones(1000)
    assert (F.dropout(x, 0.5).numpy() == 0).any()
    assert F.dropout(x, 0.5, training=False) is x
    with pytest.raises(ValueError, match="p must be in"):
        F.dropout(x, 1.5)


@pytest.mark.parametrize("fn", [F.relu, F.leaky_relu, F.dropout], ids=lambda f: f.__name__)
def test_inplace_is_refused(fn) -> None:
    with pytest.raises(ValueError, match="inplace=True is not supported"):
        fn(gp.randn(3), inplace=True)


@pytest.mark.parametrize(("ndim", "dim"), [(1, 0), (2, 1), (3, 0), (4, 1)])
@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax], ids=lambda f: f.__name__)
def test_softmax_without_dim_warns_and_picks_torchs_implicit_dim(fn, ndim: int, dim: int) -> None:
    x = gp.randn(*(2, 3, 4, 5)[:ndim])
    with pytest.warns(UserWarning, match=rf"Implicit dimension choice for {fn.__name__} has been deprecated"):
        y = fn(x)
    np.testing.assert_array_equal(y.numpy(), fn(x, dim).numpy())


def test_softmax_dtype_casts_first() -> None:
    x = gp.randn(2, 3, requires_grad=True)
    y = F.softmax(x, dim=1, dtype="float64")
    assert y.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_softmax_with_dim_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.softmax(gp.randn(2, 3), dim=-1)


@pytest.mark.torch
def test_against_torch_functional() -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed; the cross-check is optional")
    tf = torch.nn.functional
    x = np.random.default_rng(0).standard_normal((4, 5))
    ours, theirs = gp.tensor(x, dtype="float64"), torch.from_numpy(x)
    for name, kwargs in [
        ("relu", {}),
        ("leaky_relu", {"negative_slope": 0.1}),
        ("gelu", {}),
        ("gelu", {"approximate": "tanh"}),
        ("softmax", {"dim": 1}),
        ("log_softmax", {"dim": 0}),
        ("sigmoid", {}),
        ("tanh", {}),
    ]:
        np.testing.assert_allclose(
            getattr(F, name)(ours, **kwargs).numpy(),
            getattr(tf, name)(theirs, **kwargs).numpy(),
            rtol=1e-14,
            atol=1e-15,
            err_msg=name,
        )
