"""gpubp's own thin cuBLAS binding for the engine's matrix products (ctypes).

Why not CuPy's ``@``: CuPy's cuBLAS wrapper calls ``cublasSetStream`` before
every GEMM, and refuses to while a stream is being captured into a CUDA graph,
so no step that multiplies matrices could be captured. Its matmul path also
costs about 24 µs of host time per call against a few µs here.

The binding owns one cuBLAS handle per device. Its stream is set only when the
current stream changes, never during a capture (``CudaGraph`` points it at the
capturing stream before the capture begins), and every ``cublasSetStream`` is
followed by ``cublasSetWorkspace``, because setting the stream drops a user
workspace: with a workspace of its own, cuBLAS allocates nothing while a graph
is captured. The layout logic (row-major views to column-major arguments)
lives in ``gemm_layout`` and is tested on the CPU. The call is the one CuPy's
matmul makes (``cublasGemmEx``, same compute type and algorithm), so eager
results are the same as CuPy's ``a @ b``; float16 and bfloat16 (``CUDA_R_16BF``
on raw uint16 arrays) accumulate in float32 and may write a float32 product
(autocast's float32 weight gradients, with no cast pass), and float32 uses
TF32 only when ``gp.cuda.set_tf32(True)``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path
from typing import Any

import cupy
import numpy as np

from gpubp.backends import gemm_layout

# cudaDataType and cublasComputeType_t values (cublas_api.h, library_types.h).
# bfloat16 arrays are raw uint16 words (CuPy has no bfloat16): CUDA_R_16BF.
_CUDA_TYPES = {
    np.dtype(np.float16): 2,
    np.dtype(np.uint16): 14,
    np.dtype(np.float32): 0,
    np.dtype(np.float64): 1,
}
_COMPUTE_32F = 68
_COMPUTE_32F_FAST_TF32 = 77
_COMPUTE_64F = 70
_GEMM_DEFAULT = -1
_GEMM_DEFAULT_TENSOR_OP = 99
_SUCCESS = 0
_STATUS_NAMES = {
    1: "CUBLAS_STATUS_NOT_INITIALIZED",
    3: "CUBLAS_STATUS_ALLOC_FAILED",
    7: "CUBLAS_STATUS_INVALID_VALUE",
    8: "CUBLAS_STATUS_ARCH_MISMATCH",
    11: "CUBLAS_STATUS_MAPPING_ERROR",
    13: "CUBLAS_STATUS_EXECUTION_FAILED",
    14: "CUBLAS_STATUS_INTERNAL_ERROR",
    15: "CUBLAS_STATUS_NOT_SUPPORTED",
}

# cuBLAS's own recommendation: 32 MiB of workspace on Hopper (sm_90), 4 MiB before.
WORKSPACE_BYTES = {9: 32 << 20}
DEFAULT_WORKSPACE_BYTES = 4 << 20

GEMM_DTYPES = tuple(_CUDA_TYPES)


def _library_path() -> str:
    """The libcublas CuPy itself uses: the one already mapped into this process
    (CuPy's cuBLAS module links it), else where cuda-pathfinder or the loader finds it."""
    import cupy_backends.cuda.libs.cublas  # noqa: F401 (loads libcublas as CuPy does)

    try:
        for line in Path("/proc/self/maps").read_text().splitlines():
            path = line.split(maxsplit=5)[-1]
            if Path(path).name.startswith("libcublas.so"):
                return path
    except OSError:
        pass
    try:
        from cuda.pathfinder import load_nvidia_dynamic_lib

        return load_nvidia_dynamic_lib("cublas").abs_path
    except Exception:  # not installed, or it cannot find the library
        pass
    found = ctypes.util.find_library("cublas")
    if found is None:
        raise RuntimeError("gpubp: cannot find libcublas (the cuBLAS library CuPy uses) to bind its GEMM")
    return found


def _bind(library: ctypes.CDLL) -> ctypes.CDLL:
    vp, i = ctypes.c_void_p, ctypes.c_int
    signatures = {
        "cublasCreate_v2": [ctypes.POINTER(vp)],
        "cublasSetStream_v2": [vp, vp],
        "cublasSetWorkspace_v2": [vp, vp, ctypes.c_size_t],
        "cublasGemmEx": [vp, i, i, i, i, i, vp, vp, i, i, vp, i, i, vp, vp, i, i, i, i],
    }
    for name, argtypes in signatures.items():
        function = getattr(library, name)
        function.argtypes = argtypes
        function.restype = ctypes.c_int
    return library


def _check(status: int, call: str) -> None:
    if status != _SUCCESS:
        raise RuntimeError(f"{call} failed: {_STATUS_NAMES.get(status, 'cuBLAS status')} ({status})")


class Cublas:
    """One device's cuBLAS handle, workspace and stream binding; ``gemm`` computes
    ``a @ b`` for 2-D float16/32/64 CuPy arrays of that device."""

    def __init__(self, device_index: int, compute_capability: int) -> None:
        self._lib = _bind(ctypes.CDLL(_library_path()))
        self._handle = ctypes.c_void_p()
        with cupy.cuda.Device(device_index):
            _check(self._lib.cublasCreate_v2(ctypes.byref(self._handle)), "cublasCreate")
            self._workspace = cupy.empty(WORKSPACE_BYTES.get(compute_capability // 10, DEFAULT_WORKSPACE_BYTES), "u1")
        self._stream: int | None = None
        # CuPy's choice (tensordot_core_v11): tensor-op algorithms from sm_80 on.
        self._algo = _GEMM_DEFAULT_TENSOR_OP if compute_capability >= 80 else _GEMM_DEFAULT
        # alpha = 1, beta = 0 in the compute type, read by cuBLAS from host memory at the call.
        self._scalars = (ctypes.c_float(1.0), ctypes.c_float(0.0), ctypes.c_double(1.0), ctypes.c_double(0.0))
        one_f, zero_f, one_d, zero_d = (ctypes.addressof(s) for s in self._scalars)
        self._alpha_beta_32, self._alpha_beta_64 = (one_f, zero_f), (one_d, zero_d)

    def bind_stream(self, stream_ptr: int) -> None:
        """Issues the following GEMMs on ``stream_ptr``. Call it outside any capture."""
        _check(self._lib.cublasSetStream_v2(self._handle, stream_ptr), "cublasSetStream")
        # Setting the stream resets the workspace to cuBLAS's own pool: set ours again.
        workspace = self._workspace
        _check(
            self._lib.cublasSetWorkspace_v2(self._handle, workspace.data.ptr, workspace.nbytes), "cublasSetWorkspace"
        )
        self._stream = stream_ptr

    def gemm(self, a: Any, b: Any, out: Any = None, tf32: bool = False) -> Any:
        """``a @ b`` (or into ``out``, C-contiguous (m, n): a's dtype, or float32
        for 16-bit inputs) on the current stream."""
        dtype = a.dtype
        call = gemm_layout.gemm_call(a.shape, a.strides, b.shape, b.strides, dtype.itemsize)
        if call.a.copy:
            a = cupy.ascontiguousarray(a)
        if call.b.copy:
            b = cupy.ascontiguousarray(b)
        if out is None:
            out = cupy.empty((call.n, call.m), dtype=dtype)
        if out.size == 0:
            return out
        if call.k == 0:
            out.fill(0)
            return out
        stream = cupy.cuda.get_current_stream().ptr
        if stream != self._stream:
            if cupy.cuda.runtime.streamIsCapturing(stream):
                raise RuntimeError(
                    "gpubp: a matrix product was captured on a stream the cuBLAS handle was not bound to "
                    "before the capture began; capture through gp.jit (or CudaGraph), which binds it"
                )
            self.bind_stream(stream)
        cuda_type = _CUDA_TYPES[dtype]
        out_type = _CUDA_TYPES[out.dtype]
        if out.dtype != dtype and not (dtype.itemsize == 2 and out.dtype == np.float32):
            raise TypeError(f"cublasGemmEx: a {dtype} product cannot be written as {out.dtype}")
        if dtype == np.float64:
            compute = _COMPUTE_64F
            one, zero = self._alpha_beta_64
        else:
            compute = _COMPUTE_32F_FAST_TF32 if tf32 and dtype == np.float32 else _COMPUTE_32F
            one, zero = self._alpha_beta_32
        status = self._lib.cublasGemmEx(
            self._handle,
            call.transa,
            call.transb,
            call.m,
            call.n,
            call.k,
            one,
            b.data.ptr,
            cuda_type,
            call.lda,
            a.data.ptr,
            cuda_type,
            call.ldb,
            zero,
            out.data.ptr,
            out_type,
            call.ldc,
            compute,
            self._algo,
        )
        _check(status, "cublasGemmEx")
        return out
