import numpy as np
import pytest

import gpubp as gp
from gpubp.ops.shape import setitem
from tests.opcheck import OpCase, normal, op_tests

CASES = [
    OpCase("reshape", lambda a: a.reshape(4, 3), lambda a: a.reshape(4, 3), [normal(3, 4)]),
    OpCase("reshape_tuple_infer", lambda a: a.reshape((2, -1)), lambda a: a.reshape(2, -1), [normal(3, 4)]),
    OpCase("reshape_of_transposed_copies", lambda a: a.T.reshape(-1), lambda a: a.T.reshape(-1), [normal(3, 4)]),
    OpCase("view", lambda a: a.view(2, 6), lambda a: a.reshape(2, 6), [normal(3, 4)], torch=lambda a: a.view(2, 6)),
    OpCase("flatten", lambda a: a.flatten(), lambda a: a.reshape(-1), [normal(2, 3, 4)], torch=lambda a: a.flatten()),
    OpCase(
        "flatten_dims",
        lambda a: gp.flatten(a, 1, -1),
        lambda a: a.reshape(2, 12),
        [normal(2, 3, 4)],
        torch=lambda a: a.flatten(1, -1),
    ),
    OpCase("squeeze", lambda a: a.squeeze(), np.squeeze, [normal(3, 1, 4, 1)], torch=lambda a: a.squeeze()),
    OpCase(
        "squeeze_dim",
        lambda a: a.squeeze(-1),
        lambda a: a.squeeze(-1),
        [normal(3, 1, 4, 1)],
        torch=lambda a: a.squeeze(-1),
    ),
    OpCase(
        "unsqueeze",
        lambda a: a.unsqueeze(-2),
        lambda a: a[:, None, :],
        [normal(3, 4)],
        torch=lambda a: a.unsqueeze(-2),
    ),
    OpCase("T", lambda a: a.T, lambda a: a.T, [normal(3, 4)]),
    OpCase("T_3d_reverses", lambda a: a.T, lambda a: a.transpose(2, 1, 0), [normal(2, 3, 4)]),
    OpCase("t", lambda a: a.t(), lambda a: a.T, [normal(3, 4)], torch=lambda a: a.t()),
    OpCase(
        "permute",
        lambda a: a.permute(2, 0, 1),
        lambda a: a.transpose(2, 0, 1),
        [normal(2, 3, 4)],
        torch=lambda a: a.permute(2, 0, 1),
    ),
    OpCase(
        "permute_tuple",
        lambda a: gp.permute(a, (1, -1, 0)),
        lambda a: a.transpose(1, 2, 0),
        [normal(2, 3, 4)],
        torch=lambda a: a.permute(1, -1, 0),
    ),
    # issue 11: transpose(0, 1) was NumPy's transpose(*axes), the identity on a matrix
    OpCase(
        "transpose_2d", lambda a: a.transpose(0, 1), lambda a: a.T, [normal(3, 4)], torch=lambda a: a.transpose(0, 1)
    ),
    OpCase(
        "transpose_negative_dims",
        lambda a: gp.transpose(a, -1, 0),
        lambda a: np.swapaxes(a, -1, 0),
        [normal(2, 3, 4)],
        torch=lambda a: a.transpose(-1, 0),
    ),
    OpCase("clone", lambda a: a.clone() * 1, lambda a: a, [normal(3, 4)], torch=lambda a: a.clone()),
    OpCase("index_int", lambda a: a[1], lambda a: a[1], [normal(3, 4)]),
    OpCase("index_slices", lambda a: a[1:, ::2], lambda a: a[1:, ::2], [normal(3, 4)]),
    OpCase("index_negative_and_none", lambda a: a[-1, None], lambda a: a[-1, None], [normal(3, 4)]),
    OpCase("index_repeated_ints", lambda a: a[[0, 0, 2]], lambda a: a[[0, 0, 2]], [normal(3, 4)]),
    OpCase("index_then_reshape", lambda a: a[:, 1:3].reshape(-1), lambda a: a[:, 1:3].reshape(-1), [normal(3, 4)]),
    # issue 11: a tuple inside an index is an integer array; repeated rows must add their gradients
    OpCase(
        "index_tuple_rows",
        lambda a: a[(0, 0, 1), :],
        lambda a: a[[0, 0, 1], :],
        [normal(3, 2)],
        torch=lambda a: a[(0, 0, 1), :],
    ),
    OpCase(
        "index_nested_tuple",
        lambda a: a[((0, 0, 1),)],
        lambda a: a[[0, 0, 1]],
        [normal(3, 2)],
        torch=lambda a: a[((0, 0, 1),)],
    ),
    OpCase(
        "index_tuple_and_int",
        lambda a: a[(1, 0, -1, 1), 2],
        lambda a: a[[1, 0, -1, 1], 2],
        [normal(3, 4)],
        torch=lambda a: a[(1, 0, -1, 1), 2],
    ),
    OpCase(
        "index_two_lists",
        lambda a: a[[0, 2, 0], [1, 1, 1]],
        lambda a: a[[0, 2, 0], [1, 1, 1]],
        [normal(3, 4)],
        torch=lambda a: a[[0, 2, 0], [1, 1, 1]],
    ),
    OpCase(
        "index_numpy_ints",
        lambda a: a[np.array([2, 2]), np.int64(1)],
        lambda a: a[[2, 2], 1],
        [normal(3, 4)],
    ),
    OpCase(
        "index_bool_mask",
        lambda a: a[[True, False, True]],
        lambda a: a[[True, False, True]],
        [normal(3, 4)],
        torch=lambda a: a[[True, False, True]],
    ),
    OpCase(
        "setitem_row",
        lambda a, v: setitem(a, 1, v),
        lambda a, v: np.concatenate([a[:1], v[None], a[2:]]),
        [normal(3, 4), normal(4)],
        torch=lambda a, v: torch_setitem(a, 1, v),
    ),
    OpCase(
        "setitem_broadcast_region",
        lambda a, v: setitem(a, (slice(None), slice(1, 3)), v),
        lambda a, v: np.concatenate([a[:, :1], np.broadcast_to(v, (3, 2)), a[:, 3:]], axis=1),
        [normal(3, 4), normal(1, 2)],
        torch=lambda a, v: torch_setitem(a, (slice(None), slice(1, 3)), v),
    ),
]


def torch_setitem(a, index, value):
    """PyTorch's ``a[index] = value`` on a copy: setitem's twin."""
    out = a.clone()
    out[index] = value
    return out


test_forward, test_gradient, test_against_torch = op_tests(CASES)


def test_tuple_index_gradient_regression() -> None:
    x = gp.tensor(np.ones((3, 2)), requires_grad=True)
    x[(0, 0, 1), :].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[2, 2], [1, 1], [0, 0]])  # was 1 for row 0
    x.zero_grad()
    x[((0, 0, 1),)].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[2, 2], [1, 1], [0, 0]])


def test_transpose_swaps_two_dims_and_t_is_for_matrices() -> None:
    x = gp.randn(2, 3, 4)
    assert x.transpose(0, 1).shape == (3, 2, 4) and x.transpose(-1, -2).shape == (2, 4, 3)
    assert gp.randn(2, 3).transpose(0, 1).shape == (3, 2)  # was the identity
    assert x.T.shape == (4, 3, 2)
    assert gp.randn(3).t().shape == (3,)
    with pytest.raises(ValueError, match="at most 2 dimensions"):
        x.t()
    with pytest.raises(ValueError, match="not a permutation"):
        x.permute(0, 1)
    with pytest.raises(IndexError, match="dim 3 is out of range"):
        x.transpose(0, 3)


def test_views_share_memory_and_reshape_copies_only_when_it_must() -> None:
    x = gp.zeros(3, 4)
    x.view(12)[0] = 1.0
    x.T[1, 0] = 2.0
    x[2][3] = 3.0
    x.unsqueeze(0).flatten()[5] = 4.0
    assert x.numpy()[0, 0] == 1 and x.numpy()[0, 1] == 2 and x.numpy()[2, 3] == 3 and x.numpy()[1, 1] == 4
    with pytest.raises(RuntimeError, match=r"use \.reshape"):
        x.T.view(12)
    copy = x.T.reshape(12)
    copy[0] = 9.0
    assert x.numpy()[0, 0] == 1


def test_clone_has_its_own_memory() -> None:
    x = gp.ones(3)
    y = x.clone()
    y[0] = 5.0
    assert x.tolist() == [1.0, 1.0, 1.0] and y.tolist() == [5.0, 1.0, 1.0]


def test_bad_reshape_names_op() -> None:
    with pytest.raises(ValueError, match="Reshape: cannot reshape array of size 12"):
        gp.ones(3, 4).reshape(5, 2)


def test_index_out_of_range_names_shape() -> None:
    with pytest.raises(IndexError, match=r"shape \(3, 4\)"):
        gp.ones(3, 4)[3]


def test_a_list_index_is_a_host_copy_that_a_capture_refuses() -> None:
    # On a GPU a list becomes a device array by a host copy, which a CUDA graph cannot
    # repeat; the CPU refuses it at capture too, so a function that captures here captures there.
    f = gp.jit(lambda x: x[[0, 2]] * 2, warmup=1)
    f(gp.ones(3))
    with pytest.raises(gp.CaptureError, match="copies host data"):
        f(gp.ones(3))
