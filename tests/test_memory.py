"""Training does not leak: the Python heap stays flat and intermediates die after backward."""

import gc
import tracemalloc
import weakref

import numpy as np

import gpubp as gp


def train_steps(model, opt, x, labels, steps: int) -> None:
    for _ in range(steps):
        loss = gp.cross_entropy(model(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_500_training_steps_do_not_grow_the_heap() -> None:
    model = gp.nn.Sequential(gp.nn.Linear(20, 32), gp.nn.Sigmoid(), gp.nn.Dropout(0.1), gp.nn.Linear(32, 4))
    opt = gp.optim.Adam(model.parameters(), lr=1e-3)
    x, labels = gp.randn(16, 20), np.arange(16) % 4
    train_steps(model, opt, x, labels, 20)  # optimizer state and caches exist from here on
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    train_steps(model, opt, x, labels, 500)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert growth < 20_000, f"heap grew by {growth} bytes over 500 steps"


def test_intermediates_are_freed_after_backward_without_gc() -> None:
    gc.disable()  # reference counting alone must free the graph: no cycles
    try:
        x = gp.randn(8, 5, requires_grad=True)
        w = gp.randn(3, 5, requires_grad=True)
        hidden = gp.linear(x, w, activation="sigmoid")
        logits = hidden * 2.0
        refs = [weakref.ref(t) for t in (hidden, logits)]
        saved = weakref.ref(logits.grad_fn)
        loss = gp.cross_entropy(logits, np.zeros(8, dtype=np.int64))
        del hidden, logits
        assert all(r() is not None for r in refs)
        loss.backward()
        assert all(r() is None for r in refs)
        assert saved() is None
    finally:
        gc.enable()


def test_forward_without_backward_frees_everything_without_gc() -> None:
    gc.disable()
    try:
        x = gp.randn(4, 3, requires_grad=True)
        loss = (gp.sigmoid(x) * 3).sum()
        ref = weakref.ref(loss.grad_fn)
        del loss
        assert ref() is None
    finally:
        gc.enable()
