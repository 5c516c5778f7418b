"""DistributedDataParallel in a group of one process: what it does to the tape (buckets,
hooks during backward, unused parameters, no_sync, gp.jit) and its argument errors.
Several processes: tests/distributed/test_mpi.py."""

from __future__ import annotations

import numpy as np
import pytest

import gpubp as gp
import gpubp.distributed as dist
from gpubp.nn.parallel import DistributedDataParallel

pytestmark = pytest.mark.usefixtures("no_process_group")


@pytest.fixture(autouse=True)
def _group(no_process_group: None) -> None:
    dist.init_process_group("mpi")


def _mlp(seed: int = 0) -> gp.nn.Sequential:
    gp.manual_seed(seed)
    return gp.nn.Sequential(gp.nn.Linear(6, 16), gp.nn.Sigmoid(), gp.nn.Linear(16, 8), gp.nn.Tanh(), gp.nn.Linear(8, 3))


def _batch(seed: int = 1) -> tuple[gp.Tensor, list[int]]:
    rng = np.random.default_rng(seed)
    return gp.tensor(rng.normal(size=(10, 6)).astype(np.float32)), rng.integers(0, 3, 10).tolist()


class _Recorder:
    """Stands in for the backend's bucket reduction: records each call, then does it."""

    def __init__(self, ddp: DistributedDataParallel, on_call=lambda: None) -> None:
        self.calls = 0
        self._reduce = ddp._backend.bucket_all_reduce
        self._on_call = on_call
        ddp._backend = self  # the rest of the backend is not used during backward
        self._ddp = ddp

    def bucket_all_reduce(self, flat, fill, drain):
        self.calls += 1
        self._on_call()
        return self._reduce(flat, fill, drain)

    def join(self, done) -> None:
        pass


def test_one_rank_gets_the_gradients_of_the_module_itself() -> None:
    x, y = _batch()
    plain = _mlp()
    gp.cross_entropy(plain(x), y).backward()
    wrapped = DistributedDataParallel(_mlp(), bucket_cap_mb=0.0005)
    gp.cross_entropy(wrapped(x), y).backward()
    for (name, a), b in zip(plain.named_parameters(), wrapped.module.parameters()):
        np.testing.assert_array_equal(b.grad.numpy(), a.grad.numpy(), err_msg=name)
    assert list(wrapped.state_dict()) == [f"module.{name}" for name in plain.state_dict()]
    assert list(wrapped.module.state_dict()) == list(plain.state_dict())


def test_buckets_hold_the_parameters_in_reverse_order_up_to_the_cap() -> None:
    # Bytes: 0.weight 384, 0.bias 64, 2.weight 512, 2.bias 32, 4.weight 96, 4.bias 12.
    ddp = DistributedDataParallel(_mlp(), bucket_cap_mb=600 / 2**20)
    assert ddp.bucket_sizes == [12 + 96 + 32 + 512, 64 + 384]  # a bucket closes once it reaches the cap
    names = [[ddp._names[i] for i, *_ in bucket.entries] for bucket in ddp._buckets]
    assert names == [["4.bias", "4.weight", "2.bias", "2.weight"], ["0.bias", "0.weight"]]
    assert DistributedDataParallel(_mlp()).bucket_sizes == [1100]  # 25 MB: one bucket
    mixed = gp.nn.Sequential(gp.nn.Linear(2, 2), gp.nn.Linear(2, 2))
    mixed[0].weight.data = mixed[0].weight.data.astype(np.float64)
    buckets = DistributedDataParallel(mixed)._buckets  # one dtype a bucket
    assert [(b.flat.dtype, len(b.entries)) for b in buckets] == [(np.float32, 3), (np.float64, 1)]


def test_a_bucket_is_reduced_during_backward_as_soon_as_its_gradients_are_ready() -> None:
    ddp = DistributedDataParallel(_mlp(), bucket_cap_mb=600 / 2**20)
    first_layer = ddp.module[0].weight
    seen = []
    recorder = _Recorder(ddp, lambda: seen.append(first_layer.grad is None))
    x, y = _batch()
    gp.cross_entropy(ddp(x), y).backward()
    # The last layers' bucket went while backward had not yet reached the first layer.
    assert recorder.calls == 2 and seen == [True, False]


def test_a_parameter_without_a_gradient_is_an_error_naming_it() -> None:
    model = _mlp()
    ddp = DistributedDataParallel(model, bucket_cap_mb=600 / 2**20)
    x, y = _batch()
    partial = model[1](model[0](x))  # the last two layers take no part
    with pytest.raises(
        RuntimeError, match="4 parameter\\(s\\) got no gradient .*\\(2.weight, 2.bias, 4.weight, 4.bias\\)"
    ):
        partial.sum().backward()
    gp.cross_entropy(ddp(x), y).backward()  # the next pass starts afresh
    assert all(p.grad is not None for p in model.parameters())


def test_find_unused_parameters_reduces_zeros_for_them() -> None:
    model = _mlp()
    ddp = DistributedDataParallel(model, bucket_cap_mb=600 / 2**20, find_unused_parameters=True)
    x, _ = _batch()
    ddp(x)
    model[1](model[0](x)).sum().backward()
    assert np.all(model[4].weight.grad.numpy() == 0) and np.all(model[2].bias.grad.numpy() == 0)
    assert np.any(model[0].weight.grad.numpy() != 0)


def test_no_sync_accumulates_and_the_next_backward_reduces_the_sum() -> None:
    ddp = DistributedDataParallel(_mlp(), bucket_cap_mb=600 / 2**20)
    recorder = _Recorder(ddp)
    x, y = _batch()
    with ddp.no_sync():
        gp.cross_entropy(ddp(x), y).backward()
    assert recorder.calls == 0
    gp.cross_entropy(ddp(x), y).backward()
    assert recorder.calls == 2
    once = _mlp()
    gp.cross_entropy(once(x), y).backward()
    for a, b in zip(once.parameters(), ddp.module.parameters()):
        np.testing.assert_allclose(b.grad.numpy(), 2 * a.grad.numpy(), rtol=1e-6)


def test_a_step_with_distributed_data_parallel_runs_under_gp_jit() -> None:
    x, y = _batch()
    y = gp.tensor(y)
    weights = []
    for wrap in (False, True):
        model = _mlp()
        net = DistributedDataParallel(model, bucket_cap_mb=600 / 2**20) if wrap else model
        opt = gp.optim.Adam(model.parameters(), lr=0.01)

        def step(xb: gp.Tensor, yb: gp.Tensor, net=net, opt=opt) -> gp.Tensor:
            loss = gp.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss

        step = gp.jit(step) if wrap else step  # on the CPU the capture call checks the rules and runs eagerly
        for _ in range(5):
            step(x, y)
        weights.append([p.numpy() for p in model.parameters()])
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"module": "model"}, TypeError, "wraps a gp.nn.Module, got str"),
        ({"module": gp.nn.Sigmoid()}, ValueError, "has no parameters that require grad"),
        ({"bucket_cap_mb": 0}, ValueError, "bucket_cap_mb must be a positive number, got 0"),
        ({"device_ids": [0]}, ValueError, "device_ids=\\[0\\], but the module's parameters are on cpu"),
    ],
)
def test_arguments_are_checked(kwargs: dict, error: type, message: str) -> None:
    kwargs = {"module": _mlp(), **kwargs}
    with pytest.raises(error, match=message):
        DistributedDataParallel(**kwargs)
    assert DistributedDataParallel(_mlp(), device_ids=["cpu"]).module is not None
