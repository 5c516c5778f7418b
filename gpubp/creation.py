"""Making tensors: from data, or filled with constants, ranges and random numbers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gpubp import dtypes
from gpubp.backends import get_backend
from gpubp.tensor import Tensor, _wrap

Shape = int | Sequence[int]


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None, device: str = "cpu") -> Tensor:
    """A new tensor holding a copy of ``data`` (nested lists, numbers, arrays, tensors).

    Python floats default to float32; NumPy arrays keep their dtype; ``dtype``
    takes a NumPy dtype or its name. Only floating tensors may require grad.
    """
    backend = get_backend(device)
    if isinstance(data, Tensor):
        source = data.detach()
        array = source.to(backend).data
        array = array if array is not data.data else backend.xp.array(array, copy=True)
    elif isinstance(data, backend.array_type) and backend.device != "cpu":
        array = backend.xp.array(data, copy=True)
    else:
        if hasattr(data, "__cuda_array_interface__") and hasattr(data, "get"):
            data = data.get()  # a CuPy array asked for on the CPU
        array = np.asarray(data)
        if array.dtype.kind == "f" and dtype is None and not isinstance(data, (np.ndarray, np.generic)):
            dtype = dtypes.DEFAULT_FLOAT
        if array.dtype.kind not in "fiub":
            raise TypeError(f"cannot make a tensor from data of dtype {array.dtype} ({type(data).__name__})")
    target = dtypes.as_dtype(array.dtype if dtype is None else dtype)
    if isinstance(array, np.ndarray):
        array = backend.from_host(array.astype(target, copy=False))
    elif array.dtype != target:
        array = array.astype(target)
    out = _wrap(array, backend)
    out.requires_grad = requires_grad
    return out


def _shape(shape: tuple) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    if any(not isinstance(n, (int, np.integer)) or n < 0 for n in shape):
        raise ValueError(f"shape must be non-negative integers, got {shape}")
    return tuple(int(n) for n in shape)


def _filled(fill: str, shape: tuple, dtype: Any, device: str, requires_grad: bool, value: Any = None) -> Tensor:
    backend = get_backend(device)
    dtype = dtypes.as_dtype(dtype)
    storage = backend.storage_dtype(dtype)
    if storage == dtype:
        array = getattr(backend.xp, fill)(_shape(shape), dtype=dtype)
        if value is not None:
            array.fill(value)
    else:  # bfloat16 as raw words (a GPU's): filled in float32, then rounded
        wide = getattr(backend.xp, fill)(_shape(shape), dtype=dtypes.float32)
        if value is not None:
            wide.fill(value)
        array = backend.astype(wide, dtype)
    out = _wrap(array, backend)
    out.requires_grad = requires_grad
    return out


def zeros(*shape: Shape, dtype: Any = dtypes.float32, device: str = "cpu", requires_grad: bool = False) -> Tensor:
    return _filled("zeros", shape, dtype, device, requires_grad)


def ones(*shape: Shape, dtype: Any = dtypes.float32, device: str = "cpu", requires_grad: bool = False) -> Tensor:
    return _filled("ones", shape, dtype, device, requires_grad)


def full(
    shape: Shape, value: float, dtype: Any = dtypes.float32, device: str = "cpu", requires_grad: bool = False
) -> Tensor:
    return _filled("empty", (shape,), dtype, device, requires_grad, value)


def zeros_like(t: Tensor, requires_grad: bool = False) -> Tensor:
    return zeros(t.shape, dtype=t.dtype, device=t.device, requires_grad=requires_grad)


def ones_like(t: Tensor, requires_grad: bool = False) -> Tensor:
    return ones(t.shape, dtype=t.dtype, device=t.device, requires_grad=requires_grad)


def randn(*shape: Shape, dtype: Any = dtypes.float32, device: str = "cpu", requires_grad: bool = False) -> Tensor:
    """Standard normal samples from the device's generator (seeded by ``gp.manual_seed``)."""
    backend = get_backend(device)
    out = _wrap(backend.standard_normal(_shape(shape), dtypes.as_dtype(dtype)), backend)
    out.requires_grad = requires_grad
    return out


def rand(*shape: Shape, dtype: Any = dtypes.float32, device: str = "cpu", requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1) from the device's generator."""
    backend = get_backend(device)
    out = _wrap(backend.uniform(_shape(shape), 0.0, 1.0, dtypes.as_dtype(dtype)), backend)
    out.requires_grad = requires_grad
    return out


def arange(start: float, stop: float | None = None, step: float = 1, dtype: Any = None, device: str = "cpu") -> Tensor:
    """Evenly spaced values in [start, stop); integers give int64, floats float32."""
    if stop is None:
        start, stop = 0, start
    if dtype is None:
        floats = any(isinstance(v, float) for v in (start, stop, step))
        dtype = dtypes.DEFAULT_FLOAT if floats else dtypes.int64
    backend = get_backend(device)
    return _wrap(backend.xp.arange(start, stop, step, dtype=dtypes.as_dtype(dtype)), backend)
