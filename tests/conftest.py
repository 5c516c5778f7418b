"""Shared fixtures: every op test runs on each backend present and each float dtype.

GPU parameters carry the ``gpu`` marker and skip, with the reason, where CUDA
cannot be used; the CPU parameters always run.
"""

from __future__ import annotations

import os
from pathlib import Path

# The tests use small arrays, where BLAS threads only cost: on a busy 2-core
# machine OpenBLAS's spinning threads made the suite ten times slower. This
# must be set before NumPy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import gpubp as gp  # noqa: E402
from tests.devices import CUDA_UNAVAILABLE, DEVICES  # noqa: E402

_cuda_reason = CUDA_UNAVAILABLE
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


@pytest.fixture
def mnist_like_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny learnable data set in MNIST format (gzip IDX files): 10×10 images
    whose class k lights up row k, 300 train and 100 test samples."""
    from gpubp.data.idx import write_idx

    folder = tmp_path_factory.mktemp("mnist-like")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 300), ("t10k", 100)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(labels)
        images = rng.integers(0, 80, size=(n, 10, 10), dtype=np.uint8)
        images[np.arange(n), labels, :] = 255
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder
