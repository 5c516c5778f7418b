"""gpubp's training steps for the nets of ``benchmarks.step_nets``: eager, and
replayed through ``gp.jit`` (the whole step as one CUDA graph on a GPU).

    python benchmarks/gpubp_steps.py --device cuda          # ms/step of every net, both ways

The twin of ``benchmarks/torch_steps.py``: the same weights
(``benchmarks.mlp.init_params``), batch (``make_batch``), layers (Linear +
Sigmoid (+ Dropout) per hidden layer), loss and optimizer.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import gpubp as gp  # noqa: E402
from benchmarks.mlp import Config, Params, init_params, make_batch  # noqa: E402
from benchmarks.step_nets import ADAM_LR, SGD_LR, SGD_MOMENTUM, STEP_NETS, StepNet  # noqa: E402
from benchmarks.timing import cupy_events, time_blocks  # noqa: E402


def gpubp_mlp(
    config: Config, device: str = "cpu", seed: int = 0, dropout: float = 0.0, params: Params | None = None
) -> gp.nn.Sequential:
    """The benchmarks' sigmoid MLP in gpubp: Linear + Sigmoid (+ Dropout) per hidden
    layer, then Linear, with the weights and biases of ``init_params(config, seed)``
    (or ``params``, that list made once: drawing the 4096-wide net's takes a while)."""
    layers: list[gp.nn.Module] = []
    params = init_params(config, seed) if params is None else params
    for i, (weight, bias) in enumerate(params):
        linear = gp.nn.Linear(weight.shape[1], weight.shape[0])
        linear.load_state_dict({"weight": weight, "bias": bias})
        layers.append(linear)
        if i < len(params) - 1:
            layers.append(gp.nn.Sigmoid())
            if dropout:
                layers.append(gp.nn.Dropout(dropout))
    return gp.nn.Sequential(*layers).to(device)


def build_gpubp_step(net: StepNet, device: str = "cuda", jit: bool = False, seed: int = 0) -> Callable[[], None]:
    """A zero-argument training step of ``net`` on ``device``: forward, cross-entropy,
    backward and the optimizer step, called through ``gp.jit`` when ``jit``."""
    gp.manual_seed(seed)
    model = gpubp_mlp(net.config, device, seed, net.dropout)
    if net.optimizer == "adam":
        opt = gp.optim.Adam(model.parameters(), lr=ADAM_LR)
    else:
        opt = gp.optim.SGD(model.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM)
    x, labels = make_batch(net.config)
    x = gp.tensor(x, device=device)
    labels = gp.tensor(labels.astype(np.int64), device=device)

    def step(x: gp.Tensor, labels: gp.Tensor) -> None:
        loss = gp.cross_entropy(model(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()

    run = gp.jit(step) if jit else step
    return lambda: run(x, labels)


def time_steps(
    step: Callable[[], None], n_warmup: int = 20, n_repeat: int = 10, device: str = "cuda", block: int = 20
) -> dict[str, float]:
    """Milliseconds per step (``benchmarks.timing.time_blocks``): CuPy events on a GPU."""
    events = cupy_events() if device.startswith("cuda") else None
    return time_blocks(step, n_warmup, n_repeat, block, events)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--block", type=int, default=20, help="steps per timed block")
    args = parser.parse_args(argv)
    for net in STEP_NETS:
        for jit in (False, True):
            step = build_gpubp_step(net, args.device, jit)
            timing = time_steps(step, 20, args.blocks, args.device, args.block)
            print(f"{net.name:<45} {'jit' if jit else 'eager':<5}  {timing['median_ms']:8.3f} ms/step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
