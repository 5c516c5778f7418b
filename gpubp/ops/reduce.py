"""Reductions: sum, mean, max, min, var and std over some or all axes, and argmax/argmin.

Each takes NumPy's spelling (``axis=``, ``keepdims=``) or PyTorch's (``dim=``,
``keepdim=``), not both. ``max``/``min`` with ``dim=`` return PyTorch's named
pair ``(values, indices)``; otherwise the values only.
"""

from __future__ import annotations

import builtins
import operator
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from gpubp import autocast_mode, dtypes
from gpubp.ops.operands import floating
from gpubp.tensor import Function, Tensor, _wrap

Axis = int | Sequence[int] | None


class ReturnTypes(NamedTuple):
    """What ``max``/``min`` with ``dim=`` return, as ``torch.return_types.max``:
    ``values`` (differentiable) and ``indices`` (int64, where each value was)."""

    values: Tensor
    indices: Tensor


def axes_and_keepdims(op: str, axis: Any, keepdims: Any, dim: Any, keepdim: Any) -> tuple[Axis, bool]:
    """One axis and one keepdims from NumPy's or PyTorch's spelling (giving both is a TypeError)."""
    if dim is not None:
        if axis is not None:
            raise TypeError(f"{op}: give dim= or axis=, not both")
        axis = dim
    if keepdim is not None:
        if keepdims is not None:
            raise TypeError(f"{op}: give keepdim= or keepdims=, not both")
        keepdims = keepdim
    return axis, bool(keepdims)


def _normalise(axis: Axis, ndim: int) -> tuple[int, ...]:
    """The sorted non-negative axes ``axis`` names (all when None); any integer type will do."""
    if axis is None:
        return tuple(range(ndim))
    try:
        axes = (operator.index(axis),)
    except TypeError:
        axes = tuple(operator.index(a) for a in axis)
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of bounds for a tensor of {ndim} dimensions")
    normal = sorted(a % ndim for a in axes)
    if len(set(normal)) != len(normal):
        raise ValueError(f"axis {axis} names an axis twice")
    return tuple(normal)


class _Reduction(Function):
    def __init__(self, axis: Axis, keepdims: bool) -> None:
        self.axis = axis
        self.keepdims = keepdims

    def _setup(self, a: Any) -> tuple[int, ...]:
        self.axes = axes = _normalise(self.axis, a.ndim)
        self.in_shape = a.shape
        # The output's shape with the reduced axes kept as 1: what the gradient broadcasts from.
        self.kept_shape = tuple(1 if i in axes else n for i, n in enumerate(a.shape))
        self.count = 1
        for i in axes:
            self.count *= a.shape[i]
        return axes

    def _out(self, kept: Any) -> Any:
        """A result computed with keepdims=True, shaped as asked."""
        return kept if self.keepdims else kept.reshape([n for i, n in enumerate(self.in_shape) if i not in self.axes])

    def _spread(self, g: Any) -> Any:
        return self.backend.xp.broadcast_to(g.reshape(self.kept_shape), self.in_shape)


class Sum(_Reduction):
    def forward(self, a: Any) -> Any:
        return a.sum(axis=self._setup(a), keepdims=self.keepdims)

    derivatives = {"a": "· 1, spread over the summed axes"}

    def backward(self, g: Any) -> Any:
        return self._spread(g)


class Mean(_Reduction):
    def forward(self, a: Any) -> Any:
        return a.mean(axis=self._setup(a), keepdims=self.keepdims)

    derivatives = {"a": "/ {count}, spread over the averaged axes"}

    def backward(self, g: Any) -> Any:
        return self._spread(g / self.count)


class Extreme(_Reduction):
    """max or min over axes; ties share the gradient equally (the subgradient
    PyTorch's amax/amin and its all-element max()/min() use)."""

    def __init__(self, axis: Axis, keepdims: bool, largest: bool) -> None:
        super().__init__(axis, keepdims)
        self.largest = largest

    def forward(self, a: Any) -> Any:
        axes = self._setup(a)
        kept = a.max(axis=axes, keepdims=True) if self.largest else a.min(axis=axes, keepdims=True)
        self.save(a, kept)
        return self._out(kept)

    derivatives = {"a": "to the extreme entries (ties share), 0 elsewhere"}

    def backward(self, g: Any) -> Any:
        a, kept = self.saved
        mask = (a == kept).astype(a.dtype)
        mask /= mask.sum(axis=self.axes, keepdims=True)
        return mask * g.reshape(self.kept_shape)


class ExtremeDim(Function):
    """max or min along one dim with the index of each value. The gradient goes to
    that index only: the first extreme along dim where values tie, the index
    PyTorch documents and its CPU kernels return (NumPy's and CuPy's argmax too)."""

    def __init__(self, dim: int, keepdims: bool, largest: bool) -> None:
        self.dim = dim
        self.keepdims = keepdims
        self.largest = largest

    def forward(self, a: Any) -> Any:
        xp = self.backend.xp
        self.in_shape = a.shape
        if a.ndim == 0:
            self.indices = xp.zeros((), dtype=dtypes.int64)
            return a.copy()
        (self.axis,) = _normalise(self.dim, a.ndim)
        pick = a.argmax if self.largest else a.argmin
        indices = xp.expand_dims(pick(axis=self.axis), self.axis)
        values = xp.take_along_axis(a, indices, axis=self.axis)
        self.kept_indices = indices
        self.indices = (indices if self.keepdims else indices.squeeze(self.axis)).astype(dtypes.int64, copy=False)
        return values if self.keepdims else values.squeeze(self.axis)

    derivatives = {"a": "to the index returned, 0 elsewhere"}

    def backward(self, g: Any) -> Any:
        xp = self.backend.xp
        if len(self.in_shape) == 0:
            return g
        grad = xp.zeros(self.in_shape, dtype=g.dtype)
        kept = g if self.keepdims else xp.expand_dims(g, self.axis)
        xp.put_along_axis(grad, self.kept_indices, kept, axis=self.axis)
        return grad


class Variance(_Reduction):
    """Σ(a − mean)² / (N − correction), and its square root with ``root``.
    d var / d a = 2(a − mean) / (N − correction): the mean's own dependence on a
    drops out because the deviations sum to zero."""

    def __init__(self, axis: Axis, keepdims: bool, correction: float, root: bool) -> None:
        super().__init__(axis, keepdims)
        self.correction = correction
        self.root = root

    def forward(self, a: Any) -> Any:
        xp = self.backend.xp
        axes = self._setup(a)
        deviation = a - a.mean(axis=axes, keepdims=True)
        self.divisor = builtins.max(self.count - self.correction, 0)
        with np.errstate(divide="ignore", invalid="ignore"):  # N ≤ correction gives inf or nan, as PyTorch
            out = (deviation * deviation).sum(axis=axes, keepdims=True) / self.divisor
            if self.root:
                out = xp.sqrt(out)
        self.save(deviation, out)
        return self._out(out)

    derivatives = {"a": "⊙ 2(a − mean)/(N − c); std: ⊙ (a − mean)/((N − c)·std)"}

    def backward(self, g: Any) -> Any:
        deviation, out = self.saved
        g = g.reshape(self.kept_shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            # d√v = dv / (2√v): the 2s cancel.
            scale = g / (self.divisor * out) if self.root else g * 2 / self.divisor
        return deviation * scale


def sum(  # noqa: A001 (PyTorch's name)
    a: Tensor,
    axis: Axis = None,
    keepdims: bool | None = None,
    *,
    dim: Axis = None,
    keepdim: bool | None = None,
) -> Tensor:
    """Sum over ``axis``/``dim`` (all axes when None)."""
    axis, keepdims = axes_and_keepdims("sum", axis, keepdims, dim, keepdim)
    return Sum(axis, keepdims)(autocast_mode.in_float32(a))


def mean(
    a: Tensor,
    axis: Axis = None,
    keepdims: bool | None = None,
    *,
    dim: Axis = None,
    keepdim: bool | None = None,
) -> Tensor:
    """Mean over ``axis``/``dim`` (all axes when None); integer tensors average in float32."""
    axis, keepdims = axes_and_keepdims("mean", axis, keepdims, dim, keepdim)
    return Mean(axis, keepdims)(floating(autocast_mode.in_float32(a)))


def _extreme(
    op: str, largest: bool, a: Tensor, axis: Axis, keepdims: bool | None, dim: Any, keepdim: bool | None
) -> Tensor | ReturnTypes:
    if dim is not None and axis is None:
        try:
            dim = operator.index(dim)
        except TypeError:
            raise TypeError(f"{op}: dim= takes one int (for several axes use axis= or amax)") from None
        keepdims = axes_and_keepdims(op, None, keepdims, None, keepdim)[1]
        node = ExtremeDim(dim, keepdims, largest)
        values = node(a)
        return ReturnTypes(values, _wrap(node.indices, values.backend))
    axis, keepdims = axes_and_keepdims(op, axis, keepdims, dim, keepdim)
    return Extreme(axis, keepdims, largest)(a)


def max(  # noqa: A001 (PyTorch's name)
    a: Tensor,
    axis: Axis = None,
    keepdims: bool | None = None,
    *,
    dim: int | None = None,
    keepdim: bool | None = None,
) -> Tensor | ReturnTypes:
    """Maximum over ``axis`` (all axes when None), where tied maxima share the
    gradient equally; or, with ``dim=``, the named pair ``(values, indices)``
    along that dim, where the gradient goes to the index returned (the first
    maximum), as ``torch.max(x, dim)``."""
    return _extreme("max", True, a, axis, keepdims, dim, keepdim)


def min(  # noqa: A001 (PyTorch's name)
    a: Tensor,
    axis: Axis = None,
    keepdims: bool | None = None,
    *,
    dim: int | None = None,
    keepdim: bool | None = None,
) -> Tensor | ReturnTypes:
    """Minimum; see ``max``."""
    return _extreme("min", False, a, axis, keepdims, dim, keepdim)


def _correction(op: str, correction: float | None, unbiased: bool | None, ddof: float | None) -> float:
    given = [v for v in (correction, unbiased, ddof) if v is not None]
    if len(given) > 1:
        raise TypeError(f"{op}: give one of correction=, unbiased= and ddof=")
    if unbiased is not None:
        return 1 if unbiased else 0
    return 1 if not given else given[0]


def var(
    a: Tensor,
    axis: Axis = None,
    keepdims: bool | None = None,
    *,
    dim: Axis = None,
    keepdim: bool | None = None,
    correction: float | None = None,
    unbiased: bool | None = None,
    ddof: float | None = None,
) -> Tensor:
    """Variance over ``axis``/``dim``: Σ(a − mean)² / (N − correction), by default
    unbiased (correction 1, as PyTorch; NumPy's ``ddof=0`` is ``correction=0``
    or ``unbiased=False``)."""
    return _variance("var", a, axis, keepdims, dim, keepdim, correction, unbiased, ddof)


def std(
    a: Tensor,
    axis: Axis = None,
    keepdims: bool | None = None,
    *,
    dim: Axis = None,
    keepdim: bool | None = None,
    correction: float | None = None,
    unbiased: bool | None = None,
    ddof: float | None = None,
) -> Tensor:
    """Standard deviation, √var (see ``var`` for the correction); its gradient is
    inf or nan where it is 0, as PyTorch's."""
    return _variance("std", a, axis, keepdims, dim, keepdim, correction, unbiased, ddof)


def _variance(op: str, a: Tensor, axis: Axis, keepdims: Any, dim: Axis, keepdim: Any, *corrections: Any) -> Tensor:
    """var (op "var") or std ("std"): one Variance op, computed in float32 under autocast."""
    axis, keepdims = axes_and_keepdims(op, axis, keepdims, dim, keepdim)
    a = floating(autocast_mode.in_float32(a))
    return Variance(axis, keepdims, _correction(op, *corrections), root=op == "std")(a)


def argmax(
    a: Tensor, axis: int | None = None, keepdims: bool | None = None, *, dim: int | None = None, keepdim: Any = None
) -> Tensor:
    """The int64 index of the first maximum along ``axis``/``dim`` (of the flattened tensor when None)."""
    return _arg("argmax", a, axis, keepdims, dim, keepdim)


def argmin(
    a: Tensor, axis: int | None = None, keepdims: bool | None = None, *, dim: int | None = None, keepdim: Any = None
) -> Tensor:
    """The int64 index of the first minimum along ``axis``/``dim`` (of the flattened tensor when None)."""
    return _arg("argmin", a, axis, keepdims, dim, keepdim)


def _arg(op: str, a: Tensor, axis: Any, keepdims: Any, dim: Any, keepdim: Any) -> Tensor:
    axis, keepdims = axes_and_keepdims(op, axis, keepdims, dim, keepdim)
    data, xp = a.data, a.backend.xp
    if axis is None or data.ndim == 0:
        out = xp.reshape(getattr(data, op)(), (1,) * data.ndim if keepdims else ())
    else:
        (axis,) = _normalise(operator.index(axis), data.ndim)
        out = getattr(data, op)(axis=axis, keepdims=keepdims)
    return _wrap(xp.asarray(out).astype(dtypes.int64, copy=False), a.backend)
