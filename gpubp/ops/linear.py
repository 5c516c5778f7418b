"""The fused layer y = act(x Wᵀ + b): one GEMM plus one elementwise pass each way.

Backward is the four BP equations: δ = g ⊙ act′ (from the saved output),
∂W = δᵀ x, ∂b = Σ δ over the batch, ∂x = δ W.

Under ``gp.autocast`` the layer runs in the low dtype (``compute_dtype``): x,
W and b are cast to it in forward (the 16-bit copies are what backward reads),
the GEMM accumulates in float32, and each gradient is written straight in its
input's own dtype: the float32 master weight's ∂W by a GEMM with a float32
output, ∂b by the bias-gradient kernel's float32 sum, so no cast pass follows.
"""

from __future__ import annotations

from typing import Any

from gpubp import autocast_mode, dtypes
from gpubp.backends.base import ACTIVATIONS
from gpubp.ops.activation import ReLU, Sigmoid, Tanh
from gpubp.tensor import Function, Tensor

# The ops whose derivative a fused activation applies (their labels say it in δ).
_ACTIVATION_OPS = {"sigmoid": Sigmoid, "tanh": Tanh, "relu": ReLU}


class Linear(Function):
    handles_bfloat16 = True  # 16-bit GEMMs accumulate in float32; the bias/activation kernels take 16 bits

    def __init__(self, activation: str | None, compute_dtype: Any = None) -> None:
        self.activation = activation
        self.compute_dtype = compute_dtype  # autocast's low dtype, or None: the inputs' own

    @property
    def act_derivative(self) -> str:
        """The fused activation's factor in δ, as that activation's own op labels it
        ("" without an activation); read by ``derivatives``' "δ" entry."""
        op = _ACTIVATION_OPS.get(self.activation)
        return "" if op is None else f" {op.derivatives['x']}"

    def forward(self, x: Any, weight: Any, bias: Any = None) -> Any:
        if self.compute_dtype is not None:
            # Remember the inputs' dtypes (their gradients' dtypes), then compute in the low one.
            self.grad_dtypes = tuple(dtypes.logical(a.dtype) for a in (x, weight, bias) if a is not None)
            x, weight = (self.backend.astype(a, self.compute_dtype) for a in (x, weight))
            if bias is not None:
                bias = self.backend.astype(bias, self.compute_dtype)
        if x.ndim != 2:  # (..., in): fold the leading axes into one batch axis
            y = self._forward(x.reshape(-1, x.shape[-1]), weight, bias)
            self.save(x, weight, y)
            return y.reshape(*x.shape[:-1], weight.shape[0])
        y = self._forward(x, weight, bias)
        self.save(x, weight, y)
        return y

    def _forward(self, x: Any, weight: Any, bias: Any) -> Any:
        return self.backend.bias_activation(self.backend.matmul(x, weight.T), bias, self.activation)

    # The four BP equations: δ from the saved output, then one product per input.
    derivatives = {"δ": "g{act_derivative}", "x": "δ · W (Wᵀδ per sample)", "weight": "δᵀ · a", "bias": "Σ_rows δ"}

    def backward(self, g: Any) -> tuple:
        x, weight, y = self.saved
        needs = self.needs_input_grad
        if x.ndim != 2:
            x = x.reshape(-1, x.shape[-1])
            g = g.reshape(-1, weight.shape[0])
        backend = self.backend
        has_bias = len(needs) == 3
        if self.compute_dtype is None:
            x_dtype = w_dtype = b_dtype = None  # each gradient in the dtype of the product
        else:
            x_dtype, w_dtype, *rest = self.grad_dtypes
            b_dtype = rest[0] if rest else None
        delta, bias_grad = backend.linear_delta(g, y, self.activation, has_bias and needs[2], b_dtype)
        w_storage = weight.dtype if w_dtype is None else backend.storage_dtype(w_dtype)
        grads = (
            backend.matmul(delta, weight, out_dtype=x_dtype).reshape(self.saved[0].shape) if needs[0] else None,
            # ∂W into a recycled buffer when there is one: big weights' gradients are
            # then written where last step's were, as a hand-written backprop does.
            backend.matmul(delta.T, x, out=backend.empty(weight.shape, w_storage)) if needs[1] else None,
        )
        return grads + (bias_grad,) if has_bias else grads


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None) -> Tensor:
    """act(x @ weight.T + bias) for x of shape (..., in), weight (out, in), bias (out,).

    ``activation`` is None, "sigmoid", "tanh" or "relu".
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"linear: input must be a Tensor, got {type(x).__name__}")
    xd, wd = x.data, weight.data
    # Under autocast the three are cast to one low dtype, so theirs may differ.
    low = None
    if autocast_mode._active is not None:
        low = autocast_mode.low_dtype(x, weight) if bias is None else autocast_mode.low_dtype(x, weight, bias)
    # One combined test on the hot path; the message is worked out only on failure.
    if (
        wd.ndim != 2
        or xd.ndim == 0
        or xd.shape[-1] != wd.shape[1]
        or (low is None and xd.dtype != wd.dtype)
        or (bias is not None and (bias.data.shape != (wd.shape[0],) or (low is None and bias.data.dtype != xd.dtype)))
        or (activation is not None and activation not in ACTIVATIONS)
    ):
        _raise_linear_error(x, weight, bias, activation)
    op = Linear(activation, low)
    if bias is None:
        return op(x, weight)
    return op(x, weight, bias)


def _raise_linear_error(x: Tensor, weight: Tensor, bias: Tensor | None, activation: str | None) -> None:
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(f"linear: unknown activation {activation!r}; use one of {ACTIVATIONS} or None")
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out, in), got shape {weight.shape}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input has {x.shape[-1] if x.ndim else 0} features (shape {x.shape}) "
            f"but the weight expects {weight.shape[1]} (weight shape {weight.shape})"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias shape {bias.shape} does not match weight shape {weight.shape}")
    raise TypeError(
        f"linear: dtype mismatch (input {x.dtype}, weight {weight.dtype}"
        + (f", bias {bias.dtype})" if bias is not None else ")")
    )
