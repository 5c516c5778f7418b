"""Ops that move entries around without changing them: reshape, transpose, indexing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gpubp.tensor import Function, Tensor, _index_arrays


def _shape_args(args: tuple) -> tuple:
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    return args


class Reshape(Function):
    shares_memory = True

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def forward(self, a: Any) -> Any:
        self.in_shape = a.shape
        return a.reshape(self.shape)

    def backward(self, g: Any) -> Any:
        return g.reshape(self.in_shape)


class Transpose(Function):
    shares_memory = True

    def __init__(self, axes: Sequence[int] | None) -> None:
        self.axes = axes

    def forward(self, a: Any) -> Any:
        axes = tuple(range(a.ndim))[::-1] if self.axes is None else tuple(self.axes)
        if sorted(x % max(a.ndim, 1) for x in axes) != list(range(a.ndim)):
            raise ValueError(f"axes {axes} are not a permutation of a {a.ndim}-dimensional tensor's axes")
        self.inverse = tuple(sorted(range(a.ndim), key=lambda i: axes[i] % a.ndim))
        return a.transpose(axes)

    def backward(self, g: Any) -> Any:
        return g.transpose(self.inverse)


class GetItem(Function):
    shares_memory = True

    def __init__(self, index: Any) -> None:
        self.index = index

    def forward(self, a: Any) -> Any:
        self.in_shape, self.dtype = a.shape, a.dtype
        return a[self.index]

    def backward(self, g: Any) -> Any:
        xp = self.backend.xp
        grad = xp.zeros(self.in_shape, dtype=self.dtype)
        if _is_advanced(self.index):
            # Repeated integer indices must add up, which plain assignment would not do.
            xp.add.at(grad, self.index, g)
        else:
            grad[self.index] = g
        return grad


def _is_advanced(index: Any) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(hasattr(p, "shape") or isinstance(p, list) for p in parts)


def reshape(a: Tensor, *shape: int | Sequence[int]) -> Tensor:
    """The same entries in a new shape (one dimension may be -1)."""
    return Reshape(_shape_args(shape))(a)


def transpose(a: Tensor, *axes: int | Sequence[int]) -> Tensor:
    """Permutes the axes (reverses them when none are given)."""
    axes = _shape_args(axes)
    return Transpose(axes or None)(a)


def getitem(a: Tensor, index: Any) -> Tensor:
    """``a[index]`` with ints, slices, None, Ellipsis or integer arrays."""
    index = _index_arrays(index)
    try:
        return GetItem(index)(a)
    except IndexError as err:
        raise IndexError(f"index {index!r} is out of range for a tensor of shape {a.shape}: {err}") from None
