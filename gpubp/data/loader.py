"""A minimal batch iterator: shuffles with a seed, shards across ranks; on a GPU the data set stays on the device."""

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

    With ``world_size`` > 1 it is PyTorch's DistributedSampler under a DataLoader:
    every rank draws the same (seed, epoch) permutation and takes a disjoint,
    equal-sized shard of it, every ``world_size``-th sample from position ``rank``
    on, then batches its shard (``batch_size`` is per rank). So batch ``k`` of all
    ranks together is batch ``k`` of one process with ``batch_size × world_size``:
    the same samples, split. When the data does not divide among the ranks, the
    permutation is padded with its own first samples, as DistributedSampler pads
    (up to ``world_size − 1`` repeats an epoch), or with ``drop_last`` cut to a
    multiple of ``world_size``; every rank then has as many batches as the others.

    >>> loader = BatchLoader(x, y, 128, shuffle=True, seed=0, device="cpu")
    >>> for xb, yb in loader.batches(epoch=3): ...
    >>> shard = BatchLoader(x, y, 64, shuffle=True, seed=0, rank=1, world_size=2)
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
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"BatchLoader: {plural(len(x), 'input')} but {plural(len(y), 'label')}")
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"BatchLoader: batch_size must be a positive integer, got {batch_size!r}")
        if not _is_index(world_size) or world_size < 1:
            raise ValueError(f"BatchLoader: world_size must be a positive integer, got {world_size!r}")
        if not _is_index(rank) or not 0 <= rank < world_size:
            raise ValueError(f"BatchLoader: rank must be in [0, {world_size}) (the world size), got {rank!r}")
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.x = x
        shard = self.shard_size
        if drop_last and shard < batch_size:
            held = plural(len(x), "sample") + (f" ({shard} per rank)" if world_size > 1 else "")
            raise ValueError(f"BatchLoader: drop_last with batch_size {batch_size} leaves no batch of {held}")
        self.y = y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.device = device
        self.epoch = 0
        self._tensors: tuple[Tensor, Tensor] | None = None

    @property
    def shard_size(self) -> int:
        """This rank's samples per epoch before batching: all of them with one rank, else
        ``ceil(len(x) / world_size)`` (``floor`` with drop_last)."""
        n, ranks = len(self.x), self.world_size
        return n // ranks if self.drop_last else -(-n // ranks)

    @property
    def samples(self) -> int:
        """Samples per epoch on this rank (fewer than its shard when drop_last drops a partial batch)."""
        return len(self) * self.batch_size if self.drop_last else self.shard_size

    def __len__(self) -> int:
        """Batches per epoch (the same on every rank)."""
        full, rest = divmod(self.shard_size, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def order(self, epoch: int) -> np.ndarray:
        """The sample indices of epoch ``epoch`` in the order one process visits them:
        a function of (seed, epoch) alone, the same on every rank."""
        if not self.shuffle:
            return np.arange(len(self.x))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.x))

    def indices(self, epoch: int) -> np.ndarray:
        """This rank's sample indices of epoch ``epoch``, in the order it visits them
        (``order`` itself with one rank; see the class docstring for the shard)."""
        order = self.order(epoch)
        ranks = self.world_size
        if ranks == 1:
            return order
        total = self.shard_size * ranks
        # DistributedSampler's padding: the permutation again from its start (np.resize repeats it).
        order = order[:total] if self.drop_last else np.resize(order, total)
        return order[self.rank :: ranks]

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
        order = gp.tensor(self.indices(epoch).astype(np.int64), device=self.device)
        backend, data = order.backend, order.data
        for b in range(start, len(self)):
            yield _wrap(data[b * self.batch_size : (b + 1) * self.batch_size], backend)

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of epoch ``epoch``, from batch index ``start`` on, as tensors on
        the device: gathered there, or slices of the data set when not shuffling."""
        x, y = self.tensors()
        if not self.shuffle and self.world_size == 1:
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


def _is_index(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
