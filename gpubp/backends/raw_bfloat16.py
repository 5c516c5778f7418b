"""bfloat16 kept as raw uint16 words, for an array module without a bfloat16 dtype (CuPy).

CuPy has no bfloat16 (its issue #7527), so the CUDA backend stores a bfloat16
tensor's values as their 16-bit patterns in a uint16 array; ``gpubp.dtypes.logical``
maps that storage back to bfloat16, so a tensor's ``dtype`` still says bfloat16.
This mixin is the storage side: the storage dtype, conversions (``astype``), and
the ones of ``backward()``'s seed; a backend's transfers view the words as
ml_dtypes' bfloat16 on the host (the same bits). The conversion itself is
``_convert``, the one method a backend supplies: cast.cu's kernels on a GPU, and
on the CPU ``convert_on_host``, the NumPy twin, which the tests use to run the
engine on raw storage without a GPU (tests/backends/test_raw_bfloat16.py).

Everything that computes on values must not see the raw words as integers: the
backends' 16-bit twins widen them with ``astype`` (``_float16_in_float32`` in
base.py), ops without a bfloat16 path get float32 copies
(``gpubp.ops.bfloat16_fallback``), and the tensor's own writes and comparisons
go through float32 (``Tensor._values``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpubp import dtypes

RAW = dtypes.RAW_BFLOAT16
_ONE = 0x3F80  # 1.0 in bfloat16


class RawBfloat16Storage:
    """Mixin for a Backend whose arrays hold bfloat16 as raw uint16 words."""

    def storage_dtype(self, dtype: np.dtype) -> np.dtype:
        return RAW if dtype == dtypes.bfloat16 else dtype

    def one(self, shape: tuple[int, ...], dtype: Any) -> Any:
        if dtype != dtypes.bfloat16:
            return super().one(shape, dtype)  # type: ignore[misc]
        self.activate()  # type: ignore[attr-defined]
        return self.xp.full(shape, _ONE, dtype=RAW)  # type: ignore[attr-defined]

    def astype(self, array: Any, dtype: np.dtype) -> Any:
        target = self.storage_dtype(dtype)
        if array.dtype == target:
            return array
        if RAW not in (array.dtype, target):
            return array.astype(target)
        if dtypes.is_floating(dtypes.logical(array.dtype)) and dtypes.is_floating(dtypes.logical(target)):
            return self._convert(array, target)
        # bfloat16 and an integer or bool dtype: through float32, as ml_dtypes converts them
        return self.astype(self.astype(array, dtypes.float32), dtype)

    def _convert(self, array: Any, target: np.dtype) -> Any:
        """``array`` converted between raw bfloat16 and another float storage dtype:
        round to nearest even, float64 through float32, NaN a quiet NaN (ml_dtypes' rules)."""
        raise NotImplementedError


def convert_on_host(array: np.ndarray, target: np.dtype) -> np.ndarray:
    """``RawBfloat16Storage._convert`` for NumPy arrays, by ml_dtypes: the twin of cast.cu."""
    if array.dtype == RAW:
        return array.view(dtypes.bfloat16).astype(target)
    return array.astype(dtypes.bfloat16).view(RAW)
