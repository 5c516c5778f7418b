"""Broadcasting in reverse: the one helper every binary op uses for its gradients."""

from __future__ import annotations

from typing import Any


def sum_to(grad: Any, shape: tuple[int, ...]) -> Any:
    """Sums ``grad`` over the axes that broadcasting added or stretched, so the
    result has ``shape`` (the shape of the input that was broadcast)."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1)
    return grad.sum(axis=axes, keepdims=True).reshape(shape)
