"""Whole training steps on the GPU: they never wait for the device or copy to the
host, they match the CPU, gradients check out, devices never mix silently, and
float32 GEMMs are exact unless TF32 is switched on. Skipped without a GPU."""

from __future__ import annotations

import time

import numpy as np
import pytest

import gpubp as gp

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")

SPIN_SECONDS = 2.0

# A kernel that keeps the GPU busy for a given time (globaltimer counts nanoseconds).
_SPIN = r"""
extern "C" __global__ void spin(unsigned long long ns) {
    unsigned long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    } while (now - start < ns);
}
"""


def mlp(dropout: float = 0.0, dtype=np.float32) -> gp.nn.Sequential:
    layers = [gp.nn.Linear(20, 64, dtype=dtype), gp.nn.Sigmoid()]
    if dropout:
        layers.append(gp.nn.Dropout(dropout))
    layers += [gp.nn.Linear(64, 64, dtype=dtype), gp.nn.Tanh(), gp.nn.Linear(64, 5, dtype=dtype)]
    return gp.nn.Sequential(*layers)


def batch(dtype=np.float32, device="cuda"):
    rng = np.random.default_rng(0)
    x = gp.tensor(rng.standard_normal((128, 20)).astype(dtype), device=device)
    labels = gp.tensor(rng.integers(0, 5, 128), device=device)
    return x, labels


def make_step(optimizer: str, dropout: float = 0.0):
    gp.manual_seed(0)
    model = mlp(dropout).to("cuda")
    x, labels = batch()
    if optimizer == "sgd":
        opt = gp.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    else:
        opt = gp.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> gp.Tensor:
        loss = gp.cross_entropy(model(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return step


# -- no host round trips --------------------------------------------------------------
@pytest.mark.parametrize(("optimizer", "dropout"), [("sgd", 0.0), ("adam", 0.0), ("sgd", 0.3)])
def test_a_training_step_never_waits_for_the_device(optimizer, dropout):
    """The GPU is kept busy by a 2 s kernel queued first; if anything in the step
    synchronised or copied a value back, the host would wait for that kernel. So
    the step must come back while the device is still busy."""
    step = make_step(optimizer, dropout)
    step()
    gp.cuda.synchronize()  # warm up: compile kernels, fill the memory pool, make the cuBLAS handle
    spin = cupy.RawKernel(_SPIN, "spin")
    stream = cupy.cuda.get_current_stream()
    spin((1,), (1,), (np.uint64(SPIN_SECONDS * 1e9),))
    started = time.perf_counter()
    loss = step()
    host_seconds = time.perf_counter() - started
    still_busy = not stream.done  # cudaStreamQuery: asks, never waits
    assert still_busy, "the device went idle before the step returned: the step waited for it"
    assert host_seconds < SPIN_SECONDS / 2, f"queuing one step took {host_seconds:.3f} s"
    assert np.isfinite(loss.item())  # asking for the value is where the host waits


@pytest.mark.parametrize(("optimizer", "dropout"), [("sgd", 0.0), ("adam", 0.3)])
def test_a_training_step_can_be_captured_into_a_cuda_graph(optimizer, dropout):
    """Stream capture rejects every synchronisation, every synchronous copy to the
    host and (in CuPy's wrapper) every cuBLAS call; gpubp's GEMMs go through its own
    binding, so a whole step captures (tests/backends/test_cuda_jit.py replays it)."""
    step = make_step(optimizer, dropout)
    step()
    gp.cuda.synchronize()  # warm up: compile kernels, fill the memory pool, make the cuBLAS handle
    backend = gp.backends.get_backend("cuda")
    record = gp.capture.Capture("step")

    def body(values):
        record.device_values = values
        gp.capture.current = record
        try:
            return step()
        finally:
            gp.capture.current = None

    graph, loss = backend.capture_graph(body)
    assert graph.graph is not None and loss.shape == ()
    graph.launch()
    assert np.isfinite(loss.item())


# -- devices never mix ------------------------------------------------------------------
def test_an_op_on_two_devices_names_both():
    a = gp.ones(3)
    b = gp.ones(3, device="cuda")
    with pytest.raises(ValueError, match=r"cpu and cuda:0"):
        a + b
    with pytest.raises(ValueError, match=r"cuda:0 and cpu"):
        gp.matmul(gp.ones(2, 3, device="cuda"), gp.ones(3, 2))
    with pytest.raises(ValueError, match="cuda"):
        gp.cross_entropy(gp.ones(2, 3, device="cuda"), gp.tensor([0, 1]))


@pytest.mark.skipif(gp.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_gpus_never_mix_silently_and_move_explicitly():
    a = gp.randn(4, 4, device="cuda:0")
    b = gp.randn(4, 4, device="cuda:1")
    with pytest.raises(ValueError, match=r"cuda:0 and cuda:1"):
        a @ b
    moved = a.to("cuda:1")
    assert moved.device == "cuda:1" and np.array_equal(moved.numpy(), a.numpy())
    assert np.allclose((moved @ b).numpy(), a.numpy() @ b.numpy(), rtol=1e-5)


def test_tensors_and_modules_move_and_come_back():
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = gp.tensor(data, device="cuda")
    assert t.device == "cuda:0" and np.array_equal(t.numpy(), data) and "cuda:0" in repr(t)
    assert np.array_equal(t.cpu().numpy(), data)
    model = mlp()
    before = [p.numpy() for p in model.parameters()]
    model.to("cuda")
    assert model.device == "cuda:0"
    assert all(np.array_equal(p.numpy(), w) for p, w in zip(model.parameters(), before))
    layer = gp.nn.Linear(4, 3, device="cuda")  # initialised in place on the device
    assert layer.weight.device == "cuda:0" and np.abs(layer.weight.numpy()).max() > 0
    x = gp.ones(2, 20, requires_grad=True)
    x.to("cuda").sum().backward()
    assert x.grad.device == "cpu" and np.array_equal(x.grad.numpy(), np.ones((2, 20), np.float32))


# -- TF32 -------------------------------------------------------------------------------
def _matmul_error() -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1024, 1024)).astype(np.float32)
    b = rng.standard_normal((1024, 1024)).astype(np.float32)
    got = (gp.tensor(a, device="cuda") @ gp.tensor(b, device="cuda")).numpy().astype(np.float64)
    want = a.astype(np.float64) @ b.astype(np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def test_float32_gemms_are_exact_unless_tf32_is_switched_on():
    assert not gp.cuda.tf32_enabled()
    assert _matmul_error() < 1e-5  # float32 accumulation: about 1e-7 to 1e-6
    major = cupy.cuda.Device().compute_capability[:-1]
    if int(major) < 8:
        pytest.skip("TF32 needs compute capability 8.0")
    gp.cuda.set_tf32(True)
    try:
        assert gp.cuda.tf32_enabled()
        assert _matmul_error() > 1e-5  # 10-bit mantissas: about 3e-4
    finally:
        gp.cuda.set_tf32(False)
    assert _matmul_error() < 1e-5


# -- the GPU computes what the CPU computes ------------------------------------------------
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_on_the_gpu_follows_the_cpu(optimizer):
    gp.manual_seed(0)
    cpu_model = mlp(dtype=np.float64)
    gpu_model = mlp(dtype=np.float64)
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_model.to("cuda")
    runs = []
    for model, device in ((cpu_model, "cpu"), (gpu_model, "cuda")):
        x, labels = batch(np.float64, device)
        if optimizer == "sgd":
            opt = gp.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
        else:
            opt = gp.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
        losses = []
        for _ in range(5):
            loss = gp.cross_entropy(model(x), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        runs.append((losses, [p.numpy() for p in model.parameters()]))
    (cpu_losses, cpu_params), (gpu_losses, gpu_params) = runs
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-10)
    for got, want in zip(gpu_params, cpu_params):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


# -- gradients on the GPU -------------------------------------------------------------------
def _leaf(*shape, low=None):
    x = gp.randn(*shape, dtype="float64", device="cuda")
    if low is not None:
        x = gp.tensor(np.abs(x.numpy()) + low, device="cuda")
    return x.requires_grad_()


@pytest.mark.parametrize("activation", [None, "sigmoid", "tanh", "relu"])
def test_gradcheck_linear_on_gpu(activation):
    x, w, b = _leaf(5, 4), _leaf(3, 4), _leaf(3)
    gp.gradcheck(lambda x, w, b: gp.linear(x, w, b, activation), [x, w, b])


OPS = {
    "sigmoid": (lambda a: gp.sigmoid(a), [(6, 5)]),
    "tanh": (lambda a: gp.tanh(a), [(6, 5)]),
    "relu": (lambda a: gp.relu(a), [(6, 5)]),
    "softmax": (lambda a: gp.softmax(a, axis=1), [(4, 6)]),
    "log_softmax": (lambda a: gp.log_softmax(a, axis=0), [(4, 6)]),
    "matmul": (lambda a, b: a @ b, [(3, 4), (4, 2)]),
    "add_broadcast": (lambda a, b: a + b, [(3, 4), (4,)]),
    "mul_div": (lambda a, b: a * b / (b * b + 1), [(3, 4), (3, 4)]),
    "exp_log": (lambda a: gp.log(gp.exp(a) + 1), [(5,)]),
    "sum_mean_max": (lambda a: a.sum(axis=0) + a.mean(axis=1).sum() + a.max(axis=1).sum(), [(4, 5)]),
    "shape": (lambda a: a.reshape(5, 4).T[1:3] * 2, [(4, 5)]),
    "getitem": (lambda a: a[gp.tensor(np.array([0, 2, 2]), device="cuda")], [(4, 3)]),
    "mse": (lambda a, b: gp.mse_loss(a, b), [(4, 3), (4, 3)]),
    "bce": (lambda a, b: gp.binary_cross_entropy_with_logits(a, gp.sigmoid(b)), [(4, 3), (4, 3)]),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_gradcheck_ops_on_gpu(name):
    fn, shapes = OPS[name]
    gp.gradcheck(fn, [_leaf(*shape) for shape in shapes])


def test_gradcheck_pow_on_gpu():
    gp.gradcheck(lambda a, b: a**b, [_leaf(3, 2, low=0.5), _leaf(3, 2)])


def test_gradcheck_cross_entropy_on_gpu():
    labels = gp.tensor(np.array([0, 3, 1, 2, 3]), device="cuda")
    gp.gradcheck(lambda z: gp.cross_entropy(z, labels), [_leaf(5, 4)])
    gp.gradcheck(lambda z: gp.cross_entropy(z, labels, reduction="sum"), [_leaf(5, 4)])


def test_gradcheck_dropout_on_gpu():
    def fn(a):
        gp.manual_seed(3)  # the same mask at every evaluation
        return gp.dropout(a, 0.4)

    gp.gradcheck(fn, [_leaf(8, 7)])


# -- running out of device memory -----------------------------------------------------------
def test_an_allocation_too_big_for_the_device_says_so_in_gpubps_words():
    free, total = cupy.cuda.runtime.memGetInfo()
    columns = int(total // 4 // 1000 + 1)  # one float32 matrix larger than the whole device
    with pytest.raises(gp.cuda.OutOfMemoryError, match=r"cuda:0 is out of memory: asked for .* GiB .* free of") as err:
        gp.nn.Linear(columns, 1000, device="cuda")
    assert isinstance(err.value, MemoryError) and isinstance(err.value, cupy.cuda.memory.OutOfMemoryError)
    assert np.isfinite(gp.ones(3, device="cuda").sum().item())  # the device is usable afterwards


def test_zero_dimensional_tensors_keep_their_shape_on_the_device():
    for value in (3.0, np.float32(2.5), np.array(7), gp.tensor(1.5)):
        t = gp.tensor(value, device="cuda")
        assert t.shape == () and t.cpu().shape == ()
    label = gp.tensor(np.int64(2), device="cuda")
    assert label.shape == ()
