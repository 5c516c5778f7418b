"""Fixtures of the pytest-benchmark suite: one parameter per backend present.

GPU timings must include the GPU's work, not only the kernel launches: on CUDA
every timed call ends with a device synchronisation, and the CUDA-event time of
the same call (``cupyx.profiler.benchmark``) is recorded in ``extra_info``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.devices import DEVICES


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    """Each backend present: "cpu" always, "cuda" where a GPU can be used."""
    return request.param


@pytest.fixture
def xp(device: str) -> Any:
    """The array module of ``device``: what hand-written code on it would use."""
    if device == "cpu":
        import numpy

        return numpy
    import cupy

    return cupy


@pytest.fixture
def timed(benchmark: Any, device: str) -> Callable[[Callable[[], Any]], None]:
    """``timed(fn)`` benchmarks ``fn()``: plainly on the CPU; on a GPU each call
    is followed by a synchronisation, and CUDA events time it as well."""

    def run(fn: Callable[[], Any]) -> None:
        if device == "cpu":
            benchmark(fn)
            return
        import cupy
        import cupyx.profiler
        import numpy

        def synced() -> None:
            fn()
            cupy.cuda.get_current_stream().synchronize()

        benchmark(synced)
        events = cupyx.profiler.benchmark(fn, n_repeat=50, n_warmup=5)
        # gpu_times: seconds per repeat, one row per device; this run uses the first.
        benchmark.extra_info["cuda_event_median_ms"] = float(numpy.median(events.gpu_times[0])) * 1e3

    return run
