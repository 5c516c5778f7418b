"""The benchmark's yardsticks compute what gpubp computes.

``benchmarks/compare.py`` reports gpubp's step time against the hand-written
NumPy step (``benchmarks/reference.py``) and PyTorch. Those ratios mean
something only if all three do the same work: here one step from identical
weights and data gives the same loss and updated weights, and the GEMM floor
does exactly the matrix products the hand-written step does.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpubp as gp
from benchmarks.contenders import build
from benchmarks.memory import measure
from benchmarks.mlp import CONFIGS, LEARNING_RATE, Config, init_params, make_batch, parse_config
from benchmarks.reference import GemmFloor, HandMLP
from benchmarks.worker import run_request

CONFIG = Config((20, 16, 12, 5), 8)  # two hidden layers: every δ equation is exercised


def gpubp_step(config: Config, dtype: type) -> tuple[float, list[np.ndarray]]:
    """Loss and updated (weight, bias) arrays after one gpubp SGD step."""
    layers = []
    for i, (w, b) in enumerate(init_params(config)):
        linear = gp.nn.Linear(w.shape[1], w.shape[0], dtype=dtype)
        linear.load_state_dict({"weight": w, "bias": b})
        layers += [linear, gp.nn.Sigmoid()] if i < len(config.layers) - 1 else [linear]
    model = gp.nn.Sequential(*layers)
    opt = gp.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    x, labels = make_batch(config)
    loss = gp.cross_entropy(model(gp.tensor(x.astype(dtype))), labels)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item(), [p.numpy() for p in model.parameters()]


def hand_step(config: Config, dtype: type) -> tuple[float, list[np.ndarray]]:
    params = [(w.astype(dtype), b.astype(dtype)) for w, b in init_params(config)]
    net = HandMLP(params, config.batch, LEARNING_RATE)
    x, labels = make_batch(config)
    loss = net.step(x.astype(dtype), labels)
    assert loss.dtype == dtype
    return float(loss), [a for pair in zip(net.weights, net.biases) for a in pair]


@pytest.mark.parametrize(("dtype", "tol"), [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_hand_written_step_matches_gpubp(dtype: type, tol: float) -> None:
    loss, params = gpubp_step(CONFIG, dtype)
    hand_loss, hand_params = hand_step(CONFIG, dtype)
    assert hand_loss == pytest.approx(loss, rel=tol)
    start = [a for pair in init_params(CONFIG) for a in pair]
    for got, want, before in zip(hand_params, params, start):
        assert got.dtype == want.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        assert not np.allclose(got, before)  # the step moved every parameter


@pytest.mark.torch
def test_hand_written_step_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    layers = []
    for i, (w, b) in enumerate(init_params(CONFIG)):
        linear = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w))
            linear.bias.copy_(torch.from_numpy(b))
        layers += [linear, torch.nn.Sigmoid()] if i < len(CONFIG.layers) - 1 else [linear]
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    x, labels = make_batch(CONFIG)
    loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(labels))
    opt.zero_grad()
    loss.backward()
    opt.step()
    hand_loss, hand_params = hand_step(CONFIG, np.float32)
    assert hand_loss == pytest.approx(loss.item(), rel=1e-5)
    for got, want in zip(hand_params, model.parameters()):
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_contenders_train_alike() -> None:
    """compare.py's gpubp and hand-written steps stay together over several steps."""
    config = parse_config("20-16-12-5:8")
    gpubp, hand = build("gpubp", config), build("numpy-hand", config)
    for _ in range(3):
        assert float(hand.step()) == pytest.approx(gpubp.step().item(), rel=1e-5)


class CountingXp:
    """NumPy, counting the floating-point operations of matrix products."""

    def __init__(self) -> None:
        self.flops = 0

    def __getattr__(self, name: str) -> object:
        return getattr(np, name)

    def matmul(self, a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        self.flops += 2 * a.shape[0] * a.shape[1] * b.shape[1]
        return np.matmul(a, b, out=out)


def test_floor_does_the_hand_written_products_and_no_more() -> None:
    params = init_params(CONFIG)
    x, labels = make_batch(CONFIG)
    hand_xp, floor_xp = CountingXp(), CountingXp()
    HandMLP(params, CONFIG.batch, LEARNING_RATE, hand_xp).step(x, labels)
    GemmFloor(params, CONFIG.batch, floor_xp).step(x)
    assert hand_xp.flops == floor_xp.flops == CONFIG.gemm_flops()


def test_configs_parse() -> None:
    assert parse_config("medium") is CONFIGS["medium"]
    assert parse_config("784-1024-1024-10") == CONFIGS["medium"]
    assert parse_config(CONFIGS["large"].name) == CONFIGS["large"]
    with pytest.raises(ValueError, match="no default batch"):
        parse_config("5-3")
    with pytest.raises(ValueError, match="bad config"):
        parse_config("big")


def test_worker_request_runs_warmup_and_blocks() -> None:
    reply = run_request(build("numpy-hand", CONFIG), {"warmup_s": 0.0, "blocks": 2, "steps": 3})
    assert reply["warmup_steps"] == 1
    assert len(reply["times"]) == 2 and min(reply["times"]) > 0


def test_memory_method_counts_the_hand_written_buffers() -> None:
    """Between steps the hand-written step holds exactly its preallocated buffers;
    gpubp holds at least the gradients, and its peak at least the activations."""
    config = parse_config("64-32-10:32")
    hand, gpubp = measure("numpy-hand", config), measure("gpubp", config)
    net = HandMLP(init_params(config), config.batch, LEARNING_RATE)
    buffers = sum(a.nbytes for a in net.acts + net.deltas + net.slopes + net.grad_w + net.grad_b + [net.rows])
    assert buffers <= hand["between_steps_bytes"] < buffers + 4096  # + a few small Python objects
    assert gpubp["between_steps_bytes"] >= 4 * config.param_count()
    assert gpubp["step_peak_bytes"] >= gpubp["activations_bytes"]
