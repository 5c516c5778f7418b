"""The batch iterator, normalisation and the generated data set."""

from __future__ import annotations

import numpy as np
import pytest

from gpubp.data import BatchLoader, Standardize, load_dataset, make_spirals


def _data(n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    return x, np.arange(n, dtype=np.int64)


def _labels(loader: BatchLoader, epoch: int = 0, start: int = 0) -> list[list[int]]:
    return [yb.numpy().tolist() for _, yb in loader.batches(epoch, start)]


def test_batches_in_order_without_shuffle(device: str) -> None:
    x, y = _data(10)
    loader = BatchLoader(x, y, 4, device=device)
    assert len(loader) == 3 and loader.samples == 10
    assert _labels(loader) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    xb, yb = next(loader.batches())
    assert xb.device.startswith(device) and yb.device.startswith(device)
    assert xb.dtype == np.float32 and yb.dtype == np.int64
    np.testing.assert_array_equal(xb.numpy(), x[:4])


def test_drop_last_drops_the_partial_batch() -> None:
    loader = BatchLoader(*_data(10), 4, drop_last=True)
    assert len(loader) == 2 and loader.samples == 8
    assert [len(b) for b in _labels(loader)] == [4, 4]


def test_shuffle_visits_every_sample_once_in_an_order_fixed_by_seed_and_epoch() -> None:
    x, y = _data(50)
    loader = BatchLoader(x, y, 8, shuffle=True, seed=3)
    first = sum(_labels(loader, epoch=0), [])
    assert sorted(first) == list(range(50)) and first != list(range(50))
    assert sum(_labels(loader, epoch=0), []) == first  # same (seed, epoch): same order
    assert sum(_labels(loader, epoch=1), []) != first  # a new order each epoch
    again = BatchLoader(x, y, 8, shuffle=True, seed=3)
    assert sum(_labels(again, epoch=1), []) == sum(_labels(loader, epoch=1), [])
    other = BatchLoader(x, y, 8, shuffle=True, seed=4)
    assert sum(_labels(other, epoch=0), []) != first


def test_inputs_stay_paired_with_their_labels() -> None:
    x, y = _data(30)
    for xb, yb in BatchLoader(x, y, 7, shuffle=True, seed=0).batches(epoch=2):
        np.testing.assert_array_equal(xb.numpy(), x[yb.numpy()])


def test_start_resumes_mid_epoch() -> None:
    loader = BatchLoader(*_data(20), 3, shuffle=True, seed=1)
    assert _labels(loader, epoch=4, start=2) == _labels(loader, epoch=4)[2:]


def test_iterating_moves_on_to_the_next_epoch() -> None:
    loader = BatchLoader(*_data(20), 5, shuffle=True, seed=1)
    first = [yb.numpy().tolist() for _, yb in loader]
    second = [yb.numpy().tolist() for _, yb in loader]
    assert first == _labels(loader, 0) and second == _labels(loader, 1)


def _shards(n: int, batch: int, world: int, **kwargs: object) -> list[BatchLoader]:
    x, y = _data(n)
    return [BatchLoader(x, y, batch, shuffle=True, seed=5, rank=r, world_size=world, **kwargs) for r in range(world)]


@pytest.mark.parametrize("world", [2, 3, 4])
def test_ranks_take_disjoint_equal_shards_of_the_same_permutation(world: int) -> None:
    shards = _shards(24, 2, world)
    order = shards[0].order(epoch=1)
    assert all(np.array_equal(s.order(epoch=1), order) for s in shards)  # a function of (seed, epoch) alone
    parts = [sum(_labels(s, epoch=1), []) for s in shards]
    assert [len(p) for p in parts] == [24 // world] * world
    assert sorted(sum(parts, [])) == list(range(24))  # disjoint, and every sample once
    assert parts[1] == order[1::world].tolist()  # DistributedSampler's shard: every world-th from the rank


@pytest.mark.parametrize("world", [2, 4])
def test_batch_k_of_all_ranks_is_batch_k_of_one_process_with_the_global_batch(world: int) -> None:
    x, y = _data(50)
    one = _labels(BatchLoader(x, y, 4 * world, shuffle=True, seed=5), epoch=3, start=2)
    ranks = [_labels(s, epoch=3, start=2) for s in _shards(50, 4, world)]
    assert len({len(r) for r in ranks}) == 1 and len(ranks[0]) == len(one)  # every rank the same number of steps
    for k, batch in enumerate(one):
        together = sum((r[k] for r in ranks), [])
        if k < len(one) - 1:
            assert sorted(together) == sorted(batch)
        else:  # the last, partial batch: with padding it repeats the permutation's first samples
            assert set(batch) <= set(together) and len(together) - len(batch) < world


def test_a_shard_that_does_not_divide_is_padded_or_cut_as_distributed_sampler() -> None:
    padded = _shards(10, 2, 4)
    order = padded[0].order(0).tolist()
    assert [s.shard_size for s in padded] == [3] * 4 and [len(s) for s in padded] == [2] * 4
    assert sum((s.indices(0).tolist() for s in padded), []) != order
    assert sorted(sum((s.indices(0).tolist() for s in padded), [])) == sorted(order + order[:2])
    cut = _shards(10, 2, 4, drop_last=True)
    assert [s.shard_size for s in cut] == [2] * 4 and [s.samples for s in cut] == [2] * 4
    assert sorted(sum((s.indices(0).tolist() for s in cut), [])) == sorted(order[:8])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"world_size": 0}, "world_size must be a positive integer"),
        ({"rank": 2, "world_size": 2}, "rank must be in \\[0, 2\\)"),
        ({"rank": -1, "world_size": 2}, "rank must be in"),
        ({"batch_size": 3, "world_size": 4, "drop_last": True}, "leaves no batch of 10 samples \\(2 per rank\\)"),
    ],
)
def test_invalid_shard_arguments(kwargs: dict, message: str) -> None:
    kwargs = {"batch_size": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        BatchLoader(*_data(10), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"batch_size": 20, "drop_last": True}, "leaves no batch"),
    ],
)
def test_invalid_loader_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BatchLoader(*_data(10), **kwargs)


def test_inputs_and_labels_must_have_the_same_length() -> None:
    x, y = _data(10)
    with pytest.raises(ValueError, match="10 inputs but 9 labels"):
        BatchLoader(x, y[:9], 4)


def test_standardize_uses_the_training_statistics() -> None:
    x = np.array([[0.0, 2.0], [4.0, 6.0]], dtype=np.float32)
    norm = Standardize.fit(x)
    assert norm.mean == 3.0 and norm.std == pytest.approx(np.sqrt(5.0))
    out = norm(x)
    assert out.dtype == np.float32 and abs(out.mean()) < 1e-7 and out.std() == pytest.approx(1.0)
    assert Standardize.from_dict(norm.to_dict()) == norm
    assert Standardize.fit(np.ones((3, 3))).std == 1.0  # constant input: no division by zero


def test_spirals_are_generated_deterministically() -> None:
    a, b = make_spirals(train=60, test=30), load_dataset("spirals")
    assert a.x_train.shape == (60, 2) and a.x_test.shape == (30, 2) and a.x_train.dtype == np.float32
    assert set(a.y_train.tolist()) == {0, 1, 2} and len(b.classes) == 3
    np.testing.assert_array_equal(make_spirals(train=60, test=30).x_train, a.x_train)
    with pytest.raises(ValueError, match="takes no data folder"):
        load_dataset("spirals", "/tmp")
