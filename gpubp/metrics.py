"""Per-epoch metrics files of a run: ``metrics.csv``, ``metrics.json`` and, when
matplotlib is installed (``pip install -e ".[plot]"`` in a checkout,
``pip install 'gpubp[plot]'`` for an installed package), ``curves.png``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from gpubp.checkpoint import atomic_write, atomic_write_text

# lr_first and lr_last: the learning rates of the epoch's first and last steps; precision:
# what the epoch trained in (a resumed run may change it; empty for epochs from before it was recorded).
COLUMNS = (
    "epoch",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "lr_first",
    "lr_last",
    "seconds",
    "samples_per_s",
    "precision",
)


def write_metrics(out: str | Path, history: list[dict[str, Any]], config: dict[str, Any]) -> list[Path]:
    """Writes the metrics files into ``out`` (each atomically) and returns their paths."""
    out = Path(out)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    written = [out / "metrics.csv", out / "metrics.json"]
    atomic_write_text(written[0], buffer.getvalue())
    atomic_write_text(written[1], json.dumps({"config": config, "epochs": history}, indent=2) + "\n")
    png = plot_curves(out / "curves.png", history)
    if png is not None:
        written.append(png)
    return written


def plot_curves(path: str | Path, history: list[dict[str, Any]]) -> Path | None:
    """A PNG of the loss (left) and accuracy (right) per epoch; None, writing
    nothing, when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(epochs, [row["train_loss"] for row in history], marker="o", label="train")
    loss_ax.plot(epochs, [row["test_loss"] for row in history], marker="o", label="test")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    acc_ax.plot(epochs, [row["train_acc"] for row in history], marker="o", label="train")
    acc_ax.plot(epochs, [row["test_acc"] for row in history], marker="o", label="test")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
    return path
