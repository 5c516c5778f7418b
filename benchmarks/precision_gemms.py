"""A training step's matrix products alone, at a precision, through gpubp's own
cuBLAS binding (``backend.matmul``, as ``gpubp/ops/linear.py`` calls it) and
through ``torch.matmul``; and the GPU's bf16 GEMM rate, one square product.

The products are those of ``Config.gemm_flops``, in the shapes and dtypes the step
uses: forward x·Wᵀ for every layer, backward ∂W = δᵀ·x for every layer and
∂x = δ·W for every layer but the first. fp32 and tf32 multiply float32 arrays
(``tf32_switches`` decides the compute type), bf16 and fp16 multiply 16-bit
arrays with float32 accumulation (cuBLAS's compute type in both libraries). As in
each library's autocast step, gpubp writes ∂W of the float32 master weight as
float32 straight from the GEMM (``ops/linear.py``), while PyTorch's products
write 16 bits (its autocast casts ∂W to float32 in a pass of its own).

On a GPU each set of products is captured once as a CUDA graph and replayed, so
the time is the device's alone: the floor a step at that precision cannot beat.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks.precision_steps import AUTOCAST, check_precision

Shape = tuple[int, int, int]  # (m, k, n): an (m, k) by (k, n) product


def step_gemm_shapes(sizes: tuple[int, ...], batch: int) -> list[Shape]:
    """(m, k, n) of every product of one step of an MLP of layer ``sizes``, in the
    order the GEMM rows run them: forward, then ∂W, then ∂x."""
    layers = list(zip(sizes[:-1], sizes[1:]))
    forward = [(batch, fan_in, fan_out) for fan_in, fan_out in layers]
    weight_grads = [(fan_out, batch, fan_in) for fan_in, fan_out in layers]
    input_grads = [(batch, fan_out, fan_in) for fan_in, fan_out in layers[1:]]
    return forward + weight_grads + input_grads


def flops(shapes: list[Shape]) -> int:
    """2·m·k·n per product: a multiply and an add per term."""
    return sum(2 * m * k * n for m, k, n in shapes)


def tflop_per_s(count: float, ms: float) -> float:
    return count / 1e12 / (ms / 1e3)


def _layers(sizes: tuple[int, ...], batch: int, make: Callable[[int, int], Any]) -> list[tuple[Any, Any, Any]]:
    """(x (batch, in), W (out, in), δ (batch, out)) per layer, made by ``make(rows, cols)``."""
    return [(make(batch, i), make(o, i), make(batch, o)) for i, o in zip(sizes[:-1], sizes[1:])]


def gpubp_gemms(sizes: tuple[int, ...], batch: int, precision: str, device: str = "cuda") -> Callable[[], None]:
    """The step's products through gpubp's backend, replayed as one CUDA graph on a
    GPU (called as they are on the CPU). Build and run inside ``tf32_switches``."""
    import gpubp as gp

    check_precision(precision)
    backend = gp.backends.get_backend(device)
    dtype = getattr(gp, AUTOCAST.get(precision, "float32"))
    # Made as gpubp tensors so each array is stored as the backend stores that dtype.
    layers = _layers(sizes, batch, lambda rows, cols: gp.randn(rows, cols, device=device).to(dtype=dtype).data)

    def products() -> None:
        for x, w, _ in layers:
            backend.matmul(x, w.T)
        for x, w, delta in layers:
            backend.matmul(delta.T, x, out=backend.empty(w.shape, gp.float32))
        for _, w, delta in layers[1:]:
            backend.matmul(delta, w)

    return _replayable(products, backend)


def torch_gemms(sizes: tuple[int, ...], batch: int, precision: str, device: str = "cuda") -> Callable[[], None]:
    """The step's products through ``torch.matmul``, replayed as one CUDA graph on a GPU."""
    import torch

    check_precision(precision)
    dtype = getattr(torch, AUTOCAST.get(precision, "float32"))
    generator = torch.Generator(device).manual_seed(0)
    layers = _layers(
        sizes, batch, lambda rows, cols: torch.randn(rows, cols, device=device, dtype=dtype, generator=generator)
    )

    def products() -> None:
        for x, w, _ in layers:
            torch.matmul(x, w.T)
        for x, _, delta in layers:
            torch.matmul(delta.T, x)
        for _, w, delta in layers[1:]:
            torch.matmul(delta, w)

    return _torch_replayable(products, device)


def gpubp_square(n: int, device: str = "cuda") -> Callable[[], None]:
    """One (n, n) by (n, n) bf16 product through gpubp's backend (float32 accumulation)."""
    import gpubp as gp

    backend = gp.backends.get_backend(device)
    a, b = (gp.randn(n, n, device=device).to(dtype=gp.bfloat16).data for _ in range(2))
    return _replayable(lambda: backend.matmul(a, b), backend)


def torch_square(n: int, device: str = "cuda") -> Callable[[], None]:
    """One (n, n) by (n, n) bf16 ``torch.matmul`` (float32 accumulation)."""
    import torch

    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    return _torch_replayable(lambda: torch.matmul(a, b), device)


def _replayable(products: Callable[[], None], backend: Any) -> Callable[[], None]:
    if not backend.supports_graphs:
        return products
    products()  # cuBLAS's first call of a shape sets things up: not in the capture
    graph, _ = backend.capture_graph(lambda values: products())
    return _KeepsInputs(graph.launch, products)


def _torch_replayable(products: Callable[[], None], device: str) -> Callable[[], None]:
    if not device.startswith("cuda"):
        return products
    import torch

    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        products()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        products()
    return _KeepsInputs(graph.replay, products)


class _KeepsInputs:
    """A graph's replay that also holds the products' closure, and so their input
    arrays: the graph reads them at every replay, so they must outlive it (freed,
    their memory would be handed to other work, or back to the driver)."""

    def __init__(self, replay: Callable[[], None], products: Callable[[], None]) -> None:
        self._replay = replay
        self._products = products

    def __call__(self) -> None:
        self._replay()
