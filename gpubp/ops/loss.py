"""Losses, with PyTorch's arguments and formulas: softmax cross-entropy (fused in the
plain case), negative log-likelihood, mean squared error, binary cross-entropy with logits.

Every loss takes ``reduction="none" | "mean" | "sum"``. Class labels, targets and
weights may be Python lists or NumPy arrays, copied to the input's device; a Tensor
on another device is a ValueError naming both devices.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from gpubp import autocast_mode
from gpubp.creation import tensor
from gpubp.ops.operands import operand
from gpubp.tensor import Function, Tensor

REDUCTIONS = ("none", "mean", "sum")
_HALF = np.dtype(np.float16)
_SINGLE = np.dtype(np.float32)


def _quiet(backward: Callable[..., Any]) -> Callable[..., Any]:
    """Runs a backward without NumPy's warnings: when no row is counted the mean's
    scale is g/0 = inf, and the rows it meets are then masked to 0 (PyTorch's zero
    gradient), so the inf · 0 on the way is expected."""

    @functools.wraps(backward)
    def quiet(self: Function, g: Any) -> Any:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            return backward(self, g)

    return quiet


class CrossEntropy(Function):
    """The plain case, fused: mean over the batch of −log softmax(logits)[label] for
    logits (N, C); its gradient is (softmax − onehot)/N."""

    def __init__(self, labels: Any) -> None:
        self.labels = labels

    def forward(self, logits: Any) -> Any:
        loss, probs = self.backend.softmax_cross_entropy(logits, self.labels)
        self.save(probs, self.labels)
        self.labels = None
        return loss

    derivatives = {"logits": "(softmax − onehot)/N"}

    def backward(self, g: Any) -> Any:
        probs, labels = self.saved
        return self.backend.softmax_cross_entropy_backward(probs, labels, g)


class ClassCrossEntropy(Function):
    """Cross-entropy against class indices with PyTorch's options. Row i (a sample, or a
    position of an (N, C, d1, …) input) with label y, logits x and lse = log Σ_c e^(x_c) has

        loss_i = k_i [(1 − ε) w_y (lse − x_y) + ε/C Σ_c w_c (lse − x_c)],

    k_i = [y ≠ ignore_index], w the class weights (1 without), ε the label smoothing;
    the mean divides by Σ_i k_i w_y. The gradient is
    k_i [(1 − ε) w_y (p − onehot_y) + ε/C (Σ_c w_c p − w)] with p = softmax(x)."""

    def __init__(self, labels: Any, ignore_index: int | None, smoothing: float, reduction: str) -> None:
        self.labels = labels
        self.ignore_index = ignore_index
        self.smoothing = smoothing
        self.reduction = reduction

    def forward(self, logits: Any, weight: Any = None) -> Any:
        xp = self.backend.xp
        x, classes = _rows(xp, _widened(logits)), logits.shape[min(1, logits.ndim - 1)]
        w = None if weight is None else weight.astype(x.dtype, copy=False)
        labels = self.labels.reshape(-1)
        self.labels = None
        keep = None if self.ignore_index is None else labels != self.ignore_index
        safe = labels if keep is None else xp.where(keep, labels, 0)  # ignored rows read class 0, then count 0
        probs = _softmax_checking_labels(self.backend, x, safe, labels, self.ignore_index)
        rows = xp.arange(x.shape[0])
        # log-sum-exp from the softmax, without a second pass of exp: at a row's largest
        # logit the probability is at least 1/C, so its log is accurate there.
        top = x.argmax(axis=1)
        lse = x[rows, top] - xp.log(probs[rows, top])
        w_y = 1 if w is None else w[safe]
        per_row = w_y * (lse - x[rows, safe])
        eps = self.smoothing
        if eps:
            smooth = classes * lse - x.sum(axis=1) if w is None else w.sum() * lse - (x * w).sum(axis=1)
            per_row = (1 - eps) * per_row + (eps / classes) * smooth
        if keep is not None:
            per_row = xp.where(keep, per_row, 0)  # where, not ×k: an ignored row's NaN stays out
        denom = _counted(xp, x, w_y, keep) if self.reduction == "mean" else None
        self.save(probs, safe, keep, w, denom)
        return _reduced(xp, per_row, self.reduction, denom, _batch_shape(logits.shape), logits.dtype)

    derivatives = {
        "logits": "k[(1−ε)w_y(softmax − onehot) + ε/C(Σw·softmax − w)] / D",
        "weight": "none (a constant)",
    }

    @_quiet
    def backward(self, g: Any) -> tuple:
        probs, safe, keep, w, denom = self.saved
        xp = self.backend.xp
        scale = _row_scale(g, self.reduction, denom, probs.dtype)
        classes, eps = probs.shape[1], self.smoothing
        rows = xp.arange(probs.shape[0])
        w_y = 1 if w is None else w[safe]
        total_w = classes if w is None else w.sum()
        grad = probs * _column(scale * ((1 - eps) * w_y + (eps / classes) * total_w))
        grad[rows, safe] -= xp.broadcast_to(scale * (1 - eps) * w_y, rows.shape)
        if eps:
            grad -= _column(scale * (eps / classes)) * (1 if w is None else w)
        if keep is not None:
            grad = xp.where(keep[:, None], grad, 0)
        grad = _unrows(xp, grad, self.inputs[0].shape).astype(self.inputs[0].dtype, copy=False)
        return (grad, None) if len(self.needs_input_grad) == 2 else grad


class ProbCrossEntropy(Function):
    """Cross-entropy against class probabilities t (the logits' shape), as PyTorch: with
    ε smoothing t' = (1 − ε) t + ε/C, loss_i = −Σ_c w_c t'_c log p_c; the mean divides
    by the number of rows. Differentiable in the logits and in t."""

    def __init__(self, smoothing: float, reduction: str) -> None:
        self.smoothing = smoothing
        self.reduction = reduction

    def forward(self, logits: Any, target: Any, weight: Any = None) -> Any:
        xp = self.backend.xp
        x = _rows(xp, _widened(logits))
        classes, eps = x.shape[1], self.smoothing
        t = _rows(xp, target.astype(x.dtype, copy=False))
        if eps:
            t = (1 - eps) * t + eps / classes
        shifted = x - x.max(axis=1, keepdims=True)
        logp = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        w = None if weight is None else weight.astype(x.dtype, copy=False)
        wt = t if w is None else t * w
        per_row = -(wt * logp).sum(axis=1)
        self.save(logp, wt, w)
        return _reduced(xp, per_row, self.reduction, x.shape[0], _batch_shape(logits.shape), logits.dtype)

    derivatives = {
        "logits": "softmax·Σ w t′ − w t′ (/N for the mean)",
        "target": "−(1−ε) w log softmax (/N for the mean)",
        "weight": "none (a constant)",
    }

    def backward(self, g: Any) -> tuple:
        logp, wt, w = self.saved
        xp = self.backend.xp
        denom = logp.shape[0]
        scale = _column(_row_scale(g, self.reduction, denom, logp.dtype))
        need_x, need_t = self.needs_input_grad[:2]
        shape, dtype = self.inputs[0].shape, self.inputs[0].dtype
        grad_x = grad_t = None
        if need_x:  # d/dx_c of −Σ w t' log p = p_c Σ w t' − w_c t'_c
            grad_x = _unrows(xp, scale * (xp.exp(logp) * wt.sum(axis=1, keepdims=True) - wt), shape).astype(dtype)
        if need_t:
            dt = -(1 - self.smoothing) * scale * (logp if w is None else logp * w)
            grad_t = _unrows(xp, dt, shape).astype(dtype)
        grads = (grad_x, grad_t)
        return grads + (None,) if len(self.needs_input_grad) == 3 else grads


class NLL(Function):
    """−w_y input[y] per row, input holding log-probabilities: PyTorch's nll_loss."""

    def __init__(self, labels: Any, ignore_index: int | None, reduction: str) -> None:
        self.labels = labels
        self.ignore_index = ignore_index
        self.reduction = reduction

    def forward(self, logp: Any, weight: Any = None) -> Any:
        xp = self.backend.xp
        x = _rows(xp, _widened(logp))
        w = None if weight is None else weight.astype(x.dtype, copy=False)
        labels = self.labels.reshape(-1)
        self.labels = None
        keep = None if self.ignore_index is None else labels != self.ignore_index
        safe = labels if keep is None else xp.where(keep, labels, 0)
        # Only for its label check (on a GPU the fused kernel's, on the device): the
        # backends have no other way to report a bad label without a host read.
        _softmax_checking_labels(self.backend, x, safe, labels, self.ignore_index, "nll_loss")
        rows = xp.arange(x.shape[0])
        w_y = 1 if w is None else w[safe]
        per_row = -w_y * x[rows, safe]
        if keep is not None:
            per_row = xp.where(keep, per_row, 0)
        denom = _counted(xp, x, w_y, keep) if self.reduction == "mean" else None
        self.save(safe, keep, w, denom)
        return _reduced(xp, per_row, self.reduction, denom, _batch_shape(logp.shape), logp.dtype)

    derivatives = {"logp": "−w_y at the label, 0 elsewhere (/Σ w_y for the mean)", "weight": "none (a constant)"}

    @_quiet
    def backward(self, g: Any) -> tuple:
        safe, keep, w, denom = self.saved
        xp = self.backend.xp
        shape, dtype = self.inputs[0].shape, self.inputs[0].dtype
        rows_shape = (math.prod(_batch_shape(shape)), shape[min(1, len(shape) - 1)])
        work = _SINGLE if dtype == _HALF else dtype
        scale = _row_scale(g, self.reduction, denom, work)
        value = -scale * (1 if w is None else w[safe])
        if keep is not None:
            value = xp.where(keep, value, 0)
        grad = xp.zeros(rows_shape, dtype=work)
        grad[xp.arange(rows_shape[0]), safe] = xp.broadcast_to(value, (rows_shape[0],))
        grad = _unrows(xp, grad, shape).astype(dtype, copy=False)
        return (grad, None) if len(self.needs_input_grad) == 2 else grad


class MSE(Function):
    def __init__(self, reduction: str) -> None:
        self.reduction = reduction

    def forward(self, pred: Any, target: Any) -> Any:
        diff = pred - target
        self.save(diff)
        squared = diff * diff
        if self.reduction == "none":
            return squared
        return squared.mean() if self.reduction == "mean" else squared.sum()

    derivatives = {"pred": "2(pred − target) (/N for the mean)", "target": "−2(pred − target) (/N for the mean)"}

    def backward(self, g: Any) -> tuple:
        (diff,) = self.saved
        scale = 2 / diff.size if self.reduction == "mean" else 2
        grad = diff * (g * scale)
        need_pred, need_target = self.needs_input_grad
        return (grad if need_pred else None, -grad if need_target else None)


class BCEWithLogits(Function):
    """−w [p t log σ(x) + (1 − t) log(1 − σ(x))] with the positive weight p (1 without):
    written as w [(1 − t) x + (1 + (p − 1) t) softplus(−x)], softplus(−x) =
    max(−x, 0) + log(1 + e^(−|x|)), which never overflows (PyTorch's formula). The
    gradient is w [(1 − t) − (1 + (p − 1) t) σ(−x)] in x and w [(p − 1) softplus(−x) − x] in t."""

    def __init__(self, reduction: str, has_weight: bool, has_pos_weight: bool) -> None:
        self.reduction = reduction
        self.has_weight = has_weight
        self.has_pos_weight = has_pos_weight

    def forward(self, x: Any, t: Any, *weights: Any) -> Any:
        xp = self.backend.xp
        weight = weights[0] if self.has_weight else None
        pos_weight = weights[-1] if self.has_pos_weight else None
        self.save(x, t, weight, pos_weight)
        softplus = xp.maximum(-x, 0) + xp.log1p(xp.exp(-xp.abs(x)))
        positive = softplus if pos_weight is None else (1 + (pos_weight - 1) * t) * softplus
        losses = (1 - t) * x + positive
        if weight is not None:
            losses = losses * weight
        if self.reduction == "none":
            return losses
        return losses.mean() if self.reduction == "mean" else losses.sum()

    derivatives = {
        "x": "w[(1 − t) − (1 + (p−1)t) σ(−x)], = w(σ(x) − t) without pos_weight (/N for the mean)",
        "t": "w[(p−1) softplus(−x) − x] (/N for the mean)",
        "weights": "none (constants)",
    }

    def backward(self, g: Any) -> tuple:
        x, t, weight, pos_weight = self.saved
        xp = self.backend.xp
        scale = g / x.size if self.reduction == "mean" else g
        if weight is not None:
            scale = scale * weight
        need_x, need_t = self.needs_input_grad[:2]
        grad_x = grad_t = None
        if pos_weight is None:
            if need_x:
                grad_x = (self.backend.sigmoid(x) - t) * scale
            if need_t:
                grad_t = -x * scale
        else:
            if need_x:
                grad_x = ((1 - t) - (1 + (pos_weight - 1) * t) * self.backend.sigmoid(-x)) * scale
            if need_t:
                softplus = xp.maximum(-x, 0) + xp.log1p(xp.exp(-xp.abs(x)))
                grad_t = ((pos_weight - 1) * softplus - x) * scale
        grads = tuple(_full(xp, grad, x.shape) for grad in (grad_x, grad_t))
        return grads + (None,) * (len(self.needs_input_grad) - 2)


# -- the public functions ------------------------------------------------------------------
def cross_entropy(
    logits: Tensor,
    target: Any,
    weight: Any = None,
    *,
    ignore_index: int | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Softmax cross-entropy of ``logits`` against class indices or class probabilities.

    Shapes, as PyTorch's: logits (C,), (N, C) or (N, C, d1, …); ``target`` either
    integer class indices of the shape without the class axis ((), (N,), (N, d1, …)),
    or floating class probabilities of the logits' shape (differentiable). Options:

    - ``weight`` (C,): per-class weights; the mean then divides by the summed weights
      of the counted rows, as PyTorch does. A constant (it may not require grad).
    - ``ignore_index``: rows whose label equals it add nothing, and the mean divides
      by the rows counted (NaN when none is). PyTorch's default is -100; gpubp's is
      None (every label must be in [0, C)): the plain call below runs a fused kernel
      that checks labels on the device and cannot skip rows without reading them on
      the host. Pass ``ignore_index=-100`` for PyTorch's behaviour.
    - ``reduction``: "mean" (default), "sum" or "none" (per row, the target's shape).
    - ``label_smoothing`` ε in [0, 1]: PyTorch's formula (the target mixed with the
      uniform distribution: (1 − ε) onehot + ε/C, also for probability targets).

    The plain case, (N, C) logits with (N,) labels, no weight, smoothing or
    ignore_index, and a mean or a sum, is one fused op (on a GPU one kernel each way,
    with no host read). Labels are checked: one outside [0, C) raises IndexError, on
    the CPU at once and on a GPU at the next synchronisation (see the CUDA backend).

    ``target`` (and ``weight``) may be a Python list or NumPy array, copied to the
    logits' device as ``gp.tensor(value, device=logits.device)`` would (a list of
    probabilities or weights takes the logits' dtype); an array already on that
    device (or a Tensor there) is used as is; a Tensor on another device is a
    ValueError naming both devices.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"cross_entropy: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not isinstance(logits, Tensor):
        raise TypeError(f"cross_entropy: logits must be a Tensor, got {type(logits).__name__}")
    logits, target = autocast_mode.in_float32(logits), autocast_mode.in_float32(target)
    labels = _class_target(target, logits)
    if (
        labels is not None
        and logits.ndim == 2
        and weight is None
        and ignore_index is None
        and not label_smoothing
        and reduction != "none"
        and labels.shape == logits.shape[:1]
    ):
        # The plain case, the training loop's: one fused op, no host read on a GPU.
        _check_labels(logits.backend, labels, logits.shape[1], labels, None, "cross_entropy")
        loss = CrossEntropy(labels)(logits)
        return loss if reduction == "mean" else loss * logits.shape[0]
    _check_options("cross_entropy", logits, ignore_index, label_smoothing)
    weights = _class_weight("cross_entropy", weight, logits)
    if labels is None:
        if ignore_index is not None and ignore_index >= 0:
            raise ValueError("cross_entropy: ignore_index is not supported for class-probability targets")
        probabilities = operand(target, logits, "cross_entropy", to_device=True)
        return ProbCrossEntropy(label_smoothing, reduction)(logits, probabilities, *weights)
    _check_label_shape("cross_entropy", labels, logits)
    return ClassCrossEntropy(labels, ignore_index, label_smoothing, reduction)(logits, *weights)


def nll_loss(
    logp: Tensor,
    target: Any,
    weight: Any = None,
    *,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of log-probabilities ``logp`` ((C,), (N, C) or
    (N, C, d1, …), e.g. from log_softmax over dim 1) at integer class ``target``:
    −w_y logp[y] per row, as PyTorch's nll_loss. ``weight``, ``ignore_index`` (default
    None, as in cross_entropy, so that ``nll_loss(log_softmax(x, 1), y)`` and
    ``cross_entropy(x, y)`` agree) and ``reduction`` as in cross_entropy; labels are
    checked and placed on the device the same way."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"nll_loss: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not isinstance(logp, Tensor):
        raise TypeError(f"nll_loss: input must be a Tensor, got {type(logp).__name__}")
    logp = autocast_mode.in_float32(logp)
    _check_options("nll_loss", logp, ignore_index, 0.0)
    labels = _class_target(target, logp, "nll_loss")
    _check_label_shape("nll_loss", labels, logp)
    return NLL(labels, ignore_index, reduction)(logp, *_class_weight("nll_loss", weight, logp))


def mse_loss(pred: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """(pred − target)² per entry, averaged ("mean"), summed ("sum") or kept ("none");
    shapes must match exactly.

    ``target`` follows cross_entropy's rule for labels: a Python list or NumPy array
    is copied to pred's device (a list takes pred's dtype, a NumPy array keeps its
    own, which must match), an array already there is used as is, and a Tensor on
    another device is a ValueError naming both devices.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"mse_loss: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    pred, target = autocast_mode.in_float32(pred), autocast_mode.in_float32(target)
    return MSE(reduction)(*_pair("mse_loss", pred, target))


def binary_cross_entropy_with_logits(
    logits: Tensor,
    target: Any,
    weight: Any = None,
    *,
    reduction: str = "mean",
    pos_weight: Any = None,
) -> Tensor:
    """Binary cross-entropy of σ(logits) against targets in [0, 1] (the logits'
    shape), computed from the logits so it stays finite for any input; differentiable
    in both.

    ``weight`` rescales each entry's loss and ``pos_weight`` the positive term
    (−p t log σ(x)), PyTorch's formulas; both broadcast against the logits (a
    ``pos_weight`` of shape (C,) weighs each class of the last axis) and are
    constants (they may not require grad). ``reduction`` as in cross_entropy.

    ``target``, ``weight`` and ``pos_weight`` may be Python lists or NumPy arrays,
    copied to the logits' device (a list takes their dtype, a NumPy array keeps its
    own, which must match); an array already there is used as is; a Tensor on
    another device is a ValueError naming both devices.
    """
    op = "binary_cross_entropy_with_logits"
    if isinstance(weight, str):  # gpubp's old third positional argument was the reduction
        raise TypeError(f"{op}: weight must be a tensor, got the string {weight!r}; pass reduction={weight!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    logits, target = _pair(op, autocast_mode.in_float32(logits), autocast_mode.in_float32(target))
    weights = [
        _broadcast_constant(op, name, value, logits)
        for name, value in (("weight", weight), ("pos_weight", pos_weight))
        if value is not None
    ]
    return BCEWithLogits(reduction, weight is not None, pos_weight is not None)(logits, target, *weights)


# -- checks and conversions ------------------------------------------------------------------
def _class_target(target: Any, logits: Tensor, op: str = "cross_entropy") -> Any:
    """The label array on the logits' device when ``target`` holds integers; None when
    it holds floats of the logits' shape (class probabilities, converted by the caller)."""
    backend = logits.backend
    if isinstance(target, Tensor):
        if target.backend is not backend:
            what = "labels are" if target.dtype.kind in "iu" else "target is"
            raise ValueError(
                f"{op}: {what} on {target.device} but the logits are on {logits.device}; "
                f"move {'them' if what == 'labels are' else 'it'} with .to('{logits.device}')"
            )
        target = target.data
    elif not isinstance(target, backend.array_type):
        host = np.asarray(target)
        # A float target is only looked at here (its shape); operand() copies the original.
        target = tensor(host, device=backend).data if host.dtype.kind in "iu" else host
    if target.dtype.kind in "iu":
        return target
    if target.dtype.kind != "f" or target.shape != logits.shape or op != "cross_entropy":
        raise TypeError(
            f"{op}: labels must be integers (class indices), got dtype {target.dtype} and shape {target.shape}"
            + (
                f"; a floating target holds class probabilities and must have the logits' shape {logits.shape}"
                if op == "cross_entropy"
                else ""
            )
        )
    return None


def _check_label_shape(op: str, labels: Any, logits: Tensor) -> None:
    if logits.ndim == 0:
        raise ValueError(f"{op}: input must have a class axis, got a 0-d tensor")
    expected = _batch_shape(logits.shape)
    if labels.shape != expected:
        raise ValueError(
            f"{op}: labels have shape {labels.shape} but the input has shape {logits.shape}; expected labels of "
            f"shape {expected} (the input's shape without its class axis{', 1' if logits.ndim > 1 else ''})"
        )


def _check_options(op: str, logits: Tensor, ignore_index: Any, label_smoothing: float) -> None:
    if logits.dtype.kind != "f":
        raise TypeError(f"{op}: input must be floating-point, got dtype {logits.dtype}")
    if logits.ndim == 0:
        raise ValueError(f"{op}: input must have a class axis, got a 0-d tensor")
    if ignore_index is not None and not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"{op}: ignore_index must be an integer or None, got {ignore_index!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    if logits.ndim and logits.shape[min(1, logits.ndim - 1)] == 0:
        raise ValueError(f"{op}: input of shape {logits.shape} has no classes")


def _check_labels(backend: Any, safe: Any, classes: int, labels: Any, ignore_index: int | None, op: str) -> None:
    """The backend's label check (the CPU raises here; a GPU leaves it to the fused
    kernel), with a hint when a label is PyTorch's default ignore_index."""
    try:
        backend.check_labels(safe, classes)
    except IndexError as err:
        message = str(err).replace("cross_entropy:", f"{op}:", 1)
        if ignore_index is None and bool((labels == -100).any()):  # on the CPU only: this backend raised
            message += "; to skip label -100 as PyTorch does by default, pass ignore_index=-100"
        raise IndexError(message) from None


def _softmax_checking_labels(
    backend: Any, x: Any, safe: Any, labels: Any, ignore_index: int | None, op: str = "cross_entropy"
) -> Any:
    """softmax of the rows x (M, C), checking that every label in ``safe`` is in [0, C):
    on the CPU at once, on a GPU by the fused kernel, which flags a bad label on the
    device and reports it at the next synchronisation, so this needs no host read."""
    _check_labels(backend, safe, x.shape[1], labels, ignore_index, op)
    if not x.shape[0]:
        return backend.xp.empty_like(x)
    return backend.softmax_cross_entropy(x, safe)[1]


def _class_weight(op: str, weight: Any, logits: Tensor) -> list[Tensor]:
    """[the (C,) weight Tensor on the logits' device], or [] without one."""
    if weight is None:
        return []
    if isinstance(weight, str):  # gpubp's old third positional argument was the reduction
        raise TypeError(
            f"{op}: weight must be a tensor of class weights, got the string {weight!r}; pass reduction={weight!r}"
        )
    w = _constant(op, "weight", weight, logits)
    classes = logits.shape[min(1, logits.ndim - 1)] if logits.ndim else 0
    if w.shape != (classes,):
        raise ValueError(f"{op}: weight must have shape ({classes},), one per class, got {w.shape}")
    return [w]


def _broadcast_constant(op: str, name: str, value: Any, like: Tensor) -> Tensor:
    t = _constant(op, name, value, like)
    try:
        fits = np.broadcast_shapes(t.shape, like.shape) == like.shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{op}: {name} of shape {t.shape} does not broadcast to the input's shape {like.shape}")
    return t


def _constant(op: str, name: str, value: Any, like: Tensor) -> Tensor:
    if isinstance(value, Tensor) and value.backend is not like.backend:
        raise ValueError(
            f"{op}: {name} is on {value.device} but the input is on {like.device}; move it with .to('{like.device}')"
        )
    t = operand(value, like, op, to_device=True)
    if not isinstance(t, Tensor):
        t = tensor(t, dtype=like.dtype, device=like.backend)
    if t.requires_grad:
        raise ValueError(f"{op}: {name} is a constant here and gets no gradient; pass {name}.detach()")
    return t


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


# -- array helpers (over xp, so they run on every backend) ------------------------------------
def _widened(x: Any) -> Any:
    """float16 computes in float32 and rounds once, as the fused kernels do."""
    return x.astype(_SINGLE) if x.dtype == _HALF else x


def _batch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape without the class axis (axis 1, or axis 0 of a 1-D input)."""
    return shape[:1] + shape[2:] if len(shape) > 1 else ()


def _rows(xp: Any, a: Any) -> Any:
    """(M, C): one row per sample and position, the class axis last."""
    if a.ndim == 1:
        return a.reshape(1, -1)
    if a.ndim == 2:
        return a
    return xp.moveaxis(a, 1, -1).reshape(-1, a.shape[1])


def _unrows(xp: Any, rows: Any, shape: tuple[int, ...]) -> Any:
    """The inverse of _rows: (M, C) back to ``shape``."""
    if len(shape) <= 2:
        return rows.reshape(shape)
    return xp.ascontiguousarray(xp.moveaxis(rows.reshape(shape[:1] + shape[2:] + shape[1:2]), -1, 1))


def _counted(xp: Any, x: Any, w_y: Any, keep: Any) -> Any:
    """The mean's divisor: the rows counted, each by its class weight (w_y: the rows'
    weights, or the number 1 without weights), as PyTorch's."""
    weighted = not isinstance(w_y, int)
    if keep is None:
        return w_y.sum() if weighted else x.shape[0]  # a Python int: no host-to-device copy
    return (xp.where(keep, w_y, 0) if weighted else keep.astype(x.dtype)).sum()


def _column(v: Any) -> Any:
    """A per-row value as a column that broadcasts over the classes (scalars stay scalars)."""
    return v[:, None] if getattr(v, "ndim", 0) == 1 else v


def _reduced(xp: Any, per_row: Any, reduction: str, denom: Any, shape: tuple, dtype: np.dtype) -> Any:
    if reduction == "none":
        return per_row.reshape(shape).astype(dtype, copy=False)
    total = per_row.sum()
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):  # nothing counted: NaN, as PyTorch
            total = total / denom
    return xp.asarray(total).astype(dtype, copy=False)


def _row_scale(g: Any, reduction: str, denom: Any, dtype: np.dtype) -> Any:
    """The incoming gradient per row: the (M,) gradients for "none", else one value."""
    g = g.astype(dtype, copy=False)
    if reduction == "none":
        return g.reshape(-1)
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return g / denom
    return g


def _full(xp: Any, grad: Any, shape: tuple[int, ...]) -> Any:
    """A gradient of the input's shape (weights may have broadcast it)."""
    return grad if grad is None or grad.shape == shape else xp.ascontiguousarray(xp.broadcast_to(grad, shape))
