"""The engine on bfloat16 stored as raw uint16 words, as the CUDA backend stores it,
checked on the CPU: a NumPy backend with the CUDA backend's storage mixin
(``RawBfloat16Storage``) and cast.cu's NumPy twin gives, bit for bit, what the
plain CPU backend gives on ml_dtypes' bfloat16 arrays. What differs on a GPU is
only the kernels, which tests/backends/test_bfloat16_kernels.py checks there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gpubp as gp
from gpubp import dtypes
from gpubp.backends.numpy_backend import NumpyBackend
from gpubp.backends.raw_bfloat16 import RAW, RawBfloat16Storage, convert_on_host

BF16 = dtypes.bfloat16


class RawNumpyBackend(RawBfloat16Storage, NumpyBackend):
    """The CPU backend keeping bfloat16 as the GPU does (its transfers view the words, as CupyBackend's)."""

    def from_host(self, array: np.ndarray) -> np.ndarray:
        array = np.asarray(array)
        return super().from_host(array.view(RAW) if array.dtype == BF16 else array)

    def to_host(self, array: np.ndarray) -> np.ndarray:
        out = super().to_host(array)
        return out.view(BF16) if out.dtype == RAW else out

    def item(self, array: np.ndarray) -> Any:
        return self.to_host(array).item() if array.dtype == RAW else super().item(array)

    def _convert(self, array: np.ndarray, target: np.dtype) -> np.ndarray:
        return convert_on_host(array, target)


@pytest.fixture
def raw() -> RawNumpyBackend:
    backend = RawNumpyBackend()
    backend.manual_seed(0)
    return backend


def same(raw_tensor: gp.Tensor, plain: gp.Tensor) -> None:
    """Equal dtypes and bits (the raw tensor's data really is uint16 words)."""
    assert raw_tensor.dtype == plain.dtype
    if plain.dtype == BF16:
        assert raw_tensor.data.dtype == RAW

    def bits(t: gp.Tensor) -> np.ndarray:
        return np.ascontiguousarray(t.numpy()).reshape(-1).view(np.uint8)

    np.testing.assert_array_equal(bits(raw_tensor), bits(plain), err_msg=f"{raw_tensor} != {plain}")


def pair(raw, values, **options) -> tuple[gp.Tensor, gp.Tensor]:
    return gp.tensor(values, device=raw, **options), gp.tensor(values, **options)


def test_creation_and_transfers_keep_the_bits(raw):
    values = np.array([[1.5, -2.25, 3.0e38], [1e-40, 0.1, -0.0]], np.float32)
    a, b = pair(raw, values, dtype=gp.bfloat16)
    same(a, b)
    for make in (gp.zeros, gp.ones):
        same(make(2, 3, dtype=gp.bfloat16, device=raw), make(2, 3, dtype=gp.bfloat16))
    same(gp.full((2,), 0.1, dtype=gp.bfloat16, device=raw), gp.full((2,), 0.1, dtype=gp.bfloat16))
    assert a[0, 0].item() == 1.5
    same(a.float(), b.float())
    same(a.double().to(dtype=gp.bfloat16), b.double().to(dtype=gp.bfloat16))
    same(a.half(), b.half())
    same(gp.tensor([1, 2], device=raw).to(dtype=gp.bfloat16), gp.tensor([1, 2]).to(dtype=gp.bfloat16))


@pytest.mark.parametrize(
    "op",
    [
        lambda t: t * 3.3,
        lambda t: t + t,
        lambda t: gp.softmax(t, 1),
        lambda t: gp.gelu(t),
        lambda t: t.sum(0),
        lambda t: gp.sigmoid(t),
        lambda t: gp.relu(t).T,
        lambda t: t.reshape(-1)[2:5],
    ],
)
def test_ops_and_their_gradients_match_ml_dtypes_bit_for_bit(raw, op):
    values = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    a, b = pair(raw, values, dtype=gp.bfloat16, requires_grad=True)
    out_a, out_b = op(a), op(b)
    same(out_a, out_b)
    (out_a.float() * 1.7).sum().backward()
    (out_b.float() * 1.7).sum().backward()
    same(a.grad, b.grad)


def test_in_place_writes_and_comparisons_work_on_values_not_words(raw):
    values = np.array([1.0, -2.0, 3.5, 0.25], np.float32)
    a, b = pair(raw, values, dtype=gp.bfloat16)
    for t in (a, b):
        t += 1.5
        t[1] = 0.1
        t *= 2
    same(a, b)
    same(a > 1.0, b > 1.0)
    a.fill_(-0.3)
    b.fill_(-0.3)
    same(a, b)
    a.copy_(gp.tensor(values, device=raw))
    b.copy_(gp.tensor(values))
    same(a, b)
    float32_a, float32_b = pair(raw, np.zeros(4, np.float32))
    float32_a.copy_(a)
    float32_b.copy_(b)
    same(float32_a, float32_b)


def test_gradients_of_a_shared_input_and_of_two_passes_add_in_float32(raw):
    a, b = pair(raw, [1.0, 2.0], dtype=gp.bfloat16, requires_grad=True)
    for t in (a, b):
        (t * 1.00390625 + t * 3.0).sum().backward()  # a fan-out
        (t * 1.00390625).sum().backward()  # a second pass into .grad
    same(a.grad, b.grad)


def test_an_autocast_step_of_an_mlp_matches_the_cpu_backend(raw):
    def run(device):
        gp.manual_seed(0)
        model = gp.nn.Sequential(gp.nn.Linear(12, 16), gp.nn.Sigmoid(), gp.nn.Linear(16, 4)).to(device)
        opt = gp.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        x = gp.tensor(np.random.default_rng(1).standard_normal((8, 12)).astype(np.float32), device=device)
        for _ in range(3):
            with gp.autocast(dtype=gp.bfloat16):
                loss = gp.cross_entropy(model(x), gp.tensor(np.arange(8) % 4, device=device))
            opt.zero_grad()
            loss.backward()
            opt.step()
        return loss, list(model.parameters())

    loss_a, params_a = run(raw)
    loss_b, params_b = run("cpu")
    same(loss_a, loss_b)
    for pa, pb in zip(params_a, params_b):
        same(pa, pb)
        same(pa.grad, pb.grad)


def test_bfloat16_parameters_update_in_float32_and_round_once(raw):
    def run(device):
        gp.manual_seed(0)
        w = gp.tensor([0.5, -1.25, 2.0], dtype=gp.bfloat16, device=device, requires_grad=True)
        opt = gp.optim.Adam([w], lr=0.01)
        for _ in range(3):
            opt.zero_grad()
            (w * w).sum().backward()
            opt.step()
        return w

    same(run(raw), run("cpu"))


def test_exports_of_raw_words_are_refused(raw):
    a = gp.tensor([1.0], dtype=gp.bfloat16, device=raw)
    with pytest.raises(TypeError, match="uint16 words"):
        a.__dlpack__()


def test_an_explicit_gradient_hooks_and_clipping_take_bfloat16(raw):
    def run(device):
        gp.manual_seed(0)
        w = gp.tensor([0.5, -1.25, 2.0, 3.0], dtype=gp.bfloat16, device=device, requires_grad=True)
        w.register_hook(lambda g: g * 2)
        out = w * 0.7
        out.backward(gp.full((4,), 1.5, dtype=gp.bfloat16, device=device))
        norm = gp.nn.utils.clip_grad_norm_([w], 1.0)
        gp.nn.utils.clip_grad_value_([w], 0.3)
        return w.grad, norm

    (grad_a, norm_a), (grad_b, norm_b) = run(raw), run("cpu")
    same(grad_a, grad_b)
    same(norm_a, norm_b)


def test_init_fills_bfloat16_parameters_with_numbers(raw):
    weight = gp.zeros(32, 64, dtype=gp.bfloat16, device=raw, requires_grad=True)
    gp.nn.init.uniform_(weight, -0.5, 0.5)
    values = weight.float().numpy()
    assert weight.data.dtype == RAW and -0.5 <= values.min() < -0.4 and 0.4 < values.max() <= 0.5
