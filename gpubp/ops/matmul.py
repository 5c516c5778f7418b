"""Matrix product with NumPy's ``@`` semantics (1-D operands, broadcast batches)."""

from __future__ import annotations

from typing import Any

from gpubp import autocast_mode
from gpubp.ops.broadcast import sum_to
from gpubp.ops.convert import cast
from gpubp.ops.operands import operand
from gpubp.tensor import Function, Tensor


class MatMul(Function):
    def forward(self, a: Any, b: Any) -> Any:
        self.save(a, b)
        if a.ndim == 2 and b.ndim == 2:
            return self.backend.matmul(a, b)
        return a @ b

    derivatives = {"a": "g · bᵀ", "b": "aᵀ · g"}

    def backward(self, g: Any) -> tuple:
        a, b = self.saved
        need_a, need_b = self.needs_input_grad
        if a.ndim == 2 and b.ndim == 2:
            matmul = self.backend.matmul
            return (matmul(g, b.T) if need_a else None, matmul(a.T, g) if need_b else None)
        # Promote 1-D operands to matrices as @ does, then undo it on the gradients.
        xp = self.backend.xp
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        if a.ndim == 1 and b.ndim == 1:
            g2 = g.reshape(1, 1)
        elif a.ndim == 1:
            g2 = xp.expand_dims(g, -2)
        elif b.ndim == 1:
            g2 = xp.expand_dims(g, -1)
        else:
            g2 = g
        ga = gb = None
        if need_a:
            ga = sum_to(g2 @ xp.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
        if need_b:
            gb = sum_to(xp.swapaxes(a2, -1, -2) @ g2, b2.shape).reshape(b.shape)
        return ga, gb


def matmul(a: Any, b: Any) -> Tensor:
    """a @ b. Raises ValueError naming both shapes when the inner dimensions differ,
    and TypeError when the dtypes differ (as PyTorch's matmul: no promotion here)."""
    a, b = (a, operand(b, a, "matmul")) if isinstance(a, Tensor) else (operand(a, b, "matmul"), b)
    a_shape, b_shape = getattr(a, "shape", ()), getattr(b, "shape", ())
    if len(a_shape) == 0 or len(b_shape) == 0:
        raise ValueError(f"matmul: both operands need at least one dimension, got shapes {a_shape} and {b_shape}")
    inner_a = a_shape[-1]
    inner_b = b_shape[-2] if len(b_shape) > 1 else b_shape[0]
    if inner_a != inner_b:
        raise ValueError(
            f"matmul: shapes {a_shape} and {b_shape} are not aligned: "
            f"{inner_a} (last dim of a) != {inner_b} ({'second-to-last' if len(b_shape) > 1 else 'only'} dim of b)"
        )
    if autocast_mode._active is not None:
        low = autocast_mode.low_dtype(a, b)
        if low is not None:
            a, b = cast(a, low), cast(b, low)
    op = MatMul()
    # A 2-D product is the backend's GEMM, which takes bfloat16 (float32 accumulation).
    op.handles_bfloat16 = len(a_shape) == 2 and len(b_shape) == 2
    return op(a, b)
