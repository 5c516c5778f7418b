"""``gp.save`` / ``gp.load``: tensors and state dicts in a safetensors file.

The file is a standard safetensors file (an 8-byte header length, a JSON
header, then the raw little-endian bytes of each array), so other tools read
the weights directly: ``safetensors.numpy.load_file(path)`` or
``safetensors.torch.load_file(path)`` give the same arrays by name. A flat
``{name: Tensor}`` dict (a model's ``state_dict()``) keeps its names; tensors
inside nested containers are named by their path, joined with ".", e.g.
``state.0.exp_avg`` in an optimizer's state_dict.

Everything that is not an array (the structure of nested dicts, lists and
tuples, numbers, strings, None, which entries are Tensors and which NumPy
arrays, ``requires_grad``, a CRC-32 of each array) is one JSON document in the
header's metadata under the key ``"gpubp"``. Loading parses JSON and copies
bytes, never unpickles, so a file cannot run code. The safetensors library
checks the header (offsets inside the file, sizes that fit the shapes), the
CRCs catch damaged array bytes, and a file is written whole to a temporary
file and renamed over the target, so a crash leaves the old file or the new one.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from gpubp import dtypes
from gpubp.backends import get_backend
from gpubp.checkpoint import atomic_write
from gpubp.tensor import Tensor, _wrap

__all__ = ["save", "load", "SerializationError"]

FORMAT = "gpubp"
VERSION = 1
_META_KEY = "gpubp"


class SerializationError(ValueError):
    """A file that ``gp.load`` cannot read: damaged, or not a gpubp / safetensors file."""


def save(obj: Any, path: str | os.PathLike) -> None:
    """Writes ``obj`` to ``path`` (atomically; the usual suffix is ``.safetensors``).

    ``obj`` is a Tensor, a NumPy array (of a gpubp dtype), or dicts, lists and tuples of them and of
    numbers, strings, bools and None (nested as deep as needed): a model's
    ``state_dict()``, an optimizer's or a scheduler's. Dict keys may be strings,
    ints, floats, bools or None. CUDA tensors are copied to the host. The same
    tensor object reached twice is stored once and comes back as one object.
    NumPy scalars are stored as Python numbers.
    """
    safetensors_numpy = _safetensors_numpy()
    writer = _Writer()
    tree = writer.encode(obj, ())
    header = {"format": FORMAT, "version": VERSION, "tree": tree, "crc32": writer.crcs}
    metadata = {_META_KEY: json.dumps(header, allow_nan=False, separators=(",", ":"))}
    data = safetensors_numpy.save(writer.arrays, metadata=metadata)
    atomic_write(path, lambda f: f.write(data))


def load(path: str | os.PathLike, device: str = "cpu") -> Any:
    """Reads what ``save`` wrote, with its Tensors on ``device`` ("cpu", "cuda",
    "cuda:N") and its NumPy arrays as NumPy arrays.

    A safetensors file written by another tool (no gpubp metadata) loads as a
    flat ``{name: Tensor}`` dict. FileNotFoundError when ``path`` is missing;
    SerializationError naming the file when it is damaged, truncated, not a
    safetensors file, or holds a dtype gpubp lacks.
    """
    safetensors = _safetensors()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with safetensors.safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
            arrays = {name: _get_array(path, f, name) for name in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    except (safetensors.SafetensorError, OSError, ValueError) as err:
        raise SerializationError(f"{path}: not a gpubp file (not a readable safetensors file: {err})") from err
    backend = get_backend(device)
    raw = metadata.get(_META_KEY)
    if raw is None:  # another tool's safetensors file: its tensors by name
        return {name: _tensor(path, name, array, backend) for name, array in arrays.items()}
    try:
        header = json.loads(raw)
    except json.JSONDecodeError as err:
        raise SerializationError(f"{path}: damaged gpubp file (its metadata is not JSON: {err})") from err
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise SerializationError(f"{path}: not a gpubp file (its '{_META_KEY}' metadata is not gpubp's)")
    if header.get("version") != VERSION:
        raise SerializationError(
            f"{path}: gpubp file format version {header.get('version')} is not supported (this gpubp reads {VERSION})"
        )
    crcs = header.get("crc32")
    if not isinstance(crcs, dict) or crcs.keys() != arrays.keys():
        raise SerializationError(f"{path}: damaged gpubp file (its arrays do not match its metadata)")
    for name, array in arrays.items():
        if _crc32(array) != crcs[name]:
            raise SerializationError(f"{path}: damaged gpubp file (array {name!r} fails its CRC-32 check)")
    return _Reader(path, arrays, backend).decode(header.get("tree"))


class _Writer:
    """Turns an object into a JSON tree, collecting its arrays under unique names."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.crcs: dict[str, int] = {}
        self._names: dict[int, str] = {}  # id of a Tensor or array already stored -> its name
        self._keep: list[Any] = []  # keeps those objects alive, so their ids stay theirs

    def encode(self, obj: Any, where: tuple) -> Any:
        if obj is None or isinstance(obj, (bool, int, str)):
            return obj
        if isinstance(obj, float):
            return obj if math.isfinite(obj) else {"float": repr(obj)}
        if isinstance(obj, np.generic) and not isinstance(obj, np.void):
            return self.encode(obj.item(), where)
        if isinstance(obj, Tensor):
            node: dict[str, Any] = {"tensor": self._store(obj, obj.numpy(), where)}
            if obj.requires_grad:
                node["requires_grad"] = True
            return node
        if isinstance(obj, np.ndarray):
            return {"ndarray": self._store(obj, obj, where)}
        if isinstance(obj, list):
            return [self.encode(v, (*where, i)) for i, v in enumerate(obj)]
        if isinstance(obj, tuple):
            return {"tuple": [self.encode(v, (*where, i)) for i, v in enumerate(obj)]}
        if isinstance(obj, dict):
            items = []
            for key, value in obj.items():
                if not (key is None or isinstance(key, (str, int, float))) or (
                    isinstance(key, float) and not math.isfinite(key)
                ):
                    raise TypeError(f"gp.save: dict key {key!r} at {_where(where)} is not a string or finite number")
                items.append([key, self.encode(value, (*where, key))])
            return {"dict": items}
        hint = "; save its state_dict() instead" if hasattr(obj, "state_dict") else ""
        raise TypeError(
            f"gp.save: cannot save a {type(obj).__name__} at {_where(where)} (it stores tensors, NumPy arrays, "
            f"dicts, lists, tuples, numbers, strings and None){hint}"
        )

    def _store(self, obj: Any, array: np.ndarray, where: tuple) -> str:
        name = self._names.get(id(obj))
        if name is not None:
            return name
        try:
            dtypes.as_dtype(array.dtype)
        except TypeError as err:
            raise TypeError(f"gp.save: the array at {_where(where)}: {err}") from None
        name = ".".join(str(part) for part in where) or "tensor"
        if name in self.arrays:
            # Two paths can join to one name ({"a.b": x, "a": {"b": y}}): number the later one.
            n = 1
            while f"{name}#{n}" in self.arrays:
                n += 1
            name = f"{name}#{n}"
        # Little-endian and C order: what safetensors stores (it reads the buffer as is).
        array = np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")  # ascontiguousarray makes 0-d 1-d
        self.arrays[name] = array
        self.crcs[name] = _crc32(array)
        self._names[id(obj)] = name
        self._keep.append(obj)
        return name


class _Reader:
    """Turns the JSON tree back into objects, with the file's arrays."""

    def __init__(self, path: Path, arrays: dict[str, np.ndarray], backend: Any) -> None:
        self.path = path
        self.arrays = arrays
        self.backend = backend
        self._made: dict[tuple[str, str], Any] = {}  # each stored array becomes one object

    def decode(self, node: Any) -> Any:
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        if isinstance(node, dict) and len(node) >= 1:
            if "tensor" in node:
                tensor = self._array("tensor", node["tensor"])
                if node.get("requires_grad"):
                    tensor.requires_grad = True
                return tensor
            if "ndarray" in node:
                return self._array("ndarray", node["ndarray"])
            if isinstance(node.get("tuple"), list):
                return tuple(self.decode(v) for v in node["tuple"])
            items = node.get("dict")
            if isinstance(items, list) and all(
                isinstance(i, list) and len(i) == 2 and (i[0] is None or isinstance(i[0], (str, int, float)))
                for i in items
            ):
                return {key: self.decode(value) for key, value in items}
            if node.get("float") in ("nan", "inf", "-inf"):
                return float(node["float"])
        raise SerializationError(f"{self.path}: damaged gpubp file (unexpected {str(node)[:80]} in its structure)")

    def _array(self, kind: str, name: Any) -> Any:
        made = self._made.get((kind, name))
        if made is not None:
            return made
        array = self.arrays.get(name) if isinstance(name, str) else None
        if array is None:
            raise SerializationError(f"{self.path}: damaged gpubp file (no array named {name!r})")
        made = _tensor(self.path, name, array, self.backend) if kind == "tensor" else _own(array)
        self._made[(kind, name)] = made
        return made


def _get_array(path: Path, f: Any, name: str) -> np.ndarray:
    try:
        return f.get_tensor(name)
    except (KeyError, TypeError) as err:  # safetensors' NumPy layer has no such dtype (bfloat16, float8, ...)
        dtype = f.get_slice(name).get_dtype()
        raise SerializationError(f"{path}: array {name!r} has dtype {dtype}, which NumPy and gpubp lack") from err


def _tensor(path: Path, name: str, array: np.ndarray, backend: Any) -> Tensor:
    try:
        dtypes.as_dtype(array.dtype)
    except TypeError as err:
        raise SerializationError(f"{path}: array {name!r} cannot be a gpubp tensor: {err}") from None
    if backend.device == "cpu":
        return _wrap(_own(array), backend)
    return _wrap(backend.from_host(array), backend)


def _own(array: np.ndarray) -> np.ndarray:
    """The array if it is a writable, aligned, native-order array of its own; else a copy that is."""
    flags = array.flags
    if flags.writeable and flags.aligned and flags.c_contiguous and array.dtype.isnative:
        return array
    return np.array(array, dtype=array.dtype.newbyteorder("="), order="C")


def _crc32(array: np.ndarray) -> int:
    # Of the little-endian bytes, so a file checks the same on any machine.
    little = np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")
    return zlib.crc32(little.reshape(-1).view(np.uint8))


def _where(where: tuple) -> str:
    return "the top level" if not where else "".join(f"[{part!r}]" for part in where)


def _safetensors() -> Any:
    try:
        import safetensors
    except ImportError as err:  # a declared dependency; only a broken install lacks it
        raise ImportError("gp.save/gp.load need the safetensors package: pip install safetensors") from err
    return safetensors


def _safetensors_numpy() -> Any:
    _safetensors()
    import safetensors.numpy

    return safetensors.numpy
