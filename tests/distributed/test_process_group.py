"""gp.distributed in this process: the launchers' environments, the API's errors, and a
group of one process, which needs no MPI (tests/distributed/test_mpi.py runs several)."""

from __future__ import annotations

import datetime
import sys

import numpy as np
import pytest

import gpubp as gp
import gpubp.distributed as dist
from gpubp.backends import NumpyBackend
from gpubp.tensor import _wrap

pytestmark = pytest.mark.usefixtures("no_process_group")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, (None, 0, 1, 0, False)),
        (
            {"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_RANK": "1"},
            ("Open MPI", 3, 8, 1, True),
        ),
        ({"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "1"}, ("MPICH", 1, 2, 1, True)),
        ({"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "6", "SLURM_LOCALID": "2"}, ("srun", 5, 6, 2, True)),
        ({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, ("torchrun", 1, 4, 1, False)),
        # A Slurm batch script has a task count but no job step: not a launch of several processes.
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}, (None, 0, 1, 0, False)),
        # No local rank given: the rank (one host).
        ({"PMI_RANK": "2", "PMI_SIZE": "4"}, ("MPICH", 2, 4, 2, True)),
    ],
)
def test_the_launch_environment_is_read_from_each_launchers_variables(environ: dict, expected: tuple) -> None:
    found = dist.detect(environ)
    assert (found.launcher, found.rank, found.world_size, found.local_rank, found.uses_mpi) == expected
    assert found.distributed == (expected[2] > 1)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RANK": "one", "WORLD_SIZE": "2"}, "torchrun set RANK='one', which is not an integer"),
        ({"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "2"}, "the rank must be in \\[0, world size\\)"),
    ],
)
def test_a_malformed_launch_environment_names_the_variable(environ: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dist.detect(environ)


@pytest.mark.parametrize(
    "call",
    [
        lambda: dist.get_rank(),
        lambda: dist.get_world_size(),
        lambda: dist.barrier(),
        lambda: dist.all_reduce(gp.ones(2)),
        lambda: dist.broadcast(gp.ones(2), 0),
        lambda: dist.destroy_process_group(),
    ],
)
def test_collectives_before_init_process_group_say_to_call_it(call) -> None:
    with pytest.raises(RuntimeError, match="the process group is not initialised; call .*init_process_group"):
        call()


def test_distributed_data_parallel_before_init_process_group_says_to_call_it() -> None:
    with pytest.raises(RuntimeError, match="DistributedDataParallel needs the process group"):
        gp.nn.parallel.DistributedDataParallel(gp.nn.Linear(2, 2))


def test_an_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown backend 'gloo'; gpubp has 'mpi' .* and 'nccl'"):
        dist.init_process_group("gloo")
    assert not dist.is_initialized()


@pytest.mark.parametrize("timeout", [0, -1, "10", datetime.timedelta(0)])
def test_a_timeout_must_be_a_positive_number_of_seconds(timeout: object) -> None:
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
        dist.init_process_group(timeout=timeout)


def test_nccl_without_a_gpu_says_why_and_leaves_no_group() -> None:
    if dist.is_nccl_available():
        pytest.skip("this machine has a GPU with NCCL")
    with pytest.raises(RuntimeError, match="init_process_group: the nccl backend needs a CUDA GPU"):
        dist.init_process_group("nccl")
    assert not dist.is_initialized()


def test_torchrun_beyond_one_process_asks_for_an_mpi_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="torchrun started 2 processes, but .* launch them with mpirun -n 2"):
        dist.init_process_group()
    assert not dist.is_initialized()


def test_one_process_is_a_group_of_one_that_needs_no_mpi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # as if it were not installed
    hook = sys.excepthook
    dist.init_process_group("mpi", timeout=datetime.timedelta(seconds=5))
    assert sys.excepthook is hook  # one process: an exception ends no one else
    assert dist.is_initialized() and (dist.get_rank(), dist.get_world_size(), dist.get_backend()) == (0, 1, "mpi")
    t = gp.tensor([1.5, -2.0])
    for op in ("sum", "avg", "max", "min", dist.ReduceOp.SUM, "AVG"):
        dist.all_reduce(t, op)
        assert t.tolist() == [1.5, -2.0]
    dist.broadcast(t, src=0)
    dist.barrier()
    gathered: list = [None]
    dist.all_gather_object(gathered, "mine")
    assert gathered == ["mine"]
    with pytest.raises(RuntimeError, match="already initialised"):
        dist.init_process_group()
    dist.destroy_process_group()
    assert not dist.is_initialized()


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda t: dist.all_reduce(t, "product"), ValueError, "unknown op 'product'; expected one of 'sum', 'avg'"),
        (lambda t: dist.all_reduce(t.numpy()), TypeError, "all_reduce: expected a gp.Tensor, got ndarray"),
        (lambda t: dist.all_reduce(t > 0), TypeError, "MPI cannot reduce bool tensors"),
        (lambda t: dist.all_reduce(t.long(), "avg"), TypeError, "op 'avg' needs a floating-point tensor, got int64"),
        (lambda t: dist.broadcast(t, 1), ValueError, "src must be a rank in \\[0, 1\\), got 1"),
        (lambda t: dist.all_gather_object([], 1), ValueError, "object_list must be a list of 1 entries"),
    ],
)
def test_collective_arguments_are_checked(call, error: type, message: str) -> None:
    dist.init_process_group()
    with pytest.raises(error, match=message):
        call(gp.ones(3))


class _FakeCudaBackend(NumpyBackend):
    """NumPy arrays that claim to live on a GPU: the device checks run without one."""

    device = "cuda:0"


def test_a_cuda_tensor_in_an_mpi_group_names_both_devices_and_the_backend_to_use() -> None:
    dist.init_process_group("mpi")
    on_gpu = _wrap(np.ones(3, dtype=np.float32), _FakeCudaBackend())
    with pytest.raises(ValueError, match="all_reduce: a tensor on cuda:0, but the process group's backend is 'mpi'"):
        dist.all_reduce(on_gpu)


def test_a_module_on_two_devices_is_refused() -> None:
    dist.init_process_group("mpi")
    model = gp.nn.Sequential(gp.nn.Linear(2, 3), gp.nn.Linear(3, 1))
    model[1].weight._backend = _FakeCudaBackend()
    with pytest.raises(ValueError, match="parameters are on cpu and cuda:0; they must all be on one device"):
        gp.nn.parallel.DistributedDataParallel(model)
