"""Reductions: sum, mean and max over some or all axes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gpubp.tensor import Function, Tensor

Axis = int | Sequence[int] | None


def _normalise(axis: Axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of bounds for a tensor of {ndim} dimensions")
    return tuple(sorted(a % ndim for a in axes))


class _Reduction(Function):
    def __init__(self, axis: Axis, keepdims: bool) -> None:
        self.axis = axis
        self.keepdims = keepdims

    def _setup(self, a: Any) -> tuple[int, ...]:
        axes = _normalise(self.axis, a.ndim)
        self.in_shape = a.shape
        # The output's shape with the reduced axes kept as 1: what the gradient broadcasts from.
        self.kept_shape = tuple(1 if i in axes else n for i, n in enumerate(a.shape))
        return axes

    def _spread(self, g: Any) -> Any:
        return self.backend.xp.broadcast_to(g.reshape(self.kept_shape), self.in_shape)


class Sum(_Reduction):
    def forward(self, a: Any) -> Any:
        return a.sum(axis=self._setup(a), keepdims=self.keepdims)

    def backward(self, g: Any) -> Any:
        return self._spread(g)


class Mean(_Reduction):
    def forward(self, a: Any) -> Any:
        axes = self._setup(a)
        self.count = 1
        for i in axes:
            self.count *= a.shape[i]
        return a.mean(axis=axes, keepdims=self.keepdims)

    def backward(self, g: Any) -> Any:
        return self._spread(g / self.count)


class Max(_Reduction):
    def forward(self, a: Any) -> Any:
        axes = self._setup(a)
        out = a.max(axis=axes, keepdims=True)
        self.save(a, out)
        return out if self.keepdims else out.reshape([n for i, n in enumerate(a.shape) if i not in axes])

    def backward(self, g: Any) -> Any:
        # Ties share the gradient equally (the subgradient PyTorch's amax uses).
        a, out_kept = self.saved
        mask = (a == out_kept).astype(a.dtype)
        mask /= mask.sum(axis=_normalise(self.axis, a.ndim), keepdims=True)
        return mask * g.reshape(self.kept_shape)


def sum(a: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Sum over ``axis`` (all axes when None)."""
    return Sum(axis, keepdims)(a)


def mean(a: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis`` (all axes when None)."""
    return Mean(axis, keepdims)(a)


def max(a: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Maximum over ``axis``; tied maxima share the gradient equally."""
    return Max(axis, keepdims)(a)
