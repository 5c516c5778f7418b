"""Device time per kernel of gpubp's jitted training step at a precision (GPU only).

    python benchmarks/precision_profile.py [--precision bf16] [--net wide] [--steps 5]

PyTorch's profiler records through CUPTI every kernel the process launches,
CuPy's and cuBLAS's included, so it shows where a gpubp step's time goes
outside its GEMMs. Prints kernels by total device time per step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def profile(precision: str, net_key: str, steps: int) -> list[str]:
    """The kernel table (name, calls per step, µs per step) of ``steps`` replays."""
    import torch
    from torch.profiler import ProfilerActivity

    import gpubp as gp
    from benchmarks import precision as section
    from benchmarks.mlp import init_params
    from benchmarks.precision_steps import build_gpubp_step, tf32_switches

    net = section.WIDE if net_key == "wide" else section.MEDIUM
    with tf32_switches(precision):
        step = build_gpubp_step(net, precision, "cuda", params=init_params(net.config))
        for _ in range(5):
            step.run()
        gp.cuda.synchronize()
        with torch.profiler.profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(steps):
                step.run()
            gp.cuda.synchronize()
    rows = []
    for event in prof.key_averages():
        device_us = getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0)
        if device_us:
            rows.append((device_us / steps, event.count / steps, event.key))
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows)
    lines = [f"{precision} {net.key}: {total:.0f} µs of kernels per step"]
    lines += [f"{us:9.1f} µs {calls:5.1f}x  {name[:150]}" for us, calls, name in rows]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--net", choices=("wide", "medium"), default="wide")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    print("\n".join(profile(args.precision, args.net, args.steps)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
