"""gp.autocast: what runs in 16 bits, what in float32, what stays as it was; bfloat16
tensors and their float32 fallback; PyTorch's autocast as the reference.

Tolerances: a 16-bit matrix product rounds its inputs and result (bfloat16 keeps 8
significant bits, float16 11), so an MLP step under autocast is compared with the
float32 step at a relative error of 4e-2 (bfloat16) and 5e-3 (float16) of each
tensor's largest entry.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import gpubp as gp
from gpubp import dtypes
from gpubp.ops.convert import Cast
from gpubp.ops.linear import Linear

LOW = [pytest.param(gp.bfloat16, id="bfloat16"), pytest.param(gp.float16, id="float16")]
RELATIVE = {gp.bfloat16: 4e-2, gp.float16: 5e-3}


def mlp(device: str) -> gp.nn.Module:
    gp.manual_seed(0)
    return gp.nn.Sequential(
        gp.nn.Linear(20, 32), gp.nn.Sigmoid(), gp.nn.Linear(32, 16), gp.nn.ReLU(), gp.nn.Linear(16, 5)
    ).to(device)


def batch(device: str) -> tuple[gp.Tensor, gp.Tensor]:
    rng = np.random.default_rng(1)
    x = gp.tensor(rng.standard_normal((8, 20)).astype(np.float32), device=device)
    return x, gp.tensor(rng.integers(0, 5, 8), device=device)


def step(device: str, low: np.dtype | None) -> tuple[float, list[np.ndarray], gp.nn.Module]:
    model = mlp(device)
    x, labels = batch(device)
    with gp.autocast(dtype=low) if low is not None else contextlib.nullcontext():
        loss = gp.cross_entropy(model(x), labels)
    loss.backward()
    return loss.item(), [p.grad.numpy() for p in model.parameters()], model


def assert_close(got: np.ndarray, want: np.ndarray, relative: float) -> None:
    np.testing.assert_allclose(got, want, rtol=0, atol=relative * max(np.abs(want).max(), 1e-6))


@pytest.mark.parametrize("low", LOW)
def test_an_mlp_step_under_autocast_is_close_to_float32(device, low):
    loss32, grads32, _ = step(device, None)
    loss, grads, model = step(device, low)
    assert loss == pytest.approx(loss32, rel=RELATIVE[low])
    for got, want in zip(grads, grads32):
        assert_close(got, want, RELATIVE[low])
    # Master weights and their gradients stay float32.
    assert all(p.dtype == gp.float32 and p.grad.dtype == gp.float32 for p in model.parameters())


@pytest.mark.parametrize("low", LOW)
def test_products_run_low_and_precision_sensitive_ops_in_float32(device, low):
    x = gp.tensor(np.ones((4, 3), np.float32), device=device)
    w = gp.tensor(np.ones((3, 2), np.float32), device=device)
    with gp.autocast(dtype=low):
        product = x @ w
        assert product.dtype == low
        assert gp.sigmoid(product).dtype == low  # other ops: their input's dtype
        for out in (gp.softmax(product), product.sum(), product.mean(), gp.exp(product), gp.log_softmax(product, 1)):
            assert out.dtype == gp.float32
        assert gp.cross_entropy(product, [0, 1, 1, 0]).dtype == gp.float32
        assert gp.mse_loss(product, gp.zeros(4, 2, device=device)).dtype == gp.float32
        assert (x.double() @ w.double()).dtype == gp.float64  # float64 is left alone, as PyTorch's autocast does
    assert (x @ w).dtype == gp.float32


def test_nothing_is_cast_outside_the_context(device):
    model = mlp(device)
    x, labels = batch(device)
    with gp.autocast(dtype=gp.bfloat16):
        pass
    loss = gp.cross_entropy(model(x), labels)
    nodes, stack = [], [loss.grad_fn]
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack += [t.grad_fn for t in node.inputs if isinstance(t, gp.Tensor) and t.grad_fn is not None]
    assert not any(isinstance(n, Cast) for n in nodes)
    assert all(n.compute_dtype is None for n in nodes if isinstance(n, Linear))


def test_contexts_nest_and_decorate():
    x = gp.ones(2, 2)
    with gp.autocast(dtype=gp.float16):
        assert gp.get_autocast_dtype() == gp.float16
        with gp.autocast(dtype=gp.bfloat16):
            assert (x @ x).dtype == gp.bfloat16
        with gp.autocast(dtype=gp.bfloat16, enabled=False):
            assert (x @ x).dtype == gp.float32 and not gp.is_autocast_enabled()
        assert (x @ x).dtype == gp.float16
        with gp.autocast("cuda", dtype=gp.float16, enabled=False):
            pass
    assert not gp.is_autocast_enabled()

    @gp.autocast("cpu")  # PyTorch's CPU default: bfloat16
    def product(a):
        return a @ a

    assert product(x).dtype == gp.bfloat16 and (x @ x).dtype == gp.float32


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"dtype": gp.float32}, TypeError, "must be gp.bfloat16 or gp.float16"),
        ({"dtype": "int8"}, TypeError, "dtype"),
        ({"device_type": "mps", "dtype": gp.bfloat16}, ValueError, "device_type"),
        ({}, ValueError, "give dtype"),
    ],
)
def test_bad_settings_are_named(arguments, error, message):
    with pytest.raises(error, match=message):
        gp.autocast(**arguments)


@pytest.mark.skipif(gp.cuda.is_available(), reason="checks the error where there is no GPU")
def test_cuda_autocast_without_a_gpu_says_so():
    with pytest.raises(RuntimeError, match="no usable CUDA device"):
        gp.autocast("cuda", dtype=gp.bfloat16)


def test_a_cpu_only_context_leaves_other_devices_alone():
    with gp.autocast("cuda", dtype=gp.float16, enabled=False), gp.autocast("cpu", dtype=gp.bfloat16):
        assert gp.autocast_mode.current_dtype("cuda:0") is None
        assert gp.autocast_mode.current_dtype("cpu") == gp.bfloat16


@pytest.mark.parametrize("low", LOW)
def test_a_jitted_autocast_step_trains_as_the_eager_one(device, low):
    def train(jitted: bool) -> list[np.ndarray]:
        model = mlp(device)
        opt = gp.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        x, labels = batch(device)

        def one_step(x, labels):
            with gp.autocast(dtype=low):
                loss = gp.cross_entropy(model(x), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss

        run = gp.jit(one_step) if jitted else one_step
        for _ in range(4):
            run(x, labels)
        return [p.numpy() for p in model.parameters()]

    for got, want in zip(train(True), train(False)):
        np.testing.assert_array_equal(got, want)


def test_a_jitted_function_is_captured_again_under_another_autocast():
    x = gp.ones(2, 2)
    product = gp.jit(lambda a: a @ a, warmup=1)
    assert product(x).dtype == gp.float32
    with gp.autocast(dtype=gp.bfloat16):
        assert product(x).dtype == gp.bfloat16
    assert product(x).dtype == gp.float32


# -- bfloat16 tensors -------------------------------------------------------------------------
def test_bfloat16_tensors_round_trip_through_numpy(device):
    values = np.array([1.0, -2.5, 3.0e38, 1e-40, np.inf], np.float32)
    t = gp.tensor(values, dtype=gp.bfloat16, device=device)
    assert t.dtype == gp.bfloat16 and str(t.dtype) == "bfloat16"
    np.testing.assert_array_equal(t.numpy().view(np.uint16), values.astype(dtypes.bfloat16).view(np.uint16))
    np.testing.assert_array_equal(t.float().numpy(), values.astype(dtypes.bfloat16).astype(np.float32))
    assert gp.tensor([1.5], dtype="bfloat16").dtype == gp.bfloat16


@pytest.mark.parametrize(
    ("a", "b"), [("bfloat16", "float16"), ("bfloat16", "float32"), ("bfloat16", "int64"), ("bfloat16", "float64")]
)
def test_bfloat16_promotes_as_pytorch(a, b):
    torch = pytest.importorskip("torch")
    want = str(torch.promote_types(getattr(torch, a), getattr(torch, b))).removeprefix("torch.")
    assert str(gp.promote_types(dtypes.as_dtype(a), dtypes.as_dtype(b))) == want


def test_ops_without_a_bfloat16_path_compute_in_float32_and_round_once(device):
    rng = np.random.default_rng(2)
    x32 = rng.standard_normal((6, 7)).astype(np.float32)
    x = gp.tensor(x32, dtype=gp.bfloat16, device=device, requires_grad=True)
    wide = x.float().detach().requires_grad_()
    for op in (lambda t: gp.softmax(t, 1), lambda t: t * 3.3, lambda t: gp.gelu(t), lambda t: t.sum(0)):
        out, want = op(x), op(wide)
        assert out.dtype == gp.bfloat16
        np.testing.assert_array_equal(out.numpy(), want.numpy().astype(dtypes.bfloat16))
        g = gp.ones_like(out)
        x.grad = wide.grad = None
        out.backward(g)
        want.backward(g.float())
        assert x.grad.dtype == gp.bfloat16
        np.testing.assert_array_equal(x.grad.numpy(), wide.grad.numpy().astype(dtypes.bfloat16))


def test_bfloat16_gradients_accumulate_in_float32_and_round_once(device):
    x = gp.tensor([1.0], dtype=gp.bfloat16, device=device, requires_grad=True)
    (x * 1.00390625).backward()  # 1 + 2**-8: not a bfloat16 value after a sum with 1
    (x * 1.00390625).backward()
    assert x.grad.dtype == gp.bfloat16
    want = (np.float32(1.00390625).astype(dtypes.bfloat16).astype(np.float32) * 2).astype(dtypes.bfloat16)
    np.testing.assert_array_equal(x.grad.numpy(), [want])


@pytest.mark.parametrize("low", ["bfloat16", "float16"])
def test_linear_under_autocast_matches_pytorchs_autocast(low):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((16, 24), (10, 24), (10,)))
    weights = [gp.tensor(a, requires_grad=True) for a in (w, b)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (w, b)]
    with gp.autocast(dtype=dtypes.as_dtype(low)):
        ours = gp.linear(gp.tensor(x), *weights)
    with torch.autocast("cpu", dtype=getattr(torch, low)):
        reference = torch.nn.functional.linear(torch.tensor(x), *theirs)
    assert str(ours.dtype) == str(reference.dtype).removeprefix("torch.")
    np.testing.assert_allclose(ours.float().numpy(), reference.float().detach().numpy(), rtol=1e-2, atol=1e-2)
    ours.float().sum().backward()
    reference.float().sum().backward()
    for mine, torch_param in zip(weights, theirs):
        assert mine.grad.dtype == gp.float32 and torch_param.grad.dtype == torch.float32
        np.testing.assert_allclose(mine.grad.numpy(), torch_param.grad.numpy(), rtol=1e-2, atol=1e-2)
