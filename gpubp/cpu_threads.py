"""How many threads NumPy's BLAS (OpenBLAS) uses for matrix products on the CPU.

OpenBLAS splits each product across its threads and makes them wait for each
other by spinning. When another process needs the same cores, a descheduled
thread stalls the whole product: on a 2-core machine, training the default
784-512-256-10 MLP took 1.6x less time with 2 BLAS threads than with 1 while
nothing else ran, but 2x more beside one busy process and 3-8x more beside
other jobs. ``set_blas_threads`` lets the command line choose (default 1).

threadpoolctl is used when installed; otherwise the OpenBLAS library that
NumPy loaded is found in ``/proc/self/maps`` (Linux) and called through ctypes.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)
_GETTERS = (
    "scipy_openblas_get_num_threads64_",
    "scipy_openblas_get_num_threads",
    "openblas_get_num_threads64_",
    "openblas_get_num_threads",
)


def set_blas_threads(threads: int) -> bool:
    """Limits the BLAS of this process to ``threads`` threads; False when no
    supported BLAS was found (the setting is then left as it was)."""
    if threads <= 0:
        raise ValueError(f"set_blas_threads: threads must be positive, got {threads}")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        threadpool_limits(limits=threads, user_api="blas")
        return True
    done = False
    for lib in _openblas_libraries():
        for name in _SETTERS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter(ctypes.c_int(threads))
                done = True
                break
    return done


def blas_threads() -> int | None:
    """The number of threads OpenBLAS uses now (None when it cannot be found)."""
    for lib in _openblas_libraries():
        for name in _GETTERS:
            getter = getattr(lib, name, None)
            if getter is not None:
                getter.restype = ctypes.c_int
                return int(getter())
    return None


def _openblas_libraries() -> list[ctypes.CDLL]:
    """The OpenBLAS shared libraries loaded in this process (NumPy's, once imported)."""
    import numpy  # noqa: F401 (loads NumPy's BLAS)

    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths = sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower() and "/" in line})
    libs = []
    for path in paths:
        try:
            libs.append(ctypes.CDLL(path))
        except OSError:
            continue
    return libs
