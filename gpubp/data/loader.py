"""A minimal batch iterator: shuffles with a seed; on a GPU the data set stays on the device."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

import gpubp as gp
from gpubp.backends import get_backend
from gpubp.progress import plural
from gpubp.tensor import Tensor, _wrap


class BatchLoader:
    """Yields ``(x, y)`` tensor pairs on ``device``, ``batch_size`` rows at a time.

    The order of epoch ``e`` is a function of ``(seed, e)`` alone, not of any
    generator's history, so a run resumed at epoch ``e`` (even mid-epoch, with
    ``start``) sees exactly the batches an uninterrupted run would. On a GPU the
    whole data set is copied to the device once (Fashion-MNIST's training split
    is 188 MB in float32), each epoch's permutation once per epoch, and every
    batch is gathered on the device from them: no transfer per batch.

    >>> loader = BatchLoader(x, y, 128, shuffle=True, seed=0, device="cpu")
    >>> for xb, yb in loader.batches(epoch=3): ...
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        device: str = "cpu",
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"BatchLoader: {plural(len(x), 'input')} but {plural(len(y), 'label')}")
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"BatchLoader: batch_size must be a positive integer, got {batch_size!r}")
        if drop_last and len(x) < batch_size:
            raise ValueError(
                f"BatchLoader: drop_last with batch_size {batch_size} leaves no batch of {plural(len(x), 'sample')}"
            )
        self.x = x
        self.y = y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.device = device
        self.epoch = 0
        self._tensors: tuple[Tensor, Tensor] | None = None

    @property
    def samples(self) -> int:
        """Samples per epoch (fewer than len(x) when drop_last drops a partial batch)."""
        return len(self) * self.batch_size if self.drop_last else len(self.x)

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(len(self.x), self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def order(self, epoch: int) -> np.ndarray:
        """The sample indices of epoch ``epoch`` in the order they are visited."""
        if not self.shuffle:
            return np.arange(len(self.x))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.x))

    def tensors(self) -> tuple[Tensor, Tensor]:
        """The whole data set as tensors on the device (copied there once; on the
        CPU the arrays themselves, contiguous)."""
        if self._tensors is None:
            if self.device == "cpu":
                backend = get_backend("cpu")
                self._tensors = (_wrap(np.ascontiguousarray(self.x), backend), _wrap(np.asarray(self.y), backend))
            else:
                self._tensors = (gp.tensor(self.x, device=self.device), gp.tensor(self.y, device=self.device))
        return self._tensors

    def index_batches(self, epoch: int = 0, start: int = 0) -> Iterator[Tensor]:
        """The sample indices of each batch of epoch ``epoch`` from batch ``start`` on,
        as int64 tensors on the device: slices of the epoch's permutation, which is
        copied to the device once. Gather a batch with ``x[index]`` (see ``tensors``)."""
        order = gp.tensor(self.order(epoch).astype(np.int64), device=self.device)
        backend, data = order.backend, order.data
        for b in range(start, len(self)):
            yield _wrap(data[b * self.batch_size : (b + 1) * self.batch_size], backend)

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of epoch ``epoch``, from batch index ``start`` on, as tensors on
        the device: gathered there, or slices of the data set when not shuffling."""
        x, y = self.tensors()
        if not self.shuffle:
            for b in range(start, len(self)):
                rows = slice(b * self.batch_size, (b + 1) * self.batch_size)
                yield _wrap(x.data[rows], x.backend), _wrap(y.data[rows], y.backend)
            return
        for index in self.index_batches(epoch, start):
            yield x[index], y[index]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of epoch ``self.epoch``; each ``iter()`` then moves on to the next epoch."""
        epoch = self.epoch
        self.epoch += 1
        return self.batches(epoch)
