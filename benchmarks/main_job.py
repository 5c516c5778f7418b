"""The main job on a GPU: the CLI's default Fashion-MNIST run against PyTorch.

    python benchmarks/main_job.py --data DIR            # 20 epochs, every contender
    python benchmarks/main_job.py --data DIR --epochs 2 # a quick look

Each contender runs in a fresh process, one after the other, and reports the
seconds of its training loops (evaluation excluded, as ``gpubp train``'s
per-epoch seconds) and its test accuracy:

- ``gpubp_cold``: ``gpubp train`` with an empty CuPy kernel cache, 2 epochs:
  its first epoch against a warm first epoch is the cold-start cost;
- ``gpubp_jit``: ``gpubp train --device cuda`` (each step one CUDA graph);
- ``gpubp_eager``: the same with ``--no-jit``; same seed, so the same metrics;
- ``torch_plain`` and ``torch_graph``: ``benchmarks/torch_train.py``, the recipe
  as a plain PyTorch loop and as an expert's whole-step CUDA graph.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Targets of issue 10 (ratios of training seconds in one run).
TARGETS = {"jit_vs_torch_graph": 0.5, "torch_plain_vs_jit": 5.0, "cold_first_epoch_extra_s": 2.0}


def _environment(cache: str | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    if cache is not None:
        env["CUPY_CACHE_DIR"] = cache
    return env


def gpubp_run(
    data: str,
    epochs: int,
    jit: bool = True,
    cache: str | None = None,
    precision: str | None = None,
    device: str = "cuda",
) -> dict[str, Any]:
    """``gpubp train`` on the GPU (or ``device``) in a fresh process; its metrics.json,
    summarised. ``precision`` is passed as ``--precision`` (None: the CLI's default)."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "gpubp", "train", "--device", device, "--data", data]
        command += ["--epochs", str(epochs), "--out", f"{tmp}/run", "--no-progress"]
        if not jit:
            command.append("--no-jit")
        if precision is not None:
            command += ["--precision", precision]
        started = time.perf_counter()
        result = subprocess.run(command, env=_environment(cache), capture_output=True, text=True, timeout=900)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        history = json.loads(Path(f"{tmp}/run/metrics.json").read_text())["epochs"]
    return {
        "train_seconds": round(sum(row["seconds"] for row in history), 3),
        "epoch_seconds": [row["seconds"] for row in history],
        "test_acc": history[-1]["test_acc"],
        "test_acc_per_epoch": [row["test_acc"] for row in history],
        "train_loss_per_epoch": [row["train_loss"] for row in history],
        "wall_seconds": round(wall, 2),
    }


def torch_run(variant: str, data: str, epochs: int) -> dict[str, Any]:
    """``benchmarks/torch_train.py`` on the GPU in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, str(ROOT / "benchmarks" / "torch_train.py"), "--variant", variant]
        command += ["--device", "cuda", "--data", data, "--epochs", str(epochs), "--json", f"{tmp}/out.json", "--quiet"]
        result = subprocess.run(command, env=_environment(None), capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return json.loads(Path(f"{tmp}/out.json").read_text())


def compare(data: str, epochs: int, log: Any = print) -> dict[str, Any]:
    """Every contender, then the ratios the targets are stated in."""
    results: dict[str, Any] = {"epochs": epochs, "targets": TARGETS}
    runs = {
        # float32, as the PyTorch contenders compute (the CLI's GPU default may be another precision).
        "gpubp_cold": lambda: gpubp_run(
            data, min(epochs, 2), True, tempfile.mkdtemp(prefix="gpubp-cold-cache-"), precision="fp32"
        ),
        "gpubp_jit": lambda: gpubp_run(data, epochs, True, precision="fp32"),
        "gpubp_eager": lambda: gpubp_run(data, epochs, False, precision="fp32"),
        "torch_plain": lambda: torch_run("plain", data, epochs),
        "torch_graph": lambda: torch_run("graph", data, epochs),
        # The other precisions, one after another (timed): what the GPU default is chosen from.
        **{f"gpubp_{p}": (lambda p=p: gpubp_run(data, epochs, True, precision=p)) for p in ("tf32", "bf16", "fp16")},
    }
    for name, run in runs.items():
        try:
            results[name] = run()
            entry = results[name]
            log(f"  {name}: {entry['train_seconds']:.2f} s of training, test acc {entry['test_acc']:.4f}")
        except Exception as err:  # recorded; the other contenders still run
            results[name] = {"error": f"{type(err).__name__}: {err}"}
            log(f"  {name}: ERROR {results[name]['error'][:2000]}")
    results["derived"] = derive(results)
    return results


def derive(results: dict[str, Any]) -> dict[str, Any]:
    """The ratios of training seconds, the cold start's extra seconds, and how far
    the jit run's metrics are from the eager run's."""

    def seconds(name: str) -> float | None:
        return results.get(name, {}).get("train_seconds")

    out: dict[str, Any] = {}
    jit, graph, plain = seconds("gpubp_jit"), seconds("torch_graph"), seconds("torch_plain")
    if jit and graph:
        out["jit_vs_torch_graph"] = round(jit / graph, 3)
    if jit and plain:
        out["torch_plain_vs_jit"] = round(plain / jit, 2)
    eager = seconds("gpubp_eager")
    if jit and eager:
        out["eager_vs_jit"] = round(eager / jit, 2)
    cold, warm = results.get("gpubp_cold", {}), results.get("gpubp_jit", {})
    if "epoch_seconds" in cold and "epoch_seconds" in warm:
        out["cold_first_epoch_extra_s"] = round(cold["epoch_seconds"][0] - warm["epoch_seconds"][0], 2)
    a, b = results.get("gpubp_jit", {}), results.get("gpubp_eager", {})
    if "train_loss_per_epoch" in a and "train_loss_per_epoch" in b:
        out["jit_vs_eager_max_train_loss_diff"] = max(
            abs(x - y) for x, y in zip(a["train_loss_per_epoch"], b["train_loss_per_epoch"])
        )
        out["jit_vs_eager_max_test_acc_diff"] = max(
            abs(x - y) for x, y in zip(a["test_acc_per_epoch"], b["test_acc_per_epoch"])
        )
    return out


def summary(results: dict[str, Any]) -> list[str]:
    """Markdown lines: one row per contender, then the targets."""
    lines = [
        f"Fashion-MNIST, the CLI's defaults, {results.get('epochs')} epochs (training seconds, test accuracy):",
        "",
    ]
    lines += ["| contender | training s | first epoch s | test acc |", "|---|---|---|---|"]
    for name in ("gpubp_jit", "gpubp_eager", "gpubp_cold", "torch_graph", "torch_plain"):
        entry = results.get(name, {})
        if "train_seconds" in entry:
            first = entry.get("epoch_seconds", [None])[0]
            first_text = f"{first:.2f}" if first is not None else "-"
            lines.append(f"| {name} | {entry['train_seconds']:.2f} | {first_text} | {entry['test_acc']:.4f} |")
        else:
            lines.append(f"| {name} | ERROR | | |")
    derived = results.get("derived", {})
    for key, target in TARGETS.items():
        if key in derived:
            ok = derived[key] >= target if key == "torch_plain_vs_jit" else derived[key] <= target
            relation = ">=" if key == "torch_plain_vs_jit" else "<="
            lines.append(f"- {key}: {derived[key]} (target {relation} {target}: {'ok' if ok else 'MISS'})")
    for key in ("eager_vs_jit", "jit_vs_eager_max_train_loss_diff", "jit_vs_eager_max_test_acc_diff"):
        if key in derived:
            lines.append(f"- {key}: {derived[key]}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist", help="Fashion-MNIST folder")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    results = compare(args.data, args.epochs)
    print("\n".join(summary(results)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
