"""Activation layers, as torch.nn's. ``fused`` names the activation that Sequential folds
into a preceding Linear, so Linear + Sigmoid runs as one fused op."""

from __future__ import annotations

from gpubp.nn import functional as F  # noqa: N812 (PyTorch's name)
from gpubp.nn.module import Module
from gpubp.ops import activation
from gpubp.tensor import Tensor


class Sigmoid(Module):
    """σ(x) = 1 / (1 + e^(−x))."""

    fused = "sigmoid"

    def forward(self, x: Tensor) -> Tensor:
        return activation.sigmoid(x)


class Tanh(Module):
    """tanh(x)."""

    fused = "tanh"

    def forward(self, x: Tensor) -> Tensor:
        return activation.tanh(x)


class ReLU(Module):
    """max(x, 0). ``inplace=True`` is refused: gpubp's activations return new tensors."""

    fused = "relu"

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        F.check_not_inplace("ReLU", inplace)
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return activation.relu(x)


class LeakyReLU(Module):
    """x where x > 0, else negative_slope·x."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        F.check_not_inplace("LeakyReLU", inplace)
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return activation.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class GELU(Module):
    """x·Φ(x): exact (``approximate="none"``, through erf) or with the tanh approximation."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in activation.GELU_APPROXIMATIONS:
            raise ValueError(f"GELU: approximate must be one of {activation.GELU_APPROXIMATIONS}, got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return activation.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Softmax(Module):
    """softmax along ``dim`` (``axis=`` is an alias). Without a dim, PyTorch's deprecated
    implicit choice applies, with its warning: dim 0 for 0-, 1- and 3-D inputs, else 1."""

    def __init__(self, dim: int | None = None, *, axis: int | None = None) -> None:
        super().__init__()
        self.dim = _dim_or_axis("Softmax", dim, axis)

    def forward(self, x: Tensor) -> Tensor:
        return F.softmax(x, self.dim, _stacklevel=5)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """log softmax along ``dim`` (``axis=`` is an alias); without a dim, as Softmax."""

    def __init__(self, dim: int | None = None, *, axis: int | None = None) -> None:
        super().__init__()
        self.dim = _dim_or_axis("LogSoftmax", dim, axis)

    def forward(self, x: Tensor) -> Tensor:
        return F.log_softmax(x, self.dim, _stacklevel=5)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


def _dim_or_axis(name: str, dim: int | None, axis: int | None) -> int | None:
    if axis is not None and dim is not None:
        raise TypeError(f"{name}: got both dim={dim} and axis={axis}; axis is an alias of dim, pass one")
    return dim if axis is None else axis
