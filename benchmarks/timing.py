"""Milliseconds per training step, timed in blocks of steps: one helper for every contender.

On a GPU a block is timed between two device events, so it ends when the device
has finished its last step (not when the host has queued it); on the CPU with
``perf_counter``. Each framework brings its own events (``cupy_events``,
``torch_events``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any, NamedTuple


class Events(NamedTuple):
    """A framework's device timing: record an event, the milliseconds between two, and a device-wide wait."""

    record: Callable[[], Any]
    elapsed_ms: Callable[[Any, Any], float]
    synchronize: Callable[[], None]


def cupy_events() -> Events:
    import cupy

    def record() -> Any:
        event = cupy.cuda.Event()
        event.record()
        return event

    def elapsed(a: Any, b: Any) -> float:
        b.synchronize()
        return cupy.cuda.get_elapsed_time(a, b)

    return Events(record, elapsed, lambda: cupy.cuda.Device().synchronize())


def torch_events() -> Events:
    import torch

    def record() -> Any:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def elapsed(a: Any, b: Any) -> float:
        b.synchronize()
        return a.elapsed_time(b)

    return Events(record, elapsed, torch.cuda.synchronize)


def time_blocks(
    step: Callable[[], Any], n_warmup: int = 20, n_repeat: int = 10, block: int = 20, events: Events | None = None
) -> dict[str, float]:
    """``n_warmup`` untimed steps, then ``n_repeat`` blocks of ``block`` steps, each
    timed as a whole: the median, min and max over the blocks of block time ÷ block."""
    if n_repeat <= 0 or block <= 0:
        raise ValueError(f"n_repeat and block must be positive, got {n_repeat} and {block}")
    for _ in range(n_warmup):
        step()
    times = []
    if events is not None:
        events.synchronize()
    for _ in range(n_repeat):
        if events is not None:
            start = events.record()
            for _ in range(block):
                step()
            times.append(events.elapsed_ms(start, events.record()) / block)
        else:
            began = time.perf_counter()
            for _ in range(block):
                step()
            times.append((time.perf_counter() - began) * 1e3 / block)
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "blocks": n_repeat,
        "steps_per_block": block,
    }


def time_interleaved(
    steps: dict[str, tuple[Callable[[], Any], Events | None]], n_warmup: int = 20, rounds: int = 15, block: int = 20
) -> dict[str, dict[str, float]]:
    """Several contenders timed side by side: after ``n_warmup`` steps each, every
    round times one block of ``block`` steps of each contender in turn, so a
    slower or busier stretch of the machine falls on all of them alike. Per
    contender: the median, min and max over the rounds of block time ÷ block."""
    for step, _ in steps.values():
        for _ in range(n_warmup):
            step()
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, (step, events) in steps.items():
            samples[name].append(time_blocks(step, 0, 1, block, events)["median_ms"])
    return {
        name: {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "rounds": rounds}
        for name, times in samples.items()
    }
