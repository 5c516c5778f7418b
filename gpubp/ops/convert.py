"""Changing a tensor's dtype or device explicitly; gradients flow back unchanged."""

from __future__ import annotations

from typing import Any

from gpubp import dtypes
from gpubp.backends import Backend, get_backend
from gpubp.tensor import Function, Tensor


class Cast(Function):
    handles_bfloat16 = True  # the backend's casts (cast.cu on a GPU)

    def __init__(self, dtype: Any) -> None:
        self.dtype = dtype

    def forward(self, a: Any) -> Any:
        self.in_dtype = dtypes.logical(a.dtype)
        return self.backend.astype(a, self.dtype)

    derivatives = {"a": "· 1, cast back to {in_dtype}"}

    def backward(self, g: Any) -> Any:
        return self.backend.astype(g, self.in_dtype)


class Move(Function):
    handles_bfloat16 = True  # a copy of the bits

    def __init__(self, target: Backend) -> None:
        self.result_backend = target

    def forward(self, a: Any) -> Any:
        return self.result_backend.receive(a, self.backend)

    derivatives = {"a": "· 1, copied back to {backend.device}"}

    def backward(self, g: Any) -> Any:
        return self.backend.receive(g, self.result_backend)


def cast(a: Tensor, dtype: Any) -> Tensor:
    """A copy of ``a`` with another dtype (``a`` itself if the dtype is the same).

    To a float dtype the cast is recorded (the gradient returns in a's dtype); to
    an integer or bool dtype the result is a constant that does not require grad,
    as in PyTorch (``x.long()`` of a tensor that requires grad is plain data).
    """
    dtype = dtypes.as_dtype(dtype)
    if dtype == a.dtype:
        return a
    if not dtypes.is_floating(dtype):
        return Cast(dtype)(a.detach())
    return Cast(dtype)(a)


def move(a: Tensor, device: str | Backend) -> Tensor:
    """A copy of ``a`` on another device (``a`` itself if it is already there)."""
    target = get_backend(device)
    if target is a.backend:
        return a
    return Move(target)(a)
