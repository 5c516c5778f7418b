"""A job in which one rank goes wrong, for tests/distributed/test_mpi.py. Run under
``mpirun -n 2``: ``python faults.py MODE``, where MODE is

- raise: rank 1 raises while rank 0 waits in an all-reduce;
- hang: rank 1 sleeps while rank 0 waits (the group's timeout is 2 s);
- shapes: rank 1 builds a model of other shapes than rank 0's;
- unused: rank 1 leaves a layer out of its loss.

The job must end, non-zero, with the message of what went wrong."""

from __future__ import annotations

import sys
import time

import gpubp as gp
import gpubp.distributed as dist


class TwoLayers(gp.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = gp.nn.Linear(4, 4)
        self.second = gp.nn.Linear(4, 2)

    def forward(self, x: gp.Tensor, skip_first: bool) -> gp.Tensor:
        return self.second(x if skip_first else self.first(x))


def main() -> None:
    mode = sys.argv[1]
    dist.init_process_group(timeout=2 if mode == "hang" else None)
    rank = dist.get_rank()
    if mode in ("raise", "hang"):
        t = gp.ones(4)
        for step in range(5):
            if rank == 1 and step == 3:
                if mode == "raise":
                    raise ValueError("rank 1 failed on purpose")
                time.sleep(600)
            dist.all_reduce(t)
    elif mode == "shapes":
        hidden = 8 if rank == 0 else 9
        model = gp.nn.Sequential(gp.nn.Linear(4, hidden), gp.nn.Sigmoid(), gp.nn.Linear(hidden, 2))
        gp.nn.parallel.DistributedDataParallel(model)
    elif mode == "unused":
        ddp = gp.nn.parallel.DistributedDataParallel(TwoLayers())
        for _ in range(3):
            ddp(gp.randn(8, 4), skip_first=rank == 1).sum().backward()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
