"""Loss layers wrapping the functional losses in gpubp.ops.loss, with torch.nn's arguments."""

from __future__ import annotations

from typing import Any

from gpubp.backends import get_backend
from gpubp.nn.module import Module
from gpubp.ops import loss
from gpubp.tensor import Tensor


class _Loss(Module):
    """A loss module: checks ``reduction`` when made, and moves its weight tensors with
    ``to()`` (PyTorch keeps them as buffers; gpubp's modules have only parameters, so
    they are not in ``state_dict()``)."""

    _weights: tuple[str, ...] = ()

    def __init__(self, reduction: str) -> None:
        super().__init__()
        if reduction not in loss.REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {loss.REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def to(self, device: str) -> Module:
        super().to(device)
        backend = get_backend(device)
        for name in self._weights:
            value = getattr(self, name)
            if isinstance(value, Tensor) and value.backend is not backend:
                setattr(self, name, value.to(backend.device))
        return self

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    """``gp.cross_entropy`` as a module: ``CrossEntropyLoss(weight=None, *, ignore_index=None,
    reduction="mean", label_smoothing=0.0)``; ``ignore_index`` defaults to None, not
    PyTorch's -100 (see gp.cross_entropy)."""

    _weights = ("weight",)

    def __init__(
        self,
        weight: Any = None,
        *,
        ignore_index: int | None = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(reduction)
        self.weight = _not_a_string("CrossEntropyLoss", weight)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, target: Any) -> Tensor:
        return loss.cross_entropy(
            logits,
            target,
            self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )


class NLLLoss(_Loss):
    """``nll_loss`` of log-probabilities as a module, arguments as CrossEntropyLoss's."""

    _weights = ("weight",)

    def __init__(self, weight: Any = None, *, ignore_index: int | None = None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.weight = _not_a_string("NLLLoss", weight)
        self.ignore_index = ignore_index

    def forward(self, logp: Tensor, target: Any) -> Tensor:
        return loss.nll_loss(logp, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction)


class MSELoss(_Loss):
    """``gp.mse_loss`` as a module."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__(reduction)

    def forward(self, pred: Tensor, target: Any) -> Tensor:
        return loss.mse_loss(pred, target, self.reduction)


class BCEWithLogitsLoss(_Loss):
    """``gp.binary_cross_entropy_with_logits`` as a module: ``BCEWithLogitsLoss(weight=None,
    *, reduction="mean", pos_weight=None)``."""

    _weights = ("weight", "pos_weight")

    def __init__(self, weight: Any = None, *, reduction: str = "mean", pos_weight: Any = None) -> None:
        super().__init__(reduction)
        self.weight = _not_a_string("BCEWithLogitsLoss", weight)
        self.pos_weight = pos_weight

    def forward(self, logits: Tensor, target: Any) -> Tensor:
        return loss.binary_cross_entropy_with_logits(
            logits, target, self.weight, reduction=self.reduction, pos_weight=self.pos_weight
        )


def _not_a_string(name: str, weight: Any) -> Any:
    if isinstance(weight, str):  # the first positional argument used to be the reduction
        raise TypeError(f"{name}: weight must be a tensor, got the string {weight!r}; pass reduction={weight!r}")
    return weight
