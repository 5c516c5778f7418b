import numpy as np
import pytest

import gpubp as gp
from gpubp.backends.numpy_backend import NumpyBackend
from gpubp.tensor import _wrap
from tests.opcheck import OpCase, normal, op_tests

CASES = [
    OpCase(
        "cat_dim0",
        lambda a, b: gp.cat([a, b]),
        lambda a, b: np.concatenate([a, b]),
        [normal(2, 3), normal(4, 3)],
        torch=lambda a, b: _torch().cat([a, b]),
    ),
    OpCase(
        "cat_negative_dim_three",
        lambda a, b, c: gp.cat((a, b, c), dim=-1),
        lambda a, b, c: np.concatenate([a, b, c], axis=-1),
        [normal(2, 3, 1), normal(2, 3, 2), normal(2, 3, 4)],
        torch=lambda a, b, c: _torch().cat((a, b, c), dim=-1),
    ),
    OpCase(
        "cat_same_tensor_twice",
        lambda a: gp.cat([a, a * 2, a], dim=1),
        lambda a: np.concatenate([a, a * 2, a], axis=1),
        [normal(2, 3)],
        torch=lambda a: _torch().cat([a, a * 2, a], dim=1),
    ),
    OpCase(
        "stack_dim0",
        lambda a, b: gp.stack([a, b]),
        lambda a, b: np.stack([a, b]),
        [normal(2, 3), normal(2, 3)],
        torch=lambda a, b: _torch().stack([a, b]),
    ),
    OpCase(
        "stack_last_dim",
        lambda a, b, c: gp.stack([a, b, c], dim=-1),
        lambda a, b, c: np.stack([a, b, c], axis=-1),
        [normal(4), normal(4), normal(4)],
        torch=lambda a, b, c: _torch().stack([a, b, c], dim=-1),
    ),
    OpCase(
        "stack_middle",
        lambda a, b: gp.stack((a, b), dim=1),
        lambda a, b: np.stack([a, b], axis=1),
        [normal(2, 3), normal(2, 3)],
        torch=lambda a, b: _torch().stack((a, b), dim=1),
    ),
]


def _torch():
    import torch

    return torch


test_forward, test_gradient, test_against_torch = op_tests(CASES)


def test_cat_promotes_and_returns_gradients_in_each_dtype() -> None:
    a = gp.ones(2, requires_grad=True)
    b = gp.ones(3, dtype="float64", requires_grad=True)
    out = gp.cat([a, b, gp.tensor([1, 2])])
    assert out.dtype == np.float64 and out.shape == (7,)
    (out * gp.arange(7.0).double()).sum().backward()
    assert a.grad.dtype == np.float32 and a.grad.tolist() == [0.0, 1.0]
    assert b.grad.dtype == np.float64 and b.grad.tolist() == [2.0, 3.0, 4.0]


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="differ outside dim 0"):
        gp.cat([gp.ones(2, 3), gp.ones(2, 4)])
    with pytest.raises(ValueError, match="one shape"):
        gp.stack([gp.ones(2), gp.ones(3)])
    with pytest.raises(ValueError, match="at least one tensor"):
        gp.cat([])
    with pytest.raises(IndexError, match="dim 2 is out of range"):
        gp.cat([gp.ones(2, 3)], dim=2)
    with pytest.raises(TypeError, match="sequence of Tensors"):
        gp.stack([gp.ones(2), [1.0, 2.0]])


class FakeDevice(NumpyBackend):
    device = "fake:0"


def test_tensors_on_two_devices_are_named() -> None:
    other = _wrap(np.ones(2, np.float32), FakeDevice())
    with pytest.raises(ValueError, match="cpu and fake:0"):
        gp.cat([gp.ones(2), other])
    with pytest.raises(ValueError, match="cpu and fake:0"):
        gp.stack([gp.ones(2), other])
