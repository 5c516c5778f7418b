"""What may stand beside a Tensor in an op (another Tensor, a Python number, an
array-like), and which dtype the op computes in: PyTorch's type promotion.

The rule (``result_type``), as PyTorch's:

- dtypes rank by category, bool < integer < floating; within a category the
  wider type wins (uint8 + int32 → int32, float16 + float32 → float32), and
  across categories the higher category's type wins as is (int64 + float16 →
  float16, bool + int32 → int32);
- tensors with dimensions decide; a 0-d tensor only counts when its category is
  higher than theirs (float32 (3,) + float64 () → float32, but int64 (3,) +
  float64 () → float64);
- Python and NumPy scalars count last, and only by category: a float next to an
  integer or bool tensor gives the default float, float32 (int tensor · 2.5 →
  float32); next to a float tensor it changes nothing (float16 + 1.0 → float16);
  an int next to a bool tensor gives int64.

Operands whose dtype differs from the result's are cast by a recorded ``Cast``,
so their gradients flow back in their own dtype. Same-dtype operands (all
float32 code) take a fast path: one dtype comparison, no cast, no new node.
Ops that are defined only on floats (division, exp, log, sqrt) compute integer
and bool inputs in float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpubp import dtypes
from gpubp.tensor import Tensor, _wrap

_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2}
_SCALAR_DTYPE = {bool: dtypes.bool_, int: dtypes.int64, float: dtypes.DEFAULT_FLOAT}


def promote_types(a: np.dtype, b: np.dtype) -> np.dtype:
    """The dtype two tensor dtypes combine to (``torch.promote_types``)."""
    if a == b:
        return a
    ca, cb = _CATEGORY[dtypes.kind(a)], _CATEGORY[dtypes.kind(b)]
    if ca != cb:
        return a if ca > cb else b
    if dtypes.bfloat16 in (a, b):  # NumPy has no rule for it; PyTorch's: float16 with bfloat16 is float32
        other = b if a == dtypes.bfloat16 else a
        return dtypes.float32 if other == dtypes.float16 else other
    return np.promote_types(a, b)  # same category: NumPy agrees with PyTorch on the supported dtypes


def _scalar_dtype(value: Any) -> np.dtype | None:
    if isinstance(value, (bool, np.bool_)):
        return dtypes.bool_
    if isinstance(value, (int, np.integer)):
        return dtypes.int64
    if isinstance(value, (float, np.floating)):
        return dtypes.DEFAULT_FLOAT
    return None


def result_type(*operands: Any) -> np.dtype:
    """The dtype an op on ``operands`` (Tensors and scalars, at least one Tensor)
    computes in; see the module docstring for the rule."""
    dims = zero = scalar = None
    for value in operands:
        if isinstance(value, Tensor):
            dtype = value.dtype
            if value.data.ndim:
                dims = dtype if dims is None else promote_types(dims, dtype)
            else:
                zero = dtype if zero is None else promote_types(zero, dtype)
        else:
            dtype = _scalar_dtype(value)
            if dtype is not None:
                scalar = dtype if scalar is None else promote_types(scalar, dtype)
    result = dims
    for lower in (zero, scalar):
        if lower is not None and (result is None or _CATEGORY[dtypes.kind(lower)] > _CATEGORY[dtypes.kind(result)]):
            result = lower if result is None else promote_types(result, lower)
    if result is None:
        raise TypeError("result_type needs at least one Tensor or number")
    return result


def promote(op: str, *operands: Any, floating: bool = False) -> tuple[Any, ...]:
    """``operands`` (Tensors, numbers and array-likes, at least one Tensor) made
    ready for one op: array-likes become constant tensors beside the first
    Tensor, and tensors of another dtype than the result's are cast (recorded, so
    gradients return in each input's dtype). ``floating`` makes an integer or
    bool result float32. Numbers stay numbers."""
    like = next(v for v in operands if isinstance(v, Tensor))
    values = tuple(v if isinstance(v, Tensor) else _scalar_or_constant(v, like, op) for v in operands)
    target = result_type(*values)
    if floating and dtypes.kind(target) != "f":
        target = dtypes.DEFAULT_FLOAT
    from gpubp.ops.convert import cast

    return tuple(cast(v, target) if isinstance(v, Tensor) and v.dtype != target else v for v in values)


def _scalar_or_constant(value: Any, like: Tensor, op: str) -> Any:
    if isinstance(value, np.generic):  # before float: np.float64 subclasses float
        return value.item()
    if isinstance(value, (bool, int, float)):
        return value
    return constant(value, like, op)


def constant(value: Any, like: Tensor, op: str, *, to_device: bool = False) -> Tensor:
    """An array-like as a constant tensor beside ``like``: a NumPy array keeps its
    dtype, a list takes like's; on the CPU only (no hidden copies to a GPU) unless
    ``to_device``, which copies it to like's device (an array already there is
    used as is)."""
    if like.device != "cpu":
        if not to_device:
            raise ValueError(
                f"{op}: cannot combine a {type(value).__name__} with a tensor on {like.device} without a "
                f"host-to-device copy; make it a tensor first with gp.tensor(value, device='{like.device}')"
            )
        if isinstance(value, like.backend.array_type):
            return _wrap(value, like.backend)
    from gpubp.creation import tensor

    array = np.asarray(value)
    return tensor(array, dtype=like.dtype if not isinstance(value, np.ndarray) else None, device=like.backend)


def operand(value: Any, like: Tensor, op: str, *, to_device: bool = False) -> Tensor | int | float:
    """``value`` as an input of an op that needs like's dtype exactly (the losses,
    matmul): Tensors pass through (their dtype must match), Python and NumPy
    scalars stay scalars (so float32 stays float32), and array-likes become
    constant tensors (see ``constant``)."""
    if isinstance(value, Tensor):
        if value.dtype != like.dtype:
            raise TypeError(
                f"{op}: dtype mismatch ({like.dtype} and {value.dtype}); convert one explicitly with .to(dtype=...)"
            )
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bool, int, float)):
        return value
    return operand(constant(value, like, op, to_device=to_device), like, op)


def binary(op: str, a: Any, b: Any, *, floating: bool = False) -> tuple[Any, Any]:
    """Both operands of a binary op (at least one of them a Tensor), promoted to
    the dtype the op computes in (see the module docstring)."""
    # The fast path, taken by all same-dtype code: two tensors of one dtype, or a
    # float tensor and a Python number. Everything else goes through ``promote``.
    if isinstance(a, Tensor):
        kind = a.data.dtype.kind
        if isinstance(b, Tensor):
            if a.data.dtype is b.data.dtype and not (floating and kind != "f"):
                return a, b
        elif kind == "f" and type(b) in (float, int):
            return a, b
    elif isinstance(b, Tensor) and b.data.dtype.kind == "f" and type(a) in (float, int):
        return a, b
    return promote(op, a, b, floating=floating)  # type: ignore[return-value]


def floating(a: Tensor) -> Tensor:
    """``a`` itself when it is floating, else cast to float32 (for exp, log, sqrt
    and other ops defined only on floats, as PyTorch computes them)."""
    if a.data.dtype.kind == "f" or a.dtype == dtypes.bfloat16:
        return a
    from gpubp.ops.convert import cast

    return cast(a, dtypes.DEFAULT_FLOAT)
