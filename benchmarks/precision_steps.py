"""One training step at a precision, in gpubp (replayed through ``gp.jit``) and in
PyTorch (eager, and the whole step as one CUDA graph), for the precision rows of
``benchmarks/gpu_check.py`` (issue 12).

The step is the one of ``benchmarks.step_nets`` and of the earlier H100 precision
numbers (``/work/shared/gpu/2026-11-26-h100/README.md``): sigmoid hidden layers,
softmax cross-entropy, SGD (lr 0.01, momentum 0.9), one fixed batch. The four
precisions, spelt as PyTorch users write them:

- ``fp32``: float32 products, TF32 off;
- ``tf32``: the same with both libraries' TF32 switch on (``tf32_switches``);
- ``bf16``: forward and loss under ``autocast(dtype=bfloat16)``;
- ``fp16``: forward and loss under ``autocast(dtype=float16)``, the loss scaled by
  a ``GradScaler`` (``scale(loss).backward(); step(opt); update()``).

Weights, gradients and the optimizer's state stay float32 in all four.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from benchmarks.mlp import Params, make_batch
from benchmarks.step_nets import SGD_LR, SGD_MOMENTUM, StepNet

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
# The 16-bit dtype (the same attribute name in gpubp and torch) of the autocast precisions.
AUTOCAST = {"bf16": "bfloat16", "fp16": "float16"}
# Eager steps before PyTorch's capture, as in torch_steps: they make the momentum
# buffers and the GradScaler's scale tensor, and let cuBLAS pick its kernels.
GRAPH_WARMUP_STEPS = 3


@dataclass
class Step:
    """A zero-argument callable to time and, for a training step, the loss of the
    current weights on the step's batch in float32 (a check that the timed steps trained)."""

    run: Callable[[], Any]
    loss: Callable[[], float] | None = None


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")


def _device_type(device: str) -> str:
    return "cuda" if device.startswith("cuda") else "cpu"


@contextlib.contextmanager
def tf32_switches(precision: str) -> Iterator[None]:
    """TF32 on in gpubp and PyTorch for ``tf32``, off for the rest, restored after.
    Both switches are process-wide and both libraries freeze them into a graph at
    capture (gp.jit even keys its graphs on gpubp's), so a precision's steps are
    built and timed inside one such block."""
    import gpubp as gp

    check_precision(precision)
    enabled = precision == "tf32"
    was = gp.cuda.tf32_enabled()
    torch = _torch_or_none()
    torch_was = torch.get_float32_matmul_precision() if torch is not None else None
    gp.cuda.set_tf32(enabled)
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        gp.cuda.set_tf32(was)
        if torch is not None:
            # Also restores allow_tf32, which is this setting seen from the other side.
            torch.set_float32_matmul_precision(torch_was)


def _torch_or_none() -> Any:
    try:
        import torch
    except ImportError:  # gpubp alone: only its switch to set
        return None
    return torch


def build_gpubp_step(
    net: StepNet, precision: str, device: str = "cuda", seed: int = 0, params: Params | None = None
) -> Step:
    """``net``'s training step at ``precision`` in gpubp, through ``gp.jit`` (one CUDA
    graph per replay on a GPU). Build and run it inside ``tf32_switches(precision)``."""
    import gpubp as gp
    from benchmarks.gpubp_steps import gpubp_mlp
    from gpubp.training import autocast_for, backward_and_step

    check_precision(precision)
    _check_sgd(net)
    gp.manual_seed(seed)
    model = gpubp_mlp(net.config, device, seed, params=params)
    opt = gp.optim.SGD(model.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM)
    x_host, labels_host = make_batch(net.config)
    x, labels = gp.tensor(x_host, device=device), gp.tensor(labels_host, device=device)
    scaler = gp.amp.GradScaler(_device_type(device)) if precision == "fp16" else None

    def step(x: gp.Tensor, labels: gp.Tensor) -> None:  # the CLI's step, as gpubp.training writes it
        with autocast_for(precision):
            loss = gp.cross_entropy(model(x), labels)
        opt.zero_grad()
        backward_and_step(loss, opt, scaler)

    run = gp.jit(step)

    def loss() -> float:
        with gp.no_grad():
            return float(gp.cross_entropy(model(x), labels).item())

    return Step(lambda: run(x, labels), loss)


def build_torch_step(
    net: StepNet, precision: str, device: str = "cuda", graph: bool = False, seed: int = 0, params: Params | None = None
) -> Step:
    """``net``'s training step at ``precision`` in PyTorch: eager, or (``graph``, CUDA
    only) warmed up on a side stream and then forward, loss, backward and the
    optimizer step captured as one ``torch.cuda.CUDAGraph``, as ``torch_steps`` does.

    fp16's graph uses ``SGD(fused=True)``: ``GradScaler.step`` reads the inf check
    back to the host (not capturable) unless the optimizer applies the scale and
    the check itself, which the fused SGD does. The eager fp16 step keeps the
    default optimizer, as the AMP recipe is usually written."""
    import torch
    import torch.nn.functional as F  # noqa: N812 (PyTorch's own spelling)

    from benchmarks.torch_steps import build_model

    check_precision(precision)
    _check_sgd(net)
    if graph and not device.startswith("cuda"):
        raise ValueError(f"graph=True captures a CUDA graph and needs a CUDA device, got {device!r}")
    torch.manual_seed(seed)
    model = build_model(net, device, seed, params)
    scaler = torch.amp.GradScaler(_device_type(device)) if precision == "fp16" else None
    fused = True if graph and scaler is not None else None
    optimizer = torch.optim.SGD(model.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM, fused=fused)
    x_host, labels_host = make_batch(net.config)
    x, labels = torch.from_numpy(x_host).to(device), torch.from_numpy(labels_host).to(device)
    half = AUTOCAST.get(precision)

    def forward_loss() -> Any:
        if half is None:
            return F.cross_entropy(model(x), labels)
        # The autocast cache keeps casts made in a capture alive past it; PyTorch's graph docs turn it off.
        with torch.autocast(_device_type(device), dtype=getattr(torch, half), cache_enabled=not graph):
            return F.cross_entropy(model(x), labels)

    def backward_update(loss: Any) -> None:
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    def eager() -> None:
        loss = forward_loss()
        optimizer.zero_grad(set_to_none=True)
        backward_update(loss)

    @torch.no_grad()
    def final_loss() -> float:
        return float(F.cross_entropy(model(x), labels).item())

    if not graph:
        return Step(eager, final_loss)
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(GRAPH_WARMUP_STEPS):
            eager()
    torch.cuda.current_stream().wait_stream(side)
    # None gradients: the captured backward allocates them from the graph's pool,
    # and every replay writes the same tensors (no zero_grad inside the graph).
    optimizer.zero_grad(set_to_none=True)
    captured = torch.cuda.CUDAGraph()
    with torch.cuda.graph(captured):
        backward_update(forward_loss())
    return Step(captured.replay, final_loss)


def _check_sgd(net: StepNet) -> None:
    # The precision rows time the SGD step of the earlier precision numbers; Adam's
    # capturable and fused variants under a GradScaler would be a study of their own.
    if net.optimizer != "sgd-momentum":
        raise ValueError(f"{net.name}: the precision steps use SGD with momentum, not {net.optimizer!r}")
