"""The command line: ``gpubp train`` trains an MLP, ``gpubp eval`` scores a checkpoint,
``gpubp graph`` draws one training step's tape and its reverse network.

Also run as ``python -m gpubp``. Option errors and problems with the data or a
checkpoint end with one line on stderr and a non-zero exit status: 2 for bad
options (a model too large for the memory included), 1 for missing or damaged
files (Graphviz, which ``gpubp graph`` needs for a picture, included) and for a
training loss that became NaN or infinite, 130 when interrupted
with Ctrl-C (after saving a checkpoint that ``--resume`` continues from). When
the reader of the output goes away (``gpubp eval RUN | head -1``) the command
stops quietly with 141, as Unix tools ended by SIGPIPE do.

``mpirun -n N gpubp train ...`` trains one run with N processes (see
``_train_distributed``): rank 0 alone prints and writes, every rank reports
its own failures, and a failure of one rank during training stops them all.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import fields, replace
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import numpy as np

from gpubp import distributed, nn
from gpubp.checkpoint import CheckpointError, load_checkpoint
from gpubp.cpu_threads import set_blas_threads
from gpubp.data.datasets import DATASETS, DataNotFoundError, DatasetError, load_dataset
from gpubp.data.idx import IDXError
from gpubp.distributed import group as distributed_group
from gpubp.progress import is_terminal, plural, progress_bar
from gpubp.training import (
    ACTIVATIONS,
    CHECKPOINT_FILE,
    DEFAULT_GPU_PRECISION,
    DEFAULT_LR,
    GRAPH_BATCH,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    ConfigError,
    NonFiniteLoss,
    Run,
    TrainConfig,
    TrainingInterrupted,
    check_ranks,
    evaluate_checkpoint,
    graph_step,
)
from gpubp.viz import (
    DETAILS,
    NEURON_LIMIT,
    RENDER_FORMATS,
    TEXT_FORMATS,
    GraphvizNotFoundError,
    draw,
    unavailable_reason,
)

# One BLAS thread. On a 2-core machine (2 epochs of the default run, median training
# time; issue 11) two threads took 1.95 s against 3.1 s for one when nothing else ran,
# but 6.6 s against 3.25 s beside one busy process, and 12-31 s against 3.5-4.4 s beside
# other jobs: one thread is never far from the best, two can be several times slower.
DEFAULT_THREADS = 1
# Settings (TrainConfig fields) a resumed run may change; the others are fixed by the checkpoint.
RESUMABLE = ("epochs", "device", "data", "precision")
# Options of how this process runs, not settings of the run: never saved, free to change on resume.
RUN_OPTIONS = ("threads", "no_jit", "no_progress")
EXIT_USAGE, EXIT_FAILURE, EXIT_INTERRUPTED = 2, 1, 130
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # 141, the status of a Unix tool ended by SIGPIPE
_DEFAULTS = TrainConfig()
_DEFAULT_LRS = ", ".join(f"{name} {lr:g}" for name, lr in DEFAULT_LR.items())


class UsageError(Exception):
    """A bad command line, reported as one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    # argparse prints the usage and exits; a one-line message is friendlier and testable.
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``gpubp`` and its subcommands."""
    parser = _Parser(prog="gpubp", description="Train, evaluate and draw MLPs with the gpubp autodiff engine.")
    commands = parser.add_subparsers(dest="command", metavar="{train,eval,graph}")

    train = commands.add_parser(
        "train",
        help="train an MLP classifier (Fashion-MNIST by default)",
        description="Train an MLP classifier, with a checkpoint and metrics in --out after every epoch.",
    )
    _add_data_options(train.add_argument_group("data"))
    _add_model_options(train.add_argument_group("model"))
    optim = train.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=int, help=f"epochs to train (default {_DEFAULTS.epochs})")
    optim.add_argument("--batch-size", type=int, metavar="N", help=f"samples per step (default {_DEFAULTS.batch_size})")
    optim.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        help=f"sgd, momentum (SGD with momentum) or adam (default {_DEFAULTS.optimizer})",
    )
    optim.add_argument("--lr", type=float, help=f"learning rate (default: {_DEFAULT_LRS})")
    optim.add_argument(
        "--momentum", type=float, help=f"momentum of --optimizer momentum (default {_DEFAULTS.momentum})"
    )
    optim.add_argument(
        "--schedule", choices=SCHEDULES, help=f"learning-rate schedule over the run (default {_DEFAULTS.schedule})"
    )
    optim.add_argument(
        "--weight-decay", type=float, metavar="L2", help="L2 penalty λ/2·Σ‖W‖² on weights, not biases (default 0)"
    )
    run = train.add_argument_group("run")
    _add_threads(run)
    run.add_argument(
        "--seed", type=int, help=f"seed of initialisation, shuffling and dropout (default {_DEFAULTS.seed})"
    )
    run.add_argument("--device", help="auto (a GPU when there is one), cpu, cuda or cuda:N (default auto)")
    _add_precision(run, "the forward pass and the loss in 16 bits under autocast, fp16 with loss scaling")
    run.add_argument("--out", metavar="DIR", help="folder for the checkpoint and metrics (default runs/DATASET-TIME)")
    run.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    run.add_argument(
        "--no-progress", action="store_true", help="no progress bar (it is off anyway when not on a terminal)"
    )
    run.add_argument(
        "--no-jit",
        action="store_true",
        help="run every step eagerly instead of replaying it as one captured CUDA graph (the default on a GPU)",
    )

    evaluate = commands.add_parser(
        "eval",
        help="print the test accuracy and confusion matrix of a checkpoint",
        description="Evaluate a checkpoint on its data set's test split.",
    )
    evaluate.add_argument("checkpoint", help="a checkpoint file, or a run folder holding checkpoint.npz")
    evaluate.add_argument(
        "--data", metavar="DIR", help="folder with the MNIST-format files (default: the one trained on)"
    )
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    _add_precision(evaluate, "the forward pass in 16 bits under autocast", default="auto")
    _add_threads(evaluate)
    evaluate.add_argument(
        "--batch-size", type=int, default=1000, metavar="N", help="samples per forward pass (default 1000)"
    )

    graph = commands.add_parser(
        "graph",
        help="draw one training step's tape and its reverse network (no training, no GPU)",
        description="Draw one training step (forward, loss, backward; no optimizer step) of the model a "
        "`gpubp train` command line would build, or of a saved run, with its reverse network (gp.viz). "
        "Writes SVG, PNG or PDF by the suffix of --out with Graphviz's dot, or the DOT text for .dot.",
    )
    graph.add_argument(
        "run", nargs="?", metavar="RUN_DIR", help="a run folder (or checkpoint file) whose model to draw"
    )
    _add_data_options(graph.add_argument_group("data"))
    _add_model_options(graph.add_argument_group("model (without RUN_DIR)"))
    step = graph.add_argument_group("step")
    step.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help=f"samples in the step (default {GRAPH_BATCH}; a saved run's first test samples)",
    )
    step.add_argument("--seed", type=int, help=f"seed of the weights and dropout masks (default {_DEFAULTS.seed})")
    drawing = graph.add_argument_group("drawing")
    drawing.add_argument(
        "--out", default="graph.svg", metavar="PATH", help="the picture: .svg (default graph.svg), .png, .pdf or .dot"
    )
    drawing.add_argument(
        "--detail",
        choices=DETAILS,
        default="layers",
        help="one box per layer (default), per op, or one node per neuron (nets of up to "
        f"{NEURON_LIMIT} units per layer)",
    )
    drawing.add_argument(
        "--values", action="store_true", help="print the values and gradients on the nodes (small nets)"
    )
    _add_threads(graph)
    return parser


def _add_data_options(group: argparse._ActionsContainer) -> None:
    group.add_argument("--dataset", choices=DATASETS, help=f"data set (default {_DEFAULTS.dataset})")
    group.add_argument(
        "--data", metavar="DIR", help="folder with the MNIST-format files (default: the Debian package's folder)"
    )


def _add_model_options(group: argparse._ActionsContainer) -> None:
    group.add_argument(
        "--hidden",
        type=_hidden_sizes,
        metavar="N,N,...",
        help=f"hidden layer sizes, or none for no hidden layer (default {_show(_DEFAULTS.hidden)})",
    )
    group.add_argument(
        "--activation", choices=tuple(ACTIVATIONS), help=f"hidden activation (default {_DEFAULTS.activation})"
    )
    group.add_argument(
        "--dropout",
        type=float,
        metavar="P",
        help=f"inverted dropout after each hidden layer (default {_DEFAULTS.dropout})",
    )


def _add_precision(group: argparse._ActionsContainer, sixteen: str, default: str | None = None) -> None:
    # train's default is None (not given), so that a resumed run keeps its saved setting.
    group.add_argument(
        "--precision",
        choices=("auto", *PRECISIONS),
        default=default,
        help=f"fp32; tf32 (float32 matrix products on GPU tensor cores); bf16 or fp16 ({sixteen}); weights, "
        f"gradients and optimizer state stay float32 (default auto: fp32 on the CPU, {DEFAULT_GPU_PRECISION} "
        "on a GPU)",
    )


def _add_threads(group: argparse._ActionsContainer) -> None:
    group.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        metavar="N",
        help=f"BLAS threads for CPU matrix products (default {DEFAULT_THREADS}; more are faster only while "
        "nothing else runs: OpenBLAS threads spin-wait for each other, so they are much slower as soon as "
        "another process shares the cores)",
    )


def _apply_threads(args: argparse.Namespace) -> None:
    if args.threads <= 0:
        raise ConfigError(f"--threads must be a positive integer, got {args.threads}")
    if not set_blas_threads(args.threads) and args.threads != DEFAULT_THREADS:
        print(f"gpubp: note: could not set the BLAS thread count to {args.threads} (try: pip install threadpoolctl)")


def main(argv: list[str] | None = None) -> int:
    """Runs the command line and returns the exit status."""
    try:
        status = _main(argv)
        sys.stdout.flush()  # output still buffered meets a closed pipe here
    except BrokenPipeError:
        # The reader went away (`gpubp eval RUN | head -1`): stop quietly, as Unix tools do on
        # SIGPIPE, and point stdout at /dev/null so Python's own flush at exit does not complain.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is not a file (e.g. captured in tests)
            pass
        return EXIT_BROKEN_PIPE
    return status


def _main(argv: list[str] | None) -> int:
    prog = "gpubp"
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise UsageError("gpubp: error: choose a command: train, eval or graph (see gpubp --help)")
        prog = f"gpubp {args.command}"
        _apply_threads(args)
        return {"train": _train, "eval": _eval, "graph": _graph}[args.command](args)
    except BrokenPipeError:
        raise  # an OSError, but not an error of the command: main stops quietly
    except (Exception, KeyboardInterrupt) as err:
        described = _describe_error(err, prog)
        if described is None:
            raise
        return _fail(*described)


def _describe_error(err: BaseException, prog: str) -> tuple[str, int] | None:
    """The one line and the exit status an error of the command ends with; None for
    an error that is not the command's (a bug: its traceback is the report)."""
    if isinstance(err, UsageError):
        return str(err), EXIT_USAGE
    if isinstance(err, ConfigError):
        return f"{prog}: error: {err}", EXIT_USAGE
    failures = (
        DataNotFoundError,
        DatasetError,
        IDXError,
        CheckpointError,
        NonFiniteLoss,
        GraphvizNotFoundError,
        OSError,
    )
    if isinstance(err, failures) and not isinstance(err, BrokenPipeError):
        return f"{prog}: error: {err}", EXIT_FAILURE
    if isinstance(err, MemoryError):
        # What the estimate before allocating (training.check_memory) did not foresee.
        detail = f": {err}" if str(err) else ""
        return f"{prog}: error: out of memory{detail}; choose smaller --hidden sizes", EXIT_USAGE
    if isinstance(err, KeyboardInterrupt):
        return f"{prog}: interrupted", EXIT_INTERRUPTED
    return None


def _train(args: argparse.Namespace) -> int:
    try:
        environment = distributed.detect()
    except ValueError as err:
        raise ConfigError(f"the launcher's environment: {err}") from err
    if environment.distributed:
        return _train_distributed(args, environment)
    prepared = _prepare_run(args)
    return prepared if isinstance(prepared, int) else _fit(args, prepared)


def _prepare_run(args: argparse.Namespace) -> int | Run:
    """The run ``gpubp train`` asks for, new or resumed, after printing what it is; or
    the exit status when there is nothing to train. Communicates with no other rank."""
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None}
    if args.resume:
        if args.out is None:
            raise UsageError("gpubp train: error: --resume needs --out DIR, the folder of the run to continue")
        out = Path(args.out)
        checkpoint = load_checkpoint(out / CHECKPOINT_FILE)
        try:
            saved = TrainConfig.from_dict(checkpoint.meta["config"])
        except (KeyError, TypeError, ConfigError) as err:
            raise CheckpointError(f"{checkpoint.path}: damaged config ({err})") from err
        _check_unchanged(given, saved)
        _check_out(out)
        config = replace(saved, **{k: v for k, v in given.items() if k in RESUMABLE}).validate()
        dataset = load_dataset(config.dataset, config.data)
        run = Run.resume(checkpoint, config, dataset, out)
        if run.finished:
            print(
                f"{out}: the run has already trained {plural(run.epoch, 'epoch')}; "
                "pass a larger --epochs to continue it"
            )
            return 0
        print(f"resuming {out} at epoch {run.epoch + 1}, batch {run.batch}")
        for change in (run.schedule_change(), run.precision_change()):
            if change is not None:
                print(change)
    else:
        config = TrainConfig(**given).validate()
        out = Path(args.out) if args.out is not None else _new_run_folder(config.dataset)
        if (out / CHECKPOINT_FILE).exists():
            raise ConfigError(f"--out {out} already holds a run; continue it with --resume, or choose another --out")
        _check_out(out)
        dataset = load_dataset(config.dataset, config.data)
        run = Run.create(config, dataset, out)
    print(dataset.describe())
    print(run.describe())
    print(f"writing the checkpoint and metrics to {out}/", flush=True)
    return run


def _fit(args: argparse.Namespace, run: Run, group: Any = None) -> int:
    """Trains ``run`` to the end and reports; with several processes (``group``) rank 0
    alone shows progress and reports, and Ctrl-C (which mpirun passes on as SIGTERM)
    stops every rank after the same batch."""
    writer = group is None or group.rank == 0
    enabled = writer and not args.no_progress and is_terminal(sys.stdout, sys.stderr)
    out, epochs = run.out, run.config.epochs

    def bar(epoch: int, total: int, done: int) -> Any:
        return progress_bar(total, f"epoch {epoch + 1}/{epochs}", done, enabled)

    started = time.perf_counter()
    try:
        # NumPy's overflow warnings would come before the one line NonFiniteLoss gives.
        with (
            _StopOnCtrlC(quiet=not writer, terminate=group is not None) as stop,
            np.errstate(over="ignore", invalid="ignore", divide="ignore"),
        ):
            history = run.fit(
                bar=bar,
                log=lambda line: print(line, flush=True),
                should_stop=stop.requested,
                jit=False if args.no_jit else None,
            )
    except TrainingInterrupted as err:
        if writer:
            print(f"gpubp train: {err}. Continue with: gpubp train --out {out} --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        saved = f"; the last checkpoint is {run.checkpoint_path}" if run.checkpoint_path.exists() else ""
        if group is not None:  # this rank alone: the others would wait for it
            group.abort(f"gpubp train: aborted{saved}", EXIT_INTERRUPTED)
        return _fail(f"gpubp train: aborted{saved}", EXIT_INTERRUPTED)
    if writer:
        last = history[-1]
        print(
            f"done: test accuracy {last['test_acc']:.4f} in {run.precision} after {plural(last['epoch'], 'epoch')} "
            f"({time.perf_counter() - started:.1f}s); checkpoint {run.checkpoint_path}"
        )
    return 0


def _train_distributed(args: argparse.Namespace, environment: distributed.LaunchEnvironment) -> int:
    """``gpubp train`` as one of the processes an MPI launcher started.

    Every rank prepares the same run (options, data, checkpoint) on its own; then
    they compare outcomes, so that a failure there (a bad option: on every rank;
    data missing on one host: on some) ends all of them with its one line, printed
    once by rank 0. During training the ranks agree after every batch whether to
    stop (Ctrl-C, a non-finite loss), so those end every rank together too; any
    other failure of one rank stops the job (MPI abort) with its message."""
    prog = "gpubp train"
    rank = environment.rank
    with _stdout_of_rank(rank):
        try:
            distributed.init_process_group(timeout=_dist_timeout())
        except (RuntimeError, ValueError) as err:
            # Every rank meets the same missing library, launcher mismatch or bad setting: rank 0 says it.
            status = EXIT_USAGE if isinstance(err, ConfigError) else EXIT_FAILURE
            if rank == 0:
                _fail(f"{prog}: error: {err}", status)
            return status
        group = distributed_group.current()
        try:
            if args.out is None and not args.resume:
                # The default folder is named by the time: every rank must use rank 0's.
                dataset = args.dataset if args.dataset is not None else TrainConfig().dataset
                args.out = str(group.mpi.broadcast_object(_new_run_folder(dataset) if rank == 0 else None, 0))
            failure = None
            try:
                prepared = _prepare_run(args)
                if not isinstance(prepared, int):
                    check_ranks(prepared)  # the global batch divides among them, each has its GPU
            except (Exception, KeyboardInterrupt) as err:
                prepared = EXIT_FAILURE
                failure = _describe_error(err, prog)
                if failure is None:
                    traceback.print_exc()
                    failure = (f"{prog}: error: {type(err).__name__}: {err} (rank {rank}; traceback above)", 1)
            failures = group.mpi.all_gather_object(failure)
            if any(failures):
                if rank == 0:
                    _report_failures(failures)
                return max(f[1] for f in failures if f is not None)
            if isinstance(prepared, int):
                return prepared
            try:
                return _fit(args, prepared, group)
            except NonFiniteLoss as err:  # every rank raises it after the same batch (they agree on it)
                if rank == 0:
                    _fail(f"{prog}: error: {err}", EXIT_FAILURE)
                return EXIT_FAILURE
            except BaseException as err:  # this rank alone: the others would wait for it
                described = _describe_error(err, prog)
                if described is None:
                    traceback.print_exc()
                    described = (f"{prog}: error: {type(err).__name__}: {err} (traceback above)", 1)
                group.abort(described[0], described[1])
        finally:
            if distributed.is_initialized():
                distributed.destroy_process_group()


def _report_failures(failures: list[tuple[str, int] | None]) -> None:
    """Each distinct failure once, naming the ranks it happened on unless it was all of them."""
    by_message: dict[str, list[int]] = {}
    for rank, failure in enumerate(failures):
        if failure is not None:
            by_message.setdefault(failure[0], []).append(rank)
    for message, ranks in by_message.items():
        if len(ranks) < len(failures):
            message += f" (on rank{'s' if len(ranks) > 1 else ''} {_and(list(map(str, ranks)))})"
        print(message, file=sys.stderr)


class _stdout_of_rank:  # noqa: N801 (used as a context manager, like contextlib's)
    """Ranks other than 0 print nothing on stdout (rank 0 speaks for the run); stderr stays."""

    def __init__(self, rank: int) -> None:
        self._rank = rank
        self._saved: Any = None

    def __enter__(self) -> None:
        if self._rank != 0:
            self._saved = sys.stdout
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (closed in __exit__)

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            sys.stdout.close()
            sys.stdout = self._saved


def _dist_timeout() -> float | None:
    """GPUBP_DIST_TIMEOUT (seconds): how long a collective may wait for the other ranks
    before the job is stopped (default: gp.distributed's 30 minutes)."""
    text = os.environ.get("GPUBP_DIST_TIMEOUT")
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        raise ConfigError(f"GPUBP_DIST_TIMEOUT={text!r} is not a number of seconds") from None
    if not seconds > 0:
        raise ConfigError(f"GPUBP_DIST_TIMEOUT must be a positive number of seconds, got {text}")
    return seconds


def _check_unchanged(given: dict[str, Any], saved: TrainConfig) -> None:
    """ConfigError naming the first setting ``given`` changes that a resumed run keeps.
    The learning rate compares as used: no --lr means the optimizer's default."""
    for name, value in given.items():
        if name in RESUMABLE:
            continue
        before = saved.learning_rate if name == "lr" else getattr(saved, name)
        if value != before:
            may_change = _and([f"--{_flag(n)}" for n in RESUMABLE])
            run_options = _and([f"--{_flag(n)}" for n in RUN_OPTIONS])
            raise ConfigError(
                f"--{_flag(name)} {_show(value)} differs from the resumed run's {_show(before)}; a resumed run "
                f"keeps its settings: only {may_change} may change (and the run options {run_options})"
            )


def _check_out(out: Path) -> None:
    """ConfigError unless the run folder ``out`` can be made and written: checked
    before any long work, without creating it (a probe file that leaves no trace
    goes into the nearest folder that exists)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    folder = out
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"--out {out}: {folder} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot write in {folder} ({err.strerror or err})") from err


def _eval(args: argparse.Namespace) -> int:
    path = Path(args.checkpoint)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if args.batch_size <= 0:
        raise ConfigError(f"--batch-size must be a positive integer, got {args.batch_size}")
    checkpoint = load_checkpoint(path)
    result, dataset = evaluate_checkpoint(
        checkpoint, data=args.data, device=args.device, batch_size=args.batch_size, precision=args.precision
    )
    print(f"{dataset.name} test split ({dataset.source}): {plural(result.total, 'sample')}")
    print(
        f"test accuracy {result.accuracy:.4f} ({result.correct}/{result.total}), loss {result.loss:.4f} "
        f"(in {result.precision})"
    )
    print()
    print(format_confusion(result.confusion, dataset.classes))
    return 0


def _graph(args: argparse.Namespace) -> int:
    out = Path(args.out)
    kind = out.suffix.lower().lstrip(".")
    if kind not in RENDER_FORMATS + TEXT_FORMATS:
        raise ConfigError(f"--out {out}: the suffix names the format: .svg, .png, .pdf, or .dot for the DOT text")
    if args.batch_size is not None and args.batch_size <= 0:
        raise ConfigError(f"--batch-size must be a positive integer, got {args.batch_size}")
    if kind in RENDER_FORMATS:
        # Before any work: without Graphviz nothing can be drawn, but the DOT text can be written.
        reason = unavailable_reason()
        if reason is not None:
            raise GraphvizNotFoundError(f"cannot draw {out}: {reason}; or write the DOT text with --out {out.stem}.dot")
    if out.parent != Path() and not out.parent.is_dir():
        raise ConfigError(f"--out {out}: {out.parent} is not a folder")
    batch = args.batch_size if args.batch_size is not None else GRAPH_BATCH
    model_options = ("hidden", "activation", "dropout", "dataset")
    if args.run is not None:
        given = [f"--{_flag(name)}" for name in model_options if getattr(args, name) is not None]
        if given:
            raise UsageError(
                f"gpubp graph: error: {_and(given)} {'comes' if len(given) == 1 else 'come'} from the run's "
                "checkpoint; give RUN_DIR or the model options, not both"
            )
        if args.seed is not None and args.seed < 0:
            raise ConfigError(f"--seed must be a non-negative integer, got {args.seed}")
        path = Path(args.run)
        checkpoint = load_checkpoint(path / CHECKPOINT_FILE if path.is_dir() else path)
        loss, model = graph_step(checkpoint=checkpoint, data=args.data, batch_size=batch, seed=args.seed)
    else:
        names = ("hidden", "activation", "dropout", "dataset", "data", "seed")
        given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
        config = TrainConfig(**given, batch_size=batch, device="cpu").validate()
        loss, model = graph_step(config, batch_size=batch)
    try:
        draw(loss, out, model=model, detail=args.detail, values=args.values)
    except ValueError as err:  # a picture the options cannot give (neurons of a large net)
        raise ConfigError(f"--detail {args.detail}: {str(err).removeprefix('to_dot: ')}") from err
    linears = [m for m in model if isinstance(m, nn.Linear)]
    sizes = "-".join(map(str, [linears[0].in_features] + [m.out_features for m in linears]))
    samples = plural(int(loss.grad_fn.inputs[0].shape[0]), "sample")
    print(f"wrote {out}: one training step (forward, loss, backward) of the MLP {sizes} on {samples}")
    return 0


def format_confusion(confusion: np.ndarray, classes: tuple[str, ...]) -> str:
    """The confusion matrix as a table: rows are true classes, columns predictions
    (by index), and each row's recall at the end."""
    n = len(classes)
    name_width = max(len(f"{i} {c}") for i, c in enumerate(classes))
    cell = max(len(str(int(confusion.max()))) if confusion.size else 1, len(str(n - 1))) + 1
    lines = ["confusion matrix (rows: true class, columns: predicted class)"]
    lines.append(" " * name_width + "".join(f"{j:>{cell}}" for j in range(n)) + "   recall")
    for i, name in enumerate(classes):
        row = confusion[i]
        recall = row[i] / row.sum() if row.sum() else float("nan")
        lines.append(f"{f'{i} {name}':<{name_width}}" + "".join(f"{int(v):>{cell}}" for v in row) + f"   {recall:.3f}")
    return "\n".join(lines)


class _StopOnCtrlC:
    """While active, the first Ctrl-C asks training to stop after the current batch
    (which then saves a checkpoint); a second one interrupts at once. With
    ``terminate``, SIGTERM does the same: mpirun turns a Ctrl-C into SIGTERM for
    each rank (Open MPI then kills them after ``odls_base_sigkill_timeout``, 1 s by
    default). ``quiet``: say nothing (a rank other than 0)."""

    def __init__(self, quiet: bool = False, terminate: bool = False) -> None:
        self._requested = False
        self._quiet = quiet
        self._signals = (signal.SIGINT, signal.SIGTERM) if terminate else (signal.SIGINT,)
        self._previous: dict[int, Any] = {}

    def requested(self) -> bool:
        return self._requested

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._requested:
            raise KeyboardInterrupt
        self._requested = True
        if not self._quiet:
            message = "\nstopping after this batch to save a checkpoint (Ctrl-C again to abort)"
            print(message, file=sys.stderr, flush=True)

    def __enter__(self) -> _StopOnCtrlC:
        # Signal handlers can only be set from the main thread; elsewhere Ctrl-C stays a KeyboardInterrupt.
        if threading.current_thread() is threading.main_thread():
            for signum in self._signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()


def _hidden_sizes(text: str) -> tuple[int, ...]:
    """ "256,128" -> (256, 128); "none" -> no hidden layer (softmax regression), which
    must be asked for by name: an empty --hidden is more likely a mistake."""
    if text.strip().lower() == "none":
        return ()
    if not text.strip():
        raise argparse.ArgumentTypeError("give layer sizes like 256,128, or none for no hidden layer")
    sizes = []
    for part in text.split(","):
        try:
            size = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"layer sizes must be integers like 256,128, got {text!r}") from None
        if size <= 0:
            raise argparse.ArgumentTypeError(f"layer sizes must be positive, got {size} in {text!r}")
        sizes.append(size)
    return tuple(sizes)


def _new_run_folder(dataset: str) -> Path:
    base = Path("runs") / f"{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, n = base, 2
    while out.exists():
        out, n = Path(f"{base}-{n}"), n + 1
    return out


def _and(items: list[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    return " and ".join(filter(None, [", ".join(items[:-1]), items[-1]]))


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return str(value)


def _fail(message: str, status: int) -> int:
    print(message, file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
