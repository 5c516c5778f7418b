"""Ops that pick each entry from one input or another: where, maximum, minimum, clamp.

Each input's gradient is g where its entry was picked, else 0, summed back over
broadcasting; operands are promoted as in the arithmetic ops (``operands.py``).
"""

from __future__ import annotations

from typing import Any

from gpubp.ops.broadcast import sum_to
from gpubp.ops.operands import promote, result_type
from gpubp.tensor import Function, Tensor, _wrap


def _shape(x: Any) -> tuple[int, ...]:
    return getattr(x, "shape", ())


class Where(Function):
    def forward(self, cond: Any, a: Any, b: Any) -> Any:
        self.save(cond)
        self.shapes = _shape(a), _shape(b)
        return self.backend.xp.where(cond, a, b)

    derivatives = {"cond": "none (a condition)", "a": "g where cond, else 0", "b": "g where not cond, else 0"}

    def backward(self, g: Any) -> tuple:
        (cond,) = self.saved
        xp = self.backend.xp
        _, need_a, need_b = self.needs_input_grad
        zero = g.dtype.type(0)
        return (
            None,
            sum_to(xp.where(cond, g, zero), self.shapes[0]) if need_a else None,
            sum_to(xp.where(cond, zero, g), self.shapes[1]) if need_b else None,
        )


class Extremum(Function):
    """maximum(a, b) or minimum(a, b); where a = b each gets half the gradient (PyTorch's rule)."""

    def __init__(self, largest: bool) -> None:
        self.largest = largest

    def forward(self, a: Any, b: Any) -> Any:
        self.save(a, b)
        xp = self.backend.xp
        return xp.maximum(a, b) if self.largest else xp.minimum(a, b)

    derivatives = {"a": "g where a is picked, g/2 at ties", "b": "g where b is picked, g/2 at ties"}

    def backward(self, g: Any) -> tuple:
        a, b = self.saved
        xp = self.backend.xp
        need_a, need_b = self.needs_input_grad
        a_wins = (a > b) if self.largest else (a < b)
        tie = a == b
        half = g * g.dtype.type(0.5)
        zero = g.dtype.type(0)
        return (
            sum_to(xp.where(a_wins, g, xp.where(tie, half, zero)), _shape(a)) if need_a else None,
            sum_to(xp.where(a_wins, zero, xp.where(tie, half, g)), _shape(b)) if need_b else None,
        )


class Clamp(Function):
    """min(max(a, low), high), with low and/or high a tensor or a number. As
    PyTorch: a gets g where low ≤ a ≤ high; low gets it where a < low (and low <
    high); high where a > high (or high < low, where the result is high)."""

    def forward(self, a: Any, low: Any, high: Any) -> Any:
        self.save(a, low, high)
        xp = self.backend.xp
        out = a
        if low is not None:
            out = xp.maximum(out, low)
        if high is not None:
            out = xp.minimum(out, high)
        return out

    derivatives = {"a": "g where low ≤ a ≤ high", "low": "g where a < low", "high": "g where a > high"}

    def backward(self, g: Any) -> tuple:
        a, low, high = self.saved
        xp = self.backend.xp
        need_a, need_low, need_high = self.needs_input_grad
        zero = g.dtype.type(0)
        ga = glow = ghigh = None
        if need_a:
            inside = True
            if low is not None:
                inside = a >= low
            if high is not None:
                inside = inside & (a <= high)
            ga = sum_to(xp.where(inside, g, zero), a.shape)
        if need_low:
            below = a < low
            if high is not None:
                below = below & (low < high)
            glow = sum_to(xp.where(below, g, zero), _shape(low))
        if need_high:
            above = a > high
            if low is not None:
                above = above | (high < low)
            ghigh = sum_to(xp.where(above, g, zero), _shape(high))
        return ga, glow, ghigh


def where(condition: Any, a: Any, b: Any) -> Tensor:
    """a where ``condition`` else b, broadcast together; differentiable in a and b.
    ``condition`` is a bool tensor (or array, or list) on the operands' device;
    a and b may be tensors or numbers, promoted as in arithmetic (two numbers
    give their promoted dtype: ``where(c, 1, 2.5)`` is float32)."""
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        if not isinstance(condition, Tensor):
            raise TypeError("where: the condition, a or b must be a Tensor")
        from gpubp.creation import full

        a = full((), a, dtype=result_type(a, b), device=condition.device)
    a, b = promote("where", a, b)
    like = a if isinstance(a, Tensor) else b
    if not isinstance(condition, Tensor):
        condition = _condition(condition, like)
    if condition.dtype.kind != "b":
        raise TypeError(f"where: the condition must be a bool tensor, got {condition.dtype}")
    return Where()(condition, a, b)


def _condition(condition: Any, like: Tensor) -> Tensor:
    """A condition given as an array or list, as a tensor on like's device (no hidden copy to a GPU)."""
    if isinstance(condition, like.backend.array_type):
        return _wrap(condition, like.backend)
    if like.device != "cpu":
        raise ValueError(
            f"where: the condition is a {type(condition).__name__} but the operands are on {like.device}; "
            f"make it a tensor there with gp.tensor(condition, device='{like.device}')"
        )
    from gpubp.creation import tensor

    return tensor(condition)


def maximum(a: Any, b: Any) -> Tensor:
    """The elementwise maximum; tied entries give each input half the gradient (as torch.maximum)."""
    return Extremum(True)(*promote("maximum", a, b))


def minimum(a: Any, b: Any) -> Tensor:
    """The elementwise minimum; tied entries give each input half the gradient (as torch.minimum)."""
    return Extremum(False)(*promote("minimum", a, b))


def clamp(a: Tensor, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002 (PyTorch's names)
    """Entries of ``a`` limited to [min, max] (either may be None, a number or a
    tensor broadcast against a); where min > max the result is max, as PyTorch."""
    if min is None and max is None:
        raise ValueError("clamp: give min, max or both")
    given = [v for v in (min, max) if v is not None]
    promoted = promote("clamp", a, *given)
    a = promoted[0]
    low = promoted[1] if min is not None else None
    high = promoted[-1] if max is not None else None
    return Clamp()(a, low, high)
