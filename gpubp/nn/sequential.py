"""Sequential: modules applied in order."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator

from gpubp.nn.linear import Linear
from gpubp.nn.module import Module
from gpubp.tensor import Tensor


class Sequential(Module):
    """Applies its modules in order: ``Sequential(m1, m2, …)`` names them "0", "1", …,
    ``Sequential(OrderedDict([("fc", m1), ("act", m2)]))`` by the given names, as
    torch.nn.Sequential. Indexing gives a module, slicing a new Sequential,
    assigning to an index replaces a module in place; ``append`` and ``extend`` add
    at the end.

    A Linear directly followed by a Sigmoid, Tanh or ReLU layer runs as one fused op
    (GEMM, then bias and activation in one pass); the result and gradients are the
    same as running them apart."""

    def __init__(self, *modules: Module | OrderedDict[str, Module]) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self._add(name, module, f"module {name!r}")
            return
        for i, module in enumerate(modules):
            self._add(str(i), module, f"item {i}")

    def _add(self, name: str, module: object, what: str) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: {what} is a {type(module).__name__}, not a Module")
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"Sequential: module name {name!r} must be a non-empty string without '.'")
        if name not in self._modules and hasattr(self, name):
            raise KeyError(f"Sequential: module name {name!r} would hide the attribute of that name")
        setattr(self, name, module)

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, index: int | slice) -> Module:
        if isinstance(index, slice):
            return Sequential(OrderedDict(list(self._modules.items())[index]))
        return list(self._modules.values())[index]

    def __setitem__(self, index: int, module: Module) -> None:
        """Replaces the module at ``index``, keeping its name and place."""
        name = list(self._modules)[index]
        self._add(name, module, f"item {index}")

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> Sequential:
        """Adds ``module`` at the end, named by its position; returns self."""
        self._add(str(len(self)), module, f"item {len(self)}")
        return self

    def extend(self, modules: Iterable[Module]) -> Sequential:
        """Appends each of ``modules``; returns self."""
        for module in modules:
            self.append(module)
        return self

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
