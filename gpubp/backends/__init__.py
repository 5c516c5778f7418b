"""Device names to backends: ``"cpu"`` is NumPy, ``"cuda"``/``"cuda:N"`` is CuPy."""

from __future__ import annotations

from gpubp.backends.base import Backend
from gpubp.backends.numpy_backend import NumpyBackend

_cache: dict[str, Backend] = {"cpu": NumpyBackend()}
_seed: int | None = None


def get_backend(device: str | Backend) -> Backend:
    """The backend for a device name; raises ValueError for unknown names and
    RuntimeError (saying why) when CUDA is asked for but cannot be used."""
    if isinstance(device, Backend):
        return device
    backend = _cache.get(device)
    if backend is not None:
        backend.activate()  # new arrays are made on the current CUDA device
        return backend
    if not isinstance(device, str):
        raise TypeError(f"device must be a string like 'cpu' or 'cuda:0', got {type(device).__name__}")
    name, _, index = device.partition(":")
    if name == "cuda" and (index == "" or index.isdigit()):
        canonical = f"cuda:{int(index or 0)}"
        backend = _cache.get(canonical)
        if backend is None:
            from gpubp import cuda

            backend = cuda.get_backend(int(index or 0))
            if _seed is not None:
                backend.manual_seed(_seed)
            _cache[canonical] = backend
        _cache[device] = backend
        backend.activate()
        return backend
    raise ValueError(f"unknown device {device!r}; expected 'cpu', 'cuda' or 'cuda:N'")


def set_seed(seed: int) -> None:
    """Seeds every backend made so far and every one made later."""
    global _seed
    _seed = seed
    for backend in set(_cache.values()):
        backend.manual_seed(seed)


def cpu() -> Backend:
    return _cache["cpu"]


__all__ = ["Backend", "NumpyBackend", "get_backend", "cpu"]
