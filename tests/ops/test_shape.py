import pytest

import gpubp as gp
from tests.opcheck import OpCase, normal, op_tests

CASES = [
    OpCase("reshape", lambda a: a.reshape(4, 3), lambda a: a.reshape(4, 3), [normal(3, 4)]),
    OpCase("reshape_tuple_infer", lambda a: a.reshape((2, -1)), lambda a: a.reshape(2, -1), [normal(3, 4)]),
    OpCase("T", lambda a: a.T, lambda a: a.T, [normal(3, 4)]),
    OpCase("transpose_axes", lambda a: a.transpose(2, 0, 1), lambda a: a.transpose(2, 0, 1), [normal(2, 3, 4)]),
    OpCase("index_int", lambda a: a[1], lambda a: a[1], [normal(3, 4)]),
    OpCase("index_slices", lambda a: a[1:, ::2], lambda a: a[1:, ::2], [normal(3, 4)]),
    OpCase("index_negative_and_none", lambda a: a[-1, None], lambda a: a[-1, None], [normal(3, 4)]),
    OpCase("index_repeated_ints", lambda a: a[[0, 0, 2]], lambda a: a[[0, 0, 2]], [normal(3, 4)]),
    OpCase("index_then_reshape", lambda a: a[:, 1:3].reshape(-1), lambda a: a[:, 1:3].reshape(-1), [normal(3, 4)]),
]


test_forward, test_gradient, test_against_torch = op_tests(CASES)


def test_bad_reshape_names_op() -> None:
    with pytest.raises(ValueError, match="Reshape: cannot reshape array of size 12"):
        gp.ones(3, 4).reshape(5, 2)


def test_index_out_of_range_names_shape() -> None:
    with pytest.raises(IndexError, match=r"shape \(3, 4\)"):
        gp.ones(3, 4)[3]
