"""The command line: a tiny run end to end, eval, resume, Ctrl-C, and one-line errors."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gpubp.checkpoint import load_checkpoint
from gpubp.cli import main
from gpubp.viz import unavailable_reason

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


# -- issue 11: the command line as a new user found it ----------------------------------------------------------------

ONE_EPOCH = ["--hidden", "32", "--epochs", "1", "--batch-size", "32", "--device", "cpu", "--no-progress"]


def _run_python(*args: str, **kwargs: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "gpubp", *args], env=env, **kwargs)  # type: ignore[call-overload]


def test_a_model_too_large_for_memory_is_one_line_before_allocating(
    tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.perf_counter()
    status = _train(tmp_path, mnist_like_dir, "--hidden", "1000000000")
    line = _one_line_error(capsys)
    assert status == 2
    assert "training the MLP 100-1000000000-10 (111 G parameters) needs about" in line
    assert "TB of host memory, with" in line and "available; choose smaller --hidden sizes" in line
    assert time.perf_counter() - started < 10  # nothing was allocated
    assert not (tmp_path / "run").exists()


def test_resume_with_a_changed_lr_names_the_rate_the_run_used(
    tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "run")
    assert main(["train", "--dataset", "mnist", "--data", str(mnist_like_dir), "--out", out, *ONE_EPOCH]) == 0
    capsys.readouterr()
    assert main(["train", "--out", out, "--resume", "--lr", "0.5"]) == 2
    assert "--lr 0.5 differs from the resumed run's 0.001;" in _one_line_error(capsys)  # Adam's default
    assert main(["train", "--out", out, "--resume", "--lr", "0.001"]) == 0  # the same rate, said explicitly
    assert "already trained 1 epoch;" in capsys.readouterr().out


def test_resume_message_and_code_agree_on_what_may_change(
    tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dataclasses import fields

    from gpubp.cli import RESUMABLE, RUN_OPTIONS, build_parser
    from gpubp.training import TrainConfig

    train = build_parser()._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
    options = {a.dest for a in train._actions if a.dest != "help"}
    settings = {f.name for f in fields(TrainConfig)}
    assert options == settings | set(RUN_OPTIONS) | {"out", "resume"}
    assert set(RESUMABLE) < settings

    out = str(tmp_path / "run")
    assert _train(tmp_path, mnist_like_dir) == 0
    capsys.readouterr()
    assert main(["train", "--out", out, "--resume", "--seed", "3"]) == 2
    assert _one_line_error(capsys).endswith(
        "--seed 3 differs from the resumed run's 0; a resumed run keeps its settings: only --epochs, --device, "
        "--data and --precision may change (and the run options --threads, --no-jit and --no-progress)"
    )
    # Every option the message names may change.
    resumed = ["train", "--out", out, "--resume", "--epochs", "3", "--device", "cpu", "--precision", "fp32"]
    resumed += ["--data", str(mnist_like_dir), "--threads", "1", "--no-jit", "--no-progress"]
    assert main(resumed) == 0
    assert load_checkpoint(Path(out) / "checkpoint.npz").meta["epoch"] == 3


def test_a_file_that_is_not_a_checkpoint_is_named_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "random.npz").write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    np.save(tmp_path / "array.npy", np.zeros(3))
    for name in ("random.npz", "notes.txt", "array.npy"):
        assert main(["eval", str(tmp_path / name)]) == 1
        line = _one_line_error(capsys)
        assert line.endswith(f"{name}: not a gpubp checkpoint (those are .npz archives, and this file is not one)")
        assert "pickle" not in line and "unsafe" not in line


def test_eval_into_a_closed_pipe_exits_quietly(tmp_path: Path, mnist_like_dir: Path) -> None:
    """`gpubp eval RUN | head -1`: the reader is gone before the output is written."""
    assert _train(tmp_path, mnist_like_dir, "--no-progress") == 0
    proc = _run_python("eval", str(tmp_path / "run"), "--device", "cpu", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # type: ignore[union-attr]
    _, stderr = proc.communicate(timeout=60)
    assert stderr == b""
    assert proc.returncode == 141  # 128 + SIGPIPE, as `seq 1000000 | head -1` gives


def test_eval_piped_into_head_prints_the_first_line(tmp_path: Path, mnist_like_dir: Path) -> None:
    assert _train(tmp_path, mnist_like_dir, "--no-progress") == 0
    proc = _run_python("eval", str(tmp_path / "run"), "--device", "cpu", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()  # type: ignore[union-attr]
    proc.stdout.close()  # type: ignore[union-attr]
    _, stderr = proc.communicate(timeout=60)
    assert first.startswith(b"mnist test split") and stderr == b""
    assert proc.returncode in (0, 141)  # 0 when everything was written before the pipe closed


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("file", "--out {tmp}/file is a file, not a folder"),
        ("file/run", "--out {tmp}/file/run: {tmp}/file is a file, not a folder"),
        ("/proc/self/run", "--out /proc/self/run: cannot write in /proc/self ("),
    ],
)
def test_an_unusable_out_is_one_line_before_anything_is_written(
    tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str], out: str, message: str
) -> None:
    (tmp_path / "file").write_text("")
    target = out if out.startswith("/") else str(tmp_path / out)
    status = main(["train", "--dataset", "mnist", "--data", str(mnist_like_dir), "--out", target, *ONE_EPOCH])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.strip() == f"gpubp train: error: {message.format(tmp=tmp_path)}" or (
        message.endswith("(") and captured.err.startswith(f"gpubp train: error: {message}")
    )
    assert "writing" not in captured.out and captured.out == ""


def test_data_naming_a_file_says_it_is_not_a_folder(mnist_like_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gz = mnist_like_dir / "train-images-idx3-ubyte.gz"
    assert main(["train", "--dataset", "mnist", "--data", str(gz), *ONE_EPOCH]) == 1
    line = _one_line_error(capsys)
    assert f"mnist: {gz} is a file, not a folder; pass --data DIR naming the folder that holds" in line
    assert "does not exist" not in line


def test_eval_reads_only_the_test_split(
    tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _train(tmp_path, mnist_like_dir, "--no-progress") == 0
    capsys.readouterr()
    test_only = tmp_path / "test-only"
    test_only.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (test_only / name).write_bytes((mnist_like_dir / name).read_bytes())
    assert main(["eval", str(tmp_path / "run"), "--data", str(test_only), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"mnist test split ({test_only}): 100 samples" in out and "test accuracy" in out


def test_hidden_none_is_asked_for_by_name_and_empty_is_rejected(
    tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _train(tmp_path, mnist_like_dir, "--hidden", "") == 2
    assert "argument --hidden: give layer sizes like 256,128, or none for no hidden layer" in _one_line_error(capsys)
    assert main(["train", "--hidden", " "]) == 2
    assert "or none for no hidden layer" in _one_line_error(capsys)
    assert _train(tmp_path, mnist_like_dir, "--hidden", "none", "--no-progress") == 0
    assert "MLP 100-10 sigmoid, 1,010 parameters" in capsys.readouterr().out


def test_mnist_without_data_names_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--dataset", "mnist", *ONE_EPOCH]) == 1
    assert "MNIST has no default folder: pass --data DIR naming a folder" in _one_line_error(capsys)


def test_counts_of_one_are_singular(tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "run")
    assert main(["train", "--dataset", "mnist", "--data", str(mnist_like_dir), "--out", out, *ONE_EPOCH]) == 0
    printed = capsys.readouterr().out
    assert "batch 32, 1 epoch, seed 0" in printed and "after 1 epoch (" in printed
    assert main(["train", "--out", out, "--resume"]) == 0
    assert "has already trained 1 epoch; pass a larger --epochs" in capsys.readouterr().out
    assert "1 epochs" not in printed


def test_cupy_hint_gives_the_install_command_of_a_checkout_and_of_a_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import gpubp as gp

    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` fail
    reason = gp.cuda.unavailable_reason()
    assert reason is not None
    assert "pip install -e \".[cuda]\" in a gpubp checkout, pip install 'gpubp[cuda]' for an installed gpubp" in reason


def test_extending_a_cosine_run_says_the_rate_jumps_and_the_metrics_show_it(
    tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gpubp.training import TrainConfig, learning_rate

    out = tmp_path / "run"
    assert _train(tmp_path, mnist_like_dir, "--no-progress") == 0  # 2 epochs of 10 batches, cosine from 0.01
    assert load_checkpoint(out / "checkpoint.npz").meta["schedule"] == {
        "name": "cosine",
        "epochs": 2,
        "total_steps": 20,
    }
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--epochs", "3", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    two, three = TrainConfig(lr=0.01, epochs=2), TrainConfig(lr=0.01, epochs=3)
    last, following = learning_rate(two, 19, 20), learning_rate(three, 20, 30)
    assert (
        f"note: the cosine schedule was planned over 2 epochs and now anneals over 3, so the learning rate goes "
        f"from {last:.3g} at the last step to {following:.3g} at the next"
    ) in printed
    assert load_checkpoint(out / "checkpoint.npz").meta["schedule"]["total_steps"] == 30

    rows = json.loads((out / "metrics.json").read_text())["epochs"]
    assert [(r["lr_first"], r["lr_last"]) for r in rows] == [
        (0.01, learning_rate(two, 9, 20)),
        (learning_rate(two, 10, 20), last),
        (following, learning_rate(three, 29, 30)),
    ]
    assert rows[2]["lr_first"] > 10 * rows[1]["lr_last"]  # the jump, visible in the metrics
    with open(out / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    assert float(table[2]["lr_first"]) == following and "lr" not in table[2]
    # A constant schedule has nothing to announce.
    constant = tmp_path / "constant"
    args = ["--dataset", "mnist", "--data", str(mnist_like_dir), *ONE_EPOCH, "--schedule", "constant"]
    assert main(["train", "--out", str(constant), *args]) == 0
    assert main(["train", "--out", str(constant), "--resume", "--epochs", "2"]) == 0
    assert "note: the cosine schedule" not in capsys.readouterr().out


def _with_nan_pixel(real_load: object, sample: int) -> object:
    def load(name: str, folder: object, *args: object, **kwargs: object) -> object:
        data = real_load(name, folder, *args, **kwargs)  # type: ignore[operator]
        data.x_train[sample, 3] = np.nan
        return data

    return load


def test_a_nan_in_the_data_stops_training_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import gpubp.cli
    from gpubp.data import BatchLoader

    out = tmp_path / "run"
    args = ["train", "--dataset", "mnist", "--data", str(mnist_like_dir), "--out", str(out), *ONE_EPOCH]
    assert main(args) == 0
    good = (out / "checkpoint.npz").read_bytes()
    metrics = (out / "metrics.csv").read_text()
    capsys.readouterr()

    # MNIST-format pixels are bytes and cannot be NaN: the data set gets one after loading.
    sample = 123
    monkeypatch.setattr(gpubp.cli, "load_dataset", _with_nan_pixel(gpubp.cli.load_dataset, sample))
    assert main(["train", "--out", str(out), "--resume", "--epochs", "3"]) == 1
    order = BatchLoader(np.zeros((300, 1)), np.zeros(300), 32, shuffle=True, seed=0).order(1)
    batch = int(np.flatnonzero(order == sample)[0]) // 32 + 1
    assert _one_line_error(capsys) == (
        f"gpubp train: error: the training loss became NaN or infinite in epoch 2 at batch {batch} of 10, so "
        f"training stopped (check the data for NaN or inf, or lower --lr); {out}/checkpoint.npz (saved after "
        "epoch 1) is kept"
    )
    assert (out / "checkpoint.npz").read_bytes() == good
    assert (out / "metrics.csv").read_text() == metrics


def test_a_nan_in_the_first_epoch_saves_nothing(
    tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import gpubp.cli

    monkeypatch.setattr(gpubp.cli, "load_dataset", _with_nan_pixel(gpubp.cli.load_dataset, 0))
    out = tmp_path / "run"
    assert main(["train", "--dataset", "mnist", "--data", str(mnist_like_dir), "--out", str(out), *ONE_EPOCH]) == 1
    # The standardisation fitted on the data is NaN, so the very first batch is.
    assert _one_line_error(capsys).endswith(
        "in epoch 1 at batch 1 of 10, so training stopped (check the data for NaN or inf, or lower --lr); "
        "no checkpoint was saved"
    )
    assert not (out / "checkpoint.npz").exists()


def test_memory_error_the_estimate_missed_is_one_line(
    tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import gpubp.cli

    def out_of_memory(*args: object) -> None:
        raise MemoryError("Unable to allocate 373. GiB for an array with shape (1000000000, 100)")

    monkeypatch.setattr(gpubp.cli.Run, "create", out_of_memory)
    assert _train(tmp_path, mnist_like_dir) == 2
    assert _one_line_error(capsys) == (
        "gpubp train: error: out of memory: Unable to allocate 373. GiB for an array with shape (1000000000, 100); "
        "choose smaller --hidden sizes"
    )


def test_a_diverging_run_stops_with_one_line_and_no_warnings(
    tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = _train(tmp_path, mnist_like_dir, "--activation", "relu", "--optimizer", "sgd", "--lr", "1e10")
    line = _one_line_error(capsys)  # no RuntimeWarning lines from NumPy before it
    assert status == 1
    assert "the training loss became NaN or infinite in epoch 1 at batch" in line and "lower --lr" in line
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


# -- issue 14: gpubp graph draws one training step ------------------------------------------------------------------

RENDER_SKIP = unavailable_reason()


def _graph(mnist_like_dir: Path, *extra: str) -> int:
    return main(["graph", "--dataset", "mnist", "--data", str(mnist_like_dir), "--hidden", "8", *extra])


def test_graph_writes_the_dot_text_of_one_step_and_trains_nothing(
    tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _graph(mnist_like_dir, "--out", "step.dot", "--values") == 0
    out = capsys.readouterr().out
    assert out == "wrote step.dot: one training step (forward, loss, backward) of the MLP 100-8-10 on 4 samples\n"
    text = (tmp_path / "step.dot").read_text()
    assert "0: Linear 100→8 + sigmoid → Dropout p=0.2 backward" in text
    assert "(4, 100) float32 cpu" in text  # a small batch by default
    assert "δᵀ · a" in text and "(softmax − onehot)/N" in text
    # No optimizer step: the biases are still their initial zeros, and the gradient was computed.
    assert 'label="0.bias\\n(8,) float32 cpu\\n= [0, 0, 0, 0, 0, 0, 0, 0]"' in text
    assert re.search(r'label="∂l/∂0\.bias\\n= \[[^"]*[1-9]', text)
    assert [p.name for p in tmp_path.iterdir()] == ["step.dot"]  # no run folder, no checkpoint


def test_graph_of_a_saved_run_draws_its_weights(
    tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _train(tmp_path, mnist_like_dir) == 0
    run = tmp_path / "run"
    assert main(["graph", str(run), "--out", str(tmp_path / "g.dot"), "--values", "--batch-size", "2"]) == 0
    text = (tmp_path / "g.dot").read_text()
    weight = load_checkpoint(run / "checkpoint.npz").model_state()["0.weight"]
    summary = f"mean {weight.mean():.3g}, min {weight.min():.3g}, max {weight.max():.3g}"
    assert f'label="0.weight\\n(32, 100) float32 cpu\\n= {summary}"' in text
    assert "(2, 100) float32 cpu" in text
    capsys.readouterr()
    assert main(["graph", str(run), "--hidden", "8", "--dropout", "0"]) == 2
    assert _one_line_error(capsys) == (
        "gpubp graph: error: --hidden and --dropout come from the run's checkpoint; "
        "give RUN_DIR or the model options, not both"
    )
    assert main(["graph", str(tmp_path / "nothing")]) == 1
    assert "no such checkpoint file" in _one_line_error(capsys)


@pytest.mark.skipif(RENDER_SKIP is not None, reason=f"cannot render: {RENDER_SKIP}")
def test_graph_draws_an_svg_of_a_small_net_neuron_by_neuron(tmp_path: Path) -> None:
    out = tmp_path / "neurons.svg"
    args = ["--dataset", "spirals", "--hidden", "4,4", "--detail", "neurons", "--values", "--out", str(out)]
    assert main(["graph", *args]) == 0
    svg = out.read_text()
    assert "<svg" in svg and "σ′(z1)" in svg and "∂l/∂z11" in svg  # 4 + 4 + 3 units


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--out", "g.jpeg"], 2, "--out g.jpeg: the suffix names the format: .svg, .png, .pdf, or .dot"),
        (["--out", "g.dot", "--batch-size", "0"], 2, "--batch-size must be a positive integer, got 0"),
        (["--out", "g.dot", "--detail", "neurons"], 2, "--detail neurons: detail='neurons' draws a chain"),
        (["--out", "no/such/folder/g.dot"], 2, "--out no/such/folder/g.dot: no/such/folder is not a folder"),
        (["--out", "g.dot", "--detail", "units"], 2, "argument --detail: invalid choice: 'units'"),
    ],
)
def test_graph_option_errors_are_one_line(
    args: list[str],
    status: int,
    message: str,
    mnist_like_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _graph(mnist_like_dir, *args) == status
    line = _one_line_error(capsys)
    assert line.startswith("gpubp") and message in line


def test_graph_without_graphviz_says_what_to_install_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import gpubp.cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(gpubp.cli, "unavailable_reason", lambda: "Graphviz's dot program was not found on PATH")
    # The data folder does not exist: the missing program is reported first, before any work.
    assert main(["graph", "--data", str(tmp_path / "none"), "--dataset", "mnist"]) == 1
    assert _one_line_error(capsys) == (
        "gpubp graph: error: cannot draw graph.svg: Graphviz's dot program was not found on PATH; "
        "or write the DOT text with --out graph.dot"
    )


# -- several processes (the mpirun runs themselves: tests/distributed/test_mpi.py) ----------------------
@pytest.mark.parametrize("rank", ["0", "1"])
def test_a_launcher_gpubp_cannot_join_is_one_line_from_rank_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], rank: str
) -> None:
    monkeypatch.setenv("RANK", rank)  # torchrun's variables: two processes, but no MPI to connect them
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = ["train", "--dataset", "spirals", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "run")]
    assert main(args) == 1
    captured = capsys.readouterr()
    if rank == "0":
        assert captured.err.strip().splitlines() == [
            "gpubp train: error: init_process_group: torchrun started 2 processes, but gpubp's processes meet "
            "through MPI, which torchrun does not start; launch them with mpirun -n 2 (or srun)"
        ]
    else:
        assert captured.err == ""
    assert captured.out == "" and not (tmp_path / "run").exists()


def test_a_malformed_launcher_environment_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "0")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "two")
    assert main(["train", "--dataset", "spirals", "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip() == (
        "gpubp train: error: the launcher's environment: Open MPI set OMPI_COMM_WORLD_SIZE='two', "
        "which is not an integer"
    )
