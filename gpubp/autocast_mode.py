"""``gp.autocast``: mixed precision with PyTorch's name and meaning.

>>> with gp.autocast(dtype=gp.bfloat16):
...     loss = gp.cross_entropy(model(x), labels)   # Linear in bfloat16, the loss in float32
>>> loss.backward()                                  # parameters' gradients arrive in float32

Inside the context, on the devices it covers:

- matrix products (``gp.matmul``, ``@``, ``gp.linear`` and so ``nn.Linear``) run
  in the low dtype with float32 accumulation; float32 inputs are cast for the
  product only, so parameters (the float32 master weights), their gradients and
  the optimizer's state stay float32;
- softmax, log_softmax, the losses, exp, log, pow and the reductions sum, mean,
  var and std compute in float32 (16-bit inputs are cast up; the result is float32);
- every other op runs in its inputs' dtype, as outside (a 16-bit activation is
  read and written in 16 bits and computed in float32 in its kernel).

Outside the context nothing changes. The ops ask ``low_dtype``/``compute_in_float32``
when they are called (PyTorch's autocast dispatch), so what an op records on the
tape, and what ``gp.jit`` captures, is decided at that moment: a jitted function
is captured again when it is called under another autocast setting.

Differences from PyTorch (README, "Mixed precision"): ``device_type`` may be left
out (then the context covers every device); mean, var and std are float32 ops
too; an unsupported dtype or device raises instead of warning and disabling;
casts are not cached across ops (each Linear casts its weight once per call,
as a training step calls it once).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from gpubp import dtypes

F = TypeVar("F", bound=Callable[..., Any])

# PyTorch's default low dtype per device type.
_DEFAULT_DTYPE = {"cuda": dtypes.float16, "cpu": dtypes.bfloat16}
_DEVICE_TYPES = ("cpu", "cuda")

# The innermost active context's (device_type or None, dtype), or None.
_active: tuple[str | None, np.dtype] | None = None


class autocast:  # noqa: N801 (PyTorch's name)
    """Runs matrix products in ``dtype`` (float16 or bfloat16) and precision-sensitive
    ops in float32 on ``device_type`` ("cpu", "cuda", or None for every device).

    Usable as a context manager or a decorator; nests (the inner one decides,
    ``enabled=False`` turns it off inside). ``dtype`` defaults to PyTorch's
    choice for the device type (float16 on "cuda", bfloat16 on "cpu") and must be
    given when ``device_type`` is None.
    """

    def __init__(
        self,
        device_type: str | None = None,
        dtype: Any = None,
        enabled: bool = True,
        cache_enabled: bool | None = None,
    ) -> None:
        if device_type is not None:
            device_type = str(device_type).split(":")[0]
            if device_type not in _DEVICE_TYPES:
                raise ValueError(
                    f"gp.autocast: device_type must be one of {_DEVICE_TYPES} or None, got {device_type!r}"
                )
        if dtype is None:
            if device_type is None:
                raise ValueError("gp.autocast: give dtype=gp.bfloat16 or gp.float16 (or a device_type)")
            dtype = _DEFAULT_DTYPE[device_type]
        try:
            dtype = dtypes.as_dtype(dtype)
        except TypeError as err:
            raise TypeError(f"gp.autocast: {err}") from None
        if dtype not in dtypes.HALVES:
            raise TypeError(f"gp.autocast: dtype must be gp.bfloat16 or gp.float16, got {dtype}")
        if enabled and device_type == "cuda":
            _check_cuda(dtype)
        self.device_type = device_type
        self.dtype = dtype
        self.enabled = bool(enabled)
        self._outer: list[tuple[str | None, np.dtype] | None] = []

    def __enter__(self) -> autocast:
        global _active
        self._outer.append(_active)
        _active = (self.device_type, self.dtype) if self.enabled else None
        return self

    def __exit__(self, *exc: object) -> None:
        global _active
        _active = self._outer.pop()

    def __call__(self, fn: F) -> F:
        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with autocast(self.device_type, self.dtype, self.enabled):
                return fn(*args, **kwargs)

        return wrapped  # type: ignore[return-value]


def _check_cuda(dtype: np.dtype) -> None:
    from gpubp import cuda

    if not cuda.is_available():
        raise RuntimeError(f"gp.autocast('cuda'): no usable CUDA device ({cuda.unavailable_reason()})")
    if dtype == dtypes.bfloat16:
        capability = cuda.get_device_capability()
        if capability < (8, 0):
            raise TypeError(
                f"gp.autocast('cuda', dtype=gp.bfloat16): bfloat16 matrix products need compute capability "
                f"8.0 or newer, this GPU has {capability[0]}.{capability[1]}; use dtype=gp.float16"
            )


def is_autocast_enabled(device_type: str | None = None) -> bool:
    """Whether an autocast context is active (and covers ``device_type``, when given)."""
    return _active is not None and (device_type is None or _active[0] in (None, device_type))


def get_autocast_dtype(device_type: str | None = None) -> np.dtype | None:
    """The active context's low dtype (for ``device_type``, when given), or None."""
    return _active[1] if is_autocast_enabled(device_type) else None


def current_dtype(device: str) -> np.dtype | None:
    """The low dtype autocast gives ops on ``device`` ("cpu", "cuda:0"), or None."""
    if _active is None:
        return None
    device_type, dtype = _active
    return dtype if device_type is None or device.startswith(device_type) else None


def state_key() -> tuple[str | None, str] | None:
    """The active setting, hashable (part of a ``gp.jit`` signature)."""
    return None if _active is None else (_active[0], _active[1].name)


def low_dtype(*tensors: Any) -> np.dtype | None:
    """The dtype a matrix product of these tensors runs in under autocast: the
    context's low dtype when it is active for their device and they are all
    floating but not float64 (which PyTorch's autocast leaves alone), else None
    (run as given)."""
    if _active is None:
        return None
    first = tensors[0]
    if not all(t.dtype in dtypes.FLOATS and t.dtype != dtypes.float64 for t in tensors):
        return None
    return current_dtype(first.device)


def in_float32(value: Any) -> Any:
    """``value`` cast to float32 when it is a 16-bit floating tensor and autocast is
    active for its device (the float32 ops' inputs); anything else unchanged."""
    if _active is None or getattr(value, "dtype", None) not in dtypes.HALVES or not hasattr(value, "backend"):
        return value
    if current_dtype(value.device) is None:
        return value
    from gpubp.ops.convert import cast

    return cast(value, dtypes.float32)
