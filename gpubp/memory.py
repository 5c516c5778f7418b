"""Whether a model fits: the memory a training run or an evaluation needs, against
what the host and the GPU have available.

Checked before anything large is allocated, so a model too big for the machine
ends in one line saying how much it needs and how much there is, not in a
MemoryError traceback or minutes of swapping. The estimate counts float32
parameters, their gradients and the optimizer's buffers, the activations of a
batch, and the standardised copy of the data set; on a GPU also the host
memory that initialising the largest layer takes (weights are drawn on the
host, so a seed gives the same initial weights on every device).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

FLOAT_BYTES = 4  # float32 parameters, activations and data
LABEL_BYTES = 8  # int64 labels
# Arrays of a batch's width kept per layer: in training the output, dropout's
# output, the gradient and a temporary; in evaluation the output and a temporary.
TRAIN_ACTIVATION_COPIES = 4
EVAL_ACTIVATION_COPIES = 2


@dataclass(frozen=True)
class MemoryNeed:
    """Bytes a run needs on the host and (for a GPU run) on the device."""

    host: int
    device: int
    parameters: int


def estimate(
    sizes: Sequence[int],
    *,
    batch: int,
    eval_batch: int,
    data_rows: int,
    state_per_parameter: int = 0,
    training: bool = True,
    on_gpu: bool = False,
) -> MemoryNeed:
    """The memory of an MLP with layer widths ``sizes`` (input, hidden…, classes)
    trained on batches of ``batch`` rows (when ``training``) and evaluated on
    batches of ``eval_batch``, over ``data_rows`` samples. ``state_per_parameter``
    counts the optimizer's buffers per parameter (Adam 2, momentum 1, SGD 0)."""
    shapes = list(zip(sizes[:-1], sizes[1:]))
    parameters = sum(n_in * n_out + n_out for n_in, n_out in shapes)
    largest = max((n_in * n_out for n_in, n_out in shapes), default=0)
    copies = 2 + state_per_parameter if training else 1
    rows = EVAL_ACTIVATION_COPIES * eval_batch
    if training:
        rows = max(rows, TRAIN_ACTIVATION_COPIES * batch)
    model = FLOAT_BYTES * (copies * parameters + rows * sum(sizes))
    data = data_rows * (FLOAT_BYTES * sizes[0] + LABEL_BYTES)
    # A layer is built on the host: zeros, then a draw of the same size copied in.
    init = 2 * FLOAT_BYTES * largest
    if on_gpu:
        return MemoryNeed(host=data + init, device=model + data, parameters=parameters)
    return MemoryNeed(host=model + data + init // 2, device=0, parameters=parameters)


def host_available() -> int | None:
    """Bytes the host can still give without swapping (MemAvailable of
    /proc/meminfo); None where that is not known."""
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024  # the file's kB are KiB
    return None


def device_available(device: str) -> int | None:
    """Free bytes on CUDA device ``device`` ("cuda:N"): what the driver reports
    free plus what CuPy's pool holds unused; None when it cannot be asked."""
    try:
        import cupy

        index = int(device.partition(":")[2] or 0)
        with cupy.cuda.Device(index):
            free, _ = cupy.cuda.runtime.memGetInfo()
            pooled = cupy.get_default_memory_pool().free_bytes()
    except Exception:  # no CuPy, no driver, no such device: nothing to check against
        return None
    return int(free) + int(pooled)


def shortfall(need: MemoryNeed, device: str, host: int | None, free_on_device: int | None) -> str | None:
    """A sentence naming each memory that is too small for ``need`` (None when
    everything fits or nothing is known)."""
    problems = []
    if need.device and free_on_device is not None and need.device > free_on_device:
        problems.append(f"{format_bytes(need.device)} on {device}, which has {format_bytes(free_on_device)} free")
    if host is not None and need.host > host:
        what = "host memory" if not need.device else "host memory (the weights are initialised there)"
        problems.append(f"{format_bytes(need.host)} of {what}, with {format_bytes(host)} available")
    return " and ".join(problems) or None


def format_bytes(count: float) -> str:
    """Bytes in decimal units: 950 B, 1.2 kB, 360 GB, 1.3 TB."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            break
        count /= 1000
    return f"{count:.0f} {unit}" if unit == "B" or count >= 100 else f"{count:.1f} {unit}"


def format_count(count: float) -> str:
    """A parameter count in short form: 669,706 -> "670 k", 79.5e9 -> "79.5 G"."""
    for unit in ("", " k", " M", " G", " T"):
        if count < 1000 or unit == " T":
            break
        count /= 1000
    return f"{count:.0f}{unit}" if not unit or count >= 100 else f"{count:.1f}{unit}"
