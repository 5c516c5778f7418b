"""Activations. Each saves only its output: σ′ = s(1 − s), tanh′ = 1 − y², relu′ = [y > 0]
are computed from it by the backend's fused Hadamard step, never by re-running exp."""

from __future__ import annotations

from typing import Any

from gpubp.tensor import Function, Tensor


class _SavedOutputActivation(Function):
    """y = f(x) where f′ is a function of y: the backend computes both."""

    kind: str

    def forward(self, x: Any) -> Any:
        y = getattr(self.backend, self.kind)(x)
        self.save(y)
        return y

    def backward(self, g: Any) -> Any:
        (y,) = self.saved
        return self.backend.activation_backward(g, y, self.kind)


class Sigmoid(_SavedOutputActivation):
    kind = "sigmoid"


class Tanh(_SavedOutputActivation):
    kind = "tanh"


class ReLU(_SavedOutputActivation):
    kind = "relu"


class Softmax(Function):
    def __init__(self, axis: int) -> None:
        self.axis = axis

    def forward(self, x: Any) -> Any:
        xp = self.backend.xp
        y = xp.exp(x - x.max(axis=self.axis, keepdims=True))
        y /= y.sum(axis=self.axis, keepdims=True)
        self.save(y)
        return y

    def backward(self, g: Any) -> Any:
        (y,) = self.saved
        gy = g * y
        gy -= y * gy.sum(axis=self.axis, keepdims=True)
        return gy


class LogSoftmax(Function):
    def __init__(self, axis: int) -> None:
        self.axis = axis

    def forward(self, x: Any) -> Any:
        xp = self.backend.xp
        shifted = x - x.max(axis=self.axis, keepdims=True)
        shifted -= xp.log(xp.exp(shifted).sum(axis=self.axis, keepdims=True))
        self.save(shifted)
        return shifted

    def backward(self, g: Any) -> Any:
        (y,) = self.saved
        return g - self.backend.xp.exp(y) * g.sum(axis=self.axis, keepdims=True)


def sigmoid(x: Tensor) -> Tensor:
    """σ(x) = 1 / (1 + e^(−x)); finite for any input."""
    return Sigmoid()(x)


def tanh(x: Tensor) -> Tensor:
    return Tanh()(x)


def relu(x: Tensor) -> Tensor:
    """max(x, 0)."""
    return ReLU()(x)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x) / Σ exp(x) along ``axis``, shifted by the maximum so it never overflows."""
    return Softmax(axis)(x)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """x − log Σ exp(x) along ``axis``, computed stably."""
    return LogSoftmax(axis)(x)
