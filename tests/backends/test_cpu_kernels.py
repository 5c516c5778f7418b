"""The C kernels of kernels/*_cpu.c against their NumPy twins in base.py, the
NumPy backend's choice between the two, and the loader's cache and fallbacks."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

import gpubp as gp
from gpubp.backends import cpu_kernels, numpy_backend
from gpubp.backends.base import Backend

KERNELS = cpu_kernels.load()
needs_kernels = pytest.mark.skipif(
    KERNELS is None, reason=f"CPU kernels unavailable: {cpu_kernels.unavailable_reason()}"
)
TWIN = numpy_backend.NumpyBackend()  # the NumPy path is called through Backend.<method>(TWIN, ...)

# Values where σ is hard: limits, the clamps at t = −87 and 88, float32's denormal range.
EDGES = np.array(
    [0.0, -0.0, 1e-30, -1e-30, 1.0, -1.0, 15.0, -15.0, 17.0, -17.0, 86.9, -86.9, 87.0, -87.0, 87.1, -87.1]
    + [88.0, -88.0, 88.1, -88.1, 89.0, -89.0, 103.0, -103.0, 104.0, -104.0, 1000.0, -1000.0, 3e38, -3e38],
    dtype=np.float32,
)


def sigmoid_float64(z: np.ndarray) -> np.ndarray:
    # Not 0.5·(1 + tanh(z/2)): for z ≪ 0 it cancels to 0, where σ is a tiny number.
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-z.astype(np.float64)))


def assert_sigmoid_close(y: np.ndarray, z: np.ndarray) -> None:
    """Within 3 ulp of the float64 σ, except below float32's normal range, where
    the kernel flushes to 0 (an absolute error under 6.1e−39)."""
    exact = sigmoid_float64(z)
    assert y.dtype == np.float32
    normal = exact >= np.finfo(np.float32).tiny
    ulps = np.abs(y[normal] - exact[normal]) / np.spacing(exact[normal].astype(np.float32))
    assert ulps.max(initial=0) <= 3, f"{ulps.max()} ulp at z = {z[normal][ulps.argmax()]}"
    np.testing.assert_array_less(np.abs(y[~normal] - exact[~normal]), 6.1e-39)


def sample(*shape: int, scale: float = 8.0) -> np.ndarray:
    return (np.random.default_rng(0).standard_normal(shape) * scale).astype(np.float32)


@needs_kernels
@pytest.mark.parametrize("n", [1, 7, 8, 9, 255, 4099])  # SIMD bodies and their scalar tails
def test_sigmoid_kernel_matches_float64_within_3_ulp(n: int) -> None:
    z = sample(n)
    y = np.empty_like(z)
    KERNELS.sigmoid_f32(KERNELS.buffer(z), KERNELS.buffer(y), n)
    assert_sigmoid_close(y, z)


@needs_kernels
def test_sigmoid_kernel_limits_inf_and_nan() -> None:
    z = np.concatenate([EDGES, [np.inf, -np.inf, np.nan]]).astype(np.float32)
    y = np.empty_like(z)
    KERNELS.sigmoid_f32(KERNELS.buffer(z), KERNELS.buffer(y), z.size)
    assert_sigmoid_close(y[:-1], z[:-1])
    assert y[-3] == 1.0 and y[-2] == 0.0 and np.isnan(y[-1])
    np.testing.assert_array_equal(y[np.abs(z) >= 104], (z[np.abs(z) >= 104] > 0).astype(np.float32))


@needs_kernels
@pytest.mark.parametrize("shape", [(1, 1), (3, 13), (37, 64), (256, 1000)])
def test_bias_sigmoid_kernel_in_place_matches_numpy_twin(shape: tuple[int, int]) -> None:
    z, bias = sample(*shape), sample(shape[1], scale=2.0)
    expected = Backend.bias_activation(TWIN, z.copy(), bias, "sigmoid")
    y = z.copy()
    KERNELS.bias_sigmoid_f32(KERNELS.buffer(y), KERNELS.buffer(bias), KERNELS.buffer(y), *shape)
    assert_sigmoid_close(y, z + bias)
    np.testing.assert_allclose(y, expected, rtol=4e-7, atol=6.1e-39)


@needs_kernels
@pytest.mark.parametrize("n", [1, 9, 4099])
def test_sigmoid_backward_kernel_equals_numpy_twin_bit_for_bit(n: int) -> None:
    # Same products in the same order, so not even rounding differs.
    g, y = sample(n), sigmoid_float64(sample(n)).astype(np.float32)
    y[:3] = [0.0, 1.0, 0.5][: min(3, n)]
    dz = np.empty_like(y)
    KERNELS.sigmoid_backward_f32(KERNELS.buffer(g), KERNELS.buffer(y), KERNELS.buffer(dz), n)
    np.testing.assert_array_equal(dz, Backend.sigmoid_backward(TWIN, g, y))


class Spy:
    """The real kernels, counting which ones the backend calls."""

    def __init__(self, kernels: cpu_kernels.CpuKernels) -> None:
        self.calls: list[str] = []
        self.buffer = kernels.buffer
        for name in cpu_kernels.SIGNATURES:
            short = name.removeprefix("gpubp_")
            setattr(self, short, self._recording(short, getattr(kernels, short)))

    def _recording(self, name: str, function):
        def call(*args):
            self.calls.append(name)
            return function(*args)

        return call


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    spy = Spy(KERNELS)
    monkeypatch.setattr(cpu_kernels, "load", lambda: spy)
    return spy


@needs_kernels
def test_float32_mlp_layer_runs_on_the_kernels_and_matches_float64(spy: Spy) -> None:
    x64 = sample(64, 300, scale=1.0).astype(np.float64)
    layer = gp.nn.Linear(300, 200, dtype=np.float64)
    layer32 = gp.nn.Linear(300, 200)
    layer32.weight.data[...] = layer.weight.numpy()
    layer32.bias.data[...] = layer.bias.numpy()
    outputs, grads = [], []
    for lin, x in ((layer, x64), (layer32, x64.astype(np.float32))):
        xt = gp.tensor(x, requires_grad=True)
        y = lin(xt, "sigmoid")  # the fused layer: GEMM, then one bias + σ pass
        (y * y).sum().backward()
        outputs.append(y.numpy())
        grads.append(xt.grad.numpy())
    assert spy.calls == ["bias_sigmoid_f32", "sigmoid_backward_f32"]
    assert outputs[1].dtype == grads[1].dtype == np.float32
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-4, atol=1e-5)


@needs_kernels
def test_sigmoid_op_runs_on_the_kernels_with_huge_inputs_and_no_warnings(spy: Spy) -> None:
    z = np.resize(EDGES, (100, 100)).astype(np.float32)  # past both kernels' size thresholds
    x = gp.tensor(z, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = gp.sigmoid(x)
        (y * gp.tensor(sample(100, 100))).sum().backward()
    assert spy.calls == ["sigmoid_f32", "sigmoid_backward_f32"]
    assert_sigmoid_close(y.numpy(), z)
    assert np.isfinite(x.grad.numpy()).all()


@needs_kernels
@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: sample(64, 64).astype(np.float64), id="float64"),
        pytest.param(lambda: sample(64, 128)[:, ::2], id="strided"),
        pytest.param(lambda: np.broadcast_to(sample(1, 64), (64, 64)), id="read-only"),
        pytest.param(lambda: sample(8, 8), id="small"),
    ],
)
def test_arrays_the_kernels_cannot_take_go_the_numpy_way(spy: Spy, make) -> None:
    z = make()
    y = TWIN.sigmoid(z)
    dz = TWIN.sigmoid_backward(np.ones_like(y), y)
    assert spy.calls == []
    np.testing.assert_array_equal(y, Backend.sigmoid(TWIN, z))
    np.testing.assert_array_equal(dz, Backend.sigmoid_backward(TWIN, np.ones_like(y), y))


SGD_SETTINGS = [
    {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False},
    {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.01, "nesterov": False},
    {"momentum": 0.9, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False},
    {"momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01, "nesterov": False},
    {"momentum": 0.9, "dampening": 0.0, "weight_decay": 0.01, "nesterov": True},
]
ADAM_SETTINGS = [
    {"weight_decay": 0.0, "decoupled": False},
    {"weight_decay": 0.01, "decoupled": False},
    {"weight_decay": 0.01, "decoupled": True},
]


def close_after_update(got: tuple, expected: tuple) -> None:
    # One or two roundings apart where the compiler fuses a multiply-add (FMA).
    for a, b in zip(got, expected):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@needs_kernels
@pytest.mark.parametrize("first_step", [True, False])
@pytest.mark.parametrize("settings", SGD_SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_sgd_kernel_matches_numpy_twin(spy: Spy, settings: dict, first_step: bool) -> None:
    param, grad, buf = sample(77, 101, scale=1.0), sample(77, 101, scale=1.0), sample(77, 101, scale=0.1)
    if not settings["weight_decay"]:
        param[0, :2] = [np.inf, -np.inf]  # stays inf: a zero weight decay is left out, not multiplied in
    hyper = dict(settings, lr=0.1, first_step=first_step)
    state = [param.copy(), grad.copy(), buf.copy() if settings["momentum"] else None]
    expected = [param.copy(), grad.copy(), buf.copy() if settings["momentum"] else None]
    TWIN.sgd_update(*state, **hyper)
    Backend.sgd_update(TWIN, *expected, **hyper)
    assert spy.calls == ["sgd_update_f32"]
    close_after_update([a for a in state if a is not None], [a for a in expected if a is not None])
    if not settings["weight_decay"]:
        assert state[0][0, 0] == np.inf and state[0][0, 1] == -np.inf


@needs_kernels
@pytest.mark.parametrize("step", [1, 7])
@pytest.mark.parametrize("settings", ADAM_SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_adam_kernel_matches_numpy_twin(spy: Spy, settings: dict, step: int) -> None:
    param, grad = sample(77, 101, scale=1.0), sample(77, 101, scale=1.0)
    exp_avg, exp_avg_sq = sample(77, 101, scale=0.1), np.abs(sample(77, 101, scale=0.1))
    hyper = dict(settings, step=step, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)
    state = [a.copy() for a in (param, grad, exp_avg, exp_avg_sq)]
    expected = [a.copy() for a in (param, grad, exp_avg, exp_avg_sq)]
    TWIN.adam_update(*state, **hyper)
    Backend.adam_update(TWIN, *expected, **hyper)
    assert spy.calls == ["adam_update_f32"]
    close_after_update(state, expected)


@needs_kernels
def test_small_or_float64_updates_go_the_numpy_way(spy: Spy) -> None:
    hyper = {"lr": 0.1, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False, "first_step": True}
    TWIN.sgd_update(sample(8, 8), sample(8, 8), None, **hyper)
    TWIN.sgd_update(sample(80, 80).astype(np.float64), sample(80, 80).astype(np.float64), None, **hyper)
    assert spy.calls == []


# -- the loader ------------------------------------------------------------------
@pytest.fixture
def fresh_loader(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """load() starts over with an empty cache in tmp_path, and forgets it afterwards."""
    monkeypatch.setenv("GPUBP_CACHE_DIR", str(tmp_path / "cache"))
    cpu_kernels.reset()
    yield tmp_path
    cpu_kernels.reset()


def test_disabled_by_environment(fresh_loader: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUBP_CPU_KERNELS", "0")
    assert cpu_kernels.load() is None
    assert "GPUBP_CPU_KERNELS=0" in cpu_kernels.unavailable_reason()


def test_without_a_compiler_the_reason_says_so(fresh_loader: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "no-such-compiler-gpubp")
    assert cpu_kernels.load() is None
    assert "no C compiler" in cpu_kernels.unavailable_reason()
    np.testing.assert_array_equal(TWIN.sigmoid(sample(64, 64)), Backend.sigmoid(TWIN, sample(64, 64)))


@needs_kernels
def test_a_failing_compile_warns_and_falls_back(fresh_loader: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = fresh_loader / "activation_cpu.c"
    broken.write_text("this is not C\n")
    monkeypatch.setattr(cpu_kernels, "source_paths", lambda: [broken])
    with pytest.warns(RuntimeWarning, match="could not be built"):
        assert cpu_kernels.load() is None
    assert "activation_cpu.c" in cpu_kernels.unavailable_reason()
    assert [p.name for p in (fresh_loader / "cache").iterdir()] == []  # no half-written library left


@needs_kernels
def test_build_is_cached_and_keyed_on_the_source(fresh_loader: Path) -> None:
    compiler = cpu_kernels.find_compiler()
    sources = [fresh_loader / path.name for path in cpu_kernels.source_paths()]
    for source, original in zip(sources, cpu_kernels.source_paths()):
        source.write_text(original.read_text())
    cache = fresh_loader / "cache"
    first = cpu_kernels.build(compiler, sources, cache)
    built_at = first.stat().st_mtime_ns
    assert cpu_kernels.build(compiler, sources, cache) == first and first.stat().st_mtime_ns == built_at
    sources[-1].write_text(sources[-1].read_text() + "\n/* changed */\n")
    assert cpu_kernels.build(compiler, sources, cache) != first


@needs_kernels
def test_source_compiles_without_warnings() -> None:
    # The CI check (.ci/compile_kernels.py) runs the same command.
    compiler = cpu_kernels.find_compiler()
    command = cpu_kernels.compile_command(compiler, cpu_kernels.source_paths(), Path("/dev/null"), True)
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stderr == "", result.stderr
