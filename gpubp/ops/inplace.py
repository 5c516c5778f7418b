"""In-place changes on the tape: ``x += y``, ``x[i] = v``, ``copy_``, ``fill_``.

When grad mode is on and the change involves a tensor that requires grad, it is
recorded as PyTorch records it (``record``):

1. the new value is computed out of place from a *shadow* of x: a tensor with
   x's array, version counter and current node, standing for x's value before
   (or from a copy of it, for ``*=`` and ``/=``, whose backward needs it);
2. the result is written into x's own array (views of x see it) and x's version
   counter is bumped, so a node that saved the old array still fails at backward;
3. the result's node becomes x's (``adopt``), remembering the shadow;
4. if x is a view, its base also gets a node (``WriteView``): the base before,
   with the view's entries replaced by the view after.

A leaf that requires grad (or a view of one) is refused, as in PyTorch.

At backward, a node that used x *before* the change must reach x's old node,
not the new one. Nodes reach their inputs as tensors, so ``resolve`` points
such a node's inputs back at the shadows, by the version it recorded; and a view
made before a recorded change of its base is taken again from the base's
history at that version (``ViewOf``; ``refresh_view``), as PyTorch regenerates
views. Backward calls these only for nodes and views older than the last
recorded change, so graphs without one never pay for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gpubp import tensor as tape  # the module (gpubp.tensor, the function, is bound later)
from gpubp.ops import convert
from gpubp.ops import shape as shape_ops
from gpubp.tensor import Function, Tensor, _index_arrays, _wrap

_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2}


def record(x: Tensor, compute: Callable[[Tensor], Tensor], needs_old: bool = False) -> Tensor:
    """Changes ``x`` in place to ``compute(old)`` and records the change (see the
    module docstring); ``old`` stands for x's current value and is a copy of it
    when ``needs_old``. Returns x."""
    view = x._view
    base = view[0] if view is not None else None
    if x._node is None and x._requires_grad:
        raise RuntimeError(
            "a leaf tensor that requires grad is being used in an in-place operation; use an out-of-place op, "
            "or wrap the update in gp.no_grad()"
        )
    if base is not None and base._node is None and base._requires_grad:
        raise RuntimeError(
            "a view of a leaf tensor that requires grad is being used in an in-place operation; use an "
            "out-of-place op, or wrap the update in gp.no_grad()"
        )
    before = shadow(x)
    old = before
    if needs_old:
        old = shape_ops.clone(before) if before._requires_grad else _wrap(x.data.copy(), x._backend)
    result = compute(old)
    if result.data.dtype != x.data.dtype:
        if _CATEGORY[result.data.dtype.kind] > _CATEGORY[x.data.dtype.kind]:
            raise TypeError(f"in-place op: a {result.dtype} result cannot be stored in a {x.dtype} tensor")
        result = convert.cast(result, x.data.dtype)
    if result.shape != x.shape:
        raise ValueError(f"in-place op: the result's shape {result.shape} differs from the tensor's {x.shape}")
    base_before = shadow(base) if base is not None else None
    x.data[...] = result.data
    x.bump_version()
    tape._last_recorded_inplace = tape._inplace_epoch
    if result._node is None:  # nothing the new value depends on requires grad
        return x
    adopt(x, result._node, before)
    if base is not None:
        adopt(base, WriteView(view[1])(base_before, x)._node, base_before)
    return x


def shadow(x: Tensor) -> Tensor:
    """A stand-in for ``x`` as it is now: the same array, version counter, view
    and node (which an in-place change is about to replace)."""
    s = _wrap(x.data, x._backend, x._requires_grad)
    s._node = x._node
    s._version = x._version
    s._view = x._view
    return s


def adopt(x: Tensor, node: Function, before: Tensor) -> None:
    """Makes ``node``, which computed x's new value, x's node; ``before`` stands
    for x's value before the change."""
    node.output_version = (x._version, x._version[0], id(x.data))
    node.inplace_prev = before
    old = x._node
    if old is not None and old.retained is not None:  # retain_grad follows the tensor, as in PyTorch
        node.retained, old.retained = old.retained, None
    x._node = node
    x._requires_grad = True


def writes_itself(x: Tensor, index: Any, value: Any) -> bool:
    """Whether ``x[index] = value`` only writes back a view of x that an in-place
    op has just changed and recorded: Python runs ``x[i] += v`` as ``t = x[i];
    t += v; x[i] = t``, and ``t += v`` already recorded the change on x's base."""
    if not isinstance(value, Tensor) or value._view is None:
        return False
    base = x._view[0] if x._view is not None else x
    node = base._node
    if value._view[0] is not base or type(node) is not WriteView or node.inputs is None:
        return False
    if node.inputs[1] is not value or node.output_version[1] != base._version[0]:
        return False
    target = x.data[_index_arrays(index, x)]
    return (
        target.shape == value.data.shape
        and target.strides == value.data.strides
        and _address(target) == _address(value.data)
    )


def _address(array: Any) -> int:
    interface = getattr(array, "__array_interface__", None)
    return interface["data"][0] if interface is not None else array.data.ptr


class WriteView(Function):
    """A base after an in-place change through one of its views: its inputs are
    the base before the change and the view after it; its output is the base's
    own array (already changed). The base's gradient is g with the view's
    entries zeroed; the view's is g at those entries."""

    def __init__(self, chain: tuple[Function, ...]) -> None:
        self.chain = chain

    def forward(self, base: Any, written: Any) -> Any:
        self.base_shape = base.shape
        return base

    derivatives = {"base": "g, 0 at the view's entries", "written": "g at the view's entries"}

    def backward(self, g: Any) -> tuple:
        need_base, need_written = self.needs_input_grad
        positions = view_positions(self.chain, self.base_shape, self.backend.xp)
        flat = g.reshape(-1)
        g_base = None
        if need_base:
            g_base = flat.copy()
            g_base[positions.reshape(-1)] = 0
            g_base = g_base.reshape(self.base_shape)
        return g_base, (flat[positions] if need_written else None)


class ViewOf(Function):
    """A view taken again from its base's history (``resolve``): the base's
    gradient is g at the view's entries and 0 elsewhere."""

    def __init__(self, chain: tuple[Function, ...]) -> None:
        self.chain = chain

    def forward(self, base: Any) -> Any:
        self.base_shape = base.shape
        out = base
        for f in self.chain:
            out = f.view(out)
        return out

    derivatives = {"base": "g at the view's entries, 0 elsewhere"}

    def backward(self, g: Any) -> Any:
        xp = self.backend.xp
        positions = view_positions(self.chain, self.base_shape, xp)
        grad = xp.zeros(_size(self.base_shape), dtype=g.dtype)
        grad[positions.reshape(-1)] = g.reshape(-1)
        return grad.reshape(self.base_shape)


def view_positions(chain: tuple[Function, ...], base_shape: tuple[int, ...], xp: Any) -> Any:
    """The flat positions in the base of a view's entries, in the view's shape.
    Taking the view of an array of positions works whatever the base's memory
    layout (a reshape is logical), where taking it of a gradient might copy."""
    positions = xp.arange(_size(base_shape)).reshape(base_shape)
    for f in chain:
        positions = f.view(positions)
    return positions


def _size(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# -- at backward ----------------------------------------------------------------------------
def refresh_view(node: Function, x: Tensor) -> Tensor:
    """Input ``x`` of ``node``, a view made before the last recorded in-place
    change: taken again from its base's history if that changed before node used
    it (node's input is replaced). Returns the input as it now is."""
    for i, y in enumerate(node.inputs):
        if y is x:
            fresh = _fresh_view(x, node.input_versions[i])
            if fresh is not x:
                node.inputs = (*node.inputs[:i], fresh, *node.inputs[i + 1 :])
            return fresh
    return x


def resolve(node: Function) -> None:
    """Points each input of ``node`` at the tensor as the node saw it (by the
    version it recorded): back through in-place changes recorded since, and for a
    view made before a recorded change of its base, at a view of the base's
    history at that version."""
    inputs = list(node.inputs)
    for i, (x, need, version) in enumerate(zip(inputs, node.needs_input_grad, node.input_versions)):
        if need:
            inputs[i] = _fresh_view(_state_at(x, version), version)
    node.inputs = tuple(inputs)


def _state_at(x: Tensor, version: int) -> Tensor:
    """``x``, or the shadow that stands for it, as it was at ``version``."""
    node = x._node
    while (
        node is not None
        and node.inplace_prev is not None
        and node.output_version[0] is x._version
        and version < node.output_version[1]
    ):
        x = node.inplace_prev
        node = x._node
    return x


def _fresh_view(x: Tensor, version: int) -> Tensor:
    """``x``, or, for a view whose history predates a change recorded on its base
    (through the base or another view) before ``version``, the view taken again
    from the base's history at ``version``."""
    view, node = x._view, x._node
    if view is None or node is None or node.output_version[0] is not x._version:
        return x
    made = node.output_version[1]
    if made >= version:
        return x
    base, chain = view
    change = base._node
    while change is not None and change.inplace_prev is not None and change.output_version[1] > made:
        if change.output_version[1] <= version:
            return _view_of(_state_at(base, version), chain, version)
        change = change.inplace_prev._node
    return x


def _view_of(base: Tensor, chain: tuple[Function, ...], version: int) -> Tensor:
    """A recorded view of ``base`` by the view ops ``chain``, as if taken at ``version``."""
    node = ViewOf(chain)
    node.backend = base._backend
    out = node.forward(base.data)
    node.inputs = (base,)
    node.needs_input_grad = [base._requires_grad]
    node.input_versions = [version]
    node.epoch = tape._inplace_epoch
    t = _wrap(out, base._backend, True)
    t._version = base._version
    t._node = node
    node.output_version = (t._version, version, id(out))
    return t
