"""``gp.amp.GradScaler``: dynamic loss scaling for float16 training, with the API
and semantics of ``torch.amp.GradScaler``, kept on the device.

>>> scaler = gp.amp.GradScaler("cuda")
>>> loss = gp.cross_entropy(model(x), labels)
>>> opt.zero_grad()
>>> scaler.scale(loss).backward()   # gradients of loss · scale: small ones survive float16
>>> scaler.step(opt)                # unscales; skips the update if a gradient is inf or NaN
>>> scaler.update()                 # backs off after an overflow, grows after clean steps

Nothing here waits for the device, so a whole scaled step works inside
``gp.jit``: the scale and its growth tracker are device arrays (0-d float32 and
int32, as PyTorch's); ``unscale_`` multiplies the gradients by 1/scale and sets a
device found_inf flag in one kernel launch (``Backend.unscale_grads``); the
optimizer reads that flag in its update kernel and writes nothing when it is set
(its step counts are then device counts that a skipped step does not advance:
``gpubp.optim.Optimizer``); and ``update`` is one device thread
(``Backend.update_scale``). Only ``get_scale()`` and ``state_dict()`` read a
value on the host.
"""

from __future__ import annotations

import enum
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpubp import autocast_mode, capture
from gpubp import cuda as gp_cuda
from gpubp.backends import Backend, get_backend
from gpubp.tensor import Tensor, _wrap

_FLOAT32 = np.dtype(np.float32)


class _Stage(enum.Enum):
    READY = 0
    UNSCALED = 1
    STEPPED = 2


@dataclass
class _OptimizerState:
    """Where one optimizer is in the current iteration, and its found_inf flag."""

    stage: _Stage = _Stage.READY
    found_inf: Any = None  # a 0-d float32 device array once unscale_ has seen a gradient


class GradScaler:
    """Scales the loss so float16 gradients do not underflow, and undoes it before
    the optimizer step (PyTorch's ``torch.amp.GradScaler``).

    ``device`` is "cuda", "cuda:N" or "cpu". The scale starts at ``init_scale``;
    an inf or NaN gradient skips that optimizer step (on the device) and
    multiplies the scale by ``backoff_factor``; ``growth_interval`` clean steps
    in a row multiply it by ``growth_factor``. ``enabled=False`` makes every
    method a pass-through. Loss scaling is for float16: with ``gp.autocast`` in
    bfloat16, ``scale`` raises."""

    def __init__(
        self,
        device: str = "cuda",
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
        enabled: bool = True,
    ) -> None:
        if not isinstance(device, str):
            raise TypeError(f"GradScaler: device must be a string like 'cuda' or 'cpu', got {type(device).__name__}")
        self._device = device
        self._enabled = bool(enabled)
        if self._enabled and device.partition(":")[0] == "cuda":
            reason = gp_cuda.unavailable_reason()
            if reason is not None:
                warnings.warn(
                    f"GradScaler is enabled, but CUDA is not available ({reason}); disabling it", stacklevel=2
                )
                self._enabled = False
        init_scale = float(init_scale)
        if self._enabled:  # PyTorch checks the settings of an enabled scaler only
            self._check_factors(growth_factor, backoff_factor, growth_interval)
            if not 0.0 < init_scale <= float(np.finfo(np.float32).max):
                raise ValueError(f"GradScaler: init_scale must be a positive finite float32 value, got {init_scale}")
        self._init_scale = init_scale
        self._growth_factor = float(growth_factor)
        self._backoff_factor = float(backoff_factor)
        self._growth_interval = growth_interval
        self._per_optimizer_states: dict[int, _OptimizerState] = {}
        if self._enabled:
            self._backend: Backend = get_backend(device)
            # 0-d, as PyTorch's; made here, never inside a captured step (a replay would reset them).
            self._scale = _wrap(self._backend.from_host(np.array(init_scale, np.float32)), self._backend)
            self._growth_tracker = _wrap(self._backend.from_host(np.array(0, np.int32)), self._backend)

    # -- the iteration ---------------------------------------------------------------
    def scale(self, outputs: Any) -> Any:
        """``outputs`` (a tensor, or a list or tuple of them, nested) times the scale,
        as recorded ops, so backward gives the scaled gradients."""
        if not self._enabled:
            return outputs
        dtype = autocast_mode.current_dtype(self._backend.device)
        if dtype is not None and str(np.dtype(dtype)) == "bfloat16":
            raise ValueError(
                f"GradScaler.scale: gp.autocast is active in bfloat16 on {self._backend.device}; bfloat16 has "
                "float32's exponent range, so its gradients do not underflow and need no loss scaling. Drop the "
                "GradScaler (or make it with enabled=False)"
            )
        return self._scaled(outputs)

    def _scaled(self, value: Any) -> Any:
        if isinstance(value, Tensor):
            if value.backend is not self._backend:
                raise ValueError(
                    f"GradScaler.scale: an output is on {value.device}, the scaler on {self._backend.device}; "
                    f"make the GradScaler with device={value.device!r}"
                )
            return value * self._scale
        if isinstance(value, (list, tuple)):
            return type(value)(self._scaled(v) for v in value)
        raise ValueError(f"GradScaler.scale: outputs must be a Tensor or a list or tuple of them, got {type(value)}")

    def unscale_(self, optimizer: Any) -> None:
        """Divides ``optimizer``'s gradients by the scale, in place, and records on the
        device whether any is inf or NaN. Once per optimizer per iteration; ``step``
        calls it when it was not called (call it first to clip unscaled gradients)."""
        if not self._enabled:
            return
        state = self._per_optimizer_states.setdefault(id(optimizer), _OptimizerState())
        if state.stage is _Stage.UNSCALED:
            raise RuntimeError("unscale_() has already been called on this optimizer since the last update().")
        if state.stage is _Stage.STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        grads = self._gradients(optimizer)
        if grads:
            backend, xp = self._backend, self._backend.xp
            backend.activate()
            # PyTorch's scale.double().reciprocal().float(): 1/scale correctly rounded to float32.
            wide = self._scale.data.astype(np.float64)
            with np.errstate(divide="ignore"):  # a scale backed off to 0 gives inf, and inf gradients
                xp.reciprocal(wide, out=wide)
            found_inf = xp.zeros((), dtype=np.float32)
            backend.unscale_grads([g.data for g in grads], wide.astype(np.float32), found_inf)
            for g in grads:
                g.bump_version()
            state.found_inf = found_inf
        state.stage = _Stage.UNSCALED

    def step(self, optimizer: Any, *args: Any, **kwargs: Any) -> Any:
        """``optimizer.step(*args, **kwargs)`` with unscaled gradients, skipped (on the
        device, for gpubp's optimizers) when a gradient is inf or NaN. Returns what
        ``optimizer.step`` returns."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("Closure use is not currently supported if GradScaler is enabled.")
        state = self._per_optimizer_states.setdefault(id(optimizer), _OptimizerState())
        if state.stage is _Stage.STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if state.stage is _Stage.READY:
            self.unscale_(optimizer)
        if state.found_inf is None:
            raise RuntimeError(
                "No inf checks were recorded for this optimizer (none of its parameters has a gradient)."
            )
        if getattr(optimizer, "_step_supports_amp_scaling", False):
            optimizer._amp_found_inf = state.found_inf  # read by its update kernels (gpubp.optim.Optimizer)
            try:
                result = optimizer.step(*args, **kwargs)
            finally:
                del optimizer._amp_found_inf
        else:  # an optimizer that cannot skip on the device: PyTorch's host check
            if capture.current is not None:
                capture.current.host_read(
                    f"GradScaler.step of a {type(optimizer).__name__} (which cannot skip its update on the device)"
                )
            result = None if self._backend.item(state.found_inf) else optimizer.step(*args, **kwargs)
        state.stage = _Stage.STEPPED
        return result

    def update(self, new_scale: float | Tensor | None = None) -> None:
        """Adjusts the scale for the next iteration, on the device: × backoff_factor
        if any optimizer stepped this iteration found an inf or NaN, × growth_factor
        after growth_interval clean iterations in a row. ``new_scale`` (a number, or
        a 1-element tensor on the scaler's device) sets it instead."""
        if not self._enabled:
            return
        if new_scale is not None:
            self._set_scale(new_scale)
        else:
            found_infs = [s.found_inf for s in self._per_optimizer_states.values() if s.found_inf is not None]
            if not found_infs:
                raise RuntimeError("No inf checks were recorded prior to update().")
            found_inf = found_infs[0]
            for other in found_infs[1:]:
                found_inf += other  # in place, as PyTorch's: that optimizer's step is done
            self._backend.update_scale(self._scale.data, self._growth_tracker.data, found_inf, self._factors)
        self._scale.bump_version()  # a graph that saved the old scale must not backpropagate with the new one
        self._per_optimizer_states = {}

    def _factors(self) -> tuple[float, float, int]:
        # Read when the update is queued: at each replay of a captured step.
        return self._growth_factor, self._backoff_factor, self._growth_interval

    def _set_scale(self, new_scale: float | Tensor) -> None:
        if isinstance(new_scale, (int, float, np.floating, np.integer)) and not isinstance(new_scale, bool):
            if capture.current is not None:
                capture.current.cannot_replay(
                    "GradScaler.update(new_scale=<a number>) (a replay would set that number again); pass a 1-element "
                    "tensor"
                )
            self._scale.data.fill(float(new_scale))
            return
        if (
            not isinstance(new_scale, Tensor)
            or new_scale.backend is not self._backend
            or new_scale.size != 1
            or new_scale.requires_grad
        ):
            got = f"a tensor of shape {new_scale.shape} on {new_scale.device}" if isinstance(new_scale, Tensor) else ""
            raise ValueError(
                f"GradScaler.update: new_scale must be a number or a 1-element tensor on {self._backend.device} "
                f"that does not require grad, got {got or type(new_scale).__name__}"
            )
        self._backend.copy_into(self._scale.data, new_scale.data.reshape(()).astype(np.float32))

    # -- the optimizer's parameters ------------------------------------------------------
    def _gradients(self, optimizer: Any) -> list[Tensor]:
        """The gradients to unscale, after checking every parameter is a float32
        master weight on the scaler's device (one cheap pass; the message is worked
        out only on failure)."""
        grads, fits = [], True
        backend = self._backend
        for group in optimizer.param_groups:
            for p in group["params"]:
                fits = fits and p.dtype == _FLOAT32 and p.backend is backend
                if p.grad is not None:
                    grads.append(p.grad)
        if not fits:
            _raise_parameter_error(optimizer, backend)
        return grads

    # -- the scale and its settings ------------------------------------------------------
    def get_scale(self) -> float:
        """The current scale as a Python float (a host read: it waits for the device); 1.0 when disabled."""
        if not self._enabled:
            return 1.0
        if capture.current is not None:
            capture.current.host_read("GradScaler.get_scale()")
        return float(self._backend.item(self._scale.data))

    def _get_growth_tracker(self) -> int:
        """Clean steps since the scale last changed (a host read); 0 when disabled."""
        if not self._enabled:
            return 0
        if capture.current is not None:
            capture.current.host_read("GradScaler's growth tracker")
        return int(self._backend.item(self._growth_tracker.data))

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def set_growth_factor(self, new_factor: float) -> None:
        """The factor the scale grows by after growth_interval clean steps (> 1); a
        captured step honours a change at its next replay."""
        self._check_factors(new_factor, self._backoff_factor, self._growth_interval)
        self._growth_factor = float(new_factor)

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def set_backoff_factor(self, new_factor: float) -> None:
        """The factor the scale shrinks by after an inf or NaN gradient (in (0, 1))."""
        self._check_factors(self._growth_factor, new_factor, self._growth_interval)
        self._backoff_factor = float(new_factor)

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def set_growth_interval(self, new_interval: int) -> None:
        """How many clean steps in a row grow the scale (a positive int)."""
        self._check_factors(self._growth_factor, self._backoff_factor, new_interval)
        self._growth_interval = new_interval

    def is_enabled(self) -> bool:
        return self._enabled

    @staticmethod
    def _check_factors(growth_factor: float, backoff_factor: float, growth_interval: int) -> None:
        if not growth_factor > 1.0:
            raise ValueError(f"GradScaler: the growth factor must be > 1.0, got {growth_factor}")
        if not 0.0 < backoff_factor < 1.0:
            raise ValueError(f"GradScaler: the backoff factor must be in (0, 1), got {backoff_factor}")
        if not isinstance(growth_interval, (int, np.integer)) or isinstance(growth_interval, bool):
            raise TypeError(f"GradScaler: growth_interval must be a Python int, got {type(growth_interval).__name__}")
        if growth_interval < 1:
            raise ValueError(f"GradScaler: growth_interval must be positive, got {growth_interval}")

    # -- saving and loading --------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """PyTorch's keys: "scale", "growth_factor", "backoff_factor",
        "growth_interval" and "_growth_tracker", as plain numbers (a host read);
        empty when disabled."""
        if not self._enabled:
            return {}
        return {
            "scale": self.get_scale(),
            "growth_factor": self._growth_factor,
            "backoff_factor": self._backoff_factor,
            "growth_interval": self._growth_interval,
            "_growth_tracker": self._get_growth_tracker(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores what ``state_dict`` saved (in place: a captured step goes on with it)."""
        if not self._enabled:
            return
        if not state_dict:
            raise RuntimeError(
                "The source state dict is empty, possibly because it was saved from a disabled instance of GradScaler."
            )
        missing = {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"} - set(state_dict)
        if missing:
            raise KeyError(f"GradScaler.load_state_dict: the state dict lacks {sorted(missing)}")
        if capture.current is not None:
            capture.current.cannot_replay("GradScaler.load_state_dict")
        self._check_factors(state_dict["growth_factor"], state_dict["backoff_factor"], state_dict["growth_interval"])
        self._init_scale = float(state_dict["scale"])
        self._scale.data.fill(self._init_scale)
        self._scale.bump_version()
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._growth_tracker.data.fill(int(state_dict["_growth_tracker"]))


def _raise_parameter_error(optimizer: Any, backend: Backend) -> None:
    for i, p in enumerate(p for group in optimizer.param_groups for p in group["params"]):
        if p.dtype != _FLOAT32:
            raise TypeError(
                f"GradScaler: parameter {i} of the {type(optimizer).__name__} is {p.dtype}; the weights an optimizer "
                "updates under loss scaling must be float32 master weights (keep the model in float32 and compute "
                "in float16 with gp.autocast, or convert with .float())"
            )
        if p.backend is not backend:
            raise ValueError(
                f"GradScaler: parameter {i} of the {type(optimizer).__name__} is on {p.device}, the scaler on "
                f"{backend.device}; make the GradScaler with device={p.device!r}"
            )
