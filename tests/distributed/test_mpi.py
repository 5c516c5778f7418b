"""gp.distributed and DistributedDataParallel across real processes: ``mpirun -n N``
jobs (tests/distributed/workers/), each bounded by the launcher's timeout. They skip,
with the reason, where mpirun or mpi4py is missing (see tests/distributed/mpi.py)."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gpubp.checkpoint import load_checkpoint
from gpubp.cli import main
from tests.distributed import mpi as jobs
from tests.distributed.workers import ddp_steps

pytestmark = [pytest.mark.mpi, pytest.mark.usefixtures("mpi")]

# The largest weight difference between N ranks × batch B/N and one process × batch B,
# measured on this machine's OpenBLAS (float32): 6e-8 after 10 SGD-momentum or Adam steps
# of the ddp_steps MLP, 3e-7 after 50 (2 and 4 ranks alike). The all-reduce itself adds
# nothing with 2 ranks (a + b is exact in either order; dividing by 2 is exact): the
# difference is the sum over the batch, which one GEMM takes over 128 rows and the
# ranks over 64 each. 1e-6 leaves room for another BLAS.
WEIGHT_ATOL = 1e-6
SPIRALS = ["--dataset", "spirals", "--hidden", "32,32", "--activation", "relu", "--dropout", "0", "--device", "cpu"]
SPIRALS += ["--lr", "0.05", "--optimizer", "momentum", "--no-progress"]


def _gpubp(*args: str) -> list[str]:
    return [sys.executable, "-m", "gpubp", *args]


def _weights(run: Path) -> dict[str, np.ndarray]:
    return load_checkpoint(run / "checkpoint.npz").arrays


def _assert_same_run(a: Path, b: Path, atol: float = WEIGHT_ATOL) -> None:
    """The same weights and optimizer state (within ``atol``), and the same metrics to 4 digits."""
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        np.testing.assert_allclose(wb[name], wa[name], rtol=0, atol=atol, err_msg=name)
    rows = [json.loads((run / "metrics.json").read_text())["epochs"] for run in (a, b)]
    keys = ("train_loss", "train_acc", "test_loss", "test_acc", "lr_first", "lr_last")
    assert [[round(r[k], 4) for k in keys] for r in rows[0]] == [[round(r[k], 4) for k in keys] for r in rows[1]]


def test_collectives_on_two_and_three_ranks() -> None:
    for ranks in (2, 3):
        result = jobs.run(ranks, sys.executable, jobs.worker("collectives.py"))
        assert result.returncode == 0, result.stderr
        assert f"collectives ok on {ranks} ranks" in result.stdout


@pytest.mark.parametrize("ranks", [2, 4])
def test_ranks_with_a_share_of_the_batch_train_the_weights_of_one_process_with_all_of_it(
    tmp_path: Path, ranks: int
) -> None:
    """N ranks × batch 128/N (DistributedDataParallel, sharded BatchLoader) against one process
    × batch 128, after 10 steps of SGD with momentum and weight decay, and of Adam."""
    out = tmp_path / "weights.npz"
    result = jobs.run(ranks, sys.executable, jobs.worker("ddp_steps.py"), str(out), "10", "128")
    assert result.returncode == 0, result.stderr
    got = np.load(out)
    for optimizer in ddp_steps.OPTIMIZERS:
        assert got[f"{optimizer}/same_on_every_rank"], f"{optimizer}: the ranks' weights differ"
        reference = ddp_steps.train(optimizer, steps=10, batch=128)
        for name, weight in reference.items():
            np.testing.assert_allclose(got[f"{optimizer}/{name}"], weight, rtol=0, atol=WEIGHT_ATOL)


def test_mpirun_train_matches_one_process_and_one_rank_continues_it(tmp_path: Path) -> None:
    """``mpirun -n 2 gpubp train`` with the global batch of a single-process run gives its
    weights and metrics; rank 0 alone prints. A single process resumes the two-rank run and
    ends where an uninterrupted single-process run ends."""
    single, double = tmp_path / "single", tmp_path / "double"
    fixed = [*SPIRALS, "--batch-size", "64", "--schedule", "constant"]
    assert main(["train", *fixed, "--epochs", "4", "--out", str(single)]) == 0
    result = jobs.run(2, *_gpubp("train", *fixed, "--epochs", "2", "--out", str(double)))
    assert result.returncode == 0, result.stderr
    assert "batch 64 (32 on each of 2 processes)" in result.stdout
    assert result.stdout.count("epoch 1/2") == 1 and result.stdout.count("done:") == 1
    assert "Traceback" not in result.stderr
    meta = load_checkpoint(double / "checkpoint.npz").meta
    assert meta["epoch"] == 2 and len(meta["rng_ranks"]) == 2

    assert main(["train", "--out", str(double), "--resume", "--epochs", "4", "--no-progress"]) == 0
    _assert_same_run(single, double)


def _interrupted(ranks: int, args: list[str], run: Path) -> tuple[dict, int, str]:
    """``gpubp train args`` under mpirun, SIGINT once its first epoch is done: the saved
    checkpoint's meta, the return code and stderr."""
    proc = jobs.popen(ranks, *_gpubp("train", *args))
    try:
        deadline = time.monotonic() + jobs.JOB_TIMEOUT
        while not (run / "metrics.csv").exists():  # the first epoch is done
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=jobs.JOB_TIMEOUT)
    finally:
        jobs.stop(proc)
    return load_checkpoint(run / "checkpoint.npz").meta, proc.returncode, stderr


def test_ctrl_c_saves_one_checkpoint_on_rank_0_that_another_number_of_ranks_resumes(tmp_path: Path) -> None:
    """SIGINT to mpirun: Open MPI sends the ranks SIGCONT, then SIGTERM a second later, then
    SIGKILL a second after that (``odls_base_sigkill_timeout``). On SIGTERM every rank stops
    after the same batch and rank 0 saves; one process resumes the run mid-epoch and ends
    with the weights of an uninterrupted single-process run."""
    reference = tmp_path / "reference"
    # 15,000 steps of batch 2, long enough to be interrupted. Rounding differences grow with
    # the steps, and at a high rate chaotically (lr 0.05 with ReLU: 0.3 after 1,000 steps, as
    # between one process with 1 and with 2 BLAS threads); with sigmoid at lr 0.01 they
    # stayed at 1.1e-6 (measured).
    fixed = [*SPIRALS, "--activation", "sigmoid", "--lr", "0.01", "--hidden", "16", "--batch-size", "2"]
    fixed += ["--epochs", "10", "--schedule", "constant"]
    # A SIGTERM that lands during an epoch's evaluation stops at the epoch's end (batch 0):
    # correct, but not the mid-epoch stop this test is about, so the run is interrupted again.
    for attempt in range(3):
        run = tmp_path / f"run{attempt}"
        meta, returncode, stderr = _interrupted(2, [*fixed, "--out", str(run)], run)
        if meta["batch"] > 0:
            break
    assert meta["epoch"] < 10, "the run ended before the signal reached it: make it longer"
    assert returncode != 0
    assert stderr.count("checkpoint saved to") == 1 and "--resume" in stderr, stderr
    assert meta["batch"] > 0  # mid-epoch: the position is in global batches

    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 0
    assert main(["train", *fixed, "--out", str(reference)]) == 0
    _assert_same_run(reference, run, atol=1e-5)


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (
            ["--batch-size", "64"],
            2,
            "gpubp train: error: --batch-size 64 is the global batch and must divide among the 3 processes; "
            "use a multiple of 3, e.g. 63 or 66",
        ),
        (["--resume"], 1, "gpubp train: error: {out}/checkpoint.npz: no such checkpoint file"),
    ],
)
def test_a_failure_every_rank_meets_before_training_is_one_line_from_rank_0(
    tmp_path: Path, args: list[str], status: int, message: str
) -> None:
    out = tmp_path / "run"
    result = jobs.run(3, *_gpubp("train", *SPIRALS, *args, "--out", str(out)))
    assert result.returncode == status
    assert [line for line in result.stderr.splitlines() if "error" in line] == [message.format(out=out)]
    assert "MPI_ABORT" not in result.stderr  # every rank ended by itself
    assert not out.exists()


def test_a_rank_killed_mid_epoch_ends_the_job(tmp_path: Path) -> None:
    """Rank 1 kills itself (SIGKILL) at its 20th step; rank 0 must not wait for it."""
    started = time.monotonic()
    args = ["train", *SPIRALS, "--batch-size", "8", "--epochs", "50", "--out", str(tmp_path / "run")]
    result = jobs.run(2, sys.executable, jobs.worker("train_and_die.py"), *args, timeout=30)
    assert result.returncode != 0
    assert time.monotonic() - started < 30
    assert not (tmp_path / "run" / "checkpoint.npz").exists()  # it died in the first epoch


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("raise", "ValueError: rank 1 failed on purpose"),
        ("hang", "all_reduce has waited 2 s for the other ranks (timeout 2 s)"),
        ("shapes", "rank 1's module differs from rank 0's (0.weight is (9, 4) float32 on cpu, rank 0 has"),
        ("unused", "2 parameter(s) got no gradient in this backward pass (first.weight, first.bias)"),
    ],
)
def test_a_rank_that_fails_stops_every_rank_with_its_message(mode: str, message: str) -> None:
    started = time.monotonic()
    result = jobs.run(2, sys.executable, jobs.worker("faults.py"), mode, timeout=30)
    assert result.returncode != 0
    assert message in result.stderr
    assert "stopping every rank" in result.stderr
    assert time.monotonic() - started < 30


def test_the_launchers_timeout_ends_a_job_that_hangs() -> None:
    """The tests' own safety net: MPIEXEC_TIMEOUT makes mpirun kill a job that runs too long."""
    started = time.monotonic()
    result = jobs.run(2, sys.executable, "-c", "import time; time.sleep(60)", timeout=1)
    assert result.returncode != 0
    assert time.monotonic() - started < 15
