"""float16 in the NumPy twins is computed as the CUDA kernels compute it
(kernels/common.cuh: half_t loads convert to float, float arithmetic, one rounding
on store): every float16 result must equal, bit for bit, the float32 computation on
the upcast inputs rounded once to float16. The inputs include those where float16
arithmetic step by step goes wrong: 1 + e^(−z) overflowing for z < −11, 1 − y² near
|y| = 1, logits ×1000, Adam's g² overflowing for |g| ≈ 300.

The CPU backend runs each case as the GPU tests' oracle does, at sizes below and
above its C kernels' thresholds and its update chunk (the float16 paths must reach
the twins, the float32 reference may run in C).
"""

from __future__ import annotations

import numpy as np
import pytest

import gpubp as gp
from gpubp.backends import numpy_backend

CPU = gp.backends.cpu()
SIZES = [7, 1000, 9001]  # the last above every C kernel's threshold
UPDATE_SIZES = [7, 5000, numpy_backend.UPDATE_CHUNK + 5]  # the last in chunks


def up(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32)


def down(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float16)


def assert_bits_equal(got: np.ndarray, want: np.ndarray) -> None:
    """float16 arrays equal bit for bit (so NaN equals NaN, and −0 is not 0)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == np.float16 and want.dtype == np.float16 and got.shape == want.shape
    differ = got.view(np.uint16) != want.view(np.uint16)
    assert not differ.any(), f"{differ.sum()} of {got.size} differ, e.g. {got[differ][:5]} vs {want[differ][:5]}"


def values(rng: np.random.Generator, n: int, big: float = 1000.0) -> np.ndarray:
    """float16 normal values (σ = 3), every tenth ±big, and every third from a sweep
    of [−20, 20] (where 1 + e^(−z) overflows float16 for z < −11)."""
    a = rng.standard_normal(n) * 3
    a[::10] = rng.choice([big, -big], a[::10].size)
    a[1::3] = np.linspace(-20, 20, a[1::3].size)
    return a.astype(np.float16)


def near_one(rng: np.random.Generator, n: int) -> np.ndarray:
    """tanh outputs with |y| near 1, where 1 − y·y rounded in float16 cancels."""
    return down(np.tanh(rng.uniform(0.5, 5.0, n) * rng.choice([-1.0, 1.0], n)))


# -- activations ------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("n", SIZES)
def test_activation_forward(activation: str, n: int) -> None:
    z = values(np.random.default_rng(n), n)
    forward = getattr(CPU, activation)
    want = down(forward(up(z)))
    assert_bits_equal(forward(z), want)
    out = np.full_like(z, np.nan)
    assert forward(z, out=out) is out
    assert_bits_equal(out, want)


@pytest.mark.parametrize("activation", [None, "sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("shape", [(3, 5), (40, 300)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_bias_activation(activation: str | None, shape: tuple[int, int], with_bias: bool) -> None:
    rng = np.random.default_rng(shape[0])
    z = values(rng, shape[0] * shape[1]).reshape(shape)
    bias = down(rng.standard_normal(shape[1]) * 5) if with_bias else None
    want = down(CPU.bias_activation(up(z), None if bias is None else up(bias), activation))
    assert_bits_equal(CPU.bias_activation(z.copy(), bias, activation), want)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("n", SIZES)
def test_activation_backward(activation: str, n: int) -> None:
    rng = np.random.default_rng(n + 1)
    y = near_one(rng, n) if activation == "tanh" else getattr(CPU, activation)(values(rng, n))
    g = values(rng, n, big=100.0)
    want = down(CPU.activation_backward(up(g), up(y), activation))
    assert_bits_equal(CPU.activation_backward(g, y, activation), want)


def test_activation_backward_is_the_kernels_float_arithmetic() -> None:
    """act_backward in kernels/activation.cu, in its order of operations."""
    rng = np.random.default_rng(2)
    g = values(rng, 1000, big=100.0)
    y = near_one(rng, 1000)
    assert_bits_equal(CPU.tanh_backward(g, y), down((1 - up(y) * up(y)) * up(g)))
    s = CPU.sigmoid(values(rng, 1000))
    assert_bits_equal(CPU.sigmoid_backward(g, s), down(((1 - up(s)) * up(s)) * up(g)))


# -- softmax cross-entropy --------------------------------------------------------------
@pytest.mark.parametrize("scale", [1.0, 1000.0])
@pytest.mark.parametrize(("rows", "classes"), [(1, 2), (37, 10), (300, 33)])
def test_softmax_cross_entropy(scale: float, rows: int, classes: int) -> None:
    rng = np.random.default_rng(rows)
    logits = down(rng.standard_normal((rows, classes)) * scale)
    labels = rng.integers(0, classes, rows)
    loss, probs = CPU.softmax_cross_entropy(logits, labels)
    want_loss, want_probs = CPU.softmax_cross_entropy(up(logits), labels)
    assert loss.shape == ()
    assert_bits_equal(loss, down(want_loss))  # float32 row losses, their mean in float32, then rounded
    assert_bits_equal(probs, down(want_probs))
    g = np.asarray(1.7, dtype=np.float16)  # scale = g / N in float32
    want_grad = down(CPU.softmax_cross_entropy_backward(up(probs), labels, up(g)))
    assert_bits_equal(CPU.softmax_cross_entropy_backward(probs, labels, g), want_grad)


# -- optimizer updates: float32 state in one step, each stored array rounded once ---------
@pytest.mark.parametrize(
    "hyper",
    [
        {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False},
        {"momentum": 0.9, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False},
        {"momentum": 0.9, "dampening": 0.1, "weight_decay": 1e-2, "nesterov": False},
        {"momentum": 0.8, "dampening": 0.0, "weight_decay": 1e-3, "nesterov": True},
    ],
)
@pytest.mark.parametrize("n", UPDATE_SIZES)
def test_sgd_update(hyper: dict, n: int) -> None:
    rng = np.random.default_rng(n)
    p = down(rng.standard_normal(n))
    buf = np.full_like(p, np.nan) if hyper["momentum"] else None  # the first step must not read it
    for step in range(3):
        g = values(rng, n, big=300.0)
        p32, buf32 = up(p), None if buf is None else up(buf)
        CPU.sgd_update(p32, up(g), buf32, lr=0.05, first_step=step == 0, **hyper)
        CPU.sgd_update(p, g, buf, lr=0.05, first_step=step == 0, **hyper)
        assert_bits_equal(p, down(p32))
        if buf is not None:
            assert_bits_equal(buf, down(buf32))


@pytest.mark.parametrize(("weight_decay", "decoupled"), [(0.0, False), (1e-2, False), (1e-2, True)])
@pytest.mark.parametrize("n", UPDATE_SIZES)
def test_adam_update(weight_decay: float, decoupled: bool, n: int) -> None:
    rng = np.random.default_rng(n + 1)
    p = down(rng.standard_normal(n))
    m, v = np.zeros_like(p), np.zeros_like(p)
    hyper = {"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": weight_decay}
    for step in range(1, 4):
        g = values(rng, n, big=300.0)  # g² = 90000 overflows float16
        p32, m32, v32 = up(p), up(m), up(v)
        CPU.adam_update(p32, up(g), m32, v32, step=step, decoupled=decoupled, **hyper)
        CPU.adam_update(p, g, m, v, step=step, decoupled=decoupled, **hyper)
        assert_bits_equal(p, down(p32))
        assert_bits_equal(m, down(m32))
        assert_bits_equal(v, down(v32))
        assert np.isfinite(v).all()


# -- dropout --------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.1, 0.2, 0.5, 0.9])
def test_dropout_mask(p: float) -> None:
    """The keep decision from a float32 draw against p (as the kernel's 24-bit draw),
    not a float16 draw that rounds up to 1 and meets p rounded to float16."""
    CPU.manual_seed(7)
    mask = CPU.dropout_mask((301, 70), p, np.dtype(np.float16))
    CPU.manual_seed(7)
    want = down(CPU.dropout_mask((301, 70), p, np.dtype(np.float32)))
    assert_bits_equal(mask, want)
