"""gp.amp.GradScaler: the skip, backoff and growth of torch.amp.GradScaler step for
step (scale, growth tracker, parameters and optimizer state), its state_dict, its
errors, and the same training inside gp.jit. On each device present; PyTorch runs
on the CPU as the reference."""

from __future__ import annotations

import time

import numpy as np
import pytest

import gpubp as gp
from gpubp.capture import CaptureError

# Per step: None (a clean step), a value written into one gradient entry, or
# "overflow" (inputs so large that the scaled loss itself overflows to inf).
SCRIPT = ["inf", None, None, None, "nan", None, None, None, None, "-inf", "overflow", None, None, None, None]

OPTIMIZERS = {
    # dampening ≠ 0: a momentum buffer that missed its first step (buf = d) is visibly wrong.
    "sgd": ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "weight_decay": 1e-2}),
    "nesterov": ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    "plain-sgd": ("SGD", {"lr": 0.1}),
    "adam": ("Adam", {"lr": 1e-2}),
    "adamw": ("AdamW", {"lr": 1e-2, "weight_decay": 1e-2}),
}
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def data(seed: int = 0, rows: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, 4)).astype(np.float32), rng.standard_normal((rows, 3)).astype(np.float32)


def twins(device: str, optimizer: str, **scaler: float):
    """A gpubp model, optimizer and scaler on ``device`` and their PyTorch twins on the CPU, equal at the start."""
    torch = pytest.importorskip("torch")
    kind, hyper = OPTIMIZERS[optimizer]
    model = gp.nn.Linear(4, 3).to(device)
    reference = torch.nn.Linear(4, 3)
    with torch.no_grad():
        reference.weight.copy_(torch.from_numpy(model.weight.numpy()))
        reference.bias.copy_(torch.from_numpy(model.bias.numpy()))
    options = {"init_scale": 2.0**10, "growth_interval": 3, **scaler}
    ours = (model, getattr(gp.optim, kind)(model.parameters(), **hyper), gp.amp.GradScaler(device, **options))
    theirs = (
        reference,
        getattr(torch.optim, kind)(reference.parameters(), **hyper),
        torch.amp.GradScaler("cpu", **options),
    )
    return ours, theirs


def scaled_step(model, opt, scaler, x, y, bad, make, write) -> float:
    """One iteration of the usual loop, ``bad`` written into a gradient after backward."""
    if bad == "overflow":
        x = x * np.float32(1e19)
    opt.zero_grad()
    loss = ((model(make(x)) - make(y)) ** 2).mean()
    scaler.scale(loss).backward()
    if bad not in (None, "overflow"):
        write(model.weight.grad, float(bad))
    scaler.step(opt)
    scaler.update()
    return loss


def assert_same_state(ours: dict, theirs: dict, count: int) -> None:
    """Optimizer states equal, where a parameter PyTorch has not stepped yet (its
    steps were all skipped) has no state there and untouched state here."""
    for index in range(count):
        mine, reference = ours.get(index, {}), theirs.get(index, {})
        for key in set(mine) | set(reference):
            value, expected = mine.get(key), reference.get(key)
            if expected is None:
                assert value is None or not np.any(value), (index, key)
            elif key == "step":
                assert value == int(expected.item()), index
            else:
                np.testing.assert_allclose(value, expected.numpy(), **TOLERANCE, err_msg=f"{index} {key}")


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore:overflow encountered")  # the "overflow" step's forward, in NumPy
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_skips_backoff_and_growth_follow_pytorch_step_for_step(device, optimizer) -> None:
    torch = pytest.importorskip("torch")
    (model, opt, scaler), (reference, ref_opt, ref_scaler) = twins(device, optimizer)

    def write(grad, value):
        grad[0, 1] = value

    for i, bad in enumerate(SCRIPT):
        x, y = data(i)
        scaled_step(model, opt, scaler, x, y, bad, lambda a: gp.tensor(a, device=device), write)
        scaled_step(reference, ref_opt, ref_scaler, x, y, bad, torch.from_numpy, write)
        assert scaler.state_dict() == ref_scaler.state_dict(), i
        for mine, theirs in zip(model.parameters(), reference.parameters()):
            np.testing.assert_allclose(mine.numpy(), theirs.detach().numpy(), **TOLERANCE, err_msg=str(i))
        assert_same_state(opt.state_dict()["state"], ref_opt.state_dict()["state"], 2)
    assert scaler.get_scale() == 2.0**10 * 0.5**4 * 2.0**3  # SCRIPT's four backoffs and three growths


def test_the_scale_never_grows_to_inf(device) -> None:
    w = gp.ones(2, requires_grad=True, device=device)
    opt = gp.optim.SGD([w], lr=0.0)
    scaler = gp.amp.GradScaler(device, init_scale=2.0**127, growth_interval=1)
    for _ in range(3):
        scaler.scale((w * 0.25).sum()).backward()
        scaler.step(opt)
        scaler.update()
    assert scaler.get_scale() == 2.0**127 and scaler.state_dict()["_growth_tracker"] == 0


def test_unscale_then_step_unscales_once(device) -> None:
    """unscale_ before step (to clip, say) leaves step nothing more to divide."""
    w = gp.ones(3, requires_grad=True, device=device)
    opt = gp.optim.SGD([w], lr=1.0)
    scaler = gp.amp.GradScaler(device, init_scale=8.0)
    scaler.scale((w * gp.tensor([1.0, 2.0, 3.0], device=device)).sum()).backward()
    np.testing.assert_array_equal(w.grad.numpy(), [8.0, 16.0, 24.0])
    scaler.unscale_(opt)
    np.testing.assert_array_equal(w.grad.numpy(), [1.0, 2.0, 3.0])
    scaler.step(opt)
    scaler.update()
    np.testing.assert_array_equal(w.numpy(), [0.0, -1.0, -2.0])


def test_scale_takes_nested_lists_and_tuples(device) -> None:
    scaler = gp.amp.GradScaler(device, init_scale=4.0)
    a, b = gp.ones(2, device=device), gp.full((), 3.0, device=device)
    out = scaler.scale([a, (b, [a])])
    assert isinstance(out, list) and isinstance(out[1], tuple) and isinstance(out[1][1], list)
    np.testing.assert_array_equal(out[0].numpy(), [4.0, 4.0])
    assert out[1][0].item() == 12.0 and out[1][0].shape == ()


def test_update_with_a_new_scale(device) -> None:
    scaler = gp.amp.GradScaler(device)
    scaler.update(new_scale=128.0)
    assert scaler.get_scale() == 128.0
    scaler.update(new_scale=gp.tensor([0.25], device=device))
    assert scaler.get_scale() == 0.25


# -- state_dict -----------------------------------------------------------------------
def test_state_dict_round_trip_continues_the_growth_count(device) -> None:
    w = gp.ones(2, requires_grad=True, device=device)
    opt = gp.optim.SGD([w], lr=0.0)
    scaler = gp.amp.GradScaler(device, init_scale=16.0, growth_interval=3, growth_factor=4.0, backoff_factor=0.25)
    for _ in range(2):
        scaler.scale(w.sum()).backward()
        scaler.step(opt)
        scaler.update()
    saved = scaler.state_dict()
    assert saved == {
        "scale": 16.0,
        "growth_factor": 4.0,
        "backoff_factor": 0.25,
        "growth_interval": 3,
        "_growth_tracker": 2,
    }
    restored = gp.amp.GradScaler(device)
    restored.load_state_dict(saved)
    assert restored.state_dict() == saved
    restored.scale(w.sum()).backward()
    restored.step(opt)
    restored.update()
    assert restored.get_scale() == 64.0  # the third clean step in a row grows the scale


def test_a_disabled_scaler_saves_nothing_and_an_empty_state_is_refused(device) -> None:
    assert gp.amp.GradScaler(device, enabled=False).state_dict() == {}
    with pytest.raises(RuntimeError, match="source state dict is empty"):
        gp.amp.GradScaler(device).load_state_dict({})


def test_a_disabled_scaler_passes_everything_through(device) -> None:
    w = gp.ones(2, requires_grad=True, device=device)
    opt = gp.optim.SGD([w], lr=1.0)
    scaler = gp.amp.GradScaler(device, enabled=False)
    loss = w.sum()
    assert scaler.scale(loss) is loss and not scaler.is_enabled() and scaler.get_scale() == 1.0
    loss.backward()
    scaler.unscale_(opt)
    scaler.step(opt)
    scaler.update()
    np.testing.assert_array_equal(w.numpy(), [0.0, 0.0])


# -- errors -----------------------------------------------------------------------------
def _stepped(scaler, opt, w):
    scaler.scale(w.sum()).backward()
    return scaler, opt


@pytest.mark.parametrize(
    ("calls", "error", "message"),
    [
        (lambda s, o: (s.unscale_(o), s.unscale_(o)), RuntimeError, r"unscale_\(\) has already been called"),
        (lambda s, o: (s.step(o), s.unscale_(o)), RuntimeError, r"unscale_\(\) is being called after step\(\)"),
        (lambda s, o: (s.step(o), s.step(o)), RuntimeError, r"step\(\) has already been called since the last update"),
        (lambda s, o: s.step(o, closure=lambda: 0), RuntimeError, "Closure use is not currently supported"),
        (lambda s, o: s.update(new_scale="big"), ValueError, "new_scale must be a number or a 1-element tensor"),
        (lambda s, o: s.update(new_scale=gp.ones(2)), ValueError, r"1-element tensor .* shape \(2,\)"),
    ],
    ids=["unscale-twice", "unscale-after-step", "step-twice", "closure", "new-scale-str", "new-scale-shape"],
)
def test_misuse_within_an_iteration_raises(calls, error, message) -> None:
    w = gp.ones(2, requires_grad=True)
    scaler, opt = _stepped(gp.amp.GradScaler("cpu"), gp.optim.SGD([w], lr=0.1), w)
    with pytest.raises(error, match=message):
        calls(scaler, opt)


def test_an_update_after_the_last_one_starts_a_new_iteration() -> None:
    w = gp.ones(2, requires_grad=True)
    scaler, opt = _stepped(gp.amp.GradScaler("cpu"), gp.optim.SGD([w], lr=0.1), w)
    scaler.step(opt)
    scaler.update()
    with pytest.raises(RuntimeError, match="No inf checks were recorded prior to update"):
        scaler.update()
    with pytest.raises(RuntimeError, match="No inf checks were recorded for this optimizer"):
        scaler.step(gp.optim.SGD([gp.ones(2, requires_grad=True)], lr=0.1))  # no gradients


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"growth_factor": 1.0}, ValueError, r"growth factor must be > 1\.0"),
        ({"backoff_factor": 1.0}, ValueError, r"backoff factor must be in \(0, 1\)"),
        ({"growth_interval": 2.5}, TypeError, "growth_interval must be a Python int"),
        ({"growth_interval": 0}, ValueError, "growth_interval must be positive"),
        ({"init_scale": float("inf")}, ValueError, "init_scale must be a positive finite"),
        ({"device": "tpu"}, ValueError, "unknown device 'tpu'"),
    ],
)
def test_bad_settings_are_refused(options, error, message) -> None:
    with pytest.raises(error, match=message):
        gp.amp.GradScaler(**{"device": "cpu", **options})
    with pytest.raises(ValueError, match="growth factor"):
        gp.amp.GradScaler("cpu").set_growth_factor(0.5)


def test_parameters_must_be_float32_master_weights_on_the_scalers_device() -> None:
    from tests.test_jit import OtherDevice

    scaler = gp.amp.GradScaler("cpu")
    w = gp.ones(2, dtype="float64", requires_grad=True)
    scaler.scale(w.sum()).backward()
    with pytest.raises(TypeError, match="parameter 0 of the SGD is float64; .* float32 master weights"):
        scaler.step(gp.optim.SGD([w], lr=0.1))
    elsewhere = gp.ones(2, requires_grad=True)
    elsewhere._backend = OtherDevice()
    with pytest.raises(ValueError, match="parameter 1 of the SGD is on fake:0, the scaler on cpu"):
        scaler.unscale_(gp.optim.SGD([gp.ones(2, requires_grad=True), elsewhere], lr=0.1))
    with pytest.raises(ValueError, match="an output is on fake:0, the scaler on cpu"):
        scaler.scale(elsewhere)
    with pytest.raises(ValueError, match="outputs must be a Tensor"):
        scaler.scale({"loss": w})


def test_loss_scaling_under_bfloat16_autocast_is_refused() -> None:
    if not hasattr(gp, "autocast"):
        pytest.skip("gp.autocast is not there")
    scaler = gp.amp.GradScaler("cpu")
    loss = gp.ones(2, requires_grad=True).sum()
    with gp.autocast("cpu", dtype=gp.bfloat16), pytest.raises(ValueError, match="bfloat16 .* need no loss scaling"):
        scaler.scale(loss)
    with gp.autocast("cpu", dtype=gp.float16):
        assert scaler.scale(loss).item() == 2.0 * 2.0**16


@pytest.mark.skipif(gp.cuda.is_available(), reason="CUDA is available here")
def test_a_cuda_scaler_without_cuda_warns_and_disables_itself() -> None:
    with pytest.warns(UserWarning, match="CUDA is not available"):
        scaler = gp.amp.GradScaler("cuda")
    assert not scaler.is_enabled()


# -- inside gp.jit ------------------------------------------------------------------------
def train(device: str, use_jit: bool, optimizer: str, steps: int = 10):
    """Losses, parameters, scales and trackers of a scaled training run; batch 1
    and batch 6 hold an inf (their gradients NaN: the step is skipped), and the
    growth factor changes at step 7 (a captured step must honour it)."""
    gp.manual_seed(0)
    model = gp.nn.Sequential(gp.nn.Linear(4, 8), gp.nn.Tanh(), gp.nn.Linear(8, 3)).to(device)
    kind, hyper = OPTIMIZERS[optimizer]
    opt = getattr(gp.optim, kind)(model.parameters(), **hyper)
    scaler = gp.amp.GradScaler(device, init_scale=2.0**8, growth_interval=2)

    def step(x: gp.Tensor, y: gp.Tensor) -> gp.Tensor:
        loss = ((model(x) - y) ** 2).mean()
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss

    run = gp.jit(step) if use_jit else step
    history = []
    for i in range(steps):
        x, y = data(i)
        if i in (1, 6):
            x[2, 1] = np.inf
        if i == 7:
            scaler.set_growth_factor(4.0)
        loss = run(gp.tensor(x, device=device), gp.tensor(y, device=device)).item()
        history.append((loss, scaler.get_scale(), scaler.state_dict()["_growth_tracker"]))
    return history, [p.numpy() for p in model.parameters()], opt.state_dict()["state"]


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # 0 · inf in the inf batches' backward
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_jitted_scaled_step_trains_exactly_as_the_eager_one(device, optimizer) -> None:
    eager = train(device, False, optimizer)
    jitted = train(device, True, optimizer)
    assert jitted[0] == eager[0]
    assert [scale for _, scale, _ in eager[0]] == [256, 128, 128, 256, 256, 512, 256, 256, 1024, 1024]
    for got, want in zip(jitted[1], eager[1]):
        np.testing.assert_array_equal(got, want)
    for index, values in eager[2].items():
        for key, value in values.items():
            np.testing.assert_array_equal(jitted[2][index][key], value)


def test_reading_the_scale_inside_a_captured_step_fails_at_capture() -> None:
    w = gp.ones(2, requires_grad=True)
    opt = gp.optim.SGD([w], lr=0.1)
    scaler = gp.amp.GradScaler("cpu")

    @gp.jit(warmup=1)
    def step(x: gp.Tensor) -> float:
        opt.zero_grad()
        scaler.scale((w * x).sum()).backward()
        scaler.step(opt)
        scaler.update()
        return scaler.get_scale()

    step(gp.ones(2))
    with pytest.raises(CaptureError, match=r"GradScaler.get_scale\(\) reads a value on the host"):
        step(gp.ones(2))


@pytest.mark.gpu
def test_a_replayed_scaled_step_never_waits_for_the_device() -> None:
    cupy = pytest.importorskip("cupy")
    from tests.backends.test_cuda_training import _SPIN

    model = gp.nn.Linear(4, 3).to("cuda")
    opt = gp.optim.Adam(model.parameters())
    scaler = gp.amp.GradScaler("cuda")

    @gp.jit
    def step(x: gp.Tensor, y: gp.Tensor) -> gp.Tensor:
        loss = ((model(x) - y) ** 2).mean()
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss

    x, y = (gp.tensor(a, device="cuda") for a in data())
    for _ in range(4):
        step(x, y)  # warm-up, capture, a replay
    gp.cuda.synchronize()
    cupy.RawKernel(_SPIN, "spin")((1,), (1,), (np.uint64(2e9),))
    started = time.perf_counter()
    loss = step(x, y)
    assert not cupy.cuda.get_current_stream().done, "the replay waited for the device"
    assert time.perf_counter() - started < 1.0
    assert np.isfinite(loss.item())
