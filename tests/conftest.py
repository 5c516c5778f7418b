"""Shared fixtures: every op test runs on each backend present and each float dtype.

GPU parameters carry the ``gpu`` marker and skip, with the reason, where CUDA
cannot be used; the CPU parameters always run.
"""

from __future__ import annotations

import os

# The tests use small arrays, where BLAS threads only cost: on a busy 2-core
# machine OpenBLAS's spinning threads made the suite ten times slower. This
# must be set before NumPy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import gpubp as gp  # noqa: E402

_cuda_reason = gp.cuda.unavailable_reason()

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[pytest.mark.gpu, pytest.mark.skipif(_cuda_reason is not None, reason=f"no GPU: {_cuda_reason}")],
    ),
]
FLOAT_DTYPES = [np.float32, np.float64]


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    """Each backend present: "cpu" always, "cuda" where a GPU can be used."""
    return request.param


@pytest.fixture(params=FLOAT_DTYPES, ids=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> np.dtype:
    return np.dtype(request.param)


@pytest.fixture(autouse=True)
def _seed() -> None:
    gp.manual_seed(1234)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests marked gpu without the device fixture (whole GPU modules) skip the same way.
    if _cuda_reason is None:
        return
    skip = pytest.mark.skip(reason=f"no GPU: {_cuda_reason}")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)
