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
    np.testing.assert_allclose(gp.nn.Softmax()(x).numpy().sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(np.exp(gp.nn.LogSoftmax()(x).numpy()).sum(axis=1), 1, rtol=1e-6)
