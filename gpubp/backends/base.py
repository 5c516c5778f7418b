"""Array operations shared by every device, written once over an array module ``xp``.

A backend is NumPy or CuPy plus the handful of fused steps where a dedicated
kernel pays (activation Hadamard products, softmax cross-entropy, optimizer
updates, dropout masks). The generic versions here are the CPU path and the
test oracle ("NumPy twin") of every CUDA kernel in ``kernels/``; a backend
overrides a method only to make it faster, never to change what it computes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ACTIVATIONS = ("sigmoid", "tanh", "relu")
_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


class Backend:
    """One device's array module and fused steps. Subclasses set ``name``, ``device`` and ``xp``."""

    name: str
    device: str
    xp: Any
    array_type: type
    # Whether activate() must run before each op (a GPU backend on a multi-device machine).
    needs_activation = False

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

    def recycle(self, array: Any) -> None:
        """Takes back an array nothing else references, for ``empty`` to hand out
        again. A no-op here: CuPy's memory pool already reuses device memory."""

    def receive(self, array: Any, source: Backend) -> Any:
        """Copies an array from another backend onto this one (an explicit transfer)."""
        return self.from_host(source.to_host(array))

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

    # -- activations: forward from z, backward from the saved output y -------
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

    def sigmoid_backward(self, g: Any, y: Any) -> Any:
        """dz = g ⊙ y ⊙ (1 − y), from the saved output y = σ(z)."""
        dz = 1 - y
        dz *= y
        dz *= g
        return dz

    def tanh(self, z: Any, out: Any = None) -> Any:
        return self.xp.tanh(z, out=out)

    def tanh_backward(self, g: Any, y: Any) -> Any:
        """dz = g ⊙ (1 − y²), from the saved output y = tanh(z)."""
        dz = self.xp.empty_like(y)
        self.xp.multiply(y, y, out=dz)
        self.xp.subtract(1, dz, out=dz)
        dz *= g
        return dz

    def relu(self, z: Any, out: Any = None) -> Any:
        return self.xp.maximum(z, 0, out=out)

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

    # -- softmax cross-entropy ---------------------------------------------
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

    def softmax_cross_entropy_backward(self, probs: Any, labels: Any, g: Any) -> Any:
        """d logits = g ⊙ (softmax − onehot(labels)) / N."""
        scale = g / probs.shape[0]
        grad = probs * scale
        grad[self.xp.arange(probs.shape[0]), labels] -= scale
        return grad

    # -- dropout -----------------------------------------------------------
    def dropout_mask(self, shape: tuple[int, ...], p: float, dtype: np.dtype) -> Any:
        """Inverted dropout: each entry is 0 with probability p, else 1/(1 − p),
        so the expected activation is unchanged and eval needs no rescaling."""
        if p >= 1:
            return self.xp.zeros(shape, dtype=dtype)
        keep = self.uniform(shape, 0.0, 1.0, dtype) >= p
        return keep * dtype.type(1.0 / (1.0 - p))

    # -- optimizer updates (in place, PyTorch's formulas) -------------------
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
