"""One call on a GPU machine: environment, the GPU test suite, and the GPU benchmarks.

    python3 benchmarks/gpu_check.py            # or: bash benchmarks/gpu_check.sh

Writes ``gpu_check.json`` (every number), ``gpu_check.log`` (everything printed)
and ``pytest_gpu.log`` under ``--out``, else ``$OUT``, else ``benchmarks/results/``, and prints
a summary table last. Each section fails on its own: an error is recorded in
the JSON and the other sections still run. ``--dry-run`` runs the same code on
the CPU with tiny sizes (no GPU, no test suite), so its logic is tested anywhere.

Benchmarks (predictions and outcomes in benchmarks/NOTES.md):
  bandwidth  sigmoid-backward kernel (read g, read s, write dz) and the fused
             bias + sigmoid forward (read z, write y) against a device-to-device
             copy (read + write) in the same run;
  steps      one training step (forward, cross-entropy, backward, SGD with
             momentum) of sigmoid MLPs 784-1024-1024-10 and 4096-4096-4096-4096-10
             at batch 256 and 4096: gpubp against PyTorch eager, float32, TF32 off,
             and the same step's GEMMs alone, so non-GEMM time = step - GEMMs;
  jit_steps  the nets of benchmarks/step_nets.py: gpubp eager, gpubp through
             gp.jit, PyTorch eager and PyTorch with the whole step in one CUDA graph;
  precision  the 4096-wide and 784-1024-1024-10 MLPs at batch 4096 in fp32, tf32,
             bf16 autocast and fp16 autocast + GradScaler: gpubp (gp.jit) against
             PyTorch eager and graph, the steps' GEMMs alone in both, the GPU's bf16
             GEMM rate, and the main job's test accuracy per precision
             (benchmarks/precision.py; --skip precision_accuracy keeps the timings only);
  main_job   the CLI's default Fashion-MNIST run against the same recipe in PyTorch,
             plain and as an expert's CUDA graph, and gpubp on an empty kernel cache
             (benchmarks/main_job.py; needs --data on a machine without the package).
Times are CUDA-event intervals after warm-up; medians. --quick shortens the
step timings and trains 2 epochs instead of 20 (a smoke run); --skip NAME leaves
a section out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import numpy as np  # noqa: E402

import gpubp as gp  # noqa: E402

MODELS = {"784-1024-1024-10": [784, 1024, 1024, 10], "4096x4-10": [4096, 4096, 4096, 4096, 10]}
BATCHES = [256, 4096]
DRY_MODELS = {"8-16-4": [8, 16, 4]}
DRY_BATCHES = [4]
TARGETS = {"bandwidth_fraction_of_copy": 0.85, "step_time_vs_torch": 1.0, "non_gemm_fraction": 0.10}


class Log:
    """Prints and keeps every line for the log file."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, *parts: Any) -> None:
        line = " ".join(str(p) for p in parts)
        print(line, flush=True)
        self.lines.append(line)


log = Log()


# -- timing ------------------------------------------------------------------------
class Timer:
    """Median milliseconds of ``fn`` over ``repeat`` runs after ``warmup`` runs:
    CUDA events on a GPU (each run between its own pair of events, nothing
    synchronised until the end), the host clock on the CPU."""

    def __init__(self, gpu: bool, library: str = "cupy") -> None:
        self.gpu = gpu
        self.library = library

    def _events(self) -> tuple[Callable[[], Any], Callable[[Any, Any], float], Callable[[], None]]:
        if self.library == "torch":
            import torch

            def make() -> Any:
                event = torch.cuda.Event(enable_timing=True)
                event.record()
                return event

            return make, lambda a, b: a.elapsed_time(b), torch.cuda.synchronize
        import cupy

        def make() -> Any:
            event = cupy.cuda.Event()
            event.record()
            return event

        return make, cupy.cuda.get_elapsed_time, lambda: cupy.cuda.Device().synchronize()

    def median_ms(self, fn: Callable[[], Any], warmup: int, repeat: int) -> dict[str, float]:
        for _ in range(warmup):
            fn()
        if not self.gpu:
            samples = []
            for _ in range(repeat):
                started = time.perf_counter()
                fn()
                samples.append((time.perf_counter() - started) * 1e3)
        else:
            make, elapsed, sync = self._events()
            sync()
            pairs = []
            for _ in range(repeat):
                start = make()
                fn()
                pairs.append((start, make()))
            sync()
            samples = [elapsed(a, b) for a, b in pairs]
        return {"median_ms": statistics.median(samples), "min_ms": min(samples), "max_ms": max(samples)}


# -- sections -------------------------------------------------------------------------
def environment(dry_run: bool) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "gpubp": gp.__version__,
        "dry_run": dry_run,
        "env": {k: os.environ.get(k) for k in ("CUPY_TF32", "NVIDIA_TF32_OVERRIDE", "CUPY_CACHE_DIR")},
        "cuda_unavailable_reason": gp.cuda.unavailable_reason(),
    }
    try:
        import cupy

        runtime = cupy.cuda.runtime
        info["cupy"] = cupy.__version__
        info["cuda_driver"] = runtime.driverGetVersion()
        info["cuda_runtime"] = runtime.runtimeGetVersion()
        if not dry_run:
            props = runtime.getDeviceProperties(0)
            info["device"] = {
                "name": props["name"].decode() if isinstance(props["name"], bytes) else props["name"],
                "compute_capability": f"{props['major']}.{props['minor']}",
                "multiprocessors": props["multiProcessorCount"],
                "memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
                "l2_mib": round(props.get("l2CacheSize", 0) / 2**20, 1),
            }
    except Exception as err:  # no CuPy, or no device: recorded, not fatal
        info["cupy_error"] = f"{type(err).__name__}: {err}"
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.version.cuda
    except Exception as err:
        info["torch_error"] = f"{type(err).__name__}: {err}"
    if not dry_run:
        info["nvidia_smi"] = _run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit", "--format=csv"]
        )
    return info


def tests(out: Path, timeout: int, workers: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider", "tests"]
    if workers > 1:
        command += ["-n", str(workers)]  # pytest-xdist
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    (out / "pytest_gpu.log").write_text(result.stdout + result.stderr)
    tail = [line for line in result.stdout.strip().splitlines() if line.strip()][-1:] or [""]
    return {
        "returncode": result.returncode,
        "summary": tail[0],
        "seconds": round(time.perf_counter() - started, 1),
        "log": "pytest_gpu.log",
    }


def bandwidth(gpu: bool) -> dict[str, Any]:
    backend = gp.backends.get_backend("cuda" if gpu else "cpu")
    xp = backend.xp
    timer = Timer(gpu)
    n = 2**26 if gpu else 2**12
    rows, cols = (16384, 4096) if gpu else (64, 64)
    rng = xp.random.default_rng(0) if gpu else np.random.default_rng(0)
    src = rng.standard_normal(n, dtype=np.float32)
    dst = xp.empty_like(src)
    g = rng.standard_normal(n, dtype=np.float32)
    s = backend.sigmoid(rng.standard_normal(n, dtype=np.float32))
    z = rng.standard_normal((rows, cols), dtype=np.float32)
    bias = rng.standard_normal(cols, dtype=np.float32)
    nbytes = 4 * n

    def copy() -> None:
        if gpu:
            dst.data.copy_from_device_async(src.data, nbytes)
        else:
            np.copyto(dst, src)

    runs = {
        "copy": (copy, 2 * nbytes),
        "sigmoid_backward": (lambda: backend.sigmoid_backward(g, s), 3 * nbytes),
        "bias_sigmoid_forward": (lambda: backend.bias_activation(z, bias, "sigmoid"), 2 * 4 * rows * cols + 4 * cols),
    }
    result: dict[str, Any] = {"elements": n, "matrix": [rows, cols], "dtype": "float32"}
    for name, (fn, moved) in runs.items():
        timing = timer.median_ms(fn, warmup=5, repeat=30 if gpu else 5)
        timing["bytes"] = moved
        timing["gb_per_s"] = moved / 1e9 / (timing["median_ms"] / 1e3)
        result[name] = timing
    for name in ("sigmoid_backward", "bias_sigmoid_forward"):
        result[name]["fraction_of_copy"] = result[name]["gb_per_s"] / result["copy"]["gb_per_s"]
    return result


def _gemm_flops(widths: list[int], batch: int) -> int:
    """FLOPs of the step's GEMMs: forward x·Wᵀ and ∂W = δᵀ·a for every layer, ∂x = δ·W
    for every layer but the first (its input needs no gradient)."""
    pairs = list(zip(widths[:-1], widths[1:]))
    return 2 * batch * (2 * sum(i * o for i, o in pairs) + sum(i * o for i, o in pairs[1:]))


def _gpubp_model(widths: list[int], device: str) -> gp.nn.Sequential:
    layers: list[gp.nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(gp.nn.Linear(fan_in, fan_out))
        if i < len(widths) - 2:
            layers.append(gp.nn.Sigmoid())
    return gp.nn.Sequential(*layers).to(device)


def steps(gpu: bool, models: dict[str, list[int]], batches: list[int]) -> dict[str, Any]:
    device = "cuda" if gpu else "cpu"
    results: dict[str, Any] = {}
    for model_name, widths in models.items():
        for batch in batches:
            key = f"{model_name}@{batch}"
            entry: dict[str, Any] = {"widths": widths, "batch": batch, "gemm_gflop": _gemm_flops(widths, batch) / 1e9}
            results[key] = entry
            repeat = 20 if gpu else 3
            try:
                entry["gpubp"] = _time_gpubp_step(widths, batch, device, gpu, repeat)
            except Exception:
                entry["gpubp"] = {"error": traceback.format_exc()}
            try:
                entry["gemm_only"] = _time_gemms(widths, batch, device, gpu, repeat)
            except Exception:
                entry["gemm_only"] = {"error": traceback.format_exc()}
            try:
                entry["torch"] = _time_torch_step(widths, batch, gpu, repeat)
            except Exception:
                entry["torch"] = {"error": traceback.format_exc()}
            _derive(entry)
            log(f"  {key}: {_brief(entry)}")
    return results


def _time_gpubp_step(widths: list[int], batch: int, device: str, gpu: bool, repeat: int) -> dict[str, float]:
    gp.manual_seed(0)
    model = _gpubp_model(widths, device)
    x = gp.randn(batch, widths[0], device=device)
    labels = gp.tensor(np.random.default_rng(0).integers(0, widths[-1], batch), device=device)
    opt = gp.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        loss = gp.cross_entropy(model(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()

    timing = Timer(gpu).median_ms(step, warmup=5, repeat=repeat)
    timing["samples_per_s"] = batch / (timing["median_ms"] / 1e3)
    return timing


def _time_gemms(widths: list[int], batch: int, device: str, gpu: bool, repeat: int) -> dict[str, float]:
    """The step's GEMMs alone, on the same shapes and layouts (xp @, as gpubp's ops call it)."""
    xp = gp.backends.get_backend(device).xp
    rng = np.random.default_rng(1)

    def array(*shape: int) -> Any:
        return xp.asarray(rng.standard_normal(shape, dtype=np.float32))

    pairs = list(zip(widths[:-1], widths[1:]))
    acts = [array(batch, fan_in) for fan_in, _ in pairs]
    weights = [array(fan_out, fan_in) for fan_in, fan_out in pairs]
    deltas = [array(batch, fan_out) for _, fan_out in pairs]

    def gemms() -> None:
        for a, w in zip(acts, weights):
            a @ w.T
        for i, (a, w, d) in enumerate(zip(acts, weights, deltas)):
            d.T @ a
            if i:
                d @ w

    timing = Timer(gpu).median_ms(gemms, warmup=5, repeat=repeat)
    timing["tflop_per_s"] = _gemm_flops(widths, batch) / 1e12 / (timing["median_ms"] / 1e3)
    return timing


def _time_torch_step(widths: list[int], batch: int, gpu: bool, repeat: int) -> dict[str, Any]:
    import torch

    # TF32 off, as in gpubp: float32 GEMMs in full float32.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    device = "cuda" if gpu else "cpu"
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(torch.nn.Linear(fan_in, fan_out))
        if i < len(widths) - 2:
            layers.append(torch.nn.Sigmoid())
    model = torch.nn.Sequential(*layers).to(device)
    x = torch.randn(batch, widths[0], device=device)
    labels = torch.randint(0, widths[-1], (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.functional.cross_entropy

    def step() -> None:
        loss = loss_fn(model(x), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    timing: dict[str, Any] = Timer(gpu, "torch").median_ms(step, warmup=5, repeat=repeat)
    timing["samples_per_s"] = batch / (timing["median_ms"] / 1e3)
    timing["float32_matmul_precision"] = torch.get_float32_matmul_precision()
    return timing


def _derive(entry: dict[str, Any]) -> None:
    ours, theirs, gemm = entry.get("gpubp", {}), entry.get("torch", {}), entry.get("gemm_only", {})
    if "median_ms" in ours and "median_ms" in theirs:
        entry["time_vs_torch"] = ours["median_ms"] / theirs["median_ms"]
    if "median_ms" in ours and "median_ms" in gemm:
        entry["non_gemm_fraction"] = max(0.0, 1 - gemm["median_ms"] / ours["median_ms"])


def _brief(entry: dict[str, Any]) -> str:
    parts = []
    for name in ("gpubp", "torch", "gemm_only"):
        timing = entry.get(name, {})
        parts.append(f"{name} {timing['median_ms']:.3f} ms" if "median_ms" in timing else f"{name} ERROR")
    return ", ".join(parts)


def jit_steps(gpu: bool, quick: bool) -> dict[str, Any]:
    """Each net of benchmarks/step_nets.py four ways, timed side by side in
    interleaved rounds: gpubp eager and jit, PyTorch eager and its whole-step
    CUDA graph (PyTorch's are left out where it is not installed)."""
    from benchmarks.step_nets import STEP_NETS
    from benchmarks.timing import time_interleaved

    device = "cuda" if gpu else "cpu"
    warmup, rounds, block = (10, 4, 10) if quick else (20, 25, 20)
    if not gpu:
        warmup, rounds, block = 2, 2, 2
    results: dict[str, Any] = {}
    for net in STEP_NETS:
        entry: dict[str, Any] = {"name": net.name}
        steps: dict[str, Any] = {}
        for name, build in _contenders(net, device, gpu).items():
            try:
                steps[name] = build()
            except Exception:
                entry[name] = {"error": traceback.format_exc()}
        try:
            entry.update(time_interleaved(steps, warmup, rounds, block))
        except Exception:
            entry["error"] = traceback.format_exc()
        _derive_jit(entry)
        results[net.key] = entry
        log(f"  {net.name}: " + ", ".join(f"{k} {_ms(entry, k)}" for k in steps))
    return results


def _contenders(net: Any, device: str, gpu: bool) -> dict[str, Callable[[], Any]]:
    """name -> a function building (step, events) for ``time_interleaved``."""
    from benchmarks.gpubp_steps import build_gpubp_step
    from benchmarks.timing import cupy_events, torch_events

    cupy_clock = cupy_events() if gpu else None
    contenders: dict[str, Callable[[], Any]] = {
        "gpubp_eager": lambda: (build_gpubp_step(net, device, False), cupy_clock),
        "gpubp_jit": lambda: (build_gpubp_step(net, device, True), cupy_clock),
    }
    try:
        from benchmarks.torch_steps import build_torch_step

        torch_clock = torch_events() if gpu else None
        contenders["torch_eager"] = lambda: (build_torch_step(net, device, False), torch_clock)
        if gpu:
            contenders["torch_graph"] = lambda: (build_torch_step(net, device, True), torch_clock)
    except ImportError:  # no PyTorch: gpubp alone
        pass
    return contenders


def _ms(entry: dict[str, Any], name: str) -> str:
    if name not in entry:
        return "-"
    timing = entry[name]
    return f"{timing['median_ms']:.3f} ms" if "median_ms" in timing else "ERROR"


def _derive_jit(entry: dict[str, Any]) -> None:
    """The ratios of issue 10's targets: jit ≤ 0.8 × torch's graph, ≥ 5 × faster than
    torch eager; gpubp eager ≤ 0.8 × torch eager."""

    def ms(name: str) -> float | None:
        return entry.get(name, {}).get("median_ms")

    if ms("gpubp_jit") and ms("torch_graph"):
        entry["jit_vs_torch_graph"] = ms("gpubp_jit") / ms("torch_graph")
    if ms("gpubp_jit") and ms("torch_eager"):
        entry["torch_eager_vs_jit"] = ms("torch_eager") / ms("gpubp_jit")
    if ms("gpubp_eager") and ms("torch_eager"):
        entry["eager_vs_torch_eager"] = ms("gpubp_eager") / ms("torch_eager")


def precision(gpu: bool, quick: bool, data: str | None, accuracy: bool) -> dict[str, Any]:
    """The precision rows (benchmarks/precision.py): timings, then Fashion-MNIST per precision."""
    from benchmarks import precision as section

    plan = section.make_plan(gpu, quick, accuracy)
    return section.run(plan, "cuda" if gpu else "cpu", data, log=log)


def main_job(data: str, quick: bool) -> dict[str, Any]:
    from benchmarks import main_job as job

    return job.compare(data, 2 if quick else 20, log=log)


# -- summary ----------------------------------------------------------------------------
def summary(results: dict[str, Any]) -> list[str]:
    lines = ["", "== gpu_check summary ==", f"device: {results['environment'].get('device', {}).get('name', 'none')}"]
    for section in ("tests", "bandwidth", "steps"):
        if "error" in results.get(section, {}):
            lines.append(f"{section}: ERROR (see gpu_check.json)")
    tests_result = results.get("tests", {})
    if "summary" in tests_result:
        lines.append(f"tests: {tests_result['summary']} (rc {tests_result['returncode']})")
    bw = results.get("bandwidth", {})
    if "copy" in bw:
        lines.append(f"copy {bw['copy']['gb_per_s']:.0f} GB/s")
        for name in ("sigmoid_backward", "bias_sigmoid_forward"):
            fraction = bw[name]["fraction_of_copy"]
            verdict = "ok" if fraction >= TARGETS["bandwidth_fraction_of_copy"] else "MISS"
            lines.append(f"{name}: {bw[name]['gb_per_s']:.0f} GB/s = {fraction:.0%} of copy (target >= 85%: {verdict})")
    columns = ("gpubp ms", "torch ms", "ratio", "GEMM ms", "non-GEMM", "samples/s")
    lines.append(f"{'model@batch':<24}" + "".join(f"{c:>11}" for c in columns))
    for key, entry in results.get("steps", {}).items():
        if not isinstance(entry, dict) or "batch" not in entry:
            continue

        def ms(name: str, e: dict = entry) -> str:
            return f"{e[name]['median_ms']:.3f}" if "median_ms" in e.get(name, {}) else "err"

        ratio = f"{entry['time_vs_torch']:.2f}" if "time_vs_torch" in entry else "-"
        fraction = f"{entry['non_gemm_fraction']:.1%}" if "non_gemm_fraction" in entry else "-"
        rate = f"{entry['gpubp']['samples_per_s']:.0f}" if "samples_per_s" in entry.get("gpubp", {}) else "-"
        cells = (ms("gpubp"), ms("torch"), ratio, ms("gemm_only"), fraction, rate)
        lines.append(f"{key:<24}" + "".join(f"{c:>11}" for c in cells))
    lines.append("targets: ratio <= 1.00 (gpubp vs PyTorch eager); non-GEMM <= 10% on the 4096-wide MLP")
    jit = results.get("jit_steps", {})
    if isinstance(jit, dict) and "error" not in jit:
        names = ("gpubp_eager", "gpubp_jit", "torch_eager", "torch_graph")
        lines.append("")
        lines.append(
            f"{'net (ms/step)':<44}" + "".join(f"{n:>12}" for n in names) + f"{'jit/graph':>11}{'eager/jit':>11}"
        )
        for entry in jit.values():
            cells = [_ms(entry, n).replace(" ms", "") for n in names]
            ratio = f"{entry['jit_vs_torch_graph']:.2f}" if "jit_vs_torch_graph" in entry else "-"
            speedup = f"{entry['torch_eager_vs_jit']:.1f}" if "torch_eager_vs_jit" in entry else "-"
            lines.append(f"{entry['name']:<44}" + "".join(f"{c:>12}" for c in cells) + f"{ratio:>11}{speedup:>11}")
        lines.append(
            "targets: gpubp jit <= 0.8 x torch graph and >= 5 x faster than torch eager (784-256-128, 784-512-256)"
        )
    precision_results = results.get("precision", {})
    if isinstance(precision_results, dict) and precision_results:
        from benchmarks import precision as precision_module

        lines.append("")
        lines += precision_module.summary(precision_results)
    job = results.get("main_job", {})
    if isinstance(job, dict) and "error" not in job and job:
        from benchmarks import main_job as main_job_module

        lines.append("")
        lines += main_job_module.summary(job)
    return lines


def _commit() -> str:
    # A copy of the tree sent to a GPU machine may carry a stale .git: the caller's word wins.
    given = os.environ.get("GPUBP_COMMIT")
    if given:
        return given
    found = _run(["git", "rev-parse", "HEAD"], cwd=ROOT)
    return found if found and len(found) == 40 else "unknown"


def _run(command: list[str], cwd: Path | None = None) -> str | None:
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except Exception:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GPU tests and benchmarks in one call")
    parser.add_argument("--out", default=os.environ.get("OUT"), help="results folder ($OUT, else benchmarks/results)")
    parser.add_argument("--dry-run", action="store_true", help="the same code on the CPU, tiny sizes, no tests")
    parser.add_argument("--skip-tests", action="store_true", help="benchmarks only")
    parser.add_argument("--test-timeout", type=int, default=360, help="seconds for the GPU test suite")
    parser.add_argument("--workers", type=int, default=8, help="pytest-xdist workers for the GPU tests (1: none)")
    parser.add_argument("--quick", action="store_true", help="short timings and a 2-epoch main job (a smoke run)")
    parser.add_argument("--data", default=None, help="the Fashion-MNIST folder (default: the Debian package's)")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        help="a section to leave out (repeatable): tests, bandwidth, steps, jit_steps, precision, main_job; "
        "precision_accuracy keeps precision's timings but trains nothing",
    )
    args = parser.parse_args(argv)
    if args.out is None:  # a dry run's numbers mean nothing: keep them out of the repository
        args.out = Path(tempfile.gettempdir()) / "gpubp-gpu-check" if args.dry_run else ROOT / "benchmarks" / "results"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu = not args.dry_run
    started = time.perf_counter()

    results: dict[str, Any] = {"targets": TARGETS}
    sections: list[tuple[str, Callable[[], Any]]] = [("environment", lambda: environment(args.dry_run))]
    if gpu and not args.skip_tests:
        sections.append(("tests", lambda: tests(out, args.test_timeout, args.workers)))
    sections.append(("bandwidth", lambda: bandwidth(gpu)))
    models, batches = (MODELS, BATCHES) if gpu else (DRY_MODELS, DRY_BATCHES)
    sections.append(("steps", lambda: steps(gpu, models, batches)))
    sections.append(("jit_steps", lambda: jit_steps(gpu, args.quick)))
    data = None
    if gpu:
        from gpubp.data.datasets import FASHION_MNIST_DIR

        data = args.data or FASHION_MNIST_DIR
    accuracy = "precision_accuracy" not in args.skip
    sections.append(("precision", lambda: precision(gpu, args.quick, data, accuracy)))
    if gpu:
        sections.append(("main_job", lambda: main_job(data, args.quick)))
    sections = [(name, run) for name, run in sections if name not in args.skip]
    for name, run in sections:
        log(f"== {name} ==")
        section_started = time.perf_counter()
        try:
            results[name] = run()
        except Exception:
            results[name] = {"error": traceback.format_exc()}
            log(results[name]["error"])
        log(f"   ({time.perf_counter() - section_started:.1f} s)")
        (out / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str))  # kept even if a later one dies
    results["seconds"] = round(time.perf_counter() - started, 1)
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str))
    log(json.dumps(results["environment"], indent=2, default=str))
    for line in summary(results):
        log(line)
    (out / "gpu_check.log").write_text("\n".join(log.lines) + "\n")
    (out / "gpu_check.md").write_text("\n".join(summary(results)) + "\n")
    failed = any(isinstance(v, dict) and "error" in v for v in results.values())
    return 1 if failed or results.get("tests", {}).get("returncode", 0) else 0


if __name__ == "__main__":
    sys.exit(main())
