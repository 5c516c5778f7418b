"""The loss-scaling kernels against their NumPy twins: amp.cu's unscale, scale
update and step counting, and optim.cu's updates with a GradScaler's found_inf
and device step counts (kernels/amp.cu, kernels/optim.cu; twins in
gpubp/backends/base.py). Skipped without a GPU."""

from __future__ import annotations

import numpy as np
import pytest

import gpubp as gp
from gpubp.backends import kernel_catalog as catalog

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")

DTYPES = [np.float16, np.float32, np.float64]
TOLERANCE = {
    np.dtype(np.float16): {"rtol": 5e-3, "atol": 2e-3},
    np.dtype(np.float32): {"rtol": 2e-6, "atol": 1e-30},
    np.dtype(np.float64): {"rtol": 1e-13, "atol": 1e-300},
}
CHUNK = catalog.MULTI_TENSOR_CHUNK


@pytest.fixture
def cb():
    return gp.backends.get_backend("cuda")


@pytest.fixture
def ref():
    return gp.backends.cpu()


def on_gpu(a: np.ndarray, aligned: bool = True):
    """A device copy of ``a``; misaligned: one element past a 16-byte boundary (the scalar path)."""
    if aligned:
        return cupy.asarray(a)
    base = cupy.empty(a.size + 1, dtype=a.dtype)
    view = base[1:].reshape(a.shape)
    view[...] = cupy.asarray(a)
    return view


def host(a) -> np.ndarray:
    return cupy.asnumpy(a)


def gradients(rng, n: int, dtype, bad: float | None) -> np.ndarray:
    """Gradients away from the subnormals (the GPU flushes float32 ones to 0), with ``bad`` at one place."""
    g = rng.standard_normal(n) * 3 + np.sign(rng.standard_normal(n))
    g[rng.integers(0, n, max(1, n // 50))] = 1000.0
    if bad is not None:
        g[rng.integers(0, n)] = bad
    return g.astype(dtype)


# -- amp_unscale ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 4099, 65537])
@pytest.mark.parametrize("bad", [None, np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("aligned", [True, False])
def test_unscale_matches_twin(cb, ref, dtype, n, bad, aligned):
    rng = np.random.default_rng(n)
    g = gradients(rng, n, dtype, bad)
    g_gpu = on_gpu(g, aligned)
    inv_scale = np.array(1 / 3, dtype=np.float32)  # not a power of two: the product is rounded
    found, found_gpu = np.zeros((), np.float32), cupy.zeros((), np.float32)
    ref.unscale_grads([g], inv_scale, found)
    cb.unscale_grads([g_gpu], cupy.asarray(inv_scale), found_gpu)
    np.testing.assert_array_equal(host(g_gpu), g)
    assert host(found_gpu) == found == (0.0 if bad is None else 1.0)


def test_unscale_of_many_tensors_of_mixed_dtypes_in_one_call(cb, ref):
    """More gradients than a launch takes, three dtypes, sizes around the chunk, a
    misaligned one and a strided one (the generic path); the one inf is in the last launch."""
    rng = np.random.default_rng(3)
    sizes = [1, 7, CHUNK - 1, CHUNK, CHUNK + 5, 3 * CHUNK + 17, 1000] * 3
    grads = [gradients(rng, n, DTYPES[i % 3], np.inf if i == 19 else None) for i, n in enumerate(sizes)]
    on_device = [on_gpu(g, aligned=i != 4) for i, g in enumerate(grads)]
    on_device[5] = cupy.zeros(2 * sizes[5], dtype=grads[5].dtype)[::2]  # strided: the generic path, in place
    on_device[5][...] = cupy.asarray(grads[5])
    inv_scale = np.array(2.0**-10, dtype=np.float32)
    found, found_gpu = np.zeros((), np.float32), cupy.zeros((), np.float32)
    ref.unscale_grads(grads, inv_scale, found)
    cb.unscale_grads(on_device, cupy.asarray(inv_scale), found_gpu)
    for got, want in zip(on_device, grads):
        np.testing.assert_array_equal(host(got), want)
    assert host(found_gpu) == found == 1.0


def test_unscale_never_clears_found_inf(cb):
    g = cupy.ones(10, dtype=np.float32)
    found = cupy.ones((), np.float32)
    cb.unscale_grads([g], cupy.ones((), np.float32), found)
    assert host(found) == 1.0


# -- update_scale ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scale", "growth_factor", "backoff_factor"),
    [(2.0**16, 2.0, 0.5), (3.0, 1.7, 0.3), (2.0**127, 2.0, 0.5)],  # rounded products; growth past float32's range
)
def test_update_scale_matches_twin(cb, ref, scale, growth_factor, backoff_factor):
    flags = [0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0]
    state = [np.array(scale, np.float32), np.array(0, np.int32)]
    device = [cupy.asarray(a) for a in state]
    for flag in flags:
        ref.update_scale(*state, np.array(flag, np.float32), lambda: (growth_factor, backoff_factor, 3))
        cb.update_scale(*device, cupy.full((), flag, np.float32), lambda: (growth_factor, backoff_factor, 3))
        assert host(device[0]) == state[0] and host(device[1]) == state[1], flag
    assert np.isfinite(state[0])


# -- advance_steps --------------------------------------------------------------------------
@pytest.mark.parametrize("flag", [None, 0.0, 1.0])
def test_advance_steps_matches_twin(cb, ref, flag):
    counts = [None if i % 7 == 3 else np.array(float(i), np.float64) for i in range(1000)]  # three launches
    device = [None if c is None else cupy.asarray(c) for c in counts]
    ref.advance_steps(counts, None if flag is None else np.array(flag, np.float32))
    cb.advance_steps(device, None if flag is None else cupy.full((), flag, np.float32))
    for got, want in zip(device, counts):
        assert (got is None and want is None) or host(got) == want


# -- optim.cu with found_inf and device step counts --------------------------------------------
HYPERS = {
    "sgd": {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 1e-2, "nesterov": False},
    "adam": {"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2, "decoupled": True},
}


def update_arrays(rng, kind: str, n: int, dtype, count: float) -> list[np.ndarray]:
    """param, grad and the state buffers (a momentum buffer counted 0 holds NaN: it must not be read)."""
    p = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    if kind == "sgd":
        return [p, g, np.full(n, np.nan, dtype) if count == 0 else rng.standard_normal(n).astype(dtype)]
    return [p, g, rng.standard_normal(n).astype(dtype), np.abs(rng.standard_normal(n)).astype(dtype)]


def run_updates(backend, kind: str, tensors: list, steps: list, found_inf) -> None:
    hyper = {**HYPERS[kind], ("first_step" if kind == "sgd" else "step"): None}  # the counts decide
    update = backend.sgd_updates if kind == "sgd" else backend.adam_updates
    update([tuple(t) for t in tensors], lambda: [hyper] * len(tensors), found_inf=found_inf, steps=steps)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_updates_with_device_step_counts_match_twin(cb, ref, kind, dtype):
    """Three updates, the middle one skipped, from counts 0 (SGD: the buffer's first
    step; Adam: t = 1) and more, against the twin reading the same counts."""
    rng = np.random.default_rng(7)
    sizes, start = [1, 7, 4099], [0.0, 3.0, 0.0]
    cpu = [update_arrays(rng, kind, n, dtype, count) for n, count in zip(sizes, start)]
    gpu = [[on_gpu(a) for a in arrays] for arrays in cpu]
    counts = [np.array(c, np.float64) for c in start]
    device_counts = [cupy.asarray(c) for c in counts]
    for flag in (0.0, 1.0, 0.0):
        run_updates(ref, kind, cpu, counts, np.array(flag, np.float32))
        run_updates(cb, kind, gpu, device_counts, cupy.full((), flag, np.float32))
    for got, want in zip(gpu, cpu):
        for index in [0, *range(2, len(want))]:
            np.testing.assert_allclose(host(got[index]), want[index], **TOLERANCE[np.dtype(dtype)])
    assert [float(host(c)) for c in device_counts] == [float(c) for c in counts] == [c + 2 for c in start]


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_skipped_update_writes_nothing_and_counts_nothing(cb, kind, dtype):
    rng = np.random.default_rng(9)
    cpu = [update_arrays(rng, kind, n, dtype, count) for n, count in ((5, 0.0), (4099, 4.0))]
    gpu = [[on_gpu(a) for a in arrays] for arrays in cpu]
    device_counts = [cupy.zeros((), np.float64), cupy.full((), 4.0, np.float64)]
    run_updates(cb, kind, gpu, device_counts, cupy.ones((), np.float32))
    for got, want in zip(gpu, cpu):
        for index in [0, *range(2, len(want))]:
            np.testing.assert_array_equal(host(got[index]), want[index])
    assert [float(host(c)) for c in device_counts] == [0.0, 4.0]
