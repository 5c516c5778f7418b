import numpy as np
import pytest

import gpubp as gp
from gpubp.backends.numpy_backend import NumpyBackend
from gpubp.tensor import _wrap
from tests.opcheck import OpCase, away_from_zero, normal, op_tests

MASK = np.array([[True, False, True, False], [False, False, True, True], [True, True, False, False]])


def torch_mask():
    import torch

    return torch.from_numpy(MASK)


CASES = [
    OpCase(
        "where",
        lambda a, b: gp.where(gp.tensor(MASK, device=a.device), a, b),
        lambda a, b: np.where(MASK, a, b),
        [normal(3, 4), normal(3, 4)],
        torch=lambda a, b: gp_torch_where(a, b),
    ),
    OpCase(
        "where_broadcast",
        lambda a, b: gp.where(gp.tensor(MASK, device=a.device), a, b),
        lambda a, b: np.where(MASK, a, b),
        [normal(3, 1), normal(4)],
        torch=lambda a, b: gp_torch_where(a, b),
    ),
    OpCase(
        "where_scalar",
        lambda a: gp.where(gp.tensor(MASK, device=a.device), 0.5, a),
        lambda a: np.where(MASK, 0.5, a),
        [normal(3, 4)],
    ),
    OpCase(
        "where_method_condition_from_comparison",
        lambda a: gp.where(a > 0, a, a * 0.1),
        lambda a: np.where(a > 0, a, a * 0.1),
        [away_from_zero(3, 4)],
    ),
    OpCase("maximum", gp.maximum, np.maximum, [normal(3, 4), normal(3, 4)], torch=lambda a, b: a.maximum(b)),
    OpCase("minimum", gp.minimum, np.minimum, [normal(3, 1), normal(4)], torch=lambda a, b: a.minimum(b)),
    OpCase("maximum_scalar", lambda a: gp.maximum(a, 0.2), lambda a: np.maximum(a, 0.2), [away_from_zero(5)]),
    OpCase(
        "clamp_numbers",
        lambda a: a.clamp(-0.5, 0.5),
        lambda a: np.clip(a, -0.5, 0.5),
        [away_from_zero(4, 5)],
        torch=lambda a: a.clamp(-0.5, 0.5),
    ),
    OpCase(
        "clamp_min_only",
        lambda a: gp.clamp(a, min=0.3),
        lambda a: np.maximum(a, 0.3),
        [away_from_zero(6)],
        torch=lambda a: a.clamp(min=0.3),
    ),
    OpCase(
        "clamp_tensors",
        lambda a, lo, hi: a.clamp(lo, hi),
        lambda a, lo, hi: np.minimum(np.maximum(a, lo), hi),
        [normal(3, 4), lambda rng: rng.uniform(-1.5, -0.2, (4,)), lambda rng: rng.uniform(0.2, 1.5, (3, 1))],
        torch=lambda a, lo, hi: a.clamp(lo, hi),
    ),
    OpCase(
        "clamp_max_tensor",
        lambda a, hi: a.clamp(max=hi),
        lambda a, hi: np.minimum(a, hi),
        [normal(3, 4), normal(3, 4)],
        torch=lambda a, hi: a.clamp(max=hi),
    ),
]


def gp_torch_where(a, b):
    import torch

    return torch.where(torch_mask(), a, b)


test_forward, test_gradient, test_against_torch = op_tests(CASES)


def _grads(fn, *arrays, torch=None):
    if torch is None:
        xs = [gp.tensor(a, dtype="float64", requires_grad=True) for a in arrays]
    else:
        xs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    (fn(*xs) * (torch or gp).tensor([1.0, 2.0, 3.0], dtype=(torch or gp).float64)).sum().backward()
    return [np.asarray(x.grad.tolist()) for x in xs]


TIES = {
    "maximum": lambda a, b: a.maximum(b),
    "minimum": lambda a, b: a.minimum(b),
    "clamp_at_bounds": lambda a, lo, hi: a.clamp(lo, hi),
    "clamp_low_above_high": lambda a, lo, hi: a.clamp(lo * 3, hi * 0),
}


@pytest.mark.parametrize("name", TIES)
def test_ties_and_edges_split_gradients_as_torch(name: str) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed; the cross-check is optional")
    arrays = (
        [[1.0, 2.0, 3.0], [1.0, 0.0, 3.0]]
        if "clamp" not in name
        else [[1.0, 2.0, 3.0], [1.0, 1.0, 1.0], [4.0, 2.0, 2.0]]
    )
    fn = TIES[name]
    for ours, theirs in zip(_grads(fn, *arrays), _grads(fn, *arrays, torch=torch)):
        np.testing.assert_array_equal(ours, theirs)


def test_maximum_ties_give_each_input_half() -> None:
    a = gp.tensor([1.0, 2.0], requires_grad=True)
    b = gp.tensor([1.0, 3.0], requires_grad=True)
    gp.maximum(a, b).sum().backward()
    assert a.grad.tolist() == [0.5, 0.0] and b.grad.tolist() == [0.5, 1.0]


def test_where_promotes_and_takes_numbers() -> None:
    cond = gp.tensor([True, False])
    assert gp.where(cond, gp.ones(2), gp.ones(2, dtype="int64")).dtype == np.float32
    assert gp.where(cond, gp.ones(2, dtype="float64"), 2.5).dtype == np.float64
    out = gp.where(cond, 1, 2.5)
    assert out.dtype == np.float32 and out.tolist() == [1.0, 2.5]
    assert gp.where(cond, 1, 2).dtype == np.int64
    assert gp.where([True, False], gp.zeros(2), 1.0).tolist() == [0.0, 1.0]  # a list or array on the CPU
    assert gp.where(np.array([False, True]), gp.zeros(2), 1.0).tolist() == [1.0, 0.0]
    with pytest.raises(TypeError, match="bool tensor"):
        gp.where(gp.tensor([1, 0]), gp.ones(2), 0.0)


def test_clamp_promotes_and_needs_a_bound() -> None:
    assert gp.tensor([1, 5]).clamp(min=0.5).dtype == np.float32
    assert gp.tensor([1, 5]).clamp(0, 3).tolist() == [1, 3]
    with pytest.raises(ValueError, match="give min, max or both"):
        gp.ones(2).clamp()


class FakeDevice(NumpyBackend):
    device = "fake:0"


def test_operands_on_two_devices_are_named() -> None:
    other = _wrap(np.ones(2, np.float32), FakeDevice())
    with pytest.raises(ValueError, match=r"cpu and fake:0"):
        gp.maximum(gp.ones(2), other)
    with pytest.raises(ValueError, match=r"cpu and fake:0|fake:0 and cpu"):
        gp.where(gp.tensor([True, False]), other, gp.ones(2))
