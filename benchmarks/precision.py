"""The precision section of ``benchmarks/gpu_check.py`` (issue 12): training steps in
fp32, tf32, bf16 and fp16, gpubp beside PyTorch in the same run, their matrix
products alone, the GPU's bf16 GEMM rate, and the main job's test accuracy.

    python benchmarks/precision.py --data DIR            # the section alone (~1 min on an H100)
    python benchmarks/precision.py --quick --no-accuracy # ~10 s
    python benchmarks/precision.py --dry-run             # the same code on the CPU, tiny sizes

Per net (sigmoid MLPs at batch 4096, SGD with momentum: ``precision_steps``) and
precision, one interleaved timing (``timing.time_interleaved``, CUDA events) of:

- ``gpubp``: the step through ``gp.jit`` (one CUDA graph per step);
- ``torch_eager`` and ``torch_graph``: PyTorch's step eager and as one CUDA graph;
  the faster of the two is the reference the ratio divides by;
- ``gemm_gpubp`` and ``gemm_torch``: the step's products alone (``precision_gemms``),
  the floor of a step at that precision.

GEMM TFLOP/s always count the step's products (``Config.gemm_flops``), whoever ran
them, and are set against the bf16 rate measured here (the faster of gpubp and
PyTorch on one 8192³ product). The targets are stated on the 4096-wide net.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(ROOT))

from benchmarks.mlp import Config, init_params  # noqa: E402
from benchmarks.precision_gemms import tflop_per_s  # noqa: E402
from benchmarks.precision_steps import PRECISIONS, Step  # noqa: E402
from benchmarks.step_nets import StepNet  # noqa: E402

WIDE = StepNet(Config((4096, 4096, 4096, 4096, 10), 4096), "sgd-momentum")
MEDIUM = StepNet(Config((784, 1024, 1024, 10), 4096), "sgd-momentum")
DRY = StepNet(Config((8, 16, 4), 4), "sgd-momentum")
SQUARE = 8192
STEPS = ("gpubp", "torch_eager", "torch_graph")
GEMMS = ("gemm_gpubp", "gemm_torch")
RECIPE = "sigmoid hidden layers, softmax cross-entropy, SGD lr 0.01 momentum 0.9, one fixed batch"


@dataclass(frozen=True)
class Plan:
    """What the section runs. ``nets``: each net with the steps in one timed block
    (enough to make a block a few ms long, far above the events' resolution)."""

    nets: tuple[tuple[StepNet, int], ...]
    precisions: tuple[str, ...]
    warmup: int  # untimed steps per contender: gp.jit runs 2 eagerly and captures the 3rd
    rounds: int
    square: int  # n of the n³ bf16 product giving the GPU's bf16 GEMM rate
    accuracy: tuple[str, ...]  # precisions trained on Fashion-MNIST (empty: none)
    epochs: int


def make_plan(gpu: bool, quick: bool = False, accuracy: bool = True) -> Plan:
    """The full section (~1 min on an H100), ``quick`` (the 4096-wide net only, fewer
    rounds, 2 epochs of fp32 and bf16: ~20 s), or on the CPU a tiny net and no
    training (the main job needs the GPU)."""
    if not gpu:
        return Plan(((DRY, 2),), PRECISIONS, 3, 2, 64, (), 0)
    if quick:
        return Plan(((WIDE, 2),), PRECISIONS, 4, 3, SQUARE, ("fp32", "bf16") if accuracy else (), 2)
    # A 4096-wide fp32 step is ~22 ms and its bf16 step ~2.5 ms; the 784-wide net's
    # are ~1.2 and ~0.3 ms: 3 and 10 steps make blocks of 7-70 and 3-12 ms.
    return Plan(((WIDE, 3), (MEDIUM, 10)), PRECISIONS, 5, 7, SQUARE, PRECISIONS if accuracy else (), 20)


# -- running ------------------------------------------------------------------------------
def run(plan: Plan, device: str = "cuda", data: str | None = None, log: Callable[..., None] = print) -> dict[str, Any]:
    """Every timing of ``plan`` on ``device``, then the accuracy runs (with ``data``)."""
    from benchmarks.precision_steps import tf32_switches

    gpu = device.startswith("cuda")
    results: dict[str, Any] = {"plan": asdict(plan), "recipe": RECIPE, "device": device}
    with tf32_switches("bf16"):
        results["bf16_gemm_rate"] = bf16_rate(plan.square, device, plan)
    rate = results["bf16_gemm_rate"].get("tflop_per_s")
    log(f"  bf16 GEMM rate ({plan.square}^3): {_tflops(rate)} TFLOP/s")
    rows: dict[str, Any] = {}
    for net, block in plan.nets:
        params = init_params(net.config)  # drawn once for the four precisions' eight models
        rows[net.key] = {}
        for precision in plan.precisions:
            with tf32_switches(precision):
                entry = time_group(_contenders(net, precision, device, params), plan, block, gpu)
            entry["derived"] = derive(entry, net.config.gemm_flops(), rate)
            rows[net.key][precision] = entry
            log(f"  {net.key} {precision}: {brief(entry)}")
            _release(gpu)
    results["rows"] = rows
    if plan.accuracy and data is not None:
        from benchmarks import precision_accuracy

        results["accuracy"] = precision_accuracy.run(data, plan.epochs, plan.accuracy, log=log)
    results["targets"] = check_targets(results)
    return results


def bf16_rate(n: int, device: str, plan: Plan) -> dict[str, Any]:
    """One n³ bf16 product through gpubp's binding and through PyTorch, interleaved;
    the rate is the faster one's."""
    from benchmarks.precision_gemms import gpubp_square, torch_square

    contenders = {
        "gpubp": lambda: (Step(gpubp_square(n, device)), _events("gpubp", device)),
        "torch": lambda: (Step(torch_square(n, device)), _events("torch", device)),
    }
    entry = time_group(contenders, plan, 5, device.startswith("cuda"))
    rates = []
    for name in ("gpubp", "torch"):
        if "median_ms" in entry.get(name, {}):
            entry[name]["tflop_per_s"] = tflop_per_s(2 * n**3, entry[name]["median_ms"])
            rates.append(entry[name]["tflop_per_s"])
    entry["n"] = n
    if rates:
        entry["tflop_per_s"] = max(rates)
    return entry


Builder = Callable[[], tuple[Step, Any]]  # -> (the step, its library's events or None)


def _contenders(net: StepNet, precision: str, device: str, params: Any) -> dict[str, Builder]:
    from benchmarks.precision_gemms import gpubp_gemms, torch_gemms
    from benchmarks.precision_steps import build_gpubp_step, build_torch_step

    sizes, batch = net.config.sizes, net.config.batch
    contenders: dict[str, Builder] = {
        "gpubp": lambda: (build_gpubp_step(net, precision, device, params=params), _events("gpubp", device)),
        "torch_eager": lambda: (
            build_torch_step(net, precision, device, False, params=params),
            _events("torch", device),
        ),
        "gemm_gpubp": lambda: (Step(gpubp_gemms(sizes, batch, precision, device)), _events("gpubp", device)),
        "gemm_torch": lambda: (Step(torch_gemms(sizes, batch, precision, device)), _events("torch", device)),
    }
    if device.startswith("cuda"):
        contenders["torch_graph"] = lambda: (
            build_torch_step(net, precision, device, True, params=params),
            _events("torch", device),
        )
    return contenders


def _events(library: str, device: str) -> Any:
    if not device.startswith("cuda"):
        return None
    from benchmarks.timing import cupy_events, torch_events

    return cupy_events() if library == "gpubp" else torch_events()


def time_group(contenders: dict[str, Builder], plan: Plan, block: int, gpu: bool) -> dict[str, Any]:
    """Builds and warms up each contender on its own (one that fails is recorded as
    ``{"error": traceback}`` and left out, so a missing API costs one cell, not the
    row), then times the rest side by side; each step's loss afterwards."""
    from benchmarks.timing import time_interleaved

    entry: dict[str, Any] = {}
    ready: dict[str, tuple[Step, Any]] = {}
    for name, build in contenders.items():
        try:
            step, events = build()
            for _ in range(plan.warmup):
                step.run()
            if events is not None:
                events.synchronize()  # an error raised on the device surfaces here, not in another's timing
            ready[name] = (step, events)
        except Exception:
            entry[name] = {"error": traceback.format_exc()}
            # At once: a device fault is sticky, and the section may not get to report it.
            print(f"    {name}: {entry[name]['error'][-1500:]}", flush=True)
    if not ready:
        return entry
    try:
        timings = time_interleaved({n: (s.run, e) for n, (s, e) in ready.items()}, 1, plan.rounds, block)
    except Exception:
        entry["error"] = traceback.format_exc()
        print(f"    timing: {entry['error'][-1500:]}", flush=True)
        return entry
    for name, timing in timings.items():
        step = ready[name][0]
        if step.loss is not None:
            try:
                timing["final_loss"] = step.loss()
            except Exception as err:
                timing["final_loss_error"] = f"{type(err).__name__}: {err}"
        entry[name] = timing
    return entry


def _release(gpu: bool) -> None:
    """Hands the last group's buffers and graph pools back, so 16 groups never add up."""
    gc.collect()
    if not gpu:
        return
    import cupy

    cupy.get_default_memory_pool().free_all_blocks()
    if "torch" in sys.modules:
        sys.modules["torch"].cuda.empty_cache()


# -- derived numbers and targets ------------------------------------------------------------
def _ms(entry: dict[str, Any], name: str) -> float | None:
    return entry.get(name, {}).get("median_ms")


def derive(entry: dict[str, Any], gemm_flops: int, rate: float | None) -> dict[str, Any]:
    """The row's ratios: gpubp against PyTorch's faster step, and GEMM TFLOP/s of the
    steps and of the products alone, also as a fraction of the bf16 ``rate``."""
    out: dict[str, Any] = {}
    torch_times = {n: _ms(entry, n) for n in ("torch_eager", "torch_graph") if _ms(entry, n)}
    if torch_times:
        best = min(torch_times, key=torch_times.__getitem__)
        out["torch_reference"] = best
        out["torch_ms"] = torch_times[best]
    if _ms(entry, "gpubp") and "torch_ms" in out:
        out["vs_torch"] = _ms(entry, "gpubp") / out["torch_ms"]
    for name, key in (("gpubp", "step"), ("gemm_gpubp", "gemm_gpubp"), ("gemm_torch", "gemm_torch")):
        ms = _ms(entry, name)
        if ms:
            out[f"{key}_tflop_per_s"] = tflop_per_s(gemm_flops, ms)
            if rate:
                out[f"{key}_fraction_of_bf16_rate"] = out[f"{key}_tflop_per_s"] / rate
    if "torch_ms" in out:
        out["torch_step_tflop_per_s"] = tflop_per_s(gemm_flops, out["torch_ms"])
    if _ms(entry, "gpubp") and _ms(entry, "gemm_gpubp"):
        out["non_gemm_ms"] = _ms(entry, "gpubp") - _ms(entry, "gemm_gpubp")
    return out


@dataclass(frozen=True)
class Target:
    name: str
    what: str
    relation: str  # "<=" or ">="
    limit: float


TARGETS = (
    Target(
        "bf16_vs_torch_bf16",
        "4096 net, gpubp bf16 step / PyTorch bf16 autocast step (faster of eager, graph)",
        "<=",
        0.8,
    ),
    Target("bf16_gemm_fraction", "4096 net, gpubp bf16 step's GEMM FLOP/s / the measured bf16 GEMM rate", ">=", 0.60),
    Target("tf32_vs_torch_tf32", "4096 net, gpubp TF32 step / PyTorch TF32 step (faster of eager, graph)", "<=", 1.0),
    Target("fp16_vs_bf16", "4096 net, gpubp fp16 + GradScaler step / gpubp bf16 step", "<=", 1.10),
    Target("accuracy_bf16_vs_fp32", "Fashion-MNIST, |test accuracy bf16 - fp32|", "<=", 0.005),
)


def target_values(results: dict[str, Any]) -> dict[str, float | None]:
    """Each target's measured value (None: not measured in this run)."""
    rows = results.get("rows", {}).get(WIDE.key, {})

    def derived(precision: str, key: str) -> float | None:
        return rows.get(precision, {}).get("derived", {}).get(key)

    bf16, fp16 = _ms(rows.get("bf16", {}), "gpubp"), _ms(rows.get("fp16", {}), "gpubp")
    difference = results.get("accuracy", {}).get("minus_fp32", {}).get("bf16")
    return {
        "bf16_vs_torch_bf16": derived("bf16", "vs_torch"),
        "bf16_gemm_fraction": derived("bf16", "step_fraction_of_bf16_rate"),
        "tf32_vs_torch_tf32": derived("tf32", "vs_torch"),
        "fp16_vs_bf16": fp16 / bf16 if fp16 and bf16 else None,
        "accuracy_bf16_vs_fp32": abs(difference) if difference is not None else None,
    }


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per target: its value and PASS, FAIL or NOT MEASURED."""
    values = target_values(results)
    checked = []
    for target in TARGETS:
        value = values[target.name]
        if value is None:
            verdict = "NOT MEASURED"
        else:
            passed = value <= target.limit if target.relation == "<=" else value >= target.limit
            verdict = "PASS" if passed else "FAIL"
        checked.append({**asdict(target), "value": value, "verdict": verdict})
    return checked


# -- report -----------------------------------------------------------------------------------
def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _tflops(value: float | None) -> str:
    # Whole TFLOP/s on a GPU; a dry run's tiny rates keep three digits instead of showing 0.
    return _number(value, ".0f" if value is None or value >= 10 else ".3g")


def _cell(entry: dict[str, Any], name: str) -> str:
    if name not in entry:
        return "-"
    ms = _ms(entry, name)
    return f"{ms:.3f}" if ms is not None else "ERROR"


def brief(entry: dict[str, Any]) -> str:
    """One log line: ms per step of each contender."""
    return ", ".join(f"{name} {_cell(entry, name)}" for name in (*STEPS, *GEMMS) if name in entry)


def summary(results: dict[str, Any]) -> list[str]:
    """Markdown lines: the rate, one row per net and precision, accuracy, the targets."""
    if "error" in results:
        return ["precision: ERROR (see gpu_check.json)"]
    rate = results.get("bf16_gemm_rate", {})
    lines = [
        f"Precision ({RECIPE}; ms per step, medians of CUDA-event blocks; gpubp through gp.jit;",
        "TFLOP/s count the step's GEMMs; % of the measured bf16 GEMM rate):",
        "",
        f"measured bf16 GEMM rate: {_tflops(rate.get('tflop_per_s'))} TFLOP/s "
        f"({rate.get('n')}^3: gpubp {_tflops(rate.get('gpubp', {}).get('tflop_per_s'))}, "
        f"torch {_tflops(rate.get('torch', {}).get('tflop_per_s'))})",
        "",
        "| net@batch | precision | gpubp | torch eager | torch graph | gpubp/torch | step TFLOP/s | % rate "
        "| GEMMs gpubp | GEMMs torch | GEMMs gpubp TFLOP/s | % rate | GEMMs torch TFLOP/s | % rate |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, row in results.get("rows", {}).items():
        for precision, entry in row.items():
            d = entry.get("derived", {})

            def rate_cells(prefix: str, d: dict[str, Any] = d) -> list[str]:
                return [
                    _tflops(d.get(f"{prefix}_tflop_per_s")),
                    _number(d.get(f"{prefix}_fraction_of_bf16_rate"), ".0%"),
                ]

            cells = [key, precision, *(_cell(entry, n) for n in STEPS), _number(d.get("vs_torch"), ".2f")]
            cells += [*rate_cells("step"), *(_cell(entry, n) for n in GEMMS)]
            cells += [*rate_cells("gemm_gpubp"), *rate_cells("gemm_torch")]
            lines.append("| " + " | ".join(cells) + " |")
    accuracy = results.get("accuracy")
    if accuracy:
        lines += ["", f"Fashion-MNIST test accuracy, gpubp train, {accuracy.get('epochs')} epochs (runs side by side):"]
        lines += ["", "| precision | test acc | minus fp32 |", "|---|---|---|"]
        for precision in PRECISIONS:
            if precision in accuracy:
                acc = accuracy[precision].get("test_acc")
                diff = accuracy.get("minus_fp32", {}).get(precision)
                lines.append(
                    f"| {precision} | {_number(acc, '.4f') if acc is not None else 'ERROR'} | {_number(diff, '+.4f')} |"
                )
    lines.append("")
    for target in results.get("targets", []):
        value = _number(target["value"], ".3f")
        lines.append(
            f"- {target['name']}: {value} (target {target['relation']} {target['limit']}: {target['verdict']})"
            f" -- {target['what']}"
        )
    return lines


# -- command line -------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="the Fashion-MNIST folder (default: the Debian package's)")
    parser.add_argument("--quick", action="store_true", help="the 4096-wide net only, few rounds, 2 epochs")
    parser.add_argument("--no-accuracy", action="store_true", help="timings only, no Fashion-MNIST training")
    parser.add_argument("--dry-run", action="store_true", help="the same code on the CPU, tiny sizes")
    parser.add_argument("--json", help="write the results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    gpu = not args.dry_run
    data = args.data
    if gpu and data is None:
        from gpubp.data.datasets import FASHION_MNIST_DIR

        data = FASHION_MNIST_DIR
    plan = make_plan(gpu, args.quick, not args.no_accuracy)
    results = run(plan, "cuda" if gpu else "cpu", data)
    print("\n".join(summary(results)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
