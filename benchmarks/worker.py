"""One contender in a process of its own, driven by ``compare.py`` over a pipe.

    python -m benchmarks.worker CONTENDER CONFIG DEVICE THREADS

Protocol: one JSON object per line. The worker first answers
``{"ready": true, "info": {...}}`` (or ``{"error": "..."}``), then for each
request ``{"cmd": "run", "warmup_s": s, "blocks": b, "steps": n, "clock": "wall"|"cpu"}`` runs untimed
warm-up steps for at least ``s`` seconds (at least one step), then ``b`` timed
blocks of ``n`` steps, and answers ``{"times": [seconds per step of each block],
"warmup_steps": k, "minflt_per_step": f, "cpu_s": c}``. ``{"cmd": "quit"}`` ends it.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from typing import Any

# "cpu" counts only this process's CPU time: on a shared machine a neighbour's
# load cannot inflate it, as long as the step runs on one thread (spinning
# BLAS threads would count too).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def serve(contender: Any, requests: Any, replies: Any) -> None:
    for line in requests:
        request = json.loads(line)
        if request["cmd"] == "quit":
            return
        replies.write(json.dumps(run_request(contender, request)) + "\n")
        replies.flush()


def run_request(contender: Any, request: dict) -> dict:
    """Warm-up then timed blocks, as the module docstring describes."""
    # Warm-up wakes this process's BLAS/OpenMP threads (asleep while another
    # contender ran) and refills the caches before anything is timed.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    start_cpu = usage.ru_utime + usage.ru_stime
    clock = CLOCKS[request.get("clock", "wall")]
    warmup_steps = 0
    deadline = time.perf_counter() + request["warmup_s"]
    while warmup_steps == 0 or time.perf_counter() < deadline:
        contender.time_block(1)
        warmup_steps += 1
    usage = resource.getrusage(resource.RUSAGE_SELF)
    times = [contender.time_block(request["steps"], clock) for _ in range(request["blocks"])]
    after = resource.getrusage(resource.RUSAGE_SELF)
    faults = after.ru_minflt - usage.ru_minflt
    return {
        "times": times,
        "warmup_steps": warmup_steps,
        # CPU seconds of all this process's threads: lets the coordinator tell
        # this worker's load from other processes' (see compare.LoadMeter).
        "cpu_s": after.ru_utime + after.ru_stime - start_cpu,
        # Fresh pages the step touched: a large temporary served by mmap faults in
        # every page on each step, a reused buffer none. A cheap allocation meter.
        "minflt_per_step": faults / (request["blocks"] * request["steps"]),
    }


def main(argv: list[str]) -> int:
    name, config_text, device, threads = argv
    # Replies go to a private copy of stdout; anything a library prints (even from
    # C) lands on stderr instead of corrupting the protocol.
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    try:
        from benchmarks.contenders import build
        from benchmarks.mlp import parse_config

        started = time.perf_counter()
        contender = build(name, parse_config(config_text), device, int(threads) or None)
        info = dict(contender.info, build_s=time.perf_counter() - started)
    except Exception as err:  # reported to the coordinator, which skips this contender
        traceback.print_exc()
        replies.write(json.dumps({"error": f"{type(err).__name__}: {err}"}) + "\n")
        replies.flush()
        return 1
    replies.write(json.dumps({"ready": True, "info": info}) + "\n")
    replies.flush()
    serve(contender, sys.stdin, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
