"""Peak memory of one training step, gpubp vs the hand-written NumPy step.

    python -m benchmarks.memory CONTENDER CONFIG      (prints one JSON object)

Method. NumPy reports every array buffer it allocates to ``tracemalloc`` (as do
Python's own objects), so tracing from before the network is built sees all the
memory the step holds. In a fresh process:

1. after a throwaway run of a tiny network (so lazy imports and caches, such
   as gpubp's compiled CPU kernels, are filled), start tracing (baseline B);
2. build the contender, run two untimed steps so gradients and optimizer state
   exist as they do in the middle of training (steady state);
3. reset the peak, run one step, read the peak P and the memory C held just
   before that step.

Reported, subtracting the persistent parameters and the input batch (the same
bytes for every contender, listed separately as ``params_bytes``/``batch_bytes``):

- ``step_peak_bytes`` = P − B − params − batch: the most working memory the step
  needs at once: saved activations, δs, gradients, temporaries, and for the
  hand-written step its preallocated buffers (which are its working memory);
- ``between_steps_bytes`` = C − B − params − batch: what stays allocated between
  steps (gpubp: the last gradients; hand-written: all its buffers).

PyTorch allocates outside ``tracemalloc``'s view, so it has no figure here.
Tracing slows Python down: never time in this process.
"""

from __future__ import annotations

import gc
import json
import sys
import tracemalloc

from benchmarks.mlp import Config, parse_config


def measure(name: str, config: Config, device: str = "cpu") -> dict:
    """The figures of the module docstring for contender ``name`` ("gpubp", "numpy-hand" or "floor")."""
    if name == "torch":
        raise ValueError("PyTorch's allocator is invisible to tracemalloc: no memory figure for torch")
    from benchmarks.contenders import build

    # A throwaway run first: imports and caches that the first step fills lazily
    # must not count as the step's memory.
    warm = build(name, Config((8, 4, 2), 2), device)
    warm.step()
    warm.step()
    del warm
    if name == "gpubp" and device == "cpu":
        # The tiny net is below the C kernels' sizes: load them (a process-wide cache) here.
        from gpubp.backends import cpu_kernels

        cpu_kernels.load()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    contender = build(name, config, device)
    for _ in range(2):
        contender.step()
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    contender.step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    params = 4 * config.param_count()
    batch = 4 * config.batch * config.sizes[0] + 8 * config.batch  # float32 x, int64 labels
    return {
        "contender": name,
        "config": config.name,
        "params_bytes": params,
        "batch_bytes": batch,
        "step_peak_bytes": peak - base - params - batch,
        "between_steps_bytes": before - base - params - batch,
        "activations_bytes": 4 * config.batch * sum(config.sizes[1:]),
    }


def main(argv: list[str]) -> int:
    name, config_text = argv[:2]
    print(json.dumps(measure(name, parse_config(config_text))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
