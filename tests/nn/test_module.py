from collections import OrderedDict

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


# -- apply ---------------------------------------------------------------------------------------
def test_apply_visits_children_first_and_returns_self() -> None:
    model = gp.nn.Sequential(TwoLayer(), gp.nn.Sigmoid())
    seen = []
    assert model.apply(lambda m: seen.append(type(m).__name__)) is model
    # post-order, as torch: each module after everything under it
    assert seen == ["Linear", "Linear", "Dropout", "TwoLayer", "Sigmoid", "Sequential"]


def test_apply_initialises_weights() -> None:
    model = TwoLayer()

    def init(m: gp.nn.Module) -> None:
        if isinstance(m, gp.nn.Linear):
            gp.nn.init.zeros_(m.weight)

    model.apply(init)
    assert not model.hidden.weight.numpy().any() and not model.out.weight.numpy().any()


# -- Sequential ----------------------------------------------------------------------------------
def test_sequential_from_an_ordered_dict_names_its_modules() -> None:
    model = gp.nn.Sequential(
        OrderedDict([("fc", gp.nn.Linear(3, 4)), ("act", gp.nn.Tanh()), ("out", gp.nn.Linear(4, 2))])
    )
    assert [n for n, _ in model.named_parameters()] == ["fc.weight", "fc.bias", "out.weight", "out.bias"]
    assert model.fc is model[0] and isinstance(model.act, gp.nn.Tanh)
    x = gp.randn(5, 3)
    np.testing.assert_allclose(model(x).numpy(), model.out(gp.tanh(model.fc(x))).numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    ("name", "error"),
    [("a.b", "must be a non-empty string without '.'"), ("", "non-empty"), ("forward", "would hide the attribute")],
)
def test_sequential_bad_names(name: str, error: str) -> None:
    with pytest.raises(KeyError, match=error):
        gp.nn.Sequential(OrderedDict([(name, gp.nn.ReLU())]))


def test_sequential_append_extend_and_slices() -> None:
    model = gp.nn.Sequential(gp.nn.Linear(3, 4))
    x = gp.randn(2, 3)
    before = model(x).numpy()  # builds the fusion plan, which append must reset
    assert model.append(gp.nn.Sigmoid()) is model
    np.testing.assert_allclose(model(x).numpy(), gp.sigmoid(gp.tensor(before)).numpy(), rtol=1e-6)
    model.extend([gp.nn.Linear(4, 2), gp.nn.ReLU()])
    assert len(model) == 4 and [n for n, _ in model.named_parameters()][-1] == "2.bias"
    head = model[:2]
    assert isinstance(head, gp.nn.Sequential) and len(head) == 2 and head[0] is model[0]
    assert model[-1] is model[3]
    with pytest.raises(TypeError, match="item 4 is a function"):
        model.append(gp.relu)


# -- ModuleList ----------------------------------------------------------------------------------
class Stack(gp.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = gp.nn.ModuleList([gp.nn.Linear(3, 3) for _ in range(3)])

    def forward(self, x: gp.Tensor) -> gp.Tensor:
        for layer in self.layers:
            x = gp.tanh(layer(x))
        return x


def test_module_list_registers_its_modules() -> None:
    model = Stack()
    names = [n for n, _ in model.named_parameters()]
    assert names == [f"layers.{i}.{p}" for i in range(3) for p in ("weight", "bias")]
    model(gp.randn(2, 3)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    assert not any(layer.training for layer in model.layers)


def test_module_list_behaves_as_a_list() -> None:
    a, b, c, d = (gp.nn.Linear(2, 2) for _ in range(4))
    layers = gp.nn.ModuleList([a, b])
    layers.append(c)
    layers += [d]
    assert list(layers) == [a, b, c, d] and len(layers) == 4 and layers[-1] is d
    assert isinstance(layers[1:3], gp.nn.ModuleList) and list(layers[1:3]) == [b, c]
    del layers[1]
    assert list(layers) == [a, c, d] and list(layers._modules) == ["0", "1", "2"] and layers[1] is c
    layers.insert(0, b)
    assert list(layers) == [b, a, c, d]
    layers[2] = a
    assert list(layers) == [b, a, a, d]
    assert len(list(layers.parameters())) == 6  # a once: parameters are counted once
    assert list(layers + gp.nn.ModuleList([c])) == [b, a, a, d, c]
    with pytest.raises(IndexError, match="ModuleList index 4 is out of range for 4 modules"):
        layers[4]
    with pytest.raises(TypeError, match="ModuleList.append: function is not a Module"):
        layers.append(gp.relu)
    with pytest.raises(NotImplementedError):
        layers(gp.randn(2))


@pytest.mark.torch
def test_container_names_match_torch() -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed; the cross-check is optional")
    ours = gp.nn.Sequential(
        OrderedDict([("fc", gp.nn.Linear(3, 4)), ("blocks", gp.nn.ModuleList([gp.nn.Linear(4, 4)]))])
    )
    theirs = torch.nn.Sequential(
        OrderedDict([("fc", torch.nn.Linear(3, 4)), ("blocks", torch.nn.ModuleList([torch.nn.Linear(4, 4)]))])
    )
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})


def test_replacing_a_registered_module_or_parameter_keeps_its_place() -> None:
    model = TwoLayer()
    model.hidden = gp.nn.Linear(3, 4)
    model.hidden.bias = gp.nn.Parameter(gp.ones(4))
    assert [n for n, _ in model.named_parameters()] == ["hidden.weight", "hidden.bias", "out.weight"]
    seq = gp.nn.Sequential(gp.nn.Linear(2, 3), gp.nn.Sigmoid(), gp.nn.Linear(3, 1))
    x = gp.randn(4, 2)
    seq(x)  # builds the fusion plan, which the replacement must reset
    seq[1] = gp.nn.Tanh()
    assert [type(m).__name__ for m in seq] == ["Linear", "Tanh", "Linear"]
    np.testing.assert_allclose(seq(x).numpy(), seq[2](gp.tanh(seq[0](x))).numpy(), rtol=1e-6)
