"""CUDA graphs for the CuPy backend: capture a call's device work once, replay it.

``CudaGraph.capture(backend, fn)`` runs ``fn`` with every launch recorded on a
side stream instead of executed:

- the side stream first waits for the work already queued on the current one;
- the cuBLAS handle is bound to that stream before the capture begins (binding
  it during a capture is not allowed);
- allocations come from a memory pool of the graph's own, so no buffer the
  graph writes on replay is ever handed to other work (CuPy's pool would reuse
  a buffer freed during the capture while the graph still writes there), and
  none is reused within the capture either: every block stays the graph's
  until the graph goes. Reuse would let a temporary share memory with state
  that lives from one replay to the next (a momentum buffer made in the
  capture, the replay values), and the temporary's kernel, earlier in the
  graph, would overwrite that state at every replay;
- values that change between replays live in ``ReplayValues``: device words
  the host rewrites before every replay with one small launch.

``launch()`` replays the graph on the current stream, so replays and eager
work are ordered as eager work is among itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import cupy
import numpy as np

from gpubp.backends import kernel_catalog as catalog


class ReplayValues:
    """8-byte device values computed on the host before each replay.

    ``reserve`` hands out device addresses during the capture (in blocks of
    ``catalog.REPLAY_WORDS`` words, allocated from the graph's pool); ``refresh``
    computes every value and writes each block with one ``write_words`` launch,
    whose argument block carries the values (kernel arguments are copied when
    the launch is queued, so a later refresh never changes an earlier replay's
    values, as a copy from host memory could)."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        # Per block: its device words, and on the host [count, words...] as integers,
        # as doubles, and as the one by-value kernel argument write_words takes.
        self._blocks: list[tuple[Any, np.ndarray, np.ndarray, np.ndarray]] = []
        self._fills: list[tuple[np.ndarray, slice, Callable[[], Sequence[float | int]]]] = []
        self._written: list[np.ndarray | None] = []  # what each device block holds (None: nothing yet)
        self._kernel = catalog.write_words()

    def reserve(self, count: int, compute: Callable[[], Sequence[float | int]], floats: bool) -> int:
        if not 0 < count <= catalog.REPLAY_WORDS:
            raise ValueError(f"a replay value holds 1 to {catalog.REPLAY_WORDS} words, asked for {count}")
        if not self._blocks or self._blocks[-1][1][0] + count > catalog.REPLAY_WORDS:
            device = cupy.empty(catalog.REPLAY_WORDS, dtype=np.uint64)
            host = np.zeros(1 + catalog.REPLAY_WORDS, dtype=np.uint64)
            self._blocks.append((device, host, host.view(np.float64), host.view(np.dtype((np.void, host.nbytes)))))
            self._written.append(None)
        device, host, host_doubles, _ = self._blocks[-1]
        offset = int(host[0])
        host[0] = offset + count
        self._fills.append((host_doubles if floats else host, slice(1 + offset, 1 + offset + count), compute))
        return device.data.ptr + 8 * offset

    def refresh(self) -> None:
        """Computes every value on the host and queues the writes on the current
        stream (none for a block whose values are those the device already holds)."""
        for words, where, compute in self._fills:
            words[where] = compute()
        for i, (device, host, _, argument) in enumerate(self._blocks):
            if self._written[i] is not None and np.array_equal(self._written[i], host):
                continue
            self._backend.launch("graph", self._kernel, int(host[0]), (device, argument))
            self._written[i] = host.copy()


class CudaGraph:
    """One captured call: the graph, its private memory pool and its replay values."""

    def __init__(self, graph: Any, memory: Any, values: ReplayValues) -> None:
        self.graph = graph
        self.memory = memory  # the private pool and every block the capture allocated
        self.values = values

    @classmethod
    def capture(cls, backend: Any, fn: Callable[[ReplayValues], Any]) -> tuple[CudaGraph, Any]:
        """Captures ``fn(values)`` on a side stream; returns the graph and fn's result.
        Nothing runs: the caller launches the graph to execute the captured work."""
        backend.activate()
        pool = cupy.cuda.MemoryPool()
        blocks: list[Any] = []

        def allocate(size: int) -> Any:
            try:
                memory = pool.malloc(size)
            except cupy.cuda.memory.OutOfMemoryError:
                from gpubp.backends.cupy_backend import out_of_memory

                raise out_of_memory(size) from None
            blocks.append(memory)  # held until the graph goes: never reused, even when its array is freed
            return memory

        values = ReplayValues(backend)
        origin = cupy.cuda.get_current_stream()
        side = cupy.cuda.Stream(non_blocking=True)
        side.wait_event(origin.record())
        with cupy.cuda.using_allocator(allocate), side:
            backend.cublas.bind_stream(side.ptr)
            side.begin_capture()
            try:
                result = fn(values)
            except BaseException:
                # End the capture, which the failure may have invalidated, and report the failure.
                with contextlib.suppress(Exception):
                    side.end_capture()
                raise
            graph = side.end_capture()
        origin.wait_event(side.record())
        return cls(graph, (pool, blocks), values), result

    def launch(self) -> None:
        """Writes this replay's values, then replays the graph, on the current stream."""
        self.values.refresh()
        self.graph.launch()
