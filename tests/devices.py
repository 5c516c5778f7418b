"""The backends a test or benchmark runs on: "cpu" always, and "cuda" carrying the
``gpu`` marker, skipped with the reason where CUDA cannot be used. Shared by
tests/conftest.py and benchmarks/conftest.py."""

from __future__ import annotations

import pytest

import gpubp as gp

CUDA_UNAVAILABLE = gp.cuda.unavailable_reason()

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(CUDA_UNAVAILABLE is not None, reason=f"no GPU: {CUDA_UNAVAILABLE}"),
        ],
    ),
]
