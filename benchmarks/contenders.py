"""The four contenders of ``compare.py``, each a zero-argument training step.

    gpubp        the README's loop: cross_entropy(model(x)), zero_grad, backward, SGD step
    torch        the same in PyTorch eager (same threads, float32, TF32 off on a GPU)
    numpy-hand   ``reference.HandMLP``: the δ equations by hand, buffers reused
    floor        ``reference.GemmFloor``: only the matrix products a step must do

``build`` imports only what the contender needs, so a worker process timing
NumPy never loads PyTorch's OpenMP runtime (see ``compare.py`` for why that matters).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.mlp import LEARNING_RATE, Config, init_params, make_batch

NAMES = ("gpubp", "numpy-hand", "torch", "floor")


@dataclass
class Contender:
    """A built training step. ``time_block(n, clock)`` runs n steps and returns the
    seconds per step, measured until the device has finished the work; on the CPU
    ``clock`` is ``time.perf_counter`` (wall) or ``time.process_time`` (CPU time of
    the process, which a busy neighbour cannot inflate when the step is single-threaded)."""

    name: str
    device: str
    step: Callable[[], Any]
    time_block: Callable[..., float]
    info: dict[str, Any] = field(default_factory=dict)
    # The objects behind ``step`` (model, optimizer, batch), for profile_step.py.
    parts: dict[str, Any] = field(default_factory=dict)


def cpu_block_timer(step: Callable[[], Any]) -> Callable[..., float]:
    def time_block(n: int, clock: Callable[[], float] = time.perf_counter) -> float:
        start = clock()
        for _ in range(n):
            step()
        return (clock() - start) / n

    return time_block


def cupy_block_timer(step: Callable[[], Any]) -> Callable[..., float]:
    """CUDA events around the block: the span ends when the GPU has finished the
    last step, not when the CPU has queued it."""
    import cupy

    start, end = cupy.cuda.Event(), cupy.cuda.Event()

    def time_block(n: int, clock: Any = None) -> float:  # events are the clock on a GPU
        cupy.cuda.get_current_stream().synchronize()
        start.record()
        for _ in range(n):
            step()
        end.record()
        end.synchronize()
        return cupy.cuda.get_elapsed_time(start, end) / 1e3 / n

    return time_block


def torch_cuda_block_timer(step: Callable[[], Any]) -> Callable[..., float]:
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def time_block(n: int, clock: Any = None) -> float:
        torch.cuda.synchronize()
        start.record()
        for _ in range(n):
            step()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / n

    return time_block


def _array_module(device: str) -> Any:
    if device == "cpu":
        import numpy

        return numpy
    import cupy

    return cupy


def build(name: str, config: Config, device: str = "cpu", threads: int | None = None, seed: int = 0) -> Contender:
    """The contender ``name`` (one of NAMES) for ``config`` on ``device`` ("cpu" or "cuda"),
    from the shared initial weights and batch. ``threads`` sets PyTorch's intra-op
    threads; NumPy's BLAS threads are set by the environment before NumPy loads."""
    builders = {"gpubp": _gpubp, "numpy-hand": _numpy_hand, "torch": _torch, "floor": _floor}
    if name not in builders:
        raise ValueError(f"unknown contender {name!r}; choose from {NAMES}")
    contender = builders[name](config, device, threads, seed)
    if device != "cpu":
        contender.info["gpu"] = _gpu_name(name)
    return contender


def _gpu_name(name: str) -> str:
    """The GPU's name, asked through the library the contender already loaded."""
    if name == "torch":
        import torch

        return torch.cuda.get_device_name()
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    return props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])


def _timer_for(device: str, step: Callable[[], Any]) -> Callable[..., float]:
    return cpu_block_timer(step) if device == "cpu" else cupy_block_timer(step)


def _gpubp(config: Config, device: str, threads: int | None, seed: int) -> Contender:
    import gpubp as gp
    from benchmarks.gpubp_steps import gpubp_mlp

    model = gpubp_mlp(config, device, seed)
    opt = gp.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    x_np, labels_np = make_batch(config)
    x, labels = gp.tensor(x_np, device=device), gp.tensor(labels_np, device=device)

    def step() -> Any:
        loss = gp.cross_entropy(model(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    parts = {"model": model, "opt": opt, "x": x, "labels": labels}
    return Contender("gpubp", device, step, _timer_for(device, step), {"version": gp.__version__}, parts)


def _numpy_hand(config: Config, device: str, threads: int | None, seed: int) -> Contender:
    from benchmarks.reference import HandMLP

    xp = _array_module(device)
    net = HandMLP(
        [(xp.asarray(w), xp.asarray(b)) for w, b in init_params(config, seed)], config.batch, LEARNING_RATE, xp
    )
    x_np, labels_np = make_batch(config)
    x, labels = xp.asarray(x_np), xp.asarray(labels_np)

    def step() -> Any:
        return net.step(x, labels)

    parts = {"net": net, "x": x, "labels": labels}
    return Contender("numpy-hand", device, step, _timer_for(device, step), {"version": xp.__version__}, parts)


def _floor(config: Config, device: str, threads: int | None, seed: int) -> Contender:
    from benchmarks.reference import GemmFloor

    xp = _array_module(device)
    floor = GemmFloor([(xp.asarray(w), xp.asarray(b)) for w, b in init_params(config, seed)], config.batch, xp)
    x = xp.asarray(make_batch(config)[0])

    def step() -> None:
        floor.step(x)

    return Contender("floor", device, step, _timer_for(device, step), {"version": xp.__version__})


def _torch(config: Config, device: str, threads: int | None, seed: int) -> Contender:
    import torch

    if threads:
        torch.set_num_threads(threads)
    if device != "cpu":
        # Same arithmetic as the others: full float32 products, no TF32 tensor-core shortcut.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    layers: list[torch.nn.Module] = []
    for i, (w, b) in enumerate(init_params(config, seed)):
        linear = torch.nn.Linear(w.shape[1], w.shape[0], dtype=torch.float32, device=device)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w))
            linear.bias.copy_(torch.from_numpy(b))
        layers.append(linear)
        if i < len(config.layers) - 1:
            layers.append(torch.nn.Sigmoid())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    x_np, labels_np = make_batch(config)
    x, labels = torch.from_numpy(x_np).to(device), torch.from_numpy(labels_np).to(device)
    cross_entropy = torch.nn.functional.cross_entropy

    def step() -> Any:
        loss = cross_entropy(model(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    timer = cpu_block_timer(step) if device == "cpu" else torch_cuda_block_timer(step)
    return Contender("torch", device, step, timer, {"version": torch.__version__, "threads": torch.get_num_threads()})
