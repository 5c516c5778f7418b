"""Reproduces the README's main run and reports its test accuracy and wall time.

    python benchmarks/fashion_mnist.py              # the default settings
    python benchmarks/fashion_mnist.py --epochs 5   # any `gpubp train` options

Runs ``python -m gpubp train`` in a fresh process into a temporary folder, so
the time includes starting Python and loading the data, as the README command
does. The quality bar (issue 4): test accuracy >= 0.89 in under 5 minutes on
a 2-core CPU. Exits 1 when the run fails or misses either bar.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACCURACY_BAR = 0.89
SECONDS_BAR = 300.0


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(extra: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        command = [sys.executable, "-m", "gpubp", "train", "--out", str(out), "--no-progress", *extra]
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        print("$", " ".join(command[1:]), flush=True)
        started = time.perf_counter()
        status = subprocess.run(command, env=env).returncode
        wall = time.perf_counter() - started
        if status != 0:
            print(f"benchmark: gpubp train failed with exit status {status}", file=sys.stderr)
            return 1
        history = json.loads((out / "metrics.json").read_text())["epochs"]
    accuracy = history[-1]["test_acc"]
    training = sum(row["seconds"] for row in history)
    print(
        f"\nFashion-MNIST: test accuracy {accuracy:.4f} after {len(history)} epochs; wall time {wall:.1f}s "
        f"(training {training:.1f}s) on {cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    ok = accuracy >= ACCURACY_BAR and wall < SECONDS_BAR
    print(f"quality bar (accuracy >= {ACCURACY_BAR}, under {SECONDS_BAR:.0f}s): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
