"""The tape's own cost per op, in microseconds.

    python benchmarks/overhead.py [--ops 200] [--repeats 15] [--clock cpu] [--json PATH]

For each op, a chain of ``--ops`` applications on a tiny array (so the
arithmetic costs next to nothing) is timed three ways: forward while recording,
forward under ``no_grad``, and the backward walk of the recorded chain. The
same arithmetic is timed by calling the backend's array functions directly
(what gpubp's ops call inside). Per op:

    tape forward  = (recorded forward − backend forward) / ops
    tape backward = (backward walk − backend backward) / ops

is what gpubp adds around the arithmetic: argument checks, building the op
record, wrapping results, the topological walk and gradient bookkeeping.
Each figure is the least over ``--repeats`` runs, as timeit reports: the run
least disturbed by other processes (garbage collection is left on: it is part
of the tape's real cost).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gpubp as gp  # noqa: E402
from gpubp.backends import cpu  # noqa: E402

SHAPE = (4, 4)
# Wall clock, or with --clock cpu the process's CPU time (robust on a busy machine).
clock = time.perf_counter


def _best_time(fn: Callable[[], Any], repeats: int, setup: Callable[[], Any] | None = None) -> float:
    """Least seconds of ``fn(state)`` over ``repeats`` runs (as timeit: the run least
    disturbed by the rest of the machine); ``setup`` (untimed) makes its state."""
    times = []
    for _ in range(repeats):
        state = setup() if setup else None
        start = clock()
        fn(state)
        times.append(clock() - start)
    return min(times)


def cases() -> dict[str, dict[str, Any]]:
    """Per op: how to apply it to a tensor, and the backend arithmetic it does each way."""
    be = cpu()
    rng = np.random.default_rng(0)
    w = rng.standard_normal(SHAPE).astype(np.float32) * 0.3
    b = rng.standard_normal(SHAPE[1]).astype(np.float32)
    wt, bt = gp.tensor(w), gp.tensor(b)
    c = gp.tensor(rng.standard_normal(SHAPE).astype(np.float32))

    def linear_fwd(a: np.ndarray) -> np.ndarray:
        return be.bias_activation(a @ w.T, b, "sigmoid")

    def linear_bwd(g: np.ndarray, y: np.ndarray) -> np.ndarray:
        return be.activation_backward(g, y, "sigmoid") @ w

    return {
        "sigmoid": {
            "op": gp.sigmoid,
            "fwd": be.sigmoid,
            "bwd": be.sigmoid_backward,
        },
        "add": {
            "op": lambda t: t + c,
            "fwd": lambda a: a + c.data,
            "bwd": lambda g, y: g,
        },
        "matmul": {
            "op": lambda t: t @ wt,
            "fwd": lambda a: a @ w,
            "bwd": lambda g, y: g @ w.T,
        },
        "linear+sigmoid": {
            "op": lambda t: gp.linear(t, wt, bt, "sigmoid"),
            "fwd": linear_fwd,
            "bwd": linear_bwd,
        },
    }


def measure(name: str, case: dict[str, Any], ops: int, repeats: int) -> dict[str, float]:
    x0 = gp.tensor(np.random.default_rng(1).random(SHAPE, dtype=np.float32))
    seed = np.ones(SHAPE, np.float32)
    op, fwd, bwd = case["op"], case["fwd"], case["bwd"]

    def chain(_: Any) -> gp.Tensor:
        y = x0.detach().requires_grad_()
        for _ in range(ops):
            y = op(y)
        return y

    def chain_no_grad(_: Any) -> None:
        with gp.no_grad():
            chain(None)

    def backend_fwd(_: Any) -> None:
        a = x0.data
        for _ in range(ops):
            a = fwd(a)

    saved = [x0.data]
    for _ in range(ops):
        saved.append(fwd(saved[-1]))

    def backend_bwd(_: Any) -> None:
        g = seed
        for y in reversed(saved[1:]):
            g = bwd(g, y)

    def walk(y: gp.Tensor) -> None:
        y.backward(seed)

    result = {
        "recorded_forward_us": _best_time(chain, repeats) / ops * 1e6,
        "no_grad_forward_us": _best_time(chain_no_grad, repeats) / ops * 1e6,
        "backward_us": _best_time(walk, repeats, setup=lambda: chain(None)) / ops * 1e6,
        "backend_forward_us": _best_time(backend_fwd, repeats) / ops * 1e6,
        "backend_backward_us": _best_time(backend_bwd, repeats) / ops * 1e6,
    }
    result["tape_forward_us"] = result["recorded_forward_us"] - result["backend_forward_us"]
    result["tape_backward_us"] = result["backward_us"] - result["backend_backward_us"]
    result["tape_total_us"] = result["tape_forward_us"] + result["tape_backward_us"]
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", type=int, default=200, help="length of each timed chain")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="cpu: process CPU time")
    args = p.parse_args(argv)
    if args.clock == "cpu":
        global clock
        clock = time.process_time
    results = {name: measure(name, case, args.ops, args.repeats) for name, case in cases().items()}
    columns = (
        ("recorded_forward_us", "fwd rec"),
        ("no_grad_forward_us", "fwd no_grad"),
        ("backward_us", "bwd walk"),
        ("backend_forward_us", "backend fwd"),
        ("backend_backward_us", "backend bwd"),
        ("tape_forward_us", "tape fwd"),
        ("tape_backward_us", "tape bwd"),
        ("tape_total_us", "tape total"),
    )
    print(f"µs per op, {args.ops}-op chains on {SHAPE} float32 arrays, best of {args.repeats}")
    print(f"{'op':<15}" + "".join(f"{title:>12}" for _, title in columns))
    for name, r in results.items():
        print(f"{name:<15}" + "".join(f"{r[key]:12.2f}" for key, _ in columns))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
