"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number
of dimensions), one big-endian uint32 per dimension, then the values in C
order, big-endian. The files usually ship gzip-compressed; both forms are read.

Every check happens before an array is returned, so a file is either read whole
and consistent or rejected with an ``IDXError`` that names it.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from gpubp.progress import plural

# Type code -> big-endian dtype, as the format's specification lists them.
TYPE_CODES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES_BY_KIND = {(dt.kind, dt.itemsize): code for code, dt in TYPE_CODES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


class IDXError(ValueError):
    """A file that is not a valid IDX file (the message names the file and the problem)."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in an IDX file (gzip-compressed or plain), in native byte order.

    Raises ``IDXError`` naming the file when the magic number is wrong, the data
    is shorter or longer than the header says, or the gzip stream is damaged;
    ``FileNotFoundError`` when it does not exist.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise IDXError(f"{path}: truncated IDX file ({plural(len(raw), 'byte')}, shorter than the 4-byte magic number)")
    zero, code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or code not in TYPE_CODES:
        raise IDXError(
            f"{path}: not an IDX file (magic number 0x{raw[:4].hex()}; expected 0x0000 followed by a type code "
            f"among {', '.join(f'0x{c:02x}' for c in TYPE_CODES)} and the number of dimensions)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IDXError(
            f"{path}: truncated IDX file (the header needs {header} bytes for {plural(ndim, 'dimension')}, "
            f"got {len(raw)})"
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = TYPE_CODES[code]
    expected = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    got = len(raw) - header
    if got < expected:
        raise IDXError(
            f"{path}: truncated IDX file (the header says shape {shape} of {dtype.name}, "
            f"{expected} data bytes; found {got})"
        )
    if got > expected:
        raise IDXError(f"{path}: {plural(got - expected, 'unexpected byte')} after the data of shape {shape}")
    array = np.frombuffer(raw, dtype=dtype, count=expected // dtype.itemsize, offset=header).reshape(shape)
    # A native-order copy: frombuffer's view is read-only and may be big-endian.
    return array.astype(dtype.newbyteorder("="))


def read_images(path: str | os.PathLike) -> np.ndarray:
    """Images (N, rows, cols) of uint8 from an IDX file; IDXError if it holds anything else."""
    array = read_idx(path)
    if array.ndim != 3 or array.dtype != np.uint8:
        raise IDXError(f"{path}: expected images (a 3-D uint8 array), found shape {array.shape} of {array.dtype}")
    return array


def read_labels(path: str | os.PathLike, classes: int | None = None) -> np.ndarray:
    """Labels (N,) as int64 from a 1-D uint8 IDX file.

    With ``classes``, every label must be in [0, classes); IDXError names the
    first one that is not.
    """
    array = read_idx(path)
    if array.ndim != 1 or array.dtype != np.uint8:
        raise IDXError(f"{path}: expected labels (a 1-D uint8 array), found shape {array.shape} of {array.dtype}")
    labels = array.astype(np.int64)
    if classes is not None and labels.size and labels.max() >= classes:
        index = int(np.argmax(labels >= classes))
        raise IDXError(
            f"{path}: label {labels[index]} at index {index} is out of range for {classes} classes "
            f"(labels must be in [0, {classes - 1}])"
        )
    return labels


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Writes ``array`` as an IDX file; gzip-compressed when ``compress`` is true
    (by default when the name ends in ``.gz``)."""
    path = Path(path)
    array = np.asarray(array)
    code = _CODES_BY_KIND.get((array.dtype.kind, array.dtype.itemsize))
    if code is None or array.ndim > 255:
        raise ValueError(
            f"write_idx: cannot store an array of {array.dtype} with {plural(array.ndim, 'dimension')} as IDX"
        )
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    body = np.ascontiguousarray(array, dtype=TYPE_CODES[code]).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(header + body)


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it starts with the gzip magic number
    (so a plain file named .gz, or a gzip file without the suffix, still reads)."""
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        # EOFError: the stream ends early; BadGzipFile (an OSError) and zlib.error: damaged data.
        raise IDXError(f"{path}: damaged or truncated gzip data ({err})") from err
