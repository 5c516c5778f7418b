"""Gradient checking with two-sided differences in float64, as the backprop notes describe.

For each input θ the check compares the tape's gradient g with the numerical
one, g_num[i] = (J(θ + ε eᵢ) − J(θ − ε eᵢ)) / 2ε, by the relative difference
‖g − g_num‖ / (‖g‖ + ‖g_num‖); below 1e-7 the gradient is right.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from gpubp import dtypes
from gpubp.grad_mode import no_grad
from gpubp.tensor import Tensor, _wrap


class GradcheckError(AssertionError):
    """Raised by ``gradcheck`` when an analytical gradient disagrees with the numerical one."""


@dataclass
class GradcheckResult:
    """Relative difference per checked input (index into ``inputs``), and whether all pass."""

    differences: dict[int, float] = field(default_factory=dict)
    tolerance: float = 1e-7

    @property
    def ok(self) -> bool:
        return all(d < self.tolerance for d in self.differences.values())

    def __bool__(self) -> bool:
        return self.ok


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Tensor],
    eps: float = 1e-6,
    tolerance: float = 1e-7,
    raise_exception: bool = True,
    seed: int = 0,
) -> GradcheckResult:
    """Checks the gradients of ``fn(*inputs)`` for every input that requires grad.

    Inputs are copied to float64 on their own device. A non-scalar output is
    reduced to Σ out ⊙ v for a fixed random v, which checks the vector-Jacobian
    product backward computes. Raises GradcheckError naming the input, the
    worst entry and both values when the difference reaches ``tolerance``
    (unless ``raise_exception=False``); returns the differences either way.
    """
    if not inputs or not all(isinstance(x, Tensor) for x in inputs):
        raise TypeError("gradcheck: inputs must be a non-empty sequence of Tensors")
    checked = [i for i, x in enumerate(inputs) if x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad, so there is nothing to check")
    for i in checked:
        if not dtypes.is_floating(inputs[i].dtype):
            raise TypeError(f"gradcheck: input {i} has dtype {inputs[i].dtype}; gradients need a float dtype")

    def leaves() -> list[Tensor]:
        copies = []
        for x in inputs:
            data = x.data.astype(np.float64) if dtypes.is_floating(x.dtype) else x.data.copy()
            copies.append(_wrap(data, x.backend, x.requires_grad))
        return copies

    params = leaves()
    out = fn(*params)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    if out.dtype != np.float64:
        raise TypeError(f"gradcheck: fn returned {out.dtype} for float64 inputs; it must not change the dtype")
    projection = np.random.default_rng(seed).standard_normal(out.shape)
    weights = out.backend.from_host(projection)

    def objective(values: list[Tensor]) -> float:
        with no_grad():
            result = fn(*values)
        return float((result.data * weights).sum())

    (out * _wrap(weights, out.backend)).sum().backward()

    report = GradcheckResult(tolerance=tolerance)
    for i in checked:
        analytic = params[i].grad.numpy() if params[i].grad is not None else np.zeros(params[i].shape)
        numeric = np.zeros(params[i].shape)
        probe = leaves()
        flat = probe[i].data.reshape(-1)
        for k in range(flat.size):
            original = flat[k].item()
            flat[k] = original + eps
            plus = objective(probe)
            flat[k] = original - eps
            minus = objective(probe)
            flat[k] = original
            numeric.reshape(-1)[k] = (plus - minus) / (2 * eps)
        denominator = np.linalg.norm(analytic) + np.linalg.norm(numeric)
        difference = 0.0 if denominator == 0 else float(np.linalg.norm(analytic - numeric) / denominator)
        report.differences[i] = difference
        if difference >= tolerance and raise_exception:
            worst = np.unravel_index(np.argmax(np.abs(analytic - numeric)), analytic.shape)
            raise GradcheckError(
                f"gradcheck: input {i} (shape {params[i].shape}) has relative difference {difference:.3e} "
                f">= {tolerance:.0e}; worst entry {tuple(int(w) for w in worst)}: "
                f"backward gave {analytic[worst]:.10g}, finite differences {numeric[worst]:.10g}"
            )
    return report
