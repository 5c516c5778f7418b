"""``gp.cuda``: whether a CUDA GPU can be used, the CuPy backend for it, and its switches.

Importing gpubp never needs CuPy or a GPU; only asking for ``device="cuda"``
does, and then the error says what is missing (CuPy, a driver, a new enough
driver, a device).
"""

from __future__ import annotations

from typing import Any

_tf32 = False  # TF32 GEMMs for float32: off unless set_tf32(True)


class OutOfMemoryError(MemoryError):
    """A GPU allocation that did not fit. The message says how much was asked for
    and how much the device has free; the error is also CuPy's OutOfMemoryError
    (and a MemoryError), so code catching either still catches it."""


def _import_cupy() -> Any:
    try:
        import cupy
    except ImportError as err:
        raise RuntimeError(
            "device 'cuda' needs CuPy, which is not installed: pip install -e \".[cuda]\" in a gpubp checkout, "
            "pip install 'gpubp[cuda]' for an installed gpubp (CuPy for CUDA 13; for CUDA 12 drivers install "
            "cupy-cuda12x instead)"
        ) from err
    return cupy


def _cuda_version(version: int) -> str:
    """CUDA's integer version (12040) as text ("12.4")."""
    return f"{version // 1000}.{version % 1000 // 10}"


def describe_startup_failure(message: str, driver_version: int | None, runtime_version: int | None) -> str:
    """Why CUDA could not start, from CuPy's error message and the versions the
    driver (0: no driver) and CuPy's CUDA runtime report; None means unknown."""
    if driver_version == 0:
        return f"CuPy is installed but no NVIDIA driver was found (libcuda could not be loaded): {message}"
    too_old = "InsufficientDriver" in message or (
        driver_version is not None and runtime_version is not None and driver_version < runtime_version
    )
    if too_old:
        driver = _cuda_version(driver_version) if driver_version else "an older CUDA"
        runtime = _cuda_version(runtime_version) if runtime_version else "a newer CUDA"
        return (
            f"the NVIDIA driver is too old: it supports CUDA {driver}, but this CuPy was built for CUDA {runtime}; "
            "update the driver, or install the CuPy wheel that matches it (e.g. cupy-cuda12x for CUDA 12)"
        )
    if "NoDevice" in message:
        return f"CuPy is installed but no CUDA device is present ({message})"
    return f"CuPy is installed but CUDA cannot start: {message}"


def _versions(cupy: Any) -> tuple[int | None, int | None]:
    versions: list[int | None] = []
    for query in (cupy.cuda.runtime.driverGetVersion, cupy.cuda.runtime.runtimeGetVersion):
        try:
            versions.append(int(query()))
        except Exception:  # the query itself can fail when the driver is missing
            versions.append(None)
    return versions[0], versions[1]


def unavailable_reason() -> str | None:
    """None when a CUDA device can be used, else a sentence saying why not."""
    try:
        cupy = _import_cupy()
    except RuntimeError as err:
        return str(err)
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CuPy raises CUDARuntimeError or a driver error here
        return describe_startup_failure(str(err), *_versions(cupy))
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
        present = f"only {count} CUDA device is" if count == 1 else f"only {count} CUDA devices are"
        raise RuntimeError(f"cannot use device 'cuda:{index}': {present} present")
    from gpubp.backends.cupy_backend import CupyBackend

    return CupyBackend(index)


def set_device(device: int | str) -> None:
    """Makes the name "cuda" mean device ``device`` (an index, or "cuda:N") from now on,
    as ``torch.cuda.set_device``; "cuda:N" names are unchanged. Each rank of
    ``gp.distributed`` calls it with the GPU of its local rank, so that ``"cuda"``
    is that rank's GPU. RuntimeError saying why when the device cannot be used."""
    from gpubp import backends

    if isinstance(device, str):
        name, _, index = device.partition(":")
        if name != "cuda" or not index.isdigit():
            raise ValueError(f"set_device: expected a device index or 'cuda:N', got {device!r}")
        device = int(index)
    if isinstance(device, bool) or not isinstance(device, int) or device < 0:
        raise ValueError(f"set_device: expected a device index or 'cuda:N', got {device!r}")
    backends._cache["cuda"] = backends.get_backend(f"cuda:{device}")


def current_device() -> int:
    """The index of the device the name "cuda" means (0 unless ``set_device`` changed it)."""
    from gpubp import backends

    backend = backends._cache.get("cuda")
    return backend.index if backend is not None else 0


def get_device_capability(device: int | None = None) -> tuple[int, int]:
    """(major, minor) compute capability of a device (the current one by default), as PyTorch's."""
    from gpubp import backends

    index = current_device() if device is None else device
    capability = int(backends.get_backend(f"cuda:{index}").compute_capability)
    return capability // 10, capability % 10


def synchronize(device: str | None = None) -> None:
    """Waits for the work queued on ``device`` (every CUDA device gpubp has used,
    when None). This is also where an out-of-range cross-entropy label found on
    the GPU is reported, as IndexError, since checking it earlier would stall
    the device. RuntimeError saying why when CUDA cannot be used."""
    from gpubp import backends

    if device is not None:
        backends.get_backend(device).synchronize()
        return
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"gp.cuda.synchronize(): {reason}")
    used = [b for b in set(backends._cache.values()) if b.device.startswith("cuda")]
    if not used:
        import cupy

        cupy.cuda.Device().synchronize()
    for backend in sorted(used, key=lambda b: b.device):
        backend.synchronize()


def set_tf32(enabled: bool) -> None:
    """Lets float32 matrix products use TF32 tensor cores (about 10 mantissa bits,
    much faster on sm_80+) or not. Off by default, so float32 GEMMs are exact
    float32. Process-wide, like CuPy's own setting it drives (the CUBLAS compute
    type CuPy passes to cublasGemmEx); it overrides CUPY_TF32. The environment
    variable NVIDIA_TF32_OVERRIDE=1, read by cuBLAS itself, would still force TF32."""
    global _tf32
    _tf32 = bool(enabled)
    if is_available():
        apply_tf32()


def tf32_enabled() -> bool:
    """Whether float32 matrix products may use TF32 (see ``set_tf32``)."""
    return _tf32


def apply_tf32() -> None:
    """Pushes the TF32 setting into CuPy (called when a CUDA backend is made)."""
    import numpy as np
    from cupy._core import _routines_linalg as linalg

    if not hasattr(linalg, "set_compute_type"):
        raise RuntimeError("this CuPy version has no GEMM compute-type switch; gpubp cannot control TF32 with it")
    linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32 if _tf32 else linalg.COMPUTE_TYPE_DEFAULT)
