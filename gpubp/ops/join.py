"""Joining tensors: cat along an existing dim, stack along a new one.

Backward hands each input its slice of the gradient. Inputs of different
dtypes are promoted as in arithmetic (``operands.py``); all must be on one device.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

from gpubp.ops.operands import promote
from gpubp.tensor import Function, Tensor


class Cat(Function):
    def __init__(self, axis: int) -> None:
        self.axis = axis

    def forward(self, *arrays: Any) -> Any:
        self.sizes = [a.shape[self.axis] for a in arrays]
        return self.backend.xp.concatenate(arrays, axis=self.axis)

    derivatives = {"arrays": "its slice of g along dim {axis}"}

    def backward(self, g: Any) -> tuple:
        grads = []
        start = 0
        lead = (slice(None),) * self.axis
        for size, need in zip(self.sizes, self.needs_input_grad):
            grads.append(g[(*lead, slice(start, start + size))] if need else None)
            start += size
        return tuple(grads)


class Stack(Function):
    def __init__(self, axis: int) -> None:
        self.axis = axis

    def forward(self, *arrays: Any) -> Any:
        return self.backend.xp.stack(arrays, axis=self.axis)

    derivatives = {"arrays": "its index of g along dim {axis}"}

    def backward(self, g: Any) -> tuple:
        lead = (slice(None),) * self.axis
        return tuple(g[(*lead, i)] if need else None for i, need in enumerate(self.needs_input_grad))


def _tensors(op: str, tensors: Sequence[Tensor]) -> tuple[Tensor, ...]:
    tensors = tuple(tensors)
    if not tensors:
        raise ValueError(f"{op}: needs at least one tensor")
    if not all(isinstance(t, Tensor) for t in tensors):
        kinds = ", ".join(sorted({type(t).__name__ for t in tensors if not isinstance(t, Tensor)}))
        raise TypeError(f"{op}: takes a sequence of Tensors, got {kinds} among them")
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ValueError(f"{op}: tensors on different devices ({' and '.join(sorted(devices))}); move them to one")
    return tuple(promote(op, *tensors))


def _axis(op: str, dim: Any, ndim: int) -> int:
    d = operator.index(dim)
    if not -ndim <= d < ndim:
        raise IndexError(f"{op}: dim {d} is out of range for {ndim} dimensions")
    return d % ndim


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """The tensors joined along ``dim`` (negative counts from the end); all other dims must agree."""
    tensors = _tensors("cat", tensors)
    ndim = tensors[0].ndim
    if ndim == 0:
        raise ValueError("cat: zero-dimensional tensors cannot be joined; use stack")
    axis = _axis("cat", dim, ndim)
    shapes = [t.shape for t in tensors]
    if any(len(s) != ndim or s[:axis] + s[axis + 1 :] != shapes[0][:axis] + shapes[0][axis + 1 :] for s in shapes):
        raise ValueError(f"cat: shapes {shapes} differ outside dim {dim}")
    return Cat(axis)(*tensors)


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """The tensors (all of one shape) joined along a new dim ``dim``."""
    tensors = _tensors("stack", tensors)
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"stack: all tensors need one shape, got {sorted(shapes)}")
    return Stack(_axis("stack", dim, tensors[0].ndim + 1))(*tensors)
