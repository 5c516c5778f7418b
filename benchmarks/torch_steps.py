"""PyTorch training steps for the nets of ``benchmarks.step_nets``: eager, and the
whole step captured in one CUDA graph.

    python benchmarks/torch_steps.py --device cuda          # ms/step of every net, both ways
    python benchmarks/torch_steps.py --device cpu           # eager only

Every step starts from ``benchmarks.mlp.init_params`` and trains on
``make_batch``, as every other contender does: Linear + Sigmoid (+ Dropout) per
hidden layer, softmax cross-entropy, the net's optimizer, float32 with TF32 off.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402, N812 (PyTorch's own spelling)

from benchmarks.mlp import Params, init_params, make_batch  # noqa: E402
from benchmarks.step_nets import ADAM_LR, SGD_LR, SGD_MOMENTUM, STEP_NETS, StepNet  # noqa: E402
from benchmarks.timing import time_blocks, torch_events  # noqa: E402

# Eager steps on a side stream before capture, as PyTorch's CUDA-graph docs do: they
# create the optimizer's state (momentum buffers, Adam moments) and let cuBLAS choose
# its kernels before anything is recorded.
GRAPH_WARMUP_STEPS = 3


def build_model(net: StepNet, device: str, seed: int = 0, params: Params | None = None) -> torch.nn.Sequential:
    """The net as ``torch.nn.Sequential``: Linear + Sigmoid (+ Dropout(p)) per hidden
    layer, then Linear, with the weights and biases of ``init_params(net.config, seed)``
    (or ``params``, that list made once)."""
    params = init_params(net.config, seed) if params is None else params
    layers: list[torch.nn.Module] = []
    for i, (weight, bias) in enumerate(params):
        linear = torch.nn.Linear(weight.shape[1], weight.shape[0], device=device, dtype=torch.float32)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(weight))
            linear.bias.copy_(torch.from_numpy(bias))
        layers.append(linear)
        if i < len(params) - 1:
            layers.append(torch.nn.Sigmoid())
            if net.dropout:
                layers.append(torch.nn.Dropout(net.dropout))
    return torch.nn.Sequential(*layers)


def build_optimizer(net: StepNet, model: torch.nn.Module, capturable: bool = False) -> torch.optim.Optimizer:
    """The net's optimizer: SGD(SGD_LR, momentum SGD_MOMENTUM) for "sgd-momentum",
    Adam(ADAM_LR) for "adam", with ``capturable`` so its step counts stay on the
    device (needed inside a CUDA graph)."""
    if net.optimizer == "sgd-momentum":
        return torch.optim.SGD(model.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM)
    if net.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=ADAM_LR, capturable=capturable)
    raise ValueError(f"{net.name}: unknown optimizer {net.optimizer!r} (sgd-momentum or adam)")


@dataclass
class TorchStep:
    """One training step of a net, as a zero-argument callable; the parts are kept
    for tests and profiling. With a graph, calling it replays the graph."""

    net: StepNet
    device: str
    model: torch.nn.Sequential
    optimizer: torch.optim.Optimizer
    x: torch.Tensor
    labels: torch.Tensor
    graph: torch.cuda.CUDAGraph | None = None

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            _train_step(self.model, self.optimizer, self.x, self.labels)

    @torch.no_grad()
    def loss(self) -> float:
        """The loss on the batch with dropout off (for checking that steps learn)."""
        was_training = self.model.training
        self.model.eval()
        value = F.cross_entropy(self.model(self.x), self.labels).item()
        self.model.train(was_training)
        return value


def _train_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, labels: torch.Tensor
) -> None:
    loss = F.cross_entropy(model(x), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def build_torch_step(net: StepNet, device: str = "cuda", graph: bool = False, seed: int = 0) -> TorchStep:
    """A zero-argument callable doing one training step of ``net`` on ``device`` on the
    batch ``make_batch(net.config)``. ``graph=True`` (CUDA only) runs a few warm-up steps
    on a side stream, then captures forward, loss, backward and ``optimizer.step()`` in
    one ``torch.cuda.CUDAGraph``; each call then replays it (so the weights it starts
    from are ``GRAPH_WARMUP_STEPS`` steps on from the eager step's)."""
    if graph and not device.startswith("cuda"):
        raise ValueError(f"graph=True captures a CUDA graph and needs a CUDA device, got {device!r}")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r}: this PyTorch ({torch.__version__}) sees no CUDA GPU")
        # Same arithmetic as the other contenders: full float32 products, no TF32.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
    torch.manual_seed(seed)  # the dropout masks
    model = build_model(net, device, seed)
    optimizer = build_optimizer(net, model, capturable=graph)
    x_np, labels_np = make_batch(net.config)
    # The batch never changes, so these are the graph's static inputs as they are.
    x, labels = torch.from_numpy(x_np).to(device), torch.from_numpy(labels_np).to(device)
    step = TorchStep(net, device, model, optimizer, x, labels)
    if graph:
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_STEPS):
                _train_step(model, optimizer, x, labels)
        torch.cuda.current_stream().wait_stream(side)
        # None gradients: backward inside the capture allocates them from the graph's
        # pool, and every replay overwrites the same tensors.
        optimizer.zero_grad(set_to_none=True)
        captured = torch.cuda.CUDAGraph()
        with torch.cuda.graph(captured):
            loss = F.cross_entropy(model(x), labels)
            loss.backward()
            optimizer.step()
        step.graph = captured
    return step


def time_steps(
    step: Callable[[], Any], n_warmup: int = 20, n_repeat: int = 10, device: str = "cuda", block: int = 20
) -> dict[str, float]:
    """Milliseconds per step (``benchmarks.timing.time_blocks``): CUDA events on a GPU,
    ``perf_counter`` on the CPU."""
    events = torch_events() if device.startswith("cuda") else None
    return time_blocks(step, n_warmup, n_repeat, block, events)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--block", type=int, default=20, help="steps per timed block")
    args = parser.parse_args(argv)
    modes = (False, True) if args.device.startswith("cuda") else (False,)
    print(f"torch {torch.__version__} on {args.device}")
    for net in STEP_NETS:
        for graph in modes:
            timing = time_steps(build_torch_step(net, args.device, graph), 20, args.blocks, args.device, args.block)
            print(
                f"{net.name:<45} {'graph' if graph else 'eager':<5}  {timing['median_ms']:8.3f} ms/step "
                f"(min {timing['min_ms']:.3f}, max {timing['max_ms']:.3f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
