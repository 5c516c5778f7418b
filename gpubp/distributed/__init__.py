"""``gp.distributed``: several processes training one model, as ``torch.distributed``.

>>> import gpubp as gp
>>> gp.distributed.init_process_group()            # under mpirun -n N
>>> model = gp.nn.parallel.DistributedDataParallel(model)
>>> gp.distributed.all_reduce(t, op="avg")          # any tensor, in place

The engines are the ones clusters already run: MPI (through mpi4py) launches the
processes, connects them across hosts and reduces CPU tensors; NCCL (through
CuPy's ``cupy.cuda.nccl``) reduces CUDA tensors. Nothing here is imported or
runs until ``init_process_group``: a single process pays nothing for it.
"""

from gpubp.distributed.env import LaunchEnvironment, detect
from gpubp.distributed.group import (
    DEFAULT_TIMEOUT,
    ReduceOp,
    all_gather_object,
    all_reduce,
    barrier,
    broadcast,
    destroy_process_group,
    get_backend,
    get_rank,
    get_world_size,
    init_process_group,
    is_available,
    is_initialized,
    is_mpi_available,
    is_nccl_available,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "LaunchEnvironment",
    "ReduceOp",
    "all_gather_object",
    "all_reduce",
    "barrier",
    "broadcast",
    "destroy_process_group",
    "detect",
    "get_backend",
    "get_rank",
    "get_world_size",
    "init_process_group",
    "is_available",
    "is_initialized",
    "is_mpi_available",
    "is_nccl_available",
]
