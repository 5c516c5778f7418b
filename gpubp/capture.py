"""The rules of a function captured by ``gp.jit``, on every device.

While ``gp.jit`` captures a call, ``current`` is its ``Capture``. A CUDA graph
replays the device work of that call and none of its Python, so:

- reading a value on the host (``.item()``, ``.numpy()``, ``bool(t)``) or
  copying host data to the device inside the function raises ``CaptureError``
  at capture: a replay could not repeat it (the CPU enforces the same rules, so
  a function that captures on the CPU captures on a GPU);
- whatever changes from step to step on the host (the learning rate, Adam's
  step count, the random generator's offset) is deferred: the code that would
  bake it into a kernel argument registers a ``replay value`` instead, computed
  on the host before every replay (advancing the host state exactly as an eager
  step does) and written to device memory that the captured kernels read;
- everything a replay depends on but does not own is recorded as a guard (the
  arrays of tensors it reads, modules' training flags) and checked before each
  replay; a failed guard means a new capture, never a wrong replay.

Only the CUDA backend defers values (``device_values`` is None on the CPU,
where a call is simply run again). Kept free of Tensor imports: the tensor
module reads ``current`` on its hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

current: Capture | None = None


class CaptureError(RuntimeError):
    """Something a captured function did that a replay could not repeat."""


class Capture:
    """What one capture of a function recorded: guards, kept arrays and the
    values and host effects to run before each replay."""

    def __init__(self, name: str, device_values: Any = None) -> None:
        self.name = name
        self.device_values = device_values  # ReplayValues of the CUDA backend, None on the CPU
        self.guarded: dict[int, tuple[Any, Any]] = {}  # id(tensor) -> (tensor, its array at capture)
        self.modules: dict[int, tuple[Any, bool]] = {}  # id(module) -> (module, its training flag)
        self.before_replay: list[Callable[[], None]] = []
        self.extra_guards: list[Callable[[], bool]] = []

    # -- what the captured function touches -----------------------------------
    def saw(self, tensors: Sequence[Any]) -> None:
        """Tensors an op read or changed: a replay reads their arrays as they were
        at capture, so each must still hold the same array at every replay."""
        guarded = self.guarded
        for t in tensors:
            if hasattr(t, "_backend") and id(t) not in guarded:
                guarded[id(t)] = (t, t.data)

    def saw_module(self, module: Any) -> None:
        """A module called during capture: its training flag is part of what was captured."""
        self.modules.setdefault(id(module), (module, module.training))

    def guard(self, check: Callable[[], bool]) -> None:
        """An extra condition a replay needs (checked before each replay)."""
        self.extra_guards.append(check)

    def valid(self) -> bool:
        """Whether a replay would still do what the captured call did."""
        for t, array in self.guarded.values():
            if t.data is not array:
                return False
        for module, training in self.modules.values():
            if module.training != training:
                return False
        return all(check() for check in self.extra_guards)

    # -- what cannot be captured -------------------------------------------------
    def host_read(self, what: str) -> None:
        raise CaptureError(
            f"gp.jit({self.name}): {what} reads a value on the host inside the captured function; a CUDA graph "
            "replays device work only, so the value would be stale. Return the tensor from the function and "
            "read it after the call."
        )

    def host_copy(self, what: str) -> None:
        raise CaptureError(
            f"gp.jit({self.name}): {what} copies host data to the device inside the captured function; a CUDA "
            "graph cannot repeat a host copy. Make the tensor once outside the function (or pass it as an "
            "argument, whose data each call copies in)."
        )

    def cannot_replay(self, what: str) -> None:
        raise CaptureError(f"gp.jit({self.name}): {what} cannot be captured into a CUDA graph")

    # -- what changes between replays ------------------------------------------------
    def replay_value(self, count: int, compute: Callable[[], Sequence[float | int]], floats: bool = True) -> int:
        """Device memory for ``count`` 8-byte values (doubles, or unsigned integers
        when ``floats`` is false) that ``compute()`` produces on the host before
        every replay; returns its device address for a captured kernel to read.
        ``compute`` may advance host state (step counts, offsets): it runs once
        per replay, in the order the values were registered."""
        if self.device_values is None:
            raise CaptureError(f"gp.jit({self.name}): replay values need a device that captures graphs")
        return self.device_values.reserve(count, compute, floats)

    def on_replay(self, effect: Callable[[], None]) -> None:
        """A host-side effect an eager call would have had (e.g. marking a check as
        pending), run before every replay."""
        self.before_replay.append(effect)
