"""Whole training steps (forward, softmax cross-entropy, backward, SGD update) of
the four benchmark networks: gpubp next to the hand-written NumPy step.

PyTorch is left to ``compare.py``: in one process with NumPy its OpenMP threads
and OpenBLAS's slow each other down (see benchmarks/README.md). The largest
network takes about a second a step; ``-m "not slow"`` leaves it out.

    python -m pytest benchmarks/test_steps.py --benchmark-only
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.contenders import build
from benchmarks.mlp import CONFIGS

CONFIG_PARAMS = [
    pytest.param(config, id=name, marks=[pytest.mark.slow] if name == "large" else [])
    for name, config in CONFIGS.items()
]


@pytest.mark.parametrize("impl", ["gpubp", "numpy-hand"])
@pytest.mark.parametrize("config", CONFIG_PARAMS)
def test_training_step(timed: Any, benchmark: Any, device: str, impl: str, config: Any) -> None:
    benchmark.group = f"step {config.name}"
    benchmark.extra_info["gemm_flops"] = config.gemm_flops()
    timed(build(impl, config, device).step)
