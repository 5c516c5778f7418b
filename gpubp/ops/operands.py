"""What may stand beside a Tensor in an op: another Tensor, or a Python number."""

from __future__ import annotations

from typing import Any

import numpy as np

from gpubp.tensor import Tensor, _wrap


def operand(value: Any, like: Tensor, op: str, *, to_device: bool = False) -> Tensor | int | float:
    """``value`` as an op input next to ``like``: Tensors pass through (their dtype
    must match), Python and NumPy scalars stay scalars (so float32 stays float32),
    and array-likes become constant tensors (a NumPy array keeps its dtype, a list
    takes like's) on the CPU only: no hidden copies to a GPU. With ``to_device`` (a
    loss's target) they are copied to like's device instead, and an array already
    there is used as is."""
    if isinstance(value, Tensor):
        if value.dtype != like.dtype:
            raise TypeError(
                f"{op}: dtype mismatch ({like.dtype} and {value.dtype}); convert one explicitly with .to(dtype=...)"
            )
        return value
    if isinstance(value, np.generic):  # before float: np.float64 subclasses float
        return value.item()
    if isinstance(value, (bool, int, float)):
        return value
    if like.device != "cpu":
        if not to_device:
            raise ValueError(
                f"{op}: cannot combine a {type(value).__name__} with a tensor on {like.device} without a "
                f"host-to-device copy; make it a tensor first with gp.tensor(value, device='{like.device}')"
            )
        if isinstance(value, like.backend.array_type):
            return operand(_wrap(value, like.backend), like, op)
    from gpubp.creation import tensor

    array = np.asarray(value)
    constant = tensor(array, dtype=like.dtype if not isinstance(value, np.ndarray) else None, device=like.backend)
    return operand(constant, like, op)


def binary(op: str, a: Any, b: Any) -> tuple[Any, Any]:
    """Both operands of a binary op; at least one of them is a Tensor."""
    if isinstance(a, Tensor):
        return a, operand(b, a, op)
    return operand(a, b, op), b
