"""Weight initialisation: Xavier/Glorot for sigmoid and tanh layers, He/Kaiming for ReLU.

Each function fills a tensor in place from the device's generator and returns it.
"""

from __future__ import annotations

import math

from gpubp.grad_mode import no_grad
from gpubp.tensor import Tensor


def _fans(t: Tensor) -> tuple[int, int]:
    if t.ndim < 2:
        raise ValueError(f"fan in/out needs a tensor of at least 2 dimensions, got shape {t.shape}")
    receptive = 1
    for n in t.shape[2:]:
        receptive *= n
    return t.shape[1] * receptive, t.shape[0] * receptive


def uniform_(t: Tensor, low: float = 0.0, high: float = 1.0) -> Tensor:
    with no_grad():
        t.copy_(t.backend.uniform(t.shape, low, high, t.dtype))
    return t


def normal_(t: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    with no_grad():
        values = t.backend.standard_normal(t.shape, t.dtype)
        values *= std
        values += mean
        t.copy_(values)
    return t


def zeros_(t: Tensor) -> Tensor:
    with no_grad():
        t.zero_()
    return t


def xavier_uniform_(t: Tensor, gain: float = 1.0) -> Tensor:
    """U(−a, a) with a = gain·√(6 / (fan_in + fan_out)): keeps activation variance
    steady through sigmoid/tanh layers."""
    fan_in, fan_out = _fans(t)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound)


def xavier_normal_(t: Tensor, gain: float = 1.0) -> Tensor:
    fan_in, fan_out = _fans(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def kaiming_uniform_(t: Tensor, a: float = 0.0) -> Tensor:
    """He initialisation for ReLU layers: U(−b, b) with b = √(6 / ((1 + a²) fan_in))."""
    fan_in, _ = _fans(t)
    bound = math.sqrt(6.0 / ((1 + a * a) * fan_in))
    return uniform_(t, -bound, bound)


def kaiming_normal_(t: Tensor, a: float = 0.0) -> Tensor:
    fan_in, _ = _fans(t)
    return normal_(t, 0.0, math.sqrt(2.0 / ((1 + a * a) * fan_in)))
