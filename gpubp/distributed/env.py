"""Which launcher started this process, and the rank, world size and local rank it gave it.

Read from the environment each launcher sets, in this order:

- Open MPI's ``mpirun``/``mpiexec``: ``OMPI_COMM_WORLD_RANK``, ``OMPI_COMM_WORLD_SIZE``,
  ``OMPI_COMM_WORLD_LOCAL_RANK``;
- MPICH's (and Intel MPI's) Hydra ``mpiexec``: ``PMI_RANK``, ``PMI_SIZE``, ``MPI_LOCALRANKID``;
- Slurm's ``srun``: ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS``, ``SLURM_LOCALID`` (a job
  step's variables; a batch script alone has no step, so it is not mistaken for one);
- ``torchrun`` (and anything else PyTorch-shaped): ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``.

The first three start MPI processes, which gpubp's process group joins through
mpi4py. torchrun does not: its processes cannot reach each other over MPI, so
beyond one process they need an MPI launcher (``init_process_group`` says so).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# (launcher, rank variable, size variable, local-rank variable, whether MPI connects the processes)
_LAUNCHERS = (
    ("Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", True),
    ("MPICH", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", True),
    ("srun", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", True),
    ("torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", False),
)


@dataclass(frozen=True)
class LaunchEnvironment:
    """What the launcher said: ``launcher`` is "Open MPI", "MPICH", "srun", "torchrun"
    or None (a plain process: rank 0 of 1); ``uses_mpi`` whether the processes are
    MPI processes that can reach each other."""

    launcher: str | None
    rank: int
    world_size: int
    local_rank: int
    uses_mpi: bool

    @property
    def distributed(self) -> bool:
        """Whether there is more than one process."""
        return self.world_size > 1


def detect(environ: Mapping[str, str] | None = None) -> LaunchEnvironment:
    """The launch environment of this process (``os.environ`` unless given).
    ValueError naming the variable when a launcher's variable is malformed."""
    environ = os.environ if environ is None else environ
    for launcher, rank_var, size_var, local_var, uses_mpi in _LAUNCHERS:
        if rank_var in environ and size_var in environ:
            size = _integer(environ, size_var, launcher)
            rank = _integer(environ, rank_var, launcher)
            local = _integer(environ, local_var, launcher) if local_var in environ else rank
            if size < 1 or not 0 <= rank < size or local < 0:
                raise ValueError(
                    f"{launcher} set {rank_var}={rank} and {size_var}={size}: the rank must be in [0, world size)"
                )
            return LaunchEnvironment(launcher, rank, size, local, uses_mpi)
    return LaunchEnvironment(None, 0, 1, 0, False)


def _integer(environ: Mapping[str, str], name: str, launcher: str) -> int:
    try:
        return int(environ[name])
    except ValueError:
        raise ValueError(f"{launcher} set {name}={environ[name]!r}, which is not an integer") from None
