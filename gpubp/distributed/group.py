"""The default process group: made by ``init_process_group``, one per process.

It holds this process's rank, the world size and the local rank (from the
launcher's environment, ``gpubp.distributed.env``), the MPI communicator the
processes share (mpi4py's ``COMM_WORLD``), and the backends that move tensors:
"mpi" for CPU tensors and "nccl" for CUDA tensors.

Faults end the whole job, never leave the others waiting:

- an exception that reaches the top of any rank (``sys.excepthook``) prints its
  traceback there and aborts the job (MPI_Abort: the launcher stops every rank);
- a watchdog thread ends the job when a collective has waited longer than the
  group's timeout (a rank that hangs rather than dies), or when NCCL reports an
  asynchronous error;
- a rank that dies (killed, ``os._exit``) is the launcher's to handle: mpirun,
  MPICH's mpiexec and srun (with ``--kill-on-bad-exit``) then stop the others.

Nothing here runs, and nothing is imported, until ``init_process_group``.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
import threading
import time
from typing import Any, NoReturn

from gpubp.distributed import env as launch_env
from gpubp.distributed import mpi as mpi_backend
from gpubp.tensor import Tensor

# As PyTorch's default for its process groups: 30 minutes.
DEFAULT_TIMEOUT = 1800.0
BACKENDS = ("mpi", "nccl")

_group: ProcessGroup | None = None


class ReduceOp:
    """The reductions ``all_reduce`` takes, under PyTorch's names (``ReduceOp.SUM``);
    the strings "sum", "avg", "max" and "min" work as well."""

    SUM = "sum"
    AVG = "avg"
    MAX = "max"
    MIN = "min"


_OPS = (ReduceOp.SUM, ReduceOp.AVG, ReduceOp.MAX, ReduceOp.MIN)


class ProcessGroup:
    """This process's place among the others, and the backends that reach them."""

    def __init__(
        self, environment: launch_env.LaunchEnvironment, backend: str | None, timeout: float | None, comm: Any
    ) -> None:
        self.environment = environment
        self.rank = environment.rank
        self.world_size = environment.world_size
        self.local_rank = environment.local_rank
        self.requested = backend  # None: "mpi" for CPU tensors and "nccl" for CUDA tensors
        self.timeout = timeout
        self.gpu: int | None = None  # this rank's CUDA device, once picked
        self.watchdog = _Watchdog(self, timeout) if self.world_size > 1 and timeout is not None else None
        self.mpi = mpi_backend.MpiBackend(comm, self.world_size, self._watch)
        self._nccl: Any = None
        self.excepthook: Any = None  # the one init_process_group installed, and the one before it
        self.previous_excepthook: Any = None

    @property
    def backend_name(self) -> str:
        """As ``torch.distributed.get_backend``: "mpi", "nccl", or "cpu:mpi,cuda:nccl" for both."""
        if self.requested is not None:
            return self.requested
        return "cpu:mpi,cuda:nccl" if self.gpu is not None else "mpi"

    def _watch(self, what: str) -> Any:
        return self.watchdog.watch(what) if self.watchdog is not None else _UNWATCHED

    def pick_gpu(self) -> int:
        """This rank's GPU, its local rank modulo the GPUs this host has; made the
        device that "cuda" names (``gp.cuda.set_device``)."""
        from gpubp import cuda

        if self.gpu is None:
            self.gpu = self.local_rank % max(cuda.device_count(), 1)
            cuda.set_device(self.gpu)
        return self.gpu

    def nccl(self, what: str) -> Any:
        """The NCCL backend, made at its first use (every rank must get there together:
        at a collective, or at init with backend "nccl")."""
        if self._nccl is None:
            from gpubp.distributed import nccl

            reason = nccl.unavailable_reason()
            if reason is not None:
                raise RuntimeError(f"{what}: {reason}")
            self._nccl = nccl.NcclBackend(
                self.rank,
                self.world_size,
                self.pick_gpu(),
                lambda unique_id: self.mpi.broadcast_object(unique_id, 0),
                self.timeout if self.world_size > 1 else None,
            )
        return self._nccl

    def backend_for(self, device: str, what: str) -> Any:
        """The backend for tensors on ``device``; ValueError when the group's backend does not take them."""
        if device == "cpu":
            if self.requested == "nccl":
                raise ValueError(
                    f"{what}: a CPU tensor, but the process group's backend is 'nccl', which takes CUDA tensors; "
                    "init_process_group('mpi') or init_process_group() (both backends) takes CPU tensors"
                )
            return self.mpi
        if device.startswith("cuda"):
            if self.requested == "mpi":
                raise ValueError(
                    f"{what}: a tensor on {device}, but the process group's backend is 'mpi', which takes CPU "
                    "tensors; init_process_group('nccl') or init_process_group() (both backends) takes CUDA tensors"
                )
            return self.nccl(what)
        raise ValueError(f"{what}: no backend takes tensors on {device!r}")

    def abort(self, message: str, status: int = 1) -> NoReturn:
        """Prints ``message`` and ends every rank of the job (MPI_Abort), not only this one."""
        print(f"gpubp.distributed: rank {self.rank} of {self.world_size}: {message}", file=sys.stderr, flush=True)
        if self._nccl is not None:
            # Frees this rank from NCCL kernels that wait for the others; if NCCL is already
            # broken, MPI_Abort below ends the process anyway.
            with contextlib.suppress(Exception):
                self._nccl.abort()
        if self.mpi.comm is not None:
            self.mpi.abort(status)
        os._exit(status)

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
        if self._nccl is not None:
            self._nccl.destroy()
            self._nccl = None


class _Unwatched:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_UNWATCHED = _Unwatched()


class _Watchdog:
    """A daemon thread that ends the job when a collective waits longer than the
    timeout, or when NCCL reports an error. MPI's collectives release the GIL while
    they wait, so the thread runs beside a blocked main thread; it costs the
    collectives two attribute writes each."""

    def __init__(self, group: ProcessGroup, timeout: float) -> None:
        self._group = group
        self._timeout = timeout
        self._busy: tuple[str, float] | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpubp.distributed watchdog", daemon=True)
        self._thread.start()

    def watch(self, what: str) -> _Watchdog:
        self._what = what
        return self

    def __enter__(self) -> None:
        self._busy = (self._what, time.monotonic())

    def __exit__(self, *exc: object) -> None:
        self._busy = None

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        poll = min(1.0, self._timeout / 4)
        while not self._stopped.wait(poll):
            fault = self._fault()
            if fault is not None and not self._stopped.is_set():
                self._group.abort(fault)

    def _fault(self) -> str | None:
        busy = self._busy
        if busy is not None:
            waited = time.monotonic() - busy[1]
            if waited > self._timeout:
                return (
                    f"{busy[0]} has waited {waited:.0f} s for the other ranks (timeout {self._timeout:g} s): "
                    "one of them died or is stuck; stopping every rank"
                )
        nccl = self._group._nccl
        return nccl.fault() if nccl is not None else None


# -- the public functions -------------------------------------------------------------------
def init_process_group(backend: str | None = None, *, timeout: float | datetime.timedelta | None = None) -> None:
    """Joins this process to the others its launcher started, as ``torch.distributed``'s.

    Run under ``mpirun -n N`` (Open MPI or MPICH), or ``srun``; rank, world size and
    local rank come from their environment (``gpubp.distributed.env``), and the
    processes meet through MPI (mpi4py; ``pip install 'gpubp[dist]'``). A process
    started on its own is rank 0 of 1 and needs no MPI. ``torchrun`` sets the same
    variables but starts no MPI processes: beyond one process, use an MPI launcher.

    ``backend``: "mpi" (CPU tensors), "nccl" (CUDA tensors; the communicator is made
    now, its unique id sent over MPI), or None for both, NCCL made at the first
    collective of a CUDA tensor. With NCCL (or None on a machine with a GPU) each
    rank takes the GPU of its local rank (modulo the GPUs of its host), which the
    device name "cuda" then means (``gp.cuda.set_device``).

    ``timeout`` (seconds or a ``timedelta``; default 30 minutes, as PyTorch): a
    collective that waits longer ends the job with a message, as does an exception
    that reaches the top of any rank. Collectives must be called by every rank in
    the same order."""
    global _group
    if _group is not None:
        raise RuntimeError("init_process_group: the process group is already initialised (destroy_process_group())")
    if backend is not None:
        if not isinstance(backend, str) or backend.lower() not in BACKENDS:
            raise ValueError(
                f"init_process_group: unknown backend {backend!r}; gpubp has 'mpi' (CPU tensors) and 'nccl' "
                "(CUDA tensors), or None for both"
            )
        backend = backend.lower()
    seconds = _timeout_seconds(timeout)
    environment = launch_env.detect()
    if environment.distributed and not environment.uses_mpi:
        raise RuntimeError(
            f"init_process_group: {environment.launcher} started {environment.world_size} processes, but gpubp's "
            f"processes meet through MPI, which {environment.launcher} does not start; launch them with "
            f"mpirun -n {environment.world_size} (or srun)"
        )
    comm = None
    if environment.uses_mpi:
        mpi = mpi_backend.import_mpi()
        comm = mpi.COMM_WORLD
        if (comm.Get_size(), comm.Get_rank()) != (environment.world_size, environment.rank):
            raise RuntimeError(
                f"init_process_group: {environment.launcher} started this process as rank {environment.rank} of "
                f"{environment.world_size}, but MPI sees rank {comm.Get_rank()} of {comm.Get_size()}: mpi4py uses "
                "another MPI library than the launcher's (rebuild mpi4py against it, or use that library's mpirun)"
            )
    group = ProcessGroup(environment, backend, seconds, comm)
    try:
        if backend == "nccl":
            group.nccl("init_process_group")
        elif backend is None:
            from gpubp import cuda

            if cuda.is_available():
                group.pick_gpu()
    except BaseException:
        group.close()
        raise
    if group.world_size > 1:
        _install_excepthook(group)
    _group = group


def destroy_process_group() -> None:
    """Leaves the process group (its NCCL communicator, its watchdog); a new one may be
    made afterwards. MPI itself stays up until the process ends (mpi4py finalises it)."""
    global _group
    group = _require("destroy_process_group")
    _group = None
    if group.excepthook is not None and sys.excepthook is group.excepthook:
        sys.excepthook = group.previous_excepthook
    group.close()


def is_initialized() -> bool:
    """Whether ``init_process_group`` has made the process group."""
    return _group is not None


def is_available() -> bool:
    """Whether process groups can span processes here (mpi4py is installed)."""
    return mpi_backend.unavailable_reason() is None


def is_mpi_available() -> bool:
    """Whether the "mpi" backend can reach other processes (mpi4py is installed)."""
    return mpi_backend.unavailable_reason() is None


def is_nccl_available() -> bool:
    """Whether the "nccl" backend can be used (a GPU, CuPy, and NCCL CuPy can load)."""
    from gpubp.distributed import nccl

    return nccl.unavailable_reason() is None


def get_rank() -> int:
    """This process's rank, 0 to world size − 1."""
    return _require("get_rank").rank


def get_world_size() -> int:
    """The number of processes in the group."""
    return _require("get_world_size").world_size


def get_backend() -> str:
    """The group's backend: "mpi", "nccl", or "cpu:mpi,cuda:nccl"."""
    return _require("get_backend").backend_name


def barrier() -> None:
    """Waits until every rank has called ``barrier`` (on the host: queued GPU work may still run)."""
    _require("barrier").mpi.barrier()


def all_reduce(tensor: Tensor, op: str = ReduceOp.SUM) -> None:
    """Reduces ``tensor`` across all ranks, in place: every rank ends with the sum
    ("sum"), the mean ("avg": the sum divided by the world size), the maximum or the
    minimum. CPU tensors go over MPI, CUDA tensors over NCCL (queued on the device,
    without a host wait). Not recorded on the tape."""
    group = _require("all_reduce")
    op = _check_op(op, "all_reduce")
    backend = _backend_of(group, tensor, "all_reduce")
    backend.check(tensor.data, op, "all_reduce")
    backend.all_reduce(tensor.data, op)
    tensor.bump_version()


def broadcast(tensor: Tensor, src: int) -> None:
    """Overwrites ``tensor`` on every rank with rank ``src``'s, in place (same shape and
    dtype on every rank). Not recorded on the tape."""
    group = _require("broadcast")
    if isinstance(src, bool) or not isinstance(src, int) or not 0 <= src < group.world_size:
        raise ValueError(f"broadcast: src must be a rank in [0, {group.world_size}), got {src!r}")
    backend = _backend_of(group, tensor, "broadcast")
    backend.check(tensor.data, None, "broadcast")
    backend.broadcast(tensor.data, src)
    tensor.bump_version()


def all_gather_object(object_list: list[Any], obj: Any) -> None:
    """Fills ``object_list`` (one entry per rank) with every rank's ``obj``, as
    PyTorch's: the objects are pickled over MPI, so keep them small."""
    group = _require("all_gather_object")
    if not isinstance(object_list, list) or len(object_list) != group.world_size:
        raise ValueError(f"all_gather_object: object_list must be a list of {group.world_size} entries (one per rank)")
    object_list[:] = group.mpi.all_gather_object(obj)


def current() -> ProcessGroup | None:
    """The process group, or None before ``init_process_group``."""
    return _group


# -- helpers --------------------------------------------------------------------------------
def _require(what: str) -> ProcessGroup:
    if _group is None:
        raise RuntimeError(
            f"{what}: the process group is not initialised; call gp.distributed.init_process_group() first "
            "(in each process, e.g. under mpirun -n N)"
        )
    return _group


def _backend_of(group: ProcessGroup, tensor: Any, what: str) -> Any:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{what}: expected a gp.Tensor, got {type(tensor).__name__}")
    return group.backend_for(tensor.device, what)


def _check_op(op: Any, what: str) -> str:
    name = op.lower() if isinstance(op, str) else op
    if name not in _OPS:
        raise ValueError(f"{what}: unknown op {op!r}; expected one of {', '.join(map(repr, _OPS))}")
    return name


def _timeout_seconds(timeout: float | datetime.timedelta | None) -> float:
    if timeout is None:
        return DEFAULT_TIMEOUT
    seconds = timeout.total_seconds() if isinstance(timeout, datetime.timedelta) else timeout
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ValueError(f"init_process_group: timeout must be a positive number of seconds, got {timeout!r}")
    return float(seconds)


def _install_excepthook(group: ProcessGroup) -> None:
    """An exception that ends one rank ends them all: the others would wait for it forever
    (and mpi4py's MPI_Finalize at exit would wait for them)."""
    previous = sys.excepthook

    def excepthook(kind: type[BaseException], value: BaseException, traceback: Any) -> None:
        previous(kind, value, traceback)
        if _group is group:
            status = 130 if issubclass(kind, KeyboardInterrupt) else 1
            group.abort(f"{kind.__name__} on this rank (traceback above); stopping every rank", status)

    group.excepthook = excepthook
    group.previous_excepthook = previous
    sys.excepthook = excepthook
