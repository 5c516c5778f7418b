"""Data-parallel overhead on the CPU: the same global batch stepped by one process and by
N ranks (``mpirun -n N``) with DistributedDataParallel over MPI.

    python benchmarks/distributed.py                 # medium net (784-1024-1024-10), global batch 256, 2 ranks
    python benchmarks/distributed.py -c small --ranks 2 --rounds 5

On a 2-core machine two ranks cannot be faster than one process with two BLAS
threads; what this measures is the overhead: per step, the time in
DistributedDataParallel's bucket reductions (copying the gradients into the
bucket divided by N, MPI's all-reduce, copying them back) and the share of the
step it takes ("reduce ms"; "all-reduce ms" is MPI's part of it, which also holds
the wait for the slower rank). Every contender is its own job (``mpirun -n 1`` for one process,
so that it runs under the same launcher), one BLAS thread per rank unless
``--threads`` says otherwise, in interleaved rounds; each reports the median
over its timed blocks, and the table the median over the rounds.

Contenders: ``plain`` (one process, no wrapper, the whole batch), ``ddp-1`` (one
rank through DistributedDataParallel: the copies, an all-reduce of one), and
``ddp-N`` (N ranks, batch / N each).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import gpubp as gp  # noqa: E402
from benchmarks.gpubp_steps import gpubp_mlp  # noqa: E402
from benchmarks.mlp import CONFIGS, LEARNING_RATE, make_batch, parse_config  # noqa: E402


def worker(config_name: str, wrap: bool, warmup: int, blocks: int, block: int) -> dict[str, float] | None:
    """Times steps of this rank's share of the global batch; rank 0 returns the medians (ms)."""
    gp.distributed.init_process_group()
    rank, world = gp.distributed.get_rank(), gp.distributed.get_world_size()
    config = parse_config(config_name)
    model = gpubp_mlp(config)
    net = gp.nn.parallel.DistributedDataParallel(model) if wrap else model
    opt = gp.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=0.9)
    x, labels = make_batch(config)
    x, labels = gp.tensor(x[rank::world]), gp.tensor(labels[rank::world])  # BatchLoader's shard of the batch

    # Seconds in the bucket reductions (the copies in and out included), and in MPI's all-reduce alone.
    spent = {"reduce": 0.0, "all_reduce": 0.0}
    if wrap:
        backend = net._backend
        for method, key in (("bucket_all_reduce", "reduce"), ("all_reduce", "all_reduce")):
            setattr(backend, method, _timed(getattr(backend, method), spent, key))

    def step() -> None:
        loss = gp.cross_entropy(net(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    times: dict[str, list[float]] = {"step_ms": [], "reduce_ms": [], "all_reduce_ms": []}
    for _ in range(blocks):
        gp.distributed.barrier()  # the ranks start each block together
        spent.update(reduce=0.0, all_reduce=0.0)
        started = time.perf_counter()
        for _ in range(block):
            step()
        gp.distributed.barrier()  # and the block ends when the slowest rank is done
        times["step_ms"].append((time.perf_counter() - started) * 1e3 / block)
        times["reduce_ms"].append(spent["reduce"] * 1e3 / block)
        times["all_reduce_ms"].append(spent["all_reduce"] * 1e3 / block)
    gp.distributed.destroy_process_group()
    if rank != 0:
        return None
    return {name: statistics.median(values) for name, values in times.items()}


def _timed(method: Callable[..., Any], spent: dict[str, float], key: str) -> Callable[..., Any]:
    def timed(*args: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(*args)
        finally:
            spent[key] += time.perf_counter() - started

    return timed


def run_job(launcher: str, ranks: int, threads: int, args: argparse.Namespace, wrap: bool) -> dict[str, float]:
    command = [launcher, "-n", str(ranks), sys.executable, __file__, "--worker", "-c", args.config]
    command += ["--warmup", str(args.warmup), "--blocks", str(args.blocks), "--block", str(args.block)]
    if wrap:
        command.append("--wrap")
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")
    # Open MPI binds each rank to a core by default, which would leave a second BLAS thread
    # of `mpirun -n 1` on the core of the first; the OS places the threads instead.
    env.setdefault("OMPI_MCA_hwloc_base_binding_policy", "none")
    if os.geteuid() == 0:  # Open MPI refuses root unless told twice
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", default="medium", help=f"{', '.join(CONFIGS)} or WIDTHS:BATCH")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads per process (default 1)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--block", type=int, default=10, help="steps per timed block")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--wrap", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = worker(args.config, args.wrap, args.warmup, args.blocks, args.block)
        if result is not None:
            print(json.dumps(result))
        return 0

    launcher = shutil.which("mpirun") or shutil.which("mpiexec")
    if launcher is None:
        raise SystemExit("no mpirun or mpiexec on PATH (apt-get install openmpi-bin libopenmpi-dev)")
    config = parse_config(args.config)
    if config.batch % args.ranks:
        raise SystemExit(f"the batch {config.batch} does not divide among {args.ranks} ranks")
    contenders = {
        "plain": (1, False),
        "ddp-1": (1, True),
        f"ddp-{args.ranks}": (args.ranks, True),
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, (ranks, wrap) in contenders.items():
            results[name].append(run_job(launcher, ranks, args.threads, args, wrap))
    grad_mb = config.param_count() * 4 / 1e6
    print(
        f"{config.name} ({config.param_count():,} parameters, {grad_mb:.2f} MB of float32 gradients), "
        f"{args.threads} BLAS thread(s) per process, {args.rounds} rounds of {args.blocks}×{args.block} steps"
    )
    print(f"{'contender':<10} {'batch/rank':>10} {'ms/step':>9} {'reduce ms':>10} {'share':>7} {'all-reduce ms':>14}")
    summary = {}
    for name, (ranks, _) in contenders.items():
        medians = {key: statistics.median(r[key] for r in results[name]) for key in results[name][0]}
        summary[name] = {key: round(value, 3) for key, value in medians.items()}
        step, reduce = medians["step_ms"], medians["reduce_ms"]
        print(
            f"{name:<10} {config.batch // ranks:>10} {step:>9.2f} {reduce:>10.3f} {reduce / step:>7.1%} "
            f"{medians['all_reduce_ms']:>14.3f}"
        )
    print(json.dumps({"config": config.name, "threads": args.threads, "results": summary}))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
