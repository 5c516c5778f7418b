"""ModuleList: a list of modules whose parameters the owning module registers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from gpubp.nn.module import Module


class ModuleList(Module):
    """Holds sub-modules in a list, registered under "0", "1", … so that ``parameters()``,
    ``to()``, ``train()`` and ``state_dict()`` of the module holding it reach them. It
    has no forward: iterate over it in yours. Indexing, slicing (a new ModuleList),
    assignment, deletion, ``len``, ``append``, ``extend``, ``insert`` and ``+=`` work
    as on torch.nn.ModuleList."""

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, index: int | slice) -> Module | ModuleList:
        if isinstance(index, slice):
            return ModuleList(list(self._modules.values())[index])
        return self._modules[self._key(index)]

    def __setitem__(self, index: int, module: Module) -> None:
        setattr(self, self._key(index), _checked("ModuleList", module))

    def __delitem__(self, index: int | slice) -> None:
        modules = list(self._modules.values())
        del modules[index if isinstance(index, slice) else int(self._key(index))]
        self._renumber(modules)

    def __iadd__(self, modules: Iterable[Module]) -> ModuleList:
        return self.extend(modules)

    def __add__(self, other: Iterable[Module]) -> ModuleList:
        return ModuleList([*self, *other])

    def append(self, module: Module) -> ModuleList:
        """Adds ``module`` at the end; returns self."""
        setattr(self, str(len(self)), _checked("ModuleList.append", module))
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        """Appends each of ``modules``; returns self."""
        if isinstance(modules, Module) and not isinstance(modules, (ModuleList,)):
            raise TypeError(f"ModuleList.extend takes an iterable of modules, got a {type(modules).__name__}")
        for module in modules:
            self.append(module)
        return self

    def insert(self, index: int, module: Module) -> None:
        """Inserts ``module`` before position ``index``, as list.insert."""
        modules = list(self._modules.values())
        modules.insert(index, _checked("ModuleList.insert", module))
        self._renumber(modules)

    def _key(self, index: int) -> str:
        n = len(self)
        if not isinstance(index, int) or not -n <= index < n:
            raise IndexError(f"ModuleList index {index!r} is out of range for {n} modules")
        return str(index % n)

    def _renumber(self, modules: list[Module]) -> None:
        for name in list(self._modules):
            del self._modules[name]
            del self.__dict__[name]
        for i, module in enumerate(modules):
            setattr(self, str(i), module)


def _checked(where: str, module: object) -> Module:
    if not isinstance(module, Module):
        raise TypeError(f"{where}: {type(module).__name__} is not a Module")
    return module
