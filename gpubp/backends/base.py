"""Array operations shared by every device, written once over an array module ``xp``.

A backend is NumPy or CuPy plus the handful of fused steps where a dedicated
kernel pays (activation Hadamard products, softmax cross-entropy, optimizer
updates, dropout masks). The generic versions here are the CPU path and the
test oracle ("NumPy twin") of every CUDA kernel in ``kernels/``; a backend
overrides a method only to make it faster, never to change what it computes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from gpubp import dtypes

ACTIVATIONS = ("sigmoid", "tanh", "relu")
_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_SINGLE = np.dtype(np.float32)
# How 16-bit floats are stored: float16, ml_dtypes' bfloat16 (CPU), raw bfloat16 words (CUDA).
HALF_STORAGE = (dtypes.float16, dtypes.bfloat16, dtypes.RAW_BFLOAT16)


def _float16_in_float32(*, updates: tuple[int, ...] = ()) -> Callable[[Callable], Callable]:
    """Makes a twin compute 16-bit floats (float16, bfloat16) as the kernels do
    (common.cuh: half_t and bf16_t loads convert to float, the arithmetic is
    float, each stored value is rounded once).

    When the first array is a 16-bit float, the backend's own method runs again on
    float32 copies of the 16-bit arrays, so every intermediate stays float32 (SGD's
    momentum buffer and Adam's moments feed the parameter update unrounded), and
    each result is rounded once: a returned array (or the one written into ``out=``),
    and the arrays at positions ``updates``, which the method changes in place, get
    their float32 values written back. Other dtypes go straight through.
    """

    def decorate(method: Callable) -> Callable:
        name = method.__name__

        @functools.wraps(method)
        def twin(self: Backend, *arrays: Any, **options: Any) -> Any:
            half = arrays[0].dtype
            if half not in HALF_STORAGE:
                return method(self, *arrays, **options)
            logical = dtypes.logical(half)
            wide = [self.astype(a, _SINGLE) if getattr(a, "dtype", None) == half else a for a in arrays]
            out = options.pop("out", None)
            result = getattr(self, name)(*wide, **options)  # the backend's float32 path (a C kernel, say)
            for i in updates:
                if arrays[i] is not None:
                    self.copy_into(arrays[i], self.astype(wide[i], logical))
            if out is not None:
                self.copy_into(out, self.astype(result, logical))
                return out
            return self._rounded(result, logical)

        return twin

    return decorate


class Backend:
    """One device's array module and fused steps. Subclasses set ``name``, ``device`` and ``xp``."""

    name: str
    device: str
    xp: Any
    array_type: type
    # Whether activate() must run before each op (a GPU backend on a multi-device machine).
    needs_activation = False
    # Whether capture_graph can record a call's work for replay (gp.jit).
    supports_graphs = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.device}>"

    # -- transfers ---------------------------------------------------------
    def from_host(self, array: np.ndarray) -> Any:
        """Copies a NumPy array onto this device."""
        raise NotImplementedError

    def to_host(self, array: Any) -> np.ndarray:
        """Copies an array of this device into a NumPy array."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Waits until queued work has finished (a no-op on the CPU)."""

    def activate(self) -> None:
        """Makes this device the current one before an op runs on it (a no-op on the CPU)."""

    def item(self, array: Any) -> Any:
        """The Python number in a one-element array (on a GPU this waits for the device)."""
        return array.item()

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """An uninitialised array for an op's output (may be a recycled one)."""
        return self.xp.empty(shape, dtype=dtype)

    def one(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """An array of ones, the seed of ``backward()`` on a one-element tensor. The
        0-d one is made once per dtype and shared (no op changes the gradient it
        is given in place, and the tape copies a seed before a leaf keeps it), so
        the usual ``loss.backward()`` launches nothing for its seed."""
        if shape:
            return self.xp.ones(shape, dtype=dtype)
        ones = self.__dict__.setdefault("_shared_ones", {})
        one = ones.get(dtype)
        if one is None:
            self.activate()
            one = ones[dtype] = self.xp.ones((), dtype=dtype)
        return one

    def recycle(self, array: Any) -> None:
        """Takes back an array nothing else references, for ``empty`` to hand out
        again. A no-op here: CuPy's memory pool already reuses device memory."""

    # -- dtypes ---------------------------------------------------------------------
    def storage_dtype(self, dtype: np.dtype) -> np.dtype:
        """The dtype of the arrays that hold a gpubp dtype here (itself, but for bfloat16 on a GPU)."""
        return dtype

    def astype(self, array: Any, dtype: np.dtype) -> Any:
        """``array`` converted to the gpubp dtype ``dtype`` (a new array; the same
        one when it already has it). 16-bit floats round to nearest even; float64
        reaches bfloat16 through float32, as ml_dtypes converts it."""
        return array if array.dtype == dtype else array.astype(dtype)

    def _rounded(self, result: Any, dtype: np.dtype) -> Any:
        """float32 results (an array, a tuple of them, or None) rounded once to ``dtype``."""
        if isinstance(result, tuple):
            return tuple(self._rounded(r, dtype) for r in result)
        return self.astype(result, dtype) if getattr(result, "dtype", None) == _SINGLE else result

    def add(self, a: Any, b: Any) -> Any:
        """a + b for two arrays of one dtype (gradients summed at a fan-out); a
        16-bit sum is computed in float32 and rounded once."""
        if a.dtype in HALF_STORAGE:
            return self.astype(self.astype(a, _SINGLE) + self.astype(b, _SINGLE), dtypes.logical(a.dtype))
        return a + b

    def receive(self, array: Any, source: Backend) -> Any:
        """Copies an array from another backend onto this one (an explicit transfer)."""
        return self.from_host(source.to_host(array))

    def capture_graph(self, fn: Callable[[Any], Any]) -> tuple[Any, Any]:
        """Records the device work of ``fn(replay_values)`` for replay: (graph, fn's result)."""
        raise NotImplementedError(f"{self.device} does not capture graphs")

    def copy_into(self, destination: Any, source: Any) -> None:
        """destination[...] = source, both arrays of this backend (queued on a GPU)."""
        destination[...] = source

    def check_labels(self, labels: Any, classes: int) -> None:
        """Raises IndexError when a class label is outside [0, classes)."""
        # Viewed as unsigned, negative labels become huge: one reduction checks both ends.
        if labels.size and labels.view(_UNSIGNED[labels.dtype.itemsize]).max() >= classes:
            bad = labels[(labels < 0) | (labels >= classes)]
            raise IndexError(
                f"cross_entropy: label {int(bad[0])} is out of range for {classes} classes "
                f"(labels must be in [0, {classes - 1}])"
            )

    # -- random numbers ----------------------------------------------------
    def manual_seed(self, seed: int) -> None:
        raise NotImplementedError

    def get_rng_state(self) -> dict:
        """The generator's state as a JSON-serialisable dict."""
        raise NotImplementedError

    def set_rng_state(self, state: dict) -> None:
        raise NotImplementedError

    def standard_normal(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        raise NotImplementedError

    def uniform(self, shape: tuple[int, ...], low: float, high: float, dtype: np.dtype) -> Any:
        raise NotImplementedError

    # -- matrix products -------------------------------------------------------
    def matmul(self, a: Any, b: Any, out: Any = None, out_dtype: np.dtype | None = None) -> Any:
        """a @ b (into ``out`` when given). 16-bit floats accumulate in float32 and
        round once, as the GPU's cuBLAS call does, to ``out``'s dtype, else to
        ``out_dtype`` (a's dtype by default; float32 keeps the float32 result
        unrounded: autocast's float32 gradients of float32 master weights)."""
        if a.dtype not in HALF_STORAGE:
            return self.xp.matmul(a, b, out=out)
        wide = self.xp.matmul(self.astype(a, _SINGLE), self.astype(b, _SINGLE))
        target = dtypes.logical(out.dtype) if out is not None else out_dtype or dtypes.logical(a.dtype)
        result = self.astype(wide, target)
        if out is None:
            return result
        self.copy_into(out, result)
        return out

    # -- activations: forward from z, backward from the saved output y -------
    @_float16_in_float32()
    def sigmoid(self, z: Any, out: Any = None) -> Any:
        """σ(z) = 1 / (1 + e^(−z))."""
        if out is None:
            out = self.xp.empty_like(z)  # an array even for 0-d input, so the steps below stay in place
        self.xp.negative(z, out=out)
        return self._inverse_one_plus_exp(out)

    def _inverse_one_plus_exp(self, t: Any) -> Any:
        """t ← 1 / (1 + e^t) in place: σ(z) from t = −z. e^t overflowing to inf
        for very negative z gives the correct limit 0, so no branch is needed."""
        self.xp.exp(t, out=t)
        t += 1
        # divide, not reciprocal: the same correctly rounded 1/x, but NumPy vectorises only divide.
        return self.xp.divide(1, t, out=t)

    @_float16_in_float32()
    def sigmoid_backward(self, g: Any, y: Any) -> Any:
        """dz = g ⊙ y ⊙ (1 − y), from the saved output y = σ(z)."""
        dz = 1 - y
        dz *= y
        dz *= g
        return dz

    @_float16_in_float32()
    def tanh(self, z: Any, out: Any = None) -> Any:
        return self.xp.tanh(z, out=out)

    @_float16_in_float32()
    def tanh_backward(self, g: Any, y: Any) -> Any:
        """dz = g ⊙ (1 − y²), from the saved output y = tanh(z)."""
        dz = self.xp.empty_like(y)
        self.xp.multiply(y, y, out=dz)
        self.xp.subtract(1, dz, out=dz)
        dz *= g
        return dz

    @_float16_in_float32()
    def relu(self, z: Any, out: Any = None) -> Any:
        return self.xp.maximum(z, 0, out=out)

    @_float16_in_float32()
    def relu_backward(self, g: Any, y: Any) -> Any:
        """dz = g where y > 0, else 0 (the subgradient at 0 is 0, as in PyTorch)."""
        return g * (y > 0)

    def activation_backward(self, g: Any, y: Any, activation: str | None) -> Any:
        """dz from the gradient g of y = act(z) and the saved output y."""
        if activation is None:
            return g
        if activation == "sigmoid":
            return self.sigmoid_backward(g, y)
        if activation == "tanh":
            return self.tanh_backward(g, y)
        return self.relu_backward(g, y)

    @_float16_in_float32()
    def bias_activation(self, z: Any, bias: Any, activation: str | None) -> Any:
        """y = act(z + bias), computed in place in z (z is a fresh GEMM output)."""
        if activation == "sigmoid" and bias is not None:
            # σ's first step, −(z + b), and the bias add in one pass: (−b) − z.
            self.xp.subtract(-bias, z, out=z)
            return self._inverse_one_plus_exp(z)
        if bias is not None:
            z += bias
        if activation is None:
            return z
        if activation == "sigmoid":
            return self.sigmoid(z, out=z)
        if activation == "tanh":
            return self.tanh(z, out=z)
        return self.relu(z, out=z)

    def linear_delta(
        self, g: Any, y: Any, activation: str | None, bias_grad: bool, bias_dtype: np.dtype | None = None
    ) -> tuple[Any, Any]:
        """A layer's δ = g ⊙ act′ (from its saved output y) and, when ``bias_grad``,
        the bias gradient Σ_rows δ; y and g are (rows, out). The sum adds δ as stored,
        in float32 for 16-bit floats, rounded once to ``bias_dtype`` (δ's dtype by
        default; float32 for autocast's float32 bias)."""
        delta = self.activation_backward(g, y, activation)
        if not bias_grad:
            return delta, None
        if delta.dtype in HALF_STORAGE:
            total = self.astype(delta, _SINGLE).sum(axis=0)
            return delta, self.astype(total, bias_dtype or dtypes.logical(delta.dtype))
        return delta, delta.sum(axis=0)

    # -- softmax cross-entropy ---------------------------------------------
    @_float16_in_float32()
    def softmax_cross_entropy(self, logits: Any, labels: Any) -> tuple[Any, Any]:
        """Mean −log softmax(logits)[label] over the rows, and the softmax itself
        (kept for backward). Shifting by the row maximum keeps exp finite."""
        xp = self.xp
        shifted = logits - logits.max(axis=1, keepdims=True)
        probs = xp.exp(shifted)
        sums = probs.sum(axis=1, keepdims=True)
        picked = shifted[xp.arange(logits.shape[0]), labels]
        loss = (xp.log(sums[:, 0]) - picked).sum() / logits.shape[0]
        probs /= sums
        return xp.asarray(loss), probs

    @_float16_in_float32()
    def softmax_cross_entropy_backward(self, probs: Any, labels: Any, g: Any) -> Any:
        """d logits = g ⊙ (softmax − onehot(labels)) / N."""
        scale = g / probs.shape[0]
        grad = probs * scale
        grad[self.xp.arange(probs.shape[0]), labels] -= scale
        return grad

    METRICS = 4  # loss · samples, correct, batches, first non-finite batch (1-based; 0: none)

    def accumulate_metrics(self, totals: Any, logits: Any, labels: Any, loss: Any) -> None:
        """A training batch's running metrics, in place on the device (totals: float64,
        ``METRICS`` long): totals[0] += loss · rows, totals[1] += the rows whose argmax
        is the label, totals[2] += 1, and totals[3], while 0, becomes totals[2] when the
        loss is not finite (so reading the totals says which batch went wrong)."""
        rows = logits.shape[0]
        if logits.dtype in HALF_STORAGE:  # an argmax of raw bfloat16 words would order them as integers
            logits = self.astype(logits, _SINGLE)
        value = self.astype(loss, dtypes.float64)
        totals[0] += value * rows
        totals[1] += (logits.argmax(axis=1) == labels).sum()
        totals[2] += 1
        if self.xp is np:
            if not np.isfinite(value) and totals[3] == 0:
                totals[3] = totals[2]
        else:  # no host read: a device-side select
            totals[3] = self.xp.where((totals[3] == 0) & ~self.xp.isfinite(value), totals[2], totals[3])

    # -- dropout -----------------------------------------------------------
    def dropout_mask(self, shape: tuple[int, ...], p: float, dtype: np.dtype) -> Any:
        """Inverted dropout: each entry is 0 with probability p, else 1/(1 − p),
        so the expected activation is unchanged and eval needs no rescaling."""
        if p >= 1:
            return self.xp.zeros(shape, dtype=dtype)
        # 16-bit floats draw in float32, as the kernel's 24-bit draw (a float16 draw would
        # round up to 1 and meet p rounded to float16); the scale is rounded once to the dtype.
        draw = _SINGLE if dtype in dtypes.HALVES else dtype
        keep = self.uniform(shape, 0.0, 1.0, draw) >= p
        scale = dtype.type(1.0 / (1.0 - p))
        if dtype in dtypes.HALVES:  # exact: the scale is already a 16-bit value
            return self.astype(keep * np.float32(scale), dtype)
        return keep * scale

    def dropout_forward(self, x: Any, p: float) -> tuple[Any, Any]:
        """Inverted dropout of x: (x ⊙ mask, what ``dropout_backward`` needs: here the mask)."""
        mask = self.dropout_mask(x.shape, p, x.dtype)
        return x * mask, mask

    def dropout_backward(self, g: Any, saved: Any) -> Any:
        """g ⊙ mask, with what ``dropout_forward`` returned beside its output."""
        return g * saved

    # -- optimizer updates (in place, PyTorch's formulas) -------------------
    def sgd_updates(
        self,
        tensors: list[tuple],
        hypers: Callable[[], list[dict]],
        found_inf: Any = None,
        steps: list | None = None,
    ) -> None:
        """``sgd_update`` of many parameters: ``tensors`` holds (param, grad,
        momentum_buffer or None) triples and ``hypers()`` returns the keyword
        arguments of each (advancing the optimizer's host state, so it is called
        exactly once per update; a captured CUDA graph calls it at each replay).

        A GradScaler's step (gpubp.amp) adds ``found_inf``, a 1-element float32
        array: when it is nonzero nothing is updated. ``steps`` holds per tensor a
        device step count (a 0-d float64 array of the updates applied) or None: a
        counted tensor's ``first_step`` (given as None) is whether its count is 0,
        and the counts then advance (``advance_steps``)."""
        rows = hypers()
        if not self._found_inf(found_inf):
            for (param, grad, buffer), hyper, step in zip(tensors, rows, steps or [None] * len(tensors)):
                if step is not None:
                    hyper = {**hyper, "first_step": self.item(step) == 0}
                self.sgd_update(param, grad, buffer, **hyper)
        if steps is not None:
            self.advance_steps(steps, found_inf)

    def adam_updates(
        self,
        tensors: list[tuple],
        hypers: Callable[[], list[dict]],
        found_inf: Any = None,
        steps: list | None = None,
    ) -> None:
        """``adam_update`` of many parameters: (param, grad, exp_avg, exp_avg_sq)
        quadruples, and ``hypers()``, ``found_inf`` and ``steps`` as in
        ``sgd_updates``; a counted tensor's ``step`` (given as None) is its count + 1."""
        rows = hypers()
        if not self._found_inf(found_inf):
            for (param, grad, exp_avg, exp_avg_sq), hyper, step in zip(tensors, rows, steps or [None] * len(tensors)):
                if step is not None:
                    hyper = {**hyper, "step": int(self.item(step)) + 1}
                self.adam_update(param, grad, exp_avg, exp_avg_sq, **hyper)
        if steps is not None:
            self.advance_steps(steps, found_inf)

    def _found_inf(self, found_inf: Any) -> bool:
        """Whether a GradScaler's found_inf says skip. A host read: free on the CPU;
        the GPU's kernels read the flag themselves (only their generic fallback gets here)."""
        return found_inf is not None and self.item(found_inf) != 0

    def advance_steps(self, steps: list, found_inf: Any = None) -> None:
        """Each device step count in ``steps`` (0-d float64 arrays; None entries are
        left alone) += 1, or += 0 when ``found_inf`` is nonzero: a step a GradScaler
        skipped does not count (PyTorch's fused optimizers add 1, then subtract found_inf)."""
        add = 1.0 if found_inf is None else 1.0 - (found_inf.reshape(()) != 0)
        for step in steps:
            if step is not None:
                step += add

    # -- loss scaling (gpubp.amp) -------------------------------------------
    def unscale_grads(self, grads: list, inv_scale: Any, found_inf: Any) -> None:
        """Multiplies every gradient in place by ``inv_scale`` (a 1-element float32
        array) and sets ``found_inf`` (1-element float32) to 1 when any gradient
        holds an inf or NaN; it is never cleared here. PyTorch's
        ``_amp_foreach_non_finite_check_and_unscale_``: 16-bit gradients are
        multiplied in float32 and rounded once. No host read."""
        for grad in grads:
            self._unscale_grad(grad, inv_scale, found_inf)

    @_float16_in_float32(updates=(0,))  # grad
    def _unscale_grad(self, grad: Any, inv_scale: Any, found_inf: Any) -> None:
        xp = self.xp
        found_inf[...] = xp.where(xp.isfinite(grad).all(), found_inf, np.float32(1))
        with np.errstate(over="ignore", invalid="ignore"):  # inf · 0 and overflow are what the check reports
            grad *= inv_scale.reshape(()).astype(grad.dtype)

    def update_scale(
        self, scale: Any, growth_tracker: Any, found_inf: Any, factors: Callable[[], tuple[float, float, int]]
    ) -> None:
        """PyTorch's ``_amp_update_scale_``, in place and without a host read: when
        ``found_inf`` (1-element float32) is nonzero, ``scale`` (1-element float32)
        ×= backoff_factor and ``growth_tracker`` (1-element int32) = 0; else the
        tracker counts the clean step, and on reaching growth_interval the scale
        ×= growth_factor (kept as it was if that is inf) and the tracker restarts
        at 0. Products in double, rounded to float32. ``factors()`` returns
        (growth_factor, backoff_factor, growth_interval): called once per update,
        at each replay in a captured CUDA graph, so changed factors are honoured."""
        growth_factor, backoff_factor, growth_interval = factors()
        xp = self.xp
        found = found_inf != 0
        wide = scale.astype(np.float64)
        with np.errstate(over="ignore"):  # a grown scale past float32's range is refused below
            grown = (wide * growth_factor).astype(np.float32)
            backed_off = (wide * backoff_factor).astype(np.float32)
        successful = growth_tracker + 1
        grow = ~found & (successful == growth_interval)
        scale[...] = xp.where(found, backed_off, xp.where(grow & xp.isfinite(grown), grown, scale))
        growth_tracker[...] = xp.where(found | grow, 0, successful)

    @_float16_in_float32(updates=(0, 2))  # param, momentum_buffer
    def sgd_update(
        self,
        param: Any,
        grad: Any,
        momentum_buffer: Any,
        *,
        lr: float,
        momentum: float,
        dampening: float,
        weight_decay: float,
        nesterov: bool,
        first_step: bool,
    ) -> None:
        """param −= lr·d, where d is the gradient plus the L2 term weight_decay·param,
        passed through the momentum buffer when momentum > 0."""
        d = grad + weight_decay * param if weight_decay else grad
        if momentum:
            if first_step:
                momentum_buffer[...] = d
            else:
                momentum_buffer *= momentum
                momentum_buffer += (1 - dampening) * d
            d = d + momentum * momentum_buffer if nesterov else momentum_buffer
        param -= lr * d

    @_float16_in_float32(updates=(0, 2, 3))  # param, exp_avg, exp_avg_sq
    def adam_update(
        self,
        param: Any,
        grad: Any,
        exp_avg: Any,
        exp_avg_sq: Any,
        *,
        step: int,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        weight_decay: float,
        decoupled: bool,
    ) -> None:
        """Adam (decoupled=False, L2 added to the gradient) or AdamW (decoupled
        weight decay applied to the parameter), with bias correction."""
        xp = self.xp
        if weight_decay and decoupled:
            param *= 1 - lr * weight_decay
        elif weight_decay:
            grad = grad + weight_decay * param
        exp_avg *= beta1
        exp_avg += (1 - beta1) * grad
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * (grad * grad)
        bias_correction1 = 1 - beta1**step
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        denom = xp.sqrt(exp_avg_sq)
        denom /= bias_correction2_sqrt
        denom += eps
        update = exp_avg / denom
        update *= lr / bias_correction1
        param -= update
