"""Times one training step of a sigmoid MLP (forward, softmax cross-entropy,
backward, SGD update; float32) for gpubp, PyTorch eager, a hand-written NumPy
backprop and the GEMM floor, side by side, and prints ratios.

    python benchmarks/compare.py                       # all four configs, ~10 min on 2 cores
    python benchmarks/compare.py -c medium --quick     # one config in ~15 s
    python benchmarks/compare.py -c 784-1024-1024-10:256 -k gpubp,numpy-hand

Design (measured, see benchmarks/README.md): every contender runs in a worker
process of its own, because OpenBLAS's and PyTorch's OpenMP threads spin after
each call and, sharing one process, made each other's products up to 10× slower.
This process coordinates them round by round (A B C D, A B C D, …): before each
turn it pauses so the previous worker's threads stop spinning, and the worker
runs untimed warm-up steps, then timed blocks. Medians over all blocks give
ms/step; each ratio is the median over rounds of that round's ratio, which
cancels the slow drifts of a shared machine's load. Finally a check: each
contender's usual turn is followed at once by a second turn with nothing in
between; alone/interleaved near 1 says the other contenders did not disturb it.

Writes PREFIX.json and PREFIX.md (and PREFIX.png when matplotlib is installed).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(ROOT))

from benchmarks.contenders import NAMES  # noqa: E402
from benchmarks.mlp import CONFIGS, Config, parse_config  # noqa: E402

RATIOS = (
    ("gpubp", "numpy-hand"),
    ("gpubp", "torch"),
    ("gpubp", "floor"),
    ("numpy-hand", "floor"),
    ("torch", "numpy-hand"),
)


# -- workers -------------------------------------------------------------------
class ProcessWorker:
    """A contender in its own process (``benchmarks/worker.py``), with its own BLAS threads."""

    def __init__(self, name: str, config: Config, device: str, threads: int) -> None:
        self.name = name
        env = dict(os.environ)
        for var in THREAD_VARS:
            env[var] = str(threads)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker", name, config.name, device, str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        hello = self._reply()
        if "error" in hello:
            self.close()
            raise RuntimeError(hello["error"])
        self.info = hello["info"]

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} exited (code {self.proc.wait()}); see its traceback above")
        return json.loads(line)

    def run(self, warmup_s: float, blocks: int, steps: int, clock: str = "wall") -> dict:
        request = {"cmd": "run", "warmup_s": warmup_s, "blocks": blocks, "steps": steps, "clock": clock}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('{"cmd": "quit"}\n')
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class LocalWorker:
    """A contender in this very process (``--in-process``): only to show why the
    default keeps contenders apart. Its numbers are not the comparison's."""

    def __init__(self, name: str, config: Config, device: str, threads: int) -> None:
        from benchmarks.contenders import build

        self.name = name
        self.contender = build(name, config, device, threads)
        self.info = dict(self.contender.info)

    def run(self, warmup_s: float, blocks: int, steps: int, clock: str = "wall") -> dict:
        from benchmarks.worker import run_request

        return run_request(self.contender, {"warmup_s": warmup_s, "blocks": blocks, "steps": steps, "clock": clock})

    def close(self) -> None:
        self.contender = None


# -- other processes' load -------------------------------------------------------
class LoadMeter:
    """CPU time used on the whole machine, from /proc/stat (Linux; elsewhere it
    reports no load and nothing waits). On a shared machine another process on
    one of the cores makes a 2-thread BLAS product many times slower (measured
    here: 3.4 ms became 140 ms), so rounds run while others are busy are redone."""

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.available = self.busy() is not None

    def busy(self) -> float | None:
        """Busy CPU seconds of all cores since boot (user, nice, system, irq, softirq, steal)."""
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        return (sum(fields) - fields[3] - fields[4]) / self.tick

    def wait_quiet(self, threshold: float, max_wait: float, window: float = 0.25) -> float:
        """Waits until the other processes use under ``threshold`` cores over a
        ``window``, at most ``max_wait`` seconds; returns the seconds waited."""
        if not self.available or threshold == float("inf"):
            return 0.0
        start = time.perf_counter()
        while True:
            before = self.busy()
            time.sleep(window)
            if (self.busy() - before) / window < threshold or time.perf_counter() - start > max_wait:
                return time.perf_counter() - start


# -- one configuration -----------------------------------------------------------
def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def start_workers(names: Sequence[str], config: Config, args: argparse.Namespace) -> tuple[dict, dict]:
    kind = LocalWorker if args.in_process else ProcessWorker
    workers, skipped = {}, {}
    for name in names:
        if name == "torch" and importlib.util.find_spec("torch") is None:
            skipped[name] = "PyTorch is not installed"
            continue
        try:
            workers[name] = kind(name, config, args.device, args.threads)
        except Exception as err:  # one broken contender must not sink the others
            skipped[name] = str(err)
    for name, why in skipped.items():
        print(f"  skipping {name}: {why}", file=sys.stderr)
    return workers, skipped


def probe(worker: Any, pause: float) -> float:
    """Seconds per step, roughly: decides how many steps make a block."""
    time.sleep(pause)
    seconds = worker.run(0.0, 1, 1)["times"][0]  # wall time: it sizes blocks in wall time
    if seconds < 5e-3:  # too short to trust one step: time a few milliseconds' worth
        seconds = worker.run(0.0, 1, max(1, int(5e-3 / seconds)))["times"][0]
    return seconds


def run_round(workers: dict, steps: dict, args: argparse.Namespace, meter: LoadMeter) -> tuple[dict, float | None]:
    """One turn of every worker, each after a pause; returns the replies and the
    cores that other processes used meanwhile (busy time minus the workers' own)."""
    replies, busy, own, wall = {}, 0.0, 0.0, 0.0
    for name, worker in workers.items():
        time.sleep(args.pause_ms / 1e3)
        before, start = meter.busy(), time.perf_counter()
        replies[name] = worker.run(args.warmup_ms / 1e3, args.blocks, steps[name], args.clock)
        wall += time.perf_counter() - start
        if meter.available:
            busy += meter.busy() - before
            own += replies[name]["cpu_s"]
    if not meter.available or isinstance(next(iter(workers.values())), LocalWorker):
        return replies, None
    return replies, max(0.0, busy - own) / wall


def bench_config(config: Config, args: argparse.Namespace) -> dict:
    names = [n for n in args.contenders if n in NAMES]
    workers, skipped = start_workers(names, config, args)
    try:
        return _bench(config, args, workers, skipped)
    finally:
        for worker in workers.values():
            worker.close()


def _bench(config: Config, args: argparse.Namespace, workers: dict, skipped: dict) -> dict:
    pause, warmup = args.pause_ms / 1e3, args.warmup_ms / 1e3
    per_step = {name: probe(w, pause) for name, w in workers.items()}
    steps = {name: max(1, round(args.block_ms / 1e3 / s)) for name, s in per_step.items()}
    round_s = sum(pause + max(warmup, s) + args.blocks * steps[n] * s for n, s in per_step.items())
    rounds = max(args.min_rounds, min(args.rounds, int(args.budget / max(round_s, 1e-9))))
    print(
        f"\n{config.name}: {rounds} rounds x {args.blocks} blocks "
        f"(steps/block {', '.join(f'{n} {k}' for n, k in steps.items())}; ~{rounds * round_s:.0f} s)",
        flush=True,
    )

    # Interleaved: A B C D, A B C D, ... A round during which other processes
    # used more than --max-foreign cores is run again (up to --retries times).
    meter = LoadMeter()
    blocks: dict[str, list[list[float]]] = {name: [] for name in workers}
    faults: dict[str, list[float]] = {name: [] for name in workers}
    foreign_load, waited, redone = [], 0.0, 0
    for _ in range(rounds):
        for attempt in range(args.retries + 1):
            waited += meter.wait_quiet(args.max_foreign, args.max_wait)
            replies, foreign = run_round(workers, steps, args, meter)
            if foreign is None or foreign <= args.max_foreign or attempt == args.retries:
                break
            redone += 1
        foreign_load.append(foreign)
        for name, reply in replies.items():
            blocks[name].append(reply["times"])
            faults[name].append(reply["minflt_per_step"])
    disturbed = sum(f is not None and f > args.max_foreign for f in foreign_load)
    if disturbed:
        print(f"  warning: {disturbed} of {rounds} rounds ran while other processes used > {args.max_foreign} cores")

    # Alone vs interleaved, paired so that the machine's drifting load cancels:
    # in each check round every contender takes its usual turn (after the others,
    # with the pause and warm-up), then at once a second turn with nothing in
    # between. If the other contenders disturbed it, the two differ.
    pairs: dict[str, list[float]] = {name: [] for name in workers}
    alone: dict[str, list[float]] = {name: [] for name in workers}
    if args.check:
        for _ in range(min(rounds, args.check_rounds)):
            for name, worker in workers.items():
                time.sleep(pause)
                interleaved = worker.run(warmup, args.blocks, steps[name], args.clock)["times"]
                by_itself = worker.run(warmup, args.blocks, steps[name], args.clock)["times"]
                pairs[name].append(median(by_itself) / median(interleaved))
                alone[name] += by_itself

    result: dict[str, Any] = {
        "config": config.name,
        "sizes": list(config.sizes),
        "batch": config.batch,
        "gemm_flops": config.gemm_flops(),
        "rounds": rounds,
        "blocks_per_round": args.blocks,
        "skipped": skipped,
        # Cores used by other processes during each kept round (None: not measurable here).
        "foreign_load_per_round": foreign_load,
        "rounds_redone": redone,
        "rounds_disturbed": disturbed,
        "seconds_waited_for_quiet": waited,
        "contenders": {},
        "ratios": {},
    }
    for name, rounds_times in blocks.items():
        flat = [t for times in rounds_times for t in times]
        med = median(flat)
        q1, q3 = quartiles(flat)
        entry = {
            "median_ms": med * 1e3,
            "q1_ms": q1 * 1e3,
            "q3_ms": q3 * 1e3,
            "min_ms": min(flat) * 1e3,
            "samples_per_s": config.batch / med,
            "gflops": config.gemm_flops() / med / 1e9,
            "steps_per_block": steps[name],
            "minflt_per_step": median(faults[name]),
            "blocks_ms": [[t * 1e3 for t in times] for times in rounds_times],
            "info": workers[name].info,
        }
        if pairs[name]:
            entry["alone_median_ms"] = median(alone[name]) * 1e3
            entry["alone_over_interleaved"] = median(pairs[name])
            entry["alone_over_interleaved_per_round"] = pairs[name]
        result["contenders"][name] = entry
    for a, b in RATIOS:
        if a in blocks and b in blocks:
            per_round = [median(x) / median(y) for x, y in zip(blocks[a], blocks[b])]
            result["ratios"][f"{a}/{b}"] = {
                "per_round_median": median(per_round),
                "per_round_q1": quartiles(per_round)[0],
                "per_round_q3": quartiles(per_round)[1],
                "of_medians": result["contenders"][a]["median_ms"] / result["contenders"][b]["median_ms"],
            }
    if args.memory and args.device == "cpu":
        result["memory"] = measure_memory(config, [n for n in ("gpubp", "numpy-hand") if n in workers])
    print_config(result)
    return result


def measure_memory(config: Config, names: Sequence[str]) -> dict:
    """``benchmarks/memory.py`` in a fresh process per contender (tracing must start before the build)."""
    memory: dict[str, Any] = {}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    for name in names:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.memory", name, config.name],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
        )
        if out.returncode != 0:
            print(f"  memory of {name} failed:\n{out.stderr}", file=sys.stderr)
            continue
        memory[name] = json.loads(out.stdout)
    if "gpubp" in memory and "numpy-hand" in memory:
        memory["gpubp/numpy-hand"] = memory["gpubp"]["step_peak_bytes"] / memory["numpy-hand"]["step_peak_bytes"]
    return memory


# -- reporting -------------------------------------------------------------------
def print_config(result: dict) -> None:
    columns = ("ms/step", 10), ("IQR ms", 17), ("samples/s", 10), ("GFLOP/s", 8), ("faults", 7), ("alone/inter", 11)
    print(f"{'contender':<11} " + " ".join(f"{title:>{width}}" for title, width in columns))
    for name, c in result["contenders"].items():
        check = f"{c['alone_over_interleaved']:.3f}" if "alone_over_interleaved" in c else "-"
        print(
            f"{name:<11} {c['median_ms']:10.4g} {c['q1_ms']:8.4g}-{c['q3_ms']:<8.4g} {c['samples_per_s']:10.0f} "
            f"{c['gflops']:8.2f} {c['minflt_per_step']:7.0f} {check:>11}"
        )
    for key, r in result["ratios"].items():
        print(
            f"  {key:<18} {r['per_round_median']:6.3f}  (rounds IQR {r['per_round_q1']:.3f}-{r['per_round_q3']:.3f}; "
            f"ratio of medians {r['of_medians']:.3f})"
        )
    memory = result.get("memory", {})
    for name in ("gpubp", "numpy-hand"):
        if name in memory:
            m = memory[name]
            print(
                f"  memory {name:<11} step peak {m['step_peak_bytes'] / 2**20:9.3f} MiB, "
                f"between steps {m['between_steps_bytes'] / 2**20:9.3f} MiB "
                f"(params {m['params_bytes'] / 2**20:.3f} MiB)"
            )
    if "gpubp/numpy-hand" in memory:
        print(f"  memory gpubp/numpy-hand {memory['gpubp/numpy-hand']:.3f}")
    sys.stdout.flush()


def describe_machine(args: argparse.Namespace) -> dict:
    """Enough to tell whether a later run on another machine is comparable."""
    import numpy

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            info = dict(line.split(":", 1) for line in f.read().split("\n\n")[0].splitlines() if ":" in line)
        info = {k.strip(): v.strip() for k, v in info.items()}
        flags = set(info.get("flags", "").split())
        # A VM may name the CPU only "AMD EPYC": family/model and SIMD say which generation.
        simd = "/".join(f for f in ("avx2", "fma", "avx512f") if f in flags)
        cpu = f"{info['model name']} (family {info.get('cpu family')}, model {info.get('model')}, {simd})"
    except (OSError, KeyError):
        pass
    try:
        blas = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas.get('name')} {blas.get('version')} ({blas.get('openblas configuration', '').strip()})"
    except Exception:  # the layout of show_config's dict is not a stable API
        blas = "unknown"
    versions = {"python": platform.python_version(), "numpy": numpy.__version__}
    for package in ("torch", "cupy-cuda12x", "cupy", "pytest-benchmark"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)

    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], capture_output=True, text=True, cwd=ROOT).stdout.strip()
        except OSError:
            return ""

    modified = git("status", "--porcelain", "--untracked-files=no")  # results files may lie around
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": args.threads,
        "platform": platform.platform(),
        "blas": blas,
        "versions": versions,
        "commit": git("rev-parse", "HEAD") + (" (with uncommitted changes)" if modified else ""),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def _loads(loads: Sequence[float] | None) -> str:
    return "unknown" if loads is None else " / ".join(f"{x:.2f}" for x in loads)


def write_markdown(path: Path, report: dict) -> None:
    m, s = report["machine"], report["settings"]
    lines = [
        f"# gpubp training-step comparison ({s['device']})",
        "",
        f"- date {m['date']}, commit `{m['commit']}` ({m['branch']})",
        f"- CPU {m['cpu']}, {m['usable_cpus']} usable cores, {m['threads']} BLAS/OpenMP thread(s) per contender, "
        f"timed by {'process CPU time' if s['clock'] == 'cpu' else 'wall clock'}",
        f"- BLAS {m['blas']}",
        f"- {', '.join(f'{k} {v}' for k, v in m['versions'].items())}",
        f"- load average at start {_loads(m['loadavg_at_start'])}, at end {_loads(m.get('loadavg_at_end'))}",
        f"- command: `{s['command']}`",
        "",
        "Times are medians over all timed blocks; ratios are medians of per-round ratios "
        "(each round runs every contender once, back to back). GFLOP/s counts the GEMM work only.",
        "",
        "| config | contender | ms/step | samples/s | GEMM GFLOP/s | page faults/step | alone / interleaved |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["configs"]:
        for name, c in r["contenders"].items():
            check = f"{c['alone_over_interleaved']:.3f}" if "alone_over_interleaved" in c else "-"
            cells = (
                r["config"],
                name,
                f"{c['median_ms']:.4g}",
                f"{c['samples_per_s']:.0f}",
                f"{c['gflops']:.2f}",
                f"{c['minflt_per_step']:.0f}",
                check,
            )
            lines.append("| " + " | ".join(cells) + " |")
    keys = [f"{a}/{b}" for a, b in RATIOS]
    lines += [
        "",
        "| config | " + " | ".join(keys) + " | memory gpubp/numpy-hand |",
        "| --- |" + " ---: |" * (len(keys) + 1),
    ]
    for r in report["configs"]:
        cells = [f"{r['ratios'][k]['per_round_median']:.3f}" if k in r["ratios"] else "-" for k in keys]
        mem = r.get("memory", {}).get("gpubp/numpy-hand")
        cells.append(f"{mem:.3f}" if mem is not None else "-")
        lines.append(f"| {r['config']} | " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")


def plot(path: Path, report: dict) -> bool:
    """Bars of each contender's step time relative to the hand-written NumPy step."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    configs = report["configs"]
    names = [n for n in NAMES if any(n in r["contenders"] for r in configs)]
    fig, ax = plt.subplots(figsize=(2.2 + 2.2 * len(configs), 4))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs, heights = [], []
        for j, r in enumerate(configs):
            c, ref = r["contenders"].get(name), r["contenders"].get("numpy-hand")
            if c and ref:
                xs.append(j + (i - (len(names) - 1) / 2) * width)
                heights.append(c["median_ms"] / ref["median_ms"])
        bars = ax.bar(xs, heights, width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_yscale("log")  # torch on the smallest net is ~10x, the floor ~0.1x: ratios span decades
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(configs)), [r["config"] for r in configs], fontsize=8)
    ax.set_ylabel("step time / hand-written NumPy step")
    ax.set_title(f"{report['machine']['cpu']} ({report['settings']['device']}), lower is faster", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# -- command line ----------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    default_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "-c",
        "--config",
        action="append",
        help=f"config alias ({', '.join(f'{k}={v.name}' for k, v in CONFIGS.items())}) or WIDTHS:BATCH; "
        "repeat or comma-separate; default: all four",
    )
    p.add_argument("-k", "--contenders", default=",".join(NAMES), help=f"comma-separated subset of {','.join(NAMES)}")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=int, default=default_threads, help="BLAS/OpenMP threads of every contender")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: time each step by its process's CPU time (needs --threads 1); robust on a busy shared machine",
    )
    p.add_argument("--rounds", type=int, default=20, help="most interleaved rounds per config")
    p.add_argument("--min-rounds", type=int, default=5, help="fewest rounds, even past --budget")
    p.add_argument(
        "--budget", type=float, default=60.0, help="seconds of interleaved rounds per config (caps --rounds)"
    )
    p.add_argument("--blocks", type=int, default=3, help="timed blocks per contender per round")
    p.add_argument("--block-ms", type=float, default=20.0, help="target length of a timed block (>= 1 step)")
    p.add_argument("--warmup-ms", type=float, default=20.0, help="untimed warm-up before each turn (>= 1 step)")
    p.add_argument(
        "--pause-ms", type=float, default=100.0, help="idle gap before each turn, so spinning threads settle"
    )
    p.add_argument(
        "--max-foreign",
        type=float,
        help="redo a round if other processes used more cores than this (default 0.25 with the wall clock; "
        "with --clock cpu no round is redone, as a neighbour cannot inflate CPU time)",
    )
    p.add_argument("--retries", type=int, default=3, help="most times a disturbed round is redone")
    p.add_argument("--max-wait", type=float, default=20.0, help="most seconds to wait for a quiet machine per round")
    p.add_argument("--no-check", dest="check", action="store_false", help="skip timing each contender alone")
    p.add_argument("--check-rounds", type=int, default=5, help="rounds of the alone-vs-interleaved check")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the tracemalloc peak-memory figures")
    p.add_argument("--quick", action="store_true", help="5 rounds, 15 s budget, no alone check, no memory")
    p.add_argument("--in-process", action="store_true", help="all contenders in this process (shows the interference)")
    p.add_argument(
        "-o", "--out", default=str(ROOT / "benchmarks" / "results" / "latest"), help="prefix of output files"
    )
    args = p.parse_args(argv)
    args.command = "python benchmarks/compare.py " + " ".join(argv if argv is not None else sys.argv[1:])
    specs = [s for group in (args.config or [",".join(CONFIGS)]) for s in group.split(",") if s]
    args.configs = [parse_config(s) for s in specs]
    args.contenders = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = set(args.contenders) - set(NAMES)
    if unknown:
        p.error(f"unknown contenders {sorted(unknown)}; choose from {NAMES}")
    if args.clock == "cpu" and args.threads != 1:
        p.error("--clock cpu needs --threads 1: with more threads, spinning BLAS/OpenMP threads count as work")
    if args.max_foreign is None:
        args.max_foreign = 0.25 if args.clock == "wall" else float("inf")
    if args.quick:
        args.rounds, args.min_rounds, args.budget, args.check, args.memory = 5, 3, 15.0, False, False
    return args


THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.in_process and any(os.environ.get(var) != str(args.threads) for var in THREAD_VARS):
        # NumPy is loaded already and read its thread count at import: start again with it set.
        env = dict(os.environ, **{var: str(args.threads) for var in THREAD_VARS})
        os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]], env)
    if args.device == "cuda":
        sys.path.insert(0, str(ROOT))
        import gpubp

        if not gpubp.cuda.is_available():
            print(f"--device cuda: {gpubp.cuda.unavailable_reason()}", file=sys.stderr)
            return 2
    report = {
        "machine": describe_machine(args),
        "settings": {
            k: getattr(args, k)
            for k in ("device", "threads", "clock", "rounds", "min_rounds", "budget", "blocks", "block_ms", "warmup_ms")
            + ("pause_ms", "max_foreign", "retries", "max_wait", "check", "check_rounds", "memory")
            + ("in_process", "contenders", "command")
        },
        "configs": [],
    }
    if args.max_foreign == float("inf"):  # JSON has no infinity
        report["settings"]["max_foreign"] = None
    for config in args.configs:
        report["configs"].append(bench_config(config, args))
    report["machine"]["loadavg_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    prefix = Path(args.out)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    write_markdown(prefix.with_suffix(".md"), report)
    written = [prefix.with_suffix(".json"), prefix.with_suffix(".md")]
    if plot(prefix.with_suffix(".png"), report):
        written.append(prefix.with_suffix(".png"))
    print("\nwrote " + ", ".join(map(str, written)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
