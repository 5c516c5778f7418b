"""Trains a small MLP with DistributedDataParallel, with SGD-momentum and with Adam, for a
few steps of a global batch, and writes rank 0's weights: run by tests/distributed/test_mpi.py
under ``mpirun -n N``; ``train`` with one rank is the single-process reference.

    python ddp_steps.py OUT.npz STEPS GLOBAL_BATCH
"""

from __future__ import annotations

import sys

import numpy as np

import gpubp as gp
from gpubp.data import BatchLoader

FEATURES, HIDDEN, CLASSES = 20, 64, 5


def make_data(samples: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, FEATURES)).astype(np.float32)
    y = (x[:, :CLASSES] * rng.normal(size=CLASSES)).argmax(axis=1).astype(np.int64)
    return x, y


def train(optimizer: str, steps: int, batch: int, rank: int = 0, world_size: int = 1) -> dict[str, np.ndarray]:
    """The weights after ``steps`` steps of global batch ``batch``, this rank's share of each."""
    gp.manual_seed(0)
    model = gp.nn.Sequential(
        gp.nn.Linear(FEATURES, HIDDEN),
        gp.nn.Sigmoid(),
        gp.nn.Linear(HIDDEN, HIDDEN),
        gp.nn.Tanh(),
        gp.nn.Linear(HIDDEN, CLASSES),
    )
    if rank > 0:
        gp.manual_seed(100 + rank)  # the other ranks start elsewhere: DDP must broadcast rank 0's weights
        model.apply(lambda m: gp.nn.init.normal_(m.weight) if isinstance(m, gp.nn.Linear) else None)
    net = gp.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=0.01) if world_size > 1 else model
    if optimizer == "momentum":
        opt = gp.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    else:
        opt = gp.optim.Adam(model.parameters(), lr=1e-3)
    x, y = make_data(steps * batch)
    loader = BatchLoader(x, y, batch // world_size, shuffle=True, seed=1, rank=rank, world_size=world_size)
    for xb, yb in loader.batches(epoch=0):
        loss = gp.cross_entropy(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {name: t.numpy() for name, t in model.state_dict().items()}


OPTIMIZERS = ("momentum", "adam")


def main() -> None:
    out, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    gp.distributed.init_process_group()
    rank, world = gp.distributed.get_rank(), gp.distributed.get_world_size()
    arrays = {}
    for optimizer in OPTIMIZERS:
        weights = train(optimizer, steps, batch, rank, world)
        # Every rank must hold the same weights: the averaged gradients are the same everywhere.
        gathered: list = [None] * world
        gp.distributed.all_gather_object(gathered, weights)
        same = all(np.array_equal(w[k], weights[k]) for w in gathered for k in weights)
        arrays[f"{optimizer}/same_on_every_rank"] = np.array(same)
        arrays.update({f"{optimizer}/{k}": v for k, v in weights.items()})
    if rank == 0:
        np.savez(out, **arrays)
    gp.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
