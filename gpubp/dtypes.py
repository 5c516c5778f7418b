"""The dtypes gpubp accepts, and the rule that float input defaults to float32.

bfloat16 is ml_dtypes' NumPy dtype (the one JAX uses): on the CPU a bfloat16
tensor is a real NumPy array of it, with NumPy's own round-to-nearest-even
casts, so the CPU path is also the oracle of the GPU's cast kernel. CuPy has no
bfloat16 dtype, so the CUDA backend stores bfloat16 as raw 16-bit words
(``RAW_BFLOAT16``, uint16, which is not a gpubp dtype of its own) and
``logical`` maps that storage back: a tensor's ``dtype`` is always the logical one.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

float16 = np.dtype("float16")
bfloat16 = np.dtype(ml_dtypes.bfloat16)
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int32 = np.dtype("int32")
int64 = np.dtype("int64")
uint8 = np.dtype("uint8")
bool_ = np.dtype("bool")

SUPPORTED = (float16, bfloat16, float32, float64, int32, int64, uint8, bool_)
DEFAULT_FLOAT = float32
FLOATS = (float16, bfloat16, float32, float64)
# 16-bit floats: their ops compute in float32 and round each result once.
HALVES = (float16, bfloat16)
# How the CUDA backend stores bfloat16 (raw bits; CuPy has no bfloat16 dtype).
RAW_BFLOAT16 = np.dtype("uint16")

_NAMES = {"bfloat16": bfloat16, "bf16": bfloat16}


def as_dtype(dtype: Any) -> np.dtype:
    """Turns a NumPy dtype, its name (``"float64"``, ``"bfloat16"``) or a scalar type into a supported dtype."""
    if isinstance(dtype, str) and dtype in _NAMES:
        return _NAMES[dtype]
    try:
        resolved = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"unknown dtype {dtype!r}; use one of {_names()}") from err
    if resolved not in SUPPORTED:
        raise TypeError(f"dtype {resolved} is not supported; use one of {_names()}")
    return resolved


def logical(dtype: np.dtype) -> np.dtype:
    """The gpubp dtype an array's storage dtype stands for (raw 16-bit words are bfloat16)."""
    return bfloat16 if dtype == RAW_BFLOAT16 else dtype


def is_floating(dtype: np.dtype) -> bool:
    return dtype in FLOATS


def kind(dtype: np.dtype) -> str:
    """NumPy's kind letter ("f", "i", "u", "b"), with bfloat16 (NumPy says "V") a float."""
    return "f" if dtype == bfloat16 else dtype.kind


def _names() -> str:
    return ", ".join(str(d) for d in SUPPORTED)
