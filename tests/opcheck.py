"""The op-test harness: a case says its inputs, its gpubp forward and a NumPy
reference; the harness checks forward values and dtype on every backend and
dtype, and the gradient against float64 two-sided finite differences."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import gpubp as gp


def normal(*shape: int) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: rng.standard_normal(shape)


def positive(*shape: int) -> Callable[[np.random.Generator], np.ndarray]:
    """Values in [0.5, 2): for log, division and fractional powers."""
    return lambda rng: rng.uniform(0.5, 2.0, shape)


def away_from_zero(*shape: int) -> Callable[[np.random.Generator], np.ndarray]:
    """|x| in [0.2, 2) with random signs: keeps relu off its kink under ±eps."""
    return lambda rng: rng.uniform(0.2, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


@dataclass
class OpCase:
    """One op test: ``forward(*tensors)`` must equal ``reference(*arrays)``."""

    name: str
    forward: Callable[..., gp.Tensor]
    reference: Callable[..., np.ndarray]
    inputs: list[Callable[[np.random.Generator], np.ndarray]]
    # Indices of inputs that are checked for gradients (all by default).
    differentiable: list[int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name

    def arrays(self, seed: int = 0) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        return [make(rng) for make in self.inputs]

    def check_forward(self, dtype: np.dtype, device: str) -> None:
        arrays = [a.astype(dtype) for a in self.arrays()]
        tensors = [gp.tensor(a, device=device) for a in arrays]
        out = self.forward(*tensors)
        assert out.dtype == dtype, f"{self.name}: {dtype} in, {out.dtype} out"
        assert out.device == tensors[0].device
        expected = self.reference(*[a.astype(np.float64) for a in arrays])
        tolerance = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(out.numpy(), expected, rtol=tolerance, atol=tolerance, err_msg=self.name)

    def check_gradient(self, device: str) -> None:
        differentiable = range(len(self.inputs)) if self.differentiable is None else self.differentiable
        tensors = [
            gp.tensor(a, dtype=np.float64, device=device, requires_grad=i in differentiable)
            for i, a in enumerate(self.arrays())
        ]
        report = gp.gradcheck(self.forward, tensors)
        assert report.ok and set(report.differences) == set(differentiable)


def op_tests(cases: list[OpCase]) -> tuple[Callable[..., None], Callable[..., None]]:
    """The two tests of an op table, for a test module to bind:
    ``test_forward, test_gradient = op_tests(CASES)``. Forward runs on every
    backend and dtype (the ``device`` and ``dtype`` fixtures), the gradient
    check on every backend in float64."""

    @pytest.mark.parametrize("case", cases, ids=str)
    def test_forward(case: OpCase, dtype: np.dtype, device: str) -> None:
        case.check_forward(dtype, device)

    @pytest.mark.parametrize("case", cases, ids=str)
    def test_gradient(case: OpCase, device: str) -> None:
        case.check_gradient(device)

    return test_forward, test_gradient
