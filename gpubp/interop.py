"""Sharing tensors with other array libraries without copies.

- ``np.asarray(t)`` on a CPU tensor is its array (NumPy's ``__array__``
  protocol, with NumPy 2's ``copy=`` semantics); a CUDA tensor refuses, since an
  implicit copy to the host would hide a device synchronisation: call ``.numpy()``.
- DLPack: ``torch.from_dlpack(t)``, ``np.from_dlpack(t)``, ``cupy.from_dlpack(t)``
  take a gpubp tensor's memory, and ``gp.from_dlpack(x)`` takes theirs (PyTorch,
  CuPy, JAX, NumPy, ...), so a write through one is seen by the other.
- ``__cuda_array_interface__`` (Numba, CuPy, PyTorch) on CUDA tensors.

The Tensor's protocol methods (``__array__``, ``__dlpack__``,
``__dlpack_device__``, ``__cuda_array_interface__``) call the functions here,
which hand the request to the backend array (NumPy's or CuPy's own
implementation). As in PyTorch, a tensor that requires grad is not exported
writable: a write through another library would change a leaf behind the
tape's back (``np.asarray`` gives a read-only view; DLPack and the CUDA array
interface refuse and point to ``.detach()``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpubp import capture, dtypes
from gpubp.backends import get_backend
from gpubp.tensor import Tensor, _wrap

__all__ = ["to_numpy_array", "dlpack", "dlpack_device", "cuda_array_interface", "from_dlpack"]

# DLPack's DLDeviceType codes (dlpack.h).
DL_CPU, DL_CUDA, DL_CUDA_HOST, DL_ROCM_HOST, DL_CUDA_MANAGED = 1, 2, 3, 11, 13
_DEVICE_NAMES = {
    1: "CPU",
    2: "CUDA",
    3: "CUDA host (pinned)",
    4: "OpenCL",
    7: "Vulkan",
    8: "Metal",
    9: "VPI",
    10: "ROCm",
    11: "ROCm host",
    12: "ext_dev",
    13: "CUDA managed",
    14: "oneAPI",
    15: "WebGPU",
    16: "Hexagon",
    17: "MAIA",
}
# Memory the CPU can address directly, which numpy.from_dlpack accepts; CuPy takes CUDA and managed memory.
_CPU_TYPES = (DL_CPU, DL_CUDA_HOST, DL_ROCM_HOST)
_CUDA_TYPES = (DL_CUDA, DL_CUDA_MANAGED)


def to_numpy_array(tensor: Tensor, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
    """``Tensor.__array__``: the CPU tensor's data as a NumPy array.

    ``copy=None`` shares memory unless ``dtype`` needs a cast; ``copy=True``
    always returns a new array; ``copy=False`` never copies (ValueError when
    ``dtype`` needs a cast). A tensor that requires grad gives a read-only view.
    A CUDA tensor raises TypeError: use ``.numpy()``, which copies to the host.
    """
    if tensor.device != "cpu":
        raise TypeError(
            f"can't convert a {tensor.device} tensor to a NumPy array implicitly; use .numpy() (copies to the host)"
        )
    if capture.current is not None:
        capture.current.host_read("np.asarray(tensor)")
    data = tensor.data
    if dtype is not None and np.dtype(dtype) != data.dtype:
        if copy is False:
            raise ValueError(
                f"can't convert a {data.dtype} tensor to {np.dtype(dtype)} without a copy (copy=False was asked)"
            )
        return data.astype(dtype)
    if copy:
        return data.copy()
    if tensor.requires_grad:
        view = data.view()
        view.flags.writeable = False
        return view
    return data


def dlpack(
    tensor: Tensor,
    stream: Any = None,
    max_version: tuple[int, int] | None = None,
    dl_device: tuple[int, int] | None = None,
    copy: bool | None = None,
) -> Any:
    """``Tensor.__dlpack__``: a DLPack capsule of the tensor's memory, made by the
    backend array (NumPy or CuPy), which also orders a CUDA consumer's ``stream``
    after the work gpubp has queued. Only the keywords given are passed on, so a
    backend that predates DLPack 1.0 still answers a plain request."""
    if tensor.requires_grad:
        # BufferError is DLPack's "cannot export" (PyTorch raises it for the same reason).
        raise BufferError("can't export a tensor that requires grad through DLPack; use tensor.detach()")
    _refuse_raw_bfloat16(tensor, "DLPack")
    given = {"stream": stream, "max_version": max_version, "dl_device": dl_device, "copy": copy}
    return tensor.data.__dlpack__(**{k: v for k, v in given.items() if v is not None})


def _refuse_raw_bfloat16(tensor: Tensor, route: str) -> None:
    """A GPU's bfloat16 array is uint16 words: exported, a consumer would read integers."""
    if getattr(tensor.data, "dtype", None) == dtypes.RAW_BFLOAT16:
        raise TypeError(
            f"can't export a bfloat16 tensor on {tensor.device} through {route}: CuPy holds it as uint16 words, "
            "which the consumer would read as integers; export tensor.float() (or .half()) instead"
        )


def dlpack_device(tensor: Tensor) -> tuple[int, int]:
    """``Tensor.__dlpack_device__``: (DLPack device type, device index), e.g. (1, 0) on the CPU, (2, 0) on cuda:0."""
    device_type, index = tensor.data.__dlpack_device__()
    return int(device_type), int(index)


def cuda_array_interface(tensor: Tensor) -> dict[str, Any]:
    """``Tensor.__cuda_array_interface__``: the CuPy array's interface dict (pointer,
    shape, strides, typestr, and the stream gpubp queues on). A CPU tensor raises
    AttributeError, so ``hasattr(t, "__cuda_array_interface__")`` is False there."""
    if tensor.device == "cpu":
        raise AttributeError("a cpu tensor has no __cuda_array_interface__ (it is for CUDA tensors)")
    if tensor.requires_grad:
        raise RuntimeError("can't export a tensor that requires grad through __cuda_array_interface__; use .detach()")
    _refuse_raw_bfloat16(tensor, "__cuda_array_interface__")
    return tensor.data.__cuda_array_interface__


def from_dlpack(obj: Any, device: str | None = None, copy: bool | None = None) -> Tensor:
    """A tensor sharing the memory of ``obj``, any object with ``__dlpack__`` (a
    PyTorch, CuPy or JAX array, a NumPy array, a gpubp tensor).

    CPU memory becomes a CPU tensor and CUDA memory a tensor on that GPU, with
    no copy: writes through either are seen by the other. ``device`` (optional)
    names where the result must be: when the data is elsewhere it is copied
    there, unless ``copy=False``, which raises instead. ``copy=True`` always copies.
    The dtype must be one gpubp has (float16/32/64, int32/64, uint8, bool).
    """
    if not hasattr(obj, "__dlpack__") or not hasattr(obj, "__dlpack_device__"):
        raise TypeError(
            f"from_dlpack needs an object with __dlpack__ and __dlpack_device__ (a DLPack-capable array), "
            f"got {type(obj).__name__}"
        )
    device_type, index = obj.__dlpack_device__()
    device_type, index = int(device_type), int(index)
    if device_type in _CPU_TYPES:
        backend = get_backend("cpu")
        try:
            array = np.from_dlpack(obj)
        except RuntimeError as err:
            if "dtype" not in str(err):
                raise
            # NumPy lacks the dtype (bfloat16, float8, ...): say which, where the producer tells.
            raise TypeError(f"from_dlpack: NumPy and gpubp cannot hold {_dtype_of(obj)}: {err}") from None
    elif device_type in _CUDA_TYPES:
        backend = get_backend(f"cuda:{index}")  # also makes it the current device, where CuPy imports
        import cupy

        array = cupy.from_dlpack(obj)
    else:
        name = _DEVICE_NAMES.get(device_type, "unknown")
        raise ValueError(
            f"from_dlpack: the array is on a {name} device (DLPack device type {device_type}); "
            "gpubp takes CPU and CUDA memory"
        )
    try:
        dtypes.as_dtype(array.dtype)
    except TypeError as err:
        raise TypeError(f"from_dlpack: {err}") from None
    out = _wrap(array, backend)
    if device is not None:
        target = get_backend(device)
        if target is not backend:
            if copy is False:
                raise ValueError(
                    f"from_dlpack: the array is on {backend.device}, not {target.device}; "
                    "moving it needs a copy, and copy=False was asked"
                )
            return out.to(target.device)
    if copy:
        out = _wrap(backend.xp.array(array, copy=True), backend)
    return out


def _dtype_of(obj: Any) -> str:
    dtype = getattr(obj, "dtype", None)
    return f"a {type(obj).__name__} of dtype {dtype}" if dtype is not None else f"this {type(obj).__name__}'s dtype"
