"""``--precision`` (issue 12): fp32, tf32, bf16 and fp16 runs learn, save float32 master
weights (and fp16's loss-scaler state), resume in another precision, and fail clearly
where a precision cannot run."""

from __future__ import annotations

import json
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import gpubp as gp
from gpubp.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from gpubp.cli import main
from gpubp.data import make_spirals
from gpubp.data.datasets import load_dataset
from gpubp.training import (
    DEFAULT_GPU_PRECISION,
    PRECISIONS,
    ConfigError,
    Run,
    TrainConfig,
    TrainingInterrupted,
    precision_mode,
    resolve_precision,
)

TINY = ["--hidden", "32", "--batch-size", "32", "--lr", "0.01", "--device", "cpu", "--no-progress"]


def _train(out: Path, data: Path, *extra: str) -> int:
    return main(["train", "--dataset", "mnist", "--data", str(data), "--out", str(out), *TINY, *extra])


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


def _numbers(state: dict) -> dict:
    """A GradScaler state with its device values read (they may be tensors or NumPy scalars)."""
    return {k: v.item() if hasattr(v, "item") else v for k, v in state.items()}


def _assert_float32_master_weights(path: Path) -> None:
    """Every weight and optimizer buffer in the checkpoint is float32: nothing 16-bit is saved."""
    arrays = load_checkpoint(path).arrays
    assert any(k.startswith("model/") for k in arrays) and any(k.startswith("optimizer/") for k in arrays)
    assert {k: a.dtype for k, a in arrays.items()} == {k: np.dtype(np.float32) for k in arrays}


# -- the option ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["train"], ["eval", "runs/a"]])
def test_a_bad_precision_is_one_line_naming_the_choices(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--precision", "fp8"]) == 2
    line = _one_line_error(capsys)
    assert "argument --precision: invalid choice: 'fp8'" in line
    assert all(repr(name) in line for name in ("auto", *PRECISIONS))


def test_a_bad_precision_in_a_config_is_named() -> None:
    with pytest.raises(ConfigError, match="--precision must be one of auto, fp32, tf32, bf16, fp16, got 'half'"):
        TrainConfig(precision="half").validate()


def test_auto_is_fp32_on_the_cpu_and_the_named_default_on_a_gpu() -> None:
    assert TrainConfig().precision == "auto"
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "cuda:0") == DEFAULT_GPU_PRECISION in PRECISIONS
    assert [resolve_precision(p, "cuda:1") for p in PRECISIONS] == list(PRECISIONS)


def test_tf32_on_the_cpu_is_a_clear_error_before_anything_is_written(
    tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _train(tmp_path / "run", mnist_like_dir, "--precision", "tf32") == 2
    line = _one_line_error(capsys)
    assert line.startswith("gpubp train: error: --precision tf32 is a mode of NVIDIA GPU tensor cores")
    assert "this run is on the CPU; use fp32 (or bf16) there, or --device cuda" in line
    assert not (tmp_path / "run").exists()

    assert _train(tmp_path / "run", mnist_like_dir, "--epochs", "1") == 0
    assert main(["eval", str(tmp_path / "run"), "--device", "cpu", "--precision", "tf32"]) == 2
    assert "--precision tf32 is a mode of NVIDIA GPU tensor cores" in _one_line_error(capsys)


def test_precision_mode_sets_tf32_for_tf32_only_and_restores_it() -> None:
    before = gp.cuda.tf32_enabled()
    try:
        for outside in (False, True):
            gp.cuda.set_tf32(outside)
            for precision in PRECISIONS:
                with precision_mode(precision):
                    assert gp.cuda.tf32_enabled() == (precision == "tf32")
                assert gp.cuda.tf32_enabled() == outside
            with pytest.raises(KeyboardInterrupt), precision_mode("tf32"):
                raise KeyboardInterrupt
            assert gp.cuda.tf32_enabled() == outside
    finally:
        gp.cuda.set_tf32(before)


# -- training in each precision -----------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_each_precision_learns_and_saves_float32_weights(
    precision: str, tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert _train(out, mnist_like_dir, "--epochs", "2", "--precision", precision) == 0
    printed = capsys.readouterr().out
    assert f"seed 0, on cpu in {precision}" in printed
    assert f" in {precision} after 2 epochs" in printed

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["precision"] == precision
    assert [row["precision"] for row in metrics["epochs"]] == [precision] * 2
    assert metrics["epochs"][-1]["test_acc"] > 0.5  # 10 classes: chance is 0.1
    assert (out / "metrics.csv").read_text().splitlines()[0].endswith(",precision")

    path = out / "checkpoint.npz"
    _assert_float32_master_weights(path)
    meta = load_checkpoint(path).meta
    assert meta["precision"] == precision
    if precision == "fp16":
        assert meta["grad_scaler"]["scale"] > 0
    else:
        assert "grad_scaler" not in meta

    # gpubp eval defaults to fp32 on the CPU, whatever the run trained in.
    assert main(["eval", str(out), "--device", "cpu"]) == 0
    assert "(in fp32)" in capsys.readouterr().out


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_each_precision_keeps_to_the_capture_rules(precision: str, tmp_path: Path, mnist_like_dir: Path) -> None:
    """``gp.jit`` on the CPU runs its capture call under the rules a CUDA graph needs (no
    host reads, no host-to-device copies): the autocast and loss-scaled step keeps them,
    and gives the eager step's metrics."""
    data = load_dataset("mnist", str(mnist_like_dir))
    config = TrainConfig(dataset="mnist", hidden=(16,), epochs=2, batch_size=32, precision=precision, device="cpu")
    eager = Run.create(config, data, tmp_path / "eager").fit(log=lambda _: None, jit=False)
    jitted = Run.create(config, data, tmp_path / "jit").fit(log=lambda _: None, jit=True)

    def timeless(history: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")} for r in history]

    assert timeless(jitted) == timeless(eager)


# -- resuming in another precision --------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "then"),
    [("fp32", "bf16"), ("bf16", "fp32"), ("fp32", "fp16")],
)
def test_a_run_resumes_in_another_precision(
    first: str, then: str, tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert _train(out, mnist_like_dir, "--epochs", "1", "--precision", first) == 0
    capsys.readouterr()
    resume = ["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress", "--precision", then]
    assert main(resume) == 0
    printed = capsys.readouterr().out
    fresh = "; the fp16 loss scale starts afresh" if then == "fp16" else ""
    assert f"note: the checkpoint was saved in {first} and the run continues in {then}{fresh}\n" in printed
    assert f"on cpu in {then}" in printed

    rows = json.loads((out / "metrics.json").read_text())["epochs"]
    assert [row["precision"] for row in rows] == [first, then]
    assert rows[-1]["test_acc"] > 0.5
    _assert_float32_master_weights(out / "checkpoint.npz")
    assert load_checkpoint(out / "checkpoint.npz").meta["precision"] == then


def test_a_resumed_run_keeps_its_precision_unless_told(
    tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert _train(out, mnist_like_dir, "--epochs", "1", "--precision", "fp32") == 0
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "note: the checkpoint was saved in" not in printed and "on cpu in fp32" in printed


def test_fp16_loss_scale_is_restored_in_fp16_and_kept_through_another_precision(tmp_path: Path) -> None:
    data = make_spirals(train=192, test=64)

    def config(precision: str, epochs: int) -> TrainConfig:
        return TrainConfig(
            dataset="spirals", hidden=(16,), epochs=epochs, batch_size=32, precision=precision, device="cpu"
        )

    Run.create(config("fp16", 1), data, tmp_path).fit(log=lambda _: None)
    scale = load_checkpoint(tmp_path / "checkpoint.npz").meta["grad_scaler"]

    in_bf16 = Run.resume(load_checkpoint(tmp_path / "checkpoint.npz"), config("bf16", 2), data, tmp_path)
    assert in_bf16.scaler is None
    assert in_bf16.precision_change() == (
        "note: the checkpoint was saved in fp16 and the run continues in bf16; the checkpoint's fp16 loss scale "
        "(GradScaler state) is not used in bf16; it is kept in the checkpoint for a later fp16 resume"
    )
    in_bf16.fit(log=lambda _: None)
    assert load_checkpoint(tmp_path / "checkpoint.npz").meta["grad_scaler"] == scale  # carried, not lost

    in_fp16 = Run.resume(load_checkpoint(tmp_path / "checkpoint.npz"), config("fp16", 3), data, tmp_path)
    assert _numbers(in_fp16.scaler.state_dict()) == scale
    assert in_fp16.precision_change() == "note: the checkpoint was saved in bf16 and the run continues in fp16"
    in_fp16.fit(log=lambda _: None)
    _assert_float32_master_weights(tmp_path / "checkpoint.npz")

    damaged = load_checkpoint(tmp_path / "checkpoint.npz")
    damaged.meta["grad_scaler"] = {}
    with pytest.raises(CheckpointError, match=r"checkpoint.npz: incomplete or damaged checkpoint .*grad_scaler"):
        Run.resume(damaged, config("fp16", 4), data, tmp_path)


def test_an_interrupted_fp16_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path: Path) -> None:
    data = make_spirals(train=192, test=64)
    config = TrainConfig(dataset="spirals", hidden=(16,), epochs=2, batch_size=32, precision="fp16", device="cpu")
    whole = Run.create(config, data, tmp_path / "whole")
    whole.fit(log=lambda _: None)

    parted = Run.create(config, data, tmp_path / "parted")
    calls = iter(range(1, 100))
    with pytest.raises(TrainingInterrupted):
        parted.fit(log=lambda _: None, should_stop=lambda: next(calls) == 4)
    checkpoint = load_checkpoint(tmp_path / "parted" / "checkpoint.npz")
    assert checkpoint.meta["grad_scaler"] == _numbers(parted.scaler.state_dict())
    resumed = Run.resume(checkpoint, config, data, tmp_path / "parted")
    assert resumed.precision_change() is None
    resumed.fit(log=lambda _: None)
    for (name, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    assert _numbers(resumed.scaler.state_dict()) == _numbers(whole.scaler.state_dict())


def test_eval_in_bf16_of_an_fp32_run(tmp_path: Path, mnist_like_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert _train(out, mnist_like_dir, "--epochs", "2") == 0
    fp32_acc = json.loads((out / "metrics.json").read_text())["epochs"][-1]["test_acc"]
    capsys.readouterr()
    assert main(["eval", str(out), "--device", "cpu", "--precision", "bf16"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("test accuracy"))
    assert line.endswith("(in bf16)")
    assert abs(float(line.split()[2]) - fp32_acc) <= 0.05  # bf16 rounds the products, not the decisions


# -- nothing 16-bit is saved ---------------------------------------------------------------------


def test_a_16_bit_parameter_is_never_saved_over_a_checkpoint(tmp_path: Path) -> None:
    data = make_spirals(train=64, test=32)
    run = Run.create(TrainConfig(dataset="spirals", hidden=(8,), epochs=1, device="cpu"), data, tmp_path)
    run.save()
    saved = (tmp_path / "checkpoint.npz").read_bytes()
    weight = run.model[0].weight
    weight.data = weight.data.astype(ml_dtypes.bfloat16)  # what a broken autocast would leave behind
    with pytest.raises(RuntimeError, match=r"not saving .*checkpoint.npz: parameters 0.weight are not float32"):
        run.save()
    assert (tmp_path / "checkpoint.npz").read_bytes() == saved
    with pytest.raises(CheckpointError, match=r"c.npz: not saved: an .npz cannot hold model/0.weight \(bfloat16\)"):
        save_checkpoint(tmp_path / "c.npz", run.model, None, {})
    assert not (tmp_path / "c.npz").exists()


# -- on a GPU ------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", PRECISIONS)
def test_each_precision_on_each_device_learns_the_same_with_and_without_jit(
    precision: str, device: str, tmp_path: Path, mnist_like_dir: Path
) -> None:
    """On a GPU: every precision trains in the jitted step (captured CUDA graphs) and
    eagerly with the same metrics, and keeps float32 weights; on the CPU the same but
    tf32, which is refused."""
    data = load_dataset("mnist", str(mnist_like_dir))
    config = TrainConfig(
        dataset="mnist", hidden=(32,), epochs=2, batch_size=32, lr=0.01, precision=precision, device=device
    )
    if device == "cpu" and precision == "tf32":
        with pytest.raises(ConfigError, match="--precision tf32 is a mode of NVIDIA GPU tensor cores"):
            Run.create(config, data, tmp_path / "refused")
        return
    before = gp.cuda.tf32_enabled()
    runs = {jit: Run.create(config, data, tmp_path / str(jit)) for jit in (True, False)}
    histories = {jit: run.fit(log=lambda _: None, jit=jit) for jit, run in runs.items()}
    assert gp.cuda.tf32_enabled() == before
    for history in histories.values():
        assert history[-1]["test_acc"] > 0.5 and history[-1]["precision"] == precision  # chance: 0.1
    assert [r["train_loss"] for r in histories[True]] == [r["train_loss"] for r in histories[False]]
    for jit in (True, False):
        _assert_float32_master_weights(tmp_path / str(jit) / "checkpoint.npz")
