"""Per-op forward + backward: gpubp next to the same arithmetic written by hand.

Each group holds one op at one shape: ``gpubp`` records the op and runs its
backward through the tape; ``hand`` does the same forward and backward with
the array module directly, into preallocated buffers, as ``reference.HandMLP``
does. Their ratio is the op's share of gpubp's overhead.

    python -m pytest benchmarks/test_ops.py --benchmark-only
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gpubp as gp

F32 = np.float32


def _random(xp: Any, *shape: int, seed: int = 0) -> Any:
    return xp.asarray(np.random.default_rng(seed).standard_normal(shape, dtype=F32))


def _gpubp_fwd_bwd(op: Any, inputs: list[gp.Tensor], grad: gp.Tensor | None) -> Any:
    def run() -> None:
        for x in inputs:
            x.grad = None  # a fresh gradient each call, as after zero_grad()
        op(*inputs).backward(grad)

    return run


def _sigmoid_by_hand(xp: Any, x: Any, g: Any) -> Any:
    y, dx = xp.empty_like(x), xp.empty_like(x)

    def run() -> None:
        # (ufuncs with out=: an augmented assignment would make y local to run)
        xp.negative(x, out=y)
        xp.exp(y, out=y)
        xp.add(y, 1, out=y)
        xp.reciprocal(y, out=y)
        xp.subtract(1, y, out=dx)  # σ′ = y(1 − y), then ⊙ g
        xp.multiply(dx, y, out=dx)
        xp.multiply(dx, g, out=dx)

    return run


@pytest.mark.parametrize("impl", ["gpubp", "hand"])
@pytest.mark.parametrize("shape", [(32, 32), (256, 1024)], ids=lambda s: "x".join(map(str, s)))
def test_sigmoid(timed: Any, benchmark: Any, device: str, xp: Any, impl: str, shape: tuple[int, int]) -> None:
    benchmark.group = f"sigmoid {shape}"
    x, g = _random(xp, *shape), _random(xp, *shape, seed=1)
    if impl == "gpubp":
        timed(
            _gpubp_fwd_bwd(gp.sigmoid, [gp.tensor(x, requires_grad=True, device=device)], gp.tensor(g, device=device))
        )
    else:
        with np.errstate(over="ignore"):
            timed(_sigmoid_by_hand(xp, x, g))


@pytest.mark.parametrize("impl", ["gpubp", "hand"])
@pytest.mark.parametrize("mkn", [(32, 64, 32), (256, 1024, 1024)], ids=lambda s: "x".join(map(str, s)))
def test_matmul(timed: Any, benchmark: Any, device: str, xp: Any, impl: str, mkn: tuple[int, int, int]) -> None:
    """(m, k) @ (k, n) forward, and both operands' gradients backward."""
    m, k, n = mkn
    benchmark.group = f"matmul {mkn}"
    a, b, g = _random(xp, m, k), _random(xp, k, n, seed=1), _random(xp, m, n, seed=2)
    if impl == "gpubp":
        inputs = [gp.tensor(a, requires_grad=True, device=device), gp.tensor(b, requires_grad=True, device=device)]
        timed(_gpubp_fwd_bwd(gp.matmul, inputs, gp.tensor(g, device=device)))
        return
    y, da, db = xp.empty((m, n), F32), xp.empty_like(a), xp.empty_like(b)

    def run() -> None:
        xp.matmul(a, b, out=y)
        xp.matmul(g, b.T, out=da)
        xp.matmul(a.T, g, out=db)

    timed(run)


@pytest.mark.parametrize("impl", ["gpubp", "hand"])
@pytest.mark.parametrize("shape", [(32, 10), (256, 10), (1024, 1000)], ids=lambda s: "x".join(map(str, s)))
def test_softmax_cross_entropy(
    timed: Any, benchmark: Any, device: str, xp: Any, impl: str, shape: tuple[int, int]
) -> None:
    """Mean softmax cross-entropy of (N, C) logits, and its gradient (softmax − onehot)/N."""
    n, c = shape
    benchmark.group = f"softmax-CE {shape}"
    logits = _random(xp, n, c)
    labels = xp.asarray(np.random.default_rng(1).integers(0, c, n))
    if impl == "gpubp":
        x, target = gp.tensor(logits, requires_grad=True, device=device), gp.tensor(labels, device=device)
        timed(_gpubp_fwd_bwd(lambda t: gp.cross_entropy(t, target), [x], None))
        return
    delta, rows = xp.empty_like(logits), xp.arange(n)

    def run() -> Any:
        xp.subtract(logits, logits.max(axis=1, keepdims=True), out=delta)
        picked = delta[rows, labels]
        xp.exp(delta, out=delta)
        sums = delta.sum(axis=1, keepdims=True)
        loss = xp.log(sums).mean() - picked.mean()
        xp.divide(delta, sums, out=delta)
        delta[rows, labels] -= 1
        xp.multiply(delta, 1 / n, out=delta)
        return loss

    timed(run)


@pytest.mark.parametrize("impl", ["gpubp", "hand"])
@pytest.mark.parametrize("dims", [(32, 64, 32), (256, 784, 1024)], ids=lambda s: "x".join(map(str, s)))
def test_linear_sigmoid(
    timed: Any, benchmark: Any, device: str, xp: Any, impl: str, dims: tuple[int, int, int]
) -> None:
    """σ(x Wᵀ + b) for x (N, in), W (out, in); backward gives ∂x, ∂W and ∂b."""
    n, n_in, n_out = dims
    benchmark.group = f"linear+sigmoid {dims}"
    x, w, b = _random(xp, n, n_in), _random(xp, n_out, n_in, seed=1) * 0.05, _random(xp, n_out, seed=2)
    g = _random(xp, n, n_out, seed=3)
    if impl == "gpubp":
        inputs = [gp.tensor(v, requires_grad=True, device=device) for v in (x, w, b)]
        op = lambda *t: gp.linear(*t, activation="sigmoid")  # noqa: E731
        timed(_gpubp_fwd_bwd(op, inputs, gp.tensor(g, device=device)))
        return
    y, slope = xp.empty((n, n_out), F32), xp.empty((n, n_out), F32)
    dx, dw, db = xp.empty_like(x), xp.empty_like(w), xp.empty_like(b)

    def run() -> None:
        xp.matmul(x, w.T, out=y)
        xp.add(y, b, out=y)
        xp.negative(y, out=y)
        xp.exp(y, out=y)
        xp.add(y, 1, out=y)
        xp.reciprocal(y, out=y)
        xp.subtract(1, y, out=slope)  # δ = g ⊙ y(1 − y)
        xp.multiply(slope, y, out=slope)
        xp.multiply(slope, g, out=slope)
        xp.matmul(slope, w, out=dx)
        xp.matmul(slope.T, x, out=dw)
        slope.sum(axis=0, out=db)

    timed(run)
