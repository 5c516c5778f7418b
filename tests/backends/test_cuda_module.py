"""``gp.cuda`` on any machine: clear reasons, switches, and the backend module importing."""

from __future__ import annotations

import importlib.util

import pytest

import gpubp as gp
from gpubp.cuda import describe_startup_failure

no_cuda = pytest.mark.skipif(gp.cuda.is_available(), reason="a CUDA device is present here")


def test_reason_names_a_missing_driver():
    text = describe_startup_failure("cudaErrorInsufficientDriver: ...", 0, 13000)
    assert "no NVIDIA driver" in text


def test_reason_names_a_driver_too_old_with_both_versions():
    text = describe_startup_failure("cudaErrorInsufficientDriver: CUDA driver version is insufficient", 12040, 13000)
    assert "too old" in text and "12.4" in text and "13.0" in text and "cupy-cuda12x" in text


def test_reason_names_a_missing_device():
    assert "no CUDA device" in describe_startup_failure("cudaErrorNoDevice: no CUDA-capable device", 13000, 13000)


def test_reason_passes_other_errors_through():
    assert "weird failure" in describe_startup_failure("weird failure", 13000, 13000)


@no_cuda
def test_without_cuda_everything_says_why():
    reason = gp.cuda.unavailable_reason()
    assert reason
    assert not gp.cuda.is_available() and gp.cuda.device_count() == 0
    with pytest.raises(RuntimeError, match="cuda:0"):
        gp.zeros(2, device="cuda")
    with pytest.raises(RuntimeError, match="synchronize"):
        gp.cuda.synchronize()


def test_tf32_is_off_by_default_and_switchable():
    assert gp.cuda.tf32_enabled() is False
    if gp.cuda.is_available():
        pytest.skip("the GPU tests check the switch on a device")
    gp.cuda.set_tf32(True)
    try:
        assert gp.cuda.tf32_enabled() is True
    finally:
        gp.cuda.set_tf32(False)
    assert gp.cuda.tf32_enabled() is False


def test_cpu_synchronize_is_a_no_op():
    gp.cuda.synchronize("cpu")


@pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="CuPy is not installed")
def test_cupy_backend_module_imports_without_a_device():
    from gpubp.backends.cupy_backend import CupyBackend

    assert CupyBackend.name == "cuda"
