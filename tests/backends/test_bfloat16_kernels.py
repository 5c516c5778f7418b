"""bfloat16 on the GPU: cast.cu against ml_dtypes bit for bit, and every kernel's
bfloat16 instantiation (raw uint16 arrays) against its NumPy twin on ml_dtypes arrays.

The first test runs everywhere: it replays common.cuh's float -> bf16_t rounding
(bit arithmetic) in NumPy and checks it against ml_dtypes, so the algorithm is
verified on machines without a GPU. The rest need one.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpubp as gp
from gpubp import dtypes
from gpubp.backends import kernel_catalog

BF16 = dtypes.bfloat16
RAW = dtypes.RAW_BFLOAT16
# Both sides compute in float32 and round once to bfloat16; CUDA's expf/tanhf may
# differ from NumPy's by an ulp of float32, which moves a rounding by one bf16 ulp.
TOLERANCE = {"rtol": 8e-3, "atol": 1e-6}


def kernel_rounding(x: np.ndarray) -> np.ndarray:
    """common.cuh's Num<bf16_t>::store, step for step, on float32 values: their bits."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF
    quiet = (u >> 16) | 0x40
    return np.where(nan, quiet, rounded).astype(np.uint16)


def special_floats() -> np.ndarray:
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    ties = (rng.integers(0, 2**16, 1000, dtype=np.uint64) << 16 | 0x8000).astype(np.uint32)  # exactly halfway
    edges = np.array(
        [0, 0x80000000, 1, 0x8001, 0x7F7FFFFF, 0x7F7F8000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x3F808000],
        dtype=np.uint32,
    )
    values = np.concatenate([bits, ties, ties | 0x80000000, edges]).view(np.float32)
    return values[~np.isnan(values) | (values.view(np.uint32) & 0x003FFFFF == 0)]  # NaNs: the canonical ones


def test_the_kernels_rounding_is_ml_dtypes_bit_for_bit():
    x = special_floats()
    np.testing.assert_array_equal(kernel_rounding(x), x.astype(BF16).view(np.uint16))


def test_the_kernels_rounding_keeps_every_nan_a_nan():
    nans = np.array([0x7F800001, 0x7FA00000, 0xFFC00001, 0xFFFFFFFF], dtype=np.uint32).view(np.float32)
    assert np.isnan(kernel_rounding(nans).view(BF16).astype(np.float32)).all()


# -- on a GPU ------------------------------------------------------------------------------
cupy_required = pytest.mark.gpu


@pytest.fixture
def cb(monkeypatch):
    """The CUDA backend, with every kernel output pre-filled with a NaN's bits."""
    cupy = pytest.importorskip("cupy")
    backend = gp.backends.get_backend("cuda")

    def poisoned(shape, dtype):
        return cupy.full(shape, 0x7FC0 if np.dtype(dtype) == RAW else np.nan, dtype=dtype)

    monkeypatch.setattr(backend, "_empty", poisoned)
    return backend


@pytest.fixture
def ref():
    return gp.backends.cpu()


def on_gpu(cb, a: np.ndarray):
    return cb.from_host(a)


def host(cb, a) -> np.ndarray:
    return cb.to_host(a)


def close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), equal_nan=True, **TOLERANCE)


def values(shape, dtype=BF16, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape) * 3
    flat = a.reshape(-1)
    flat[:: max(1, flat.size // 7)] = 100.0
    return a.astype(np.float32).astype(dtype)


@cupy_required
@pytest.mark.parametrize(("source", "target"), kernel_catalog.CAST_PAIRS)
def test_cast_kernels_are_ml_dtypes_bit_for_bit(cb, source, target):
    source_dtype = dtypes.as_dtype(source)
    x = special_floats().astype(source_dtype) if source != "bfloat16" else special_floats().astype(BF16)
    got = host(cb, cb.astype(on_gpu(cb, x), dtypes.as_dtype(target)))
    want = x.astype(dtypes.as_dtype(target))
    both_nan = np.isnan(got.astype(np.float64)) & np.isnan(want.astype(np.float64))
    np.testing.assert_array_equal(got.view(f"u{got.itemsize}")[~both_nan], want.view(f"u{want.itemsize}")[~both_nan])


@cupy_required
@pytest.mark.parametrize("activation", [None, "sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("shape", [(3, 5), (64, 64), (257, 10)])
def test_bias_activation_matches_twin(cb, ref, activation, shape):
    x, bias = values(shape), values(shape[1:], seed=1)
    got = cb.bias_activation(on_gpu(cb, x), on_gpu(cb, bias), activation)
    close(host(cb, got), ref.bias_activation(x.copy(), bias, activation))


@cupy_required
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_activation_backward_matches_twin(cb, ref, activation):
    g, y = values((1000, 3)), ref.bias_activation(values((1000, 3), seed=2), None, activation)
    close(
        host(cb, cb.activation_backward(on_gpu(cb, g), on_gpu(cb, y), activation)),
        ref.activation_backward(g, y, activation),
    )


@cupy_required
@pytest.mark.parametrize("bias_dtype", [None, dtypes.float32])
@pytest.mark.parametrize("shape", [(5, 33), (1000, 257)])
def test_linear_delta_with_a_float32_bias_gradient_matches_twin(cb, ref, bias_dtype, shape):
    g, y = values(shape), ref.bias_activation(values(shape, seed=3), None, "sigmoid")
    delta, bias = cb.linear_delta(on_gpu(cb, g), on_gpu(cb, y), "sigmoid", True, bias_dtype)
    want_delta, want_bias = ref.linear_delta(g, y, "sigmoid", True, bias_dtype)
    close(host(cb, delta), want_delta)
    assert host(cb, bias).dtype == (bias_dtype or BF16)
    np.testing.assert_allclose(host(cb, bias).astype(np.float64), want_bias.astype(np.float64), rtol=1e-2, atol=1e-3)


@cupy_required
@pytest.mark.parametrize("out_dtype", [None, dtypes.float32])
@pytest.mark.parametrize(("m", "k", "n"), [(3, 5, 7), (128, 256, 64), (1000, 784, 10)])
def test_bfloat16_gemm_is_float32_math_on_the_rounded_inputs(cb, ref, out_dtype, m, k, n):
    a, b = values((m, k)) / 10, values((k, n), seed=4) / 10
    got = host(cb, cb.matmul(on_gpu(cb, a), on_gpu(cb, b), out_dtype=out_dtype))
    want = ref.matmul(a, b, out_dtype=out_dtype)
    assert got.dtype == want.dtype == (out_dtype or BF16)
    scale = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))  # the sum's magnitude bounds its error
    error = np.abs(got.astype(np.float64) - want.astype(np.float64))
    assert (error <= (1e-5 if out_dtype else 8e-3) * scale + 1e-6).all()


@cupy_required
@pytest.mark.parametrize("rows", [1, 257])
def test_softmax_cross_entropy_matches_twin(cb, ref, rows):
    logits, labels = values((rows, 10)), np.arange(rows) % 10
    loss, probs = cb.softmax_cross_entropy(on_gpu(cb, logits), on_gpu(cb, labels))
    want_loss, want_probs = ref.softmax_cross_entropy(logits, labels)
    close(host(cb, probs), want_probs)
    close(host(cb, loss), want_loss)


@cupy_required
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_optimizer_updates_of_bfloat16_parameters_match_twin(cb, ref, kind):
    shapes = [(5,), (4099,)]
    arrays = [[values(s, seed=i + j) for j in range(4)] for i, s in enumerate(shapes)]
    for i, group in enumerate(arrays):
        group[3] = np.abs(group[3])  # exp_avg_sq is non-negative
        if kind == "sgd":
            arrays[i] = group[:3]
    hyper = (
        {"lr": 0.1, "momentum": 0.9, "dampening": 0.0, "weight_decay": 1e-2, "nesterov": False, "first_step": False}
        if kind == "sgd"
        else {"step": 3, "lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "decoupled": False}
    )
    device = [tuple(on_gpu(cb, a) for a in group) for group in arrays]
    getattr(cb, f"{kind}_updates")(device, lambda: [hyper] * len(shapes))
    for group in arrays:
        getattr(ref, f"{kind}_update")(*group, **hyper)
    for got, want in zip(device, arrays):
        for g, w in zip(got, want):
            close(host(cb, g), w)


@cupy_required
def test_dropout_of_bfloat16_draws_one_mask_forward_and_backward(cb):
    x = on_gpu(cb, np.ones((64, 33), BF16))
    y, saved = cb.dropout_forward(x, 0.5)
    grad = cb.dropout_backward(x, saved)
    np.testing.assert_array_equal(host(cb, y).astype(np.float32), host(cb, grad).astype(np.float32))
    assert set(np.unique(host(cb, y).astype(np.float32))) <= {0.0, 2.0}
