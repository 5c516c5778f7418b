"""The PyTorch baselines of the GPU benchmark (benchmarks/torch_train.py and
torch_steps.py), run on the CPU: they train, report what the benchmark reads,
and follow gpubp's recipe. The CUDA-graph variants need a GPU and are checked there."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch baselines need torch")

from benchmarks import torch_steps, torch_train  # noqa: E402
from benchmarks.step_nets import STEP_NETS  # noqa: E402
from gpubp.data.datasets import load_dataset  # noqa: E402
from gpubp.training import TrainConfig, learning_rate  # noqa: E402

pytestmark = pytest.mark.torch

RESULT_KEYS = {
    "variant",
    "device",
    "device_name",
    "torch",
    "epochs",
    "train_seconds",
    "warmup_seconds",
    "epoch_seconds",
    "test_acc",
    "test_acc_per_epoch",
}


@pytest.fixture
def tiny(mnist_like_dir):
    """The mnist_like_dir data set: 10×10 images whose class k lights row k, 300 train, 100 test."""
    return load_dataset("mnist", mnist_like_dir)


def test_plain_trains_and_reports_the_benchmark_fields(tiny):
    # Batch 32: 10 steps an epoch (the last one partial, 12 samples), so 20 Adam steps in all.
    results = torch_train.run("plain", "cpu", epochs=2, batch_size=32, data=tiny, log=None)
    assert set(results) >= RESULT_KEYS
    assert results["variant"] == "plain" and results["device"] == "cpu" and results["epochs"] == 2
    assert results["steps"] == 2 * math.ceil(300 / 32)
    assert len(results["epoch_seconds"]) == len(results["test_acc_per_epoch"]) == 2
    assert results["train_seconds"] == pytest.approx(sum(results["epoch_seconds"]))
    assert all(s > 0 for s in results["epoch_seconds"]) and results["warmup_seconds"] == 0
    assert results["test_acc"] == results["test_acc_per_epoch"][-1]
    # Chance is 0.1; row k lit for class k is learnt within a few steps.
    assert results["test_acc"] >= 0.6
    assert results["train_loss_per_epoch"][1] < results["train_loss_per_epoch"][0]
    assert results["torch"] == torch.__version__
    json.dumps(results)  # the CLI writes it as JSON


def test_plain_is_reproducible_with_a_seed(tiny):
    first = torch_train.run("plain", "cpu", epochs=1, batch_size=64, data=tiny, seed=3, log=None)
    second = torch_train.run("plain", "cpu", epochs=1, batch_size=64, data=tiny, seed=3, log=None)
    assert first["train_loss_per_epoch"] == second["train_loss_per_epoch"]
    assert first["test_acc"] == second["test_acc"]


def test_cli_writes_json_and_refuses_graph_on_cpu(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch_train, "load_dataset", lambda name, folder: tiny)
    out = tmp_path / "r.json"
    args = ["--device", "cpu", "--epochs", "1", "--batch-size", "64", "--quiet", "--json", str(out)]
    assert torch_train.main(["--variant", "plain", *args]) == 0
    results = json.loads(out.read_text())
    assert set(results) >= RESULT_KEYS and results["epochs"] == 1
    assert "test acc" in capsys.readouterr().out
    assert torch_train.main(["--variant", "graph", *args]) == 2
    assert "needs --device cuda" in capsys.readouterr().err
    with pytest.raises(ValueError, match="needs --device cuda"):
        torch_train.run("graph", "cpu", epochs=1, data=tiny)


def test_lr_schedule_matches_gpubp_step_for_step(tiny):
    # The plain loop's CosineAnnealingLR, stepped per batch, against gpubp's own formula.
    trainer = torch_train._PlainTrainer(
        torch_train.build_model(tiny.features, 10, (8,)),
        torch.from_numpy(tiny.x_train),
        torch.from_numpy(tiny.y_train),
        batch_size=64,
        epochs=3,
        weight_decay=0.0,
        device="cpu",
    )
    for epoch in range(3):
        trainer.epoch(epoch)
    total = 3 * math.ceil(300 / 64)
    assert len(trainer.lrs) == trainer.total_steps == total
    expected = [learning_rate(TrainConfig(), t, total) for t in range(total)]
    np.testing.assert_allclose(trainer.lrs, expected, rtol=1e-12, atol=1e-18)
    # The graph variant fills its lr tensor from cosine_lr: gpubp's formula exactly, over a full run.
    steps = 20 * 469
    assert all(torch_train.cosine_lr(1e-3, t, steps) == learning_rate(TrainConfig(), t, steps) for t in range(steps))


def test_model_and_optimizer_follow_gpubp_recipe():
    torch.manual_seed(0)
    model = torch_train.build_model(784, 10)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Linear", "Sigmoid", "Dropout", "Linear", "Sigmoid", "Dropout", "Linear"]
    assert [m.out_features for m in model if isinstance(m, torch.nn.Linear)] == [512, 256, 10]
    assert model[2].p == 0.2
    first = model[0]
    bound = math.sqrt(6 / (784 + 512))  # Xavier-uniform
    assert first.weight.abs().max().item() <= bound and first.weight.abs().max().item() > 0.95 * bound
    assert all(not m.bias.any() for m in model if isinstance(m, torch.nn.Linear))
    opt = torch_train.build_optimizer(model, weight_decay=1e-4)
    weights, biases = opt.param_groups
    assert all(p.ndim == 2 for p in weights["params"]) and all(p.ndim == 1 for p in biases["params"])
    assert (weights["weight_decay"], biases["weight_decay"]) == (1e-4, 0.0)
    assert weights["lr"] == biases["lr"] == 1e-3


@pytest.mark.parametrize("net", STEP_NETS, ids=[n.key for n in STEP_NETS])
def test_eager_step_learns_on_cpu(net):
    step = torch_steps.build_torch_step(net, "cpu", graph=False)
    # Every contender starts from benchmarks.mlp.init_params.
    from benchmarks.mlp import init_params

    np.testing.assert_array_equal(step.model[0].weight.detach().numpy(), init_params(net.config)[0][0])
    before = step.loss()
    weights = step.model[0].weight.detach().clone()
    for _ in range(5):
        step()
    assert not torch.equal(step.model[0].weight, weights)
    assert step.loss() < before
    assert [isinstance(m, torch.nn.Dropout) for m in step.model].count(True) == (
        len(net.config.sizes) - 2 if net.dropout else 0
    )


def test_step_optimizers_follow_the_step_nets():
    sgd_net = next(n for n in STEP_NETS if n.optimizer == "sgd-momentum")
    adam_net = next(n for n in STEP_NETS if n.optimizer == "adam")
    sgd = torch_steps.build_torch_step(sgd_net, "cpu").optimizer
    adam = torch_steps.build_torch_step(adam_net, "cpu").optimizer
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9 and sgd.defaults["lr"] == 0.01
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["lr"] == 1e-3


def test_graph_step_on_cpu_raises():
    with pytest.raises(ValueError, match="CUDA"):
        torch_steps.build_torch_step(STEP_NETS[0], "cpu", graph=True)


def test_time_steps_counts_blocks_on_cpu():
    calls = []
    timing = torch_steps.time_steps(lambda: calls.append(1), n_warmup=2, n_repeat=3, device="cpu", block=4)
    assert len(calls) == 2 + 3 * 4
    assert timing["min_ms"] <= timing["median_ms"] <= timing["max_ms"]
    assert timing["blocks"] == 3 and timing["steps_per_block"] == 4
