"""The NCCL backend: collectives of CUDA tensors through CuPy's NCCL bindings (``cupy.cuda.nccl``).

CuPy is imported only when the backend is made. Rank 0 draws the communicator's
unique id, and the group's MPI communicator broadcasts it (at world size 1
there is no one to send it to).

Every collective runs on a stream of the backend's own, ordered by events and
never by a host wait: the NCCL stream waits for the work queued so far on the
current stream, and the current stream then waits for the collective. So on a
GPU the host runs ahead as it does for any kernel, DistributedDataParallel's
bucket reductions overlap the rest of backward (it joins them at the end), and
inside a ``gp.jit`` capture the NCCL calls are captured with the step: the
NCCL stream forks from the capturing stream and joins it again, as a CUDA
graph needs (NCCL 2.28.9 through cupy.cuda.nccl replayed a captured
all-reduce correctly on an H100, at world size 1).

Faults: NCCL reports errors asynchronously (a rank that died, a network
error). The group's watchdog thread asks ``check`` once a second, which reads
NCCL's asynchronous error and looks for a collective that has not finished
within the group's timeout (each eager one records an event); either ends the
job, after ``ncclCommAbort`` frees the ranks stuck in NCCL kernels.
"""

from __future__ import annotations

import collections
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from gpubp import dtypes

# ncclAvg exists from NCCL 2.10 (versions as NCCL codes them: 2.10.0 is 21000).
_AVG_VERSION = 21000


def unavailable_reason() -> str | None:
    """None when NCCL can be used through CuPy on this machine, else why not."""
    from gpubp import cuda

    reason = cuda.unavailable_reason()
    if reason is not None:
        return f"the nccl backend needs a CUDA GPU: {reason}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CuPy warns when it cannot load NCCL; the reason below says so
        from cupy.cuda import nccl
    if not nccl.available:
        return (
            "CuPy cannot load the NCCL library: pip install nvidia-nccl-cu13 (nvidia-nccl-cu12 for CUDA 12), "
            "or install NCCL where CuPy finds it"
        )
    return None


class NcclBackend:
    """One NCCL communicator over the ranks' GPUs (this rank's is ``cuda:index``)."""

    name = "nccl"

    def __init__(
        self, rank: int, world_size: int, index: int, share_id: Callable[[Any], Any], timeout: float | None
    ) -> None:
        import cupy
        from cupy.cuda import nccl

        self._cupy = cupy
        self._nccl = nccl
        self.index = index
        self.device = f"cuda:{index}"
        self.world_size = world_size
        self._timeout = timeout
        self._dtypes = {
            np.dtype(np.float16): nccl.NCCL_FLOAT16,
            np.dtype(np.float32): nccl.NCCL_FLOAT32,
            np.dtype(np.float64): nccl.NCCL_FLOAT64,
            np.dtype(np.int32): nccl.NCCL_INT32,
            np.dtype(np.int64): nccl.NCCL_INT64,
            np.dtype(np.uint8): nccl.NCCL_UINT8,
        }
        if hasattr(nccl, "NCCL_BFLOAT16"):  # bfloat16's raw words (gpubp.backends.raw_bfloat16), reduced as bfloat16
            self._dtypes[dtypes.RAW_BFLOAT16] = nccl.NCCL_BFLOAT16
        self._ops = {"sum": nccl.NCCL_SUM, "max": nccl.NCCL_MAX, "min": nccl.NCCL_MIN}
        if nccl.get_version() >= _AVG_VERSION:
            self._ops["avg"] = nccl.NCCL_AVG
        # Every rank must take part in making the communicator: share_id broadcasts rank 0's id.
        unique_id = share_id(nccl.get_unique_id() if rank == 0 else None)
        with cupy.cuda.Device(index):
            self.comm = nccl.NcclCommunicator(world_size, unique_id, rank)
            self.stream = cupy.cuda.Stream(non_blocking=True)
        # (event recorded after an eager collective, when it was queued, what it was), for the watchdog.
        self._in_flight: collections.deque[tuple[Any, float, str]] = collections.deque()

    # -- the collectives ------------------------------------------------------------------
    def check(self, array: Any, op: str | None, what: str) -> None:
        """ValueError/TypeError when this communicator cannot take ``array`` (device, dtype)."""
        if array.device.id != self.index:
            raise ValueError(
                f"{what}: the tensor is on cuda:{array.device.id}, but this rank's GPU is {self.device} "
                "(picked from its local rank); move it there with .to(...)"
            )
        dtype = dtypes.logical(array.dtype)
        if array.dtype not in self._dtypes:
            raise TypeError(f"{what}: NCCL cannot reduce {dtype} tensors")
        if op == "avg" and not dtypes.is_floating(dtype):
            raise TypeError(f"{what}: op 'avg' needs a floating-point tensor, got {dtype} (use 'sum')")
        if op == "avg" and "avg" not in self._ops and array.dtype == dtypes.RAW_BFLOAT16:
            raise TypeError(f"{what}: op 'avg' of bfloat16 needs NCCL 2.10 or newer (use 'sum', then divide)")

    def all_reduce(self, array: Any, op: str) -> None:
        """Reduces ``array`` across the ranks in place, queued (see the module docstring)."""
        done = self._fork()
        with self.stream:
            self._all_reduce_here(array, op)
        self.join(self._done(done, "all_reduce"))

    def broadcast(self, array: Any, src: int) -> None:
        """Overwrites ``array`` on every rank with rank ``src``'s, queued."""
        done = self._fork()
        with self.stream:
            work = array if array.flags.c_contiguous else self._cupy.ascontiguousarray(array)
            self.comm.broadcast(work.data.ptr, work.data.ptr, work.size, self._dtypes[work.dtype], src, self.stream.ptr)
            if work is not array:
                array[...] = work
        self.join(self._done(done, "broadcast"))

    def bucket_all_reduce(self, flat: Any, fill: Callable[[], None], drain: Callable[[], None]) -> Any:
        """DistributedDataParallel's bucket, on the NCCL stream after the gradients
        queued so far: ``fill()`` copies them into ``flat``, NCCL sums it, ``drain()``
        copies it back. Returns the event to ``join`` before the gradients are read;
        the current stream goes on meanwhile (the rest of backward)."""
        done = self._fork()
        with self.stream:
            fill()
            self._all_reduce_here(flat, "sum")
            drain()
        return self._done(done, "DistributedDataParallel's gradient all-reduce")

    def join(self, done: Any) -> None:
        """Makes the current stream wait for the collective that recorded ``done``."""
        self._cupy.cuda.get_current_stream().wait_event(done)

    def _all_reduce_here(self, array: Any, op: str) -> None:
        """The all-reduce on the NCCL stream (the caller made it current)."""
        work = array if array.flags.c_contiguous else self._cupy.ascontiguousarray(array)
        nccl_op = self._ops.get(op)
        if nccl_op is None:  # "avg" before NCCL 2.10: the sum, divided on the same stream
            nccl_op = self._ops["sum"]
        count, dtype = work.size, self._dtypes[work.dtype]
        self.comm.allReduce(work.data.ptr, work.data.ptr, count, dtype, nccl_op, self.stream.ptr)
        if op == "avg" and "avg" not in self._ops:
            work /= self.world_size
        if work is not array:
            array[...] = work

    def _fork(self) -> Any:
        """The NCCL stream waits for the current stream's queued work; returns the event
        the collective will record when done."""
        cuda = self._cupy.cuda
        ready = cuda.Event(block=False, disable_timing=True)
        ready.record(cuda.get_current_stream())
        self.stream.wait_event(ready)
        return cuda.Event(block=False, disable_timing=True)

    def _done(self, done: Any, what: str) -> Any:
        done.record(self.stream)
        # Eager collectives only: an event recorded during a graph capture is a dependency of
        # the graph, not a point in time the host can ask about.
        if self._timeout is not None and not self._cupy.cuda.get_current_stream().is_capturing():
            self._in_flight.append((done, time.monotonic(), what))
        return done

    # -- faults ------------------------------------------------------------------------
    def fault(self) -> str | None:
        """What went wrong, for the watchdog thread: NCCL's asynchronous error, or a
        collective still running after the timeout; None while all is well."""
        try:
            self.comm.check_async_error()
        except Exception as err:  # NcclError: the communicator is unusable
            return f"NCCL reported an error: {err}"
        while self._in_flight:
            done, queued, what = self._in_flight[0]
            if done.done:
                self._in_flight.popleft()
                continue
            waited = time.monotonic() - queued
            if self._timeout is not None and waited > self._timeout:
                return f"NCCL's {what} has not finished after {waited:.0f} s: another rank died or is stuck"
            break
        return None

    def abort(self) -> None:
        """Frees this rank from NCCL kernels that wait for others (ncclCommAbort)."""
        self.comm.abort()

    def destroy(self) -> None:
        self.stream.synchronize()
        self.comm.destroy()
