import math

import numpy as np
import pytest

import gpubp as gp


def test_linear_shapes_match_torch() -> None:
    layer = gp.nn.Linear(784, 256)
    assert layer.weight.shape == (256, 784) and layer.bias.shape == (256,)
    assert gp.nn.Linear(3, 2, bias=False).bias is None


def test_linear_wrong_feature_count() -> None:
    with pytest.raises(ValueError, match=r"input has 100 features \(shape \(2, 100\)\) but the weight expects 784"):
        gp.nn.Linear(784, 10)(gp.randn(2, 100))


@pytest.mark.parametrize(("bad", "message"), [(0, "in_features must be a positive integer"), (2.5, "positive")])
def test_linear_bad_sizes(bad, message) -> None:
    with pytest.raises(ValueError, match=message):
        gp.nn.Linear(bad, 3)


def test_xavier_and_he_bounds() -> None:
    xavier = gp.nn.Linear(400, 100).weight.numpy()
    he = gp.nn.Linear(400, 100, init="he").weight.numpy()
    assert np.abs(xavier).max() <= math.sqrt(6 / 500) and xavier.std() == pytest.approx(math.sqrt(2 / 500), rel=0.05)
    assert np.abs(he).max() <= math.sqrt(6 / 400) and he.std() == pytest.approx(math.sqrt(2 / 400), rel=0.05)


def test_init_functions() -> None:
    w = gp.zeros(300, 200)
    gp.nn.init.xavier_normal_(w)
    assert w.numpy().std() == pytest.approx(math.sqrt(2 / 500), rel=0.05)
    gp.nn.init.kaiming_normal_(w)
    assert w.numpy().std() == pytest.approx(math.sqrt(2 / 200), rel=0.05)
    gp.nn.init.zeros_(w)
    assert not w.numpy().any()
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        gp.nn.init.xavier_uniform_(gp.zeros(3))


def test_sequential_indexing_and_type_check() -> None:
    model = gp.nn.Sequential(gp.nn.Linear(2, 3), gp.nn.ReLU())
    assert len(model) == 2 and isinstance(model[1], gp.nn.ReLU)
    with pytest.raises(TypeError, match="item 1 is a function"):
        gp.nn.Sequential(gp.nn.Linear(2, 3), gp.relu)


def test_loss_modules() -> None:
    logits, labels = gp.randn(4, 3), np.array([0, 1, 2, 0])
    assert gp.nn.CrossEntropyLoss()(logits, labels).item() == gp.cross_entropy(logits, labels).item()
    assert gp.nn.MSELoss()(logits, logits).item() == 0
    target = gp.zeros(4, 3)
    bce = gp.nn.BCEWithLogitsLoss()(logits, target).item()
    assert bce == gp.binary_cross_entropy_with_logits(logits, target).item()


def test_softmax_modules() -> None:
    x = gp.randn(2, 3)
    np.testing.assert_allclose(gp.nn.Softmax(dim=1)(x).numpy().sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(np.exp(gp.nn.LogSoftmax(1)(x).numpy()).sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(gp.nn.Softmax(axis=0)(x).numpy(), gp.softmax(x, 0).numpy())  # the old keyword
    assert repr(gp.nn.Softmax(dim=-1)) == "Softmax(dim=-1)" and gp.nn.LogSoftmax(axis=0).dim == 0
    with pytest.raises(TypeError, match="both dim=1 and axis=0"):
        gp.nn.Softmax(1, axis=0)


@pytest.mark.parametrize(("module", "dim"), [(gp.nn.Softmax, 0), (gp.nn.LogSoftmax, 0)])
def test_softmax_modules_without_dim_warn_as_torch_and_pick_its_implicit_dim(module, dim) -> None:
    x = gp.randn(2, 3, 4)  # 3-D: PyTorch's implicit choice is dim 0
    with pytest.warns(UserWarning, match="Implicit dimension choice") as record:
        y = module()(x)
    assert record[0].filename == __file__  # points at the caller, as torch's
    np.testing.assert_array_equal(y.numpy(), module(dim)(x).numpy())


def test_leaky_relu_and_gelu_modules() -> None:
    x = gp.randn(3, 4)
    np.testing.assert_array_equal(gp.nn.LeakyReLU(0.2)(x).numpy(), gp.nn.functional.leaky_relu(x, 0.2).numpy())
    np.testing.assert_array_equal(gp.nn.GELU("tanh")(x).numpy(), gp.nn.functional.gelu(x, approximate="tanh").numpy())
    assert repr(gp.nn.LeakyReLU()) == "LeakyReLU(negative_slope=0.01)"
    assert repr(gp.nn.GELU()) == "GELU(approximate='none')"
    with pytest.raises(ValueError, match="approximate must be one of"):
        gp.nn.GELU("fast")
    for module in (gp.nn.ReLU, gp.nn.LeakyReLU):
        assert not module().inplace
        with pytest.raises(ValueError, match="inplace=True is not supported"):
            module(inplace=True)


def test_new_activations_are_not_fused_into_linear_but_compose() -> None:
    model = gp.nn.Sequential(gp.nn.Linear(3, 4), gp.nn.GELU(), gp.nn.Linear(4, 2), gp.nn.LeakyReLU(0.1))
    x = gp.randn(5, 3)
    want = gp.nn.functional.leaky_relu(model[2](gp.nn.functional.gelu(model[0](x))), 0.1)
    np.testing.assert_array_equal(model(x).numpy(), want.numpy())


def test_identity() -> None:
    x = gp.randn(2, 3)
    assert gp.nn.Identity(54, unused="argument")(x) is x
    assert list(gp.nn.Identity().parameters()) == []


@pytest.mark.parametrize(
    ("shape", "start", "end", "want"),
    [
        ((2, 3, 4, 5), 1, -1, (2, 60)),
        ((2, 3, 4, 5), 0, -1, (120,)),
        ((2, 3, 4, 5), 1, 2, (2, 12, 5)),
        ((2, 3, 4, 5), -2, -1, (2, 3, 20)),
        ((2, 3), 1, 1, (2, 3)),
        ((2, 0, 4), 1, -1, (2, 0)),
        ((), 0, -1, (1,)),
    ],
)
def test_flatten_shapes(shape, start, end, want) -> None:
    x = gp.zeros(*shape, requires_grad=True)
    y = gp.nn.Flatten(start, end)(x)
    assert y.shape == want
    y.sum().backward()
    assert x.grad.shape == shape


@pytest.mark.torch
def test_flatten_matches_torch() -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed; the cross-check is optional")
    x = np.arange(120.0).reshape(2, 3, 4, 5)
    for start, end in [(1, -1), (0, 2), (-3, -2), (2, 3)]:
        want = torch.nn.Flatten(start, end)(torch.from_numpy(x)).numpy()
        np.testing.assert_array_equal(gp.nn.Flatten(start, end)(gp.tensor(x)).numpy(), want)
    assert repr(gp.nn.Flatten()) == repr(torch.nn.Flatten())


def test_flatten_bad_dims() -> None:
    with pytest.raises(IndexError, match=r"start_dim=1 is out of range for a 1-D input"):
        gp.nn.Flatten()(gp.randn(3))
    with pytest.raises(ValueError, match="start_dim=2 comes after end_dim=1"):
        gp.nn.Flatten(2, 1)(gp.randn(2, 3, 4))


def test_loss_modules_take_torchs_options(device: str) -> None:
    logits = gp.randn(5, 4, dtype="float64", device=device)
    labels = np.array([0, -100, 3, 1, 2])
    weight = gp.tensor([0.5, 1.0, 2.0, 1.5], dtype="float64")  # on the CPU: .to() moves it with the module
    module = gp.nn.CrossEntropyLoss(weight, ignore_index=-100, label_smoothing=0.1, reduction="sum").to(device)
    want = gp.cross_entropy(logits, labels, weight.to(device), ignore_index=-100, label_smoothing=0.1, reduction="sum")
    assert module(logits, labels).item() == want.item() and module.weight.device == logits.device
    nll = gp.nn.NLLLoss(weight, ignore_index=-100).to(device)
    np.testing.assert_allclose(
        nll(gp.log_softmax(logits, 1), labels).item(),
        gp.nn.CrossEntropyLoss(weight, ignore_index=-100).to(device)(logits, labels).item(),
        rtol=1e-14,
    )
    target = gp.rand(5, 4, dtype="float64", device=device)
    bce = gp.nn.BCEWithLogitsLoss(reduction="none", pos_weight=[1.0, 2.0, 3.0, 4.0])
    want = gp.binary_cross_entropy_with_logits(logits, target, reduction="none", pos_weight=[1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(bce(logits, target).numpy(), want.numpy())
    assert gp.nn.MSELoss("none")(logits, target).shape == (5, 4)


def test_loss_modules_check_their_arguments() -> None:
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: reduction must be one of \('none', 'mean', 'sum'\)"):
        gp.nn.CrossEntropyLoss(reduction="avg")
    with pytest.raises(TypeError, match=r"got the string 'sum'; pass reduction='sum'"):
        gp.nn.CrossEntropyLoss("sum")  # the old first positional argument
    with pytest.raises(ValueError, match="MSELoss: reduction"):
        gp.nn.MSELoss("avg")
    assert repr(gp.nn.MSELoss()) == "MSELoss(reduction='mean')"
