"""The GPU check script's own logic, run on the CPU (``--dry-run``)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_writes_every_section(gpu_check, tmp_path):
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    assert results["environment"]["dry_run"] is True and results["environment"]["commit"]
    assert "tests" not in results  # the GPU suite only runs on a GPU
    for name in ("copy", "sigmoid_backward", "bias_sigmoid_forward"):
        assert results["bandwidth"][name]["gb_per_s"] > 0
    entry = results["steps"]["8-16-4@4"]
    assert entry["gpubp"]["median_ms"] > 0 and entry["gemm_only"]["median_ms"] > 0
    assert 0 <= entry["non_gemm_fraction"] <= 1
    log = (tmp_path / "gpu_check.log").read_text()
    assert "== gpu_check summary ==" in log and "8-16-4@4" in log


def test_gemm_flops_count_forward_weight_and_input_gradients(gpu_check):
    # 784-1024-10 at batch 2: forward and dW for both layers, dx only for the second.
    flops = gpu_check._gemm_flops([784, 1024, 10], 2)
    assert flops == 2 * 2 * (2 * (784 * 1024 + 1024 * 10) + 1024 * 10)


def test_derive_and_summary_report_the_targets(gpu_check):
    entry = {
        "widths": [4, 4],
        "batch": 2,
        "gpubp": {"median_ms": 2.0, "samples_per_s": 1000.0},
        "torch": {"median_ms": 4.0},
        "gemm_only": {"median_ms": 1.5},
    }
    gpu_check._derive(entry)
    assert entry["time_vs_torch"] == 0.5 and entry["non_gemm_fraction"] == 0.25
    results = {
        "environment": {"device": {"name": "Fake GPU"}},
        "tests": {"summary": "3 passed", "returncode": 0},
        "bandwidth": {
            "copy": {"gb_per_s": 3000.0},
            "sigmoid_backward": {"gb_per_s": 2700.0, "fraction_of_copy": 0.9},
            "bias_sigmoid_forward": {"gb_per_s": 2000.0, "fraction_of_copy": 2 / 3},
        },
        "steps": {"m@2": entry, "broken@2": {"error": "Traceback"}},
    }
    text = "\n".join(gpu_check.summary(results))
    assert "Fake GPU" in text and "3 passed" in text
    assert "90% of copy (target >= 85%: ok)" in text and "67% of copy (target >= 85%: MISS)" in text
    assert "0.50" in text and "25.0%" in text


def test_a_failing_section_is_recorded_and_the_rest_still_run(gpu_check, tmp_path, monkeypatch):
    def broken(gpu):
        raise RuntimeError("bandwidth exploded")

    monkeypatch.setattr(gpu_check, "bandwidth", broken)
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 1
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    assert "bandwidth exploded" in results["bandwidth"]["error"]
    assert results["steps"]["8-16-4@4"]["gpubp"]["median_ms"] > 0


def test_dry_run_has_the_precision_section_and_skip_leaves_it_out(gpu_check, tmp_path):
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(results["precision"]["rows"]["8-16-4@4"]) == {"fp32", "tf32", "bf16", "fp16"}
    assert "measured bf16 GEMM rate" in (tmp_path / "gpu_check.md").read_text()
    skipped = tmp_path / "skipped"
    assert gpu_check.main(["--dry-run", "--out", str(skipped), "--skip", "precision", "--skip", "jit_steps"]) == 0
    results = json.loads((skipped / "gpu_check.json").read_text())
    assert "precision" not in results and "jit_steps" not in results and "steps" in results


def test_quick_and_skip_precision_accuracy_reach_the_precision_plan(gpu_check, tmp_path, monkeypatch):
    from benchmarks import precision

    calls = []
    monkeypatch.setattr(gpu_check, "precision", lambda *args: calls.append(args) or {})
    skips = [arg for name in ("steps", "jit_steps", "bandwidth") for arg in ("--skip", name)]
    argv = ["--dry-run", "--quick", "--out", str(tmp_path), "--skip", "precision_accuracy", *skips]
    assert gpu_check.main(argv) == 0
    assert calls == [(False, True, None, False)]  # gpu, quick, data, accuracy
    monkeypatch.undo()
    plans = []
    monkeypatch.setattr(precision, "run", lambda plan, device, data, log: plans.append((plan, device, data)) or {})
    assert gpu_check.precision(True, True, "/data", False) == {}
    assert gpu_check.precision(True, False, "/data", True) == {}
    assert plans == [
        (precision.make_plan(True, quick=True, accuracy=False), "cuda", "/data"),
        (precision.make_plan(True), "cuda", "/data"),
    ]
