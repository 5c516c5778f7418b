"""``gp.cuda``: whether a CUDA GPU can be used, and the CuPy backend for it.

Importing gpubp never needs CuPy or a GPU; only asking for ``device="cuda"``
does, and then the error says what is missing.
"""

from __future__ import annotations

from typing import Any


def _import_cupy() -> Any:
    try:
        import cupy
    except ImportError as err:
        raise RuntimeError("device 'cuda' needs CuPy, which is not installed: pip install 'gpubp[cuda]'") from err
    return cupy


def unavailable_reason() -> str | None:
    """None when a CUDA device can be used, else a sentence saying why not."""
    try:
        cupy = _import_cupy()
    except RuntimeError as err:
        return str(err)
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CuPy raises CUDARuntimeError or a driver error here
        return f"CuPy is installed but CUDA cannot start: {err}"
    if count == 0:
        return "CuPy is installed but no CUDA device is present"
    return None


def is_available() -> bool:
    """True when CuPy is installed and at least one CUDA device answers."""
    return unavailable_reason() is None


def device_count() -> int:
    """Number of CUDA devices CuPy can see (0 without CuPy or a driver)."""
    if unavailable_reason() is not None:
        return 0
    import cupy

    return int(cupy.cuda.runtime.getDeviceCount())


def get_backend(index: int) -> Any:
    """The CuPy backend for device ``cuda:index``; RuntimeError saying why when unusable."""
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"cannot use device 'cuda:{index}': {reason}")
    count = device_count()
    if index >= count:
        raise RuntimeError(f"cannot use device 'cuda:{index}': only {count} CUDA device(s) present")
    from gpubp.backends.cupy_backend import CupyBackend

    return CupyBackend(index)
