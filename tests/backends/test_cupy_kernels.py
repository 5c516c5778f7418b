"""Every CUDA kernel against its NumPy twin (the generic ``Backend`` method run by the
CPU backend, or ``gpubp.backends.philox`` for random numbers).

Inputs are random, with sizes that are not multiples of the block size, entries
set to ±100 and ±1000, and NaNs; float16, float32 and float64; aligned (16-byte
vector) and misaligned (scalar) paths. Every kernel output is allocated already
filled with NaN (the ``poisoned`` fixture), so an element a kernel forgets to
write fails the comparison. Skipped without a GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

import gpubp as gp
from gpubp.backends import philox

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")

DTYPES = [np.float16, np.float32, np.float64]
# float32 atol covers flush-to-zero: CuPy compiles with -ftz=true, so float32
# results below 1.2e-38 are 0 on the GPU where NumPy keeps subnormals.
TOLERANCE = {
    np.dtype(np.float16): {"rtol": 5e-3, "atol": 2e-3},
    np.dtype(np.float32): {"rtol": 2e-6, "atol": 1e-30},
    np.dtype(np.float64): {"rtol": 1e-13, "atol": 1e-300},
}
SIZES = [1, 3, 255, 257, 1000, 4099, 65537]
ACTIVATIONS = [None, "sigmoid", "tanh", "relu"]


@pytest.fixture
def cb(monkeypatch):
    """The CUDA backend, with every kernel output pre-filled with NaN."""
    backend = gp.backends.get_backend("cuda")
    monkeypatch.setattr(backend, "_empty", lambda shape, dtype: cupy.full(shape, np.nan, dtype=dtype))
    return backend


@pytest.fixture
def ref():
    return gp.backends.cpu()


def values(rng, shape, dtype, nan=True):
    """Normal values with some entries set to ±100, ±1000 and (optionally) NaN."""
    a = rng.standard_normal(shape) * 3
    flat = a.reshape(-1)
    count = max(1, flat.size // 20)
    flat[rng.integers(0, flat.size, count)] = rng.choice([100.0, -100.0, 1000.0, -1000.0], count)
    if nan and flat.size > 4:
        flat[rng.integers(0, flat.size, max(1, flat.size // 100))] = np.nan
    return a.astype(dtype)


def on_gpu(a):
    return cupy.asarray(a)


def close(got, want, dtype=None):
    got = cupy.asnumpy(got) if isinstance(got, cupy.ndarray) else np.asarray(got)
    dtype = np.dtype(dtype or want.dtype)
    assert got.dtype == dtype and got.shape == want.shape
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), equal_nan=True, **TOLERANCE[dtype])


def misaligned(a):
    """A contiguous device copy of ``a`` that starts one element past a 16-byte boundary."""
    base = cupy.empty(a.size + 1, dtype=a.dtype)
    view = base[1:].reshape(a.shape)
    view[...] = on_gpu(a)
    assert view.data.ptr % 16 != 0
    return view


# -- activation.cu -------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (7, 8), (257, 10), (33, 64), (129, 129)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_bias_activation_matches_twin(cb, ref, dtype, activation, shape, with_bias):
    rng = np.random.default_rng(zlib.crc32(repr((dtype, activation, shape, with_bias)).encode()))
    z = values(rng, shape, dtype)
    bias = values(rng, shape[1:], dtype, nan=False) if with_bias else None
    want = ref.bias_activation(z.copy(), bias, activation)
    z_gpu = on_gpu(z)
    got = cb.bias_activation(z_gpu, None if bias is None else on_gpu(bias), activation)
    close(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("n", SIZES)
def test_activation_forward_matches_twin(cb, ref, dtype, activation, n):
    z = values(np.random.default_rng(n), (n,), dtype)
    want = getattr(ref, activation)(z.copy())
    close(getattr(cb, activation)(on_gpu(z)), want)
    close(getattr(cb, activation)(misaligned(z)), want)  # the scalar (VEC = 1) path


@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_forward_writes_into_out(cb, ref, dtype):
    z = values(np.random.default_rng(0), (1001,), dtype)
    out = cupy.full(z.shape, np.nan, dtype=dtype)
    assert cb.sigmoid(on_gpu(z), out=out) is out
    close(out, ref.sigmoid(z.copy()))


def test_sigmoid_is_stable_for_huge_inputs(cb):
    z = on_gpu(np.array([-1e4, -1000.0, -100.0, 0.0, 100.0, 1000.0, 1e4], dtype=np.float32))
    y = cupy.asnumpy(cb.sigmoid(z))
    assert np.isfinite(y).all() and y[0] == 0 and y[3] == 0.5 and y[-1] == 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("n", SIZES)
def test_activation_backward_matches_twin(cb, ref, dtype, activation, n):
    rng = np.random.default_rng(n + 7)
    y = getattr(ref, activation)(values(rng, (n,), dtype))
    g = values(rng, (n,), dtype)
    want = ref.activation_backward(g.copy(), y.copy(), activation)
    close(cb.activation_backward(on_gpu(g), on_gpu(y), activation), want)
    close(cb.activation_backward(misaligned(g), misaligned(y), activation), want)


def test_activation_backward_takes_a_zero_stride_gradient(cb, ref):
    y = ref.sigmoid(np.random.default_rng(1).standard_normal((37, 11)).astype(np.float32))
    g = cupy.broadcast_to(cupy.asarray(np.float32(0.5)), y.shape)  # the gradient of a sum
    want = ref.sigmoid_backward(np.full(y.shape, 0.5, np.float32), y)
    close(cb.sigmoid_backward(g, on_gpu(y)), want)


# -- softmax_xent.cu -----------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
@pytest.mark.parametrize(("rows", "classes"), [(1, 1), (1, 2), (5, 10), (257, 10), (64, 33), (300, 1000)])
@pytest.mark.parametrize("scale", [1.0, 100.0, 1000.0])
def test_softmax_cross_entropy_matches_twin(cb, ref, dtype, label_dtype, rows, classes, scale):
    rng = np.random.default_rng(rows * classes)
    logits = (rng.standard_normal((rows, classes)) * scale).astype(dtype)
    labels = rng.integers(0, classes, rows).astype(label_dtype)
    want_loss, want_probs = ref.softmax_cross_entropy(logits, labels)
    loss, probs = cb.softmax_cross_entropy(on_gpu(logits), on_gpu(labels))
    assert loss.shape == () and loss.dtype == dtype
    # The kernel's online sum rounds differently from NumPy's pairwise sum.
    tolerance = {
        np.dtype(np.float16): {"rtol": 2e-2, "atol": 2e-3},
        np.dtype(np.float32): {"rtol": 1e-5, "atol": 1e-30},
        np.dtype(np.float64): {"rtol": 1e-12, "atol": 1e-300},
    }[np.dtype(dtype)]
    np.testing.assert_allclose(float(loss), float(want_loss), **tolerance)
    np.testing.assert_allclose(cupy.asnumpy(probs).astype(np.float64), want_probs.astype(np.float64), **tolerance)
    # Backward from the same probabilities: the same arithmetic as the twin.
    g = np.asarray(1.5, dtype=dtype)
    want_grad = ref.softmax_cross_entropy_backward(want_probs, labels, g)
    close(cb.softmax_cross_entropy_backward(on_gpu(want_probs), on_gpu(labels), on_gpu(g)), want_grad)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy_propagates_nan_per_row(cb, ref, dtype):
    logits = np.random.default_rng(3).standard_normal((4, 7)).astype(dtype)
    logits[1, 3] = np.nan
    labels = np.array([0, 1, 2, 6])
    loss, probs = cb.softmax_cross_entropy(on_gpu(logits), on_gpu(labels))
    probs = cupy.asnumpy(probs)
    assert np.isnan(float(loss))
    assert np.isnan(probs[1]).all() and np.isfinite(np.delete(probs, 1, axis=0)).all()
    want = ref.softmax_cross_entropy(logits, labels)[1]
    tolerance = {"rtol": 2e-2, "atol": 2e-3} if dtype == np.float16 else {"rtol": 1e-5, "atol": 1e-30}
    np.testing.assert_allclose(probs.astype(np.float64), want.astype(np.float64), equal_nan=True, **tolerance)


def test_softmax_cross_entropy_handles_minus_infinity(cb, ref):
    logits = np.array([[-np.inf, 0.0, 1.0], [2.0, -np.inf, -np.inf]], dtype=np.float32)
    labels = np.array([2, 0])
    want_loss, want_probs = ref.softmax_cross_entropy(logits, labels)
    loss, probs = cb.softmax_cross_entropy(on_gpu(logits), on_gpu(labels))
    np.testing.assert_allclose(cupy.asnumpy(probs), want_probs, rtol=1e-5, atol=1e-30)
    np.testing.assert_allclose(float(loss), float(want_loss), rtol=1e-5)


@pytest.mark.parametrize("bad", [-1, 10, 2**40])
def test_bad_label_is_reported_at_the_next_synchronisation(bad):
    logits = gp.randn(6, 10, device="cuda", requires_grad=True)
    labels = gp.tensor(np.array([0, 1, 2, bad, 4, 5], dtype=np.int64), device="cuda")
    loss = gp.cross_entropy(logits, labels)  # no host round trip, so no error yet
    with pytest.raises(IndexError, match=rf"cross_entropy: label {bad} is out of range for 10 classes"):
        loss.item()
    assert np.isnan(loss.item())  # reported once; the loss itself is NaN
    for check in (lambda t: t.numpy(), lambda t: gp.cuda.synchronize()):
        loss = gp.cross_entropy(logits, labels)
        with pytest.raises(IndexError, match="cross_entropy"):
            check(loss)
    good = gp.tensor(np.arange(6) % 10, device="cuda")
    assert np.isfinite(gp.cross_entropy(logits, good).item())


# -- optim.cu --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "hyper",
    [
        {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False},
        {"momentum": 0.9, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False},
        {"momentum": 0.9, "dampening": 0.1, "weight_decay": 1e-2, "nesterov": False},
        {"momentum": 0.8, "dampening": 0.0, "weight_decay": 1e-3, "nesterov": True},
    ],
)
@pytest.mark.parametrize("n", [1, 7, 1000, 4099])
def test_sgd_update_matches_twin(cb, ref, dtype, hyper, n):
    rng = np.random.default_rng(n)
    p = rng.standard_normal(n).astype(dtype)
    buf = np.empty_like(p)
    p_gpu, buf_gpu = on_gpu(p), cupy.full(n, np.nan, dtype=dtype)  # the first step must not read the buffer
    for step in range(3):
        g = values(rng, (n,), dtype, nan=False)
        ref.sgd_update(p, g, buf, lr=0.05, first_step=step == 0, **hyper)
        cb.sgd_update(p_gpu, on_gpu(g), buf_gpu, lr=0.05, first_step=step == 0, **hyper)
        close(p_gpu, p)
        if hyper["momentum"]:
            close(buf_gpu, buf)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("weight_decay", "decoupled"), [(0.0, False), (1e-2, False), (1e-2, True)])
@pytest.mark.parametrize("n", [1, 7, 1000, 4099])
def test_adam_update_matches_twin(cb, ref, dtype, weight_decay, decoupled, n):
    rng = np.random.default_rng(n + 1)
    p = rng.standard_normal(n).astype(dtype)
    m, v = np.zeros_like(p), np.zeros_like(p)
    p_gpu, m_gpu, v_gpu = on_gpu(p), on_gpu(m), on_gpu(v)
    hyper = {"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": weight_decay}
    for step in range(1, 4):
        g = values(rng, (n,), dtype, nan=False)
        ref.adam_update(p, g, m, v, step=step, decoupled=decoupled, **hyper)
        cb.adam_update(p_gpu, on_gpu(g), m_gpu, v_gpu, step=step, decoupled=decoupled, **hyper)
        close(p_gpu, p)
        close(m_gpu, m)
        close(v_gpu, v)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_one_launch_updates_many_parameters_of_mixed_dtypes_and_sizes(cb, ref, kind):
    """More tensors than one launch takes, three dtypes, sizes around the chunk size,
    and a misaligned view: every parameter and buffer as its own twin update makes it."""
    rng = np.random.default_rng(11)
    chunk = gp.backends.kernel_catalog.MULTI_TENSOR_CHUNK
    sizes = [1, 7, chunk - 1, chunk, chunk + 5, 3 * chunk + 17, 1000] * 3
    dtypes = [DTYPES[i % 3] for i in range(len(sizes))]
    cpu, gpu = [], []
    for i, (n, dtype) in enumerate(zip(sizes, dtypes)):
        p = rng.standard_normal(n).astype(dtype)
        states = [rng.standard_normal(n).astype(dtype) for _ in range(1 if kind == "sgd" else 2)]
        if kind == "adam":
            states[1] = np.abs(states[1])  # exp_avg_sq >= 0
        g = values(rng, (n,), dtype, nan=False)
        cpu.append([p, g, *states])
        move = misaligned if i == 4 else on_gpu
        gpu.append([move(p), on_gpu(g), *(move(s) for s in states)])
    if kind == "sgd":
        hypers = [
            {
                "lr": 0.05,
                "momentum": 0.9,
                "dampening": 0.1,
                "weight_decay": 1e-3,
                "nesterov": False,
                "first_step": False,
            }
        ] * len(sizes)
        for (p, g, b), h in zip(cpu, hypers):
            ref.sgd_update(p, g, b, **h)
        cb.sgd_updates([tuple(t) for t in gpu], lambda: hypers)
    else:
        hypers = [
            {"step": 3, "lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2, "decoupled": True}
        ] * len(sizes)
        for (p, g, m, v), h in zip(cpu, hypers):
            ref.adam_update(p, g, m, v, **h)
        cb.adam_updates([tuple(t) for t in gpu], lambda: hypers)
    for got, want in zip(gpu, cpu):
        for index in [0, *range(2, len(want))]:
            close(got[index], want[index])


def test_updates_call_hypers_once_per_update(cb):
    calls = []
    params = [on_gpu(np.ones(5, np.float32)) for _ in range(40)]

    def hypers():
        calls.append(1)
        return [
            {"lr": 0.1, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False, "first_step": False}
        ] * 40

    grads = [on_gpu(np.full(5, i, np.float32)) for i in range(40)]
    cb.sgd_updates([(p, g, None) for p, g in zip(params, grads)], hypers)  # launches of 16, 16 and 8
    assert len(calls) == 1
    for i, p in enumerate(params):
        np.testing.assert_allclose(cupy.asnumpy(p), np.float32(1) - np.float32(0.1) * np.float32(i), rtol=1e-6)


def test_updates_of_misaligned_parameters_use_the_scalar_path(cb, ref):
    rng = np.random.default_rng(5)
    p = rng.standard_normal(1001).astype(np.float32)
    g = rng.standard_normal(1001).astype(np.float32)
    p_gpu = misaligned(p)
    hyper = {"lr": 0.1, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False, "first_step": True}
    ref.sgd_update(p, g, None, **hyper)
    cb.sgd_update(p_gpu, misaligned(g), None, **hyper)
    close(p_gpu, p)


# -- the layer's backward: δ and the bias gradient in one pass -------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(1, 1), (5, 33), (64, 10), (65, 64), (1000, 257), (4099, 3)])
def test_linear_delta_matches_twin(cb, ref, dtype, activation, shape):
    rng = np.random.default_rng(zlib.crc32(repr((dtype, activation, shape)).encode()))
    y = ref.bias_activation(values(rng, shape, dtype, nan=False), None, activation)
    g = values(rng, shape, dtype, nan=False)
    want_delta, want_bias = ref.linear_delta(g.copy(), y.copy(), activation, True)
    delta, bias = cb.linear_delta(on_gpu(g), on_gpu(y), activation, True)
    close(delta, want_delta)
    # The kernel sums rows in its own order (chunks, then 8 lanes): rounding differs from NumPy's pairwise sum.
    scale = np.abs(want_delta.astype(np.float64)).sum(axis=0) + 1e-30
    err = np.abs(cupy.asnumpy(bias).astype(np.float64) - want_bias.astype(np.float64)) / scale
    assert bias.dtype == dtype and np.all(err <= {np.float16: 2e-3, np.float32: 1e-5, np.float64: 1e-13}[dtype])


def test_linear_delta_is_the_same_every_time(cb):
    """The bias sum combines chunks in a fixed order: bit-identical across launches."""
    rng = np.random.default_rng(3)
    g = on_gpu(rng.standard_normal((3000, 300)).astype(np.float32))
    y = on_gpu(1 / (1 + np.exp(-rng.standard_normal((3000, 300)))).astype(np.float32))
    first = cupy.asnumpy(cb.linear_delta(g, y, "sigmoid", True)[1])
    for _ in range(5):
        assert np.array_equal(cupy.asnumpy(cb.linear_delta(g, y, "sigmoid", True)[1]), first)


# -- the batch metrics ---------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 7, 300, 1000])
def test_accumulate_metrics_matches_twin(cb, ref, dtype, rows):
    rng = np.random.default_rng(rows)
    logits = rng.integers(-3, 3, (rows, 10)).astype(dtype)  # many ties: the first maximum counts
    if rows > 4:
        logits[2, 5] = np.nan  # NumPy's argmax takes the NaN
    labels = rng.integers(0, 10, rows)
    want = np.array([3.0, 4.0, 0.0, 0.0])
    got = on_gpu(want)
    for value in (1.25, np.inf, 2.0, np.nan):  # the first non-finite loss is batch 2
        loss = np.asarray(value, dtype=dtype)
        ref.accumulate_metrics(want, logits, labels, loss)
        cb.accumulate_metrics(got, on_gpu(logits), on_gpu(labels), on_gpu(loss))
    np.testing.assert_array_equal(cupy.asnumpy(got), want)
    assert want[2] == 4 and want[3] == 2


# -- random.cu -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 5, 1023, 65537])
def test_uniform_is_the_philox_twin_bit_for_bit(cb, dtype, n):
    cb.manual_seed(123)
    state = cb.get_rng_state()
    got = cupy.asnumpy(cb.uniform((n,), 0.0, 1.0, np.dtype(dtype)))
    want = philox.uniform(n, state["seed"], state["offset"], dtype)
    assert got.dtype == dtype and np.array_equal(got, want)
    scaled = cb.uniform((n,), -2.0, 3.0, np.dtype(dtype))
    close(scaled, philox.uniform(n, state["seed"], state["offset"] + 1, dtype, -2.0, 3.0))


@pytest.mark.parametrize("dtype", DTYPES)
def test_normal_matches_the_philox_twin(cb, dtype):
    cb.manual_seed(7)
    got = cupy.asnumpy(cb.standard_normal((100001,), np.dtype(dtype)))
    want = philox.normal(100001, 7, 0, dtype)
    tolerance = {"rtol": 5e-3, "atol": 5e-3} if dtype == np.float16 else {"rtol": 1e-5, "atol": 1e-5}
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), **tolerance)
    assert abs(got.astype(np.float64).mean()) < 0.02 and abs(got.astype(np.float64).std() - 1) < 0.02


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_mask_is_the_philox_twin_bit_for_bit(cb, dtype, p):
    cb.manual_seed(99)
    got = cupy.asnumpy(cb.dropout_mask((301, 7), p, np.dtype(dtype)))
    want = philox.dropout_mask(301 * 7, 99, 0, p, dtype).reshape(301, 7)
    assert got.dtype == dtype and np.array_equal(got, want)
    assert abs((got > 0).mean() - (1 - p)) < 0.05


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_draws_the_same_mask_forward_and_backward_as_the_twin(cb, dtype, p):
    cb.manual_seed(21)
    x = values(np.random.default_rng(1), (257, 9), dtype, nan=False)
    g = values(np.random.default_rng(2), (257, 9), dtype, nan=False)
    y, draw = cb.dropout_forward(on_gpu(x), p)
    mask = philox.dropout_mask(x.size, 21, 0, p, dtype).reshape(x.shape)
    assert np.array_equal(cupy.asnumpy(y), x * mask)  # one rounding each
    assert np.array_equal(cupy.asnumpy(cb.dropout_backward(on_gpu(g), draw)), g * mask)
    assert cb.get_rng_state()["offset"] == 1  # one draw for both passes


def test_dropout_mask_with_p_one_drops_everything(cb):
    assert not cupy.asnumpy(cb.dropout_mask((10,), 1.0, np.dtype(np.float32))).any()


def test_rng_state_is_json_and_replays(cb):
    gp.manual_seed(5)
    state = json.loads(json.dumps(gp.get_rng_state("cuda")))
    first = gp.rand(1000, device="cuda").numpy()
    gp.set_rng_state(state, "cuda")
    assert np.array_equal(gp.rand(1000, device="cuda").numpy(), first)
    assert not np.array_equal(gp.rand(1000, device="cuda").numpy(), first)
    with pytest.raises(ValueError, match="get_rng_state"):
        gp.set_rng_state({"seed": 1}, "cuda")


# -- loading and caching -----------------------------------------------------------------
def test_modules_are_built_once_per_device_and_dtype(cb):
    cb.sigmoid(cupy.zeros(10, dtype=cupy.float32))
    module = cb._modules["activation", "float32"].result()
    cb.tanh(cupy.zeros(10, dtype=cupy.float32))
    assert cb._modules["activation", "float32"].result() is module
    assert set(cb._modules) == set(gp.backends.kernel_catalog.modules())


def test_cupy_cache_dir_is_respected(tmp_path):
    code = "import gpubp as gp; gp.sigmoid(gp.ones(3, device='cuda')).numpy()"
    env = {**os.environ, "CUPY_CACHE_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    assert any(tmp_path.rglob("*")), "CuPy wrote no compiled kernel to CUPY_CACHE_DIR"
