"""Where a gpubp training step spends its time beyond the hand-written NumPy step.

    python benchmarks/profile_step.py -c medium [--steps 20] [--top 15]
    OPENBLAS_NUM_THREADS=1 python benchmarks/profile_step.py -c medium --clock cpu   # on a busy machine

Four views, all in this one process (gpubp and the reference both run on
NumPy/OpenBLAS, so they do not disturb each other as PyTorch would):

1. phases: forward, loss, zero_grad, backward, update, timed around each call,
   gpubp and ``HandMLP`` alternating step by step, with the GEMM floor's
   forward and backward products alongside; medians per step;
2. ops: inclusive time of each op's ``forward``/``backward`` and of the backend's
   fused steps (instrumented steps, run apart from the phase timing); what a
   phase spends outside them is the tape and the Python around it;
3. minor page faults per step: each one is a page of a freshly mmapped temporary
   (large arrays are mmapped and returned on free), a cost the reference's
   reused buffers do not pay;
4. cProfile's functions by own time over the gpubp steps.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import os
import pstats
import resource
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gpubp as gp  # noqa: E402
from benchmarks.contenders import build  # noqa: E402
from benchmarks.mlp import Config, init_params, make_batch, parse_config  # noqa: E402
from benchmarks.reference import GemmFloor  # noqa: E402
from gpubp.backends import cpu  # noqa: E402
from gpubp.ops.linear import Linear  # noqa: E402
from gpubp.ops.loss import CrossEntropy  # noqa: E402

GPUBP_PHASES = ("forward", "loss", "zero_grad", "backward", "update")

# Wall clock by default; --clock cpu switches to the process's CPU time, which
# a busy neighbour cannot inflate (valid with one BLAS thread only).
clock = time.perf_counter
HAND_PHASES = ("forward", "loss", "backward", "update")


def gpubp_phases(parts: dict) -> dict[str, float]:
    model, opt, x, labels = parts["model"], parts["opt"], parts["x"], parts["labels"]
    t0 = clock()
    logits = model(x)
    t1 = clock()
    loss = gp.cross_entropy(logits, labels)
    t2 = clock()
    opt.zero_grad()
    t3 = clock()
    loss.backward()
    t4 = clock()
    opt.step()
    t5 = clock()
    return dict(zip(GPUBP_PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)))


def hand_phases(parts: dict) -> dict[str, float]:
    net, x, labels = parts["net"], parts["x"], parts["labels"]
    with np.errstate(over="ignore"):
        t0 = clock()
        net.forward(x)
        t1 = clock()
        net.loss_and_output_delta(labels)
        t2 = clock()
        net.backward(x)
        t3 = clock()
        net.update()
        t4 = clock()
    return dict(zip(HAND_PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)))


def floor_phases(floor: GemmFloor, x: np.ndarray) -> dict[str, float]:
    t0 = clock()
    floor.forward(x)
    t1 = clock()
    floor.backward(x)
    t2 = clock()
    return {"forward": t1 - t0, "backward": t2 - t1}


def medians(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(s[key] for s in samples) for key in samples[0]}


class Instrument:
    """Wraps op methods and backend steps with timers, and removes the wrappers on exit."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._undo: list[Callable[[], None]] = []

    def _timed(self, key: str, fn: Callable) -> Callable:
        totals, calls = self.totals, self.calls

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[key] += clock() - start
                calls[key] += 1

        return wrapper

    def patch(self, owner: Any, name: str, key: str) -> None:
        original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        setattr(owner, name, self._timed(key, getattr(owner, name)))
        if isinstance(owner, type):
            self._undo.append(lambda: setattr(owner, name, original))
        else:
            self._undo.append(lambda: owner.__dict__.pop(name, None))

    def __enter__(self) -> Instrument:
        for cls in (Linear, CrossEntropy):
            self.patch(cls, "forward", f"{cls.__name__}.forward")
            self.patch(cls, "backward", f"{cls.__name__}.backward")
        backend = cpu()
        for name in ("bias_activation", "activation_backward", "softmax_cross_entropy"):
            self.patch(backend, name, f"backend.{name}")
        for name in ("softmax_cross_entropy_backward", "sgd_update", "check_labels"):
            self.patch(backend, name, f"backend.{name}")
        return self

    def __exit__(self, *exc: object) -> None:
        for undo in reversed(self._undo):
            undo()


def page_faults(step: Callable[[], Any], steps: int) -> float:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        step()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps


def profile(config: Config, steps: int, top: int) -> None:
    gpubp, hand = build("gpubp", config), build("numpy-hand", config)
    floor = GemmFloor(init_params(config), config.batch)
    x = make_batch(config)[0]
    for _ in range(2):  # warm-up: gradients, optimizer state, caches
        gpubp.step(), hand.step(), floor.step(x)

    g_samples, h_samples, f_samples = [], [], []
    for _ in range(steps):
        g_samples.append(gpubp_phases(gpubp.parts))
        h_samples.append(hand_phases(hand.parts))
        f_samples.append(floor_phases(floor, x))
    g, h, f = medians(g_samples), medians(h_samples), medians(f_samples)
    g_total = statistics.median(sum(s.values()) for s in g_samples)
    h_total = statistics.median(sum(s.values()) for s in h_samples)

    print(f"{config.name}: medians of {steps} steps, ms (phases timed around each call)")
    print(f"{'phase':<10} {'gpubp':>9} {'hand':>9} {'gpubp-hand':>11} {'GEMM floor':>11}")
    for phase in GPUBP_PHASES:
        hv = h.get(phase, 0.0)
        fv = f.get(phase)
        floor_text = f"{fv * 1e3:11.3f}" if fv is not None else f"{'':>11}"
        print(f"{phase:<10} {g[phase] * 1e3:9.3f} {hv * 1e3:9.3f} {(g[phase] - hv) * 1e3:11.3f} {floor_text}")
    floor_total = f["forward"] + f["backward"]
    print(
        f"{'step':<10} {g_total * 1e3:9.3f} {h_total * 1e3:9.3f} {(g_total - h_total) * 1e3:11.3f} "
        f"{floor_total * 1e3:11.3f}   gpubp/hand {g_total / h_total:.3f}"
    )

    per_step: list[dict[str, float]] = []
    with Instrument() as inst:
        for _ in range(steps):
            inst.totals.clear()
            phases = gpubp_phases(gpubp.parts)
            per_step.append({**{f"phase {k}": v for k, v in phases.items()}, **inst.totals})
    ops = medians(per_step)
    print("\nops inside the gpubp step (instrumented steps, so a little slower): ms per step, inclusive, and calls")
    for key in sorted((k for k in ops if not k.startswith("phase")), key=ops.get, reverse=True):
        print(f"  {key:<40} {ops[key] * 1e3:9.3f}  x{inst.calls[key] // steps}")
    timed = {k.removeprefix("phase "): v for k, v in ops.items() if k.startswith("phase")}
    op_fwd = ops["Linear.forward"] + ops["CrossEntropy.forward"]
    op_bwd = ops["Linear.backward"] + ops["CrossEntropy.backward"]
    print(
        f"  forward+loss outside the ops' forward() (argument checks, records, modules): "
        f"{(timed['forward'] + timed['loss'] - op_fwd) * 1e3:.3f} ms\n"
        f"  backward outside the ops' backward() (the walk, gradient bookkeeping): "
        f"{(timed['backward'] - op_bwd) * 1e3:.3f} ms"
    )

    print(
        f"\nminor page faults per step: gpubp {page_faults(gpubp.step, steps):.0f}, "
        f"hand {page_faults(hand.step, steps):.0f}, floor {page_faults(lambda: floor.step(x), steps):.0f}"
    )

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        gpubp.step()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    text = out.getvalue()
    print(f"\ncProfile of {steps} gpubp steps, by own time (NumPy ufuncs and @ count in their caller's own time):")
    print(text[text.find("   ncalls") :].rstrip())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-c", "--config", action="append", help="config alias or WIDTHS:BATCH (repeatable); default medium")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--top", type=int, default=15, help="cProfile rows")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: process CPU time, robust on a busy machine; needs OPENBLAS_NUM_THREADS=1 in the environment",
    )
    args = p.parse_args(argv)
    if args.clock == "cpu":
        if os.environ.get("OPENBLAS_NUM_THREADS") != "1":
            p.error("--clock cpu needs one BLAS thread: run with OPENBLAS_NUM_THREADS=1 in the environment")
        global clock
        clock = time.process_time
    for i, text in enumerate(args.config or ["medium"]):
        if i:
            print("\n" + "=" * 80)
        profile(parse_config(text), args.steps, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
