"""``gp.jit``: capture a whole training step once and replay it (tinygrad's TinyJit
semantics, applied to forward + loss + backward + optimizer step).

>>> @gp.jit
... def step(x, labels):
...     loss = gp.cross_entropy(model(x), labels)
...     opt.zero_grad(); loss.backward(); opt.step()
...     return loss
>>> for x, labels in batches:
...     loss = step(x, labels)          # a device tensor; loss.item() when needed

How a call runs, per signature (the shapes, dtypes, device and requires_grad of
the tensor arguments, the values of the others, the grad mode, the TF32 switch
and the active ``gp.autocast``):

1. the first ``warmup`` calls run eagerly (kernels compile, buffers and the
   optimizer's state are allocated);
2. on a GPU the next call is captured into one CUDA graph (``gpubp.capture``
   says what a captured function may do) and replayed; on the CPU it runs
   eagerly under the same rules, so a function that works there captures on a GPU;
3. later calls copy their tensor arguments into the graph's input buffers (on
   the device, without waiting) and replay the graph. What changes between
   steps is recomputed on the host before each replay, exactly as an eager
   step would: the learning rate from ``param_group["lr"]``, Adam's step count
   and bias corrections, dropout's random offsets.

A replay first checks what the capture relied on: that every tensor it read
holds the same array (``model.to()``, reassigned parameters, a reloaded
optimizer state change that) and that modules are in the same train/eval mode.
If not, the call is captured again; a replay never runs on stale memory.

Outputs are the graph's own buffers, wrapped in fresh tensors without a tape:
the next call of the same graph overwrites them, so a tensor returned by an
earlier call then raises when used (``.clone()`` it, or read it, to keep it),
as PyTorch's CUDA-graph outputs do. Parameters' ``.grad`` hold the gradients
of the latest call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from gpubp import autocast_mode, capture, grad_mode
from gpubp import cuda as gp_cuda
from gpubp.backends import Backend, cpu
from gpubp.capture import Capture, CaptureError
from gpubp.tensor import Tensor, _wrap

DEFAULT_WARMUP = 2
MAX_GRAPHS = 16  # captured graphs kept per jitted function (the oldest is dropped beyond)


class _Overwritten:
    """Stands in for the data of an output a later replay has overwritten."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        raise RuntimeError(
            f"gp.jit({self._name}): this output was overwritten by a later call of the same function "
            "(outputs are the captured graph's buffers); .clone() it or read it before calling again"
        )


@dataclass
class _Plan:
    """One captured graph of a signature and what its replays need."""

    graph: Any
    record: Capture
    inputs: dict[Any, Tensor]  # argument position -> the graph's input tensor
    template: Any  # the result's structure, with output indices in place of tensors
    outputs: list[Any]  # the output arrays
    grads: list[tuple[Tensor, Tensor]]  # (leaf, its .grad after the captured call)
    returned: list[Tensor] = field(default_factory=list)
    # Per input, the (array, version counter, version) last copied in: an argument that
    # is the same unchanged tensor as last time is already there.
    copied: dict[Any, tuple[Any, list[int], int]] = field(default_factory=dict)

    def replay(self, backend: Backend, tensors: dict[Any, Tensor], name: str) -> Any:
        for position, t in tensors.items():
            last = self.copied.get(position)
            if last is not None and last[0] is t.data and last[1] is t._version and last[2] == t._version[0]:
                continue
            backend.copy_into(self.inputs[position].data, t.data)
            self.copied[position] = (t.data, t._version, t._version[0])
        for effect in self.record.before_replay:
            effect()
        self.graph.launch()
        for leaf, grad in self.grads:
            leaf.grad = grad
        for old in self.returned:
            old.data = _Overwritten(name)
        self.returned = [_wrap(array, backend) for array in self.outputs]
        return _fill(self.template, self.returned)


@dataclass
class _Signature:
    calls: int = 0
    checked: bool = False  # CPU: one call has run under the capture rules
    plans: list[_Plan] = field(default_factory=list)


class JitFunction:
    """A function whose calls are captured and replayed (see the module docstring)."""

    def __init__(self, fn: Callable[..., Any], warmup: int = DEFAULT_WARMUP) -> None:
        if not callable(fn):
            raise TypeError(f"gp.jit needs a function, got {type(fn).__name__}")
        if not isinstance(warmup, int) or warmup < 1:
            raise ValueError(f"gp.jit: warmup must be an integer >= 1 (eager calls before capture), got {warmup!r}")
        self.fn = fn
        self.warmup = warmup
        self.name = getattr(fn, "__qualname__", type(fn).__name__)
        self._signatures: dict[Hashable, _Signature] = {}
        self._graphs = 0
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        key, tensors, backend = self._signature(args, kwargs)
        signature = self._signatures.get(key)
        if signature is None:
            signature = self._signatures[key] = _Signature()
        signature.calls += 1
        if signature.calls <= self.warmup:
            return self.fn(*args, **kwargs)
        if not backend.supports_graphs:
            if signature.checked:
                return self.fn(*args, **kwargs)
            result = self._run_captured(Capture(self.name), args, kwargs)
            signature.checked = True
            return result
        for plan in signature.plans:
            if plan.record.valid():
                return plan.replay(backend, tensors, self.name)
        plan = self._capture(backend, tensors, args, kwargs)
        signature.plans.append(plan)
        self._graphs += 1
        if self._graphs > MAX_GRAPHS:
            self._drop_oldest()
        return plan.replay(backend, tensors, self.name)

    def reset(self) -> None:
        """Forgets every capture (the next calls warm up and capture again)."""
        self._signatures.clear()
        self._graphs = 0

    @property
    def graphs(self) -> int:
        """How many captured graphs are kept (for tests and diagnostics)."""
        return self._graphs

    # -- signatures ----------------------------------------------------------------
    def _signature(self, args: tuple, kwargs: dict) -> tuple[Hashable, dict[Any, Tensor], Backend]:
        parts: list[Hashable] = [grad_mode.enabled, gp_cuda.tf32_enabled(), autocast_mode.state_key()]
        tensors: dict[Any, Tensor] = {}
        backend = None
        for position, value in (*enumerate(args), *sorted(kwargs.items())):
            if isinstance(value, Tensor):
                if backend is None:
                    backend = value.backend
                elif value.backend is not backend:
                    raise ValueError(
                        f"gp.jit({self.name}): tensor arguments on different devices "
                        f"({backend.device} and {value.device})"
                    )
                tensors[position] = value
                parts.append((position, value.shape, value.dtype.str, value.requires_grad))
                continue
            try:
                hash(value)
            except TypeError:
                raise TypeError(
                    f"gp.jit({self.name}): argument {position!r} is a {type(value).__name__}, neither a Tensor "
                    "nor hashable; pass data as tensors (gp.tensor(..., device=...)) and settings as numbers "
                    "or strings"
                ) from None
            parts.append((position, type(value), value))
        backend = backend or cpu()
        parts.append(backend.device)
        return tuple(parts), tensors, backend

    # -- capturing -------------------------------------------------------------------
    def _run_captured(self, record: Capture, args: tuple, kwargs: dict) -> Any:
        """Calls the function with ``record`` as the current capture."""
        if any(isinstance(v, Tensor) and v.requires_grad for v in (*args, *kwargs.values())):
            raise CaptureError(
                f"gp.jit({self.name}): a tensor argument requires grad; a captured step computes the gradients "
                "of the tensors it closes over (parameters), not of its arguments"
            )
        if capture.current is not None:
            raise CaptureError(f"gp.jit({self.name}) was called while gp.jit({capture.current.name}) captures")
        capture.current = record
        try:
            return self.fn(*args, **kwargs)
        finally:
            capture.current = None

    def _capture(self, backend: Backend, tensors: dict[Any, Tensor], args: tuple, kwargs: dict) -> _Plan:
        inputs = {}
        for position, t in tensors.items():
            buffer = _wrap(backend.empty(t.shape, t.dtype), backend)
            backend.copy_into(buffer.data, t.data)
            inputs[position] = buffer
        call_args = tuple(inputs.get(i, value) for i, value in enumerate(args))
        call_kwargs = {name: inputs.get(name, value) for name, value in kwargs.items()}
        record = Capture(self.name)

        def body(values: Any) -> Any:
            record.device_values = values
            return self._run_captured(record, call_args, call_kwargs)

        graph, result = backend.capture_graph(body)
        for position, buffer in inputs.items():
            if buffer._version[0] != 0:
                raise CaptureError(
                    f"gp.jit({self.name}): the function changed its argument {position!r} in place; the caller's "
                    "tensor would not see the change. Change a tensor the function closes over instead."
                )
        outputs: list[Any] = []
        template = _flatten(result, outputs, backend, self.name)
        grads = [
            (t, t.grad)
            for t, _ in record.guarded.values()
            if t._requires_grad and t._node is None and t.grad is not None
        ]
        return _Plan(graph, record, inputs, template, outputs, grads)

    def _drop_oldest(self) -> None:
        for signature in self._signatures.values():
            if signature.plans:
                signature.plans.pop(0)
                self._graphs -= 1
                return


def jit(fn: Callable[..., Any] | None = None, *, warmup: int = DEFAULT_WARMUP) -> Any:
    """``gp.jit(fn)`` or ``@gp.jit(warmup=3)``: a callable that runs ``fn`` eagerly
    ``warmup`` times per signature, then captures it into one CUDA graph (on a GPU)
    and replays it. See the module docstring for what a captured function may do."""
    if fn is None:
        return lambda f: JitFunction(f, warmup)
    return JitFunction(fn, warmup)


# -- results --------------------------------------------------------------------------
class _Output:
    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


def _flatten(result: Any, outputs: list[Any], backend: Backend, name: str) -> Any:
    """The result's structure with each tensor replaced by its index in ``outputs``."""
    if isinstance(result, Tensor):
        if result.backend is not backend:
            raise CaptureError(f"gp.jit({name}): the function returned a tensor on {result.device}")
        outputs.append(result.data)
        return _Output(len(outputs) - 1)
    if isinstance(result, (tuple, list)):
        return type(result)(_flatten(r, outputs, backend, name) for r in result)
    if isinstance(result, dict):
        return {k: _flatten(v, outputs, backend, name) for k, v in result.items()}
    if result is None or isinstance(result, (bool, int, float, str)):
        return result
    raise CaptureError(
        f"gp.jit({name}): the function returned a {type(result).__name__}; return tensors, numbers, "
        "or tuples, lists and dicts of them"
    )


def _fill(template: Any, tensors: list[Tensor]) -> Any:
    if isinstance(template, _Output):
        return tensors[template.index]
    if isinstance(template, (tuple, list)):
        return type(template)(_fill(t, tensors) for t in template)
    if isinstance(template, dict):
        return {k: _fill(v, tensors) for k, v in template.items()}
    return template
