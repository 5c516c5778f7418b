"""The NCCL backend on one GPU: a group of one process (NCCL does not allow two ranks on
one device, so several ranks need several GPUs; none of these tests has run on more).
Marked gpu: skipped, with the reason, without a GPU, CuPy and NCCL."""

from __future__ import annotations

import numpy as np
import pytest

import gpubp as gp
import gpubp.distributed as dist
from gpubp.distributed import nccl
from gpubp.nn.parallel import DistributedDataParallel

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("no_process_group")]


@pytest.fixture
def nccl_group(no_process_group: None) -> None:  # after that check, which a group made first would fail
    reason = nccl.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    dist.init_process_group("nccl")


def _mlp(device: str) -> gp.nn.Sequential:
    gp.manual_seed(0)
    return gp.nn.Sequential(gp.nn.Linear(6, 32), gp.nn.Sigmoid(), gp.nn.Linear(32, 3)).to(device)


@pytest.mark.usefixtures("nccl_group")
def test_collectives_of_one_rank_leave_cuda_tensors_as_they_are() -> None:
    assert dist.get_backend() == "nccl" and dist.get_world_size() == 1
    t = gp.tensor([1.0, -2.0, 3.0], device="cuda")
    for op in ("sum", "avg", "max", "min"):
        dist.all_reduce(t, op)
    assert t.tolist() == [1.0, -2.0, 3.0]
    half = gp.tensor([0.5, 1.5], dtype="float16", device="cuda")
    dist.all_reduce(half)
    assert half.dtype == np.float16 and half.tolist() == [0.5, 1.5]
    brain = gp.tensor([0.5, -1.5], dtype=gp.bfloat16, device="cuda")  # raw words on the GPU, reduced as bfloat16
    dist.all_reduce(brain, "avg")
    assert brain.dtype == gp.bfloat16 and brain.tolist() == [0.5, -1.5]
    strided = gp.randn(4, 6, device="cuda")[:, ::2]  # not contiguous: reduced through a copy
    before = strided.numpy()
    dist.all_reduce(strided)
    np.testing.assert_array_equal(strided.numpy(), before)
    b = gp.tensor([7, 8], dtype="int64", device="cuda")
    dist.broadcast(b, src=0)
    assert b.tolist() == [7, 8]
    with pytest.raises(ValueError, match="a CPU tensor, but the process group's backend is 'nccl'"):
        dist.all_reduce(gp.ones(2))


@pytest.mark.usefixtures("nccl_group")
def test_distributed_data_parallel_on_a_gpu_gives_the_modules_gradients() -> None:
    x, y = gp.randn(16, 6, device="cuda"), gp.tensor(np.arange(16) % 3, device="cuda")
    plain = _mlp("cuda")
    gp.cross_entropy(plain(x), y).backward()
    wrapped = DistributedDataParallel(_mlp("cuda"), bucket_cap_mb=0.0005)
    assert len(wrapped.bucket_sizes) > 1  # several buckets, each reduced on NCCL's stream during backward
    gp.cross_entropy(wrapped(x), y).backward()
    for a, b in zip(plain.parameters(), wrapped.module.parameters()):
        np.testing.assert_array_equal(b.grad.numpy(), a.grad.numpy())


@pytest.mark.usefixtures("nccl_group")
def test_a_step_with_distributed_data_parallel_is_captured_by_gp_jit_and_replays_the_eager_steps() -> None:
    x, y = gp.randn(16, 6, device="cuda"), gp.tensor(np.arange(16) % 3, device="cuda")
    weights = []
    for wrap in (False, True):
        model = _mlp("cuda")
        net = DistributedDataParallel(model, bucket_cap_mb=0.0005) if wrap else model
        opt = gp.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

        def step(xb: gp.Tensor, yb: gp.Tensor, net=net, opt=opt) -> gp.Tensor:
            loss = gp.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss

        jitted = gp.jit(step) if wrap else step
        for _ in range(6):  # 2 eager, 1 capture, 3 replays of the graph with NCCL's all-reduces in it
            jitted(x, y)
        if wrap:
            assert jitted.graphs == 1
        weights.append([p.numpy() for p in model.parameters()])
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.usefixtures("nccl_group")
def test_an_all_reduce_inside_gp_jit_is_replayed() -> None:
    @gp.jit
    def doubled_and_reduced(x: gp.Tensor) -> gp.Tensor:
        y = x * 2
        dist.all_reduce(y, "avg")
        return y

    for i in range(5):
        x = gp.full((3,), float(i), device="cuda")
        assert doubled_and_reduced(x).tolist() == [2.0 * i] * 3
    assert doubled_and_reduced.graphs == 1


def test_backend_none_on_a_gpu_takes_cuda_tensors_over_nccl_and_cpu_tensors_over_mpi() -> None:
    reason = nccl.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    dist.init_process_group()
    assert dist.get_backend() == "cpu:mpi,cuda:nccl"
    on_gpu, on_cpu = gp.ones(2, device="cuda"), gp.ones(2)
    dist.all_reduce(on_gpu)
    dist.all_reduce(on_cpu)
    assert on_gpu.tolist() == on_cpu.tolist() == [1.0, 1.0]


def test_each_rank_takes_the_gpu_of_its_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    reason = nccl.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    before = gp.cuda.current_device()
    try:
        dist.init_process_group("nccl")
        expected = 1 % gp.cuda.device_count()
        assert gp.cuda.current_device() == expected
        assert gp.ones(1, device="cuda").device == f"cuda:{expected}"
    finally:
        gp.cuda.set_device(before)
