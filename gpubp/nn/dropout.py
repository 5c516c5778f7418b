"""Dropout layer: inverted dropout while training, the identity in eval mode."""

from __future__ import annotations

from gpubp.nn.module import Module
from gpubp.ops.dropout import dropout
from gpubp.tensor import Tensor


class Dropout(Module):
    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
