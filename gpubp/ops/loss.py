"""Losses: softmax cross-entropy (fused), mean squared error, binary cross-entropy with logits."""

from __future__ import annotations

from typing import Any

from gpubp.creation import tensor
from gpubp.ops.operands import operand
from gpubp.tensor import Function, Tensor

REDUCTIONS = ("mean", "sum")


class CrossEntropy(Function):
    """Mean over the batch of −log softmax(logits)[label]; its gradient is (softmax − onehot)/N."""

    def __init__(self, labels: Any) -> None:
        self.labels = labels

    def forward(self, logits: Any) -> Any:
        loss, probs = self.backend.softmax_cross_entropy(logits, self.labels)
        self.save(probs, self.labels)
        self.labels = None
        return loss

    def backward(self, g: Any) -> Any:
        probs, labels = self.saved
        return self.backend.softmax_cross_entropy_backward(probs, labels, g)


class MSE(Function):
    def __init__(self, reduction: str) -> None:
        self.reduction = reduction

    def forward(self, pred: Any, target: Any) -> Any:
        diff = pred - target
        self.save(diff)
        squared = diff * diff
        return squared.mean() if self.reduction == "mean" else squared.sum()

    def backward(self, g: Any) -> tuple:
        (diff,) = self.saved
        scale = 2 / diff.size if self.reduction == "mean" else 2
        grad = diff * (g * scale)
        need_pred, need_target = self.needs_input_grad
        return (grad if need_pred else None, -grad if need_target else None)


class BCEWithLogits(Function):
    """−[t log σ(x) + (1 − t) log(1 − σ(x))] = max(x, 0) − x t + log(1 + e^(−|x|)),
    which never overflows; its gradient is σ(x) − t."""

    def __init__(self, reduction: str) -> None:
        self.reduction = reduction

    def forward(self, x: Any, t: Any) -> Any:
        xp = self.backend.xp
        self.save(x, t)
        losses = xp.maximum(x, 0) - x * t + xp.log1p(xp.exp(-xp.abs(x)))
        return losses.mean() if self.reduction == "mean" else losses.sum()

    def backward(self, g: Any) -> tuple:
        x, t = self.saved
        scale = g / x.size if self.reduction == "mean" else g
        need_x, need_t = self.needs_input_grad
        return (
            (self.backend.sigmoid(x) - t) * scale if need_x else None,
            -x * scale if need_t else None,
        )


def cross_entropy(logits: Tensor, labels: Any, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy of ``logits`` (N, C) against integer class ``labels`` (N,).

    ``labels`` may be a Python list or NumPy array, copied to the logits' device as
    ``gp.tensor(labels, device=logits.device)`` would; an array already on that
    device (or a Tensor there) is used as is; a Tensor on another device is a
    ValueError naming both devices. On the CPU out-of-range labels raise
    IndexError; on a GPU they are checked without a host round trip (see the CUDA
    backend).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"cross_entropy: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not isinstance(logits, Tensor):
        raise TypeError(f"cross_entropy: logits must be a Tensor, got {type(logits).__name__}")
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be 2-D (batch, classes), got shape {logits.shape}")
    labels = _label_array(labels, logits)
    n, classes = logits.shape
    if labels.shape != (n,):
        raise ValueError(
            f"cross_entropy: labels have shape {labels.shape} but the logits have a batch of {n} "
            f"(logits shape {logits.shape}); expected labels of shape ({n},)"
        )
    logits.backend.check_labels(labels, classes)
    loss = CrossEntropy(labels)(logits)
    return loss if reduction == "mean" else loss * n


def _label_array(labels: Any, logits: Tensor) -> Any:
    if isinstance(labels, Tensor):
        if labels.backend is not logits.backend:
            raise ValueError(
                f"cross_entropy: labels are on {labels.device} but the logits are on {logits.device}; "
                f"move them with .to('{logits.device}')"
            )
        labels = labels.data
    elif not isinstance(labels, logits.backend.array_type):
        labels = tensor(labels, device=logits.backend).data
    if labels.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: labels must be integers (class indices), got dtype {labels.dtype}")
    return labels


def _pair(op: str, pred: Tensor, target: Any) -> tuple[Tensor, Any]:
    if not isinstance(pred, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(pred).__name__}")
    if isinstance(target, Tensor) and target.backend is not pred.backend:
        raise ValueError(
            f"{op}: target is on {target.device} but the input is on {pred.device}; move it with .to('{pred.device}')"
        )
    target = operand(target, pred, op, to_device=True)
    if not isinstance(target, Tensor) or target.shape != pred.shape:
        shape = getattr(target, "shape", "a scalar")
        raise ValueError(f"{op}: target shape {shape} must equal input shape {pred.shape}")
    return pred, target


def mse_loss(pred: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean (or sum) of (pred − target)² over all entries; shapes must match exactly.

    ``target`` follows cross_entropy's rule for labels: a Python list or NumPy array
    is copied to pred's device (a list takes pred's dtype, a NumPy array keeps its
    own, which must match), an array already there is used as is, and a Tensor on
    another device is a ValueError naming both devices.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"mse_loss: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return MSE(reduction)(*_pair("mse_loss", pred, target))


def binary_cross_entropy_with_logits(logits: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Binary cross-entropy of σ(logits) against targets in [0, 1], computed from
    the logits so it stays finite for any input.

    ``target`` (the shape of ``logits``) may be a Python list or NumPy array, copied
    to the logits' device (a list takes their dtype, a NumPy array keeps its own,
    which must match); an array already there is used as is; a Tensor on another
    device is a ValueError naming both devices.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"binary_cross_entropy_with_logits: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return BCEWithLogits(reduction)(*_pair("binary_cross_entropy_with_logits", logits, target))
