"""The CPU backend: NumPy arrays and a NumPy random generator."""

from __future__ import annotations

from typing import Any

import numpy as np

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

    def _inverse_one_plus_exp(self, t: Any) -> Any:
        # e^t overflowing to inf is the intended limit; silence NumPy's warning.
        with np.errstate(over="ignore"):
            return super()._inverse_one_plus_exp(t)

    def sgd_update(self, param: Any, grad: Any, momentum_buffer: Any, **hyper: Any) -> None:
        if not _chunkable(param, grad, momentum_buffer):
            return super().sgd_update(param, grad, momentum_buffer, **hyper)
        for chunk in _chunks(param, grad, momentum_buffer):
            super().sgd_update(*chunk, **hyper)

    def adam_update(self, param: Any, grad: Any, exp_avg: Any, exp_avg_sq: Any, **hyper: Any) -> None:
        if not _chunkable(param, grad, exp_avg, exp_avg_sq):
            return super().adam_update(param, grad, exp_avg, exp_avg_sq, **hyper)
        for chunk in _chunks(param, grad, exp_avg, exp_avg_sq):
            super().adam_update(*chunk, **hyper)
