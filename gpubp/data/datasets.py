"""Data sets: MNIST-format folders (Fashion-MNIST by default) and generated spirals.

``load_dataset(name, data_dir)`` returns a ``Dataset`` of float32 features
(images flattened and scaled to [0, 1]) and int64 labels, fully read and
checked: the four IDX files agree on counts and image size, and every label is
a valid class. ``splits=("test",)`` reads only the test split (evaluating a
checkpoint needs no more: its normalisation is saved in it). Nothing is
fetched from the network.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpubp.data.idx import read_images, read_labels
from gpubp.progress import plural

DATASETS = ("fashion-mnist", "mnist", "spirals")

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGITS = tuple(str(i) for i in range(10))

# The split's file prefix in an MNIST-format folder.
_PREFIXES = {"train": "train", "test": "t10k"}
SPLITS = tuple(_PREFIXES)


class DatasetError(ValueError):
    """Files that are each valid but do not form a data set together (counts, shapes)."""


class DataNotFoundError(FileNotFoundError):
    """The data set's folder or one of its files is missing; the message says how to get it."""


@dataclass(frozen=True)
class Dataset:
    """A train and a test split. ``x_*`` are float32 (N, features), ``y_*`` int64 (N,)
    in [0, len(classes)); a split that was not loaded has no rows."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    source: str

    @property
    def features(self) -> int:
        return int(self.x_train.shape[1])

    def describe(self) -> str:
        # "300 train and 100 test samples", or "1 test sample" when only the test split was read.
        counts = [f"{len(x)} {split}" for split, x in (("train", self.x_train), ("test", self.x_test)) if len(x)]
        samples = "sample" if len(self.x_train) + len(self.x_test) == 1 else "samples"
        return (
            f"{self.name}: {' and '.join(counts)} {samples}, {plural(self.features, 'feature')}, "
            f"{plural(len(self.classes), 'class', 'classes')} (from {self.source})"
        )


def load_dataset(
    name: str = "fashion-mnist", data_dir: str | os.PathLike | None = None, splits: tuple[str, ...] = SPLITS
) -> Dataset:
    """Loads a data set by name: "fashion-mnist" (from ``data_dir``, by default the
    Debian package's folder), "mnist" (from ``data_dir``) or "spirals" (generated).
    ``splits`` says which of "train" and "test" to read; the others have no rows."""
    if name == "spirals":
        if data_dir is not None:
            raise DatasetError("the spirals data set is generated; it takes no data folder (--data)")
        return make_spirals()
    if name == "fashion-mnist":
        return load_idx_folder(data_dir or FASHION_MNIST_DIR, name, FASHION_MNIST_CLASSES, splits)
    if name == "mnist":
        if data_dir is None:
            raise DataNotFoundError(
                "MNIST has no default folder: pass --data DIR naming a folder that holds "
                "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
                "and t10k-labels-idx1-ubyte.gz"
            )
        return load_idx_folder(data_dir, name, DIGITS, splits)
    raise DatasetError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")


def load_idx_folder(
    folder: str | os.PathLike, name: str, classes: tuple[str, ...] = DIGITS, splits: tuple[str, ...] = SPLITS
) -> Dataset:
    """Reads the MNIST-format files of ``folder`` (``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``,
    each optionally ``.gz``), of the ``splits`` asked for ("train", "test"); a split
    not asked for is neither read nor needed, and has no rows. Images become
    float32 in [0, 1], one row per image."""
    folder = Path(folder)
    unknown = set(splits) - set(SPLITS)
    if unknown or not splits:
        raise ValueError(f"load_idx_folder: splits must be among {SPLITS}, got {splits!r}")
    if folder.exists() and not folder.is_dir():
        raise DataNotFoundError(
            f"{name}: {folder} is a file, not a folder; pass --data DIR naming the folder that holds "
            "the four MNIST-format files (train-*/t10k-* images and labels)"
        )
    paths = {(split, kind): _find(folder, split, kind, name) for split in splits for kind in ("images", "labels")}
    loaded = {}
    for split in splits:
        images_path, labels_path = paths[split, "images"], paths[split, "labels"]
        images = read_images(images_path)
        labels = read_labels(labels_path, classes=len(classes))
        if len(images) != len(labels):
            raise DatasetError(
                f"{images_path} holds {plural(len(images), 'image')} but {labels_path} holds "
                f"{plural(len(labels), 'label')}; the two files of a split must have the same count"
            )
        if len(images) == 0:
            raise DatasetError(f"{images_path} holds no images")
        loaded[split] = (images, labels)
    if len(loaded) == 2 and loaded["train"][0].shape[1:] != loaded["test"][0].shape[1:]:
        raise DatasetError(
            f"{paths['train', 'images']} has images of {loaded['train'][0].shape[1:]} pixels but "
            f"{paths['test', 'images']} of {loaded['test'][0].shape[1:]}; both splits must have the same size"
        )
    features = int(np.prod(next(iter(loaded.values()))[0].shape[1:]))
    arrays = {split: (_flatten_pixels(images), labels) for split, (images, labels) in loaded.items()}
    empty = (np.empty((0, features), dtype=np.float32), np.empty(0, dtype=np.int64))
    (x_train, y_train), (x_test, y_test) = arrays.get("train", empty), arrays.get("test", empty)
    return Dataset(
        name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, classes=classes, source=str(folder)
    )


def make_spirals(train: int = 3000, test: int = 1000, classes: int = 3, noise: float = 0.15, seed: int = 0) -> Dataset:
    """Interleaved 2-D spirals, one arm per class: a small data set that needs no
    download and that a linear model cannot separate (useful for quick runs and tests).
    The same arguments always give the same points."""
    if train <= 0 or test <= 0 or classes < 2:
        raise ValueError(f"make_spirals: need train > 0, test > 0 and classes >= 2, got {train}, {test}, {classes}")
    rng = np.random.default_rng(seed)
    n = train + test
    labels = np.arange(n, dtype=np.int64) % classes
    radius = rng.random(n)
    angle = labels * (2 * math.pi / classes) + radius * 3 * math.pi
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    points += rng.normal(scale=noise * radius[:, None] / 2, size=points.shape)
    order = rng.permutation(n)
    points, labels = points[order].astype(np.float32), labels[order]
    return Dataset(
        name="spirals",
        x_train=points[:train],
        y_train=labels[:train],
        x_test=points[train:],
        y_test=labels[train:],
        classes=tuple(f"arm {i}" for i in range(classes)),
        source="generated",
    )


def _flatten_pixels(images: np.ndarray) -> np.ndarray:
    out = images.reshape(len(images), -1).astype(np.float32)
    out *= np.float32(1 / 255)
    return out


def _find(folder: Path, split: str, kind: str, name: str) -> Path:
    """The file of one split and kind, under the names MNIST mirrors use."""
    dims = 3 if kind == "images" else 1
    stem = f"{_PREFIXES[split]}-{kind}"
    names = [f"{stem}-idx{dims}-ubyte", f"{stem}.idx{dims}-ubyte"]
    for candidate in names:
        for suffix in (".gz", ""):
            path = folder / (candidate + suffix)
            if path.is_file():
                return path
    if not folder.is_dir():
        problem = f"data folder {folder} does not exist"
    else:
        problem = f"{folder} has no {names[0]}.gz (nor {names[0]})"
    raise DataNotFoundError(f"{name}: {problem}. {_how_to_get(name)}")


def _how_to_get(name: str) -> str:
    if name == "fashion-mnist":
        return (
            "Install Fashion-MNIST with `apt-get install dataset-fashion-mnist` (Debian, as root; it fills "
            f"{FASHION_MNIST_DIR}), or pass --data DIR naming a folder with the four MNIST-format files"
        )
    return "Pass --data DIR naming a folder with the four MNIST-format files (train-*/t10k-* images and labels)"
