"""The fused layer y = act(x Wᵀ + b): one GEMM plus one elementwise pass each way.

Backward is the four BP equations: δ = g ⊙ act′ (from the saved output),
∂W = δᵀ x, ∂b = Σ δ over the batch, ∂x = δ W.
"""

from __future__ import annotations

from typing import Any

from gpubp.backends.base import ACTIVATIONS
from gpubp.tensor import Function, Tensor


class Linear(Function):
    def __init__(self, activation: str | None) -> None:
        self.activation = activation

    def forward(self, x: Any, weight: Any, bias: Any = None) -> Any:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x
        y = self.backend.bias_activation(x2 @ weight.T, bias, self.activation)
        self.save(x, weight, y)
        return y.reshape(*lead, weight.shape[0]) if x.ndim != 2 else y

    def backward(self, g: Any) -> tuple:
        x, weight, y = self.saved
        need_x, need_w = self.needs_input_grad[:2]
        need_b = len(self.needs_input_grad) > 2 and self.needs_input_grad[2]
        x2 = x.reshape(-1, x.shape[-1])
        g2 = g.reshape(-1, weight.shape[0])
        delta = self.backend.activation_backward(g2, y.reshape(g2.shape), self.activation)
        return (
            (delta @ weight).reshape(x.shape) if need_x else None,
            delta.T @ x2 if need_w else None,
            delta.sum(axis=0) if need_b else None,
        )


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None) -> Tensor:
    """act(x @ weight.T + bias) for x of shape (..., in), weight (out, in), bias (out,).

    ``activation`` is None, "sigmoid", "tanh" or "relu".
    """
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(f"linear: unknown activation {activation!r}; use one of {ACTIVATIONS} or None")
    if not isinstance(x, Tensor):
        raise TypeError(f"linear: input must be a Tensor, got {type(x).__name__}")
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out, in), got shape {weight.shape}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input has {x.shape[-1] if x.ndim else 0} features (shape {x.shape}) "
            f"but the weight expects {weight.shape[1]} (weight shape {weight.shape})"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias shape {bias.shape} does not match weight shape {weight.shape}")
    for other in (weight, bias):
        if other is not None and other.dtype != x.dtype:
            raise TypeError(f"linear: dtype mismatch (input {x.dtype}, parameter {other.dtype})")
    if bias is None:
        return Linear(activation)(x, weight)
    return Linear(activation)(x, weight, bias)
