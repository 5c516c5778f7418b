"""The dtypes gpubp accepts, and the rule that float input defaults to float32."""

from __future__ import annotations

from typing import Any

import numpy as np

float16 = np.dtype("float16")
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int32 = np.dtype("int32")
int64 = np.dtype("int64")
uint8 = np.dtype("uint8")
bool_ = np.dtype("bool")

SUPPORTED = (float16, float32, float64, int32, int64, uint8, bool_)
DEFAULT_FLOAT = float32


def as_dtype(dtype: Any) -> np.dtype:
    """Turns a NumPy dtype, its name (``"float64"``) or a scalar type into a supported dtype."""
    try:
        resolved = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"unknown dtype {dtype!r}; use one of {_names()}") from err
    if resolved not in SUPPORTED:
        raise TypeError(f"dtype {resolved} is not supported; use one of {_names()}")
    return resolved


def is_floating(dtype: np.dtype) -> bool:
    return dtype.kind == "f"


def _names() -> str:
    return ", ".join(str(d) for d in SUPPORTED)
