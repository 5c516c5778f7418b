"""Optimizer base: parameter groups, per-parameter state, zero_grad and state_dict."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from gpubp import capture
from gpubp.backends import Backend
from gpubp.tensor import Tensor, _wrap


class Optimizer:
    """Holds ``param_groups`` (dicts with "params" and hyper-parameters, as in
    PyTorch) and ``state`` (per parameter: buffers and step counts).

    Stepped by a ``gp.amp.GradScaler``, an optimizer whose ``_step_supports_amp_scaling``
    is true finds the scaler's found_inf (a 1-element float32 device array) in
    ``_amp_found_inf`` for the duration of ``step()`` and skips its update on the
    device when it is set, as PyTorch's fused optimizers do. Only the device then
    knows whether a step counted, so from that step on the optimizer keeps its
    step counts there (``_steps_on_device``): Adam's ``state["step"]`` becomes a
    0-d float64 tensor, as PyTorch's with capturable=True; ``state_dict()`` still
    saves plain numbers."""

    _step_supports_amp_scaling = False
    _amp_found_inf: Any = None  # set by GradScaler.step while it calls step()

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], defaults: dict[str, Any]) -> None:
        for name, value in defaults.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"{type(self).__name__}: {name} must be non-negative, got {value}")
        self.defaults = defaults
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups: list[dict[str, Any]] = []
        for group in groups:
            group = {**defaults, **group, "params": list(group["params"])}
            for p in group["params"]:
                if not isinstance(p, Tensor) or not p.requires_grad:
                    raise TypeError(f"{type(self).__name__}: every parameter must be a Tensor that requires grad")
            self.param_groups.append(group)
        self.state: dict[Tensor, dict[str, Any]] = {}
        # Bumped whenever the state is replaced wholesale: a captured step holds the old buffers.
        self._generation = 0
        # Parameters whose state buffers exist but hold nothing yet (SGD's momentum
        # buffer: its first step copies the gradient in, never reading it).
        self._unfilled: set[Tensor] = set()
        # Set by the first step a GradScaler makes (and kept): step counts live on the device.
        self._steps_on_device = False

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forgets every parameter's gradient: sets ``.grad`` to None, or with
        ``set_to_none=False`` fills it with zeros in place (as PyTorch)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.zero_grad(set_to_none)

    def step(self) -> None:
        raise NotImplementedError

    def _params_with_grad(self) -> Iterable[tuple[dict[str, Any], Tensor]]:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    yield group, p

    def _entries_by_backend(self) -> dict[Backend, list[tuple[Tensor, dict[str, Any]]]]:
        """The (parameter, group) pairs to update, per device: each device's
        parameters are updated together, in one fused launch per dtype on a GPU."""
        entries: dict[Backend, list[tuple[Tensor, dict[str, Any]]]] = {}
        for group, p in self._params_with_grad():
            entries.setdefault(p.backend, []).append((p, group))
        if capture.current is not None:
            generation = self._generation
            capture.current.guard(lambda: self._generation == generation)
        return entries

    def _updated(self, entries: list[tuple[Tensor, dict[str, Any]]]) -> None:
        for p, _ in entries:
            p.bump_version()  # backward through a graph that saved p must now fail

    def _found_inf(self) -> Any:
        """This step's GradScaler found_inf array, or None; a step with one moves the
        step counts to the device for good."""
        found_inf = self._amp_found_inf
        if found_inf is not None:
            self._steps_on_device = True
        return found_inf

    def _device_count(self, backend: Backend, value: float, what: str) -> Tensor:
        """A device step count (a 0-d float64 tensor) starting at ``value``. Made only
        outside a capture: a replay would set it back to ``value`` every time."""
        if capture.current is not None:
            capture.current.cannot_replay(
                f"{type(self).__name__}'s {what} (a device step count starts once, not at every replay); run a "
                "step with the GradScaler before capturing, as gp.jit's warm-up calls do"
            )
        backend.activate()
        return _wrap(backend.xp.full((), value, dtype=np.float64), backend)

    def _loaded(self) -> None:
        """Called at the end of ``load_state_dict``: subclasses move what they count on the device."""

    # -- saving and loading --------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """{"state": {index: {name: NumPy array or number}}, "param_groups": [...]},
        parameters numbered in group order as in PyTorch."""
        index = {id(p): i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}
        state = {index[id(p)]: self._saved_state(p) for p in self.state}
        groups = [
            {**{k: v for k, v in g.items() if k != "params"}, "params": [index[id(p)] for p in g["params"]]}
            for g in self.param_groups
        ]
        return {"state": state, "param_groups": groups}

    def _saved_state(self, p: Tensor) -> dict[str, Any]:
        """A parameter's state as ``state_dict`` saves it: buffers as NumPy arrays, a
        device step count as the plain int it holds (a host read)."""
        saved = {}
        for name, value in self.state[p].items():
            if isinstance(value, Tensor):
                value = int(value.item()) if name == "step" else value.numpy()
            saved[name] = value
        return saved

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores hyper-parameters and buffers saved by ``state_dict`` onto the
        current parameters (same count and shapes), on their devices."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
            len(a["params"]) != len(b["params"]) for a, b in zip(groups, self.param_groups)
        ):
            raise ValueError(f"{type(self).__name__}.load_state_dict: parameter groups do not match this optimizer")
        params = [p for g in self.param_groups for p in g["params"]]
        self._generation += 1
        self._unfilled.clear()
        for saved, group in zip(groups, self.param_groups):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = {}
        for key, values in state_dict["state"].items():
            p = params[int(key)]
            restored = {}
            for name, value in values.items():
                if isinstance(value, (np.ndarray, Tensor)):
                    array = value.numpy() if isinstance(value, Tensor) else value
                    if array.shape != p.shape:
                        raise ValueError(
                            f"{type(self).__name__}.load_state_dict: {name} of parameter {key} has shape "
                            f"{array.shape}, the parameter {p.shape}"
                        )
                    value = _wrap(p.backend.from_host(array.astype(p.dtype, copy=False)), p.backend)
                restored[name] = value
            self.state[p] = restored
        self._loaded()
