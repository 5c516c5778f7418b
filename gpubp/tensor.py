"""The Tensor and the tape.

A Tensor holds a backend array (``.data``) and, when it was computed from
tensors that require gradients, the ``Function`` that made it (``._node``).
The nodes form the tape: ``loss.backward()`` orders them topologically
(iteratively, so a 5000-op chain is fine), calls each node's ``backward`` once
with the sum of the gradients from all its consumers, and accumulates the
results into the leaves' ``.grad``.

In-place changes (``+=``, ``x[i] = v``, ``copy_``) of tensors in the graph are
recorded, as PyTorch records them (``gpubp/ops/inplace.py``).
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gpubp import capture, dtypes, grad_mode
from gpubp.backends import Backend

# Counts in-place changes to any tensor. A node remembers the count at forward;
# if it is unchanged at backward, no saved array can have changed and the
# per-input version check is skipped (the common case in training).
_inplace_epoch = 0
# The count at the last in-place change that was recorded on the tape. Only nodes
# older than it can need ``inplace.resolve`` at backward; -1: none ever was.
_last_recorded_inplace = -1
# Set once a hook or retain_grad exists: until then backward does not look for them.
_hooks_in_use = False

Axis = int | Sequence[int] | None


def _wrap(data: Any, backend: Backend, requires_grad: bool = False) -> Tensor:
    """Fast internal constructor: no copies, no checks."""
    t = object.__new__(Tensor)
    t.data = data
    t._backend = backend
    t._requires_grad = requires_grad
    t.grad = None
    t._node = None
    t._version = [0]
    t._view = None
    t._hooks = None
    return t


class Tensor:
    """An n-dimensional array on a device that records the ops applied to it.

    Create with ``gp.tensor(data, requires_grad=False, dtype=None, device="cpu")``;
    ``Tensor(...)`` takes the same arguments.
    """

    # _view: (base, the view ops from it) for a view of another tensor's memory;
    # _hooks: a leaf's gradient hooks (a non-leaf's live on its node).
    __slots__ = ("data", "grad", "_requires_grad", "_backend", "_node", "_version", "_view", "_hooks", "__weakref__")
    # Makes NumPy defer to our reflected operators: ndarray * Tensor -> Tensor.__rmul__.
    __array_ufunc__ = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Tensor:
        # The slots added since a subclass's __init__ was written (nn.Parameter sets
        # its own) start empty here.
        t = object.__new__(cls)
        t._view = None
        t._hooks = None
        return t

    def __init__(
        self,
        data: Any,
        requires_grad: bool = False,
        dtype: Any = None,
        device: str = "cpu",
    ) -> None:
        from gpubp.creation import tensor

        made = tensor(data, requires_grad=requires_grad, dtype=dtype, device=device)
        self.data = made.data
        self._backend = made._backend
        self._requires_grad = made._requires_grad
        self.grad = None
        self._node = None
        self._version = [0]
        self._view = None
        self._hooks = None

    # -- description -------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def dim(self) -> int:
        """The number of dimensions (PyTorch's name for ``ndim``)."""
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return dtypes.logical(self.data.dtype)

    @property
    def device(self) -> str:
        return self._backend.device

    @property
    def backend(self) -> Backend:
        """The backend (array module and fused kernels) this tensor's data lives on."""
        return self._backend

    @property
    def size(self) -> int:
        return int(self.data.size)

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and not dtypes.is_floating(self.dtype):
            raise TypeError(f"only floating-point tensors can require gradients, not {self.dtype}")
        if self._node is not None and not value:
            raise RuntimeError("requires_grad can only be switched off on leaf tensors; use .detach()")
        self._requires_grad = bool(value)

    def requires_grad_(self, value: bool = True) -> Tensor:
        self.requires_grad = value
        return self

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def grad_fn(self) -> Function | None:
        """The op that produced this tensor (None for leaves)."""
        return self._node

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        extra = f", dtype={self.dtype}, device='{self.device}'"
        if self._requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    # -- leaving the graph and the device ----------------------------------
    def numpy(self) -> np.ndarray:
        """A NumPy copy of the data (copies from the GPU: this synchronises)."""
        if capture.current is not None:
            capture.current.host_read(".numpy()")
        return self._backend.to_host(self.data)

    def item(self) -> float | int | bool:
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has shape {self.shape}")
        if capture.current is not None:
            capture.current.host_read(".item()")
        return self._backend.item(self.data)

    def tolist(self) -> Any:
        return self.numpy().tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self.item())

    def detach(self) -> Tensor:
        """The same data, cut from the graph. Shares memory and the in-place version counter."""
        t = _wrap(self.data, self._backend)
        t._version = self._version
        return t

    # -- sharing memory with other libraries (gpubp/interop.py does the work) --
    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """``np.asarray(t)``: a CPU tensor's memory as a NumPy array (see gpubp.interop)."""
        from gpubp import interop

        return interop.to_numpy_array(self, dtype=dtype, copy=copy)

    def __dlpack__(self, **kwargs: Any) -> Any:
        """A DLPack capsule of this tensor's memory (``torch.from_dlpack(t)``, ``np.from_dlpack(t)``)."""
        from gpubp import interop

        return interop.dlpack(self, **kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        from gpubp import interop

        return interop.dlpack_device(self)

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        """A CUDA tensor's memory for Numba, CuPy and PyTorch; a CPU tensor has none
        (AttributeError, so ``hasattr`` is False)."""
        if self._backend.device == "cpu":
            raise AttributeError("a cpu tensor has no __cuda_array_interface__ (it is for CUDA tensors)")
        from gpubp import interop

        return interop.cuda_array_interface(self)

    # -- dtype and device ------------------------------------------------------
    def to(self, *args: Any, device: Any = None, dtype: Any = None, copy: bool = False) -> Tensor:
        """This tensor on another device and/or with another dtype, as PyTorch's
        ``to``: ``t.to("cuda")``, ``t.to(gp.float64)``, ``t.to("cuda", "float16")``,
        ``t.to(other)`` (other's device and dtype), or by keywords. Returns self when
        nothing changes (unless ``copy=True``). Differentiable: gradients flow back
        to the original device and dtype."""
        from gpubp.ops.convert import cast, move

        if len(args) > 2:
            raise TypeError(f"to() takes at most 2 positional arguments ({len(args)} given)")
        for arg in args:
            if isinstance(arg, Tensor):
                device, dtype = arg._backend, arg.dtype
            elif _names_a_dtype(arg):
                dtype = arg
            else:
                device = arg
        out = self
        if device is not None:
            out = move(out, device)
        if dtype is not None:
            out = cast(out, dtype)
        if copy and out is self:
            out = shape_ops.clone(self)
        return out

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self, index: int = 0) -> Tensor:
        return self.to(f"cuda:{index}")

    def astype(self, dtype: Any) -> Tensor:
        return self.to(dtype=dtype)

    def float(self) -> Tensor:
        """As float32."""
        return self.to(dtype=dtypes.float32)

    def double(self) -> Tensor:
        """As float64."""
        return self.to(dtype=dtypes.float64)

    def half(self) -> Tensor:
        """As float16."""
        return self.to(dtype=dtypes.float16)

    def long(self) -> Tensor:
        """As int64 (not differentiable: the result does not require grad)."""
        return self.to(dtype=dtypes.int64)

    def int(self) -> Tensor:
        """As int32 (not differentiable)."""
        return self.to(dtype=dtypes.int32)

    def bool(self) -> Tensor:
        """As bool (not differentiable)."""
        return self.to(dtype=dtypes.bool_)

    # -- gradients ---------------------------------------------------------
    def backward(self, grad: Tensor | Any = None, retain_graph: bool = False) -> None:
        """Accumulates d(self)/d(leaf) into every leaf's ``.grad``.

        ``grad`` is the gradient of some scalar with respect to self; it may be
        omitted only when self has one element. The graph's saved arrays are
        freed afterwards unless ``retain_graph=True``.
        """
        if not self._requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad (no leaf asked for gradients)")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a one-element tensor; this one has shape {self.shape}. "
                    "Pass grad= of the same shape, or reduce first (e.g. .sum())."
                )
            seed = self._backend.one(self.data.shape, self.dtype)
        else:
            seed = _gradient_array(grad, self)
        backward(self, seed, retain_graph)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forgets the accumulated gradient: sets ``.grad`` to None, or with
        ``set_to_none=False`` fills the existing ``.grad`` with zeros in place (the
        same tensor stays, as PyTorch's ``zero_grad(set_to_none=False)``). A
        gradient array that nothing else references goes back to the backend,
        which may reuse it for the next gradient of the same shape (see Backend.recycle)."""
        grad = self.grad
        if grad is None:
            return
        if not set_to_none:
            grad.fill_(0)
            return
        self.grad = None
        # 2 = this local name + getrefcount's argument; 2 = the Tensor's slot + the argument.
        if sys.getrefcount(grad) == 2 and sys.getrefcount(grad.data) == 2:
            self._backend.recycle(grad.data)

    def retain_grad(self) -> None:
        """Keeps this non-leaf's gradient in ``.grad`` at backward (leaves always do).
        It accumulates over backward calls, as a leaf's."""
        global _hooks_in_use
        if not self._requires_grad:
            raise RuntimeError("retain_grad() on a tensor that does not require grad")
        if self._node is not None:
            self._node.retained = weakref.ref(self)
            _hooks_in_use = True

    @property
    def retains_grad(self) -> bool:
        """Whether ``retain_grad()`` was called on this non-leaf."""
        node = self._node
        return node is not None and node.retained is not None and node.retained() is self

    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> RemovableHandle:
        """Calls ``hook(grad)`` each time the gradient with respect to this tensor is
        computed, before it is used (for a leaf: before it is added to ``.grad``);
        a Tensor the hook returns replaces the gradient. Returns a handle whose
        ``remove()`` takes the hook off. As in PyTorch, a hook registered before an
        in-place change of this tensor sees the gradient of its value before the change."""
        global _hooks_in_use
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that does not require grad")
        owner: Any = self if self._node is None else self._node
        hooks = owner._hooks if owner is self else owner.hooks
        if hooks is None:
            hooks = []
            if owner is self:
                self._hooks = hooks
            else:
                owner.hooks = hooks
        hooks.append(hook)
        _hooks_in_use = True
        return RemovableHandle(hooks, hook)

    def register_post_accumulate_grad_hook(self, hook: Callable[[Tensor], None]) -> RemovableHandle:
        """Calls ``hook(self)`` on a leaf each time backward has added this pass's
        gradient into its ``.grad`` (its last contribution summed, the
        ``register_hook`` hooks run), while the rest of the pass still runs: as
        PyTorch's hook of that name. DistributedDataParallel starts reducing a
        gradient from it. Returns a handle whose ``remove()`` takes the hook off."""
        global _hooks_in_use
        if self._node is not None:
            raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that does not require grad")
        if self._hooks is None:
            self._hooks = []
        wrapped = _PostAccumulateGradHook(hook)
        self._hooks.append(wrapped)
        _hooks_in_use = True
        return RemovableHandle(self._hooks, wrapped)

    # -- in place ---------------------------------------------------------------
    def bump_version(self) -> None:
        """Marks the data as changed in place, so backward detects stale saved values."""
        global _inplace_epoch
        _inplace_epoch += 1
        self._version[0] += 1
        if capture.current is not None:
            capture.current.saw((self,))

    def _records(self, other: Any) -> bool:
        """Whether an in-place change of self by ``other`` goes on the tape."""
        return grad_mode.enabled and (self._requires_grad or (isinstance(other, Tensor) and other._requires_grad))

    def _inplace(self, fn: str, other: Any) -> Tensor:
        if self._records(other):
            op = _INPLACE_OPS[fn]
            # *= and /= need the old values for backward: they get a copy of them.
            needs_old = fn in ("__imul__", "__itruediv__")
            return inplace.record(self, lambda old: op(old, old if other is self else other), needs_old)
        value = _operand_array(other, self)
        self._write(lambda data: getattr(data, fn)(value))
        return self

    def _write(self, change: Callable[[Any], Any]) -> None:
        """Applies ``change`` to this tensor's array in place and bumps its version.
        bfloat16 stored as raw words (a GPU's) is changed as float32 and rounded
        back: NumPy-style writes would treat the words as integers."""
        data = self.data
        if data.dtype is not _RAW_BFLOAT16:
            change(data)
        else:
            backend = self._backend
            wide = backend.astype(data, dtypes.float32)
            change(wide)
            backend.copy_into(data, backend.astype(wide, _BFLOAT16))
        self.bump_version()

    def __iadd__(self, other: Any) -> Tensor:
        return self._inplace("__iadd__", other)

    def __isub__(self, other: Any) -> Tensor:
        return self._inplace("__isub__", other)

    def __imul__(self, other: Any) -> Tensor:
        return self._inplace("__imul__", other)

    def __itruediv__(self, other: Any) -> Tensor:
        return self._inplace("__itruediv__", other)

    def __setitem__(self, index: Any, value: Any) -> None:
        if self._records(value):
            if not inplace.writes_itself(self, index, value):
                inplace.record(self, lambda old: shape_ops.setitem(old, index, value))
            return
        where, value = _index_arrays(index, self), _operand_array(value, self)
        self._write(lambda data: data.__setitem__(where, value))

    def copy_(self, source: Any) -> Tensor:
        """Copies ``source`` (same shape and device; any dtype, converted) into this
        tensor; differentiable in both when grad mode is on, as PyTorch's."""
        shape = source.shape if isinstance(source, Tensor) else getattr(source, "shape", self.shape)
        if tuple(shape) != self.shape:
            raise ValueError(f"copy_: shape {tuple(shape)} does not match {self.shape}")
        if self._records(source):
            return inplace.record(self, lambda old: shape_ops.setitem(old, Ellipsis, source))
        value = _operand_array(source, self)
        self._write(lambda data: data.__setitem__(Ellipsis, value))
        return self

    def fill_(self, value: Any) -> Tensor:
        """Sets every entry to ``value`` (a number or a one-element tensor)."""
        if self._records(value):
            return inplace.record(self, lambda old: shape_ops.setitem(old, Ellipsis, value))
        if isinstance(value, (bool, int, float)):
            self._write(lambda data: data.fill(value))
        else:
            value = _operand_array(value, self)
            self._write(lambda data: data.__setitem__(Ellipsis, value))
        return self

    def zero_(self) -> Tensor:
        return self.fill_(0)

    # -- differentiable ops (defined in gpubp.ops) --------------------------
    def __add__(self, other: Any) -> Tensor:
        return elementwise.add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return elementwise.add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return elementwise.sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return elementwise.sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return elementwise.mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return elementwise.mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return elementwise.div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return elementwise.div(other, self)

    def __pow__(self, other: Any) -> Tensor:
        return elementwise.pow(self, other)

    def __rpow__(self, other: Any) -> Tensor:
        return elementwise.pow(other, self)

    def __neg__(self) -> Tensor:
        return elementwise.neg(self)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return elementwise.abs(self)

    def __matmul__(self, other: Any) -> Tensor:
        return matmul.matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return matmul.matmul(other, self)

    def add(self, other: Any) -> Tensor:
        return elementwise.add(self, other)

    def sub(self, other: Any) -> Tensor:
        return elementwise.sub(self, other)

    def mul(self, other: Any) -> Tensor:
        return elementwise.mul(self, other)

    def div(self, other: Any) -> Tensor:
        return elementwise.div(self, other)

    def pow(self, exponent: Any) -> Tensor:
        return elementwise.pow(self, exponent)

    def neg(self) -> Tensor:
        return elementwise.neg(self)

    def matmul(self, other: Any) -> Tensor:
        return matmul.matmul(self, other)

    def exp(self) -> Tensor:
        return elementwise.exp(self)

    def log(self) -> Tensor:
        return elementwise.log(self)

    def sqrt(self) -> Tensor:
        return elementwise.sqrt(self)

    def abs(self) -> Tensor:
        return elementwise.abs(self)

    def clamp(self, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002 (PyTorch's names)
        return select.clamp(self, min, max)

    def maximum(self, other: Any) -> Tensor:
        return select.maximum(self, other)

    def minimum(self, other: Any) -> Tensor:
        return select.minimum(self, other)

    def sigmoid(self) -> Tensor:
        return activation.sigmoid(self)

    def tanh(self) -> Tensor:
        return activation.tanh(self)

    def relu(self) -> Tensor:
        return activation.relu(self)

    def softmax(self, dim: int = -1, *, axis: int | None = None) -> Tensor:
        return activation.softmax(self, dim, axis=axis)

    def log_softmax(self, dim: int = -1, *, axis: int | None = None) -> Tensor:
        return activation.log_softmax(self, dim, axis=axis)

    # Reductions take NumPy's axis=/keepdims= or PyTorch's dim=/keepdim=.
    def sum(self, axis: Axis = None, keepdims: bool | None = None, *, dim: Axis = None, keepdim: Any = None) -> Tensor:
        return reduce.sum(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def mean(self, axis: Axis = None, keepdims: bool | None = None, *, dim: Axis = None, keepdim: Any = None) -> Tensor:
        return reduce.mean(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def max(self, axis: Axis = None, keepdims: bool | None = None, *, dim: Any = None, keepdim: Any = None) -> Any:
        """Values over ``axis`` (ties share the gradient), or with ``dim=`` the pair
        ``(values, indices)`` (see ``gp.max``)."""
        return reduce.max(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def min(self, axis: Axis = None, keepdims: bool | None = None, *, dim: Any = None, keepdim: Any = None) -> Any:
        """Values over ``axis``, or with ``dim=`` the pair ``(values, indices)`` (see ``gp.min``)."""
        return reduce.min(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def var(self, axis: Axis = None, keepdims: bool | None = None, **options: Any) -> Tensor:
        """Variance (unbiased by default; see ``gp.var``)."""
        return reduce.var(self, axis, keepdims, **options)

    def std(self, axis: Axis = None, keepdims: bool | None = None, **options: Any) -> Tensor:
        """Standard deviation (unbiased by default; see ``gp.std``)."""
        return reduce.std(self, axis, keepdims, **options)

    def argmax(self, axis: int | None = None, keepdims: bool | None = None, **options: Any) -> Tensor:
        """int64 indices of the first maxima (not differentiable)."""
        return reduce.argmax(self, axis, keepdims, **options)

    def argmin(self, axis: int | None = None, keepdims: bool | None = None, **options: Any) -> Tensor:
        """int64 indices of the first minima (not differentiable)."""
        return reduce.argmin(self, axis, keepdims, **options)

    def reshape(self, *shape: int | Sequence[int]) -> Tensor:
        return shape_ops.reshape(self, *shape)

    def view(self, *shape: int | Sequence[int]) -> Tensor:
        """``reshape`` that never copies (RuntimeError where it would have to)."""
        return shape_ops.view(self, *shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        return shape_ops.flatten(self, start_dim, end_dim)

    def squeeze(self, dim: int | Sequence[int] | None = None) -> Tensor:
        return shape_ops.squeeze(self, dim)

    def unsqueeze(self, dim: int) -> Tensor:
        return shape_ops.unsqueeze(self, dim)

    def permute(self, *dims: int | Sequence[int]) -> Tensor:
        """Reorders the dims: ``x.permute(2, 0, 1)`` (or a tuple)."""
        return shape_ops.permute(self, *dims)

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        """Swaps two dims, as PyTorch's ``transpose`` (for a full reordering use ``permute``)."""
        return shape_ops.transpose(self, dim0, dim1)

    def t(self) -> Tensor:
        """The transpose of a matrix (a 0-d or 1-d tensor as it is)."""
        return shape_ops.t(self)

    @property
    def T(self) -> Tensor:  # noqa: N802 (NumPy's name)
        """All dims reversed (NumPy's ``.T``; for a matrix, its transpose)."""
        return shape_ops.reverse_dims(self)

    def clone(self) -> Tensor:
        """A copy with its own memory (differentiable)."""
        return shape_ops.clone(self)

    def __getitem__(self, index: Any) -> Tensor:
        return shape_ops.getitem(self, index)

    # -- comparisons: not differentiable, return new tensors ------
    def _compare(self, fn: str, other: Any) -> Tensor:
        return _wrap(getattr(_values(self), fn)(_operand_array(other, self)), self._backend)

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare("__eq__", other)

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare("__ne__", other)

    def __lt__(self, other: Any) -> Tensor:
        return self._compare("__lt__", other)

    def __le__(self, other: Any) -> Tensor:
        return self._compare("__le__", other)

    def __gt__(self, other: Any) -> Tensor:
        return self._compare("__gt__", other)

    def __ge__(self, other: Any) -> Tensor:
        return self._compare("__ge__", other)

    __hash__ = object.__hash__


class _PostAccumulateGradHook:
    """A leaf's hook that runs after its ``.grad`` is updated; it shares the list of
    the leaf's gradient hooks (no slot of its own: every tensor would pay for it)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Tensor], None]) -> None:
        self.fn = fn


class RemovableHandle:
    """What ``register_hook`` returns: ``remove()`` takes the hook off again."""

    def __init__(self, hooks: list, hook: Callable) -> None:
        self._hooks: list | None = hooks
        self._hook = hook

    def remove(self) -> None:
        hooks, self._hooks = self._hooks, None
        if hooks is not None and self._hook in hooks:
            hooks.remove(self._hook)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class Function:
    """One recorded op: ``forward`` maps arrays to an array and saves what
    ``backward`` needs; ``backward`` maps the output's gradient to one
    gradient per input (None where an input needs none).

    Subclasses take non-tensor parameters in ``__init__`` and are applied by
    calling the instance: ``Sum(axis=0)(x)``. Inputs may be Tensors or Python
    scalars (constants, which get no gradient).

    Each op also says, in ``derivatives``, what its backward applies to the
    output's gradient ``g`` on the way to each input, keyed by the names of
    ``forward``'s parameters (a ``*arrays`` name covers every input from there
    on), e.g. ``{"x": "⊙ σ′(z) = s(1−s)"}``; an optional ``"δ"`` entry names a
    step shared by all inputs (Linear's ``δ = g ⊙ act′``), and ``{attr}`` is
    filled from the node's attributes. ``gpubp.viz`` labels the reverse
    network's edges with it; nothing on the tape reads it.
    """

    # Written next to each op's backward so the two are read and changed together;
    # tests/test_viz.py checks that every op in gpubp.ops has an entry per input.
    derivatives: dict[str, str] = {}
    backend: Backend
    # Set by ops whose output lives on another device (Move), or shares the input's memory (views).
    result_backend: Backend | None = None
    shares_memory = False
    inputs: tuple | None = None
    needs_input_grad: list[bool] = []
    input_versions: list[int] = []
    output_version: tuple = ([0], 0, 0)
    epoch = 0
    saved: tuple = ()
    # For a node an in-place change made a tensor's: the tensor's value before it.
    inplace_prev: Tensor | None = None
    # Gradient hooks of the tensor this node made, and a weak reference to it if it retains its gradient.
    hooks: list | None = None
    retained: Any = None
    # Whether forward and backward take bfloat16 arrays as they are (else they get
    # float32 copies: gpubp.ops.bfloat16_fallback), and which inputs were widened.
    handles_bfloat16 = False
    bfloat16_inputs: tuple[bool, ...] | None = None

    def forward(self, *arrays: Any) -> Any:
        raise NotImplementedError

    def backward(self, grad: Any) -> Any:
        raise NotImplementedError

    def save(self, *arrays: Any) -> None:
        """Keeps arrays for backward. Saving an input's or the output's own array
        lets backward detect that the tensor was changed in place meanwhile."""
        self.saved = arrays

    @property
    def name(self) -> str:
        return type(self).__name__

    def __call__(self, *inputs: Any) -> Tensor:
        # One pass over the inputs: this runs for every op, so it stays lean.
        backend = None
        arrays = []
        needs_grad = []
        versions = []  # each tensor input's version now; backward compares (check_saved_versions)
        bfloat16 = False
        for x in inputs:
            if isinstance(x, Tensor):
                if backend is None:
                    backend = x._backend
                elif x._backend is not backend:
                    raise ValueError(
                        f"{self.name}: tensors on different devices ({backend.device} and {x._backend.device}); "
                        "move one explicitly with .to(device)"
                    )
                data = x.data
                arrays.append(data)
                if data.dtype is _BFLOAT16 or data.dtype is _RAW_BFLOAT16:
                    bfloat16 = True
                needs_grad.append(x._requires_grad)
                versions.append(x._version[0])
                if capture.current is not None and x._node is None:
                    capture.current.saw((x,))
            else:
                arrays.append(x)
                needs_grad.append(False)
                versions.append(-1)
        record = grad_mode.enabled and True in needs_grad
        self.backend = backend
        if backend.needs_activation:
            backend.activate()
        try:
            if bfloat16 and not self.handles_bfloat16:
                out = bfloat16_fallback.forward(self, arrays)
            else:
                out = self.forward(*arrays)
        except ValueError as err:
            shapes = ", ".join(str(getattr(a, "shape", type(a).__name__)) for a in arrays)
            raise ValueError(f"{self.name}: {err} (input shapes: {shapes})") from None
        result_backend = self.result_backend or backend
        if type(out) is not result_backend.array_type:
            out = result_backend.xp.asarray(out)  # NumPy returns scalars for 0-d results
        result = _wrap(out, result_backend, record)
        if self.shares_memory:
            # A view: one version counter with its input, and its base and the view ops from it.
            source = inputs[0]
            result._version = source._version
            view = source._view
            result._view = (view[0], (*view[1], self)) if view is not None else (source, (self,))
        if record:
            self.inputs = inputs
            self.needs_input_grad = needs_grad
            self.input_versions = versions
            self.epoch = _inplace_epoch
            self.output_version = (result._version, result._version[0], id(out))
            result._node = self
        else:
            self.saved = ()
        return result

    def check_saved_versions(self) -> None:
        """Raises if an array this op saved was changed in place since forward.

        Versions are compared first (cheap); only on a change does it look
        whether the changed tensor's array is one that was saved.
        """
        for x, expected in zip(self.inputs, self.input_versions):
            if expected >= 0 and x._version[0] != expected and any(a is x.data for a in self.saved):
                self._modified(x._version[0], expected)
        counter, expected, out_id = self.output_version
        if counter[0] != expected and any(id(a) == out_id for a in self.saved):
            self._modified(counter[0], expected)

    def _modified(self, version: int, expected: int) -> None:
        raise RuntimeError(
            f"{self.name}: a tensor this op saved for backward was modified in place "
            f"(version {version}, expected {expected}); the gradient would be wrong. "
            "Clone it before changing it, or change it after backward()."
        )


# Functions to call once when the backward pass in progress ends (``queue_callback``).
_end_of_backward: list[Callable[[], None]] = []
_backward_depth = 0


def queue_callback(fn: Callable[[], None]) -> None:
    """Calls ``fn()`` once, when the backward pass in progress has finished (PyTorch's
    ``queue_callback`` of its autograd engine). Only from inside a backward pass, e.g.
    from a gradient hook: DistributedDataParallel uses it to finish its reductions."""
    if _backward_depth == 0:
        raise RuntimeError("queue_callback can only be called during a backward pass (e.g. from a gradient hook)")
    _end_of_backward.append(fn)


def backward(root: Tensor, seed: Any, retain_graph: bool = False) -> None:
    """Walks the tape from ``root`` with gradient ``seed`` (an array shaped like root),
    then runs the callbacks queued during the walk (``queue_callback``)."""
    global _backward_depth
    _backward_depth += 1
    try:
        _walk(root, seed, retain_graph)
    except BaseException:
        _end_of_backward.clear()  # a failed pass finishes nothing; a later pass must not run them
        raise
    finally:
        _backward_depth -= 1
    while _end_of_backward:
        _end_of_backward.pop(0)()


def _walk(root: Tensor, seed: Any, retain_graph: bool) -> None:
    given: set[int] = {id(seed)}  # arrays already handed to a leaf or owned by the caller
    hooked = _hooks_in_use
    root_node = root._node
    if root_node is None:
        if hooked and root._hooks is not None:
            _finish_leaf(root, seed, given)
        else:
            _accumulate(root, seed, given)
        return

    # Count, for every node, how many edges lead into it from nodes above it,
    # so each node runs exactly once, after all its consumers (Kahn's order).
    recorded = _last_recorded_inplace
    consumers: dict[Function, int] = {}
    # Hooked leaves: how many gradients each still waits for, so that its hooks run as soon
    # as the last one is summed (DistributedDataParallel then overlaps the rest of the pass).
    leaf_edges: dict[int, int] = {}
    stack = [root_node]
    seen = {root_node}
    while stack:
        node = stack.pop()
        if node.inputs is None:
            raise RuntimeError(
                f"backward through {node.name} a second time: its saved values were freed by the first "
                "backward(); pass retain_graph=True to the first call if you need to go through it again"
            )
        if node.epoch < recorded:  # an input may have changed in place (recorded) since: its old history
            node.check_saved_versions()
            inplace.resolve(node)
        for x, need in zip(node.inputs, node.needs_input_grad):
            if need:
                parent = x._node
                if parent is not None:
                    if parent.epoch < recorded and x._view is not None:  # a view older than a recorded change
                        parent = inplace.refresh_view(node, x)._node
                    consumers[parent] = consumers.get(parent, 0) + 1
                    if parent not in seen:
                        seen.add(parent)
                        stack.append(parent)
                elif hooked and x._hooks is not None:
                    leaf_edges[id(x)] = leaf_edges.get(id(x), 0) + 1

    grads: dict[Function, Any] = {root_node: seed}
    pending: dict[int, tuple[Tensor, Any]] = {}  # hooked leaves: their gradient, summed before the hooks run
    ready = [root_node]
    while ready:
        node = ready.pop()
        if node.epoch != _inplace_epoch:
            node.check_saved_versions()
        if node.backend.needs_activation:
            node.backend.activate()
        g = grads.pop(node)
        if hooked and (node.hooks is not None or node.retained is not None):
            g = _node_hooks(node, g)
        bfloat16_fallback_used = node.bfloat16_inputs is not None
        input_grads = bfloat16_fallback.backward(node, g) if bfloat16_fallback_used else node.backward(g)
        if type(input_grads) is not tuple:
            input_grads = (input_grads,)
        for x, need, g in zip(node.inputs, node.needs_input_grad, input_grads):
            if not need:
                continue
            data = x.data
            if g is None or g.shape != data.shape or g.dtype != data.dtype:
                _bad_gradient(node, x, g)
            parent = x._node
            if parent is None:
                if hooked and x._hooks is not None:
                    key = id(x)
                    if key in pending:
                        g = pending.pop(key)[1] + g
                    left = leaf_edges.get(key, 1) - 1  # a hook added during this pass: no count
                    leaf_edges[key] = left
                    if left:
                        pending[key] = (x, g)
                    else:
                        _finish_leaf(x, g, given)
                elif x.grad is None and g.base is None and type(g) is x._backend.array_type and id(g) not in given:
                    given.add(id(g))  # the common case of _accumulate, inlined: a fresh array, first gradient
                    x.grad = _wrap(g, x._backend)
                else:
                    _accumulate(x, g, given)
                continue
            # Fan-out: a value used by several consumers gets the sum of their gradients.
            if parent in grads:
                grads[parent] = node.backend.add(grads[parent], g)
            else:
                grads[parent] = g
            remaining = consumers[parent] - 1
            consumers[parent] = remaining
            if remaining == 0:
                ready.append(parent)
        if not retain_graph:
            node.inputs = None  # frees the saved arrays and the edges to the inputs
            node.saved = ()
    for leaf, g in pending.values():  # none: every counted gradient arrives; kept as a safety net
        _finish_leaf(leaf, g, given)


# -- hooks -------------------------------------------------------------------------------
def _node_hooks(node: Function, g: Any) -> Any:
    """Runs the hooks of the tensor ``node`` made on its gradient, then keeps the
    gradient in its ``.grad`` if it retains it (after the hooks, as PyTorch)."""
    backend = node.result_backend or node.backend
    if node.hooks:
        g = _run_hooks(node.hooks, g, backend)
    if node.retained is not None:
        t = node.retained()
        if t is not None:
            if t.grad is None:
                t.grad = _wrap(backend.xp.array(g, copy=True), backend)
            else:
                t.grad.data += g
                t.grad.bump_version()
    return g


def _finish_leaf(leaf: Tensor, g: Any, given: set[int]) -> None:
    """A hooked leaf's summed gradient of this pass: its gradient hooks, the
    accumulation into ``.grad``, then its post-accumulate hooks."""
    hooks = leaf._hooks
    _accumulate(leaf, _run_hooks(hooks, g, leaf._backend), given)
    for hook in tuple(hooks):
        if type(hook) is _PostAccumulateGradHook:
            hook.fn(leaf)


def _run_hooks(hooks: list, g: Any, backend: Backend) -> Any:
    for hook in tuple(hooks):
        if type(hook) is _PostAccumulateGradHook:
            continue  # runs after the accumulation (_finish_leaf)
        out = hook(_wrap(g, backend))
        if out is not None:
            if not isinstance(out, Tensor):
                got = f"a {type(out).__name__}"
            elif out.shape != g.shape or out.data.dtype != g.dtype or out.backend is not backend:
                got = f"{out.shape} {out.dtype} on {out.device}"
            else:
                g = out.data
                continue
            raise RuntimeError(
                f"a gradient hook returned {got}; it must return None or a tensor like the gradient "
                f"({g.shape} {g.dtype} on {backend.device})"
            )
    return g


def _accumulate(leaf: Tensor, g: Any, given: set[int]) -> None:
    """Adds g into leaf.grad. A leaf gets an array of its own: one that is a view,
    or that another leaf already holds, is copied so that changing one .grad in
    place never changes another."""
    if type(g) is not leaf._backend.array_type:
        g = leaf._backend.xp.asarray(g)  # NumPy turns 0-d results into scalars
    if leaf.grad is None:
        if g.base is not None or id(g) in given:
            g = leaf._backend.xp.array(g, copy=True)
        given.add(id(g))
        leaf.grad = _wrap(g, leaf._backend)
    else:
        # In place, as PyTorch accumulates: a captured graph then keeps adding into
        # the same buffer at every replay, as repeated eager calls would.
        if g.dtype is _RAW_BFLOAT16 or g.dtype is _BFLOAT16:  # a 16-bit sum computed in float32
            leaf._backend.copy_into(leaf.grad.data, leaf._backend.add(leaf.grad.data, g))
        else:
            leaf.grad.data += g
        leaf.grad.bump_version()


def _bad_gradient(node: Function, x: Tensor, g: Any) -> None:
    got = "None" if g is None else f"shape {g.shape}, dtype {g.dtype}"
    raise RuntimeError(
        f"{node.name}.backward returned a gradient ({got}) that does not match its input "
        f"(shape {x.shape}, dtype {x.dtype})"
    )


def _gradient_array(grad: Any, like: Tensor) -> Any:
    """The array of a gradient given to backward(), checked against the tensor."""
    data = grad.data if isinstance(grad, Tensor) else grad
    if isinstance(grad, Tensor) and grad._backend is not like._backend:
        raise ValueError(f"backward: gradient is on {grad.device} but the tensor is on {like.device}")
    if not isinstance(data, like._backend.array_type):
        if like.device != "cpu":
            raise ValueError(f"backward: gradient must be a tensor on {like.device}, got {type(grad).__name__}")
        data = np.asarray(data, dtype=like.dtype)
    if data.shape != like.shape:
        raise ValueError(f"backward: gradient shape {data.shape} does not match tensor shape {like.shape}")
    if dtypes.logical(data.dtype) != like.dtype:
        raise TypeError(
            f"backward: gradient dtype {dtypes.logical(data.dtype)} does not match tensor dtype {like.dtype}"
        )
    return data


def _values(t: Tensor) -> Any:
    """A tensor's array for NumPy-style code: its own, or for bfloat16 stored as raw
    words (a GPU's) a float32 copy, whose numbers the words stand for."""
    data = t.data
    return t._backend.astype(data, dtypes.float32) if data.dtype is _RAW_BFLOAT16 else data


def _operand_array(value: Any, like: Tensor) -> Any:
    """The array or scalar to combine with ``like`` in a non-recorded op."""
    if isinstance(value, Tensor):
        if value._backend is not like._backend:
            raise ValueError(f"tensors on different devices ({like.device} and {value.device})")
        return _values(value)
    if isinstance(value, np.generic):  # before float: np.float64 subclasses float
        return value.item()
    if isinstance(value, (bool, int, float)):
        return value
    if like.device != "cpu" and isinstance(value, like._backend.array_type):
        # Already on this device (e.g. nn.init filling a CUDA parameter); raw bfloat16 words as numbers.
        return like._backend.astype(value, dtypes.float32) if value.dtype == _RAW_BFLOAT16 else value
    if like.device != "cpu":
        raise ValueError(
            f"cannot combine a {type(value).__name__} with a tensor on {like.device} without a copy; "
            f"use gp.tensor(value, device='{like.device}')"
        )
    return np.asarray(value, dtype=like.dtype)


def _index_arrays(index: Any, like: Tensor) -> Any:
    """An index as the backend takes it: tensors become their arrays, and lists and
    tuples inside it (a list also on its own) integer or boolean arrays on like's
    device, so that NumPy and CuPy treat them as the advanced indices they are (and
    backward accumulates repeated entries); NumPy integers become ints."""
    if isinstance(index, tuple):
        return tuple(_index_part(p, like) for p in index)
    return _index_part(index, like)


def _index_part(part: Any, like: Tensor) -> Any:
    if isinstance(part, Tensor):
        if part._backend is not like._backend:
            return like._backend.receive(part.data, part._backend)  # e.g. a CPU index of a CUDA tensor
        part = part.data
    if isinstance(part, np.ndarray) and part.ndim == 0 and part.dtype.kind in "iu":
        return int(part)  # NumPy takes a 0-d integer array as an int (a view), not as an array
    if isinstance(part, (list, tuple)):
        array = np.asarray(part)
        if array.dtype.kind not in "iub":
            if array.size:
                raise IndexError(f"an index list must hold integers or booleans, got {part!r}")
            array = array.astype(np.intp)
        # A host copy on every device, so that a gp.jit capture refuses it on the CPU as on a GPU.
        return like._backend.from_host(array)
    if isinstance(part, np.ndarray) and like._backend.device != "cpu":
        return like._backend.from_host(part)
    if isinstance(part, np.bool_):
        return bool(part)
    if isinstance(part, np.integer):
        return int(part)
    return part


def _names_a_dtype(value: Any) -> bool:
    """Whether an argument of ``to()`` is a dtype (else it names a device)."""
    if isinstance(value, (np.dtype, type)):
        return True
    if isinstance(value, str):
        try:
            np.dtype(value)
        except TypeError:
            return False
        return True
    return False


_BFLOAT16 = dtypes.bfloat16
_RAW_BFLOAT16 = dtypes.RAW_BFLOAT16

# The ops modules import Tensor and Function from here, so they are bound last.
from gpubp.ops import activation, bfloat16_fallback, elementwise, inplace, matmul, reduce, select  # noqa: E402
from gpubp.ops import shape as shape_ops  # noqa: E402

_INPLACE_OPS = {
    "__iadd__": elementwise.add,
    "__isub__": elementwise.sub,
    "__imul__": elementwise.mul,
    "__itruediv__": elementwise.div,
}
