"""A minimal batch iterator: shuffles with a seed, moves each batch to the device once."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

import gpubp as gp
from gpubp.tensor import Tensor


class BatchLoader:
    """Yields ``(x, y)`` tensor pairs on ``device``, ``batch_size`` rows at a time.

    The order of epoch ``e`` is a function of ``(seed, e)`` alone, not of any
    generator's history, so a run resumed at epoch ``e`` (even mid-epoch, with
    ``start``) sees exactly the batches an uninterrupted run would. Each batch is
    gathered on the host and copied to the device in one transfer; the ops of
    the model then run entirely on the device.

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
            raise ValueError(f"BatchLoader: {len(x)} inputs but {len(y)} labels")
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"BatchLoader: batch_size must be a positive integer, got {batch_size!r}")
        if drop_last and len(x) < batch_size:
            raise ValueError(f"BatchLoader: drop_last with batch_size {batch_size} leaves no batch of {len(x)} samples")
        self.x = x
        self.y = y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.device = device
        self.epoch = 0

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

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of epoch ``epoch``, from batch index ``start`` on."""
        order = self.order(epoch)
        for b in range(start, len(self)):
            index = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield gp.tensor(self.x[index], device=self.device), gp.tensor(self.y[index], device=self.device)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of epoch ``self.epoch``; each ``iter()`` then moves on to the next epoch."""
        epoch = self.epoch
        self.epoch += 1
        return self.batches(epoch)
