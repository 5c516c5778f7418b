import numpy as np
import pytest

import gpubp as gp
from tests.opcheck import OpCase, normal, op_tests

CASES = [
    OpCase("sum_all", lambda a: a.sum(), np.sum, [normal(3, 4)]),
    OpCase("sum_axis0", lambda a: a.sum(axis=0), lambda a: a.sum(axis=0), [normal(3, 4)]),
    OpCase(
        "sum_axis_neg_keepdims",
        lambda a: a.sum(axis=-1, keepdims=True),
        lambda a: a.sum(axis=-1, keepdims=True),
        [normal(2, 3, 4)],
    ),
    OpCase("sum_axes_tuple", lambda a: a.sum(axis=(0, 2)), lambda a: a.sum(axis=(0, 2)), [normal(2, 3, 4)]),
    OpCase("mean_all", lambda a: a.mean(), np.mean, [normal(3, 4)]),
    OpCase("mean_axis1", lambda a: a.mean(axis=1), lambda a: a.mean(axis=1), [normal(3, 4)]),
    OpCase("max_all", lambda a: a.max(), np.max, [normal(3, 4)]),
    OpCase(
        "max_axis1_keepdims",
        lambda a: a.max(axis=1, keepdims=True),
        lambda a: a.max(axis=1, keepdims=True),
        [normal(3, 5)],
    ),
    OpCase("max_axis0", lambda a: a.max(axis=0), lambda a: a.max(axis=0), [normal(4, 3)]),
]


test_forward, test_gradient, test_against_torch = op_tests(CASES)


def test_max_ties_share_the_gradient() -> None:
    x = gp.tensor([1.0, 3.0, 3.0], requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.5, 0.5])


def test_bad_axis_is_named() -> None:
    with pytest.raises(ValueError, match="axis 2 is out of bounds"):
        gp.ones(3, 4).sum(axis=2)
