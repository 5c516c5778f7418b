"""The CPU backend: NumPy arrays and a NumPy random generator."""

from __future__ import annotations

from typing import Any

import numpy as np

from gpubp import capture
from gpubp.backends import cpu_kernels
from gpubp.backends.base import Backend

# Optimizer updates walk big parameters in pieces of this many entries, so their
# temporaries (lr·g, m/√v, ...) stay in cache instead of being parameter-sized
# arrays allocated, page-faulted and freed on every step.
UPDATE_CHUNK = 1 << 18


# Arrays at least this big are worth keeping for reuse: a fresh one costs page
# faults (glibc maps allocations over 32 MiB anew every time) and a freed one an
# munmap. Recycled gradients are the hand-written backprop's preallocated buffers.
RECYCLE_MIN_BYTES = 1 << 22
RECYCLE_PER_SHAPE = 8


# The C kernels (kernels/*_cpu.c) take float32 arrays from these sizes on,
# where they beat NumPy's passes plus a ctypes call's fixed ~3 µs (measured on a
# 2-core EPYC): σ's four NumPy passes include an exp, so its kernel pays early;
# σ′'s three are cheap multiplies; an update is two to ten passes.
FORWARD_KERNEL_MIN_SIZE = 1 << 8
BACKWARD_KERNEL_MIN_SIZE = 1 << 13
UPDATE_KERNEL_MIN_SIZE = 1 << 12


def _kernels_for(min_size: int, *arrays: Any) -> cpu_kernels.CpuKernels | None:
    """The C kernels, where they apply to these arrays (float32, C-contiguous,
    writable, as ctypes needs to pass them, and at least ``min_size`` values)."""
    if arrays[0].size < min_size:
        return None
    for array in arrays:
        if array.dtype != np.float32 or not (array.flags.c_contiguous and array.flags.writeable):
            return None
    return cpu_kernels.load()


def _update_kernels_for(param: Any, *others: Any) -> cpu_kernels.CpuKernels | None:
    """The C kernels for an optimizer update of ``param`` with its gradient and
    state (None stands for no momentum buffer)."""
    if param.size < UPDATE_KERNEL_MIN_SIZE:  # first: small updates are the overhead-bound ones
        return None
    others = tuple(other for other in others if other is not None)
    if any(other.shape != param.shape for other in others):
        return None
    return _kernels_for(UPDATE_KERNEL_MIN_SIZE, param, *others)


def _chunks(*arrays: Any) -> Any:
    """Matching flat slices of equally sized contiguous arrays (None stays None)."""
    flat = [None if a is None else a.reshape(-1) for a in arrays]
    size = arrays[0].size
    for start in range(0, size, UPDATE_CHUNK):
        yield tuple(None if a is None else a[start : start + UPDATE_CHUNK] for a in flat)


def _chunkable(*arrays: Any) -> bool:
    return arrays[0].size > UPDATE_CHUNK and all(a is None or a.flags.c_contiguous for a in arrays)


class NumpyBackend(Backend):
    """Runs every op with NumPy on the CPU; the reference path for all other backends."""

    name = "cpu"
    device = "cpu"
    xp = np
    array_type = np.ndarray

    def __init__(self) -> None:
        self.rng = np.random.default_rng()
        self._spare: dict[tuple[tuple[int, ...], str], list[np.ndarray]] = {}

    def empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        spare = self._spare.get((shape, np.dtype(dtype).str))
        return spare.pop() if spare else np.empty(shape, dtype=dtype)

    def recycle(self, array: np.ndarray) -> None:
        if array.nbytes >= RECYCLE_MIN_BYTES and array.base is None and array.flags.c_contiguous:
            spare = self._spare.setdefault((array.shape, array.dtype.str), [])
            if len(spare) < RECYCLE_PER_SHAPE:
                spare.append(array)

    def from_host(self, array: np.ndarray) -> np.ndarray:
        if capture.current is not None:  # the same rule as on a GPU, where a graph cannot repeat it
            capture.current.host_copy("a host array's copy into a tensor")
        return np.array(array, copy=True)

    def to_host(self, array: np.ndarray) -> np.ndarray:
        return np.array(array, copy=True)

    def manual_seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def get_rng_state(self) -> dict:
        return self.rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def standard_normal(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        if dtype in (np.float32, np.float64):
            return self.rng.standard_normal(shape, dtype=dtype)
        return self.rng.standard_normal(shape).astype(dtype)

    def uniform(self, shape: tuple[int, ...], low: float, high: float, dtype: np.dtype) -> np.ndarray:
        if dtype in (np.float32, np.float64):
            out = self.rng.random(shape, dtype=dtype)
        else:
            out = self.rng.random(shape).astype(dtype)
        if (low, high) != (0.0, 1.0):
            out *= high - low
            out += low
        return out

    # -- sigmoid: one C pass instead of NumPy's four (three backward) -------------
    def sigmoid(self, z: Any, out: Any = None) -> Any:
        kernels = _kernels_for(FORWARD_KERNEL_MIN_SIZE, z, *(() if out is None else (out,)))
        if kernels is None or (out is not None and out.shape != z.shape):
            return super().sigmoid(z, out=out)
        if out is None:
            out = np.empty_like(z)
        kernels.sigmoid_f32(kernels.buffer(z), kernels.buffer(out), z.size)
        return out

    def bias_activation(self, z: Any, bias: Any, activation: str | None) -> Any:
        if activation == "sigmoid" and bias is not None and z.ndim == 2 and bias.shape == (z.shape[1],):
            kernels = _kernels_for(FORWARD_KERNEL_MIN_SIZE, z, bias)
            if kernels is not None:
                buffer = kernels.buffer
                kernels.bias_sigmoid_f32(buffer(z), buffer(bias), buffer(z), *z.shape)
                return z
        return super().bias_activation(z, bias, activation)

    def sigmoid_backward(self, g: Any, y: Any) -> Any:
        kernels = _kernels_for(BACKWARD_KERNEL_MIN_SIZE, y, g)
        if kernels is None or g.shape != y.shape:
            return super().sigmoid_backward(g, y)
        dz = np.empty_like(y)
        buffer = kernels.buffer
        kernels.sigmoid_backward_f32(buffer(g), buffer(y), buffer(dz), y.size)
        return dz

    def _inverse_one_plus_exp(self, t: Any) -> Any:
        # e^t overflowing to inf is the intended limit; silence NumPy's warning.
        with np.errstate(over="ignore"):
            return super()._inverse_one_plus_exp(t)

    # -- optimizer updates: one C pass, else NumPy in cache-sized chunks ------------
    def sgd_update(self, param: Any, grad: Any, momentum_buffer: Any, **hyper: Any) -> None:
        kernels = _update_kernels_for(param, grad, momentum_buffer)
        if kernels is not None:
            buffer = kernels.buffer
            kernels.sgd_update_f32(
                buffer(param),
                buffer(grad),
                None if momentum_buffer is None else buffer(momentum_buffer),
                param.size,
                float(hyper["lr"]),
                float(hyper["momentum"]),
                1 - float(hyper["dampening"]),
                float(hyper["weight_decay"]),
                bool(hyper["nesterov"]),
                bool(hyper["first_step"]),
            )
            return
        if not _chunkable(param, grad, momentum_buffer):
            return super().sgd_update(param, grad, momentum_buffer, **hyper)
        for chunk in _chunks(param, grad, momentum_buffer):
            super().sgd_update(*chunk, **hyper)

    def adam_update(self, param: Any, grad: Any, exp_avg: Any, exp_avg_sq: Any, **hyper: Any) -> None:
        kernels = _update_kernels_for(param, grad, exp_avg, exp_avg_sq)
        if kernels is not None:
            # The scalars the CUDA kernel gets, worked out the same way (CupyBackend.adam_update).
            step, lr, beta1, beta2 = hyper["step"], float(hyper["lr"]), float(hyper["beta1"]), float(hyper["beta2"])
            weight_decay = float(hyper["weight_decay"])
            buffer = kernels.buffer
            kernels.adam_update_f32(
                buffer(param),
                buffer(grad),
                buffer(exp_avg),
                buffer(exp_avg_sq),
                param.size,
                beta1,
                beta2,
                1 - beta1,
                1 - beta2,
                float(hyper["eps"]),
                weight_decay,
                bool(hyper["decoupled"]),
                1 - lr * weight_decay,
                lr / (1 - beta1**step),
                (1 - beta2**step) ** 0.5,
            )
            return
        if not _chunkable(param, grad, exp_avg, exp_avg_sq):
            return super().adam_update(param, grad, exp_avg, exp_avg_sq, **hyper)
        for chunk in _chunks(param, grad, exp_avg, exp_avg_sq):
            super().adam_update(*chunk, **hyper)
