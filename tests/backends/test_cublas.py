"""gpubp's cuBLAS binding on a GPU: every layout the engine produces gives CuPy's
``a @ b`` bit for bit (the same cublasGemmEx call), and a product captured into a
CUDA graph replays it. The layout logic itself is tested on the CPU
(tests/backends/test_gemm_layout.py). Skipped without a GPU."""

from __future__ import annotations

import numpy as np
import pytest

import gpubp as gp
from tests.backends.test_gemm_layout import _arrays

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")


@pytest.fixture
def backend():
    return gp.backends.get_backend("cuda")


def _on_gpu_like(view: np.ndarray, dtype) -> cupy.ndarray:
    """The same view (offset, strides) of a device copy of the memory under ``view``."""
    base = view
    while base.base is not None:
        base = base.base
    device_base = cupy.asarray(base.astype(dtype))
    offset = (view.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // view.itemsize
    strides = tuple(s // view.itemsize * np.dtype(dtype).itemsize for s in view.strides)
    flat = device_base.reshape(-1)
    return cupy.lib.stride_tricks.as_strided(flat[offset:], shape=view.shape, strides=strides)


# The layouts the engine's ops produce (Linear forward and backward, MatMul): CuPy
# makes the same cuBLAS call for them. For sliced views CuPy copies first where
# the binding reads them in place (or copies to another order), so cuBLAS may
# take another kernel there: equal to rounding, not bit for bit.
ENGINE_LAYOUTS = [
    "contiguous",
    "x @ w.T (Linear forward)",
    "delta.T @ x (weight gradient)",
    "delta @ w (input gradient)",
    "both transposed",
]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("name", list(_arrays()))
def test_every_layout_gives_cupys_product(backend, dtype, name):
    a, b = _arrays()[name]
    a_gpu, b_gpu = _on_gpu_like(a, dtype), _on_gpu_like(b, dtype)
    got = backend.matmul(a_gpu, b_gpu)
    want = cupy.matmul(a_gpu, b_gpu)
    assert got.dtype == want.dtype and got.shape == want.shape and got.flags.c_contiguous
    if name in ENGINE_LAYOUTS:
        assert np.array_equal(cupy.asnumpy(got), cupy.asnumpy(want))
    else:
        exact = a.astype(dtype).astype(np.float64) @ b.astype(dtype).astype(np.float64)
        tolerance = {np.float16: 2e-3, np.float32: 1e-6, np.float64: 1e-14}[dtype]
        scale = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))
        assert np.all(np.abs(cupy.asnumpy(got).astype(np.float64) - exact) <= tolerance * scale + 1e-30)


@pytest.mark.parametrize(("m", "k", "n"), [(128, 784, 256), (256, 1024, 1024), (4096, 512, 10), (3, 0, 4)])
def test_engine_shapes_and_out_match_cupy(backend, m, k, n):
    rng = np.random.default_rng(0)
    x = cupy.asarray(rng.standard_normal((m, k)).astype(np.float32))
    w = cupy.asarray(rng.standard_normal((n, k)).astype(np.float32))
    assert np.array_equal(cupy.asnumpy(backend.matmul(x, w.T)), cupy.asnumpy(x @ w.T))
    out = cupy.full((n, k), np.nan, dtype=np.float32)
    delta = cupy.asarray(rng.standard_normal((m, n)).astype(np.float32))
    assert backend.matmul(delta.T, x, out=out) is out
    assert np.array_equal(cupy.asnumpy(out), cupy.asnumpy(delta.T @ x))


def test_tf32_switch_reaches_the_binding(backend):
    rng = np.random.default_rng(0)
    a = cupy.asarray(rng.standard_normal((512, 512)).astype(np.float32))
    exact = cupy.asnumpy(backend.matmul(a, a)).astype(np.float64)
    want = cupy.asnumpy(a).astype(np.float64) @ cupy.asnumpy(a).astype(np.float64)
    assert np.linalg.norm(exact - want) / np.linalg.norm(want) < 1e-5
    if cupy.cuda.Device().compute_capability < "80":
        pytest.skip("TF32 needs compute capability 8.0")
    gp.cuda.set_tf32(True)
    try:
        fast = cupy.asnumpy(backend.matmul(a, a)).astype(np.float64)
    finally:
        gp.cuda.set_tf32(False)
    assert np.linalg.norm(fast - want) / np.linalg.norm(want) > 1e-5


def test_a_captured_product_replays(backend):
    rng = np.random.default_rng(1)
    a = cupy.asarray(rng.standard_normal((64, 32)).astype(np.float32))
    b = cupy.asarray(rng.standard_normal((32, 16)).astype(np.float32))
    graph, out = backend.capture_graph(lambda values: backend.matmul(a, b))
    out.fill(np.nan)
    graph.launch()
    assert np.array_equal(cupy.asnumpy(out), cupy.asnumpy(a @ b))
    a[...] = 2 * a  # a replay reads the inputs' memory as it is then
    graph.launch()
    assert np.array_equal(cupy.asnumpy(out), cupy.asnumpy(a @ b))
