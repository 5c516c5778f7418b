"""PyTorch's ``torch.nn.functional`` names over gpubp's ops: ``import gpubp.nn.functional as F``.

The functions take PyTorch's arguments; the losses are gpubp's own (``gp.cross_entropy``
and the others), documented there, including where they differ from PyTorch.
"""

from __future__ import annotations

import warnings
from typing import Any

from gpubp.ops import activation
from gpubp.ops import dropout as _dropout
from gpubp.ops.activation import gelu, sigmoid, tanh
from gpubp.ops.linear import linear
from gpubp.ops.loss import binary_cross_entropy_with_logits, cross_entropy, mse_loss, nll_loss
from gpubp.tensor import Tensor

__all__ = [
    "linear",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "gelu",
    "softmax",
    "log_softmax",
    "dropout",
    "cross_entropy",
    "nll_loss",
    "mse_loss",
    "binary_cross_entropy_with_logits",
]


def relu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002 (PyTorch's name)
    """max(x, 0). ``inplace=True`` is refused: gpubp's activations return new tensors."""
    check_not_inplace("relu", inplace)
    return activation.relu(input)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:  # noqa: A002
    """x where x > 0, else ``negative_slope``·x; ``inplace=True`` is refused, as in relu."""
    check_not_inplace("leaky_relu", inplace)
    return activation.leaky_relu(input, negative_slope)


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:  # noqa: A002
    """softmax along ``dim``, after casting to ``dtype`` when given. Without a dim,
    PyTorch's deprecated implicit choice, with its warning: dim 0 for 0-, 1- and 3-D
    inputs, else 1."""
    if dim is None:
        dim = _implicit_dim("softmax", input.ndim, _stacklevel)
    return activation.softmax(input if dtype is None else input.to(dtype=dtype), dim)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:  # noqa: A002
    """log softmax along ``dim``; ``dtype`` and a missing dim as in softmax."""
    if dim is None:
        dim = _implicit_dim("log_softmax", input.ndim, _stacklevel)
    return activation.log_softmax(input if dtype is None else input.to(dtype=dtype), dim)


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:  # noqa: A002
    """Inverted dropout while ``training`` (the default, as PyTorch's), else the identity."""
    check_not_inplace("dropout", inplace)
    return _dropout.dropout(input, p, training)


def check_not_inplace(op: str, inplace: bool) -> None:
    """Refuses ``inplace=True``: the tape keeps the values backward needs, so gpubp's
    activations always return a new tensor; silently not changing the input would
    break code that relies on the change."""
    if inplace:
        raise ValueError(f"{op}: inplace=True is not supported; gpubp's activations return a new tensor")


def _implicit_dim(name: str, ndim: int, stacklevel: int) -> int:
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X as an argument.",
        UserWarning,
        stacklevel=stacklevel,
    )
    return 0 if ndim in (0, 1, 3) else 1
