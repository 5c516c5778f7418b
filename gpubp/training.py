"""Training and evaluating an MLP classifier: the loop behind ``gpubp train`` and ``gpubp eval``.

A ``Run`` owns everything a checkpoint holds: the config, the model, the
optimizer, the position in training (epoch and batch), the RNG states, the
input normalisation and the metrics so far. Because the shuffling order is a
function of (seed, epoch) and every generator's state is saved, a run stopped
at any batch and resumed ends with exactly the weights of a run that never
stopped.

The learning-rate schedule runs over ``config.epochs``: a run resumed with a
different ``--epochs`` anneals over the new total from where it is, so its
rate jumps (``Run.schedule_change`` says by how much), and each epoch's
metrics record the first and last rate it used.

Under ``mpirun -n N`` (a process group initialised, ``gpubp.distributed``) the
same run is trained by N processes: ``batch_size`` stays the global batch, each
rank takes ``batch_size / N`` samples of it (``BatchLoader``'s shards), the
model is wrapped in ``DistributedDataParallel``, the ranks agree after every
batch whether to stop, and rank 0 alone evaluates and writes the checkpoint and
the metrics, which sum every rank's totals.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

import gpubp as gp
from gpubp import memory, nn
from gpubp.backends import get_backend
from gpubp.checkpoint import Checkpoint, CheckpointError, save_checkpoint
from gpubp.data.datasets import DATASETS, Dataset, load_dataset
from gpubp.data.loader import BatchLoader
from gpubp.data.normalize import Standardize
from gpubp.distributed import group as dist
from gpubp.metrics import write_metrics
from gpubp.optim import SGD, Adam, Optimizer
from gpubp.optim.lr_scheduler import cosine_annealing_lr
from gpubp.progress import Bar, plural

ACTIVATIONS: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}
OPTIMIZERS = ("sgd", "momentum", "adam")
SCHEDULES = ("cosine", "constant")
# Learning rates that work for each optimizer with the default model.
DEFAULT_LR = {"sgd": 0.2, "momentum": 0.05, "adam": 1e-3}
# Buffers each optimizer keeps per parameter (for the memory estimate).
OPTIMIZER_STATE = {"sgd": 0, "momentum": 1, "adam": 2}
CHECKPOINT_FILE = "checkpoint.npz"
EVAL_BATCH = 1000
GRAPH_BATCH = 4  # samples in the step `gpubp graph` draws: enough to show the batch axis, few to print
SHOW_LOSS_SECONDS = 0.25  # how often a progress bar's loss is read back from the device
# How the forward pass and the loss compute (--precision). The parameters, their
# gradients and the optimizer's state are float32 in every one, so a checkpoint
# holds the same float32 weights whatever the run trained in, and resumes in any.
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
# What --precision auto (the default) means on a GPU. Measured on an H100 (2026-11-26,
# benchmarks/results/2026-11-26-h100-precision): the default 20-epoch Fashion-MNIST run took
# 1.16 s in fp32 (test accuracy 0.8968), 1.09 s in tf32 (0.8965), 1.07 s in bf16 (0.8965)
# and 1.17 s in fp16 (0.8968). tf32 is as accurate as fp32 and faster, and keeps every
# value a float32; bf16 saves only 2% more on this launch-bound net, so it stays a choice
# (--precision bf16: 1.8x tf32's speed on 4096-wide layers). On the CPU auto is always fp32.
DEFAULT_GPU_PRECISION = "tf32"


class ConfigError(ValueError):
    """An invalid training option (the message names the option and the accepted values)."""


class TrainingInterrupted(Exception):  # noqa: N818 (a requested stop, not an error)
    """Training stopped on request after a checkpoint was saved."""

    def __init__(self, checkpoint: Path, epoch: int, batch: int) -> None:
        super().__init__(f"interrupted in epoch {epoch + 1} after batch {batch}; checkpoint saved to {checkpoint}")
        self.checkpoint = checkpoint
        self.epoch = epoch
        self.batch = batch


class NonFiniteLoss(ArithmeticError):  # noqa: N818 (named for what happened, like ZeroDivisionError)
    """Training stopped at the first batch whose loss was NaN or infinite, saving
    nothing: the last checkpoint (if any) is the last good state."""

    def __init__(self, epoch: int, batch: int, batches: int, checkpoint: Path | None, saved_at: str | None) -> None:
        kept = f"{checkpoint} ({saved_at}) is kept" if checkpoint is not None else "no checkpoint was saved"
        super().__init__(
            f"the training loss became NaN or infinite in epoch {epoch + 1} at batch {batch} of {batches}, "
            f"so training stopped (check the data for NaN or inf, or lower --lr); {kept}"
        )
        self.epoch = epoch
        self.batch = batch
        self.checkpoint = checkpoint


@dataclass
class TrainConfig:
    """The options of a training run. ``lr=None`` means the optimizer's default
    (``DEFAULT_LR``); ``device="auto"`` means a GPU when one can be used, else the CPU.

    ``weight_decay`` is L2 regularisation of the weights only: the loss gains
    ``weight_decay / 2 · Σ‖W‖²`` (its gradient ``weight_decay · W``), and biases
    are not decayed, as in the lecture notes' ``λ/2m Σ‖W‖²_F``.
    ``dropout`` is the probability of zeroing each hidden activation (inverted
    dropout: the kept ones are scaled by 1/(1 − p), so evaluation needs no change).
    ``precision`` is one of ``PRECISIONS`` or "auto": fp32 on the CPU,
    ``DEFAULT_GPU_PRECISION`` on a GPU (``resolve_precision``).
    """

    # The defaults reach 0.8965 test accuracy on Fashion-MNIST (seed 0, CPU) in about
    # 90 s of training on a 2-core CPU; benchmarks/fashion_mnist.py reproduces the run.
    dataset: str = "fashion-mnist"
    data: str | None = None
    hidden: tuple[int, ...] = (512, 256)
    activation: str = "sigmoid"
    epochs: int = 20
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 0.0
    dropout: float = 0.2
    schedule: str = "cosine"
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"

    def validate(self) -> TrainConfig:
        """Raises ConfigError for the first invalid option; returns self."""
        _choice("dataset", self.dataset, DATASETS)
        if self.dataset == "spirals" and self.data is not None:
            raise ConfigError("--data names a folder of MNIST-format files; the spirals data set is generated")
        _choice("activation", self.activation, tuple(ACTIVATIONS))
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        if not isinstance(self.hidden, tuple) or any(not _is_int(h) or h <= 0 for h in self.hidden):
            raise ConfigError(f"--hidden: layer sizes must be positive integers, got {_show_hidden(self.hidden)}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                raise ConfigError(f"--{_flag(name)} must be a positive integer, got {value!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ConfigError(f"--seed must be a non-negative integer, got {self.seed!r}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr must be a positive number, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"--weight-decay must be zero or positive, got {self.weight_decay}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"--momentum must be in [0, 1), got {self.momentum}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        _choice("precision", self.precision, ("auto", *PRECISIONS))
        return self

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["hidden"] = list(self.hidden)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(unknown)}")
        values = dict(values)
        if "hidden" in values:
            values["hidden"] = tuple(values["hidden"])
        return cls(**values).validate()


def resolve_device(device: str) -> str:
    """The device to train on: for "auto" a GPU when one can be used, else "cpu".
    An explicit CUDA device that cannot be used raises ConfigError saying why."""
    if device == "auto":
        device = "cuda" if gp.cuda.is_available() else "cpu"
    try:
        # The backend's own name is canonical ("cuda" -> "cuda:0"), so checkpoints compare equal.
        return get_backend(device).device
    except (RuntimeError, ValueError) as err:
        raise ConfigError(f"--device {device}: {err}") from err


def resolve_precision(precision: str, device: str) -> str:
    """The precision a run on ``device`` (a resolved device name) computes in: for
    "auto" fp32 on the CPU and ``DEFAULT_GPU_PRECISION`` on a GPU. ConfigError for
    tf32 on the CPU, which has no such mode (rather than quietly running fp32)."""
    _choice("precision", precision, ("auto", *PRECISIONS))
    if precision == "auto":
        return "fp32" if device == "cpu" else DEFAULT_GPU_PRECISION
    if precision == "tf32" and device == "cpu":
        raise ConfigError(
            "--precision tf32 is a mode of NVIDIA GPU tensor cores (float32 matrix products on 10-bit "
            "mantissas) and this run is on the CPU; use fp32 (or bf16) there, or --device cuda"
        )
    return precision


@contextlib.contextmanager
def precision_mode(precision: str) -> Iterator[None]:
    """While active, float32 matrix products use TF32 exactly when ``precision`` is
    tf32 (``gp.cuda.set_tf32``); the setting before is restored on leaving. Set for
    every precision, so an fp32 run is exact float32 even where TF32 was left on.
    It is process-wide and part of ``gp.jit``'s signature, so a step captured
    under it is never replayed without it."""
    before = gp.cuda.tf32_enabled()
    gp.cuda.set_tf32(precision == "tf32")
    try:
        yield
    finally:
        gp.cuda.set_tf32(before)


def autocast_for(precision: str) -> contextlib.AbstractContextManager[Any]:
    """The context the forward pass and the loss run in: ``gp.autocast`` to bfloat16
    or float16 for bf16 and fp16 (matrix products in 16 bits with float32
    accumulation, losses and reductions in float32), nothing for fp32 and tf32."""
    if precision == "bf16":
        return gp.autocast(dtype=gp.bfloat16)
    if precision == "fp16":
        return gp.autocast(dtype=gp.float16)
    return contextlib.nullcontext()


def backward_and_step(loss: gp.Tensor, optimizer: Any, scaler: Any = None) -> None:
    """``loss.backward()`` and ``optimizer.step()``, through fp16's GradScaler when
    there is one (the loss scaled, the step unscaled and skipped on inf/NaN, the
    scale adjusted: all on the device)."""
    if scaler is None:
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def _grad_scaler(device: str) -> Any:
    """fp16's loss scaler on ``device``, with PyTorch's defaults (initial scale 2**16)."""
    from gpubp.amp import GradScaler  # imported when used: only fp16 runs need it

    return GradScaler(device)


def _as_float32(t: gp.Tensor) -> gp.Tensor:
    """``t`` itself when float32, else a float32 copy outside the tape. Metrics read
    logits as float32: the metric kernels (and a bfloat16 tensor's raw 16-bit storage
    on a GPU) would otherwise misread them. The cast is exact, so argmax is unchanged."""
    return t if t.dtype == gp.float32 else t.detach().float()


def build_model(features: int, classes: int, config: TrainConfig, device: str = "cpu") -> nn.Sequential:
    """features → hidden… → classes, each hidden layer Linear + activation (+ Dropout),
    on ``device``. Xavier initialisation for sigmoid and tanh, He for ReLU. Each layer
    is drawn on the CPU from the CPU generator, so a seed gives the same initial
    weights on every device, and moved to ``device`` before the next is drawn, so
    the host holds one layer at a time."""
    init = "he" if config.activation == "relu" else "xavier"
    sizes = [features, *config.hidden, classes]
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        layers.append(nn.Linear(n_in, n_out, init="xavier" if last else init).to(device))
        if not last:
            layers.append(ACTIVATIONS[config.activation]())
            if config.dropout:
                layers.append(nn.Dropout(config.dropout))
    return nn.Sequential(*layers)


def check_memory(
    config: TrainConfig, dataset: Dataset, device: str, training: bool = True, eval_batch: int = EVAL_BATCH
) -> None:
    """ConfigError, in one line, when the model of ``config`` cannot fit in the
    memory available on the host or on ``device`` (see ``gpubp.memory``), to
    train (with ``dataset``) or to evaluate (in batches of ``eval_batch``)."""
    sizes = [dataset.features, *config.hidden, len(dataset.classes)]
    need = memory.estimate(
        sizes,
        batch=config.batch_size,
        eval_batch=eval_batch,
        data_rows=len(dataset.x_train) + len(dataset.x_test),
        state_per_parameter=OPTIMIZER_STATE[config.optimizer],
        training=training,
        on_gpu=device != "cpu",
    )
    free = memory.device_available(device) if device != "cpu" else None
    problem = memory.shortfall(need, device, memory.host_available(), free)
    if problem is not None:
        what = f"the MLP {'-'.join(map(str, sizes))} ({memory.format_count(need.parameters)} parameters)"
        if training:
            raise ConfigError(f"training {what} needs about {problem}; choose smaller --hidden sizes")
        raise ConfigError(f"evaluating {what} needs about {problem}")


def build_optimizer(model: nn.Module, config: TrainConfig) -> Optimizer:
    """The optimizer with two parameter groups: weight matrices, decayed by
    ``config.weight_decay`` (L2), and biases, never decayed."""
    params = list(model.parameters())
    weights = [p for p in params if p.ndim > 1]
    others = [p for p in params if p.ndim <= 1]
    groups = [{"params": weights, "weight_decay": config.weight_decay}, {"params": others, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    lr = config.learning_rate
    if config.optimizer == "adam":
        return Adam(groups, lr=lr)
    momentum = config.momentum if config.optimizer == "momentum" else 0.0
    return SGD(groups, lr=lr, momentum=momentum)


def learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based) of ``total_steps``:
    constant, or cosine-annealed from the base rate towards 0 (CosineAnnealingLR's
    closed form, held at 0 past the end). ``Run`` plans the cosine over
    ``config.epochs`` (``total_steps`` = epochs × batches per epoch)."""
    base = config.learning_rate
    if config.schedule == "constant" or total_steps <= 0:
        return base
    return cosine_annealing_lr(base, min(step, total_steps), total_steps)


@dataclass
class Evaluation:
    """Mean loss, accuracy and the confusion matrix (rows: true class, columns: predicted)."""

    loss: float
    accuracy: float
    confusion: np.ndarray
    precision: str = "fp32"  # what the forward passes computed in

    @property
    def correct(self) -> int:
        return int(np.trace(self.confusion))

    @property
    def total(self) -> int:
        return int(self.confusion.sum())


def evaluate(model: nn.Module, loader: BatchLoader, classes: int, precision: str = "fp32") -> Evaluation:
    """The model's loss, accuracy and confusion matrix on every batch of ``loader``,
    in eval mode (dropout off) and without recording gradients. The forward pass runs
    under ``precision``'s autocast (bf16, fp16); the caller sets TF32 (``precision_mode``)."""
    was_training = model.training
    model.eval()
    loss_sum = 0.0
    confusion = np.zeros((classes, classes), dtype=np.int64)
    try:
        with gp.no_grad():
            for xb, yb in loader.batches():
                with autocast_for(precision):
                    logits = model(xb)
                # The loss in float32 as autocast computes it, and argmax not on 16-bit storage.
                logits = _as_float32(logits)
                loss_sum += gp.cross_entropy(logits, yb, reduction="sum").item()
                pairs = yb.numpy() * classes + logits.argmax(axis=1).numpy()
                confusion += np.bincount(pairs, minlength=classes * classes).reshape(classes, classes)
    finally:
        model.train(was_training)
    total = int(confusion.sum())
    return Evaluation(loss_sum / max(total, 1), float(np.trace(confusion)) / max(total, 1), confusion, precision)


@dataclass
class _EpochProgress:
    """Running sums of the epoch in progress (saved in mid-epoch checkpoints, so a
    resumed epoch reports the same train loss and accuracy)."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0
    lr_first: float | None = None  # the rates of the epoch's first and latest steps
    lr_last: float | None = None


@dataclass
class Run:
    """A training run writing into ``out``: build with ``Run.create`` or ``Run.resume``,
    then call ``fit``."""

    config: TrainConfig
    dataset: Dataset
    out: Path
    device: str
    model: nn.Sequential
    optimizer: Optimizer
    normalization: Standardize
    epoch: int = 0  # epochs completed
    batch: int = 0  # batches completed in the current epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    progress: _EpochProgress = field(default_factory=_EpochProgress)
    # The generators' states where this run's training continues from. The
    # generators are global, so ``fit`` installs these first: two runs in one
    # process then do not disturb each other, and a resumed run starts exactly
    # where the checkpoint left off.
    rng: dict[str, Any] = field(default_factory=dict)
    # The epochs the learning-rate schedule was planned over when the run was last
    # saved (None for a new run): a resumed run with other epochs re-plans it.
    planned_epochs: int | None = None
    # Where the checkpoint on disk stands, as (epoch, batch); None before the first save.
    saved_at: tuple[int, int] | None = None
    # In a run of several processes: every rank's generator states where training
    # continues from (``rng`` is this rank's), which rank 0 saves with the checkpoint.
    rank_rng: list[dict[str, Any]] | None = None
    # The precision this run trains in (``config.precision`` resolved for ``device``),
    # and for fp16 its loss scaler (``gp.amp.GradScaler``), saved with the checkpoint.
    precision: str = "fp32"
    scaler: Any = None
    # A resumed run: the precision its checkpoint was saved in, and, when it is no longer
    # fp16, that checkpoint's loss-scaler state, written back unchanged with every save so
    # that a later fp16 resume still finds it.
    saved_precision: str | None = None
    kept_scaler_state: dict[str, Any] | None = None
    scaler_restored: bool = False  # fp16 resumed with the checkpoint's loss scale

    @classmethod
    def create(cls, config: TrainConfig, dataset: Dataset, out: str | Path) -> Run:
        """A fresh run: seeds every generator with ``config.seed`` and builds the model."""
        config.validate()
        device = resolve_device(config.device)
        precision = resolve_precision(config.precision, device)
        check_memory(config, dataset, device)
        gp.manual_seed(config.seed)
        model = build_model(dataset.features, len(dataset.classes), config, device)
        rank = _Ranks.current().rank
        if rank > 0:
            # The same weights on every rank (DistributedDataParallel also sends rank 0's),
            # but dropout masks of each rank's own; rank 0 draws what one process would.
            gp.manual_seed(_rank_seed(config.seed, rank))
        return cls(
            config=config,
            dataset=dataset,
            out=Path(out),
            device=device,
            model=model,
            optimizer=build_optimizer(model, config),
            normalization=Standardize.fit(dataset.x_train),
            rng=_rng_states(device),
            precision=precision,
            scaler=_grad_scaler(device) if precision == "fp16" else None,
        )

    @classmethod
    def resume(cls, checkpoint: Checkpoint, config: TrainConfig, dataset: Dataset, out: str | Path) -> Run:
        """The run saved in ``checkpoint``, continued with ``config`` (the saved config,
        where only ``epochs``, ``device`` and ``data`` may differ)."""
        meta = checkpoint.meta
        _check_dataset(checkpoint, dataset)
        run = cls.create(config, dataset, out)
        checkpoint.load_model(run.model)
        checkpoint.load_optimizer(run.optimizer)
        try:
            run.normalization = Standardize.from_dict(meta["normalization"])
            run.epoch, run.batch = int(meta["epoch"]), int(meta["batch"])
            run.saved_at = (run.epoch, run.batch)
            # Rows from before each epoch's first and last rates were recorded have its last as "lr".
            run.history = [
                {**{k: v for k, v in row.items() if k != "lr"}, "lr_first": None, "lr_last": row["lr"]}
                if "lr" in row
                else row
                for row in meta["history"]
            ]
            run.progress = _EpochProgress(**meta["progress"])
            # Checkpoints from before --precision trained in fp32 (TF32 was off by default).
            run.saved_precision = str(meta.get("precision", "fp32"))
            scaler_state = meta.get("grad_scaler")
            if scaler_state is not None and run.scaler is not None:
                try:
                    run.scaler.load_state_dict(scaler_state)
                except RuntimeError as err:  # GradScaler's word for an empty state, as PyTorch's
                    raise ValueError(f"grad_scaler: {err}") from err
                run.scaler_restored = True
            elif scaler_state is not None:
                run.kept_scaler_state = dict(scaler_state)
            # Checkpoints from before the plan was recorded planned over their config's epochs.
            run.planned_epochs = int(meta.get("schedule", {}).get("epochs", meta["config"]["epochs"]))
            saved = meta["rng"]
            ranks = _Ranks.current()
            saved_ranks = meta.get("rng_ranks")
            if ranks.world > 1 and isinstance(saved_ranks, list) and len(saved_ranks) == ranks.world:
                saved = saved_ranks[ranks.rank]  # the same number of processes: each continues its own
            elif ranks.rank > 0:
                saved = {}  # another number of processes: only rank 0's stream continues
            if run.device in saved and set(saved) == set(_rng_states(run.device)):
                run.rng = saved
            else:
                # One device's generator state cannot be carried over to another's (nor one rank's to
                # another's); the dropout masks then differ from the original run's, but stay reproducible.
                gp.manual_seed(_rank_seed(config.seed + run.epoch + 1, ranks.rank))
                run.rng = _rng_states(run.device)
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{checkpoint.path}: incomplete or damaged checkpoint ({err!r})") from err
        return run

    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT_FILE

    @property
    def finished(self) -> bool:
        return self.epoch >= self.config.epochs

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.dataset.x_train) // self.config.batch_size)

    def schedule_change(self) -> str | None:
        """For a resumed cosine run whose ``--epochs`` changed: one line saying the
        schedule now anneals over the new total and how the rate jumps; else None."""
        cfg = self.config
        if cfg.schedule == "constant" or self.planned_epochs in (None, cfg.epochs) or self.finished:
            return None
        per_epoch, step = self.steps_per_epoch, self.epoch * self.steps_per_epoch + self.batch
        before = learning_rate(cfg, max(step - 1, 0), self.planned_epochs * per_epoch)
        after = learning_rate(cfg, step, cfg.epochs * per_epoch)
        return (
            f"note: the cosine schedule was planned over {plural(self.planned_epochs, 'epoch')} and now anneals "
            f"over {cfg.epochs}, so the learning rate goes from {before:.3g} at the last step to {after:.3g} "
            "at the next"
        )

    def precision_change(self) -> str | None:
        """For a resumed run: one line when it continues in another precision than its
        checkpoint was saved in, or leaves that checkpoint's fp16 loss scale unused; else None."""
        before = self.saved_precision
        if before is None or self.finished:
            return None
        notes = []
        if before != self.precision:
            notes.append(f"the checkpoint was saved in {before} and the run continues in {self.precision}")
            if self.scaler is not None and not self.scaler_restored:
                notes.append("the fp16 loss scale starts afresh")
        if self.kept_scaler_state is not None:
            notes.append(
                f"the checkpoint's fp16 loss scale (GradScaler state) is not used in {self.precision}; "
                "it is kept in the checkpoint for a later fp16 resume"
            )
        return f"note: {'; '.join(notes)}" if notes else None

    def describe(self) -> str:
        sizes = [self.dataset.features, *self.config.hidden, len(self.dataset.classes)]
        count = sum(p.numel() for p in self.model.parameters())
        opt = f"{self.config.optimizer} lr {self.config.learning_rate:g} ({self.config.schedule})"
        extras = []
        if self.config.weight_decay:
            extras.append(f"L2 {self.config.weight_decay:g}")
        if self.config.dropout:
            extras.append(f"dropout {self.config.dropout:g}")
        return (
            f"MLP {'-'.join(map(str, sizes))} {self.config.activation}, {plural(count, 'parameter', thousands=True)}; "
            f"{opt}{', ' + ', '.join(extras) if extras else ''}; batch {self.config.batch_size}{_split(self.config)}, "
            f"{plural(self.config.epochs, 'epoch')}, seed {self.config.seed}, on {self.device} in {self.precision}"
        )

    def save(self) -> None:
        """Writes the checkpoint (atomically) into the output folder; in a run of several
        processes rank 0 alone writes it (with every rank's generator states)."""
        if _Ranks.current().writer:
            self._write_checkpoint()
        self.saved_at = (self.epoch, self.batch)
        self.planned_epochs = self.config.epochs

    def _write_checkpoint(self) -> None:
        # The master weights are float32 in every precision (autocast casts copies); a
        # 16-bit parameter here is a bug, and saving it would replace good weights.
        low = [name for name, p in self.model.state_dict().items() if p.dtype != gp.float32]
        if low:
            raise RuntimeError(
                f"not saving {self.checkpoint_path}: parameters {', '.join(low)} are not float32 in a "
                f"{self.precision} run (autocast must leave the parameters float32)"
            )
        self.out.mkdir(parents=True, exist_ok=True)
        meta = {
            "gpubp_version": gp.__version__,
            "config": self.config.to_dict(),
            "device": self.device,
            "epoch": self.epoch,
            "batch": self.batch,
            "progress": asdict(self.progress),
            "history": self.history,
            "normalization": self.normalization.to_dict(),
            "data": _dataset_summary(self.dataset),
            "rng": self.rng,
            "precision": self.precision,
            "schedule": {
                "name": self.config.schedule,
                "epochs": self.config.epochs,
                "total_steps": self.config.epochs * self.steps_per_epoch,
            },
        }
        if self.rank_rng is not None:
            meta["rng_ranks"] = self.rank_rng
        if self.scaler is not None:
            meta["grad_scaler"] = _json_values(self.scaler.state_dict())
        elif self.kept_scaler_state is not None:
            meta["grad_scaler"] = self.kept_scaler_state
        save_checkpoint(self.checkpoint_path, self.model, self.optimizer, meta)

    def fit(
        self,
        bar: Callable[[int, int, int], Bar] | None = None,
        log: Callable[[str], None] = print,
        should_stop: Callable[[], bool] = lambda: False,
        jit: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Trains until ``config.epochs`` epochs are done, saving a checkpoint and the
        metrics after each epoch; returns the history (one dict per epoch).

        ``bar(epoch, total_samples, samples_done)`` makes the progress bar of an
        epoch. ``should_stop`` is polled after every batch; when it returns true the
        run saves a checkpoint and raises ``TrainingInterrupted``. ``jit`` replays
        each step as one captured CUDA graph (``gp.jit``; by default on a GPU): the
        data set stays on the device, each batch is gathered there inside the step,
        and the running metrics are summed there, so a step is one graph launch and
        the host waits for the device only to show progress and at the epoch's end.
        The same seed gives the same metrics with and without it.

        A batch whose loss is NaN or infinite raises ``NonFiniteLoss`` without
        saving, so the checkpoint on disk stays the last good state. On the CPU
        each step is checked; on a GPU the check is summed on the device with the
        metrics and read with them (for the progress bar, at a stop, at the
        epoch's end), so no step waits for the host, and nothing is saved before
        it is read.

        The forward pass and the loss run in ``self.precision``'s autocast (bf16,
        fp16, with fp16's loss scaled by ``self.scaler``), TF32 is on for tf32 only
        (``precision_mode``, restored on return), and the test split is evaluated
        in the same precision.
        """
        with precision_mode(self.precision):
            return self._fit(bar, log, should_stop, jit)

    def _fit(
        self,
        bar: Callable[[int, int, int], Bar] | None,
        log: Callable[[str], None],
        should_stop: Callable[[], bool],
        jit: bool | None,
    ) -> list[dict[str, Any]]:
        cfg = self.config
        ranks = _Ranks.current()
        train_x = self.normalization(self.dataset.x_train)
        test_x = self.normalization(self.dataset.x_test)
        loader = BatchLoader(
            train_x,
            self.dataset.y_train,
            ranks.local_batch(cfg.batch_size),
            shuffle=True,
            seed=cfg.seed,
            device=self.device,
            rank=ranks.rank,
            world_size=ranks.world,
        )
        test_loader = BatchLoader(test_x, self.dataset.y_test, EVAL_BATCH, device=self.device)
        batches = len(loader)  # the same on every rank, and as one process with the global batch
        total_steps = cfg.epochs * batches
        # Running sums of the epoch on the device (Backend.accumulate_metrics says which).
        totals = gp.zeros(get_backend(self.device).METRICS, dtype=gp.float64, device=self.device)
        step = _training_step(
            ranks.wrap(self.model), self.optimizer, *loader.tensors(), totals, self.precision, self.scaler
        )
        use_jit = self.device != "cpu" if jit is None else jit
        if use_jit:
            step = gp.jit(step)
        on_host = self.device == "cpu"  # where reading the totals costs no wait
        _set_rng_states(self.rng)
        self.model.train()
        while self.epoch < cfg.epochs:
            started = time.perf_counter()
            progress = self.progress
            first_batch = self.batch  # the batches the totals count start after this one
            # An epoch resumed part-way carries its sums so far; with several ranks rank 0 carries them.
            carried = progress if ranks.writer else _EpochProgress()
            resumed = [carried.loss_sum, carried.correct, 0.0, 0.0]
            totals.copy_(gp.tensor(resumed, dtype=gp.float64, device=self.device))
            seen = carried.seen  # this rank's samples (and those carried)
            lr_first, lr_last = progress.lr_first, progress.lr_last
            shown = bar(self.epoch, loader.samples * ranks.world, progress.seen) if bar and ranks.writer else Bar()
            shown_at = started
            try:
                for index in loader.index_batches(self.epoch, start=self.batch):
                    lr = learning_rate(cfg, self.epoch * batches + self.batch, total_steps)
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr
                    step(index)
                    lr_first = lr if lr_first is None else lr_first
                    lr_last = lr
                    n = len(index)
                    seen += n
                    self.batch += 1
                    values = totals.numpy() if on_host else None  # every step is checked where it is free
                    # Reading the loss waits for the device: only for a bar that shows it, a few times a second.
                    now = time.perf_counter()
                    if shown.draws and now - shown_at >= SHOW_LOSS_SECONDS:
                        shown_at = now
                        values = totals.numpy()
                        shown.update(n * ranks.world, float(values[0]) / seen)
                    else:
                        shown.update(n * ranks.world)
                    # Every rank stops after the same batch: after each one they agree (one process: no one to ask).
                    stop, bad = ranks.agree(should_stop(), int(values[3]) if values is not None else 0)
                    if bad:
                        self._stop_non_finite(first_batch + bad, batches)
                    if stop:
                        loss_sum, correct, seen, bad = ranks.sum_totals(totals.numpy(), seen)
                        if bad:
                            self._stop_non_finite(first_batch + bad, batches)
                        self.progress = _EpochProgress(
                            loss_sum,
                            correct,
                            seen,
                            progress.seconds + time.perf_counter() - started,
                            lr_first,
                            lr_last,
                        )
                        self._keep_rng_states(ranks)
                        self.save()
                        raise TrainingInterrupted(self.checkpoint_path, self.epoch, self.batch)
                # Waits for the epoch's last step.
                loss_sum, correct, seen, bad = ranks.sum_totals(totals.numpy(), seen)
                if bad:
                    self._stop_non_finite(first_batch + bad, batches)
            finally:
                shown.close()
            if lr_last is None:  # an older checkpoint, resumed after the epoch's last batch
                lr_first = lr_last = learning_rate(cfg, max(self.epoch * batches + self.batch - 1, 0), total_steps)

            seconds = progress.seconds + time.perf_counter() - started
            # Rank 0 alone evaluates: it alone reports and saves.
            classes = len(self.dataset.classes)
            test = evaluate(self.model, test_loader, classes, self.precision) if ranks.writer else None
            row = {
                "epoch": self.epoch + 1,
                "train_loss": loss_sum / seen,
                "train_acc": correct / seen,
                "test_loss": test.loss if test is not None else None,
                "test_acc": test.accuracy if test is not None else None,
                "lr_first": lr_first,
                "lr_last": lr_last,
                "seconds": round(seconds, 3),
                "samples_per_s": round((seen - progress.seen) / max(seconds - progress.seconds, 1e-9), 1),
                "precision": self.precision,  # a resumed run may change it
            }
            self.history.append(row)
            self.epoch += 1
            self.batch = 0
            self.progress = _EpochProgress()
            self._keep_rng_states(ranks)
            self.save()
            if ranks.writer:
                write_metrics(self.out, self.history, self.config.to_dict())
                log(format_epoch(row, cfg.epochs))
            if ranks.agree(should_stop(), 0)[0] and not self.finished:
                raise TrainingInterrupted(self.checkpoint_path, self.epoch, 0)
        return self.history

    def _keep_rng_states(self, ranks: _Ranks) -> None:
        """Notes where the generators stand, to be saved (with several ranks: every rank's)."""
        self.rng = _rng_states(self.device)
        self.rank_rng = ranks.gather(self.rng)

    def _stop_non_finite(self, batch: int, batches: int) -> NoReturn:
        saved = self.saved_at
        raise NonFiniteLoss(
            self.epoch,
            batch,
            batches,
            self.checkpoint_path if saved is not None else None,
            _position(*saved) if saved is not None else None,
        )


class _Ranks:
    """The process group as the training loop uses it. One process (no group, or a
    group of one) is rank 0 of 1: it communicates nothing and everything is as
    before there was a group."""

    def __init__(self, group: dist.ProcessGroup | None) -> None:
        self.group = group
        self.rank = group.rank if group is not None else 0
        self.world = group.world_size if group is not None else 1
        self.writer = self.rank == 0  # rank 0 alone evaluates, prints and writes files

    @classmethod
    def current(cls) -> _Ranks:
        group = dist.current()
        return cls(group if group is not None and group.world_size > 1 else None)

    def local_batch(self, batch_size: int) -> int:
        """This rank's share of the global batch; ConfigError when it does not divide."""
        if batch_size % self.world:
            lower, upper = batch_size - batch_size % self.world, batch_size + self.world - batch_size % self.world
            raise ConfigError(
                f"--batch-size {batch_size} is the global batch and must divide among the {self.world} processes; "
                f"use a multiple of {self.world}, e.g. {lower or upper} or {upper}"
            )
        return batch_size // self.world

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model every rank trains: wrapped in DistributedDataParallel when there are several."""
        return model if self.group is None else nn.parallel.DistributedDataParallel(model)

    def agree(self, stop: bool, bad: int) -> tuple[bool, int]:
        """Whether any rank asks to stop, and the first non-finite batch any rank saw (0: none)."""
        if self.group is None:
            return stop, bad
        # One all-reduce (max) of the host's two numbers: -bad so that the max is the first bad batch.
        flags = np.array([float(stop), -float(bad) if bad else -np.inf])
        self.group.mpi.all_reduce(flags, "max")
        return bool(flags[0]), int(-flags[1]) if np.isfinite(flags[1]) else 0

    def sum_totals(self, values: np.ndarray, seen: int) -> tuple[float, int, int, int]:
        """(loss sum, correct, samples, first non-finite batch) of the epoch so far, over every rank."""
        if self.group is None:
            return float(values[0]), int(values[1]), seen, int(values[3])
        sums = np.array([values[0], values[1], float(seen)])
        self.group.mpi.all_reduce(sums, "sum")
        bad = self.agree(False, int(values[3]))[1]
        return float(sums[0]), int(round(sums[1])), int(round(sums[2])), bad

    def gather(self, states: dict[str, Any]) -> list[dict[str, Any]] | None:
        """Every rank's ``states`` (None for one process)."""
        return None if self.group is None else self.group.mpi.all_gather_object(states)


def _training_step(
    model: nn.Module,
    optimizer: Optimizer,
    x: gp.Tensor,
    y: gp.Tensor,
    totals: gp.Tensor,
    precision: str = "fp32",
    scaler: Any = None,
) -> Callable[[gp.Tensor], None]:
    """One training step on the batch ``x[index], y[index]`` (gathered on the device),
    adding its loss · samples and correct predictions to ``totals``: the function
    ``Run.fit`` calls, or replays through ``gp.jit``. The forward pass and the loss
    run under ``precision``'s autocast, entered inside the step so that a captured
    graph holds it (``gp.jit``'s signature does not see an autocast around the call);
    with a ``scaler`` (fp16) the loss is scaled for backward and the step unscales,
    skips non-finite gradients and adjusts the scale, all on the device."""

    def step(index: gp.Tensor) -> None:
        xb, yb = x[index], y[index]
        with autocast_for(precision):
            logits = model(xb)
            loss = gp.cross_entropy(logits, yb)
        optimizer.zero_grad()
        backward_and_step(loss, optimizer, scaler)
        logits, loss = _as_float32(logits), _as_float32(loss)
        totals.backend.accumulate_metrics(totals.data, logits.data, yb.data, loss.data)
        totals.bump_version()

    return step


def evaluate_checkpoint(
    checkpoint: Checkpoint,
    data: str | None = None,
    device: str = "auto",
    batch_size: int = EVAL_BATCH,
    precision: str = "auto",
) -> tuple[Evaluation, Dataset]:
    """Rebuilds the checkpoint's model and evaluates it on its data set's test split
    (read from ``data`` when given, else from the folder it was trained on; the
    training split is not needed: the normalisation is saved in the checkpoint), in
    ``precision`` (``resolve_precision``: "auto" is fp32 on the CPU), whatever the
    run trained in: the checkpoint holds float32 weights."""
    config, normalization, dataset = _saved_run(checkpoint, data)
    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    check_memory(config, dataset, device, training=False, eval_batch=batch_size)
    model = build_model(dataset.features, len(dataset.classes), config, device)
    checkpoint.load_model(model)
    loader = BatchLoader(normalization(dataset.x_test), dataset.y_test, batch_size, device=device)
    with precision_mode(precision):
        return evaluate(model, loader, len(dataset.classes), precision), dataset


def _saved_run(checkpoint: Checkpoint, data: str | None) -> tuple[TrainConfig, Standardize, Dataset]:
    """A saved run's config and normalisation, and its data set's test split (read from
    ``data`` when given, else from the folder it was trained on): all that evaluating
    or drawing it needs."""
    try:
        config = TrainConfig.from_dict(checkpoint.meta["config"])
        normalization = Standardize.from_dict(checkpoint.meta["normalization"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{checkpoint.path}: damaged checkpoint metadata ({err})") from err
    dataset = load_dataset(config.dataset, data if data is not None else config.data, splits=("test",))
    _check_dataset(checkpoint, dataset, keys=("features", "classes"))
    return config, normalization, dataset


def graph_step(
    config: TrainConfig | None = None,
    checkpoint: Checkpoint | None = None,
    *,
    data: str | None = None,
    batch_size: int = GRAPH_BATCH,
    seed: int | None = None,
) -> tuple[gp.Tensor, nn.Sequential]:
    """One training step, recorded to be drawn (``gpubp graph``): on the CPU, the
    forward pass of ``batch_size`` samples, the loss and its backward, with the
    gradients in the parameters' ``.grad`` and the graph kept (``retain_graph=True``);
    no optimizer step. Returns the loss and the model.

    Either the model ``config`` describes, its weights and dropout masks drawn from
    its seed as ``gpubp train`` draws them, on the first samples of the training
    split standardised by its statistics; or the model saved in ``checkpoint`` with
    its normalisation, on the first samples of the test split, which is all it
    reads (as ``gpubp eval``). ``data`` overrides the folder the data is read from,
    ``seed`` the seed of the weights and dropout masks."""
    if checkpoint is not None:
        config, normalization, dataset = _saved_run(checkpoint, data)
        x, y = dataset.x_test[:batch_size], dataset.y_test[:batch_size]
    elif config is not None:
        config.validate()
        dataset = load_dataset(config.dataset, data if data is not None else config.data, splits=("train",))
        normalization = Standardize.fit(dataset.x_train)
        x, y = dataset.x_train[:batch_size], dataset.y_train[:batch_size]
    else:
        raise TypeError("graph_step: give a config or a checkpoint")
    gp.manual_seed(config.seed if seed is None else seed)
    model = build_model(dataset.features, len(dataset.classes), config, "cpu")
    if checkpoint is not None:
        checkpoint.load_model(model)
    model.train()  # a training step: dropout is on
    loss = gp.cross_entropy(model(gp.tensor(normalization(x))), gp.tensor(y))
    loss.backward(retain_graph=True)
    return loss, model


def format_epoch(row: dict[str, Any], epochs: int) -> str:
    """The one-line summary of an epoch."""
    width = len(str(epochs))
    return (
        f"epoch {row['epoch']:>{width}}/{epochs}  train loss {row['train_loss']:.4f}  "
        f"train acc {row['train_acc']:.4f}  test acc {row['test_acc']:.4f}  "
        f"{row['seconds']:.1f}s ({row['samples_per_s']:,.0f} samples/s)"
    )


def _json_values(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` (a GradScaler's ``state_dict()``) with NumPy scalars, 0-d arrays and
    one-element tensors as plain numbers, for the checkpoint's JSON."""
    return {k: v.item() if hasattr(v, "item") else v for k, v in state.items()}


def _position(epoch: int, batch: int) -> str:
    """Where a checkpoint stands, in words: "saved after epoch 2" or "saved in epoch 3, after batch 7"."""
    return f"saved after epoch {epoch}" if batch == 0 else f"saved in epoch {epoch + 1}, after batch {batch}"


def _rng_states(device: str) -> dict[str, Any]:
    """The states of the CPU generator and of ``device``'s (JSON-serialisable)."""
    states = {"cpu": gp.get_rng_state("cpu")}
    if device != "cpu":
        states[device] = gp.get_rng_state(device)
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    for device, state in states.items():
        gp.set_rng_state(state, device)


def _dataset_summary(dataset: Dataset) -> dict[str, Any]:
    return {
        "name": dataset.name,
        "features": dataset.features,
        "classes": list(dataset.classes),
        "train": len(dataset.x_train),
        "test": len(dataset.x_test),
    }


def _check_dataset(
    checkpoint: Checkpoint, dataset: Dataset, keys: tuple[str, ...] = ("features", "classes", "train", "test")
) -> None:
    """The data must match what the run was trained on (a resumed run: sizes too)."""
    saved = checkpoint.meta.get("data", {})
    current = _dataset_summary(dataset)
    for key in keys:
        if saved.get(key) != current[key]:
            raise CheckpointError(
                f"{checkpoint.path}: the run was trained on data with {key} = {saved.get(key)!r}, "
                f"but {dataset.source} has {current[key]!r}"
            )


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"--{_flag(name)} must be one of {', '.join(choices)}, got {value!r}")


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _show_hidden(hidden: Any) -> str:
    return ",".join(map(str, hidden)) if isinstance(hidden, (tuple, list)) else repr(hidden)


def check_ranks(run: Run) -> None:
    """ConfigError when the processes of the group cannot train ``run`` together: its
    global batch must divide among them, and each must train on its own GPU, the one
    its local rank picked (so "cuda" or "auto", not one "cuda:N" for all). Nothing to
    check for one process."""
    ranks = _Ranks.current()
    ranks.local_batch(run.config.batch_size)
    group = ranks.group
    if group is not None and run.device != "cpu" and run.device != f"cuda:{group.gpu}":
        raise ConfigError(
            f"--device {run.config.device} puts this process on {run.device}, but with {ranks.world} processes each "
            f"trains on the GPU of its local rank (here cuda:{group.gpu}): use --device cuda or auto"
        )


def _rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s generators: ``seed`` itself on rank 0 (what one process
    draws), a seed derived from both on the others."""
    return seed if rank == 0 else int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def _split(config: TrainConfig) -> str:
    """How the global batch splits among the processes, for ``Run.describe`` ("" for one)."""
    ranks = _Ranks.current()
    return f" ({config.batch_size // ranks.world} on each of {ranks.world} processes)" if ranks.world > 1 else ""
