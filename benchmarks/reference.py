"""What a careful person writes by hand: backprop of a sigmoid MLP with the
classic δ equations, vectorised over the batch, every buffer allocated once.

    forward    aˡ = σ(aˡ⁻¹ Wˡᵀ + bˡ)            (the last layer has no σ: logits)
    output     δᴸ = (softmax(zᴸ) − onehot(y)) / N
    backward   δˡ = (δˡ⁺¹ Wˡ⁺¹) ⊙ aˡ ⊙ (1 − aˡ)
    gradients  ∂W = δᵀ aˡ⁻¹, ∂b = Σ_batch δ
    update     W −= lr ∂W, b −= lr ∂b

``HandMLP`` is gpubp's yardstick in ``compare.py`` and the oracle of
``tests/test_reference_mlp.py``; ``GemmFloor`` does only its matrix products.
Both are written over an array module ``xp`` so the same code runs on CuPy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class HandMLP:
    """A sigmoid MLP with softmax cross-entropy, trained by plain SGD.

    ``params`` is a list of (weight (out, in), bias (out,)) per layer, copied in;
    weights are stored (out, in) like torch.nn.Linear and gpubp's Linear, so all
    contenders share one layout (x Wᵀ in the forward pass).
    """

    def __init__(self, params: Sequence[tuple[Any, Any]], batch: int, lr: float, xp: Any = np) -> None:
        self.xp = xp
        self.lr = lr
        self.weights = [xp.array(w, copy=True) for w, _ in params]
        self.biases = [xp.array(b, copy=True) for _, b in params]
        dtype = self.weights[0].dtype
        widths = [w.shape[0] for w in self.weights]
        # acts[l] holds layer l's output (the last one is the logits); deltas[l] its δ.
        self.acts = [xp.empty((batch, n), dtype) for n in widths]
        self.deltas = [xp.empty((batch, n), dtype) for n in widths]
        # σ′ = a(1 − a) of each hidden layer, computed here rather than in a temporary.
        self.slopes = [xp.empty((batch, n), dtype) for n in widths[:-1]]
        self.grad_w = [xp.empty_like(w) for w in self.weights]
        self.grad_b = [xp.empty_like(b) for b in self.biases]
        self.rows = xp.arange(batch)
        self.batch = batch

    def forward(self, x: Any) -> Any:
        """The logits of batch ``x`` (N, in); keeps every layer's output for backward."""
        xp = self.xp
        a = x
        last = len(self.weights) - 1
        for i, (w, b, out) in enumerate(zip(self.weights, self.biases, self.acts)):
            xp.matmul(a, w.T, out=out)
            out += b
            if i < last:  # σ(z) = 1 / (1 + e^(−z)), in place
                xp.negative(out, out=out)
                xp.exp(out, out=out)
                out += 1
                xp.reciprocal(out, out=out)
            a = out
        return a

    def loss_and_output_delta(self, labels: Any) -> Any:
        """Mean cross-entropy of the last forward pass (a 0-d array, so a GPU need
        not synchronise), and δᴸ = (softmax − onehot)/N into ``deltas[-1]``."""
        xp = self.xp
        logits, delta = self.acts[-1], self.deltas[-1]
        xp.subtract(logits, logits.max(axis=1, keepdims=True), out=delta)  # shifted: exp cannot overflow
        picked = delta[self.rows, labels]
        xp.exp(delta, out=delta)
        sums = delta.sum(axis=1, keepdims=True)
        loss = xp.log(sums).mean() - picked.mean()
        delta /= sums
        delta[self.rows, labels] -= 1
        delta *= 1 / self.batch
        return loss

    def backward(self, x: Any) -> None:
        """Gradients of every layer from δᴸ, back to the first layer (no ∂x)."""
        xp = self.xp
        for i in range(len(self.weights) - 1, -1, -1):
            delta = self.deltas[i]
            xp.matmul(delta.T, x if i == 0 else self.acts[i - 1], out=self.grad_w[i])
            delta.sum(axis=0, out=self.grad_b[i])
            if i > 0:
                below, a, slope = self.deltas[i - 1], self.acts[i - 1], self.slopes[i - 1]
                xp.matmul(delta, self.weights[i], out=below)
                xp.subtract(1, a, out=slope)
                slope *= a
                below *= slope

    def update(self) -> None:
        """W −= lr ∂W in place (scaling the gradient buffer, which is rewritten next step)."""
        for param, grad in zip(self.weights + self.biases, self.grad_w + self.grad_b):
            grad *= self.lr
            param -= grad

    def step(self, x: Any, labels: Any) -> Any:
        """One training step on (x, labels); returns the loss before the update."""
        if self.xp is np:
            # e^(−z) overflowing to inf gives σ = 0, the right limit: no warning wanted.
            with np.errstate(over="ignore"):
                return self._step(x, labels)
        return self._step(x, labels)

    def _step(self, x: Any, labels: Any) -> Any:
        self.forward(x)
        loss = self.loss_and_output_delta(labels)
        self.backward(x)
        self.update()
        return loss


class GemmFloor:
    """Only the matrix products of a training step, into preallocated outputs:
    forward a·Wᵀ for every layer, backward dW = δᵀa for every layer and dX = δW for
    all but the first. No step of any engine can be faster than this one."""

    def __init__(self, params: Sequence[tuple[Any, Any]], batch: int, xp: Any = np, seed: int = 2) -> None:
        self.xp = xp
        self.weights = [xp.array(w, copy=True) for w, _ in params]
        dtype = self.weights[0].dtype
        widths = [w.shape[0] for w in self.weights]
        rng = np.random.default_rng(seed)
        # Realistic magnitudes (no NaNs or subnormals from uninitialised memory):
        # activations in (0, 1), output δ of order 1/N as in softmax − onehot.
        self.acts = [xp.asarray(rng.random((batch, n), dtype=np.float32).astype(dtype)) for n in widths]
        self.deltas = [xp.asarray((rng.random((batch, n), dtype=np.float32) / batch).astype(dtype)) for n in widths]
        self.grad_w = [xp.empty_like(w) for w in self.weights]

    def step(self, x: Any, labels: Any = None) -> None:
        self.forward(x)
        self.backward(x)

    def forward(self, x: Any) -> None:
        a = x
        for w, out in zip(self.weights, self.acts):
            self.xp.matmul(a, w.T, out=out)
            a = out

    def backward(self, x: Any) -> None:
        xp = self.xp
        for i in range(len(self.weights) - 1, -1, -1):
            xp.matmul(self.deltas[i].T, x if i == 0 else self.acts[i - 1], out=self.grad_w[i])
            if i > 0:
                xp.matmul(self.deltas[i], self.weights[i], out=self.deltas[i - 1])
