"""Checkpoints: one ``.npz`` file of named arrays plus a JSON document, no pickle.

The JSON (epoch, config, RNG states, optimizer hyper-parameters, history) is
stored inside the archive as the UTF-8 bytes of the array ``__meta__``, so a
checkpoint is a single file and replacing it is a single atomic rename: a
reader sees the old checkpoint or the new one, never a mix or a half-written
file. Loading uses ``np.load(allow_pickle=False)``, so a checkpoint cannot run
code.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from gpubp.nn.module import Module
from gpubp.optim.optimizer import Optimizer

FORMAT = "gpubp-checkpoint"
VERSION = 1
_META_KEY = "__meta__"
_ZIP_MAGIC = b"PK\x03\x04"  # how every .npz archive (a zip file) begins
_MODEL = "model/"
_OPTIM = "optimizer/"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model it is loaded into."""


@dataclass
class Checkpoint:
    """The contents of a checkpoint file: ``meta`` (JSON-compatible) and named arrays."""

    path: Path
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]

    def model_state(self) -> dict[str, np.ndarray]:
        """Parameter name -> array, as ``Module.load_state_dict`` takes it."""
        return {k[len(_MODEL) :]: v for k, v in self.arrays.items() if k.startswith(_MODEL)}

    def load_model(self, model: Module) -> None:
        """Copies the saved parameters into ``model`` (CheckpointError if they do not fit)."""
        try:
            model.load_state_dict(self.model_state())
        except (KeyError, ValueError) as err:
            raise CheckpointError(f"{self.path}: the saved model does not fit: {_message(err)}") from err

    def load_optimizer(self, optimizer: Optimizer) -> None:
        """Restores the optimizer's buffers, step counts and hyper-parameters."""
        saved = self.meta.get("optimizer")
        if not isinstance(saved, dict) or saved.get("type") != type(optimizer).__name__:
            found = saved.get("type") if isinstance(saved, dict) else None
            raise CheckpointError(
                f"{self.path}: the checkpoint holds the state of a {found} optimizer, not {type(optimizer).__name__}"
            )
        state: dict[int, dict[str, Any]] = {}
        for index, scalars in saved["scalars"].items():
            state.setdefault(int(index), {}).update(scalars)
        for key, array in self.arrays.items():
            if key.startswith(_OPTIM):
                index, name = key[len(_OPTIM) :].split("/", 1)
                state.setdefault(int(index), {})[name] = array
        groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in saved["param_groups"]]
        try:
            optimizer.load_state_dict({"state": state, "param_groups": groups})
        except (KeyError, ValueError, IndexError) as err:
            raise CheckpointError(f"{self.path}: the saved optimizer state does not fit: {_message(err)}") from err


def save_checkpoint(path: str | os.PathLike, model: Module, optimizer: Optimizer | None, meta: dict[str, Any]) -> None:
    """Writes the model's parameters, the optimizer's state and ``meta`` (anything
    JSON can hold) to ``path`` atomically."""
    arrays = {_MODEL + name: tensor.numpy() for name, tensor in model.state_dict().items()}
    meta = {"format": FORMAT, "version": VERSION, **meta}
    if optimizer is not None:
        state = optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for index, values in state["state"].items():
            scalars[str(index)] = {}  # kept even when empty: the parameter has been stepped
            for name, value in values.items():
                if isinstance(value, np.ndarray):
                    arrays[f"{_OPTIM}{index}/{name}"] = value
                else:
                    scalars[str(index)][name] = value
        meta["optimizer"] = {
            "type": type(optimizer).__name__,
            "param_groups": [
                {k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state["param_groups"]
            ],
            "scalars": scalars,
        }
    # NumPy writes a bfloat16 (ml_dtypes) array into an .npz but reads it back as raw
    # two-byte records: refuse it here rather than write a checkpoint that loads wrong.
    unreadable = [name for name, array in arrays.items() if array.dtype.kind not in "biuf"]
    if unreadable:
        kinds = ", ".join(f"{name} ({arrays[name].dtype})" for name in unreadable)
        raise CheckpointError(
            f"{path}: not saved: an .npz cannot hold {kinds} faithfully; checkpoints hold the float32 "
            "master weights (convert with .float())"
        )
    text = json.dumps(meta, allow_nan=False)
    arrays[_META_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Reads a checkpoint written by ``save_checkpoint``; CheckpointError naming the
    file when it is missing, damaged or not a gpubp checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with open(path, "rb") as f:
            magic = f.read(len(_ZIP_MAGIC))
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read the checkpoint: {err.strerror or err}") from err
    if magic != _ZIP_MAGIC:
        # np.load would take it for a pickle or an .npy file, and its message suggests loading it unsafely.
        raise CheckpointError(f"{path}: not a gpubp checkpoint (those are .npz archives, and this file is not one)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            # Reading every member now checks each one's CRC, so damage shows up here.
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path}: not a readable checkpoint (damaged or not an .npz file): {err}") from err
    raw = arrays.pop(_META_KEY, None)
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"{path}: not a gpubp checkpoint (no {_META_KEY} record)")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: damaged checkpoint metadata: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a gpubp checkpoint")
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {meta.get('version')} is not supported (this gpubp reads {VERSION})"
        )
    return Checkpoint(path, meta, arrays)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Calls ``write`` on a temporary file beside ``path``, flushes it to disk and
    renames it over ``path``: after a crash there is the old file or the new one.
    The temporary file is removed if ``write`` fails."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """``atomic_write`` for a UTF-8 text file."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _message(err: BaseException) -> str:
    # KeyError's str() wraps the message in quotes.
    return err.args[0] if isinstance(err, KeyError) and err.args else str(err)
