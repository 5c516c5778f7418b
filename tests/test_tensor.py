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
