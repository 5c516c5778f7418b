"""Sequential: modules applied in order."""

from __future__ import annotations

from collections.abc import Iterator

from gpubp.nn.linear import Linear
from gpubp.nn.module import Module
from gpubp.tensor import Tensor


class Sequential(Module):
    """Applies its modules in order. A Linear directly followed by a Sigmoid,
    Tanh or ReLU layer runs as one fused op (GEMM, then bias and activation in
    one pass); the result and gradients are the same as running them apart."""

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential: item {i} is a {type(module).__name__}, not a Module")
            setattr(self, str(i), module)

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def forward(self, x: Tensor) -> Tensor:
        modules = list(self._modules.values())
        i = 0
        while i < len(modules):
            module = modules[i]
            following = modules[i + 1] if i + 1 < len(modules) else None
            fused = getattr(following, "fused", None)
            if type(module) is Linear and fused is not None:
                x = module(x, activation=fused)
                i += 2
            else:
                x = module(x)
                i += 1
        return x
