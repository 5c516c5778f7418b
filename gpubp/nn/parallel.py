"""``DistributedDataParallel``: one model trained by several processes, as torch.nn.parallel's.

Each rank runs the wrapped module on its own share of the batch; backward then
averages the gradients over the ranks, so every rank's optimizer takes the same
step. How, as PyTorch's DDP:

- at construction the parameters' names, shapes and dtypes are compared across
  the ranks (a mismatch is an error on every rank, not a hang) and rank 0's
  values are broadcast to the others;
- the parameters are grouped into buckets of about ``bucket_cap_mb`` (25 MB),
  in reverse order, the order backward produces their gradients;
- a hook on each parameter (``register_post_accumulate_grad_hook``) marks its
  gradient ready when backward has summed it; when a bucket's last gradient is
  ready the bucket is reduced: each gradient is divided by the world size as it
  is copied in (PyTorch's order: divide, then sum), and the bucket is summed
  with all-reduce and copied back into the ``.grad`` tensors. Buckets start in
  order, the same on every rank. On the CPU (MPI) the all-reduce is done there
  and then; on a GPU (NCCL) it is queued on NCCL's stream, so it overlaps the
  rest of backward, and the end of backward makes the current stream wait for
  it (no host wait), which also lets ``gp.jit`` capture it into the step's graph.

A parameter that gets no gradient in a backward pass would leave its bucket
waiting, and the other ranks with it: the end of that pass raises a
RuntimeError naming it, unless ``find_unused_parameters=True``, which reduces
zeros in its place (its ``.grad`` then holds the other ranks' average, and
zeros when no rank used it, where PyTorch would leave it None).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from gpubp import tensor as tape
from gpubp.distributed import group as dist
from gpubp.grad_mode import no_grad
from gpubp.nn.module import Module, Parameter
from gpubp.tensor import _wrap

DEFAULT_BUCKET_CAP_MB = 25.0  # PyTorch's default; MB = 2**20 bytes, as there


class _Bucket:
    """Parameters reduced together: (parameter index, parameter, offset, size) in ``flat``."""

    __slots__ = ("entries", "flat")

    def __init__(self, entries: list[tuple[int, Parameter, int, int]], flat: Any) -> None:
        self.entries = entries
        self.flat = flat


class DistributedDataParallel(Module):
    """Wraps ``module`` so that backward averages its gradients over the ranks of the
    process group (``gp.distributed.init_process_group`` first). Call it as the
    module; ``.module`` is the wrapped one (its ``state_dict()`` has the plain names).

    ``device_ids``: None, or a one-element list naming the device of the module's
    parameters (PyTorch's habit ``device_ids=[local_rank]``; checked, not needed).
    ``bucket_cap_mb``: the bucket size. ``find_unused_parameters``: reduce zeros for
    parameters a pass did not use instead of raising (see the module docstring)."""

    def __init__(
        self,
        module: Module,
        device_ids: Sequence[int | str] | None = None,
        *,
        bucket_cap_mb: float | None = None,
        find_unused_parameters: bool = False,
    ) -> None:
        super().__init__()
        group = dist.current()
        if group is None:
            raise RuntimeError(
                "DistributedDataParallel needs the process group: call gp.distributed.init_process_group() first"
            )
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel wraps a gp.nn.Module, got {type(module).__name__}")
        cap_mb = DEFAULT_BUCKET_CAP_MB if bucket_cap_mb is None else bucket_cap_mb
        if isinstance(cap_mb, bool) or not isinstance(cap_mb, (int, float)) or not cap_mb > 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be a positive number, got {bucket_cap_mb!r}")
        self.module = module
        named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("DistributedDataParallel: the module has no parameters that require grad")
        devices = sorted({p.device for _, p in named})
        if len(devices) > 1:
            raise ValueError(
                f"DistributedDataParallel: the module's parameters are on {' and '.join(devices)}; they must all be "
                "on one device (module.to(device))"
            )
        device = devices[0]
        _check_device_ids(device_ids, device)
        backend = group.backend_for(device, "DistributedDataParallel")
        for name, p in named:
            backend.check(p.data, None, f"DistributedDataParallel (parameter {name})")
        _check_same_parameters(group, named, device)

        self.find_unused_parameters = bool(find_unused_parameters)
        self._names = [name for name, _ in named]
        self._params = [p for _, p in named]
        self._backend = backend
        self._world_size = group.world_size
        self._xp = self._params[0].backend.xp
        with no_grad():
            for p in self._params:
                backend.broadcast(p.data, 0)
                p.bump_version()
        self._buckets = _assign_buckets(self._params, int(cap_mb * 2**20))
        self._bucket_of = [0] * len(self._params)
        for b, bucket in enumerate(self._buckets):
            for i, *_ in bucket.entries:
                self._bucket_of[i] = b
        # The state of the backward pass in progress (reset by its first hook).
        self._sync = True
        self._in_pass = False
        self._got = [False] * len(self._params)
        self._waiting = [0] * len(self._buckets)
        self._next = 0  # the next bucket to start: buckets start in order, the same on every rank
        self._last_done: Any = None
        self._handles = [
            p.register_post_accumulate_grad_hook(lambda _p, i=i: self._ready(i)) for i, p in enumerate(self._params)
        ]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        # A backward that failed part-way never reached its end: start the next one afresh.
        self._in_pass = False
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Inside, backward only accumulates gradients locally; the first backward after it
        averages the accumulated ones (gradient accumulation, as PyTorch's)."""
        before = self._sync
        self._sync = False
        try:
            yield
        finally:
            self._sync = before

    @property
    def bucket_sizes(self) -> list[int]:
        """The bytes of each bucket, in the order they are reduced (for tests and diagnostics)."""
        return [int(bucket.flat.nbytes) for bucket in self._buckets]

    def extra_repr(self) -> str:
        return f"world_size={self._world_size}, buckets={len(self._buckets)}"

    # -- backward ------------------------------------------------------------------------
    def _ready(self, index: int) -> None:
        """A parameter's gradient of this pass is summed into its ``.grad``."""
        if not self._sync:
            return
        if not self._in_pass:
            self._in_pass = True
            self._got = [False] * len(self._params)
            self._waiting = [len(bucket.entries) for bucket in self._buckets]
            self._next = 0
            tape.queue_callback(self._end_of_backward)
        if self._got[index]:  # a second pass's gradient before the first pass ended: cannot happen
            return
        self._got[index] = True
        b = self._bucket_of[index]
        self._waiting[b] -= 1
        if self._waiting[b] == 0 and b == self._next:
            self._start_ready_buckets()

    def _start_ready_buckets(self) -> None:
        while self._next < len(self._buckets) and self._waiting[self._next] == 0:
            self._reduce(self._buckets[self._next])
            self._next += 1

    def _reduce(self, bucket: _Bucket) -> None:
        xp, world, got, flat = self._xp, self._world_size, self._got, bucket.flat

        def fill() -> None:
            for i, p, offset, size in bucket.entries:
                view = flat[offset : offset + size]
                if got[i]:
                    xp.divide(p.grad.data.reshape(-1), world, out=view)
                else:  # unused in this pass (find_unused_parameters): it adds nothing
                    view.fill(0)

        def drain() -> None:
            for _, p, offset, size in bucket.entries:
                view = flat[offset : offset + size].reshape(p.shape)
                if p.grad is None:
                    p.grad = _wrap(view.copy(), p.backend)
                else:
                    p.grad.data[...] = view

        self._last_done = self._backend.bucket_all_reduce(flat, fill, drain)
        for _, p, _, _ in bucket.entries:
            p.grad.bump_version()

    def _end_of_backward(self) -> None:
        self._in_pass = False
        if self._next < len(self._buckets):
            missing = [name for name, got in zip(self._names, self._got) if not got]
            if not self.find_unused_parameters:
                shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                raise RuntimeError(
                    f"DistributedDataParallel: {len(missing)} parameter(s) got no gradient in this backward pass "
                    f"({shown}): they took no part in the loss, and the other ranks would wait for them. Use every "
                    "parameter, or pass find_unused_parameters=True to reduce zeros for them."
                )
            self._waiting[self._next :] = [0] * (len(self._buckets) - self._next)
            self._start_ready_buckets()
        self._backend.join(self._last_done)


def _check_device_ids(device_ids: Sequence[int | str] | None, device: str) -> None:
    if device_ids is None:
        return
    ids = list(device_ids)
    names = [f"cuda:{d}" if isinstance(d, int) and not isinstance(d, bool) else str(d) for d in ids]
    if len(names) != 1 or names[0] != device:
        raise ValueError(
            f"DistributedDataParallel: device_ids={ids!r}, but the module's parameters are on {device}; "
            "give the one device they are on (or leave device_ids out)"
        )


def _check_same_parameters(group: Any, named: list[tuple[str, Parameter]], device: str) -> None:
    """Every rank must wrap the same parameters: a ValueError on every rank otherwise
    (a mismatch found later would leave the ranks waiting for each other)."""
    kind = device.partition(":")[0]
    mine = [(name, tuple(p.shape), str(p.dtype), kind) for name, p in named]
    everyone = group.mpi.all_gather_object(mine)
    reference = everyone[0]
    for rank, theirs in enumerate(everyone[1:], 1):
        if theirs == reference:
            continue
        if len(theirs) != len(reference):
            problem = f"{len(theirs)} parameters, rank 0 {len(reference)}"
        else:
            a, b = next((a, b) for a, b in zip(reference, theirs) if a != b)
            problem = f"{b[0]} is {b[1]} {b[2]} on {b[3]}, rank 0 has {a[0]} as {a[1]} {a[2]} on {a[3]}"
        raise ValueError(
            f"DistributedDataParallel: rank {rank}'s module differs from rank 0's ({problem}); every rank must "
            "build the same model"
        )


def _assign_buckets(params: list[Parameter], cap: int) -> list[_Bucket]:
    """Buckets of parameters in reverse order, one dtype each, closed once they reach ``cap``
    bytes (a parameter larger than the cap fills a bucket alone), as PyTorch assigns them."""
    groups: list[list[int]] = []
    open_groups: dict[Any, tuple[list[int], list[int]]] = {}  # dtype -> (indices, [bytes])
    for i in reversed(range(len(params))):
        indices, size = open_groups.setdefault(params[i].dtype, ([], [0]))
        indices.append(i)
        size[0] += params[i].data.nbytes
        if size[0] >= cap:
            groups.append(indices)
            del open_groups[params[i].dtype]
    groups.extend(indices for indices, _ in open_groups.values())
    buckets = []
    for indices in groups:
        entries, offset = [], 0
        for i in indices:
            size = int(params[i].data.size)
            entries.append((i, params[i], offset, size))
            offset += size
        first = params[indices[0]]
        buckets.append(_Bucket(entries, first.backend.empty((offset,), first.dtype)))
    return buckets
