"""Data: the IDX reader, MNIST-format and generated data sets, normalisation and batching."""

from gpubp.data.datasets import (
    DATASETS,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    DataNotFoundError,
    Dataset,
    DatasetError,
    load_dataset,
    load_idx_folder,
    make_spirals,
)
from gpubp.data.idx import IDXError, read_idx, read_images, read_labels, write_idx
from gpubp.data.loader import BatchLoader
from gpubp.data.normalize import Standardize

__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "BatchLoader",
    "Dataset",
    "DataNotFoundError",
    "DatasetError",
    "IDXError",
    "Standardize",
    "load_dataset",
    "load_idx_folder",
    "make_spirals",
    "read_idx",
    "read_images",
    "read_labels",
    "write_idx",
]
