"""The command line: a tiny run end to end, eval, resume, Ctrl-C, and one-line errors."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gpubp.checkpoint import load_checkpoint
from gpubp.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--hidden", "32", "--epochs", "2", "--batch-size", "32", "--lr", "0.01", "--device", "cpu"]


def _train(tmp_path: Path, data: Path, *extra: str) -> int:
    return main(["train", "--dataset", "mnist", "--data", str(data), "--out", str(tmp_path / "run"), *TINY, *extra])


def test_train_writes_checkpoint_and_metrics_then_eval_reports(
    tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _train(tmp_path, mnist_like_dir) == 0
    out = capsys.readouterr().out
    assert "mnist: 300 train and 100 test samples, 100 features, 10 classes" in out
    assert "MLP 100-32-10 sigmoid" in out
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and "train loss" in epoch_lines[0] and "test acc" in epoch_lines[0]
    assert "samples/s" in epoch_lines[0]

    run = tmp_path / "run"
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["config"]["hidden"] == [32] and len(metrics["epochs"]) == 2
    final = metrics["epochs"][-1]["test_acc"]
    assert final > 0.5  # the classes are easy to tell apart
    assert load_checkpoint(run / "checkpoint.npz").meta["epoch"] == 2

    assert main(["eval", str(run), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"test accuracy {final:.4f}" in out
    assert "confusion matrix (rows: true class, columns: predicted class)" in out
    table = out.splitlines()[-10:]
    assert [line.split()[0] for line in table] == [str(i) for i in range(10)]
    assert sum(int(v) for line in table for v in line.split()[2:-1]) == 100


def test_same_seed_gives_the_same_metrics(tmp_path: Path, mnist_like_dir: Path) -> None:
    for name in ("a", "b"):
        args = ["train", "--dataset", "mnist", "--data", str(mnist_like_dir), "--out", str(tmp_path / name), *TINY]
        assert main([*args, "--no-progress"]) == 0

    def metrics(name: str) -> list[dict]:
        rows = json.loads((tmp_path / name / "metrics.json").read_text())["epochs"]
        return [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")} for r in rows]

    assert metrics("a") == metrics("b")


def test_resume_continues_a_run_with_more_epochs(
    tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _train(tmp_path, mnist_like_dir) == 0
    out = str(tmp_path / "run")
    assert main(["train", "--out", out, "--resume"]) == 0
    assert "already trained 2 epochs" in capsys.readouterr().out
    assert main(["train", "--out", out, "--resume", "--epochs", "3"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert load_checkpoint(Path(out) / "checkpoint.npz").meta["epoch"] == 3


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "-0.1"], "--lr must be a positive number, got -0.1"),
        (["--lr", "abc"], "argument --lr: invalid float value: 'abc'"),
        (["--hidden", "0"], "layer sizes must be positive, got 0"),
        (["--hidden", "256,x"], "layer sizes must be integers like 256,128"),
        (["--activation", "swish"], "argument --activation: invalid choice: 'swish'"),
        (["--optimizer", "rmsprop"], "argument --optimizer: invalid choice"),
        (["--epochs", "0"], "--epochs must be a positive integer, got 0"),
        (["--batch-size", "-4"], "--batch-size must be a positive integer, got -4"),
        (["--dropout", "1.5"], "--dropout must be in [0, 1), got 1.5"),
        (["--weight-decay", "-1"], "--weight-decay must be zero or positive"),
        (["--seed", "-1"], "--seed must be a non-negative integer"),
        (["--device", "tpu"], "--device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
        (["--data", "/no/such/folder"], "data folder /no/such/folder does not exist"),
        (["--resume"], "--resume needs --out DIR"),
        (["--dataset", "spirals", "--data", "/tmp"], "the spirals data set is generated"),
        (["--threads", "0"], "--threads must be a positive integer, got 0"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_options_give_one_line_and_a_non_zero_exit(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["train", *args])
    line = _one_line_error(capsys)
    assert status != 0
    assert line.startswith("gpubp") and message in line


def test_missing_data_says_how_to_get_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run")]) == 1
    line = _one_line_error(capsys)
    assert "apt-get install dataset-fashion-mnist" in line and "--data DIR" in line
    assert not (tmp_path / "run").exists()


def test_unusable_gpu_is_a_one_line_error(capsys: pytest.CaptureFixture[str], mnist_like_dir: Path) -> None:
    import gpubp as gp

    if gp.cuda.is_available():
        pytest.skip("a GPU is available here")
    assert main(["train", "--dataset", "mnist", "--data", str(mnist_like_dir), "--device", "cuda"]) == 2
    assert "--device cuda: cannot use device 'cuda:0'" in _one_line_error(capsys)


def test_existing_run_is_not_overwritten(
    tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _train(tmp_path, mnist_like_dir) == 0
    before = (tmp_path / "run" / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    assert _train(tmp_path, mnist_like_dir) == 2
    assert "already holds a run; continue it with --resume" in _one_line_error(capsys)
    assert (tmp_path / "run" / "checkpoint.npz").read_bytes() == before


def test_resume_refuses_changed_settings(
    tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _train(tmp_path, mnist_like_dir) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(tmp_path / "run"), "--resume", "--lr", "0.5"]) == 2
    assert "--lr 0.5 differs from the resumed run's 0.01" in _one_line_error(capsys)


def test_eval_of_a_damaged_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "checkpoint.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["eval", str(bad)]) == 1
    assert "not a readable checkpoint" in _one_line_error(capsys)
    assert main(["eval", str(tmp_path / "nothing.npz")]) == 1
    assert "no such checkpoint file" in _one_line_error(capsys)


def test_eval_rejects_an_unknown_device(
    tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _train(tmp_path, mnist_like_dir) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--device", "tpu"]) == 2
    assert "--device tpu: unknown device 'tpu'" in _one_line_error(capsys)


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "choose a command" in _one_line_error(capsys)


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path: Path) -> None:
    """SIGINT to a real ``python -m gpubp`` process: it saves, exits 130, and --resume finishes the run."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "gpubp", "train", "--dataset", "spirals", "--hidden", "64,64"]
    command += ["--batch-size", "8", "--epochs", "500", "--device", "cpu", "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not (out / "metrics.csv").exists():  # the first epoch is done
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "checkpoint saved to" in stderr and "--resume" in stderr and "Traceback" not in stderr
    meta = load_checkpoint(out / "checkpoint.npz").meta
    assert meta["epoch"] >= 1 and meta["epoch"] < 500
    weights_before = load_checkpoint(out / "checkpoint.npz").model_state()
    assert all(np.isfinite(w).all() for w in weights_before.values())
    assert main(["train", "--out", str(out), "--resume", "--epochs", str(meta["epoch"] + 1), "--no-progress"]) == 0


def test_curves_png_when_matplotlib_is_installed(tmp_path: Path, mnist_like_dir: Path) -> None:
    pytest.importorskip("matplotlib")
    assert _train(tmp_path, mnist_like_dir, "--no-progress") == 0
    assert (tmp_path / "run" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_png_and_no_error_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gpubp.metrics import write_metrics

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    row = {"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.0, "test_acc": 0.5}
    written = write_metrics(tmp_path, [row], {"seed": 0})
    assert [p.name for p in written] == ["metrics.csv", "metrics.json"]
    assert not (tmp_path / "curves.png").exists()
