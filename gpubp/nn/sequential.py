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

    def __setattr__(self, name: str, value: object) -> None:
        super().__setattr__(name, value)
        object.__setattr__(self, "_plan", None)  # the modules may have changed

    def _fusion_plan(self) -> list[tuple[Module, str | None]]:
        """(module, activation to fuse into it) pairs; the fused activation layers are skipped."""
        plan: list[tuple[Module, str | None]] = []
        modules = list(self._modules.values())
        i = 0
        while i < len(modules):
            fused = getattr(modules[i + 1], "fused", None) if i + 1 < len(modules) else None
            if type(modules[i]) is Linear and fused is not None:
                plan.append((modules[i], fused))
                i += 2
            else:
                plan.append((modules[i], None))
                i += 1
        return plan

    def forward(self, x: Tensor) -> Tensor:
        plan = self._plan
        if plan is None:
            plan = self._fusion_plan()
            object.__setattr__(self, "_plan", plan)  # not self._plan = ...: __setattr__ would reset it
        for module, activation in plan:
            x = module.forward(x) if activation is None else module.forward(x, activation)
        return x
