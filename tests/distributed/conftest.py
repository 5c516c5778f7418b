"""The ``mpi`` fixture: tests that launch several processes skip, with the reason, where
mpirun or mpi4py is missing or cannot start two processes."""

from __future__ import annotations

import pytest

from tests.distributed import mpi as mpi_jobs


@pytest.fixture(scope="session")
def mpi() -> None:
    reason = mpi_jobs.unavailable_reason()
    if reason is not None:
        pytest.skip(f"no MPI: {reason}")


@pytest.fixture
def no_process_group():
    """Tests in this process: none starts with a process group, and none leaves one behind."""
    import gpubp as gp

    assert not gp.distributed.is_initialized()
    yield
    if gp.distributed.is_initialized():
        gp.distributed.destroy_process_group()
