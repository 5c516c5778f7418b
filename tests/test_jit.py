"""gp.jit on the CPU: warm-up and signatures, the capture rules, and the replay
bookkeeping (input buffers, guards, re-capture, outputs) through a stand-in
backend that "captures" by recording. The CUDA graphs themselves are tested in
tests/backends/test_cuda_jit.py."""

from __future__ import annotations

import numpy as np
import pytest

import gpubp as gp
from gpubp import capture
from gpubp.backends.numpy_backend import NumpyBackend
from gpubp.capture import Capture, CaptureError


def mlp(dropout: float = 0.0) -> gp.nn.Sequential:
    layers = [gp.nn.Linear(6, 8), gp.nn.Sigmoid()]
    if dropout:
        layers.append(gp.nn.Dropout(dropout))
    return gp.nn.Sequential(*layers, gp.nn.Linear(8, 3))


def batch(seed: int = 0, rows: int = 5) -> tuple[gp.Tensor, gp.Tensor]:
    rng = np.random.default_rng(seed)
    return gp.tensor(rng.standard_normal((rows, 6)).astype(np.float32)), gp.tensor(rng.integers(0, 3, rows))


def training_step(model: gp.nn.Module, opt: gp.optim.Optimizer):
    def step(x: gp.Tensor, labels: gp.Tensor) -> gp.Tensor:
        loss = gp.cross_entropy(model(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return step


# -- on the CPU: eager calls, and one call under the capture rules ----------------------
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_jitted_step_trains_exactly_as_the_eager_step(optimizer: str) -> None:
    runs = []
    for use_jit in (False, True):
        gp.manual_seed(0)
        model = mlp(dropout=0.3)
        if optimizer == "sgd":
            opt = gp.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        else:
            opt = gp.optim.Adam(model.parameters(), lr=0.01)
        step = training_step(model, opt)
        step = gp.jit(step) if use_jit else step
        losses = [step(*batch(i)).item() for i in range(6)]
        runs.append((losses, [p.numpy() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("read", "what"),
    [
        (lambda t: t.item(), r"\.item\(\)"),
        (lambda t: t.numpy(), r"\.numpy\(\)"),
        (lambda t: bool(t > 0), r"\.item\(\)"),
        (lambda t: float(t), r"\.item\(\)"),
        (lambda t: t + gp.tensor(np.ones(1, np.float32)), "copies host data"),
    ],
    ids=["item", "numpy", "bool", "float", "host-copy"],
)
def test_host_reads_and_copies_inside_the_function_raise_at_capture(read, what) -> None:
    calls = []

    @gp.jit(warmup=2)
    def f(x: gp.Tensor) -> gp.Tensor:
        y = (x * 2).sum()
        calls.append(1)
        read(y)
        return y

    x = gp.ones(3)
    f(x)
    f(x)  # the warm-up calls run eagerly: reading is allowed there
    with pytest.raises(CaptureError, match=what):
        f(x)
    assert len(calls) == 3 and capture.current is None


def test_each_signature_warms_up_and_is_checked_on_its_own() -> None:
    reads = []

    @gp.jit(warmup=1)
    def f(x: gp.Tensor, scale: float) -> gp.Tensor:
        y = x * scale
        if x.shape == (2,):
            reads.append(y.sum().item())  # allowed only outside a capture
        return y

    f(gp.ones(2), 1.0)  # warm-up of signature ((2,), 1.0)
    f(gp.ones(3), 1.0)  # warm-up of ((3,), 1.0)
    f(gp.ones(3), 1.0)  # the capture call of ((3,), 1.0): no read, fine
    f(gp.ones(2), 2.0)  # another value of a non-tensor argument: a new signature, warm-up
    f(gp.ones(2, dtype="float64"), 1.0)  # another dtype: warm-up
    with gp.no_grad():
        f(gp.ones(2), 1.0)  # another grad mode: warm-up
    with pytest.raises(CaptureError, match="item"):
        f(gp.ones(2), 1.0)  # the second call of ((2,), 1.0): captured, and it reads


def test_arguments_that_cannot_be_signed_or_captured_are_refused() -> None:
    f = gp.jit(lambda x, options=None: x * 2, warmup=1)
    with pytest.raises(TypeError, match=r"argument 'options' is a list, neither a Tensor nor hashable"):
        f(gp.ones(2), options=[1, 2])
    with pytest.raises(TypeError, match="ndarray"):
        f(np.ones(2))
    x = gp.ones(2, requires_grad=True)
    f(x)
    with pytest.raises(CaptureError, match="requires grad"):
        f(x)
    with pytest.raises(ValueError, match="warmup"):
        gp.jit(lambda: None, warmup=0)


def test_tensor_arguments_on_two_devices_are_refused() -> None:
    other = OtherDevice()
    a = gp.ones(2)
    b = gp.Tensor.__new__(gp.Tensor)
    b.__init__(np.ones(2, np.float32))
    b._backend = other
    with pytest.raises(ValueError, match=r"different devices \(cpu and fake:0\)"):
        gp.jit(lambda x, y: x)(a, b)


def test_adam_state_cannot_be_created_inside_a_capture() -> None:
    w = gp.zeros(3, requires_grad=True)
    opt = gp.optim.Adam([w], lr=0.1)

    @gp.jit(warmup=1)
    def late(x: gp.Tensor) -> None:
        if capture.current is not None:  # the parameter's first step comes only under capture
            (w * x).sum().backward()
            opt.step()

    late(gp.ones(3))
    with pytest.raises(CaptureError, match="first step"):
        late(gp.ones(3))


# -- the record a capture keeps --------------------------------------------------------
def test_a_capture_is_invalid_once_what_it_read_changed() -> None:
    model = mlp()
    record = Capture("f")
    capture.current = record
    try:
        model(gp.ones(2, 6))
    finally:
        capture.current = None
    assert record.valid()
    weight = model[0].weight
    assert any(t is weight for t, _ in record.guarded.values())
    model.eval()
    assert not record.valid()
    model.train()
    assert record.valid()
    weight.data = weight.data.copy()  # e.g. what model.to() does to every parameter
    assert not record.valid()


def test_a_reloaded_optimizer_state_invalidates_a_capture() -> None:
    w = gp.zeros(3, requires_grad=True)
    opt = gp.optim.SGD([w], lr=0.1, momentum=0.9)
    (w * 2).sum().backward()
    opt.step()
    record = Capture("f")
    capture.current = record
    try:
        opt.step()
    finally:
        capture.current = None
    assert record.valid()
    opt.load_state_dict(opt.state_dict())
    assert not record.valid()


# -- replays, through a backend that records instead of capturing ---------------------------
class OtherDevice(NumpyBackend):
    device = "fake:0"


class RecordingGraph:
    """Stands in for a CUDA graph: a "replay" runs the recorded call again,
    eagerly, on the graph's own input buffers."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.launches = 0

    def launch(self) -> None:
        self.launches += 1
        self.fn()


class RecordingBackend(NumpyBackend):
    supports_graphs = True

    def __init__(self) -> None:
        super().__init__()
        self.graphs: list[RecordingGraph] = []

    def capture_graph(self, fn):
        result = fn(None)
        graph = RecordingGraph(lambda: None)
        self.graphs.append(graph)
        return graph, result


@pytest.fixture
def recording(monkeypatch):
    """Tensors on a backend that records captures (the CPU's arrays)."""
    backend = RecordingBackend()

    def on(t: gp.Tensor) -> gp.Tensor:
        t._backend = backend
        return t

    return backend, on


def test_replays_copy_arguments_into_the_captured_inputs(recording) -> None:
    backend, on = recording
    seen = []

    @gp.jit(warmup=1)
    def f(x: gp.Tensor) -> gp.Tensor:
        seen.append(x)
        return x * 2

    f(on(gp.ones(3)))  # warm-up: eager
    f(on(gp.full(3, 2.0)))  # capture: f sees the graph's input buffer, filled with the argument
    buffer = seen[-1]
    assert len(backend.graphs) == 1 and buffer.numpy().tolist() == [2.0, 2.0, 2.0]
    f(on(gp.full(3, 5.0)))  # replay: the argument is copied into the same buffer
    assert len(seen) == 2 and buffer.numpy().tolist() == [5.0, 5.0, 5.0]
    assert backend.graphs[0].launches == 2


def test_outputs_of_an_earlier_call_are_overwritten_and_say_so(recording) -> None:
    backend, on = recording
    f = gp.jit(lambda x: x * 2, warmup=1)
    f(on(gp.ones(2)))
    first = f(on(gp.ones(2)))
    assert first.numpy().tolist() == [2.0, 2.0]
    second = f(on(gp.ones(2)))
    assert second.shape == (2,) and not second.requires_grad
    with pytest.raises(RuntimeError, match=r"overwritten by a later call.*clone\(\)"):
        first.numpy()


def test_a_changed_parameter_or_mode_is_captured_again(recording) -> None:
    backend, on = recording
    model = mlp()
    for p in model.parameters():
        on(p)
    f = gp.jit(lambda x: model(x), warmup=1)
    x = on(gp.ones(2, 6))
    f(x)
    f(x)
    f(x)
    assert len(backend.graphs) == 1
    model.eval()  # another mode: the graph captured in train mode must not replay
    f(x)
    assert len(backend.graphs) == 2
    model.train()  # back: the first graph is valid again
    f(x)
    assert len(backend.graphs) == 2
    weight = model[0].weight
    weight.data = weight.data.copy()
    f(x)
    assert len(backend.graphs) == 3 and f.graphs == 3


def test_a_function_that_changes_its_argument_in_place_is_refused(recording) -> None:
    backend, on = recording

    def f(x: gp.Tensor) -> None:
        x += 1

    jitted = gp.jit(f, warmup=1)
    jitted(on(gp.ones(2)))
    with pytest.raises(CaptureError, match="changed its argument 0 in place"):
        jitted(on(gp.ones(2)))


def test_gradients_of_the_captured_call_stay_on_the_parameters(recording) -> None:
    backend, on = recording
    w = on(gp.ones(3, requires_grad=True))
    opt = gp.optim.SGD([w], lr=0.1)

    @gp.jit(warmup=1)
    def step(x: gp.Tensor) -> None:
        opt.zero_grad()
        (w * x).sum().backward()
        opt.step()

    step(on(gp.ones(3)))
    step(on(gp.ones(3)))
    captured_grad = w.grad
    opt.zero_grad()
    assert w.grad is None
    step(on(gp.ones(3)))
    assert w.grad is captured_grad
