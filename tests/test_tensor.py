import numpy as np
import pytest

import gpubp as gp


def test_python_floats_default_to_float32() -> None:
    assert gp.tensor([1.0, 2.0]).dtype == np.float32
    assert gp.tensor(3.5).dtype == np.float32


def test_numpy_arrays_keep_their_dtype() -> None:
    assert gp.tensor(np.zeros(2)).dtype == np.float64
    assert gp.tensor(np.zeros(2, np.float32)).dtype == np.float32
    assert gp.tensor([1, 2]).dtype == np.int64


@pytest.mark.parametrize("dtype", ["float64", np.float64, np.dtype("float64")])
def test_dtype_by_name_or_object(dtype) -> None:
    assert gp.tensor([1.0], dtype=dtype).dtype == np.float64


def test_unknown_dtype() -> None:
    with pytest.raises(TypeError, match="unknown dtype 'float99'"):
        gp.tensor([1.0], dtype="float99")


def test_tensor_copies_its_input() -> None:
    source = np.ones(3, np.float32)
    t = gp.tensor(source)
    source[0] = 5
    assert t.numpy()[0] == 1
    t.numpy()[1] = 7  # numpy() is a copy too
    assert t.numpy()[1] == 1


def test_tensor_class_constructor_matches_factory() -> None:
    t = gp.Tensor([[1.0, 2.0]], requires_grad=True)
    assert t.shape == (1, 2) and t.ndim == 2 and t.dtype == np.float32 and t.requires_grad and t.device == "cpu"


def test_integer_tensors_cannot_require_grad() -> None:
    with pytest.raises(TypeError, match="only floating-point tensors can require gradients, not int64"):
        gp.tensor([1, 2], requires_grad=True)
    t = gp.tensor([1, 2])
    with pytest.raises(TypeError, match="int64"):
        t.requires_grad = True


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu:0", "CPU"])
def test_unknown_device(device: str) -> None:
    with pytest.raises(ValueError, match=f"unknown device '{device}'"):
        gp.tensor([1.0], device=device)


def test_cuda_without_gpu_says_why() -> None:
    reason = gp.cuda.unavailable_reason()
    if reason is None:
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="cannot use device 'cuda:0'"):
        gp.zeros(2, device="cuda")
    assert not gp.cuda.is_available() and gp.cuda.device_count() == 0


def test_item_numpy_detach_to() -> None:
    x = gp.tensor([[2.0]], requires_grad=True)
    assert x.item() == 2.0
    d = x.detach()
    assert not d.requires_grad and d.grad_fn is None
    assert x.to("cpu") is x
    y = x.to(dtype="float64")
    assert y.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_item_needs_one_element() -> None:
    with pytest.raises(ValueError, match=r"item\(\) needs a tensor with one element"):
        gp.ones(2).item()


def test_constructors() -> None:
    assert gp.zeros(2, 3).shape == (2, 3)
    assert gp.ones((2, 3), dtype="float64").dtype == np.float64
    assert gp.full((2,), 7.0).numpy().tolist() == [7.0, 7.0]
    assert gp.arange(4).dtype == np.int64 and gp.arange(0.0, 1.0, 0.5).dtype == np.float32
    assert gp.randn(3, 4, requires_grad=True).requires_grad
    u = gp.rand(1000).numpy()
    assert (u >= 0).all() and (u < 1).all()
    with pytest.raises(ValueError, match="shape must be non-negative integers"):
        gp.zeros(-1)


def test_manual_seed_reproduces_and_state_round_trips() -> None:
    gp.manual_seed(3)
    a = gp.randn(5).numpy()
    gp.manual_seed(3)
    state = gp.get_rng_state()
    b = gp.randn(5).numpy()
    gp.set_rng_state(state)
    c = gp.randn(5).numpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(b, c)


def test_comparisons_and_argmax_are_plain_tensors() -> None:
    x = gp.tensor([[0.1, 0.9], [0.8, 0.2]], requires_grad=True)
    pred = x.argmax(axis=1)
    assert (pred == gp.tensor([1, 0])).numpy().all()
    assert not (x > 0.5).requires_grad


def test_numpy_array_on_the_left_defers_to_tensor() -> None:
    y = np.ones(3, np.float32) * gp.ones(3, requires_grad=True)
    assert isinstance(y, gp.Tensor) and y.requires_grad


def test_repr() -> None:
    assert repr(gp.tensor([1.0], requires_grad=True)) == "tensor([1.], dtype=float32, device='cpu', requires_grad=True)"


# -- dtype and device conversions, PyTorch's spellings ---------------------------------------
def test_to_takes_pytorchs_forms() -> None:
    x = gp.ones(2, requires_grad=True)
    assert x.to("float64").dtype == np.float64 and x.to(np.float16).dtype == np.float16
    assert x.to(gp.float64).dtype == np.float64 and x.to(dtype="float64").dtype == np.float64
    assert x.to("cpu") is x and x.to(device="cpu") is x and x.to("cpu", "float64").dtype == np.float64
    assert x.to(gp.tensor([1], dtype="int32")).dtype == np.int32
    copy = x.to("cpu", copy=True)
    assert copy is not x and copy.requires_grad and copy.data is not x.data
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        x.to("gpu")


def test_dtype_methods() -> None:
    x = gp.tensor([1.5, -2.5], requires_grad=True)
    assert x.double().dtype == np.float64 and x.half().dtype == np.float16 and x.float() is x
    assert x.long().dtype == np.int64 and x.int().dtype == np.int32 and x.bool().dtype == np.bool_
    assert x.long().tolist() == [1, -2] and not x.long().requires_grad  # as PyTorch: integers carry no grad
    x.half().double().sum().backward()
    assert x.grad.dtype == np.float32


def test_tensor_methods_mirror_the_functions() -> None:
    x = gp.tensor([[1.0, -4.0], [9.0, 2.0]])
    assert x.abs().sqrt().tolist()[1][0] == 3.0 and x.abs().tolist() == [[1.0, 4.0], [9.0, 2.0]]
    assert x.clamp(0, 3).tolist() == [[1.0, 0.0], [3.0, 2.0]] and x.min().item() == -4.0
    assert x.matmul(x).shape == (2, 2) and x.pow(2).sum().item() == 102.0 and x.neg().sum().item() == -8.0
    assert x.std().item() == pytest.approx(np.std(x.numpy(), ddof=1)) and x.var(dim=0).shape == (2,)
    assert x.maximum(x.t()).tolist() == [[1.0, 9.0], [9.0, 2.0]] and x.minimum(0.0).sum().item() == -4.0
    assert x.dim() == 2 and x.flatten().shape == (4,) and x.unsqueeze(0).squeeze(0).shape == (2, 2)
    assert x.view(4).shape == (4,) and x.permute(1, 0).tolist() == x.t().tolist() and x.clone().tolist() == x.tolist()


# -- interop dunders: they hand the work to gpubp.interop ---------------------------------------
def test_interop_dunders_delegate(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpubp import interop

    t = gp.ones(2)
    calls = []
    monkeypatch.setattr(interop, "to_numpy_array", lambda *a, **k: calls.append(("array", a, k)) or np.zeros(2))
    monkeypatch.setattr(interop, "dlpack", lambda *a, **k: calls.append(("dlpack", a, k)) or "capsule")
    monkeypatch.setattr(interop, "dlpack_device", lambda *a: calls.append(("device", a, {})) or (1, 0))
    assert np.asarray(t, dtype=np.float64).tolist() == [0.0, 0.0]
    assert t.__dlpack__(stream=None, max_version=(1, 0)) == "capsule"
    assert t.__dlpack_device__() == (1, 0)
    assert calls == [
        ("array", (t,), {"dtype": np.dtype(np.float64), "copy": None}),
        ("dlpack", (t,), {"stream": None, "max_version": (1, 0)}),
        ("device", (t,), {}),
    ]
    assert not hasattr(t, "__cuda_array_interface__")  # CPU tensors have none, as in PyTorch


def test_softmax_methods_take_dim_and_the_axis_alias() -> None:
    x = gp.randn(3, 4)
    for method, function in (("softmax", gp.softmax), ("log_softmax", gp.log_softmax)):
        want = function(x, 0).numpy()
        np.testing.assert_array_equal(getattr(x, method)(dim=0).numpy(), want)
        np.testing.assert_array_equal(getattr(x, method)(0).numpy(), want)
        np.testing.assert_array_equal(getattr(x, method)(axis=0).numpy(), want)
