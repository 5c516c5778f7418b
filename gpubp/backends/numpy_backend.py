"""The CPU backend: NumPy arrays and a NumPy random generator."""

from __future__ import annotations

from typing import Any

import numpy as np

from gpubp.backends.base import Backend


class NumpyBackend(Backend):
    """Runs every op with NumPy on the CPU; the reference path for all other backends."""

    name = "cpu"
    device = "cpu"
    xp = np
    array_type = np.ndarray

    def __init__(self) -> None:
        self.rng = np.random.default_rng()

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

    def sigmoid(self, z: Any, out: Any = None) -> Any:
        # e^(−z) overflowing to inf is the intended limit; silence NumPy's warning.
        with np.errstate(over="ignore"):
            return super().sigmoid(z, out=out)
