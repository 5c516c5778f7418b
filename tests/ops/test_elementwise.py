import numpy as np
import pytest

import gpubp as gp
from tests.opcheck import OpCase, normal, op_tests, positive

CASES = [
    OpCase("add", lambda a, b: a + b, np.add, [normal(3, 4), normal(3, 4)]),
    OpCase("add_broadcast_both_sides", lambda a, b: a + b, np.add, [normal(3, 1), normal(1, 4)]),
    OpCase("add_scalar_right", lambda a: a + 2.5, lambda a: a + 2.5, [normal(3, 4)]),
    OpCase("radd_scalar", lambda a: 2.5 + a, lambda a: 2.5 + a, [normal(3, 4)]),
    OpCase("sub_broadcast", lambda a, b: a - b, np.subtract, [normal(2, 3, 4), normal(4)]),
    OpCase("rsub_scalar", lambda a: 1 - a, lambda a: 1 - a, [normal(5)]),
    OpCase("mul_broadcast", lambda a, b: a * b, np.multiply, [normal(4, 1), normal(3)]),
    OpCase("mul_scalar_left", lambda a: 3 * a, lambda a: 3 * a, [normal(2, 2)]),
    OpCase("div", lambda a, b: a / b, np.divide, [normal(3, 4), positive(3, 4)]),
    OpCase("div_broadcast", lambda a, b: a / b, np.divide, [normal(3, 4), positive(4)]),
    OpCase("rdiv_scalar", lambda a: 2 / a, lambda a: 2 / a, [positive(6)]),
    OpCase("pow_int", lambda a: a**3, lambda a: a**3, [normal(3, 3)]),
    OpCase("pow_fractional", lambda a: a**1.5, lambda a: a**1.5, [positive(4)]),
    OpCase("pow_tensor_exponent", lambda a, b: a**b, np.power, [positive(3, 2), normal(3, 2)]),
    OpCase("rpow_scalar_base", lambda a: 2**a, lambda a: 2**a, [normal(5)], torch=lambda a: 2**a),
    OpCase("neg", lambda a: -a, np.negative, [normal(3, 4)], torch=lambda a: -a),
    OpCase("exp", lambda a: a.exp(), np.exp, [normal(3, 4)], torch=lambda a: a.exp()),
    OpCase("log", lambda a: a.log(), np.log, [positive(3, 4)], torch=lambda a: a.log()),
    OpCase("used_twice", lambda a: a * a + a, lambda a: a * a + a, [normal(4)], torch=lambda a: a * a + a),
    OpCase(
        "chain",
        lambda a, b: ((a * b).exp() + 1).log() / b,
        lambda a, b: np.log(np.exp(a * b) + 1) / b,
        [normal(3), positive(3)],
    ),
]


test_forward, test_gradient, test_against_torch = op_tests(CASES)


def test_mixed_dtypes_raise_instead_of_promoting() -> None:
    a = gp.ones(3)
    b = gp.ones(3, dtype="float64")
    with pytest.raises(TypeError, match="float32 and float64"):
        a + b


def test_broadcast_mismatch_names_op_and_shapes() -> None:
    with pytest.raises(ValueError, match=r"Add: .*\(3, 4\).*\(5,\)"):
        gp.ones(3, 4) + gp.ones(5)


def test_python_float_keeps_float32() -> None:
    x = gp.ones(3, requires_grad=True)
    y = (x * 0.1 + 2.0) / 3.0 - 1e-3
    y.sum().backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32


def test_numpy_float64_scalar_does_not_promote() -> None:
    y = gp.ones(3) * np.float64(2.0)
    assert y.dtype == np.float32
