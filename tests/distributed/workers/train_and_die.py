"""``gpubp train`` in which rank 1 kills itself (SIGKILL) at its 20th training step:
``mpirun -n 2 python train_and_die.py train ...``. The other rank must then end,
non-zero, within the launcher's timeout instead of waiting for it."""

from __future__ import annotations

import os
import signal
import sys

from gpubp import cli, training

DIE_AT_STEP = 20


def main() -> int:
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK", "0")))
    make_step = training._training_step

    def dying_step(*args: object, **kwargs: object) -> object:
        step = make_step(*args, **kwargs)
        steps = 0

        def counted(index: object) -> None:
            nonlocal steps
            steps += 1
            if rank == 1 and steps == DIE_AT_STEP:
                os.kill(os.getpid(), signal.SIGKILL)
            step(index)

        return counted

    training._training_step = dying_step
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
