"""Arithmetic: + − × ÷ ** and negation, exp, log, sqrt and abs, with NumPy broadcasting.

Python scalars may stand on either side; they are constants and get no gradient.
Operands of different dtypes are promoted as PyTorch does (``operands.py``);
division, exp, log and sqrt compute integer inputs in float32.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gpubp import autocast_mode
from gpubp.ops.broadcast import sum_to
from gpubp.ops.operands import binary, floating
from gpubp.tensor import Function, Tensor


def _shape(x: Any) -> tuple[int, ...] | None:
    return getattr(x, "shape", None)


class Add(Function):
    def forward(self, a: Any, b: Any) -> Any:
        self.shapes = _shape(a), _shape(b)
        return a + b

    # Every binary op sums its gradients over the axes it broadcast (sum_to), hence "Σ to a's shape".
    derivatives = {"a": "· 1 (Σ to a's shape)", "b": "· 1 (Σ to b's shape)"}

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

    derivatives = {"a": "· 1 (Σ to a's shape)", "b": "· (−1) (Σ to b's shape)"}

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

    derivatives = {"a": "⊙ b (Σ to a's shape)", "b": "⊙ a (Σ to b's shape)"}

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

    derivatives = {"a": "/ b (Σ to a's shape)", "b": "⊙ (−a / b²) (Σ to b's shape)"}

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
        with np.errstate(divide="ignore", invalid="ignore"):  # 0 ** -1 = inf, (-8) ** 0.5 = nan, as PyTorch
            out = a**b
        self.save(a, b, out)
        return out

    derivatives = {"a": "⊙ b·a^(b−1) (0 where b = 0)", "b": "⊙ a^b · ln a (0 where a = 0, b ≥ 0)"}

    def backward(self, g: Any) -> tuple:
        # PyTorch's conventions where the formulas meet 0·∞ or log 0: d/da is 0
        # wherever b = 0 (also at a = 0), and d/db is 0 wherever a = 0 and b ≥ 0.
        # A negative base gives nan for d/db (log of a negative number), as PyTorch.
        a, b, out = self.saved
        xp = self.backend.xp
        need_a, need_b = self.needs_input_grad
        ga = gb = None
        with np.errstate(divide="ignore", invalid="ignore"):
            if need_a:
                if isinstance(b, (int, float)):
                    ga = xp.zeros_like(a) if b == 0 else g * b * a ** (b - 1)
                else:
                    ga = sum_to(xp.where(b == 0, _zero(g), g * b * a ** (b - 1)), a.shape)
            if need_b:
                if isinstance(a, (int, float)):
                    log_a = math.log(a) if a > 0 else (-math.inf if a == 0 else math.nan)
                    gb = g * out * log_a
                    if a == 0:
                        gb = xp.where(b >= 0, _zero(g), gb)
                else:
                    gb = sum_to(xp.where((a == 0) & (b >= 0), _zero(g), g * out * xp.log(a)), b.shape)
        return ga, gb


def _zero(like: Any) -> Any:
    return like.dtype.type(0)  # a scalar of like's dtype: xp.where keeps that dtype on NumPy and CuPy


class Neg(Function):
    def forward(self, a: Any) -> Any:
        return -a

    derivatives = {"a": "· (−1)"}

    def backward(self, g: Any) -> Any:
        return -g


class Exp(Function):
    def forward(self, a: Any) -> Any:
        out = self.backend.xp.exp(a)
        self.save(out)
        return out

    derivatives = {"a": "⊙ eᵃ (the saved output)"}

    def backward(self, g: Any) -> Any:
        (out,) = self.saved
        return g * out


class Log(Function):
    def forward(self, a: Any) -> Any:
        self.save(a)
        return self.backend.xp.log(a)

    derivatives = {"a": "/ a"}

    def backward(self, g: Any) -> Any:
        (a,) = self.saved
        return g / a


class Sqrt(Function):
    def forward(self, a: Any) -> Any:
        out = self.backend.xp.sqrt(a)
        self.save(out)
        return out

    derivatives = {"a": "/ (2√a)"}

    def backward(self, g: Any) -> Any:
        (out,) = self.saved
        return g / (2 * out)  # ∞ at 0, as PyTorch


class Abs(Function):
    def forward(self, a: Any) -> Any:
        self.save(a)
        return self.backend.xp.abs(a)

    derivatives = {"a": "⊙ sign(a)"}

    def backward(self, g: Any) -> Any:
        (a,) = self.saved
        return g * self.backend.xp.sign(a)  # 0 at 0, as PyTorch


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
    """a / b (elementwise, true division) with broadcasting; integers divide in float32."""
    return Div()(*binary("div", a, b, floating=True))


def pow(a: Any, b: Any) -> Tensor:  # noqa: A001 (mirrors the operator's name)
    """a ** b (elementwise). Gradients follow PyTorch at the edges: 0 for a where
    b = 0, 0 for b where a = 0 and b ≥ 0, nan for b where a < 0."""
    return Pow()(*binary("pow", autocast_mode.in_float32(a), autocast_mode.in_float32(b)))


def neg(a: Tensor) -> Tensor:
    """−a."""
    return Neg()(a)


def exp(a: Tensor) -> Tensor:
    """e^a; backward reuses the saved output."""
    return Exp()(floating(autocast_mode.in_float32(a)))


def log(a: Tensor) -> Tensor:
    """Natural logarithm."""
    return Log()(floating(autocast_mode.in_float32(a)))


def sqrt(a: Tensor) -> Tensor:
    """√a; backward reuses the saved output (its gradient is ∞ at 0, as PyTorch's)."""
    return Sqrt()(floating(a))


def abs(a: Tensor) -> Tensor:  # noqa: A001 (PyTorch's name)
    """|a|; the gradient at 0 is 0, as PyTorch's."""
    return Abs()(a)
