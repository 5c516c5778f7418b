"""gp.jit on a GPU: a whole training step captured into one CUDA graph replays
exactly what eager steps compute (weights bit for bit), honours what changes
between steps (learning rate, Adam's step count, dropout's offsets), never
waits for the device, and captures again when what it read changed. Skipped
without a GPU."""

from __future__ import annotations

import time

import numpy as np
import pytest

import gpubp as gp
from gpubp.capture import CaptureError

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")


def setup(optimizer: str, dropout: float, seed: int = 0):
    gp.manual_seed(seed)
    layers = [gp.nn.Linear(20, 64), gp.nn.Sigmoid()]
    if dropout:
        layers.append(gp.nn.Dropout(dropout))
    layers += [gp.nn.Linear(64, 32), gp.nn.Tanh(), gp.nn.Linear(32, 5)]
    model = gp.nn.Sequential(*layers).to("cuda")
    weights = [p for p in model.parameters() if p.ndim > 1]
    biases = [p for p in model.parameters() if p.ndim == 1]
    groups = [{"params": weights, "weight_decay": 1e-3}, {"params": biases, "weight_decay": 0.0}]
    if optimizer == "sgd":
        opt = gp.optim.SGD(groups, lr=0.1, momentum=0.9, nesterov=True)
    elif optimizer == "momentum-dampened":
        opt = gp.optim.SGD(groups, lr=0.1, momentum=0.9, dampening=0.2)
    elif optimizer == "adamw":
        opt = gp.optim.AdamW(groups, lr=1e-2)
    else:
        opt = gp.optim.Adam(groups, lr=1e-2)

    def step(x: gp.Tensor, labels: gp.Tensor) -> gp.Tensor:
        loss = gp.cross_entropy(model(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return model, opt, step


def batches(count: int, rows: int = 64):
    rng = np.random.default_rng(1)
    for _ in range(count):
        x = gp.tensor(rng.standard_normal((rows, 20)).astype(np.float32), device="cuda")
        yield x, gp.tensor(rng.integers(0, 5, rows), device="cuda")


def train(optimizer: str, dropout: float, jit: bool, steps: int = 12, partial_every: int = 0):
    """Losses and final weights of ``steps`` steps with a cosine learning rate;
    every ``partial_every``-th batch is a smaller one (another signature)."""
    model, opt, step = setup(optimizer, dropout)
    run = gp.jit(step) if jit else step
    losses = []
    for i, (x, labels) in enumerate(batches(steps)):
        for group in opt.param_groups:
            group["lr"] = 0.05 * (1 + np.cos(np.pi * i / steps))
        if partial_every and i % partial_every == partial_every - 1:
            x, labels = x[:17], labels[:17]
        losses.append(run(x, labels).item())
    return losses, [p.numpy() for p in model.parameters()], gp.get_rng_state("cuda")


@pytest.mark.parametrize(
    ("optimizer", "dropout"), [("sgd", 0.0), ("momentum-dampened", 0.0), ("adam", 0.3), ("adamw", 0.0)]
)
def test_replays_compute_exactly_what_eager_steps_compute(optimizer, dropout):
    eager = train(optimizer, dropout, jit=False)
    replayed = train(optimizer, dropout, jit=True)
    assert replayed[0] == eager[0]
    for got, want in zip(replayed[1], eager[1]):
        np.testing.assert_array_equal(got, want)
    assert replayed[2] == eager[2]  # the generator advanced as by the eager steps


def test_eager_and_replayed_steps_mix_without_losing_count():
    """A smaller batch every third step runs eagerly or as another graph; Adam's
    step count and the dropout offsets stay one sequence, as in eager training."""
    eager = train("adam", 0.3, jit=False, steps=15, partial_every=3)
    mixed = train("adam", 0.3, jit=True, steps=15, partial_every=3)
    assert mixed[0] == eager[0]
    for got, want in zip(mixed[1], eager[1]):
        np.testing.assert_array_equal(got, want)


def test_a_replay_never_waits_for_the_device():
    from tests.backends.test_cuda_training import _SPIN

    model, opt, step = setup("adam", 0.3)
    run = gp.jit(step)
    data = list(batches(4))
    for x, labels in data:
        run(x, labels)  # warm-up, capture, one replay
    gp.cuda.synchronize()
    spin = cupy.RawKernel(_SPIN, "spin")
    spin((1,), (1,), (np.uint64(2e9),))
    started = time.perf_counter()
    loss = run(*data[0])
    host_seconds = time.perf_counter() - started
    assert not cupy.cuda.get_current_stream().done, "the replay waited for the device"
    assert host_seconds < 1.0
    assert np.isfinite(loss.item())


def test_outputs_of_earlier_replays_are_marked_overwritten():
    model, opt, step = setup("sgd", 0.0)
    run = gp.jit(step, warmup=1)
    data = list(batches(3))
    run(*data[0])
    first = run(*data[1])
    value = first.item()
    second = run(*data[2])
    assert np.isfinite(second.item()) and np.isfinite(value)
    with pytest.raises(RuntimeError, match="overwritten"):
        first.item()


def test_what_the_graph_read_changing_means_a_new_capture():
    model, opt, step = setup("adam", 0.0)
    run = gp.jit(step, warmup=1)
    data = list(batches(6))
    for x, labels in data[:3]:
        run(x, labels)
    assert run.graphs == 1
    opt.load_state_dict(opt.state_dict())  # new state buffers
    run(*data[3])
    assert run.graphs == 2
    model.to("cpu").to("cuda")  # new parameter buffers
    run(*data[4])
    assert run.graphs == 3


def test_reading_on_the_host_or_copying_to_the_device_inside_fails_at_capture():
    model, opt, step = setup("sgd", 0.0)

    def reads(x, labels):
        return float(step(x, labels))

    def copies(x, labels):
        return step(x, np.asarray([0] * x.shape[0]))  # labels from the host

    data = list(batches(2))
    for fn, message in ((reads, "reads a value on the host"), (copies, "copies host data")):
        run = gp.jit(fn, warmup=1)
        run(*data[0])
        with pytest.raises(CaptureError, match=message):
            run(*data[1])
    assert gp.capture.current is None
    assert np.isfinite(step(*data[0]).item())  # eager work goes on after a failed capture


def test_eager_work_after_a_capture_never_shares_the_graphs_memory():
    """Allocations after the capture come from CuPy's pool, the graph's from its own:
    filling fresh eager arrays between replays leaves the replays exact."""
    eager = train("sgd", 0.0, jit=False, steps=6)
    model, opt, step = setup("sgd", 0.0)
    run = gp.jit(step, warmup=1)
    losses = []
    for i, (x, labels) in enumerate(batches(6)):
        for group in opt.param_groups:
            group["lr"] = 0.05 * (1 + np.cos(np.pi * i / 6))
        losses.append(run(x, labels).item())
        junk = [cupy.full((64, 64), np.nan, dtype=np.float32) for _ in range(50)]
        del junk
    assert losses == eager[0]


def test_training_from_the_command_line_gives_the_same_metrics_with_and_without_jit(mnist_like_dir, tmp_path):
    from gpubp.data.datasets import load_dataset
    from gpubp.training import Run, TrainConfig

    dataset = load_dataset("mnist", mnist_like_dir)
    histories = []
    for jit in (False, True):
        config = TrainConfig(dataset="mnist", data=str(mnist_like_dir), hidden=(32,), epochs=3, batch_size=64)
        config.device = "cuda"
        run = Run.create(config, dataset, tmp_path / f"jit-{jit}")
        histories.append(run.fit(log=lambda line: None, jit=jit))
    for a, b in zip(*histories):
        for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert a[key] == b[key], key
