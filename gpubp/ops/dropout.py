"""Inverted dropout: zero each entry with probability p and scale the rest by 1/(1 − p)."""

from __future__ import annotations

from typing import Any

from gpubp.tensor import Function, Tensor


class Dropout(Function):
    handles_bfloat16 = True  # the backend's dropout kernels (and float32 twins) take 16-bit floats

    def __init__(self, p: float) -> None:
        self.p = p

    def forward(self, x: Any) -> Any:
        y, mask = self.backend.dropout_forward(x, self.p)
        self.save(mask)  # the mask, or what the backend needs to draw it again
        return y

    derivatives = {"x": "⊙ mask/(1 − {p})"}

    def backward(self, g: Any) -> Any:
        (mask,) = self.saved
        return self.backend.dropout_backward(g, mask)


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """During training, keeps each entry with probability 1 − p and divides it by
    1 − p, so that evaluation (``training=False``) is the identity."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    return Dropout(p)(x)
