"""Ops that move entries around without changing them: reshape and its
spellings (view, flatten, squeeze, unsqueeze), permute and transpose, indexing,
index assignment (the differentiable form of ``x[i] = v``) and clone.

Reshape (when it needs no copy), permute and basic indexing return views: the
result shares the input's memory and in-place version counter, and remembers
its base and the view ops taken from it (``Tensor._view``; each has a ``view``
method that replays it on an array), so that an in-place change through the
view is recorded on the base too (``gpubp/ops/inplace.py``).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from gpubp.ops.broadcast import sum_to
from gpubp.tensor import Function, Tensor, _index_arrays, _wrap


def _shape_args(args: tuple) -> tuple:
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    return tuple(operator.index(n) for n in args)


def _dim(dim: Any, ndim: int) -> int:
    """``dim`` (any integer type, negative from the end) as an axis of an ndim-dimensional tensor."""
    d = operator.index(dim)
    if not -max(ndim, 1) <= d < max(ndim, 1):
        raise IndexError(f"dim {d} is out of range for a tensor of {ndim} dimensions")
    return d % max(ndim, 1)


def _is_view(out: Any, a: Any, xp: Any) -> bool:
    """Whether ``out`` (computed from ``a`` by a reshape) shares a's memory."""
    base = out.base
    if base is None:
        return False
    if base is a or (a.base is not None and base is a.base):
        return True
    return bool(xp.may_share_memory(out, a))


class Reshape(Function):
    handles_bfloat16 = True  # moves values, never computes with them
    shares_memory = True

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def forward(self, a: Any) -> Any:
        self.in_shape = a.shape
        out = a.reshape(self.shape)
        self.shares_memory = _is_view(out, a, self.backend.xp)  # a reshape that had to copy is no view
        return out

    def view(self, a: Any) -> Any:
        return a.reshape(self.shape)

    derivatives = {"a": "· 1, reshaped back to {in_shape}"}

    def backward(self, g: Any) -> Any:
        return g.reshape(self.in_shape)


class Permute(Function):
    handles_bfloat16 = True  # moves values, never computes with them
    shares_memory = True

    def __init__(self, axes: Sequence[int] | None) -> None:
        self.axes = axes

    def forward(self, a: Any) -> Any:
        if self.axes is None:
            axes = tuple(range(a.ndim))[::-1]
        else:
            axes = tuple(operator.index(x) for x in self.axes)
            if len(axes) != a.ndim or sorted(x % max(a.ndim, 1) for x in axes) != list(range(a.ndim)):
                raise ValueError(f"dims {axes} are not a permutation of a {a.ndim}-dimensional tensor's dims")
            axes = tuple(x % a.ndim for x in axes)
        self.resolved = axes
        self.inverse = tuple(sorted(range(a.ndim), key=lambda i: axes[i]))
        return a.transpose(axes)

    def view(self, a: Any) -> Any:
        return a.transpose(self.resolved)

    derivatives = {"a": "· 1, permuted back by {inverse}"}

    def backward(self, g: Any) -> Any:
        return g.transpose(self.inverse)


class GetItem(Function):
    shares_memory = True

    def __init__(self, index: Any) -> None:
        self.index = index
        parts = index if isinstance(index, tuple) else (index,)
        # Integer and boolean arrays (and bools) make NumPy copy: such a result is no view.
        self.shares_memory = not any(isinstance(p, bool) or hasattr(p, "shape") for p in parts)
        # Integer arrays may repeat an entry, whose gradients must add up (plain assignment would keep one).
        self.accumulate = any(getattr(p, "dtype", None) is not None and p.dtype.kind in "iu" for p in parts)

    def forward(self, a: Any) -> Any:
        self.in_shape, self.dtype = a.shape, a.dtype
        return a[self.index]

    def view(self, a: Any) -> Any:
        return a[self.index]

    derivatives = {"a": "g at [index] (repeats add up), 0 elsewhere"}

    def backward(self, g: Any) -> Any:
        xp = self.backend.xp
        grad = xp.zeros(self.in_shape, dtype=self.dtype)
        if self.accumulate:
            xp.add.at(grad, self.index, g)
        else:
            grad[self.index] = g
        return grad


class SetItem(Function):
    """``out = a`` with ``out[index] = value``: the gradient of a is g with the
    written entries zeroed, the value's is g[index] summed to its shape."""

    def __init__(self, index: Any) -> None:
        self.index = index

    def forward(self, a: Any, value: Any) -> Any:
        self.value_shape = getattr(value, "shape", ())
        out = a.copy()
        out[self.index] = value
        return out

    derivatives = {"a": "g, 0 at [index]", "value": "g[index] (Σ to value's shape)"}

    def backward(self, g: Any) -> tuple:
        need_a, need_value = self.needs_input_grad
        ga = gv = None
        if need_a:
            ga = g.copy()
            ga[self.index] = 0
        if need_value:
            region = g[self.index]
            shape = self.value_shape
            if len(shape) > region.ndim:  # NumPy drops a value's leading 1s when assigning
                region = region.reshape((1,) * (len(shape) - region.ndim) + region.shape)
            gv = sum_to(region, shape)
            gv = gv.copy() if gv.base is not None else gv  # a region of g is a view of it
        return ga, gv


class Clone(Function):
    handles_bfloat16 = True  # copies values, never computes with them

    def forward(self, a: Any) -> Any:
        return a.copy()

    derivatives = {"a": "· 1"}

    def backward(self, g: Any) -> Any:
        return g


def reshape(a: Tensor, *shape: int | Sequence[int]) -> Tensor:
    """The same entries in a new shape (one dimension may be -1); a view when no copy is needed."""
    return Reshape(_shape_args(shape))(a)


def view(a: Tensor, *shape: int | Sequence[int]) -> Tensor:
    """``reshape`` that must not copy (a RuntimeError when the memory layout needs one, as PyTorch's view)."""
    out = reshape(a, *shape)
    if out.data.size and not _is_view(out.data, a.data, a.backend.xp):
        raise RuntimeError(
            f"view: a tensor of shape {a.shape} and strides {a.data.strides} cannot be viewed as {out.shape} "
            "without a copy; use .reshape(...)"
        )
    return out


def flatten(a: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Dims start_dim … end_dim merged into one (all of them by default); a 0-d tensor becomes 1-d."""
    if a.ndim == 0:
        return reshape(a, 1)
    start, end = _dim(start_dim, a.ndim), _dim(end_dim, a.ndim)
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    return reshape(a, *a.shape[:start], -1, *a.shape[end + 1 :])


def squeeze(a: Tensor, dim: int | Sequence[int] | None = None) -> Tensor:
    """Drops dims of size 1 (only those of ``dim`` when given; a named dim of
    another size is left as is, as PyTorch)."""
    if dim is None:
        dims = {i for i, n in enumerate(a.shape) if n == 1}
    else:
        named = (dim,) if not isinstance(dim, (tuple, list)) else dim
        dims = {_dim(d, a.ndim) for d in named}
        dims = {d for d in dims if a.ndim and a.shape[d] == 1}
    return reshape(a, *[n for i, n in enumerate(a.shape) if i not in dims])


def unsqueeze(a: Tensor, dim: int) -> Tensor:
    """A new dim of size 1 at ``dim`` (negative counts from the end of the result)."""
    d = _dim(dim, a.ndim + 1)
    return reshape(a, *a.shape[:d], 1, *a.shape[d:])


def permute(a: Tensor, *dims: int | Sequence[int]) -> Tensor:
    """The dims reordered: result dim i is input dim ``dims[i]`` (a view)."""
    return Permute(_shape_args(dims))(a)


def transpose(a: Tensor, dim0: int, dim1: int) -> Tensor:
    """Dims ``dim0`` and ``dim1`` swapped (PyTorch's transpose; negative dims count from the end)."""
    axes = list(range(a.ndim))
    d0, d1 = _dim(dim0, a.ndim), _dim(dim1, a.ndim)
    if a.ndim == 0:
        return permute(a)
    axes[d0], axes[d1] = axes[d1], axes[d0]
    return Permute(tuple(axes))(a)


def t(a: Tensor) -> Tensor:
    """The transpose of a matrix; a 0-d or 1-d tensor as it is (PyTorch's ``t``)."""
    if a.ndim > 2:
        raise ValueError(f"t() expects a tensor of at most 2 dimensions, got {a.ndim}; use transpose(d0, d1)")
    return Permute(None)(a)


def reverse_dims(a: Tensor) -> Tensor:
    """All dims reversed (``.T``)."""
    return Permute(None)(a)


def getitem(a: Tensor, index: Any) -> Tensor:
    """``a[index]`` with ints, slices, None, Ellipsis, integer or boolean arrays,
    lists and tuples of them (a tuple or list inside an index is an integer array,
    as in NumPy and PyTorch); repeated integer indices accumulate their gradients."""
    index = _index_arrays(index, a)
    try:
        return GetItem(index)(a)
    except IndexError as err:
        raise IndexError(f"index {index!r} is out of range for a tensor of shape {a.shape}: {err}") from None


def setitem(a: Tensor, index: Any, value: Any) -> Tensor:
    """A copy of ``a`` with ``[index]`` set to ``value`` (broadcast), differentiable
    in both; ``Tensor.__setitem__`` records this for ``a[index] = value``."""
    from gpubp.ops.convert import cast
    from gpubp.ops.operands import constant

    index = _index_arrays(index, a)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, a.backend.array_type):
        value = _wrap(value, a.backend)  # already on a's device
    if isinstance(value, Tensor):
        value = cast(value, a.dtype)
    elif not isinstance(value, (bool, int, float)):
        value = cast(constant(value, a, "setitem"), a.dtype)
    try:
        return SetItem(index)(a, value)
    except IndexError as err:
        raise IndexError(f"index {index!r} is out of range for a tensor of shape {a.shape}: {err}") from None


def clone(a: Tensor) -> Tensor:
    """A copy with its own memory; the gradient passes through unchanged."""
    return Clone()(a)
