"""Choosing the number of BLAS threads."""

from __future__ import annotations

import pytest

from gpubp.cpu_threads import blas_threads, set_blas_threads


def test_set_and_read_back_the_thread_count() -> None:
    before = blas_threads()
    if before is None or not set_blas_threads(1):
        pytest.skip("NumPy's BLAS here is not an OpenBLAS that can be found")
    try:
        assert blas_threads() == 1
    finally:
        set_blas_threads(before)


def test_thread_count_must_be_positive() -> None:
    with pytest.raises(ValueError, match="threads must be positive"):
        set_blas_threads(0)
