import numpy as np
import pytest

import gpubp as gp


class TwoLayer(gp.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = gp.nn.Linear(3, 4)
        self.out = gp.nn.Linear(4, 2, bias=False)
        self.drop = gp.nn.Dropout(0.5)

    def forward(self, x: gp.Tensor) -> gp.Tensor:
        return self.out(self.drop(gp.sigmoid(self.hidden(x))))


def test_parameters_are_registered_in_order() -> None:
    model = TwoLayer()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["hidden.weight", "hidden.bias", "out.weight"]
    assert all(p.requires_grad for p in model.parameters())


def test_train_eval_propagate() -> None:
    model = TwoLayer().eval()
    assert not model.drop.training
    x = gp.randn(5, 3)
    np.testing.assert_array_equal(model(x).numpy(), model(x).numpy())  # dropout off
    assert model.train().drop.training


def test_state_dict_round_trip() -> None:
    a, b = TwoLayer(), TwoLayer()
    b.load_state_dict(a.state_dict())
    x = gp.randn(5, 3)
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


def test_load_state_dict_accepts_arrays_and_casts() -> None:
    layer = gp.nn.Linear(3, 2)
    state = {"weight": np.ones((2, 3)), "bias": np.zeros(2)}
    layer.load_state_dict(state)
    assert layer.weight.dtype == np.float32 and layer.weight.numpy().sum() == 6


def test_load_state_dict_errors() -> None:
    layer = gp.nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"weight has shape \(3, 3\) in the state but \(2, 3\) in the model"):
        layer.load_state_dict({"weight": np.ones((3, 3)), "bias": np.zeros(2)})
    with pytest.raises(KeyError, match=r"missing keys \['bias'\], unexpected keys \['b'\]"):
        layer.load_state_dict({"weight": np.ones((2, 3)), "b": np.zeros(2)})


def test_zero_grad_clears_all() -> None:
    model = TwoLayer()
    model(gp.randn(2, 3)).sum().backward()
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_to_cpu_keeps_parameter_identity() -> None:
    model = TwoLayer()
    params = list(model.parameters())
    assert model.to("cpu") is model and list(model.parameters()) == params and model.device == "cpu"


def test_init_must_call_super() -> None:
    class Broken(gp.nn.Module):
        def __init__(self) -> None:
            self.layer = gp.nn.Linear(2, 2)

    with pytest.raises(AttributeError, match="must call super"):
        Broken()
