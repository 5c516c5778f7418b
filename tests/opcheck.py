"""The op-test harness: a case says its inputs, its gpubp forward, a NumPy
reference and (optionally) the same op in PyTorch; the harness checks forward
values and dtype on every backend and dtype, the gradient against float64
two-sided finite differences, and values and gradients against PyTorch in
float64 (skipped where PyTorch is not installed)."""

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
    # The same op on torch tensors (``lambda a, b: torch.maximum(a, b)``), for the cross-check.
    torch: Callable[..., Any] | None = None

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

    def check_against_torch(self, device: str) -> None:
        """Values and gradients (of the output's sum with random weights) equal
        PyTorch's in float64."""
        torch = pytest.importorskip("torch", reason="PyTorch is not installed; the cross-check is optional")
        differentiable = range(len(self.inputs)) if self.differentiable is None else self.differentiable
        arrays = self.arrays()
        ours = [
            gp.tensor(a, dtype=np.float64, device=device, requires_grad=i in differentiable)
            for i, a in enumerate(arrays)
        ]
        theirs = [torch.tensor(a, dtype=torch.float64, requires_grad=i in differentiable) for i, a in enumerate(arrays)]
        out, expected = self.forward(*ours), self.torch(*theirs)
        np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=self.name)
        weights = np.random.default_rng(7).standard_normal(expected.shape)
        (out * gp.tensor(weights, device=device)).sum().backward()
        (expected * torch.from_numpy(weights)).sum().backward()
        for i in differentiable:
            np.testing.assert_allclose(
                ours[i].grad.numpy(), theirs[i].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=f"{self.name} input {i}"
            )


def op_tests(cases: list[OpCase]) -> tuple[Callable[..., None], ...]:
    """The tests of an op table, for a test module to bind:
    ``test_forward, test_gradient, test_against_torch = op_tests(CASES)``.
    Forward runs on every backend and dtype (the ``device`` and ``dtype``
    fixtures), the gradient check and the PyTorch cross-check on every backend
    in float64 (the latter for the cases that name their PyTorch twin)."""

    @pytest.mark.parametrize("case", cases, ids=str)
    def test_forward(case: OpCase, dtype: np.dtype, device: str) -> None:
        case.check_forward(dtype, device)

    @pytest.mark.parametrize("case", cases, ids=str)
    def test_gradient(case: OpCase, device: str) -> None:
        case.check_gradient(device)

    @pytest.mark.torch
    @pytest.mark.parametrize("case", [c for c in cases if c.torch is not None] or [None], ids=str)
    def test_against_torch(case: OpCase | None, device: str) -> None:
        if case is None:
            pytest.skip("no case of this table names its PyTorch twin")
        case.check_against_torch(device)

    return test_forward, test_gradient, test_against_torch
