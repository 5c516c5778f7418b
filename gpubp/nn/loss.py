"""Loss layers wrapping the functional losses in gpubp.ops.loss."""

from __future__ import annotations

from typing import Any

from gpubp.nn.module import Module
from gpubp.ops import loss
from gpubp.tensor import Tensor


class CrossEntropyLoss(Module):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, logits: Tensor, labels: Any) -> Tensor:
        return loss.cross_entropy(logits, labels, self.reduction)


class MSELoss(Module):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, pred: Tensor, target: Any) -> Tensor:
        return loss.mse_loss(pred, target, self.reduction)


class BCEWithLogitsLoss(Module):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, logits: Tensor, target: Any) -> Tensor:
        return loss.binary_cross_entropy_with_logits(logits, target, self.reduction)
