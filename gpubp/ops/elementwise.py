"""Arithmetic: + − × ÷ ** and negation, exp and log, with NumPy broadcasting.

Python scalars may stand on either side; they are constants and get no gradient.
"""

from __future__ import annotations

import math
from typing import Any

from gpubp.ops.broadcast import sum_to
from gpubp.ops.operands import binary
from gpubp.tensor import Function, Tensor


def _shape(x: Any) -> tuple[int, ...] | None:
    return getattr(x, "shape", None)


class Add(Function):
    def forward(self, a: Any, b: Any) -> Any:
        self.shapes = _shape(a), _shape(b)
        return a + b

    def backward(self, g: Any) -> tuple:
        need_a, need_b = self.needs_input_grad
        return (
            sum_to(g, self.shapes[0]) if need_a else None,
            sum_to(g, self.shapes[1]) if need_b else None,
        )


class Sub(Function):
    def forward(self, a: Any, b: Any) -> Any:
        self.shapes = _shape(a), _shape(b)
        return a - b

    def backward(self, g: Any) -> tuple:
        need_a, need_b = self.needs_input_grad
        return (
            sum_to(g, self.shapes[0]) if need_a else None,
            -sum_to(g, self.shapes[1]) if need_b else None,
        )


class Mul(Function):
    def forward(self, a: Any, b: Any) -> Any:
        self.save(a, b)
        return a * b

    def backward(self, g: Any) -> tuple:
        a, b = self.saved
        need_a, need_b = self.needs_input_grad
        return (
            sum_to(g * b, a.shape) if need_a else None,
            sum_to(g * a, b.shape) if need_b else None,
        )


class Div(Function):
    def forward(self, a: Any, b: Any) -> Any:
        self.save(a, b)
        return a / b

    def backward(self, g: Any) -> tuple:
        a, b = self.saved
        need_a, need_b = self.needs_input_grad
        g_over_b = g / b
        return (
            sum_to(g_over_b, a.shape) if need_a else None,
            sum_to(-g_over_b * a / b, b.shape) if need_b else None,
        )


class Pow(Function):
    def forward(self, a: Any, b: Any) -> Any:
        out = a**b
        self.save(a, b, out)
        return out

    def backward(self, g: Any) -> tuple:
        a, b, out = self.saved
        need_a, need_b = self.needs_input_grad
        ga = gb = None
        if need_a:
            ga = sum_to(g * b * a ** (b - 1), a.shape)
        if need_b:
            log_a = math.log(a) if isinstance(a, (int, float)) else self.backend.xp.log(a)
            gb = sum_to(g * out * log_a, b.shape)
        return ga, gb


class Neg(Function):
    def forward(self, a: Any) -> Any:
        return -a

    def backward(self, g: Any) -> Any:
        return -g


class Exp(Function):
    def forward(self, a: Any) -> Any:
        out = self.backend.xp.exp(a)
        self.save(out)
        return out

    def backward(self, g: Any) -> Any:
        (out,) = self.saved
        return g * out


class Log(Function):
    def forward(self, a: Any) -> Any:
        self.save(a)
        return self.backend.xp.log(a)

    def backward(self, g: Any) -> Any:
        (a,) = self.saved
        return g / a


def add(a: Any, b: Any) -> Tensor:
    """a + b with broadcasting."""
    return Add()(*binary("add", a, b))


def sub(a: Any, b: Any) -> Tensor:
    """a − b with broadcasting."""
    return Sub()(*binary("sub", a, b))


def mul(a: Any, b: Any) -> Tensor:
    """a ⊙ b (elementwise) with broadcasting."""
    return Mul()(*binary("mul", a, b))


def div(a: Any, b: Any) -> Tensor:
    """a / b (elementwise) with broadcasting."""
    return Div()(*binary("div", a, b))


def pow(a: Any, b: Any) -> Tensor:  # noqa: A001 (mirrors the operator's name)
    """a ** b (elementwise); the gradient for b needs a > 0."""
    return Pow()(*binary("pow", a, b))


def neg(a: Tensor) -> Tensor:
    return Neg()(a)


def exp(a: Tensor) -> Tensor:
    """e^a; backward reuses the saved output."""
    return Exp()(a)


def log(a: Tensor) -> Tensor:
    """Natural logarithm."""
    return Log()(a)
