"""The NumPy backend's own mechanisms: chunked optimizer updates are tested in
tests/optim; here, the reuse of big gradient buffers."""

import weakref

import numpy as np
import pytest

import gpubp as gp
from gpubp.backends import numpy_backend


@pytest.fixture(autouse=True)
def _small_recycle_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(numpy_backend, "RECYCLE_MIN_BYTES", 0)


def step(layer: gp.nn.Linear, opt: gp.optim.Optimizer, x: gp.Tensor) -> None:
    opt.zero_grad()
    layer(x).sum().backward()


def test_unreferenced_weight_gradient_buffer_is_reused() -> None:
    layer = gp.nn.Linear(6, 4)
    opt = gp.optim.SGD(layer.parameters(), lr=0.1)
    x = gp.randn(5, 6)
    step(layer, opt, x)
    first = weakref.ref(layer.weight.grad.data)  # a strong reference would (rightly) stop the reuse
    step(layer, opt, x)
    assert layer.weight.grad.data is first()


def test_gradient_still_held_by_the_user_is_never_overwritten() -> None:
    layer = gp.nn.Linear(6, 4)
    opt = gp.optim.SGD(layer.parameters(), lr=0.1)
    step(layer, opt, gp.randn(5, 6))
    kept = layer.weight.grad  # the user keeps last step's gradient
    before = kept.numpy()
    step(layer, opt, gp.randn(5, 6) * 10)
    assert layer.weight.grad.data is not kept.data
    np.testing.assert_array_equal(kept.numpy(), before)


def test_array_or_view_held_by_the_user_is_never_overwritten() -> None:
    layer = gp.nn.Linear(6, 4)
    opt = gp.optim.SGD(layer.parameters(), lr=0.1)
    step(layer, opt, gp.randn(5, 6))
    row = layer.weight.grad.data[0]  # a view keeps the whole array alive
    before = row.copy()
    step(layer, opt, gp.randn(5, 6) * 10)
    np.testing.assert_array_equal(row, before)


def test_training_with_recycling_equals_training_without(monkeypatch: pytest.MonkeyPatch) -> None:
    def train(threshold: int) -> list[np.ndarray]:
        monkeypatch.setattr(numpy_backend, "RECYCLE_MIN_BYTES", threshold)
        gp.manual_seed(0)
        model = gp.nn.Sequential(gp.nn.Linear(6, 8), gp.nn.Sigmoid(), gp.nn.Linear(8, 3))
        opt = gp.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        x, labels = gp.randn(10, 6), np.arange(10) % 3
        for _ in range(5):
            opt.zero_grad()
            gp.cross_entropy(model(x), labels).backward()
            opt.step()
        return [p.numpy() for p in model.parameters()]

    for a, b in zip(train(0), train(1 << 40)):
        np.testing.assert_array_equal(a, b)
