"""The MPI backend: collectives of CPU tensors through mpi4py, and the group's bootstrap.

mpi4py is imported only by ``init_process_group`` (importing it starts MPI). The
collectives use mpi4py's buffer interface on the arrays themselves, in place
(``Allreduce(MPI.IN_PLACE, array)``), so nothing is pickled or copied on the
way. They are MPI's blocking calls, which were 3× faster than the non-blocking
ones with a wait loop (7.5 MB between 2 ranks: 0.79 ms against 2.1 ms); a
collective that never finishes is caught by the group's watchdog instead.

The reduction order is MPI's and is fixed for a given world size and message
size, so a run is reproducible; it is not the order one process would sum in.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np

from gpubp.dtypes import is_floating

# The dtypes MPI reduces as they are; float16 is summed in float32 and rounded
# once (MPI has no half type), as gpubp's float16 kernels compute.
_DTYPES = {np.dtype(t) for t in (np.float32, np.float64, np.uint8, np.int32, np.int64)}


def unavailable_reason() -> str | None:
    """None when mpi4py can be imported, else what to install (it is not imported here:
    importing it starts MPI)."""
    if importlib.util.find_spec("mpi4py") is None:
        return (
            "mpi4py is not installed: pip install 'gpubp[dist]' (pip install -e \".[dist]\" in a checkout); it "
            "needs an MPI library, e.g. Debian's openmpi-bin and libopenmpi-dev"
        )
    return None


def import_mpi() -> Any:
    """mpi4py's MPI module (importing it initialises MPI); RuntimeError saying what to install."""
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError, OSError) as err:  # mpi4py is there but its MPI library is not
        raise RuntimeError(f"mpi4py cannot load its MPI library ({err}); install one, e.g. libopenmpi-dev") from err
    return MPI


class MpiBackend:
    """Collectives of host (NumPy) arrays over ``comm``; with ``comm=None`` (one
    process, no launcher) they check their arguments and leave the data as it is."""

    name = "mpi"
    device = "cpu"

    def __init__(self, comm: Any, world_size: int, watch: Callable[[str], Any]) -> None:
        self.comm = comm
        self.world_size = world_size
        self._watch = watch  # a context manager: the watchdog times the collective inside it
        self._mpi = import_mpi() if comm is not None else None

    def check(self, array: Any, op: str | None, what: str) -> None:
        """TypeError when MPI cannot reduce (or send) this dtype."""
        dtype = array.dtype
        if dtype not in _DTYPES and dtype != np.float16:
            raise TypeError(f"{what}: MPI cannot reduce {dtype} tensors (float16/32/64, int32/64 and uint8 can)")
        if op == "avg" and not is_floating(dtype):
            raise TypeError(f"{what}: op 'avg' needs a floating-point tensor, got {dtype} (use 'sum')")

    def all_reduce(self, array: np.ndarray, op: str) -> None:
        """Reduces ``array`` across the ranks in place ("avg": the sum, then divided by the world size)."""
        if self.comm is None:
            return
        work = array if array.flags.c_contiguous and array.dtype in _DTYPES else _widened(array)
        mpi = self._mpi
        with self._watch("all_reduce"):
            self.comm.Allreduce(mpi.IN_PLACE, work, op=_mpi_op(mpi, op))
        if op == "avg":
            work /= self.world_size
        if work is not array:
            array[...] = work

    def bucket_all_reduce(self, flat: np.ndarray, fill: Callable[[], None], drain: Callable[[], None]) -> None:
        """DistributedDataParallel's bucket: ``fill()`` copies the gradients into ``flat``,
        which is summed across the ranks, and ``drain()`` copies it back. On the CPU all
        of it is done when this returns, so there is nothing to ``join`` later."""
        fill()
        self.all_reduce(flat, "sum")
        drain()

    def join(self, done: Any) -> None:
        """Nothing to wait for on the CPU (the NCCL backend's ``join`` orders the current stream)."""

    def broadcast(self, array: np.ndarray, src: int) -> None:
        """Overwrites ``array`` on every rank with rank ``src``'s, in place."""
        if self.comm is None:
            return
        work = array if array.flags.c_contiguous and array.dtype in _DTYPES else _widened(array)
        with self._watch("broadcast"):
            self.comm.Bcast(work, root=src)
        if work is not array:
            array[...] = work

    def barrier(self) -> None:
        if self.comm is not None:
            with self._watch("barrier"):
                self.comm.Barrier()

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (pickled), in rank order."""
        if self.comm is None:
            return [obj]
        with self._watch("all_gather_object"):
            return self.comm.allgather(obj)

    def broadcast_object(self, obj: Any, src: int) -> Any:
        """Rank ``src``'s ``obj`` (pickled), on every rank."""
        if self.comm is None:
            return obj
        with self._watch("broadcast_object"):
            return self.comm.bcast(obj, root=src)

    def abort(self, status: int) -> None:
        """Ends every rank of the job (MPI_Abort): the launcher stops the others."""
        self.comm.Abort(status)


def _widened(array: np.ndarray) -> np.ndarray:
    """A contiguous copy MPI can reduce: float16 as float32, anything else as it is."""
    return np.ascontiguousarray(array, dtype=np.float32 if array.dtype == np.float16 else array.dtype)


def _mpi_op(mpi: Any, op: str) -> Any:
    return {"sum": mpi.SUM, "avg": mpi.SUM, "max": mpi.MAX, "min": mpi.MIN}[op]
