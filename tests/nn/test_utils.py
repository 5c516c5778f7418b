"""gp.nn.utils: gradient clipping, as torch.nn.utils."""

import math

import numpy as np
import pytest

import gpubp as gp


def params_with_grads(device: str = "cpu", dtype: str = "float32") -> list[gp.Tensor]:
    rng = np.random.default_rng(0)
    params = []
    for shape in [(3, 4), (4,), (2, 2)]:
        p = gp.tensor(rng.standard_normal(shape), dtype=dtype, device=device, requires_grad=True)
        p.grad = gp.tensor(rng.standard_normal(shape) * 3, dtype=dtype, device=device)
        params.append(p)
    params.append(gp.zeros(5, device=device, dtype=dtype, requires_grad=True))  # no gradient: skipped
    return params


def all_grads(params: list[gp.Tensor]) -> np.ndarray:
    return np.concatenate([p.grad.numpy().ravel() for p in params if p.grad is not None]).astype(np.float64)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf, "inf"])
def test_clip_grad_norm_scales_to_max_norm_and_returns_the_norm_before(norm_type, device: str) -> None:
    params = params_with_grads(device, "float64")
    before = all_grads(params)
    p = float(norm_type)
    norm = np.abs(before).max() if p == math.inf else (np.abs(before) ** p).sum() ** (1 / p)
    total = gp.nn.utils.clip_grad_norm_(params, max_norm=1.0, norm_type=norm_type)
    assert isinstance(total, gp.Tensor) and total.shape == () and total.device == params[0].device
    np.testing.assert_allclose(total.item(), norm, rtol=1e-12)
    np.testing.assert_allclose(all_grads(params), before * (1.0 / (norm + 1e-6)), rtol=1e-12)


def test_clip_grad_norm_leaves_small_gradients_alone(device: str) -> None:
    params = params_with_grads(device)
    before = all_grads(params)
    total = gp.nn.utils.clip_grad_norm_(params, max_norm=1e6)
    np.testing.assert_array_equal(all_grads(params), before)  # scale min(1, …) = 1 exactly
    assert total.dtype == np.float32


def test_clip_grad_norm_of_one_tensor_and_of_none() -> None:
    p = gp.tensor([3.0, 4.0], requires_grad=True)
    p.grad = gp.tensor([3.0, 4.0])
    assert gp.nn.utils.clip_grad_norm_(p, 1.0).item() == pytest.approx(5.0)
    np.testing.assert_allclose(p.grad.numpy(), [0.6, 0.8], rtol=1e-6)
    q = gp.zeros(2, requires_grad=True)
    assert gp.nn.utils.clip_grad_norm_([q], 1.0).item() == 0.0


@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply")  # inf · 0, as in PyTorch
def test_clip_grad_norm_nonfinite() -> None:
    p = gp.tensor([1.0, 2.0], requires_grad=True)
    p.grad = gp.tensor([np.inf, 1.0])
    with pytest.raises(RuntimeError, match="The total norm of order 2.0 for gradients from `parameters` is non-finite"):
        gp.nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    total = gp.nn.utils.clip_grad_norm_([p], 1.0, foreach=True)  # scaled anyway, as torch
    assert math.isinf(total.item())


@pytest.mark.torch
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 0.5, math.inf])
def test_clip_grad_norm_against_torch(norm_type: float) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed; the cross-check is optional")
    ours = params_with_grads(dtype="float64")
    theirs = [torch.tensor(p.numpy(), requires_grad=True) for p in ours]
    for a, b in zip(ours, theirs):
        b.grad = None if a.grad is None else torch.from_numpy(a.grad.numpy().copy())
    total = gp.nn.utils.clip_grad_norm_(ours, 2.0, norm_type)
    want = torch.nn.utils.clip_grad_norm_(theirs, 2.0, norm_type)
    np.testing.assert_allclose(total.item(), want.item(), rtol=1e-13)
    for a, b in zip(ours, theirs):
        if a.grad is not None:
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-13)


def test_clip_grad_norm_in_a_model_step_and_the_version_counter() -> None:
    model = gp.nn.Sequential(gp.nn.Linear(3, 2))
    model(gp.randn(4, 3)).sum().backward()
    grad = model[0].weight.grad
    version = grad._version[0]
    gp.nn.utils.clip_grad_norm_(model.parameters(), 1e-3)
    assert grad._version[0] > version  # changed in place, as torch
    assert model[0].weight.grad is grad


def test_clip_grad_value(device: str) -> None:
    params = params_with_grads(device)
    before = all_grads(params)
    assert gp.nn.utils.clip_grad_value_(params, 0.5) is None
    np.testing.assert_allclose(all_grads(params), np.clip(before, -0.5, 0.5))
