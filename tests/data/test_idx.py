"""The IDX reader: valid files (gzip and plain) and each kind of damage."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from gpubp.data import (
    FASHION_MNIST_DIR,
    DataNotFoundError,
    DatasetError,
    IDXError,
    load_dataset,
    load_idx_folder,
    read_idx,
    read_images,
    read_labels,
    write_idx,
)


def _images(n: int = 5) -> np.ndarray:
    return np.arange(n * 4 * 3, dtype=np.uint8).reshape(n, 4, 3)


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_images_round_trip_plain_and_gzip(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    write_idx(path, _images())
    assert path.read_bytes()[:2] == (b"\x1f\x8b" if name.endswith(".gz") else b"\x00\x00")
    out = read_images(path)
    np.testing.assert_array_equal(out, _images())
    assert out.dtype == np.uint8 and out.flags.writeable


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_every_type_code_round_trips_in_native_order(tmp_path: Path, dtype: str) -> None:
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    write_idx(tmp_path / "a.idx", array)
    out = read_idx(tmp_path / "a.idx")
    np.testing.assert_array_equal(out, array)
    assert out.dtype.isnative


def test_header_is_big_endian_as_in_the_specification(tmp_path: Path) -> None:
    write_idx(tmp_path / "l", np.array([7, 1], dtype=np.uint8))
    assert (tmp_path / "l").read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 1])


def test_labels_are_int64_and_checked_against_the_class_count(tmp_path: Path) -> None:
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, np.array([0, 9, 3], dtype=np.uint8))
    assert read_labels(path, classes=10).dtype == np.int64
    write_idx(path, np.array([0, 9, 10, 3], dtype=np.uint8))
    with pytest.raises(IDXError, match=r"labels-idx1-ubyte: label 10 at index 2 is out of range for 10 classes"):
        read_labels(path, classes=10)


def test_wrong_magic_number_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(b"\x08\x03\x00\x00" + bytes(20))
    with pytest.raises(IDXError, match=r"bad-idx3-ubyte: not an IDX file \(magic number 0x08030000"):
        read_idx(path)


def test_unknown_type_code_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "odd"
    path.write_bytes(bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 5]))
    with pytest.raises(IDXError, match="not an IDX file"):
        read_idx(path)


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (3, r"shorter than the 4-byte magic number"),
        (10, r"the header needs 16 bytes for 3 dimensions"),
        (16 + 59, r"truncated IDX file \(the header says shape \(5, 4, 3\) of uint8, 60 data bytes; found 59\)"),
    ],
)
@pytest.mark.parametrize("compressed", [False, True])
def test_truncated_file_names_the_file(tmp_path: Path, cut: int, message: str, compressed: bool) -> None:
    full = tmp_path / "full"
    write_idx(full, _images())
    path = tmp_path / ("short-idx3-ubyte" + (".gz" if compressed else ""))
    data = full.read_bytes()[:cut]
    path.write_bytes(gzip.compress(data) if compressed else data)
    with pytest.raises(IDXError, match="short-idx3-ubyte.*" + message):
        read_images(path)


def test_truncated_gzip_stream_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "cut-idx3-ubyte.gz"
    write_idx(path, np.random.default_rng(0).integers(0, 255, (50, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(IDXError, match=r"cut-idx3-ubyte.gz: damaged or truncated gzip data"):
        read_idx(path)


def test_damaged_gzip_stream_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.gz"
    write_idx(path, _images(50))
    data = bytearray(path.read_bytes())
    data[20:40] = bytes(20)
    path.write_bytes(bytes(data))
    with pytest.raises(IDXError, match=r"bad.gz: damaged or truncated gzip data"):
        read_idx(path)


def test_trailing_bytes_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "long"
    write_idx(path, _images())
    path.write_bytes(path.read_bytes() + b"\x00\x01")
    with pytest.raises(IDXError, match=r"long: 2 unexpected bytes after the data"):
        read_idx(path)


def test_images_and_labels_must_have_the_right_shape(tmp_path: Path) -> None:
    write_idx(tmp_path / "labels", np.zeros(3, dtype=np.uint8))
    write_idx(tmp_path / "images", _images())
    with pytest.raises(IDXError, match="expected images"):
        read_images(tmp_path / "labels")
    with pytest.raises(IDXError, match="expected labels"):
        read_labels(tmp_path / "images")


def test_mnist_folder_loads_as_scaled_float32(mnist_like_dir: Path) -> None:
    data = load_idx_folder(mnist_like_dir, "mnist")
    assert data.x_train.shape == (300, 100) and data.x_train.dtype == np.float32
    assert data.y_train.dtype == np.int64 and set(data.y_train) == set(range(10))
    assert data.x_test.shape == (100, 100)
    assert data.x_train.min() >= 0.0 and data.x_train.max() == 1.0


def test_plain_files_and_dotted_names_are_found(tmp_path: Path) -> None:
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / f"{prefix}-images.idx3-ubyte", _images(4))
        write_idx(tmp_path / f"{prefix}-labels.idx1-ubyte", np.array([0, 1, 2, 3], dtype=np.uint8))
    data = load_idx_folder(tmp_path, "mnist")
    assert data.x_train.shape == (4, 12)


def test_image_and_label_counts_must_match(mnist_like_dir: Path) -> None:
    write_idx(mnist_like_dir / "t10k-labels-idx1-ubyte.gz", np.zeros(99, dtype=np.uint8))
    with pytest.raises(
        DatasetError, match=r"t10k-images-idx3-ubyte.gz holds 100 images but .*t10k-labels-idx1-ubyte.gz"
    ):
        load_idx_folder(mnist_like_dir, "mnist")


def test_splits_must_have_the_same_image_size(mnist_like_dir: Path) -> None:
    write_idx(mnist_like_dir / "t10k-images-idx3-ubyte.gz", np.zeros((100, 9, 9), dtype=np.uint8))
    with pytest.raises(DatasetError, match="same size"):
        load_idx_folder(mnist_like_dir, "mnist")


def test_missing_folder_says_how_to_get_the_data(tmp_path: Path) -> None:
    with pytest.raises(
        DataNotFoundError, match=r"data folder .*nowhere does not exist.*apt-get install dataset-fashion-mnist.*--data"
    ):
        load_dataset("fashion-mnist", tmp_path / "nowhere")


def test_missing_file_is_named(mnist_like_dir: Path) -> None:
    (mnist_like_dir / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataNotFoundError, match=r"has no train-labels-idx1-ubyte.gz"):
        load_dataset("mnist", mnist_like_dir)


def test_mnist_needs_a_folder() -> None:
    with pytest.raises(DataNotFoundError, match="MNIST has no default folder"):
        load_dataset("mnist")


@pytest.mark.skipif(not Path(FASHION_MNIST_DIR).is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist_test_split() -> None:
    images = read_images(Path(FASHION_MNIST_DIR) / "t10k-images-idx3-ubyte.gz")
    labels = read_labels(Path(FASHION_MNIST_DIR) / "t10k-labels-idx1-ubyte.gz", classes=10)
    assert images.shape == (10000, 28, 28)
    assert np.bincount(labels).tolist() == [1000] * 10


def test_the_test_split_alone_is_read_without_the_training_files(mnist_like_dir: Path) -> None:
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (mnist_like_dir / name).unlink()
    data = load_dataset("mnist", mnist_like_dir, splits=("test",))
    assert data.x_test.shape == (100, 100) and data.x_train.shape == (0, 100) and data.y_train.shape == (0,)
    assert data.features == 100
    assert data.describe().startswith("mnist: 100 test samples, 100 features, 10 classes")
    with pytest.raises(DataNotFoundError, match="has no train-images-idx3-ubyte.gz"):
        load_dataset("mnist", mnist_like_dir)
    with pytest.raises(ValueError, match="splits must be among"):
        load_idx_folder(mnist_like_dir, "mnist", splits=("validation",))


def test_a_file_given_as_the_data_folder_is_named_a_file(mnist_like_dir: Path) -> None:
    gz = mnist_like_dir / "t10k-images-idx3-ubyte.gz"
    with pytest.raises(DataNotFoundError, match=r"t10k-images-idx3-ubyte.gz is a file, not a folder; pass --data DIR"):
        load_dataset("fashion-mnist", gz)


def test_counts_of_one_are_singular_in_messages(tmp_path: Path) -> None:
    write_idx(tmp_path / "one", np.zeros(1, dtype=np.uint8))
    (tmp_path / "one").write_bytes((tmp_path / "one").read_bytes() + b"\x00")
    with pytest.raises(IDXError, match="1 unexpected byte after"):
        read_idx(tmp_path / "one")
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", _images(1))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.zeros(1, dtype=np.uint8))
    data = load_idx_folder(tmp_path, "mnist")
    assert data.describe().startswith("mnist: 1 train and 1 test samples, 12 features, 10 classes")
    assert load_idx_folder(tmp_path, "mnist", splits=("test",)).describe().startswith("mnist: 1 test sample, ")
