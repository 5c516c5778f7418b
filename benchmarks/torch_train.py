"""gpubp's default training run (``gpubp train``) written in PyTorch: the baseline
the GPU benchmark runs beside gpubp.

    python benchmarks/torch_train.py --variant plain --device cuda --json plain.json
    python benchmarks/torch_train.py --variant graph --device cuda --epochs 20
    python benchmarks/torch_train.py --variant plain --device cpu --epochs 1

The recipe is gpubp's (``gpubp.training``): pixels standardised with the training
split's mean and std, a 784-512-256-10 MLP of Linear + Sigmoid + Dropout(0.2)
with Xavier-uniform weights and zero biases, Adam(1e-3) with weights and biases
in two parameter groups, the learning rate cosine-annealed per optimizer step,
batch 128 with the last partial batch included, 20 epochs, float32 with TF32 off.

Two variants:

- ``plain``: how a user writes it. The whole split sits on the device; each epoch
  shuffles with ``torch.randperm`` there and indexes a batch at a time;
  ``CosineAnnealingLR`` steps once per batch.
- ``graph``: how an expert writes it for a GPU. The step (forward, loss, backward,
  ``Adam(capturable=True).step()`` and the running sums) is captured once in a
  ``torch.cuda.CUDAGraph`` and replayed; each batch is gathered with
  ``index_select`` into the graph's static input buffers and the learning rate is
  a device tensor refilled before each replay. The first ``WARMUP_STEPS`` batches
  train eagerly on a side stream (the warm-up that capture needs; they are real
  steps, so the run follows the same recipe), and each epoch's last partial batch
  trains eagerly, since its shape differs from the graph's.

With the same seed both variants take the same steps: on an H100 (torch 2.11)
they drew the same permutations and dropout masks and both ended at 0.8956.

Both report the training time of each epoch between device synchronisations,
without the evaluation of the test split after each epoch, as gpubp's per-epoch
``seconds`` do.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402, N812 (PyTorch's own spelling)

from benchmarks.fashion_mnist import cpu_model  # noqa: E402
from gpubp.data.datasets import FASHION_MNIST_DIR, Dataset, load_dataset  # noqa: E402
from gpubp.data.normalize import Standardize  # noqa: E402

VARIANTS = ("plain", "graph")
HIDDEN = (512, 256)
DROPOUT = 0.2
LR = 1e-3
EPOCHS = 20
BATCH_SIZE = 128
EVAL_BATCH = 1000
# Eager steps before capture, on a side stream, as PyTorch's CUDA-graph docs do: they
# create Adam's state and let the libraries pick their kernels before anything is recorded.
WARMUP_STEPS = 3


def cosine_lr(base: float, step: int, total_steps: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based) of ``total_steps``:
    ``base · ½(1 + cos(π·step/total_steps))``, gpubp's ``learning_rate`` for the cosine schedule."""
    if total_steps <= 0:
        return base
    return base * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))


def configure_precision() -> None:
    """Full float32 matrix products on a GPU (no TF32), as gpubp computes them."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


def build_model(
    features: int, classes: int, hidden: tuple[int, ...] = HIDDEN, dropout: float = DROPOUT, device: str = "cpu"
) -> torch.nn.Sequential:
    """features → hidden… → classes: Linear + Sigmoid + Dropout per hidden layer, then
    Linear; Xavier-uniform weights and zero biases (gpubp's ``nn.Linear(init="xavier")``).
    The weights come from torch's generator: seed it first."""
    layers: list[torch.nn.Module] = []
    sizes = (features, *hidden, classes)
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = torch.nn.Linear(n_in, n_out, device=device, dtype=torch.float32)
        torch.nn.init.xavier_uniform_(linear.weight)
        torch.nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i < len(hidden):
            layers.append(torch.nn.Sigmoid())
            if dropout:
                layers.append(torch.nn.Dropout(dropout))
    return torch.nn.Sequential(*layers)


def build_optimizer(
    model: torch.nn.Module, lr: float | torch.Tensor = LR, weight_decay: float = 0.0, capturable: bool = False
) -> torch.optim.Adam:
    """Adam with two parameter groups as gpubp's ``build_optimizer``: the weight
    matrices (decayed by ``weight_decay``, L2 added to the gradient) and the biases
    (never decayed). A tensor ``lr`` is shared by both groups, so one ``fill_`` sets it."""
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay, "lr": lr},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0, "lr": lr},
    ]
    return torch.optim.Adam(groups, lr=lr, capturable=capturable)


def load_tensors(
    data: str | os.PathLike | Dataset | None, dataset: str, device: str
) -> tuple[Dataset, dict[str, torch.Tensor]]:
    """The data set (a loaded ``Dataset``, or read by name from the folder ``data``),
    standardised as gpubp does (mean and std of the training split) and moved to
    ``device`` once: ``x_train``, ``y_train``, ``x_test``, ``y_test``."""
    ds = data if isinstance(data, Dataset) else load_dataset(dataset, data)
    norm = Standardize.fit(ds.x_train)
    tensors = {
        "x_train": torch.from_numpy(norm(ds.x_train)),
        "y_train": torch.from_numpy(ds.y_train.astype("int64")),
        "x_test": torch.from_numpy(norm(ds.x_test)),
        "y_test": torch.from_numpy(ds.y_test.astype("int64")),
    }
    return ds, {k: v.to(device) for k, v in tensors.items()}


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = EVAL_BATCH) -> float:
    """Test accuracy in eval mode (dropout off), ``batch`` rows at a time, without gradients."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for i in range(0, len(x), batch):
        correct += (model(x[i : i + batch]).argmax(dim=1) == y[i : i + batch]).sum()
    model.train(was_training)
    return correct.item() / len(x)


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def device_name(device: str) -> str:
    """The GPU's name on CUDA, the CPU's model name otherwise."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return cpu_model()


class _Sums:
    """The epoch's running train loss and correct predictions, kept on the device so
    no step waits for the GPU; read once after the epoch's timing stops."""

    def __init__(self, device: str) -> None:
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)

    def reset(self) -> None:
        # In place: the CUDA graph holds these tensors' addresses.
        self.loss.zero_()
        self.correct.zero_()

    def add(self, logits: torch.Tensor, loss: torch.Tensor, labels: torch.Tensor) -> None:
        self.loss.add_(loss.detach() * len(labels))
        self.correct.add_((logits.detach().argmax(dim=1) == labels).sum())


def run(
    variant: str,
    device: str = "cuda",
    epochs: int = EPOCHS,
    batch_size: int = BATCH_SIZE,
    data: str | os.PathLike | Dataset | None = None,
    dataset: str = "fashion-mnist",
    seed: int = 0,
    hidden: tuple[int, ...] = HIDDEN,
    dropout: float = DROPOUT,
    weight_decay: float = 0.0,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Trains gpubp's default recipe in PyTorch and returns the results as a dict:
    ``variant, device, device_name, torch, epochs, batch_size, steps, train_seconds``
    (the sum of ``epoch_seconds``), ``warmup_seconds`` (graph: the warm-up steps and
    the capture, part of the first epoch's time; plain: 0), ``epoch_seconds``,
    ``test_acc`` (after the last epoch), ``test_acc_per_epoch``, ``train_loss_per_epoch``,
    ``train_acc_per_epoch`` and ``lr_last`` (the rate of the last step).

    ``data`` is a loaded ``Dataset`` or the folder to read ``dataset`` from (default:
    Fashion-MNIST's Debian folder). ``log`` gets one line per epoch (None: quiet).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if variant == "graph" and not device.startswith("cuda"):
        raise ValueError(f"the graph variant captures CUDA graphs and needs --device cuda, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"--device {device}: this PyTorch ({torch.__version__}) sees no CUDA GPU")
    if epochs <= 0 or batch_size <= 0:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    configure_precision()
    torch.manual_seed(seed)
    ds, t = load_tensors(data, dataset, device)
    model = build_model(ds.features, len(ds.classes), hidden, dropout, device)
    trainer = _PlainTrainer if variant == "plain" else _GraphTrainer
    loop = trainer(model, t["x_train"], t["y_train"], batch_size, epochs, weight_decay, device)

    results: dict[str, Any] = {
        "variant": variant,
        "device": device,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "dataset": ds.name,
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "epoch_seconds": [],
        "test_acc_per_epoch": [],
        "train_loss_per_epoch": [],
        "train_acc_per_epoch": [],
    }
    n = len(t["x_train"])
    for epoch in range(epochs):
        model.train()
        _synchronize(device)
        started = time.perf_counter()
        loop.epoch(epoch)
        _synchronize(device)
        seconds = time.perf_counter() - started
        acc = evaluate(model, t["x_test"], t["y_test"])
        results["epoch_seconds"].append(seconds)
        results["test_acc_per_epoch"].append(acc)
        results["train_loss_per_epoch"].append(loop.sums.loss.item() / n)
        results["train_acc_per_epoch"].append(loop.sums.correct.item() / n)
        if log:
            loss, train_acc = results["train_loss_per_epoch"][-1], results["train_acc_per_epoch"][-1]
            log(
                f"epoch {epoch + 1:>{len(str(epochs))}}/{epochs}  train loss {loss:.4f}  "
                f"train acc {train_acc:.4f}  test acc {acc:.4f}  {seconds:.2f}s"
            )
    results["steps"] = loop.steps_taken
    results["train_seconds"] = sum(results["epoch_seconds"])
    results["warmup_seconds"] = loop.warmup_seconds
    results["test_acc"] = results["test_acc_per_epoch"][-1]
    results["lr_last"] = loop.last_lr
    return results


class _PlainTrainer:
    """The eager loop a user writes: index a batch, step, ``CosineAnnealingLR.step()``."""

    def __init__(
        self,
        model: torch.nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        epochs: int,
        weight_decay: float,
        device: str,
    ) -> None:
        self.model, self.x, self.y, self.batch_size = model, x, y, batch_size
        self.batches = math.ceil(len(x) / batch_size)
        self.total_steps = epochs * self.batches
        self.optimizer = build_optimizer(model, LR, weight_decay)
        # Stepped once per batch, CosineAnnealingLR gives lr_t = base·½(1 + cos(πt/T)) for
        # step t (tests/benchmarks/test_torch_baselines.py checks it against gpubp's formula).
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=self.total_steps)
        self.sums = _Sums(device)
        self.warmup_seconds = 0.0
        self.lrs: list[float] = []  # the rate of every step taken, for the tests
        self.last_lr = LR

    @property
    def steps_taken(self) -> int:
        return len(self.lrs)

    def epoch(self, epoch: int) -> None:
        self.sums.reset()
        order = torch.randperm(len(self.x), device=self.x.device)
        for b in range(self.batches):
            index = order[b * self.batch_size : (b + 1) * self.batch_size]
            xb, yb = self.x[index], self.y[index]
            self.last_lr = self.optimizer.param_groups[0]["lr"]
            self.lrs.append(self.last_lr)
            logits = self.model(xb)
            loss = F.cross_entropy(logits, yb)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            self.sums.add(logits, loss, yb)


class _GraphTrainer:
    """The whole step in one CUDA graph, replayed for every full batch (see the module docstring)."""

    def __init__(
        self,
        model: torch.nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        epochs: int,
        weight_decay: float,
        device: str,
    ) -> None:
        self.model, self.x, self.y, self.batch_size = model, x, y, batch_size
        self.full, self.rest = divmod(len(x), batch_size)
        self.batches = self.full + (self.rest > 0)
        self.total_steps = epochs * self.batches
        # One device tensor in both groups: capturable Adam reads the rate from it at
        # replay time, so refilling it (outside the graph) anneals the captured step.
        self.lr = torch.tensor(LR, dtype=torch.float32, device=device)
        self.optimizer = build_optimizer(model, self.lr, weight_decay, capturable=True)
        self.sums = _Sums(device)
        self.static_x = torch.empty((batch_size, x.shape[1]), dtype=x.dtype, device=device)
        self.static_y = torch.empty((batch_size,), dtype=y.dtype, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.side_stream = torch.cuda.Stream(device)
        self.warmup_seconds = 0.0
        self.warmup_started = 0.0
        self.warmed = 0
        self.step_index = 0  # optimizer steps taken: the schedule's t
        self.last_lr = LR

    @property
    def steps_taken(self) -> int:
        return self.step_index

    def _set_lr(self) -> None:
        self.last_lr = cosine_lr(LR, self.step_index, self.total_steps)
        self.lr.fill_(self.last_lr)
        self.step_index += 1

    def _step(self, xb: torch.Tensor, yb: torch.Tensor) -> None:
        """Forward, loss, backward, update and the running sums: what the graph records.
        Gradients are written, not accumulated, because they are None when it is captured."""
        logits = self.model(xb)
        loss = F.cross_entropy(logits, yb)
        loss.backward()
        self.optimizer.step()
        self.sums.add(logits, loss, yb)

    def _gather(self, index: torch.Tensor) -> None:
        torch.index_select(self.x, 0, index, out=self.static_x)
        torch.index_select(self.y, 0, index, out=self.static_y)

    def _warmup_step(self, index: torch.Tensor) -> None:
        """A real training step on a side stream (PyTorch's recipe before capture)."""
        if self.warmed == 0:
            self.warmup_started = time.perf_counter()
        side = self.side_stream
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._gather(index)
            self._set_lr()
            self.optimizer.zero_grad(set_to_none=True)
            self._step(self.static_x, self.static_y)
        torch.cuda.current_stream().wait_stream(side)
        self.warmed += 1

    def _capture(self) -> None:
        """Records the step on the static buffers; capture runs nothing, so the batch is then replayed."""
        if self.warmed == 0:
            self.warmup_started = time.perf_counter()
        # None gradients: backward inside the capture allocates them from the graph's
        # pool, and every replay writes the same tensors.
        self.optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._step(self.static_x, self.static_y)
        torch.cuda.synchronize()
        self.warmup_seconds = time.perf_counter() - self.warmup_started

    def epoch(self, epoch: int) -> None:
        self.sums.reset()
        order = torch.randperm(len(self.x), device=self.x.device)
        for b in range(self.full):
            index = order[b * self.batch_size : (b + 1) * self.batch_size]
            if self.graph is None and self.warmed < WARMUP_STEPS:
                self._warmup_step(index)
                continue
            if self.graph is None:
                self._capture()
            self._gather(index)
            self._set_lr()
            self.graph.replay()
        if self.rest:
            # The partial batch has another shape than the graph's buffers: one eager step.
            # Its gradients go into the graph's tensors (zeroed, then accumulated into).
            index = order[self.full * self.batch_size :]
            self._set_lr()
            self.optimizer.zero_grad(set_to_none=self.graph is None)
            self._step(self.x[index], self.y[index])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=VARIANTS, default="plain")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--data", default=None, help=f"folder of MNIST-format files (default {FASHION_MNIST_DIR})")
    parser.add_argument("--dataset", choices=("fashion-mnist", "mnist"), default="fashion-mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="PyTorch's CPU threads (default: its own)")
    parser.add_argument("--json", default=None, help="write the results as JSON to this file")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    args = parser.parse_args(argv)
    if args.variant == "graph" and not args.device.startswith("cuda"):
        print("torch_train: --variant graph needs --device cuda (CUDA graphs run only on a GPU)", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        results = run(
            args.variant,
            args.device,
            args.epochs,
            args.batch_size,
            data=args.data,
            dataset=args.dataset,
            seed=args.seed,
            log=None if args.quiet else print,
        )
    except (ValueError, RuntimeError, OSError) as err:
        print(f"torch_train: {err}", file=sys.stderr)
        return 1
    print(
        f"torch {results['variant']} on {results['device_name']}: test acc {results['test_acc']:.4f} after "
        f"{results['epochs']} epochs, training {results['train_seconds']:.2f}s "
        f"(warm-up {results['warmup_seconds']:.2f}s), torch {results['torch']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
