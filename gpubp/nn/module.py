"""Module: a container of parameters and sub-modules, with PyTorch's bookkeeping API."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from gpubp import capture
from gpubp.backends import get_backend
from gpubp.grad_mode import no_grad
from gpubp.tensor import Tensor, _wrap


class Parameter(Tensor):
    """A leaf tensor that a Module registers as learnable (requires grad)."""

    __slots__ = ()

    def __init__(self, data: Tensor) -> None:
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter wraps a Tensor, got {type(data).__name__}")
        self.data = data.data
        self._backend = data.backend
        self.grad = None
        self._node = None
        self._version = [0]
        self._requires_grad = False
        self.requires_grad = True

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of layers and models: assign Parameters and Modules as attributes,
    implement ``forward``, and call the module like a function."""

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__() first")
        # Assigning to a name already registered keeps its place in the order (as torch):
        # pop only from the other registry.
        if isinstance(value, Parameter):
            self._modules.pop(name, None)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._parameters.pop(name, None)
            self._modules[name] = value
        else:
            self._parameters.pop(name, None)
            self._modules.pop(name, None)
        object.__setattr__(self, name, value)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if capture.current is not None:
            capture.current.saw_module(self)  # a replay repeats this call in this mode only
        return self.forward(*args, **kwargs)

    # -- traversal ---------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, module in self._modules.items():
            yield from module.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Calls ``fn`` on every sub-module and then on self (children first, as
        torch.nn.Module.apply); returns self. Typical use: initialising weights,
        ``model.apply(lambda m: gp.nn.init.zeros_(m.bias) if isinstance(m, gp.nn.Linear) else None)``."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) pairs, each parameter once."""
        seen: set[int] = set()
        for prefix, module in self.named_modules():
            for name, param in module._parameters.items():
                if id(param) not in seen:
                    seen.add(id(param))
                    yield (f"{prefix}.{name}" if prefix else name), param

    def parameters(self) -> Iterator[Parameter]:
        for _, param in self.named_parameters():
            yield param

    # -- modes, devices, gradients ------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Training mode (dropout active); ``eval()`` is ``train(False)``."""
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forgets every parameter's gradient: sets ``.grad`` to None, or with
        ``set_to_none=False`` fills it with zeros in place (as PyTorch)."""
        for param in self.parameters():
            param.zero_grad(set_to_none)

    def to(self, device: str) -> Module:
        """Moves every parameter (and its gradient) to ``device`` in place, keeping
        the Parameter objects, so optimizers made before still hold them."""
        backend = get_backend(device)
        with no_grad():
            for param in self.parameters():
                if param.backend is not backend:
                    param.data = param.to(backend).data
                    param._backend = backend
                    param.bump_version()
                    if param.grad is not None:
                        param.grad = param.grad.to(backend)
        return self

    @property
    def device(self) -> str:
        """The device of the first parameter ("cpu" for a module without any)."""
        for param in self.parameters():
            return param.device
        return "cpu"

    # -- saving and loading --------------------------------------------------
    def state_dict(self) -> OrderedDict[str, Tensor]:
        """Parameter name -> detached tensor sharing the parameter's data."""
        return OrderedDict((name, param.detach()) for name, param in self.named_parameters())

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Copies values (Tensors or arrays, e.g. a torch state_dict's ``.numpy()``)
        into the parameters, converting dtype and device. Shape mismatches,
        missing and unexpected keys raise (the last two only when ``strict``)."""
        params = dict(self.named_parameters())
        missing = [k for k in params if k not in state]
        unexpected = [k for k in state if k not in params]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        with no_grad():
            for name, value in state.items():
                if name not in params:
                    continue
                param = params[name]
                array = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
                if array.shape != param.shape:
                    raise ValueError(
                        f"load_state_dict: {name} has shape {array.shape} in the state but {param.shape} in the model"
                    )
                param.copy_(_wrap(param.backend.from_host(array.astype(param.dtype, copy=False)), param.backend))

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"  ({name}): " + repr(module).replace("\n", "\n  ") for name, module in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + ("\n" + "\n".join(lines) + "\n)" if lines else ")")
