"""Learning-rate schedulers: step by step against torch.optim.lr_scheduler (rates,
momenta, several parameter groups), resuming from state_dict, hand-computed
values, and the optimizer actually following the schedule (also through gp.jit)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import gpubp as gp
from gpubp.optim import lr_scheduler

try:
    import torch
except ImportError:  # the cross-checks are optional
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed; the cross-check is optional")

GROUP_LRS = [0.1, 0.05, 0.3]
STEPS = 300


def _decay(epoch: int) -> float:
    return 0.97**epoch


class Warmup:
    """A callable object: its attributes are state (saved by LambdaLR.state_dict)."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def __call__(self, epoch: int) -> float:
        return min(1.0, (epoch + 1) / self.steps)


# name -> (optimizer kind, scheduler factory taking the scheduler module and the optimizer)
CASES: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "step": ("sgd", lambda m, opt: m.StepLR(opt, step_size=7, gamma=0.5)),
    "multistep": ("sgd", lambda m, opt: m.MultiStepLR(opt, milestones=[5, 20, 20, 90], gamma=0.3)),
    "exponential": ("sgd", lambda m, opt: m.ExponentialLR(opt, gamma=0.97)),
    "cosine": ("sgd", lambda m, opt: m.CosineAnnealingLR(opt, T_max=100, eta_min=0.001)),
    "cosine-short": ("adam", lambda m, opt: m.CosineAnnealingLR(opt, T_max=37)),
    "lambda": ("sgd", lambda m, opt: m.LambdaLR(opt, lr_lambda=_decay)),
    "lambda-per-group": ("sgd", lambda m, opt: m.LambdaLR(opt, lr_lambda=[_decay, lambda e: 1 / (1 + e), Warmup(9)])),
    "onecycle": ("sgd", lambda m, opt: m.OneCycleLR(opt, max_lr=1.0, total_steps=STEPS)),
    "onecycle-linear": (
        "sgd",
        lambda m, opt: m.OneCycleLR(opt, max_lr=0.5, total_steps=STEPS, anneal_strategy="linear"),
    ),
    "onecycle-three-phase": (
        "sgd",
        lambda m, opt: m.OneCycleLR(
            opt, max_lr=[1.0, 0.2, 3.0], epochs=10, steps_per_epoch=30, three_phase=True, pct_start=0.25
        ),
    ),
    "onecycle-adam": (
        "adam",
        lambda m, opt: m.OneCycleLR(
            opt, max_lr=0.01, total_steps=STEPS, div_factor=10.0, final_div_factor=100.0, base_momentum=[0.8, 0.7, 0.6]
        ),
    ),
    "onecycle-no-momentum": (
        "adam",
        lambda m, opt: m.OneCycleLR(
            opt, max_lr=0.01, total_steps=STEPS, cycle_momentum=False, anneal_strategy="linear"
        ),
    ),
}


def gp_optimizer(kind: str) -> gp.optim.Optimizer:
    groups = [{"params": [gp.zeros(2, dtype="float64", requires_grad=True)], "lr": lr} for lr in GROUP_LRS]
    if kind == "sgd":
        return gp.optim.SGD(groups, lr=0.1, momentum=0.9)
    return gp.optim.Adam(groups, lr=0.1, betas=(0.9, 0.999))


def torch_optimizer(kind: str) -> Any:
    groups = [{"params": [torch.zeros(2, dtype=torch.float64, requires_grad=True)], "lr": lr} for lr in GROUP_LRS]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    return torch.optim.Adam(groups, lr=0.1, betas=(0.9, 0.999))


def snapshot(opt: Any, sched: Any) -> dict[str, Any]:
    """What a scheduler controls, as plain floats: rates, momenta and betas per group."""
    groups = opt.param_groups
    out = {"lr": [g["lr"] for g in groups], "last_lr": list(sched.get_last_lr()), "epoch": sched.last_epoch}
    if "momentum" in groups[0]:
        out["momentum"] = [g["momentum"] for g in groups]
    if "betas" in groups[0]:
        out["betas"] = [list(g["betas"]) for g in groups]
    return out


def assert_same(ours: dict[str, Any], theirs: dict[str, Any], where: str) -> None:
    assert ours.keys() == theirs.keys(), where
    assert ours["epoch"] == theirs["epoch"], where
    for key in ours.keys() - {"epoch"}:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-12, atol=1e-18, err_msg=f"{key} {where}")


def trajectory(make_opt: Callable[[], Any], factory: Callable[[Any], Any], steps: int) -> list[dict[str, Any]]:
    opt = make_opt()
    sched = factory(opt)
    out = [snapshot(opt, sched)]
    for _ in range(steps):
        opt.step()  # no gradients: changes nothing, but keeps PyTorch's order of calls
        sched.step()
        out.append(snapshot(opt, sched))
    return out


# -- against PyTorch ----------------------------------------------------------------------
@pytest.mark.torch
@needs_torch
@pytest.mark.parametrize("name", CASES)
def test_every_step_matches_torch(name: str) -> None:
    kind, factory = CASES[name]
    ours = trajectory(lambda: gp_optimizer(kind), lambda opt: factory(lr_scheduler, opt), STEPS)
    theirs = trajectory(lambda: torch_optimizer(kind), lambda opt: factory(torch.optim.lr_scheduler, opt), STEPS)
    for step, (a, b) in enumerate(zip(ours, theirs)):
        assert_same(a, b, f"{name}, step {step}")


@pytest.mark.torch
@needs_torch
@pytest.mark.parametrize("name", CASES)
def test_a_torch_schedulers_state_continues_in_gpubp(name: str) -> None:
    kind, factory = CASES[name]
    t_opt = torch_optimizer(kind)
    t_sched = factory(torch.optim.lr_scheduler, t_opt)
    for _ in range(40):
        t_opt.step()
        t_sched.step()
    opt = gp_optimizer(kind)
    sched = factory(lr_scheduler, opt)
    for ours, theirs in zip(opt.param_groups, t_opt.param_groups):
        ours.update({k: v for k, v in theirs.items() if k != "params"})
    sched.load_state_dict(t_sched.state_dict())
    for step in range(40, STEPS):
        t_opt.step()
        t_sched.step()
        sched.step()
        assert_same(snapshot(opt, sched), snapshot(t_opt, t_sched), f"{name}, step {step + 1}")


@pytest.mark.torch
@needs_torch
@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("three_phase", [False, True])
def test_training_under_onecycle_matches_torch(kind: str, three_phase: bool) -> None:
    """The optimizers use the rates and momenta (SGD momentum, Adam β₁) the schedule sets."""
    rng = np.random.default_rng(0)
    w0, x = rng.standard_normal((3, 4)), rng.standard_normal((16, 3))
    y = rng.standard_normal((16, 4))
    results = []
    for lib in (gp, torch):
        w = lib.tensor(w0.copy(), requires_grad=True) if lib is torch else gp.tensor(w0, requires_grad=True)
        xs, ys = (torch.from_numpy(x), torch.from_numpy(y)) if lib is torch else (gp.tensor(x), gp.tensor(y))
        if kind == "sgd":
            opt = lib.optim.SGD([w], lr=0.1, momentum=0.9, weight_decay=1e-3)
        else:
            opt = lib.optim.Adam([w], lr=0.1)
        sched = lib.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=40, three_phase=three_phase)
        for _ in range(40):
            opt.zero_grad()
            (((xs @ w) - ys) ** 2).mean().backward()
            opt.step()
            sched.step()
        results.append(w.detach().numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-10, atol=1e-12)


# -- on its own -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", CASES)
def test_resuming_from_state_dicts_continues_exactly(name: str) -> None:
    """Build the new scheduler, then load the optimizer's state and the scheduler's (PyTorch's order)."""
    kind, factory = CASES[name]
    whole = trajectory(lambda: gp_optimizer(kind), lambda opt: factory(lr_scheduler, opt), 120)
    opt = gp_optimizer(kind)
    sched = factory(lr_scheduler, opt)
    for _ in range(50):
        sched.step()
    opt_state, sched_state = opt.state_dict(), sched.state_dict()
    sched.step()  # what follows must not depend on the old objects
    opt = gp_optimizer(kind)
    sched = factory(lr_scheduler, opt)
    opt.load_state_dict(opt_state)
    sched.load_state_dict(sched_state)
    assert snapshot(opt, sched) == whole[50]
    for step in range(51, 121):
        sched.step()
        assert snapshot(opt, sched) == whole[step], step


def test_constructing_sets_the_initial_rate_and_base_lrs() -> None:
    opt = gp_optimizer("sgd")
    sched = lr_scheduler.StepLR(opt, step_size=2)
    assert sched.base_lrs == GROUP_LRS
    assert sched.last_epoch == 0
    assert sched.get_last_lr() == GROUP_LRS
    assert [g["initial_lr"] for g in opt.param_groups] == GROUP_LRS
    opt = gp_optimizer("sgd")
    lr_scheduler.OneCycleLR(opt, max_lr=2.5, total_steps=10)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx(
        [2.5 / 25] * 3, rel=1e-14
    )  # max_lr / div_factor, replacing the groups' rates
    assert [g["momentum"] for g in opt.param_groups] == [0.95] * 3


def test_step_and_multistep_by_hand() -> None:
    opt = gp_optimizer("sgd")
    sched = lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    rates = [sched.get_last_lr()[0]]
    for _ in range(7):
        sched.step()
        rates.append(sched.get_last_lr()[0])
    assert rates == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025], rel=1e-15)
    opt = gp_optimizer("sgd")
    sched = lr_scheduler.MultiStepLR(opt, milestones=[2, 4, 4], gamma=0.1)
    rates = [sched.get_last_lr()[0]]
    for _ in range(5):
        sched.step()
        rates.append(sched.get_last_lr()[0])
    assert rates == pytest.approx([0.1, 0.1, 0.01, 0.01, 1e-4, 1e-4], rel=1e-12)


def test_cosine_recursion_stays_on_the_closed_form() -> None:
    opt = gp_optimizer("sgd")
    t_max, eta_min = 50, 0.002
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=t_max, eta_min=eta_min)
    for epoch in range(1, 3 * t_max + 1):  # past T_max the cosine rises again, through the trough at 3·T_max
        sched.step()
        for lr, base in zip(sched.get_last_lr(), GROUP_LRS):
            closed = eta_min + (base - eta_min) * (1 + math.cos(math.pi * epoch / t_max)) / 2
            assert abs(lr - closed) <= 1e-12 * base, (epoch, lr, closed)


def test_cosine_resumed_at_a_later_epoch_continues_from_the_rates_it_finds() -> None:
    opt = gp_optimizer("sgd")
    for group in opt.param_groups:
        group["initial_lr"] = group["lr"]
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=20, last_epoch=4)
    # The constructor's step moves to epoch 5 and keeps the rates it finds; the next
    # step already recurses from them (PyTorch does the same).
    assert sched.last_epoch == 5 and sched.get_last_lr() == GROUP_LRS
    sched.step()
    expected = [(1 + math.cos(6 * math.pi / 20)) / (1 + math.cos(5 * math.pi / 20)) * base for base in GROUP_LRS]
    assert sched.get_last_lr() == pytest.approx(expected, rel=1e-14)


def test_onecycle_phases_by_hand() -> None:
    opt = gp_optimizer("sgd")
    sched = lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=100, pct_start=0.25)
    rates, momenta = [sched.get_last_lr()[0]], [opt.param_groups[0]["momentum"]]
    for _ in range(99):
        sched.step()
        rates.append(sched.get_last_lr()[0])
        momenta.append(opt.param_groups[0]["momentum"])
    assert rates[0] == pytest.approx(1.0 / 25)
    assert max(rates) == rates[24] == pytest.approx(1.0)  # the peak ends the first 25% of the steps
    assert momenta[0] == pytest.approx(0.95) and momenta[24] == pytest.approx(0.85)
    assert rates[99] == pytest.approx(1.0 / 25 / 1e4)
    assert momenta[99] == pytest.approx(0.95)
    assert np.all(np.diff(rates[:25]) > 0) and np.all(np.diff(rates[24:]) < 0)
    sched.step()  # step 100 == total_steps is still allowed, as in PyTorch
    with pytest.raises(ValueError, match="total steps"):
        sched.step()


def test_onecycle_cycles_adams_beta1_and_keeps_beta2() -> None:
    opt = gp_optimizer("adam")
    sched = lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=10, base_momentum=0.8, max_momentum=0.9)
    assert opt.param_groups[0]["betas"] == (0.9, 0.999)
    for _ in range(3):
        sched.step()
    beta1, beta2 = opt.param_groups[0]["betas"]
    assert 0.8 < beta1 < 0.9 and beta2 == 0.999


def test_lambda_state_keeps_callable_objects_attributes_not_functions() -> None:
    warmup = Warmup(5)
    opt = gp_optimizer("sgd")
    sched = lr_scheduler.LambdaLR(opt, [_decay, lambda e: 1.0, warmup])
    state = sched.state_dict()
    assert state["lr_lambdas"] == [None, None, {"steps": 5}]
    assert "optimizer" not in state
    state["lr_lambdas"][2] = {"steps": 2}
    sched.load_state_dict(state)
    assert warmup.steps == 2
    assert sched.lr_lambdas[0] is _decay


def test_bad_arguments_raise() -> None:
    opt = gp_optimizer("sgd")
    with pytest.raises(TypeError, match="not a gp.optim optimizer"):
        lr_scheduler.StepLR(object(), step_size=1)
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.StepLR(opt, step_size=1, last_epoch=3)
    with pytest.raises(ValueError, match="total_steps"):
        lr_scheduler.OneCycleLR(opt, max_lr=1.0)
    with pytest.raises(ValueError, match="anneal_strategy"):
        lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=10, anneal_strategy="step")
    with pytest.raises(ValueError, match="pct_start"):
        lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=10, pct_start=1.5)
    with pytest.raises(ValueError, match="same length"):
        lr_scheduler.OneCycleLR(opt, max_lr=[1.0, 2.0], total_steps=10)
    with pytest.raises(ValueError, match="lr_lambdas"):
        lr_scheduler.LambdaLR(opt, [_decay])


def test_a_jitted_step_follows_the_schedule(device: str) -> None:
    """gp.jit replays read each group's lr and momentum at every replay: a jitted run
    under OneCycleLR ends with the eager run's weights (on a GPU, replays of one graph)."""
    results = []
    rng = np.random.default_rng(3)
    batches = [(rng.standard_normal((8, 5)).astype(np.float32), rng.integers(0, 3, 8)) for _ in range(12)]
    for use_jit in (False, True):
        gp.manual_seed(0)
        model = gp.nn.Sequential(gp.nn.Linear(5, 7), gp.nn.Tanh(), gp.nn.Linear(7, 3)).to(device)
        opt = gp.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        sched = lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=len(batches))

        def step(x: gp.Tensor, labels: gp.Tensor, model=model, opt=opt) -> gp.Tensor:
            loss = gp.cross_entropy(model(x), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss

        step = gp.jit(step) if use_jit else step
        for x, labels in batches:
            step(gp.tensor(x, device=device), gp.tensor(labels, device=device))
            sched.step()
        results.append([p.numpy() for p in model.parameters()])
    for eager, jitted in zip(*results):
        np.testing.assert_array_equal(eager, jitted)
