"""The CPU kernels in ``kernels/*.c``: compiled on first use with the machine's
C compiler into one library, cached on disk, and called through ctypes.

They are what the CUDA kernels are to CuPy: one fused pass where NumPy needs
several (σ(z + b) is four NumPy passes, σ′ ⊙ g three, an Adam update ten).
Without a C compiler, or
with ``GPUBP_CPU_KERNELS=0`` in the environment, the NumPy backend runs the NumPy
twins in ``base.py`` instead; ``unavailable_reason()`` says why.

The compiled library lives in ``$GPUBP_CACHE_DIR`` (default
``$XDG_CACHE_HOME/gpubp`` or ``~/.cache/gpubp``) under a name that hashes the
sources, the compiler's version and the flags, so a changed source or compiler
builds a new one. It is written to a temporary name and renamed into place, so
processes that compile at the same time never load a half-written file.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from importlib import resources
from pathlib import Path

SOURCES = ("activation_cpu.c", "optim_cpu.c")
# No -ffast-math: NaN and inf keep their meaning. -fno-trapping-math lets GCC turn
# the kernels' clamps into SIMD min/max; no -march=native, target_clones picks
# the instruction set at load time, so a cached library moves between machines.
COMPILE_FLAGS = ("-std=c11", "-O3", "-fPIC", "-shared", "-fno-math-errno", "-fno-trapping-math")
WARNING_FLAGS = ("-Wall", "-Wextra", "-Wconversion", "-Werror")
DISABLE_VARIABLE = "GPUBP_CPU_KERNELS"

# Arrays go in as ctypes.c_float.from_buffer(array): 0.4 µs against 1.4 µs for
# array.ctypes.data, which matters at the smaller sizes these kernels take.
_pointer = ctypes.POINTER(ctypes.c_float)
_size = ctypes.c_ssize_t
_float = ctypes.c_float
_flag = ctypes.c_int
SIGNATURES = {
    # activation_cpu.c
    "gpubp_sigmoid_f32": (_pointer, _pointer, _size),
    "gpubp_bias_sigmoid_f32": (_pointer, _pointer, _pointer, _size, _size),
    "gpubp_sigmoid_backward_f32": (_pointer, _pointer, _pointer, _size),
    # optim_cpu.c: (param, grad, buf or None, n, lr, momentum, 1 − dampening, weight_decay, nesterov, first_step)
    "gpubp_sgd_update_f32": (_pointer, _pointer, _pointer, _size, _float, _float, _float, _float, _flag, _flag),
    # (param, grad, exp_avg, exp_avg_sq, n, β1, β2, 1 − β1, 1 − β2, eps, weight_decay, decoupled,
    #  1 − lr·weight_decay, lr / (1 − β1^t), √(1 − β2^t))
    "gpubp_adam_update_f32": (_pointer,) * 4 + (_size,) + (_float,) * 6 + (_flag,) + (_float,) * 3,
}


class CpuKernels:
    """The loaded library's functions, as attributes named like the C functions
    without the ``gpubp_`` prefix. Pass each array as ``buffer(array)`` (which
    needs it writable and C-contiguous), then the sizes; callers check dtype,
    contiguity and shapes first."""

    buffer = staticmethod(ctypes.c_float.from_buffer)

    def __init__(self, library: ctypes.CDLL, path: Path) -> None:
        self.path = path
        for name, argtypes in SIGNATURES.items():
            function = getattr(library, name)
            function.argtypes = argtypes
            function.restype = None
            setattr(self, name.removeprefix("gpubp_"), function)


_lock = threading.Lock()
_loaded: CpuKernels | None = None
_reason: str | None = None
_tried = False


def source_paths() -> list[Path]:
    """``kernels/*_cpu.c``: package data of ``gpubp.kernels`` in an installed
    wheel, the top-level ``kernels/`` folder in a checkout."""
    try:
        packaged = resources.files("gpubp.kernels")
        if packaged.joinpath(SOURCES[0]).is_file():
            return [Path(str(packaged.joinpath(name))) for name in SOURCES]
    except (ModuleNotFoundError, TypeError, NotADirectoryError):
        pass
    return [Path(__file__).resolve().parents[2] / "kernels" / name for name in SOURCES]


def find_compiler() -> str | None:
    """``$CC`` if set, else the first of cc, gcc, clang on PATH."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"])
    return next(filter(None, map(shutil.which, ("cc", "gcc", "clang"))), None)


def cache_dir() -> Path:
    if os.environ.get("GPUBP_CACHE_DIR"):
        return Path(os.environ["GPUBP_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gpubp"


def compile_command(compiler: str, sources: list[Path], output: Path, warnings_as_errors: bool = False) -> list[str]:
    """The compiler call that builds the library ``output`` from ``sources``
    (with ``warnings_as_errors``, as CI runs it)."""
    warning_flags = WARNING_FLAGS if warnings_as_errors else ()
    return [compiler, *COMPILE_FLAGS, *warning_flags, *map(str, sources), "-o", str(output)]


def build(compiler: str, sources: list[Path], directory: Path) -> Path:
    """Compiles ``sources`` into one library in ``directory`` unless the same build
    is there already; returns its path. Raises RuntimeError with the compiler's output."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    texts = [source.read_text("utf-8") for source in sources]
    key = hashlib.sha256("\0".join([*texts, version, *COMPILE_FLAGS, platform.machine()]).encode()).hexdigest()[:16]
    target = directory / f"gpubp_cpu_kernels-{key}.so"
    if target.is_file():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
    os.close(handle)
    try:
        result = subprocess.run(
            compile_command(compiler, sources, Path(partial)), capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0:
            names = ", ".join(source.name for source in sources)
            raise RuntimeError(f"{compiler} failed on {names}:\n{result.stderr.strip()}")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


def load() -> CpuKernels | None:
    """The CPU kernels, compiled and loaded on the first call; None where they
    cannot be (see ``unavailable_reason``). Later calls return the same answer."""
    global _loaded, _reason, _tried
    if _tried:
        return _loaded
    with _lock:
        if not _tried:
            _loaded, _reason = _load()
            _tried = True
    return _loaded


def unavailable_reason() -> str | None:
    """Why ``load()`` returns None (after it was called), or None when the kernels run."""
    load()
    return _reason


def _load() -> tuple[CpuKernels | None, str | None]:
    if os.environ.get(DISABLE_VARIABLE, "1") == "0":
        return None, f"disabled by {DISABLE_VARIABLE}=0"
    compiler = find_compiler()
    if compiler is None:
        return None, "no C compiler found (set CC, or install gcc or clang)"
    sources = source_paths()
    missing = [str(source) for source in sources if not source.is_file()]
    if missing:
        return None, f"kernel source {', '.join(missing)} missing; reinstall gpubp"
    try:
        try:
            path = build(compiler, sources, cache_dir())
        except PermissionError:  # a read-only cache: build privately for this process
            path = build(compiler, sources, Path(tempfile.mkdtemp(prefix="gpubp-")))
        return CpuKernels(ctypes.CDLL(str(path)), path), None
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        # A compiler that is there but fails is worth hearing about: the NumPy path is slower.
        reason = f"the CPU kernels could not be built or loaded: {error}"
        warnings.warn(f"gpubp: {reason}; using the NumPy path", RuntimeWarning, stacklevel=3)
        return None, reason


def reset() -> None:
    """Forgets the loaded kernels, so the next ``load()`` tries again (for tests)."""
    global _loaded, _reason, _tried
    with _lock:
        _loaded, _reason, _tried = None, None, False
