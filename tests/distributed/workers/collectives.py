"""Checks gp.distributed's collectives on CPU tensors in every rank; exits non-zero
(the assertion aborts the job) on the first wrong value. Run under mpirun -n N."""

from __future__ import annotations

import numpy as np

import gpubp as gp
import gpubp.distributed as dist


def main() -> None:
    dist.init_process_group()
    rank, world = dist.get_rank(), dist.get_world_size()
    assert dist.is_initialized() and dist.get_backend() == "mpi"
    ranks = np.arange(world, dtype=np.float64)

    t = gp.tensor([rank + 1.0, 10.0 * rank])
    dist.all_reduce(t)  # sum
    np.testing.assert_array_equal(t.numpy(), [(ranks + 1).sum(), 10 * ranks.sum()])

    t = gp.tensor([rank + 1.0], dtype="float64")
    dist.all_reduce(t, op=dist.ReduceOp.AVG)
    assert t.item() == (ranks + 1).mean()

    t = gp.tensor([rank, -rank], dtype="int64")
    dist.all_reduce(t, "max")
    assert t.tolist() == [world - 1, 0]
    dist.all_reduce(t, "min")
    assert t.tolist() == [world - 1, 0]

    half = gp.tensor([0.5 * (rank + 1)], dtype="float16")  # summed in float32, rounded once
    dist.all_reduce(half)
    assert half.dtype == np.float16 and half.item() == 0.5 * (ranks + 1).sum()

    strided = gp.tensor(np.arange(8.0, dtype=np.float32).reshape(2, 4) * (rank + 1))[:, ::2]  # not contiguous
    dist.all_reduce(strided)
    np.testing.assert_array_equal(strided.numpy(), np.array([[0.0, 2.0], [4.0, 6.0]]) * (ranks + 1).sum())

    b = gp.full((3,), float(rank))
    dist.broadcast(b, src=world - 1)
    assert b.tolist() == [world - 1.0] * 3

    gathered: list = [None] * world
    dist.all_gather_object(gathered, {"rank": rank})
    assert gathered == [{"rank": r} for r in range(world)]

    dist.barrier()
    dist.destroy_process_group()
    assert not dist.is_initialized()
    if rank == 0:
        print(f"collectives ok on {world} ranks")


if __name__ == "__main__":
    main()
