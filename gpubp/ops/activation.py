"""Activations. σ, tanh and ReLU save only their output: σ′ = s(1 − s), tanh′ = 1 − y²,
relu′ = [y > 0] are computed from it by the backend's fused Hadamard step, never by
re-running exp. Leaky ReLU and GELU save their input (their derivative needs it)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gpubp import autocast_mode
from gpubp.tensor import Function, Tensor


class _SavedOutputActivation(Function):
    """y = f(x) where f′ is a function of y: the backend computes both."""

    handles_bfloat16 = True  # the backend's kernels (and float32 twins) take 16-bit floats

    kind: str

    def forward(self, x: Any) -> Any:
        y = getattr(self.backend, self.kind)(x)
        self.save(y)
        return y

    def backward(self, g: Any) -> Any:
        (y,) = self.saved
        return self.backend.activation_backward(g, y, self.kind)


class Sigmoid(_SavedOutputActivation):
    kind = "sigmoid"
    # The lecture notes' op-amp: a gain σ′(z), fixed by the forward pass (s = σ(z) is saved).
    derivatives = {"x": "⊙ σ′(z) = s(1−s)"}


class Tanh(_SavedOutputActivation):
    kind = "tanh"
    derivatives = {"x": "⊙ tanh′(z) = 1 − y²"}


class ReLU(_SavedOutputActivation):
    kind = "relu"
    derivatives = {"x": "⊙ relu′(z) = [y > 0]"}


class Softmax(Function):
    def __init__(self, axis: int) -> None:
        self.axis = axis

    def forward(self, x: Any) -> Any:
        xp = self.backend.xp
        y = xp.exp(x - x.max(axis=self.axis, keepdims=True))
        y /= y.sum(axis=self.axis, keepdims=True)
        self.save(y)
        return y

    derivatives = {"x": "s ⊙ (g − Σ g⊙s)"}

    def backward(self, g: Any) -> Any:
        (y,) = self.saved
        gy = g * y
        gy -= y * gy.sum(axis=self.axis, keepdims=True)
        return gy


class LogSoftmax(Function):
    def __init__(self, axis: int) -> None:
        self.axis = axis

    def forward(self, x: Any) -> Any:
        xp = self.backend.xp
        shifted = x - x.max(axis=self.axis, keepdims=True)
        shifted -= xp.log(xp.exp(shifted).sum(axis=self.axis, keepdims=True))
        self.save(shifted)
        return shifted

    derivatives = {"x": "g − softmax · Σ g"}

    def backward(self, g: Any) -> Any:
        (y,) = self.saved
        return g - self.backend.xp.exp(y) * g.sum(axis=self.axis, keepdims=True)


class LeakyReLU(Function):
    """x where x > 0, else slope·x; the gradient is 1 or slope (slope at 0, as PyTorch).
    Saves the input: for a slope ≤ 0 the output's sign would not tell the branch."""

    def __init__(self, negative_slope: float) -> None:
        self.negative_slope = negative_slope

    def forward(self, x: Any) -> Any:
        self.save(x)
        return self.backend.xp.where(x > 0, x, x * self.negative_slope)

    derivatives = {"x": "⊙ (1 where x > 0, else {negative_slope})"}

    def backward(self, g: Any) -> Any:
        (x,) = self.saved
        return self.backend.xp.where(x > 0, g, g * self.negative_slope)


class GELU(Function):
    """x·Φ(x), Φ the standard normal CDF: exactly, Φ(x) = (1 + erf(x/√2))/2, with
    gradient Φ(x) + x·φ(x); or with PyTorch's tanh approximation ("tanh"),
    Φ(x) ≈ (1 + tanh(√(2/π)(x + 0.044715x³)))/2, and its exact derivative. float16
    computes in float32 and rounds once. Saves the input and Φ (or the tanh)."""

    def __init__(self, approximate: str) -> None:
        self.approximate = approximate

    def forward(self, x: Any) -> Any:
        xp = self.backend.xp
        z = x.astype(_SINGLE) if x.dtype == _HALF else x
        if self.approximate == "tanh":
            t = xp.tanh(_SQRT_2_OVER_PI * (z + _KAPPA * z * z * z))
            self.save(z, t)
            y = 0.5 * z * (1 + t)
        else:
            cdf = 0.5 * (1 + erf(xp, z * _SQRT_HALF))
            self.save(z, cdf)
            y = z * cdf
        return y.astype(x.dtype, copy=False)

    derivatives = {"x": "⊙ GELU′(x) = Φ(x) + x·φ(x)"}

    def backward(self, g: Any) -> Any:
        z, saved = self.saved
        xp = self.backend.xp
        if self.approximate == "tanh":
            t = saved
            slope = 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * _KAPPA * z * z)
        else:
            slope = saved + z * xp.exp(-0.5 * z * z) * _INV_SQRT_2PI
        return (g * slope).astype(g.dtype, copy=False)


_HALF = np.dtype(np.float16)
_SINGLE = np.dtype(np.float32)
_SQRT_HALF = math.sqrt(0.5)
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_KAPPA = 0.044715
GELU_APPROXIMATIONS = ("none", "tanh")
# math.erf element by element: NumPy has no erf, and libm's is accurate to an ulp in float64.
_host_erf = np.frompyfunc(math.erf, 1, 1)


def erf(xp: Any, z: Any) -> Any:
    """The error function of an array of this backend's module ``xp``, in z's dtype.

    On the CPU it is libm's erf (through math.erf, one element at a time: about 75 ns
    each, correct to float64 precision); on a GPU CuPy's, i.e. CUDA's erf (imported
    on first use, so the CPU never needs cupyx)."""
    if xp is np:
        return np.asarray(_host_erf(z), dtype=z.dtype)
    from cupyx.scipy.special import erf as device_erf

    return device_erf(z).astype(z.dtype, copy=False)


def sigmoid(x: Tensor) -> Tensor:
    """σ(x) = 1 / (1 + e^(−x)); finite for any input."""
    return Sigmoid()(x)


def tanh(x: Tensor) -> Tensor:
    """tanh(x), element by element."""
    return Tanh()(x)


def relu(x: Tensor) -> Tensor:
    """max(x, 0); the gradient at 0 is 0, as PyTorch's."""
    return ReLU()(x)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x where x > 0, else ``negative_slope``·x (PyTorch's leaky_relu)."""
    return LeakyReLU(float(negative_slope))(x)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """x·Φ(x), Φ the standard normal CDF: exact ("none", through erf) or PyTorch's tanh
    approximation ("tanh"), as torch.nn.functional.gelu."""
    if approximate not in GELU_APPROXIMATIONS:
        raise ValueError(f"gelu: approximate must be one of {GELU_APPROXIMATIONS}, got {approximate!r}")
    return GELU(approximate)(x)


def softmax(x: Tensor, dim: int = -1, *, axis: int | None = None) -> Tensor:
    """exp(x) / Σ exp(x) along ``dim`` (``axis=`` is an alias), shifted by the maximum
    so it never overflows."""
    return Softmax(_dim("softmax", dim, axis))(autocast_mode.in_float32(x))


def log_softmax(x: Tensor, dim: int = -1, *, axis: int | None = None) -> Tensor:
    """x − log Σ exp(x) along ``dim`` (``axis=`` is an alias), computed stably."""
    return LogSoftmax(_dim("log_softmax", dim, axis))(autocast_mode.in_float32(x))


def _dim(op: str, dim: int, axis: int | None) -> int:
    if axis is not None:
        if dim != -1:
            raise TypeError(f"{op}: got both dim={dim} and axis={axis}; axis is an alias of dim, pass one")
        dim = axis
    if not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an integer, got {dim!r}")
    return int(dim)
