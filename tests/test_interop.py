"""Sharing memory with NumPy, PyTorch and CuPy: np.asarray (the __array__ protocol),
DLPack both ways, and __cuda_array_interface__ (GPU tests run where CUDA is)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gpubp as gp
from gpubp import interop
from gpubp.interop import from_dlpack
from gpubp.tensor import _wrap

try:
    import torch
except ImportError:  # the cross-checks are optional
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed; the cross-check is optional")
needs_array_protocol = pytest.mark.skipif(
    not hasattr(gp.Tensor, "__array__"), reason="Tensor.__array__ is not in gpubp/tensor.py yet"
)
needs_dlpack_methods = pytest.mark.skipif(
    not hasattr(gp.Tensor, "__dlpack__"), reason="Tensor.__dlpack__ is not in gpubp/tensor.py yet"
)


class Exported:
    """What Tensor.__dlpack__/__dlpack_device__ do, as a stand-alone producer, so the
    consumers' side is tested whether or not the Tensor methods exist yet."""

    def __init__(self, tensor: gp.Tensor) -> None:
        self.tensor = tensor

    def __dlpack__(self, **kwargs: Any) -> Any:
        return interop.dlpack(self.tensor, **kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return interop.dlpack_device(self.tensor)


class FakeCudaBackend:
    """Just enough of a backend for a tensor that says it lives on cuda:0."""

    device = "cuda:0"


class FakeCudaArray(np.ndarray):
    """A NumPy array that carries a CUDA array interface, to stand for a CuPy array."""

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (1234, False), "version": 3}


# -- np.asarray ----------------------------------------------------------------------------
def test_asarray_shares_the_cpu_tensors_memory() -> None:
    t = gp.tensor([1.0, 2.0, 3.0])
    a = interop.to_numpy_array(t)
    assert np.shares_memory(a, t.data) and a.flags.writeable
    a[0] = 10
    assert t.numpy()[0] == 10


def test_asarray_copy_semantics() -> None:
    t = gp.tensor([[1.0, 2.0]])
    copied = interop.to_numpy_array(t, copy=True)
    assert not np.shares_memory(copied, t.data)
    np.testing.assert_array_equal(copied, t.numpy())
    assert np.shares_memory(interop.to_numpy_array(t, copy=False), t.data)
    cast = interop.to_numpy_array(t, dtype=np.float64)  # a cast copies even with copy=None
    assert cast.dtype == np.float64 and not np.shares_memory(cast, t.data)
    assert np.shares_memory(interop.to_numpy_array(t, dtype="float32"), t.data)  # same dtype: no copy
    with pytest.raises(ValueError, match="without a copy"):
        interop.to_numpy_array(t, dtype=np.float64, copy=False)


def test_asarray_of_a_tensor_that_requires_grad_is_read_only() -> None:
    w = gp.tensor([1.0, 2.0], requires_grad=True)
    view = interop.to_numpy_array(w)
    assert np.shares_memory(view, w.data) and not view.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        view[0] = 5
    assert w.data.flags.writeable  # the tensor itself is unchanged
    assert interop.to_numpy_array(w, copy=True).flags.writeable


def test_a_cuda_tensor_refuses_implicit_conversion() -> None:
    t = _wrap(np.zeros(3, dtype=np.float32), FakeCudaBackend())
    with pytest.raises(TypeError, match=r"can't convert a cuda:0 tensor to a NumPy array implicitly; use \.numpy\(\)"):
        interop.to_numpy_array(t)


def test_asarray_inside_a_captured_function_is_a_host_read() -> None:
    model = gp.nn.Linear(2, 2)

    @gp.jit
    def step(x: gp.Tensor) -> gp.Tensor:
        out = model(x)
        interop.to_numpy_array(out.detach())
        return out

    x = gp.ones(1, 2)
    step(x)
    step(x)
    with pytest.raises(gp.CaptureError, match=r"np\.asarray\(tensor\) reads a value on the host"):
        step(x)


@needs_array_protocol
def test_numpy_functions_take_tensors_through_the_protocol() -> None:
    t = gp.tensor([[1.0, 2.0], [3.0, 4.0]])
    a = np.asarray(t)
    assert np.shares_memory(a, t.data)
    assert np.array(t, copy=True) is not t.data and np.array(t, dtype=np.float64).dtype == np.float64
    with pytest.raises(ValueError):
        np.asarray(t, dtype=np.float64, copy=False)
    assert np.sum(np.asarray(t)) == 10


# -- DLPack ----------------------------------------------------------------------------------
def test_dlpack_device_of_a_cpu_tensor() -> None:
    assert interop.dlpack_device(gp.zeros(2)) == (1, 0)


def test_numpy_round_trip_shares_memory() -> None:
    t = gp.tensor(np.arange(6, dtype=np.float64).reshape(2, 3))
    a = np.from_dlpack(Exported(t))
    assert a.dtype == np.float64 and a.shape == (2, 3) and np.shares_memory(a, t.data)
    back = from_dlpack(a)
    assert isinstance(back, gp.Tensor) and back.device == "cpu" and np.shares_memory(back.data, t.data)
    back.data[1, 2] = -1
    assert t.numpy()[1, 2] == -1


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int32", "int64", "uint8", "bool"])
def test_from_dlpack_keeps_dtype_shape_and_strides(dtype: str) -> None:
    base = (np.arange(24).reshape(4, 6) % 3).astype(dtype)
    view = base[::2, 1::2]  # strided: shared as it is, no compacting copy
    t = from_dlpack(view)
    assert t.dtype == np.dtype(dtype) and t.shape == (2, 3)
    assert np.shares_memory(t.data, base)
    np.testing.assert_array_equal(t.numpy(), view)


def test_from_dlpack_copy_and_device() -> None:
    a = np.ones(3, dtype=np.float32)
    copied = from_dlpack(a, copy=True)
    assert not np.shares_memory(copied.data, a)
    same = from_dlpack(a, device="cpu", copy=False)
    assert np.shares_memory(same.data, a)


def test_from_dlpack_refuses_what_gpubp_cannot_hold() -> None:
    with pytest.raises(TypeError, match="needs an object with __dlpack__"):
        from_dlpack([1.0, 2.0])
    with pytest.raises(TypeError, match="from_dlpack: dtype int16 is not supported"):
        from_dlpack(np.zeros(2, dtype=np.int16))

    class OnRocm:
        def __dlpack__(self, **kwargs: Any) -> Any:
            raise AssertionError("not to be asked for its data")

        def __dlpack_device__(self) -> tuple[int, int]:
            return (10, 0)

    with pytest.raises(ValueError, match=r"on a ROCm device \(DLPack device type 10\)"):
        from_dlpack(OnRocm())


def test_from_dlpack_of_cuda_memory_without_a_gpu_says_why() -> None:
    if gp.cuda.is_available():
        pytest.skip("this machine has a GPU; the CUDA path is tested by the gpu tests")

    class OnCuda:
        def __dlpack__(self, **kwargs: Any) -> Any:
            raise AssertionError("not to be asked for its data")

        def __dlpack_device__(self) -> tuple[int, int]:
            return (2, 0)

    with pytest.raises(RuntimeError, match="CUDA"):
        from_dlpack(OnCuda())


def test_dlpack_refuses_a_tensor_that_requires_grad() -> None:
    w = gp.ones(2, requires_grad=True)
    with pytest.raises(BufferError, match=r"requires grad.*detach\(\)"):
        interop.dlpack(w)
    assert np.shares_memory(np.from_dlpack(Exported(w.detach())), w.data)


def test_dlpack_passes_only_the_keywords_given() -> None:
    seen = {}

    class Array:
        def __dlpack__(self, **kwargs: Any) -> str:
            seen.update(kwargs)
            return "capsule"

    t = _wrap(Array(), gp.tensor(0.0).backend)
    assert interop.dlpack(t) == "capsule" and seen == {}
    interop.dlpack(t, stream=7, max_version=(1, 0))
    assert seen == {"stream": 7, "max_version": (1, 0)}


@pytest.mark.torch
@needs_torch
def test_torch_round_trip_shares_memory_both_ways() -> None:
    t = gp.tensor([[1.0, 2.0], [3.0, 4.0]])
    pt = torch.from_dlpack(Exported(t))
    assert pt.dtype == torch.float32 and tuple(pt.shape) == (2, 2)
    pt[0, 0] = 100.0  # a write through torch is seen by gpubp
    assert t.numpy()[0, 0] == 100.0
    t.data[1, 1] = -4.0  # and a write through gpubp by torch
    assert pt[1, 1].item() == -4.0

    source = torch.arange(12, dtype=torch.float64).reshape(3, 4)
    g = from_dlpack(source)
    assert g.dtype == np.float64 and g.shape == (3, 4) and g.device == "cpu"
    source[2, 3] = 0.5
    assert g.numpy()[2, 3] == 0.5
    g.data[0, 0] = 9.0
    assert source[0, 0].item() == 9.0
    # gpubp's ops run on it: the imported tensor is an ordinary tensor
    np.testing.assert_allclose((g * 2).sum().item(), 2 * source.sum().item())


@pytest.mark.torch
@needs_torch
def test_torch_tensors_that_gpubp_cannot_hold_are_refused() -> None:
    with pytest.raises(TypeError, match="cannot hold a Tensor of dtype torch.bfloat16"):
        from_dlpack(torch.ones(2, dtype=torch.bfloat16))
    with pytest.raises(BufferError, match="require gradient"):  # PyTorch itself refuses to export it
        from_dlpack(torch.ones(2, requires_grad=True))


@pytest.mark.torch
@needs_torch
@needs_dlpack_methods
def test_the_tensor_methods_speak_dlpack() -> None:
    t = gp.tensor([1.0, 2.0, 3.0])
    assert t.__dlpack_device__() == (1, 0)
    pt = torch.from_dlpack(t)
    pt += 1
    np.testing.assert_array_equal(t.numpy(), [2.0, 3.0, 4.0])
    assert np.shares_memory(np.from_dlpack(t), t.data)
    assert np.shares_memory(from_dlpack(t).data, t.data)


# -- __cuda_array_interface__ ------------------------------------------------------------------------
def test_cuda_array_interface_is_absent_on_the_cpu() -> None:
    with pytest.raises(AttributeError, match="cpu tensor has no __cuda_array_interface__"):
        interop.cuda_array_interface(gp.zeros(2))
    if isinstance(getattr(gp.Tensor, "__cuda_array_interface__", None), property):
        assert not hasattr(gp.zeros(2), "__cuda_array_interface__")


def test_cuda_array_interface_is_the_backend_arrays() -> None:
    t = _wrap(np.zeros(3, dtype=np.float32).view(FakeCudaArray), FakeCudaBackend())
    assert interop.cuda_array_interface(t)["data"] == (1234, False)
    t.requires_grad = True
    with pytest.raises(RuntimeError, match=r"requires grad.*detach\(\)"):
        interop.cuda_array_interface(t)


# -- on a GPU ------------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_cupy_round_trip_on_cuda() -> None:
    import cupy

    t = gp.randn(3, 4, device="cuda")
    assert interop.dlpack_device(t) == (2, 0)
    c = cupy.from_dlpack(Exported(t))
    assert c.data.ptr == t.data.data.ptr  # one buffer
    c[0, 0] = 7.0
    assert t.numpy()[0, 0] == 7.0
    source = cupy.arange(6, dtype=cupy.float32).reshape(2, 3)
    g = from_dlpack(source)
    assert g.device == "cuda:0" and g.data.data.ptr == source.data.ptr
    np.testing.assert_array_equal((g * 2).numpy(), 2 * cupy.asnumpy(source))
    on_host = from_dlpack(source, device="cpu")  # a copy to the host, as asked
    assert on_host.device == "cpu"
    np.testing.assert_array_equal(on_host.numpy(), cupy.asnumpy(source))
    with pytest.raises(ValueError, match="copy=False"):
        from_dlpack(source, device="cpu", copy=False)


@pytest.mark.gpu
@pytest.mark.torch
@needs_torch
def test_torch_round_trip_on_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("this PyTorch build has no CUDA")
    t = gp.randn(5, device="cuda")
    pt = torch.from_dlpack(Exported(t))
    assert pt.is_cuda and pt.data_ptr() == t.data.data.ptr
    pt.mul_(2)
    torch.cuda.synchronize()
    np.testing.assert_array_equal(t.numpy(), pt.cpu().numpy())
    source = torch.arange(8, dtype=torch.float32, device="cuda")
    g = from_dlpack(source)
    assert g.device == "cuda:0" and g.data.data.ptr == source.data_ptr()
    g.fill_(3.0)
    gp.cuda.synchronize()
    assert source.sum().item() == 24.0


@pytest.mark.gpu
def test_cuda_array_interface_on_cuda() -> None:
    import cupy

    t = gp.randn(2, 3, device="cuda")
    interface = interop.cuda_array_interface(t)
    assert interface["shape"] == (2, 3) and interface["data"][0] == t.data.data.ptr
    c = cupy.asarray(_CudaInterface(t))
    assert c.data.ptr == t.data.data.ptr
    np.testing.assert_array_equal(cupy.asnumpy(c), t.numpy())
    if isinstance(getattr(gp.Tensor, "__cuda_array_interface__", None), property):
        assert hasattr(t, "__cuda_array_interface__")


@pytest.mark.gpu
@needs_array_protocol
def test_asarray_of_a_real_cuda_tensor_raises() -> None:
    with pytest.raises(TypeError, match=r"use \.numpy\(\)"):
        np.asarray(gp.ones(2, device="cuda"))


class _CudaInterface:
    """Exposes a tensor's __cuda_array_interface__ as the Tensor property will."""

    def __init__(self, tensor: gp.Tensor) -> None:
        self.__cuda_array_interface__ = interop.cuda_array_interface(tensor)


def test_gp_exports_from_dlpack() -> None:
    if not hasattr(gp, "from_dlpack"):
        pytest.skip("gp.from_dlpack is not exported from gpubp/__init__.py yet")
    assert gp.from_dlpack is from_dlpack
