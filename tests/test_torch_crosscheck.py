"""Gradients of MLPs and optimizer trajectories against PyTorch, when it is installed."""

import numpy as np
import pytest

import gpubp as gp

torch = pytest.importorskip("torch", reason="PyTorch is not installed; the cross-check is optional")
pytestmark = pytest.mark.torch

ACTIVATIONS = {
    "sigmoid": (gp.nn.Sigmoid, torch.nn.Sigmoid),
    "tanh": (gp.nn.Tanh, torch.nn.Tanh),
    "relu": (gp.nn.ReLU, torch.nn.ReLU),
}


def twin_mlps(sizes: list[int], activation: str) -> tuple[gp.nn.Sequential, torch.nn.Sequential]:
    gp_layers, torch_layers = [], []
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        gp_layers.append(gp.nn.Linear(n_in, n_out, dtype="float64"))
        torch_layers.append(torch.nn.Linear(n_in, n_out, dtype=torch.float64))
        if i < len(sizes) - 2:
            gp_layers.append(ACTIVATIONS[activation][0]())
            torch_layers.append(ACTIVATIONS[activation][1]())
    gp_model, torch_model = gp.nn.Sequential(*gp_layers), torch.nn.Sequential(*torch_layers)
    torch_model.load_state_dict({k: torch.from_numpy(v.numpy()) for k, v in gp_model.state_dict().items()})
    return gp_model, torch_model


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("sizes", [[5, 7, 3], [10, 16, 8, 4]])
def test_mlp_gradients_match_torch(sizes: list[int], activation: str) -> None:
    gp_model, torch_model = twin_mlps(sizes, activation)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, sizes[0]))
    labels = rng.integers(0, sizes[-1], 9)
    gp.cross_entropy(gp_model(gp.tensor(x)), labels).backward()
    torch.nn.functional.cross_entropy(torch_model(torch.from_numpy(x)), torch.from_numpy(labels)).backward()
    for (name, p), q in zip(gp_model.named_parameters(), torch_model.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_mse_and_bce_gradients_match_torch() -> None:
    rng = np.random.default_rng(1)
    x, t = rng.standard_normal((4, 3)), rng.uniform(0, 1, (4, 3))
    for gp_loss, torch_loss in [
        (gp.mse_loss, torch.nn.functional.mse_loss),
        (gp.binary_cross_entropy_with_logits, torch.nn.functional.binary_cross_entropy_with_logits),
    ]:
        a = gp.tensor(x, requires_grad=True)
        b = torch.tensor(x, requires_grad=True)
        gp_loss(a, gp.tensor(t)).backward()
        torch_loss(b, torch.from_numpy(t)).backward()
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-12)


OPTIMIZERS = {
    "sgd": (lambda p: gp.optim.SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "momentum_l2": (
        lambda p: gp.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
    ),
    "nesterov_dampening0": (
        lambda p: gp.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True),
    ),
    "dampening": (
        lambda p: gp.optim.SGD(p, lr=0.05, momentum=0.8, dampening=0.3),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, dampening=0.3),
    ),
    "adam": (
        lambda p: gp.optim.Adam(p, lr=1e-2, weight_decay=1e-3),
        lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-3),
    ),
    "adamw": (
        lambda p: gp.optim.AdamW(p, lr=1e-2, betas=(0.8, 0.99)),
        lambda p: torch.optim.AdamW(p, lr=1e-2, betas=(0.8, 0.99)),
    ),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_training_trajectories_match_torch(name: str) -> None:
    gp_model, torch_model = twin_mlps([6, 8, 3], "sigmoid")
    gp_opt, torch_opt = OPTIMIZERS[name][0](list(gp_model.parameters())), OPTIMIZERS[name][1](torch_model.parameters())
    rng = np.random.default_rng(2)
    for _ in range(20):
        x = rng.standard_normal((10, 6))
        labels = rng.integers(0, 3, 10)
        gp_opt.zero_grad()
        gp.cross_entropy(gp_model(gp.tensor(x)), labels).backward()
        gp_opt.step()
        torch_opt.zero_grad()
        torch.nn.functional.cross_entropy(torch_model(torch.from_numpy(x)), torch.from_numpy(labels)).backward()
        torch_opt.step()
    for p, q in zip(gp_model.parameters(), torch_model.parameters()):
        np.testing.assert_allclose(p.numpy(), q.detach().numpy(), rtol=1e-9, atol=1e-11)


def test_float32_step_close_to_torch() -> None:
    gp_model = gp.nn.Sequential(gp.nn.Linear(20, 32), gp.nn.Sigmoid(), gp.nn.Linear(32, 5))
    torch_model = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.Sigmoid(), torch.nn.Linear(32, 5))
    torch_model.load_state_dict({k: torch.from_numpy(v.numpy()) for k, v in gp_model.state_dict().items()})
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 20)).astype(np.float32)
    labels = rng.integers(0, 5, 16)
    gp.cross_entropy(gp_model(gp.tensor(x)), labels).backward()
    torch.nn.functional.cross_entropy(torch_model(torch.from_numpy(x)), torch.from_numpy(labels)).backward()
    for p, q in zip(gp_model.parameters(), torch_model.parameters()):
        assert p.grad.dtype == np.float32
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-4, atol=1e-6)
