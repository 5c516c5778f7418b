import warnings

import numpy as np
import pytest

import gpubp as gp
from tests.opcheck import OpCase, away_from_zero, normal, op_tests, positive

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
    OpCase("sqrt", lambda a: a.sqrt(), np.sqrt, [positive(3, 4)], torch=lambda a: a.sqrt()),
    OpCase("gp_sqrt", gp.sqrt, np.sqrt, [positive(5)], torch=lambda a: a.sqrt()),
    OpCase("abs", lambda a: a.abs(), np.abs, [away_from_zero(3, 4)], torch=lambda a: a.abs()),
    OpCase("builtin_abs", abs, np.abs, [away_from_zero(6)], torch=abs),
    OpCase(
        "methods",
        lambda a, b: a.add(b).mul(b).sub(a).div(b).neg(),
        lambda a, b: -(((a + b) * b - a) / b),
        [normal(3), positive(3)],
        torch=lambda a, b: a.add(b).mul(b).sub(a).div(b).neg(),
    ),
    OpCase("pow_method", lambda a, b: a.pow(b), np.power, [positive(4), normal(4)], torch=lambda a, b: a.pow(b)),
    OpCase("used_twice", lambda a: a * a + a, lambda a: a * a + a, [normal(4)], torch=lambda a: a * a + a),
    OpCase(
        "chain",
        lambda a, b: ((a * b).exp() + 1).log() / b,
        lambda a, b: np.log(np.exp(a * b) + 1) / b,
        [normal(3), positive(3)],
    ),
]


test_forward, test_gradient, test_against_torch = op_tests(CASES)


# -- power at the edges (issue 11: a Python-scalar base <= 0 crashed backward) -----------------
def _pow_grads(base, exponent, torch=None) -> list:
    """Gradients of Σ base ** exponent, each side a list (a float64 tensor that
    requires grad) or a number, in gpubp or, given the module, in PyTorch."""

    def make(v):
        if not isinstance(v, list):
            return v
        if torch is None:
            return gp.tensor(v, dtype="float64", requires_grad=True)
        return torch.tensor(v, dtype=torch.float64, requires_grad=True)

    a, b = make(base), make(exponent)
    (a**b).sum().backward()
    return [
        np.asarray(t.grad.tolist()) if isinstance(t, (gp.Tensor, getattr(torch, "Tensor", ()))) else None
        for t in (a, b)
    ]


POW_EDGES = [
    (0, [0.0, 1.0, -1.0, 2.5]),  # 0 ** x: d/dx is 0 where x >= 0
    (-2, [0.0, 1.0, 2.0]),  # negative base: d/dx is nan (log of a negative), as PyTorch
    (0.0, [0.0]),
    ([0.0, 1.0, -2.0], 0),  # x ** 0: d/dx is 0, also at 0
    ([0.0, 0.0, 2.0, -2.0], [0.0, 2.0, 0.5, 2.0]),  # tensor ** tensor at (0, 0), (0, 2), (-2, 2)
    ([0.0, 3.0], [-1.0, -1.0]),  # 0 ** -1 = inf and its gradients
    ([0.0, 4.0], 0.5),  # sqrt at 0: inf, as PyTorch
]


@pytest.mark.parametrize(("base", "exponent"), POW_EDGES, ids=str)
def test_pow_edges_do_not_crash_and_match_torch(base, exponent) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed; the cross-check is optional")
    ours = _pow_grads(base, exponent)
    theirs = _pow_grads(base, exponent, torch)
    for o, t in zip(ours, theirs):
        assert (o is None) == (t is None)
        if o is not None:
            np.testing.assert_array_equal(o, t)


def test_scalar_base_zero_or_negative_regression() -> None:
    x = gp.tensor([0.0, 1.0, 2.0], dtype="float64", requires_grad=True)
    (0**x).sum().backward()  # crashed with "math domain error"
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 0.0])
    x.zero_grad()
    ((-2) ** x).sum().backward()
    assert np.isnan(x.grad.numpy()).all()
    x.zero_grad()
    (x**0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 0.0])


def test_pow_edges_give_no_warnings() -> None:
    x = gp.tensor([0.0, -1.0], dtype="float64", requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (x**-0.5 + 0**x).sum().backward()


# -- type promotion (issue 11: PyTorch's rule instead of a TypeError) -----------------------------
TENSOR_PAIRS = [
    ("float32", "float64"),
    ("float16", "float32"),
    ("int64", "float32"),
    ("int32", "float16"),
    ("uint8", "int32"),
    ("int32", "int64"),
    ("bool", "int32"),
    ("bool", "float64"),
    ("bool", "bool"),
]


@pytest.mark.parametrize(("left", "right"), TENSOR_PAIRS, ids="-".join)
@pytest.mark.parametrize("op", ["add", "mul", "truediv"])
def test_tensor_pairs_promote_as_torch(left: str, right: str, op: str) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed; the cross-check is optional")
    fn = getattr(__import__("operator"), op)
    a, b = gp.ones(3, dtype=left), gp.ones(3, dtype=right)
    want = fn(torch.ones(3, dtype=getattr(torch, left)), torch.ones(3, dtype=getattr(torch, right))).dtype
    assert str(fn(a, b).dtype) == str(want).removeprefix("torch.")
    assert str(fn(b, a).dtype) == str(want).removeprefix("torch.")


SCALAR_CASES = [
    ("int64", 2.5),
    ("int32", 2),
    ("float16", 1.0),
    ("float16", 3),
    ("bool", 1),
    ("bool", 1.5),
    ("bool", True),
    ("uint8", 2),
    ("float32", np.float64(2.0)),
    ("int32", np.float32(0.5)),
]


@pytest.mark.parametrize(("dtype", "scalar"), SCALAR_CASES, ids=str)
def test_python_scalars_promote_only_by_category(dtype: str, scalar) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed; the cross-check is optional")
    want = (torch.ones(3, dtype=getattr(torch, dtype)) * scalar).dtype
    assert str((gp.ones(3, dtype=dtype) * scalar).dtype) == str(want).removeprefix("torch.")
    assert str((scalar * gp.ones(3, dtype=dtype)).dtype) == str(want).removeprefix("torch.")


def test_zero_dim_tensors_count_only_when_of_a_higher_category() -> None:
    assert (gp.ones(3) + gp.tensor(1.0, dtype="float64")).dtype == np.float32
    assert (gp.ones(3, dtype="int64") + gp.tensor(1.0, dtype="float64")).dtype == np.float64
    assert (gp.ones(3, dtype="int32") + gp.tensor(1, dtype="int64")).dtype == np.int32
    assert (gp.tensor(1.0) + gp.tensor(1.0, dtype="float64")).dtype == np.float64


def test_integer_division_and_float_functions_give_float32() -> None:
    i = gp.tensor([1, 2, 4])
    assert (i / 2).dtype == np.float32 and (i / i).dtype == np.float32 and (2 / i).dtype == np.float32
    np.testing.assert_allclose((i / 2).numpy(), [0.5, 1.0, 2.0])
    for fn in (gp.exp, gp.log, gp.sqrt):
        assert fn(i).dtype == np.float32
    assert gp.abs(i).dtype == np.int64 and (-i).dtype == np.int64
    assert (i**2).dtype == np.int64 and (2**i).dtype == np.int64 and (i**0.5).dtype == np.float32


def test_mixed_float_gradients_return_in_each_inputs_dtype() -> None:
    a = gp.tensor([1.0, 2.0], requires_grad=True)  # float32
    b = gp.tensor([3.0, 4.0], dtype="float64", requires_grad=True)
    y = a * b
    assert y.dtype == np.float64
    y.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    np.testing.assert_allclose(a.grad.numpy(), [3.0, 4.0])
    np.testing.assert_allclose(b.grad.numpy(), [1.0, 2.0])


def test_float32_code_takes_no_cast() -> None:
    a = gp.ones(3, requires_grad=True)
    b = gp.ones(3, requires_grad=True)
    for y in (a + b, a * 2.5, 1 - a, a / b, a**2):
        assert y.dtype == np.float32
        assert all(x is a or x is b or not isinstance(x, gp.Tensor) for x in y.grad_fn.inputs)


def test_numpy_array_operand_promotes_like_a_tensor() -> None:
    assert (gp.ones(3) * np.ones(3)).dtype == np.float64
    assert (gp.ones(3) * [1.0, 2.0, 3.0]).dtype == np.float32  # a list takes the tensor's dtype


def test_result_type_and_promote_types_are_exported() -> None:
    assert gp.promote_types(gp.int64, gp.float16) == np.float16
    assert gp.result_type(gp.ones(2, dtype="int32"), 2.5) == np.float32


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
