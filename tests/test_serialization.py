"""gp.save / gp.load: round trips (tensors, state dicts, optimizer and scheduler
states), other tools reading the file, damaged and foreign files."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

import gpubp as gp
from gpubp.serialization import SerializationError, load, save

safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="gp.save needs the safetensors package")

try:
    import torch
except ImportError:  # the cross-checks are optional
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed; the cross-check is optional")


def model() -> gp.nn.Sequential:
    return gp.nn.Sequential(gp.nn.Linear(4, 5), gp.nn.ReLU(), gp.nn.Linear(5, 3))


def trained(opt_kind: str = "adam") -> tuple[gp.nn.Sequential, gp.optim.Optimizer]:
    net = model()
    weights, biases = [], []
    for name, p in net.named_parameters():
        (biases if name.endswith("bias") else weights).append(p)
    if opt_kind == "adam":
        opt = gp.optim.Adam([{"params": weights, "weight_decay": 0.01}, {"params": biases}], lr=0.01)
    else:
        opt = gp.optim.SGD([{"params": weights}, {"params": biases, "lr": 0.5}], lr=0.1, momentum=0.9, nesterov=True)
    x, labels = gp.randn(8, 4), np.arange(8) % 3
    for _ in range(3):
        opt.zero_grad()
        gp.cross_entropy(net(x), labels).backward()
        opt.step()
    return net, opt


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int32", "int64", "uint8", "bool"])
@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 3, 4)])
def test_a_tensor_round_trips_with_dtype_shape_and_values(tmp_path: Path, dtype: str, shape: tuple) -> None:
    values = (np.arange(int(np.prod(shape))).reshape(shape) % 7).astype(dtype)
    path = tmp_path / "t.safetensors"
    save(gp.tensor(values), path)
    back = load(path)
    assert isinstance(back, gp.Tensor) and back.device == "cpu"
    assert back.dtype == np.dtype(dtype) and back.shape == shape
    np.testing.assert_array_equal(back.numpy(), values)
    back.data[...] = 0  # a loaded tensor owns writable memory


def test_nested_structures_round_trip(tmp_path: Path) -> None:
    t = gp.tensor([1.5, -2.0], requires_grad=True)
    array = np.arange(6, dtype=np.int64).reshape(2, 3)[:, ::2]  # not contiguous
    obj = {
        "tensor": t,
        "again": t,  # the same object twice: stored once, loaded as one object
        "array": array,
        "numbers": [1, 2.5, -0.0, float("inf"), float("nan"), True, None, "text"],
        "tuple": (0.9, 0.999),
        3: {"int key": np.float32(0.25), "nested": [{"deep": gp.zeros(2, 2, dtype="float64")}]},
        None: "none key",
        2.5: "float key",
    }
    path = tmp_path / "nested.safetensors"
    save(obj, path)
    back = load(path)
    assert list(back) == list(obj)  # keys, their types and their order
    assert back["tensor"] is back["again"] and back["tensor"].requires_grad
    np.testing.assert_array_equal(back["tensor"].numpy(), [1.5, -2.0])
    assert isinstance(back["array"], np.ndarray) and back["array"].dtype == np.int64
    np.testing.assert_array_equal(back["array"], array)
    numbers = back["numbers"]
    assert numbers[:4] == [1, 2.5, 0.0, float("inf")] and np.isnan(numbers[4]) and numbers[5:] == [True, None, "text"]
    assert type(numbers[0]) is int and type(numbers[1]) is float and type(numbers[5]) is bool
    assert back["tuple"] == (0.9, 0.999)
    assert back[3]["int key"] == 0.25
    deep = back[3]["nested"][0]["deep"]
    assert isinstance(deep, gp.Tensor) and deep.dtype == np.float64 and deep.shape == (2, 2)
    assert back[None] == "none key" and back[2.5] == "float key"


def test_a_models_state_dict_loads_into_another_model(tmp_path: Path) -> None:
    net, _ = trained()
    path = tmp_path / "model.safetensors"
    gp.manual_seed(99)
    save(net.state_dict(), path)
    other = model()
    other.load_state_dict(load(path))
    x = gp.randn(6, 4)
    np.testing.assert_array_equal(other(x).numpy(), net(x).numpy())


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_an_optimizers_state_dict_continues_training_exactly(tmp_path: Path, kind: str) -> None:
    def finish(net: gp.nn.Module, opt: gp.optim.Optimizer) -> list[np.ndarray]:
        x, labels = gp.tensor(np.linspace(-1, 1, 32, dtype=np.float32).reshape(8, 4)), np.arange(8) % 3
        for _ in range(3):
            opt.zero_grad()
            gp.cross_entropy(net(x), labels).backward()
            opt.step()
        return [p.numpy() for p in net.parameters()]

    gp.manual_seed(5)
    net, opt = trained(kind)
    path = tmp_path / "run.safetensors"
    save({"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}, path)
    expected = finish(net, opt)

    gp.manual_seed(6)
    net2, opt2 = trained(kind)  # other weights and state, overwritten below
    saved = load(path)
    assert saved["epoch"] == 3
    net2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["optimizer"])
    assert opt2.param_groups[0].get("betas", (0.9, 0.999)) == (0.9, 0.999)  # tuples stay tuples
    for a, b in zip(finish(net2, opt2), expected):
        np.testing.assert_array_equal(a, b)


def test_a_schedulers_state_dict_round_trips(tmp_path: Path) -> None:
    _, opt = trained("sgd")
    sched = gp.optim.lr_scheduler.MultiStepLR(opt, milestones=[2, 4, 4], gamma=0.5)
    sched.step()
    path = tmp_path / "sched.safetensors"
    save(sched.state_dict(), path)
    other = gp.optim.lr_scheduler.MultiStepLR(opt, milestones=[100])
    other.load_state_dict(load(path))
    for _ in range(4):
        sched.step()
        other.step()
    assert other.milestones == sched.milestones and other.last_epoch == sched.last_epoch == 5


def test_safetensors_reads_our_file(tmp_path: Path) -> None:
    net, opt = trained()
    path = tmp_path / "both.safetensors"
    save(net.state_dict(), path)
    arrays = safetensors_numpy.load_file(path)
    assert arrays.keys() == net.state_dict().keys()  # a flat state_dict keeps its names
    for name, tensor in net.state_dict().items():
        np.testing.assert_array_equal(arrays[name], tensor.numpy())
    save({"optimizer": opt.state_dict()}, path)
    arrays = safetensors_numpy.load_file(path)
    np.testing.assert_array_equal(arrays["optimizer.state.0.exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


@pytest.mark.torch
@needs_torch
def test_torch_tools_read_our_file_and_we_read_theirs(tmp_path: Path) -> None:
    import safetensors.torch

    net, _ = trained()
    ours = tmp_path / "ours.safetensors"
    save(net.state_dict(), ours)
    torch_net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    torch_net.load_state_dict(safetensors.torch.load_file(ours))
    x = np.linspace(-2, 2, 24, dtype=np.float32).reshape(6, 4)
    with torch.no_grad():
        np.testing.assert_allclose(torch_net(torch.from_numpy(x)).numpy(), net(gp.tensor(x)).numpy(), rtol=1e-6)

    theirs = tmp_path / "theirs.safetensors"
    safetensors.torch.save_file(torch_net.state_dict(), theirs, metadata={"format": "pt"})
    back = load(theirs)  # no gpubp metadata: a flat {name: Tensor} dict
    assert back.keys() == torch_net.state_dict().keys()
    other = model()
    other.load_state_dict(back)
    np.testing.assert_allclose(other(gp.tensor(x)).numpy(), net(gp.tensor(x)).numpy(), rtol=1e-6)


def test_saving_replaces_the_file_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.safetensors"
    save({"a": gp.ones(3)}, path)

    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        save({"a": gp.zeros(3)}, path)
    np.testing.assert_array_equal(load(path)["a"].numpy(), 1)  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["x.safetensors"]  # and no temporary file is left


def test_unsavable_objects_say_what_and_where(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"cannot save a Sequential at the top level.*state_dict\(\)"):
        save(model(), tmp_path / "m")
    with pytest.raises(TypeError, match=r"cannot save a function at \['f'\]\[1\]"):
        save({"f": [1, lambda: 0]}, tmp_path / "m")
    with pytest.raises(TypeError, match=r"dtype complex128 is not supported"):
        save({"c": np.zeros(2, dtype=complex)}, tmp_path / "m")
    with pytest.raises(TypeError, match="dict key"):
        save({(1, 2): 3}, tmp_path / "m")
    assert not list(tmp_path.iterdir())


def test_names_that_collide_are_kept_apart(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    save({"a.b": gp.ones(1), "a": {"b": gp.zeros(1)}}, path)
    back = load(path)
    assert back["a.b"].item() == 1 and back["a"]["b"].item() == 0
    assert set(safetensors_numpy.load_file(path)) == {"a.b", "a.b#1"}


# -- files that are not what they should be ---------------------------------------------------
@pytest.fixture
def saved_file(tmp_path: Path) -> Path:
    path = tmp_path / "good.safetensors"
    save({"w": gp.tensor(np.arange(12, dtype=np.float32).reshape(3, 4)), "step": 7}, path)
    return path


def test_a_truncated_file_is_refused(saved_file: Path) -> None:
    data = saved_file.read_bytes()
    for keep in (len(data) - 4, 20, 5, 0):
        saved_file.write_bytes(data[:keep])
        with pytest.raises(SerializationError, match=r"good\.safetensors: not a gpubp file"):
            load(saved_file)


def test_damaged_array_bytes_fail_the_checksum(saved_file: Path) -> None:
    data = bytearray(saved_file.read_bytes())
    data[-3] ^= 0x40  # inside w's values: the header is still valid, safetensors alone would not notice
    saved_file.write_bytes(bytes(data))
    with pytest.raises(SerializationError, match=r"damaged gpubp file \(array 'w' fails its CRC-32 check\)"):
        load(saved_file)


def test_a_damaged_header_is_refused(saved_file: Path) -> None:
    data = bytearray(saved_file.read_bytes())
    data[9] = ord("#")  # the header's JSON
    saved_file.write_bytes(bytes(data))
    with pytest.raises(SerializationError, match="not a gpubp file"):
        load(saved_file)


def test_damaged_gpubp_metadata_is_refused(saved_file: Path, tmp_path: Path) -> None:
    arrays = safetensors_numpy.load_file(saved_file)
    cases = {
        "not json": "{tree:",
        "another format": json.dumps({"format": "other"}),
        "a later version": json.dumps({"format": "gpubp", "version": 99}),
        "missing arrays": json.dumps({"format": "gpubp", "version": 1, "tree": None, "crc32": {}}),
    }
    messages = ["not JSON", "not gpubp's", "version 99 is not supported", "do not match its metadata"]
    for (label, text), message in zip(cases.items(), messages):
        path = tmp_path / f"{label}.safetensors"
        safetensors_numpy.save_file(arrays, path, metadata={"gpubp": text})
        with pytest.raises(SerializationError, match=message):
            load(path)


def test_a_text_file_and_other_formats_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("these are not weights\n" * 10)
    npz = tmp_path / "arrays.npz"
    np.savez(npz, a=np.ones(3))
    for path in (text, npz):
        with pytest.raises(SerializationError, match=f"{path.name}: not a gpubp file"):
            load(path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load(tmp_path / "missing.safetensors")


def test_a_header_claiming_more_than_the_file_holds_is_refused(tmp_path: Path) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4_000_000]}}).encode()
    path = tmp_path / "lies.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(SerializationError, match="not a gpubp file"):
        load(path)


@pytest.mark.torch
@needs_torch
def test_a_foreign_dtype_is_named(tmp_path: Path) -> None:
    import safetensors.torch

    path = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"w": torch.ones(2, dtype=torch.int16)}, path)
    with pytest.raises(SerializationError, match="'w' cannot be a gpubp tensor: dtype int16 is not supported"):
        load(path)


def test_bfloat16_round_trips_and_reads_pytorchs_files(tmp_path: Path) -> None:
    import safetensors.torch

    values = [1.5, -2.25, 3.0e38]
    path = tmp_path / "bf16.safetensors"
    safetensors.torch.save_file({"w": torch.tensor(values, dtype=torch.bfloat16)}, path)
    loaded = load(path)["w"]
    assert loaded.dtype == gp.bfloat16
    np.testing.assert_array_equal(loaded.numpy().astype(np.float32), torch.tensor(values).bfloat16().float().numpy())
    save({"w": loaded}, tmp_path / "again.safetensors")
    again = safetensors.torch.load_file(tmp_path / "again.safetensors")["w"]
    assert again.dtype == torch.bfloat16 and torch.equal(again, torch.tensor(values, dtype=torch.bfloat16))


# -- on a GPU ----------------------------------------------------------------------------------
@pytest.mark.gpu
def test_cuda_tensors_save_and_load_back_to_cuda(tmp_path: Path) -> None:
    net = model().to("cuda")
    opt = gp.optim.Adam(net.parameters(), lr=0.01)
    x = gp.randn(8, 4, device="cuda")
    gp.cross_entropy(net(x), np.arange(8) % 3).backward()
    opt.step()
    path = tmp_path / "cuda.safetensors"
    save({"model": net.state_dict(), "optimizer": opt.state_dict()}, path)
    back = load(path, device="cuda")
    for name, tensor in net.state_dict().items():
        loaded = back["model"][name]
        assert loaded.device == "cuda:0" and loaded.dtype == tensor.dtype
        np.testing.assert_array_equal(loaded.numpy(), tensor.numpy())
    on_cpu = load(path)
    assert all(t.device == "cpu" for t in on_cpu["model"].values())
    other = model().to("cuda")
    other.load_state_dict(back["model"])
    np.testing.assert_array_equal(other(x).numpy(), net(x).numpy())


def test_gp_exports_save_and_load() -> None:
    if not hasattr(gp, "save"):
        pytest.skip("gp.save and gp.load are not exported from gpubp/__init__.py yet")
    assert gp.save is save and gp.load is load
