"""Standardisation of inputs with statistics of the training split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Standardize:
    """x ↦ (x − mean) / std with one mean and std over all features (for images:
    over all pixels), fitted on the training split and stored with the model so
    evaluation sees inputs scaled exactly as in training."""

    mean: float
    std: float

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardize:
        """The mean and standard deviation of ``x`` (accumulated in float64; std 1 when x is constant)."""
        if x.size == 0:
            raise ValueError("Standardize.fit: cannot fit on an empty array")
        flat = np.asarray(x).reshape(-1)
        # E[x²] − E[x]² from two float64 accumulations: no float64 copy of x (np.std makes
        # one, about 10× slower on Fashion-MNIST); inputs are O(1), so cancellation is harmless.
        mean = float(flat.sum(dtype=np.float64)) / flat.size
        mean_square = float(np.einsum("i,i->", flat, flat, dtype=np.float64)) / flat.size
        std = max(mean_square - mean * mean, 0.0) ** 0.5
        return cls(mean, std if std > 1e-12 else 1.0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """A new float32 array, standardised."""
        out = np.asarray(x, dtype=np.float32) - np.float32(self.mean)
        out *= np.float32(1 / self.std)
        return out

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, values: dict) -> Standardize:
        return cls(float(values["mean"]), float(values["std"]))
