"""Checkpoints: atomic writes, round trips, clear errors, and exact resumption."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import gpubp as gp
from gpubp.checkpoint import CheckpointError, atomic_write, load_checkpoint, save_checkpoint
from gpubp.data import make_spirals
from gpubp.training import NonFiniteLoss, Run, TrainConfig, TrainingInterrupted, build_model, build_optimizer


def _tiny_model_and_optimizer(optimizer: str = "adam") -> tuple[gp.nn.Sequential, gp.optim.Optimizer]:
    config = TrainConfig(hidden=(8,), optimizer=optimizer, weight_decay=1e-3)
    model = build_model(3, 4, config)
    opt = build_optimizer(model, config)
    x = gp.randn(16, 3)
    gp.cross_entropy(model(x), np.arange(16) % 4).backward()
    opt.step()
    return model, opt


def test_atomic_write_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_failed_atomic_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")

    def half_write(f: object) -> None:
        f.write(b"partial")  # type: ignore[attr-defined]
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of writing

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_write)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_round_trip_restores_model_optimizer_and_meta(tmp_path: Path, optimizer: str) -> None:
    model, opt = _tiny_model_and_optimizer(optimizer)
    path = tmp_path / "c.npz"
    save_checkpoint(path, model, opt, {"epoch": 3, "note": "ß"})

    with np.load(path, allow_pickle=False) as archive:  # no pickled objects anywhere
        assert all(archive[k].dtype != object for k in archive.files)
    checkpoint = load_checkpoint(path)
    assert checkpoint.meta["epoch"] == 3 and checkpoint.meta["note"] == "ß"

    config = TrainConfig(hidden=(8,), optimizer=optimizer, weight_decay=1e-3)
    gp.manual_seed(99)
    model2 = build_model(3, 4, config)
    opt2 = build_optimizer(model2, config)
    checkpoint.load_model(model2)
    checkpoint.load_optimizer(opt2)
    for (name, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    saved, loaded = opt.state_dict(), opt2.state_dict()
    assert saved["param_groups"] == loaded["param_groups"]
    assert saved["state"].keys() == loaded["state"].keys()
    for index, values in saved["state"].items():
        for name, value in values.items():
            np.testing.assert_array_equal(value, loaded["state"][index][name])


def test_damaged_files_give_a_clear_error(tmp_path: Path) -> None:
    model, opt = _tiny_model_and_optimizer()
    path = tmp_path / "c.npz"
    save_checkpoint(path, model, opt, {})
    data = path.read_bytes()

    (tmp_path / "short.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"short.npz: not a readable checkpoint"):
        load_checkpoint(tmp_path / "short.npz")

    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF
    (tmp_path / "flipped.npz").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match=r"flipped.npz"):
        load_checkpoint(tmp_path / "flipped.npz")

    with pytest.raises(CheckpointError, match=r"missing.npz: no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.npz")


def test_foreign_npz_and_other_versions_are_rejected(tmp_path: Path) -> None:
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a gpubp checkpoint"):
        load_checkpoint(tmp_path / "plain.npz")
    meta = np.frombuffer(json.dumps({"format": "gpubp-checkpoint", "version": 99}).encode(), dtype=np.uint8)
    np.savez(tmp_path / "future.npz", __meta__=meta)
    with pytest.raises(CheckpointError, match="format version 99 is not supported"):
        load_checkpoint(tmp_path / "future.npz")


def test_checkpoint_of_another_architecture_does_not_load(tmp_path: Path) -> None:
    model, opt = _tiny_model_and_optimizer()
    save_checkpoint(tmp_path / "c.npz", model, opt, {})
    checkpoint = load_checkpoint(tmp_path / "c.npz")
    other = build_model(3, 4, TrainConfig(hidden=(9,)))
    with pytest.raises(CheckpointError, match=r"c.npz: the saved model does not fit: .*0.weight has shape \(8, 3\)"):
        checkpoint.load_model(other)
    sgd = build_optimizer(other, TrainConfig(optimizer="sgd"))
    with pytest.raises(CheckpointError, match="holds the state of a Adam optimizer, not SGD"):
        checkpoint.load_optimizer(sgd)


# -- exact resumption -----------------------------------------------------------

DATA = make_spirals(train=200, test=50)


def _config(optimizer: str) -> TrainConfig:
    # Dropout and shuffling make the run depend on every generator being restored.
    return TrainConfig(
        dataset="spirals",
        hidden=(16, 16),
        epochs=3,
        batch_size=32,
        optimizer=optimizer,
        lr=0.05 if optimizer != "adam" else 0.01,
        dropout=0.25,
        weight_decay=1e-3,
        seed=5,
        device="cpu",
    )


def _weights(run: Run) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in run.model.state_dict().items()}


def _without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("seconds", "samples_per_s")} for row in history]


class _StopAfter:
    """should_stop() that answers true once, after ``n`` calls (batches)."""

    def __init__(self, n: int) -> None:
        self.calls, self.n = 0, n

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls == self.n


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("stop_after", [3, 7, 14], ids=["epoch-1-mid", "epoch-1-end", "epoch-2-mid"])
def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path: Path, optimizer: str, stop_after: int) -> None:
    whole = Run.create(_config(optimizer), DATA, tmp_path / "whole")
    whole.fit(log=lambda _: None)

    parted = Run.create(_config(optimizer), DATA, tmp_path / "parted")
    with pytest.raises(TrainingInterrupted) as stopped:
        parted.fit(log=lambda _: None, should_stop=_StopAfter(stop_after))
    assert stopped.value.checkpoint == tmp_path / "parted" / "checkpoint.npz"

    gp.manual_seed(12345)  # whatever the generators did since must not matter
    resumed = Run.resume(
        load_checkpoint(tmp_path / "parted" / "checkpoint.npz"), _config(optimizer), DATA, tmp_path / "parted"
    )
    assert (resumed.epoch, resumed.batch) == (parted.epoch, parted.batch)
    resumed.fit(log=lambda _: None)

    for name, value in _weights(whole).items():
        np.testing.assert_array_equal(_weights(resumed)[name], value, err_msg=name)
    assert _without_timing(resumed.history) == _without_timing(whole.history)


def test_same_seed_same_metrics_different_seed_different(tmp_path: Path) -> None:
    runs = [Run.create(_config("adam"), DATA, tmp_path / str(i)) for i in range(2)]
    other = Run.create(
        TrainConfig(**{**_config("adam").to_dict(), "hidden": (16, 16), "seed": 6}), DATA, tmp_path / "o"
    )
    histories = [_without_timing(r.fit(log=lambda _: None)) for r in (*runs, other)]
    assert histories[0] == histories[1]
    assert histories[0] != histories[2]


def test_not_a_zip_archive_is_not_a_gpubp_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "random.npz").write_bytes(bytes(range(256)))
    with pytest.raises(CheckpointError, match=r"random.npz: not a gpubp checkpoint \(those are .npz archives"):
        load_checkpoint(tmp_path / "random.npz")
    np.save(tmp_path / "array.npy", np.zeros(3))  # np.load would return the array
    with pytest.raises(CheckpointError, match=r"array.npy: not a gpubp checkpoint"):
        load_checkpoint(tmp_path / "array.npy")


def test_a_nan_after_a_mid_epoch_checkpoint_keeps_that_checkpoint(tmp_path: Path) -> None:
    config = _config("sgd")
    first = Run.create(config, DATA, tmp_path)
    with pytest.raises(TrainingInterrupted):
        first.fit(log=lambda _: None, should_stop=_StopAfter(1))  # saved after batch 1 of epoch 1
    saved = (tmp_path / "checkpoint.npz").read_bytes()

    x_train = DATA.x_train.copy()
    order = np.random.default_rng([config.seed, 0]).permutation(len(x_train))
    x_train[order[32 * 3 + 5]] = np.nan  # in the fourth batch of the first epoch
    poisoned = type(DATA)(**{**DATA.__dict__, "x_train": x_train})
    resumed = Run.resume(load_checkpoint(tmp_path / "checkpoint.npz"), config, poisoned, tmp_path)
    with pytest.raises(NonFiniteLoss) as stopped:
        resumed.fit(log=lambda _: None)
    assert str(stopped.value).endswith(
        f"in epoch 1 at batch 4 of 7, so training stopped (check the data for NaN or inf, or lower --lr); "
        f"{tmp_path}/checkpoint.npz (saved in epoch 1, after batch 1) is kept"
    )
    assert (stopped.value.epoch, stopped.value.batch) == (0, 4)
    assert (tmp_path / "checkpoint.npz").read_bytes() == saved


def test_a_checkpoint_without_the_schedule_and_rates_resumes(tmp_path: Path) -> None:
    """Checkpoints written before the schedule and the epoch's rates were recorded."""
    run = Run.create(_config("adam"), DATA, tmp_path)
    with pytest.raises(TrainingInterrupted):
        run.fit(log=lambda _: None, should_stop=_StopAfter(7))  # after the last batch of epoch 1
    checkpoint = load_checkpoint(tmp_path / "checkpoint.npz")
    del checkpoint.meta["schedule"]
    for key in ("lr_first", "lr_last"):
        del checkpoint.meta["progress"][key]
    resumed = Run.resume(checkpoint, _config("adam"), DATA, tmp_path)
    assert resumed.planned_epochs == 3 and resumed.schedule_change() is None
    history = resumed.fit(log=lambda _: None)
    assert history[0]["lr_first"] == history[0]["lr_last"] > history[1]["lr_first"]


def test_metrics_rows_of_an_older_checkpoint_keep_their_rate_as_the_last(tmp_path: Path) -> None:
    run = Run.create(_config("adam"), DATA, tmp_path)
    with pytest.raises(TrainingInterrupted):
        run.fit(log=lambda _: None, should_stop=_StopAfter(9))  # 7 batches, the epoch's end, 1 more
    checkpoint = load_checkpoint(tmp_path / "checkpoint.npz")
    (row,) = checkpoint.meta["history"]
    last = row.pop("lr_last")
    del row["lr_first"]
    row["lr"] = last
    resumed = Run.resume(checkpoint, _config("adam"), DATA, tmp_path)
    assert resumed.history[0]["lr_first"] is None and resumed.history[0]["lr_last"] == last
    assert "lr" not in resumed.history[0]
    resumed.fit(log=lambda _: None)
    with open(tmp_path / "metrics.csv") as f:
        assert f.read().splitlines()[1].split(",")[5:7] == ["", repr(last)]
