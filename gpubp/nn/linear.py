"""Fully connected layer y = x Wᵀ + b, with torch.nn.Linear's parameter shapes."""

from __future__ import annotations

import math
from typing import Any

from gpubp import creation, dtypes
from gpubp.nn import init as weight_init
from gpubp.nn.module import Module, Parameter
from gpubp.ops.linear import linear
from gpubp.tensor import Tensor

INITS = ("xavier", "he", "torch")


class Linear(Module):
    """``weight`` (out_features, in_features) and ``bias`` (out_features,), so state
    dicts move to and from torch.nn.Linear unchanged.

    ``init`` picks the weight initialisation: "xavier" (default, for sigmoid and
    tanh), "he" (for ReLU) or "torch" (PyTorch's U(±1/√in)). Biases start at 0,
    except with "torch".
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        init: str = "xavier",
        dtype: Any = dtypes.float32,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        for name, n in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(n, int) or n <= 0:
                raise ValueError(f"Linear: {name} must be a positive integer, got {n!r}")
        if init not in INITS:
            raise ValueError(f"Linear: init must be one of {INITS}, got {init!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.init = init
        self.weight = Parameter(creation.zeros(out_features, in_features, dtype=dtype, device=device))
        self.bias = Parameter(creation.zeros(out_features, dtype=dtype, device=device)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.init == "xavier":
            weight_init.xavier_uniform_(self.weight)
        elif self.init == "he":
            weight_init.kaiming_uniform_(self.weight)
        else:
            bound = 1 / math.sqrt(self.in_features)
            weight_init.uniform_(self.weight, -bound, bound)
            if self.bias is not None:
                weight_init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor, activation: str | None = None) -> Tensor:
        """x @ weight.T + bias, followed by ``activation`` in the same fused op when given.
        An input with the wrong number of features raises ValueError naming both shapes."""
        return linear(x, self.weight, self.bias, activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Identity(Module):
    """Returns its input unchanged; takes and ignores any arguments, as torch.nn.Identity
    (a placeholder where a layer is optional)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return x
