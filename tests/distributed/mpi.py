"""Running commands under mpirun from the tests, or the reason they cannot run here.

Open MPI refuses to run as root (CI runs as root) unless told twice, which
OMPI_ALLOW_RUN_AS_ROOT and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM do; it also refuses
more ranks than cores unless oversubscribing is allowed (the CI machine has 2
cores). MPIEXEC_TIMEOUT, which Open MPI's mpirun and MPICH's mpiexec both
read, kills a job that runs too long, so a hang fails the test instead of
stalling CI; the subprocess's own timeout is the backstop.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKERS = Path(__file__).resolve().parent / "workers"
MPIRUN = shutil.which("mpirun") or shutil.which("mpiexec")
JOB_TIMEOUT = 60  # seconds a job may run before the launcher kills it


def environment(**extra: str) -> dict[str, str]:
    """The environment of a launched job: gpubp importable from this checkout, one BLAS
    thread per rank (two ranks share the cores), and Open MPI's settings for CI."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OPENBLAS_NUM_THREADS"] = "1"
    env["MPIEXEC_TIMEOUT"] = str(JOB_TIMEOUT)
    env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
    if os.geteuid() == 0:
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    # A launcher's variables leaking in from the shell that runs the tests would confuse the job.
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    env.update(extra)
    return env


@functools.cache
def unavailable_reason() -> str | None:
    """None when ``mpirun -n 2`` starts two MPI processes that mpi4py connects, else why not."""
    if MPIRUN is None:
        return "no mpirun or mpiexec on PATH (apt-get install openmpi-bin libopenmpi-dev)"
    from gpubp.distributed import mpi

    reason = mpi.unavailable_reason()
    if reason is not None:
        return reason
    probe = "from mpi4py import MPI; assert MPI.COMM_WORLD.Get_size() == 2"
    try:
        result = run(2, sys.executable, "-c", probe, timeout=30)
    except subprocess.TimeoutExpired:
        return f"{MPIRUN} -n 2 did not start two processes within 30 s"
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        return f"{MPIRUN} -n 2 could not start two MPI processes (exit {result.returncode}): {last}"
    return None


def run(
    ranks: int, *command: str, timeout: int = JOB_TIMEOUT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs ``command`` as ``ranks`` MPI processes and waits for the job, which the launcher
    kills after ``timeout`` seconds; should the launcher itself hang, the job is stopped
    15 s later and subprocess.TimeoutExpired raised."""
    env = env if env is not None else environment(MPIEXEC_TIMEOUT=str(timeout))
    proc = popen(ranks, *command, env=env)
    try:
        stdout, stderr = proc.communicate(timeout=timeout + 15)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def popen(ranks: int, *command: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Starts ``command`` as ``ranks`` MPI processes (stdout and stderr piped, as text)."""
    assert MPIRUN is not None
    return subprocess.Popen(
        [MPIRUN, "-n", str(ranks), *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env if env is not None else environment(),
        cwd=ROOT,
    )


def stop(proc: subprocess.Popen[str]) -> None:
    """Ends a job that is still running: SIGTERM lets mpirun stop its ranks, SIGKILL follows."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.communicate()


def worker(name: str) -> str:
    """The path of a script in tests/distributed/workers/."""
    return str(WORKERS / name)
