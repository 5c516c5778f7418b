"""The Tensor and the tape.

A Tensor holds a backend array (``.data``) and, when it was computed from
tensors that require gradients, the ``Function`` that made it (``._node``).
The nodes form the tape: ``loss.backward()`` orders them topologically
(iteratively, so a 5000-op chain is fine), calls each node's ``backward`` once
with the sum of the gradients from all its consumers, and accumulates the
results into the leaves' ``.grad``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from gpubp import capture, dtypes, grad_mode
from gpubp.backends import Backend

# Counts in-place changes to any tensor. A node remembers the count at forward;
# if it is unchanged at backward, no saved array can have changed and the
# per-input version check is skipped (the common case in training).
_inplace_epoch = 0


def _wrap(data: Any, backend: Backend, requires_grad: bool = False) -> Tensor:
    """Fast internal constructor: no copies, no checks."""
    t = Tensor.__new__(Tensor)
    t.data = data
    t._backend = backend
    t._requires_grad = requires_grad
    t.grad = None
    t._node = None
    t._version = [0]
    return t


class Tensor:
    """An n-dimensional array on a device that records the ops applied to it.

    Create with ``gp.tensor(data, requires_grad=False, dtype=None, device="cpu")``;
    ``Tensor(...)`` takes the same arguments.
    """

    __slots__ = ("data", "grad", "_requires_grad", "_backend", "_node", "_version", "__weakref__")
    # Makes NumPy defer to our reflected operators: ndarray * Tensor -> Tensor.__rmul__.
    __array_ufunc__ = None

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

    # -- description -------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

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
        if value and not dtypes.is_floating(self.data.dtype):
            raise TypeError(f"only floating-point tensors can require gradients, not {self.data.dtype}")
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

    def to(self, device: str | None = None, dtype: Any = None) -> Tensor:
        """A copy on another device and/or with another dtype (self when nothing changes).
        Differentiable: gradients flow back to the original device and dtype."""
        from gpubp.ops.convert import cast, move

        out = self
        if device is not None:
            out = move(out, device)
        if dtype is not None:
            out = cast(out, dtype)
        return out

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self, index: int = 0) -> Tensor:
        return self.to(f"cuda:{index}")

    def astype(self, dtype: Any) -> Tensor:
        return self.to(dtype=dtype)

    def float(self) -> Tensor:
        return self.to(dtype=dtypes.float32)

    def double(self) -> Tensor:
        return self.to(dtype=dtypes.float64)

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
            seed = self._backend.one(self.data.shape, self.data.dtype)
        else:
            seed = _gradient_array(grad, self)
        backward(self, seed, retain_graph)

    def zero_grad(self) -> None:
        """Forgets the accumulated gradient (sets ``.grad`` to None). A gradient
        array that nothing else references goes back to the backend, which may
        reuse it for the next gradient of the same shape (see Backend.recycle)."""
        grad = self.grad
        self.grad = None
        # 2 = this local name + getrefcount's argument; 2 = the Tensor's slot + the argument.
        if grad is not None and sys.getrefcount(grad) == 2 and sys.getrefcount(grad.data) == 2:
            self._backend.recycle(grad.data)

    # -- in place (not differentiable; bumps the version checked by backward) --
    def _check_inplace(self) -> None:
        if self._requires_grad and grad_mode.enabled:
            raise RuntimeError(
                "in-place operation on a tensor that requires grad; use an out-of-place op, "
                "or wrap the update in gp.no_grad()"
            )

    def bump_version(self) -> None:
        """Marks the data as changed in place, so backward detects stale saved values."""
        global _inplace_epoch
        _inplace_epoch += 1
        self._version[0] += 1
        if capture.current is not None:
            capture.current.saw((self,))

    def _inplace(self, fn: str, other: Any) -> Tensor:
        self._check_inplace()
        value = _operand_array(other, self)
        getattr(self.data, fn)(value)
        self.bump_version()
        return self

    def __iadd__(self, other: Any) -> Tensor:
        return self._inplace("__iadd__", other)

    def __isub__(self, other: Any) -> Tensor:
        return self._inplace("__isub__", other)

    def __imul__(self, other: Any) -> Tensor:
        return self._inplace("__imul__", other)

    def __itruediv__(self, other: Any) -> Tensor:
        return self._inplace("__itruediv__", other)

    def __setitem__(self, index: Any, value: Any) -> None:
        self._check_inplace()
        self.data[_index_arrays(index)] = _operand_array(value, self)
        self.bump_version()

    def copy_(self, source: Any) -> Tensor:
        """Copies ``source`` (same shape, device and dtype) into this tensor."""
        self._check_inplace()
        value = _operand_array(source, self)
        if getattr(value, "shape", self.shape) != self.shape:
            raise ValueError(f"copy_: shape {value.shape} does not match {self.shape}")
        self.data[...] = value
        self.bump_version()
        return self

    def fill_(self, value: float) -> Tensor:
        self._check_inplace()
        self.data.fill(value)
        self.bump_version()
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

    def __matmul__(self, other: Any) -> Tensor:
        return matmul.matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return matmul.matmul(other, self)

    def exp(self) -> Tensor:
        return elementwise.exp(self)

    def log(self) -> Tensor:
        return elementwise.log(self)

    def sigmoid(self) -> Tensor:
        return activation.sigmoid(self)

    def tanh(self) -> Tensor:
        return activation.tanh(self)

    def relu(self) -> Tensor:
        return activation.relu(self)

    def softmax(self, axis: int = -1) -> Tensor:
        return activation.softmax(self, axis)

    def log_softmax(self, axis: int = -1) -> Tensor:
        return activation.log_softmax(self, axis)

    def sum(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        return reduce.sum(self, axis, keepdims)

    def mean(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        return reduce.mean(self, axis, keepdims)

    def max(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        return reduce.max(self, axis, keepdims)

    def reshape(self, *shape: int | Sequence[int]) -> Tensor:
        return shape_ops.reshape(self, *shape)

    def transpose(self, *axes: int | Sequence[int]) -> Tensor:
        return shape_ops.transpose(self, *axes)

    @property
    def T(self) -> Tensor:  # noqa: N802 (NumPy's name)
        return shape_ops.transpose(self)

    def __getitem__(self, index: Any) -> Tensor:
        return shape_ops.getitem(self, index)

    # -- comparisons and argmax: not differentiable, return new tensors ------
    def _compare(self, fn: str, other: Any) -> Tensor:
        return _wrap(getattr(self.data, fn)(_operand_array(other, self)), self._backend)

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

    def argmax(self, axis: int | None = None) -> Tensor:
        return _wrap(self._backend.xp.asarray(self.data.argmax(axis=axis)), self._backend)


class Function:
    """One recorded op: ``forward`` maps arrays to an array and saves what
    ``backward`` needs; ``backward`` maps the output's gradient to one
    gradient per input (None where an input needs none).

    Subclasses take non-tensor parameters in ``__init__`` and are applied by
    calling the instance: ``Sum(axis=0)(x)``. Inputs may be Tensors or Python
    scalars (constants, which get no gradient).
    """

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
        for x in inputs:
            if isinstance(x, Tensor):
                if backend is None:
                    backend = x._backend
                elif x._backend is not backend:
                    raise ValueError(
                        f"{self.name}: tensors on different devices ({backend.device} and {x._backend.device}); "
                        "move one explicitly with .to(device)"
                    )
                arrays.append(x.data)
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
            out = self.forward(*arrays)
        except ValueError as err:
            shapes = ", ".join(str(getattr(a, "shape", type(a).__name__)) for a in arrays)
            raise ValueError(f"{self.name}: {err} (input shapes: {shapes})") from None
        result_backend = self.result_backend or backend
        if type(out) is not result_backend.array_type:
            out = result_backend.xp.asarray(out)  # NumPy returns scalars for 0-d results
        result = _wrap(out, result_backend, record)
        if self.shares_memory:
            result._version = inputs[0]._version
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


def backward(root: Tensor, seed: Any, retain_graph: bool = False) -> None:
    """Walks the tape from ``root`` with gradient ``seed`` (an array shaped like root)."""
    given: set[int] = {id(seed)}  # arrays already handed to a leaf or owned by the caller
    root_node = root._node
    if root_node is None:
        _accumulate(root, seed, given)
        return

    # Count, for every node, how many edges lead into it from nodes above it,
    # so each node runs exactly once, after all its consumers (Kahn's order).
    consumers: dict[Function, int] = {}
    stack = [root_node]
    seen = {root_node}
    while stack:
        node = stack.pop()
        if node.inputs is None:
            raise RuntimeError(
                f"backward through {node.name} a second time: its saved values were freed by the first "
                "backward(); pass retain_graph=True to the first call if you need to go through it again"
            )
        for x, need in zip(node.inputs, node.needs_input_grad):
            if need:
                parent = x._node
                if parent is not None:
                    consumers[parent] = consumers.get(parent, 0) + 1
                    if parent not in seen:
                        seen.add(parent)
                        stack.append(parent)

    grads: dict[Function, Any] = {root_node: seed}
    ready = [root_node]
    while ready:
        node = ready.pop()
        if node.epoch != _inplace_epoch:
            node.check_saved_versions()
        if node.backend.needs_activation:
            node.backend.activate()
        input_grads = node.backward(grads.pop(node))
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
                if x.grad is None and g.base is None and type(g) is x._backend.array_type and id(g) not in given:
                    given.add(id(g))  # the common case of _accumulate, inlined: a fresh array, first gradient
                    x.grad = _wrap(g, x._backend)
                else:
                    _accumulate(x, g, given)
                continue
            # Fan-out: a value used by several consumers gets the sum of their gradients.
            if parent in grads:
                grads[parent] = grads[parent] + g
            else:
                grads[parent] = g
            remaining = consumers[parent] - 1
            consumers[parent] = remaining
            if remaining == 0:
                ready.append(parent)
        if not retain_graph:
            node.inputs = None  # frees the saved arrays and the edges to the inputs
            node.saved = ()


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
    if data.dtype != like.dtype:
        raise TypeError(f"backward: gradient dtype {data.dtype} does not match tensor dtype {like.dtype}")
    return data


def _operand_array(value: Any, like: Tensor) -> Any:
    """The array or scalar to combine with ``like`` in a non-recorded op."""
    if isinstance(value, Tensor):
        if value._backend is not like._backend:
            raise ValueError(f"tensors on different devices ({like.device} and {value.device})")
        return value.data
    if isinstance(value, np.generic):  # before float: np.float64 subclasses float
        return value.item()
    if isinstance(value, (bool, int, float)):
        return value
    if like.device != "cpu" and isinstance(value, like._backend.array_type):
        return value  # already on this device (e.g. nn.init filling a CUDA parameter)
    if like.device != "cpu":
        raise ValueError(
            f"cannot combine a {type(value).__name__} with a tensor on {like.device} without a copy; "
            f"use gp.tensor(value, device='{like.device}')"
        )
    return np.asarray(value, dtype=like.dtype)


def _index_arrays(index: Any) -> Any:
    """Tensors inside an index become their arrays."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


# The ops modules import Tensor and Function from here, so they are bound last.
from gpubp.ops import activation, elementwise, matmul, reduce  # noqa: E402
from gpubp.ops import shape as shape_ops  # noqa: E402
