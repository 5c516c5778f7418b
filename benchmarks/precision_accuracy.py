"""The main job's test accuracy at each precision: ``gpubp train --precision P`` on
Fashion-MNIST (the CLI's defaults otherwise), through ``main_job.gpubp_run``.

The runs go side by side, one process each, on the same GPU: the main job uses a
small part of it, and accuracy, not speed, is measured here, so the section costs
about one run's wall time instead of four. Their training seconds are therefore
not comparable with anything and are kept only as a record.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.precision_steps import check_precision

Runner = Callable[[str, int, str], dict[str, Any]]  # (data, epochs, precision) -> gpubp_run's summary


def cli_runner(device: str = "cuda") -> Runner:
    """The real runner: ``gpubp train --device DEVICE --precision P`` in a fresh process."""
    from benchmarks.main_job import gpubp_run

    return lambda data, epochs, precision: gpubp_run(data, epochs, True, None, precision, device)


def run(
    data: str, epochs: int, precisions: tuple[str, ...], runner: Runner | None = None, log: Callable[..., None] = print
) -> dict[str, Any]:
    """Test accuracy per precision (``{"error": ...}`` for a run that failed), and
    each one's difference from fp32's."""
    for precision in precisions:
        check_precision(precision)
    runner = runner or cli_runner()
    results: dict[str, Any] = {"epochs": epochs, "concurrent": True}

    def one(precision: str) -> dict[str, Any]:
        try:
            return runner(data, epochs, precision)
        except Exception as err:  # recorded; the other precisions still count
            return {"error": f"{type(err).__name__}: {err}"}

    with ThreadPoolExecutor(max_workers=max(1, len(precisions))) as pool:
        for precision, entry in zip(precisions, pool.map(one, precisions)):
            results[precision] = entry
            if "test_acc" in entry:
                log(f"  accuracy {precision}: test acc {entry['test_acc']:.4f} ({epochs} epochs)")
            else:
                log(f"  accuracy {precision}: ERROR {entry.get('error', '')[:2000]}")
    results["minus_fp32"] = differences(results, precisions)
    return results


def differences(results: dict[str, Any], precisions: tuple[str, ...]) -> dict[str, float]:
    """Each precision's test accuracy minus fp32's (where both ran)."""
    base = results.get("fp32", {}).get("test_acc")
    if base is None:
        return {}
    return {
        p: round(results[p]["test_acc"] - base, 6)
        for p in precisions
        if p != "fp32" and "test_acc" in results.get(p, {})
    }
