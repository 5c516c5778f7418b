import numpy as np
import pytest

import gpubp as gp


def quadratic_steps(opt_factory, steps: int = 3) -> np.ndarray:
    """Runs an optimizer on f(w) = Σ (w − 1)² · c from w = 0 and returns the trajectory."""
    w = gp.zeros(3, dtype="float64", requires_grad=True)
    scale = gp.tensor([1.0, 2.0, 3.0], dtype="float64")
    opt = opt_factory([w])
    out = []
    for _ in range(steps):
        opt.zero_grad()
        (((w - 1) ** 2) * scale).sum().backward()
        opt.step()
        out.append(w.numpy())
    return np.array(out)


def test_plain_sgd_formula() -> None:
    traj = quadratic_steps(lambda p: gp.optim.SGD(p, lr=0.1), steps=1)
    np.testing.assert_allclose(traj[0], 0.1 * 2 * np.array([1.0, 2.0, 3.0]))


def test_sgd_weight_decay_is_l2_gradient() -> None:
    w = gp.tensor([2.0], dtype="float64", requires_grad=True)
    opt = gp.optim.SGD([w], lr=0.5, weight_decay=0.1)
    (w * 0).sum().backward()  # zero data gradient: only the L2 term acts
    opt.step()
    assert w.item() == pytest.approx(2.0 - 0.5 * 0.1 * 2.0)


def test_momentum_by_hand() -> None:
    traj = quadratic_steps(lambda p: gp.optim.SGD(p, lr=0.1, momentum=0.9), steps=2)
    g0 = -2 * np.array([1.0, 2.0, 3.0])
    w1 = -0.1 * g0
    g1 = 2 * (w1 - 1) * np.array([1.0, 2.0, 3.0])
    w2 = w1 - 0.1 * (0.9 * g0 + g1)
    np.testing.assert_allclose(traj[1], w2)


def test_adam_first_step_moves_by_lr() -> None:
    traj = quadratic_steps(lambda p: gp.optim.Adam(p, lr=0.01), steps=1)
    np.testing.assert_allclose(traj[0], 0.01, rtol=1e-6)  # bias-corrected first step = lr·sign(g)


def test_state_dict_round_trip_continues_identically() -> None:
    def run(split: bool) -> np.ndarray:
        w = gp.zeros(3, dtype="float64", requires_grad=True)
        opt = gp.optim.Adam([w], lr=0.1)
        for step in range(4):
            if split and step == 2:
                state = opt.state_dict()
                opt = gp.optim.Adam([w], lr=0.5)
                opt.load_state_dict(state)
            opt.zero_grad()
            ((w - 1) ** 2).sum().backward()
            opt.step()
        return w.numpy()

    np.testing.assert_array_equal(run(False), run(True))


def test_parameters_without_grad_are_skipped() -> None:
    a = gp.ones(2, requires_grad=True)
    b = gp.ones(2, requires_grad=True)
    opt = gp.optim.SGD([a, b], lr=1.0)
    a.sum().backward()
    opt.step()
    np.testing.assert_array_equal(b.numpy(), 1)
    np.testing.assert_array_equal(a.numpy(), 0)


def test_param_groups_with_own_hyperparameters() -> None:
    a = gp.ones(1, requires_grad=True)
    b = gp.ones(1, requires_grad=True)
    opt = gp.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    (a + b).sum().backward()
    opt.step()
    assert a.item() == pytest.approx(0.9) and b.item() == pytest.approx(0.5)


def test_float32_updates_stay_float32() -> None:
    model = gp.nn.Linear(3, 2)
    for opt in (
        gp.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3),
        gp.optim.AdamW(model.parameters()),
    ):
        model(gp.randn(4, 3)).sum().backward()
        opt.step()
        assert all(p.dtype == np.float32 for p in model.parameters())


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda p: gp.optim.SGD(p, lr=-1), "lr must be non-negative"),
        (lambda p: gp.optim.SGD(p, lr=0.1, nesterov=True), "Nesterov momentum needs momentum > 0"),
        (lambda p: gp.optim.Adam(p, betas=(0.9, 1.0)), r"betas must be in \[0, 1\)"),
        (lambda p: gp.optim.SGD([], lr=0.1), "empty parameter list"),
        (lambda p: gp.optim.SGD([gp.ones(2)], lr=0.1), "requires grad"),
    ],
)
def test_bad_hyperparameters(factory, message) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        factory([gp.ones(2, requires_grad=True)])


@pytest.mark.parametrize(
    "factory",
    [
        lambda p: gp.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
        lambda p: gp.optim.AdamW(p, lr=1e-2),
    ],
    ids=["sgd", "adamw"],
)
def test_chunked_updates_of_big_parameters_equal_whole_ones(factory, monkeypatch: pytest.MonkeyPatch) -> None:
    from gpubp.backends import numpy_backend

    def run(chunk: int) -> np.ndarray:
        monkeypatch.setattr(numpy_backend, "UPDATE_CHUNK", chunk)
        w = gp.tensor(np.linspace(-1, 1, 1000).reshape(40, 25), requires_grad=True)
        opt = factory([w])
        for _ in range(3):
            opt.zero_grad()
            (w * w * w).sum().backward()
            opt.step()
        return w.numpy()

    np.testing.assert_array_equal(run(1 << 20), run(64))  # 64 does not divide 1000: a short last piece


def test_zero_grad_keeps_zeroed_gradients_when_asked() -> None:
    model = gp.nn.Linear(3, 2)
    opt = gp.optim.SGD(model.parameters(), lr=0.1)
    model(gp.ones(4, 3)).sum().backward()
    grads = [p.grad for p in model.parameters()]
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is g and not g.numpy().any() for p, g in zip(model.parameters(), grads))
    model(gp.ones(4, 3)).sum().backward()
    model.zero_grad(set_to_none=False)
    assert all(p.grad is g and not g.numpy().any() for p, g in zip(model.parameters(), grads))
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


# -- steps a GradScaler may skip on the device (gpubp.amp) ------------------------------
def found_inf(value: float) -> np.ndarray:
    """A GradScaler's found_inf, as its step hands it to the optimizer."""
    return np.full((), value, dtype=np.float32)


def amp_step(opt, flag: float | None) -> None:
    opt._amp_found_inf = None if flag is None else found_inf(flag)
    try:
        opt.step()
    finally:
        del opt._amp_found_inf


AMP_OPTIMIZERS = {
    "sgd": lambda p: gp.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=1e-2),
    "nesterov": lambda p: gp.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    "adam": lambda p: gp.optim.Adam(p, lr=0.1),
    "adamw": lambda p: gp.optim.AdamW(p, lr=0.1),
}


def quadratic_grad(w: gp.Tensor) -> None:
    w.grad = None
    weights = gp.tensor(np.arange(1, w.size + 1, dtype=np.float32), device=w.device)
    (((w - 1) ** 2) * weights).sum().backward()


@pytest.mark.parametrize("kind", list(AMP_OPTIMIZERS))
@pytest.mark.parametrize("size", [3, 5000], ids=["numpy", "c-kernels"])
def test_steps_skipped_on_the_device_change_nothing_and_do_not_count(kind, size) -> None:
    """Skipped, clean, skipped, clean: the same as two plain steps (the skipped
    ones advance no step count and leave the momentum buffer to the first clean one)."""

    def run(flags: list[float | None]) -> tuple[np.ndarray, dict]:
        w = gp.zeros(size, requires_grad=True)
        opt = AMP_OPTIMIZERS[kind]([w])
        for flag in flags:
            quadratic_grad(w)
            amp_step(opt, flag)
        return w.numpy(), opt.state_dict()["state"][0]

    skipping, plain = run([1.0, 0.0, 1.0, 0.0]), run([None, None])
    np.testing.assert_array_equal(skipping[0], plain[0])
    assert_same_state(skipping[1], plain[1])


def assert_same_state(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_a_stepped_by_scaler_adam_counts_steps_on_the_device() -> None:
    w = gp.zeros(3, requires_grad=True)
    opt = gp.optim.Adam([w], lr=0.1)
    quadratic_grad(w)
    opt.step()  # a plain step first: the host count moves to the device at the first scaled one
    for flag in (0.0, 1.0, None):  # counted, skipped, and a plain step after: still on the device
        quadratic_grad(w)
        amp_step(opt, flag)
    step = opt.state[w]["step"]
    assert isinstance(step, gp.Tensor) and step.shape == () and step.dtype == np.float64 and step.item() == 3
    assert opt.state_dict()["state"][0]["step"] == 3 and isinstance(opt.state_dict()["state"][0]["step"], int)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_device_step_counts_save_as_numbers_and_load_back(kind) -> None:
    def run(reload: bool) -> np.ndarray:
        w = gp.zeros(3, requires_grad=True)
        opt = AMP_OPTIMIZERS[kind]([w])
        for i, flag in enumerate([1.0, 0.0, 1.0, 0.0, 0.0]):
            if reload and i == 3:
                saved = opt.state_dict()
                opt.load_state_dict(saved)  # the counts go back to the device
                fresh = AMP_OPTIMIZERS[kind]([w])
                fresh.load_state_dict(saved)  # host counts, as saved
                assert_same_state(opt.state_dict()["state"][0], fresh.state_dict()["state"][0])
            quadratic_grad(w)
            amp_step(opt, flag)
        return w.numpy()

    np.testing.assert_array_equal(run(True), run(False))


def test_an_sgd_buffer_saved_before_its_first_clean_step_saves_as_none() -> None:
    w = gp.zeros(3, requires_grad=True)
    opt = gp.optim.SGD([w], lr=0.1, momentum=0.9, dampening=0.1)
    quadratic_grad(w)
    amp_step(opt, 1.0)
    assert opt.state_dict()["state"][0] == {"momentum_buffer": None}
    reference = gp.zeros(3, requires_grad=True)
    ref_opt = gp.optim.SGD([reference], lr=0.1, momentum=0.9, dampening=0.1)
    ref_opt.load_state_dict(opt.state_dict())  # a host-counted optimizer fills the buffer at its first step
    quadratic_grad(w)
    amp_step(opt, 0.0)
    quadratic_grad(reference)
    ref_opt.step()
    np.testing.assert_array_equal(w.numpy(), reference.numpy())
    buffer = opt.state_dict()["state"][0]["momentum_buffer"]
    np.testing.assert_array_equal(buffer, [-2.0, -4.0, -6.0])  # buf = d at its first step, not (1 − dampening)·d
