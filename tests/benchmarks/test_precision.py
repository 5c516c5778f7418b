"""The precision section of the GPU check (benchmarks/precision*.py), on the CPU:
its FLOP counts, plan, derived ratios, targets, report and failure handling, and
the steps it builds where the APIs they use are present."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gpubp as gp
from benchmarks import precision, precision_accuracy, precision_gemms, precision_steps
from benchmarks.mlp import CONFIGS, Config
from benchmarks.step_nets import StepNet

TINY = StepNet(Config((6, 5, 7, 3), 4), "sgd-momentum")
WIDE_KEY = precision.WIDE.key


def _needs(*names):
    missing = [n for n in names if not hasattr(gp, n)]
    return pytest.mark.skipif(bool(missing), reason=f"gpubp has no {', '.join(missing)} yet")


# -- FLOP counts and shapes ------------------------------------------------------------------
@pytest.mark.parametrize("config", [*CONFIGS.values(), precision.WIDE.config, precision.MEDIUM.config])
def test_step_gemm_shapes_count_the_flops_of_config(config):
    shapes = precision_gemms.step_gemm_shapes(config.sizes, config.batch)
    assert precision_gemms.flops(shapes) == config.gemm_flops()


def test_step_gemm_shapes_are_forward_weight_then_input_gradients():
    # 784-1024-10 at batch 2: x·Wᵀ per layer, δᵀ·x per layer, δ·W for the second layer only.
    assert precision_gemms.step_gemm_shapes((784, 1024, 10), 2) == [
        (2, 784, 1024),
        (2, 1024, 10),
        (1024, 2, 784),
        (10, 2, 1024),
        (2, 10, 1024),
    ]


def test_the_4096_net_step_is_1_1_tflop():
    # The number the earlier H100 notes used (1100 G) for the 4096-wide net at batch 4096.
    assert precision.WIDE.config.gemm_flops() == pytest.approx(1.1e12, rel=0.01)
    assert precision_gemms.tflop_per_s(1e12, 2.0) == 500.0


@pytest.mark.parametrize("name", ["fp32", pytest.param("bf16", marks=_needs("bfloat16"))])
def test_gpubp_gemms_run_the_steps_products_in_the_steps_dtype(monkeypatch, name):
    backend = gp.backends.get_backend("cpu")
    seen = []
    original = backend.matmul

    def counting(a, b, out=None, out_dtype=None):
        result = original(a, b, out, out_dtype)
        seen.append((a.shape[0], a.shape[1], b.shape[1], a.dtype, b.dtype, result.dtype))
        return result

    monkeypatch.setattr(backend, "matmul", counting)
    products = precision_gemms.gpubp_gemms(TINY.config.sizes, TINY.config.batch, name, "cpu")
    products()
    assert [s[:3] for s in seen] == precision_gemms.step_gemm_shapes(TINY.config.sizes, TINY.config.batch)
    low = np.dtype(np.float32) if name == "fp32" else gp.bfloat16
    assert {s[3] for s in seen} == {s[4] for s in seen} == {low}
    # As gpubp's autocast Linear: ∂W of the float32 master weight in float32.
    assert [s[5] for s in seen] == [low] * 3 + [np.float32] * 3 + [low] * 2


def test_torch_gemms_use_the_precisions_dtype(monkeypatch):
    torch = pytest.importorskip("torch")
    seen = []
    original = torch.matmul
    monkeypatch.setattr(torch, "matmul", lambda a, b: seen.append((a.dtype, b.dtype)) or original(a, b))
    precision_gemms.torch_gemms(TINY.config.sizes, TINY.config.batch, "bf16", "cpu")()
    assert len(seen) == 8 and set(seen) == {(torch.bfloat16, torch.bfloat16)}


# -- the plan ---------------------------------------------------------------------------------
def test_plans_full_quick_and_cpu():
    full = precision.make_plan(gpu=True)
    assert [net.key for net, _ in full.nets] == [WIDE_KEY, "784-1024-1024-10@4096"]
    assert full.precisions == full.accuracy == ("fp32", "tf32", "bf16", "fp16") and full.epochs == 20
    assert full.square == 8192 and full.warmup >= 3  # gp.jit captures on its third call
    quick = precision.make_plan(gpu=True, quick=True)
    assert [net.key for net, _ in quick.nets] == [WIDE_KEY] and quick.rounds < full.rounds
    assert quick.accuracy == ("fp32", "bf16") and quick.epochs == 2
    assert precision.make_plan(gpu=True, accuracy=False).accuracy == ()
    cpu = precision.make_plan(gpu=False)
    assert cpu.accuracy == () and all(max(net.config.sizes) <= 16 for net, _ in cpu.nets)


def test_every_net_is_sigmoid_sgd_as_the_earlier_precision_numbers():
    assert {net.optimizer for net, _ in precision.make_plan(gpu=True).nets} == {"sgd-momentum"}
    assert all(net.config.batch == 4096 for net, _ in precision.make_plan(gpu=True).nets)


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="unknown precision 'int8'"):
        precision_steps.check_precision("int8")
    with pytest.raises(ValueError, match="unknown precision"):
        precision_accuracy.run("data", 1, ("fp32", "bf8"), runner=lambda *a: {})


# -- derived numbers and targets --------------------------------------------------------------
def _timing(ms):
    return {"median_ms": ms, "min_ms": ms, "max_ms": ms, "rounds": 3}


def test_derive_divides_by_the_faster_torch_step_and_counts_gemm_flops():
    entry = {
        "gpubp": _timing(2.0),
        "torch_eager": _timing(3.0),
        "torch_graph": _timing(2.5),
        "gemm_gpubp": _timing(1.6),
        "gemm_torch": {"error": "Traceback"},
    }
    d = precision.derive(entry, int(1.6e12), rate=1000.0)
    assert d["torch_reference"] == "torch_graph" and d["torch_ms"] == 2.5
    assert d["vs_torch"] == pytest.approx(0.8)
    assert d["step_tflop_per_s"] == pytest.approx(800.0) and d["step_fraction_of_bf16_rate"] == pytest.approx(0.8)
    assert d["gemm_gpubp_tflop_per_s"] == pytest.approx(1000.0)
    assert d["torch_step_tflop_per_s"] == pytest.approx(640.0)
    assert d["non_gemm_ms"] == pytest.approx(0.4)
    assert "gemm_torch_tflop_per_s" not in d


def test_derive_without_torch_or_rate_leaves_those_out():
    d = precision.derive({"gpubp": _timing(2.0), "torch_graph": {"error": "x"}}, int(1e12), rate=None)
    assert d == {"step_tflop_per_s": pytest.approx(500.0)}


def _results(bf16=2.0, torch_bf16=2.6, tf32=4.6, torch_tf32=4.7, fp16=2.1, acc=(0.8968, 0.8950), rate=800.0):
    rows = {}
    flops = precision.WIDE.config.gemm_flops()
    for name, ours, theirs in (("tf32", tf32, torch_tf32), ("bf16", bf16, torch_bf16), ("fp16", fp16, torch_bf16)):
        entry = {"gpubp": _timing(ours), "torch_eager": _timing(theirs * 1.2), "torch_graph": _timing(theirs)}
        entry["derived"] = precision.derive(entry, flops, rate)
        rows[name] = entry
    accuracy = {"epochs": 20, "fp32": {"test_acc": acc[0]}, "bf16": {"test_acc": acc[1]}}
    accuracy["minus_fp32"] = precision_accuracy.differences(accuracy, ("fp32", "bf16"))
    return {"rows": {WIDE_KEY: rows}, "accuracy": accuracy, "bf16_gemm_rate": {"n": 8192, "tflop_per_s": rate}}


def _verdicts(results):
    return {t["name"]: t["verdict"] for t in precision.check_targets(results)}


def test_targets_pass():
    # bf16: 2.0 / 2.6 = 0.77; 1.1 TFLOP in 2 ms = 550 TFLOP/s = 69 % of 800.
    assert set(_verdicts(_results()).values()) == {"PASS"}


def test_targets_fail():
    results = _results(bf16=2.5, tf32=5.0, fp16=2.8, acc=(0.8968, 0.8900), rate=1000.0)
    assert _verdicts(results) == {
        "bf16_vs_torch_bf16": "FAIL",  # 0.96
        "bf16_gemm_fraction": "FAIL",  # 440 of 1000
        "tf32_vs_torch_tf32": "FAIL",  # 1.06
        "fp16_vs_bf16": "FAIL",  # 1.12
        "accuracy_bf16_vs_fp32": "FAIL",  # 0.0068
    }


def test_accuracy_target_is_two_sided_and_targets_only_read_the_4096_net():
    values = precision.target_values(_results(acc=(0.89, 0.896)))
    assert values["accuracy_bf16_vs_fp32"] == pytest.approx(0.006)
    results = _results()
    results["rows"] = {"784-1024-1024-10@4096": results["rows"][WIDE_KEY]}
    del results["accuracy"]
    assert set(_verdicts(results).values()) == {"NOT MEASURED"}


# -- the report -------------------------------------------------------------------------------
def test_summary_has_a_row_per_net_and_precision_errors_accuracy_and_verdicts():
    results = _results()
    results["rows"][WIDE_KEY]["fp32"] = {"gpubp": {"error": "Traceback"}, "torch_eager": _timing(22.7)}
    results["bf16_gemm_rate"].update(gpubp={"tflop_per_s": 760.0}, torch={"tflop_per_s": 800.0})
    results["targets"] = precision.check_targets(results)
    text = "\n".join(precision.summary(results))
    assert "measured bf16 GEMM rate: 800 TFLOP/s (8192^3: gpubp 760, torch 800)" in text
    row = next(line for line in text.splitlines() if line.startswith(f"| {WIDE_KEY} | bf16 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:6] == ["2.000", "3.120", "2.600", "0.77"]  # gpubp, torch eager, torch graph, ratio
    assert cells[6:8] == ["550", "69%"]  # step TFLOP/s, % of the rate
    assert f"| {WIDE_KEY} | fp32 | ERROR | 22.700 | - |" in text
    assert "| bf16 | 0.8950 | -0.0018 |" in text
    assert "- bf16_vs_torch_bf16: 0.769 (target <= 0.8: PASS)" in text
    assert "- accuracy_bf16_vs_fp32: 0.002 (target <= 0.005: PASS)" in text
    assert precision.summary({"error": "Traceback"}) == ["precision: ERROR (see gpu_check.json)"]


# -- running ----------------------------------------------------------------------------------
def test_a_contender_that_fails_costs_its_cell_only():
    plan = precision.Plan(((TINY, 2),), ("fp32",), 2, 2, 8, (), 0)
    calls = []

    def broken():
        raise AttributeError("module 'gpubp' has no attribute 'autocast'")

    def fine():
        return precision_steps.Step(lambda: calls.append(1), lambda: 1.5), None

    entry = precision.time_group({"gpubp": broken, "torch_eager": fine}, plan, 3, gpu=False)
    assert "no attribute 'autocast'" in entry["gpubp"]["error"]
    assert entry["torch_eager"]["median_ms"] >= 0 and entry["torch_eager"]["final_loss"] == 1.5
    assert len(calls) == 2 + 1 + 2 * 3  # warm-up, the interleaved warm-up step, rounds × block


def test_dry_run_of_the_section_alone(tmp_path, capsys):
    out = tmp_path / "precision.json"
    assert precision.main(["--dry-run", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["device"] == "cpu" and "accuracy" not in results
    row = results["rows"][precision.DRY.key]
    assert set(row) == set(precision_steps.PRECISIONS)
    for name in ("gpubp", "torch_eager", "gemm_gpubp"):
        assert row["fp32"][name]["median_ms"] > 0
    assert "torch_graph" not in row["fp32"]  # a CUDA graph needs a GPU
    # Same weights, batch and number of steps: the same loss in gpubp and PyTorch.
    assert row["fp32"]["gpubp"]["final_loss"] == pytest.approx(row["fp32"]["torch_eager"]["final_loss"], rel=1e-5)
    assert "| net@batch | precision |" in capsys.readouterr().out


def test_parse_args():
    args = precision.parse_args(["--quick", "--no-accuracy", "--data", "/d"])
    assert args.quick and args.no_accuracy and args.data == "/d" and not args.dry_run


# -- the precision switches and steps -----------------------------------------------------------
def test_tf32_switches_set_both_libraries_and_restore_them():
    torch = pytest.importorskip("torch")
    torch.set_float32_matmul_precision("highest")
    gp.cuda.set_tf32(False)
    with precision_steps.tf32_switches("tf32"):
        assert gp.cuda.tf32_enabled() and torch.backends.cuda.matmul.allow_tf32
    assert not gp.cuda.tf32_enabled() and not torch.backends.cuda.matmul.allow_tf32
    gp.cuda.set_tf32(True)
    try:
        with precision_steps.tf32_switches("bf16"):
            assert not gp.cuda.tf32_enabled()
        assert gp.cuda.tf32_enabled()
    finally:
        gp.cuda.set_tf32(False)


@pytest.mark.parametrize("name", precision_steps.PRECISIONS)
def test_torch_steps_train_at_every_precision(name):
    pytest.importorskip("torch")
    step = precision_steps.build_torch_step(TINY, name, "cpu")
    before = step.loss()
    for _ in range(20):
        step.run()
    assert step.loss() < before


def test_torch_graph_needs_cuda():
    pytest.importorskip("torch")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        precision_steps.build_torch_step(TINY, "bf16", "cpu", graph=True)


@pytest.mark.parametrize(
    "name",
    [
        "fp32",
        "tf32",
        pytest.param("bf16", marks=_needs("autocast", "bfloat16")),
        pytest.param("fp16", marks=_needs("autocast", "amp")),
    ],
)
def test_gpubp_steps_train_at_every_precision(name):
    step = precision_steps.build_gpubp_step(TINY, name, "cpu")
    before = step.loss()
    with precision_steps.tf32_switches(name):
        for _ in range(20):
            step.run()
    assert step.loss() < before


def test_precision_steps_refuse_adam():
    adam = StepNet(TINY.config, "adam")
    with pytest.raises(ValueError, match="SGD with momentum"):
        precision_steps.build_gpubp_step(adam, "fp32", "cpu")


# -- accuracy -----------------------------------------------------------------------------------
def test_accuracy_runs_every_precision_and_records_failures():
    def runner(data, epochs, name):
        if name == "fp16":
            raise RuntimeError("gpubp train failed: unknown --precision")
        return {"test_acc": {"fp32": 0.8968, "tf32": 0.8970, "bf16": 0.8951}[name], "train_seconds": 1.0}

    lines = []
    results = precision_accuracy.run("/data", 20, precision_steps.PRECISIONS, runner, log=lines.append)
    assert results["epochs"] == 20 and results["concurrent"]
    assert results["fp32"]["test_acc"] == 0.8968 and "unknown --precision" in results["fp16"]["error"]
    assert results["minus_fp32"] == {"tf32": pytest.approx(0.0002), "bf16": pytest.approx(-0.0017)}
    assert any("accuracy fp16: ERROR" in line for line in lines)


def test_accuracy_through_the_cli_on_the_cpu(mnist_like_dir):
    from gpubp import cli

    if "--precision" not in cli.build_parser().format_help() + _train_help(cli):
        pytest.skip("gpubp train has no --precision yet")
    results = precision_accuracy.run(
        str(mnist_like_dir), 1, ("fp32",), precision_accuracy.cli_runner("cpu"), log=lambda *a: None
    )
    assert 0 <= results["fp32"]["test_acc"] <= 1, results["fp32"]


def _train_help(cli) -> str:
    parser = cli.build_parser()
    for action in parser._actions:  # argparse keeps subcommands' parsers here
        if getattr(action, "choices", None) and "train" in action.choices:
            return action.choices["train"].format_help()
    return ""
