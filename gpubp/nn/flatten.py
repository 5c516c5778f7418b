"""Flatten: merges a range of axes into one, as torch.nn.Flatten."""

from __future__ import annotations

import math

from gpubp.nn.module import Module
from gpubp.tensor import Tensor


class Flatten(Module):
    """Merges axes ``start_dim`` through ``end_dim`` (negative counts from the end) into
    one: (N, C, H, W) becomes (N, C·H·W) with the defaults. A view of the input when
    it is contiguous; differentiable."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(flattened_shape(x.shape, self.start_dim, self.end_dim))

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


def flattened_shape(shape: tuple[int, ...], start_dim: int, end_dim: int) -> tuple[int, ...]:
    """``shape`` with axes start_dim..end_dim merged (PyTorch's rule: a 0-d shape counts
    as 1-D, and becomes (1,))."""
    ndim = max(len(shape), 1)
    for name, dim in (("start_dim", start_dim), ("end_dim", end_dim)):
        if not -ndim <= dim < ndim:
            raise IndexError(
                f"Flatten: {name}={dim} is out of range for a {len(shape)}-D input of shape {shape} "
                f"(expected in [{-ndim}, {ndim - 1}])"
            )
    start, end = start_dim % ndim, end_dim % ndim
    if start > end:
        raise ValueError(f"Flatten: start_dim={start_dim} comes after end_dim={end_dim} for a {len(shape)}-D input")
    if not shape:
        return (1,)
    return shape[:start] + (math.prod(shape[start : end + 1]),) + shape[end + 1 :]
