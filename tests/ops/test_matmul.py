import numpy as np
import pytest

import gpubp as gp
from tests.opcheck import OpCase, normal, op_tests

CASES = [
    OpCase("matrix_matrix", lambda a, b: a @ b, np.matmul, [normal(3, 4), normal(4, 5)]),
    OpCase("matrix_vector", lambda a, b: a @ b, np.matmul, [normal(3, 4), normal(4)]),
    OpCase("vector_matrix", lambda a, b: a @ b, np.matmul, [normal(4), normal(4, 2)]),
    OpCase("vector_vector", lambda a, b: a @ b, np.matmul, [normal(4), normal(4)]),
    OpCase("batched_broadcast", lambda a, b: a @ b, np.matmul, [normal(2, 3, 4), normal(4, 5)]),
    OpCase("transposed_weight", lambda x, w: x @ w.T, lambda x, w: x @ w.T, [normal(5, 3), normal(2, 3)]),
]


test_forward, test_gradient, test_against_torch = op_tests(CASES)


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"matmul: shapes \(3, 4\) and \(5, 6\) are not aligned"):
        gp.ones(3, 4) @ gp.ones(5, 6)


def test_scalar_operand_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least one dimension"):
        gp.ones(3) @ 2.0


def test_dtypes_must_match_as_in_pytorch() -> None:
    with pytest.raises(TypeError, match=r"matmul: dtype mismatch \(float32 and float64\)"):
        gp.ones(2, 3) @ gp.ones(3, 2, dtype="float64")
