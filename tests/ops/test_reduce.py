import numpy as np
import pytest

import gpubp as gp
from tests.opcheck import OpCase, normal, op_tests

CASES = [
    OpCase("sum_all", lambda a: a.sum(), np.sum, [normal(3, 4)], torch=lambda a: a.sum()),
    OpCase("sum_axis0", lambda a: a.sum(axis=0), lambda a: a.sum(axis=0), [normal(3, 4)]),
    OpCase(
        "sum_axis_neg_keepdims",
        lambda a: a.sum(axis=-1, keepdims=True),
        lambda a: a.sum(axis=-1, keepdims=True),
        [normal(2, 3, 4)],
    ),
    OpCase("sum_axes_tuple", lambda a: a.sum(axis=(0, 2)), lambda a: a.sum(axis=(0, 2)), [normal(2, 3, 4)]),
    OpCase(
        "sum_dim_keepdim",
        lambda a: a.sum(dim=(0, 2), keepdim=True),
        lambda a: a.sum(axis=(0, 2), keepdims=True),
        [normal(2, 3, 4)],
        torch=lambda a: a.sum(dim=(0, 2), keepdim=True),
    ),
    OpCase("gp_sum_dim", lambda a: gp.sum(a, dim=1), lambda a: a.sum(axis=1), [normal(3, 4)], torch=lambda a: a.sum(1)),
    OpCase("mean_all", lambda a: a.mean(), np.mean, [normal(3, 4)]),
    OpCase("mean_axis1", lambda a: a.mean(axis=1), lambda a: a.mean(axis=1), [normal(3, 4)]),
    OpCase(
        "mean_dim",
        lambda a: a.mean(dim=-1, keepdim=True),
        lambda a: a.mean(axis=-1, keepdims=True),
        [normal(3, 4)],
        torch=lambda a: a.mean(dim=-1, keepdim=True),
    ),
    OpCase("max_all", lambda a: a.max(), np.max, [normal(3, 4)], torch=lambda a: a.max()),
    OpCase("min_all", lambda a: a.min(), np.min, [normal(3, 4)], torch=lambda a: a.min()),
    OpCase(
        "max_axis1_keepdims",
        lambda a: a.max(axis=1, keepdims=True),
        lambda a: a.max(axis=1, keepdims=True),
        [normal(3, 5)],
        torch=lambda a: a.amax(dim=1, keepdim=True),
    ),
    OpCase("max_axis0", lambda a: a.max(axis=0), lambda a: a.max(axis=0), [normal(4, 3)]),
    OpCase("min_axes", lambda a: a.min(axis=(0, 2)), lambda a: a.min(axis=(0, 2)), [normal(2, 3, 4)]),
    OpCase(
        "max_dim_values",
        lambda a: a.max(dim=1).values,
        lambda a: a.max(axis=1),
        [normal(4, 5)],
        torch=lambda a: a.max(dim=1).values,
    ),
    OpCase(
        "min_dim_keepdim_values",
        lambda a: gp.min(a, dim=0, keepdim=True)[0],
        lambda a: a.min(axis=0, keepdims=True),
        [normal(4, 5)],
        torch=lambda a: a.min(dim=0, keepdim=True)[0],
    ),
    OpCase("var_all", lambda a: a.var(), lambda a: a.var(ddof=1), [normal(3, 4)], torch=lambda a: a.var()),
    OpCase(
        "var_dim_biased",
        lambda a: a.var(dim=1, correction=0),
        lambda a: a.var(axis=1),
        [normal(3, 4)],
        torch=lambda a: a.var(dim=1, correction=0),
    ),
    OpCase(
        "std_dim_keepdim",
        lambda a: a.std(dim=(0, 2), keepdim=True),
        lambda a: a.std(axis=(0, 2), ddof=1, keepdims=True),
        [normal(2, 3, 4)],
        torch=lambda a: a.std(dim=(0, 2), keepdim=True),
    ),
    OpCase(
        "std_unbiased_false",
        lambda a: gp.std(a, axis=0, unbiased=False),
        lambda a: a.std(axis=0),
        [normal(5, 3)],
        torch=lambda a: a.std(dim=0, unbiased=False),
    ),
    OpCase(
        "std_correction_2",
        lambda a: a.std(correction=2),
        lambda a: a.std(ddof=2),
        [normal(6)],
        torch=lambda a: a.std(correction=2),
    ),
]


test_forward, test_gradient, test_against_torch = op_tests(CASES)


def test_max_ties_share_the_gradient() -> None:
    x = gp.tensor([1.0, 3.0, 3.0], requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.5, 0.5])


def test_max_min_with_dim_return_values_and_indices_like_torch() -> None:
    x = gp.tensor([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]], requires_grad=True)
    result = x.max(dim=1)
    values, indices = result  # a named pair
    assert result.values is values and result.indices is indices
    np.testing.assert_array_equal(values.numpy(), [3.0, 2.0])
    assert indices.dtype == np.int64 and indices.tolist() == [1, 0]  # the first maximum, as PyTorch's CPU kernel
    assert x.min(dim=-1, keepdim=True).indices.tolist() == [[0], [1]]
    assert x.max(axis=1).shape == (2,) and isinstance(x.max(), gp.Tensor)  # NumPy's spelling: values only


@pytest.mark.parametrize("which", ["max", "min"])
def test_ties_along_dim_send_the_gradient_to_the_returned_index(which: str) -> None:
    data = [[1.0, 3.0, 3.0, 1.0], [2.0, 2.0, 0.0, 2.0]] if which == "max" else [[1.0, 0.0, 0.0], [5.0, 5.0, 7.0]]
    x = gp.tensor(data, dtype="float64", requires_grad=True)
    getattr(x, which)(dim=1).values.sum().backward()
    torch = pytest.importorskip("torch", reason="PyTorch is not installed; the cross-check is optional")
    t = torch.tensor(data, dtype=torch.float64, requires_grad=True)
    getattr(t, which)(dim=1).values.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), t.grad.numpy())


@pytest.mark.parametrize("which", ["max", "min"])
def test_ties_over_all_elements_share_the_gradient_like_torch(which: str) -> None:
    data = [[3.0, 1.0], [3.0, 3.0]] if which == "max" else [[0.0, 1.0], [0.0, 2.0]]
    x = gp.tensor(data, dtype="float64", requires_grad=True)
    getattr(x, which)().backward()
    torch = pytest.importorskip("torch", reason="PyTorch is not installed; the cross-check is optional")
    t = torch.tensor(data, dtype=torch.float64, requires_grad=True)
    getattr(t, which)().backward()
    np.testing.assert_array_equal(x.grad.numpy(), t.grad.numpy())


def test_numpy_integer_axes_are_accepted() -> None:
    x = gp.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    assert x.sum(np.int64(1)).tolist() == [3.0, 12.0]
    assert x.max(np.intp(0)).tolist() == [3.0, 4.0, 5.0]
    assert x.mean(axis=(np.int32(0), 1)).item() == 2.5
    assert x.max(dim=np.int64(1)).indices.tolist() == [2, 2]
    assert x.argmax(np.int64(0)).tolist() == [1, 1, 1]
    assert x.std(dim=np.int64(1)).shape == (2,)


def test_dim_and_axis_together_are_a_type_error() -> None:
    x = gp.ones(2, 3)
    with pytest.raises(TypeError, match="dim= or axis="):
        x.sum(axis=0, dim=0)
    with pytest.raises(TypeError, match="keepdim= or keepdims="):
        x.mean(0, keepdims=True, keepdim=True)
    with pytest.raises(TypeError, match="correction="):
        x.var(correction=1, unbiased=True)
    with pytest.raises(TypeError, match="one int"):
        x.max(dim=(0, 1))


def test_argmax_argmin() -> None:
    x = gp.tensor([[0.1, 0.9, 0.9], [0.8, 0.2, 0.0]])
    assert x.argmax(dim=1).tolist() == [1, 0] and x.argmin(axis=1).tolist() == [0, 2]
    assert x.argmax().item() == 1 and gp.argmin(x).item() == 5
    assert x.argmax(dim=0, keepdim=True).shape == (1, 3)
    assert x.argmax(dim=1).dtype == np.int64


def test_integer_mean_and_std_compute_in_float32() -> None:
    x = gp.tensor([[1, 2], [3, 5]])
    assert x.mean().dtype == np.float32 and x.mean().item() == 2.75
    assert x.std(dim=0).dtype == np.float32


def test_bad_axis_is_named() -> None:
    with pytest.raises(ValueError, match="axis 2 is out of bounds"):
        gp.ones(3, 4).sum(axis=2)
