"""Gradient clipping, as torch.nn.utils: ``clip_grad_norm_`` and ``clip_grad_value_``."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from gpubp import dtypes
from gpubp.creation import tensor
from gpubp.tensor import Tensor, _wrap

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor],
    max_norm: float,
    norm_type: float | str = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> Tensor:
    """Scales the gradients of ``parameters`` in place so that their total norm (the
    ``norm_type`` norm of all gradients together: 2, 1, inf, …) is at most
    ``max_norm``, and returns that total norm, before clipping, as a tensor on the
    first gradient's device. As PyTorch: the scale is min(1, max_norm / (norm + 1e-6)),
    parameters without a gradient are skipped (no gradients: a norm of 0.0), and with
    ``error_if_nonfinite`` a NaN or infinite norm raises RuntimeError.

    The norm and the scale stay on the device (no host read), so a step with clipping
    can still be captured by ``gp.jit``; only ``error_if_nonfinite=True`` reads the
    norm on the host. ``foreach`` is accepted and ignored (one pass per gradient)."""
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    norm_type = float(norm_type)
    if not grads:
        return tensor(0.0)
    first = grads[0].backend
    # Each gradient's norm on its device, then together on the first one's (as PyTorch).
    norms = [_norm(g, norm_type) for g in grads]
    norms = [n if g.backend is first else first.receive(n, g.backend) for n, g in zip(norms, grads)]
    total = first.xp.asarray(_vector_norm(first.xp, first.xp.stack(norms), norm_type))
    norm = _wrap(first.astype(total, grads[0].dtype), first)  # 16-bit gradients: summed in float32, rounded once
    if error_if_nonfinite and not math.isfinite(norm.item()):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, so it cannot be "
            "clipped. To disable this error and scale the gradients by the non-finite norm anyway, set "
            "`error_if_nonfinite=False`"
        )
    # On the device, as PyTorch's clamp(max=1): no data-dependent branch, no host read.
    scale = first.xp.asarray(first.xp.minimum(max_norm / (total + 1e-6), 1.0))
    for g in grads:
        s = scale if g.backend is first else g.backend.receive(scale, first)
        g *= _wrap(g.backend.astype(g.backend.xp.asarray(s), g.dtype), g.backend)
    return norm


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float, foreach: bool | None = None) -> None:
    """Clamps every gradient of ``parameters`` to [−clip_value, clip_value] in place, as
    torch.nn.utils.clip_grad_value_ (``foreach`` is accepted and ignored)."""
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    clip_value = float(clip_value)
    for p in params:
        if p.grad is not None:
            clip = p.grad.backend.xp.clip
            p.grad._write(lambda data, clip=clip: clip(data, -clip_value, clip_value, out=data))


def _norm(g: Tensor, p: float) -> Any:
    """A gradient's p-norm, a 0-d array of its dtype, or float32 for a 16-bit gradient
    (float16 and bfloat16 sum in float32; the total norm is rounded once)."""
    xp, data = g.backend.xp, g.data
    if g.dtype in dtypes.HALVES:
        data = g.backend.astype(data, dtypes.float32)
    return xp.asarray(_vector_norm(xp, data.reshape(-1), p))


def _vector_norm(xp: Any, v: Any, p: float) -> Any:
    """The p-norm of a 1-D array, as torch.linalg.vector_norm: max |v| for inf, min |v|
    for −inf, the count of non-zeros for 0, else (Σ |v|^p)^(1/p)."""
    if v.size == 0:
        return xp.zeros((), dtype=v.dtype)
    a = xp.abs(v)
    if p == math.inf:
        return a.max()
    if p == -math.inf:
        return a.min()
    if p == 0:
        return (a != 0).sum().astype(v.dtype)
    if p == 1:
        return a.sum()
    if p == 2:
        return xp.sqrt((a * a).sum())
    return (a**p).sum() ** (1 / p)
