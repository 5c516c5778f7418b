"""Drawing the tape: the graph that produced a tensor, and the reverse network its backward runs.

``to_dot(loss)`` returns Graphviz DOT text; ``draw(loss, "graph.svg")`` renders it
(SVG, PNG or PDF by the suffix; ``.dot``/``.gv`` write the text) with the
``graphviz`` Python package and Graphviz's ``dot`` program (``pip install -e
".[viz]"`` and ``apt-get install graphviz``). Drawing reads the tape after the
fact: recording an op costs nothing more because of it.

The picture has two clusters, one above the other. The forward graph: leaves
(parameters named after their module when ``model=`` or ``params=`` is given,
with shape, dtype and device), ops and the output. Below it the reverse network
(``backward=True``): one node per op's backward and one per leaf's gradient,
joined by the forward edges reversed, each labelled with what that backward
applies to the gradient on its way back, in the backprop notes' terms
(``⊙ σ′(z) = s(1−s)``, ``δᵀ · a``, ``(softmax − onehot)/N``). The labels are each
op's ``derivatives`` table, written next to its backward (``gpubp.ops``). dot lays
these out left to right with each reverse node in its forward twin's column: a
reverse edge is written from the input's side with ``dir=back``, so it keeps the
forward edge's place while its arrow points the way the gradient flows.

``detail``: "layers" (default) draws each layer of a model (a Linear and the
activation and dropout after it) as one box; "ops" every op; "neurons" one node
per unit of a small MLP (at most ``NEURON_LIMIT`` units per layer), the reverse
network as the notes draw it: each unit a triangle, the notes' op-amp, that sums
w · ∂l/∂z from the layer above and multiplies by σ′(z), fixed in the forward pass.
That drawing places every node itself (neato, pinned), so the units keep their
order; its reverse edges are written the way the gradient flows.

``values=True`` (for small graphs: larger arrays are summarised) also prints each
node's forward value and the gradient flowing through it. A leaf's gradient is its
``.grad`` as it stands (after ``backward``); the gradient at an op is recomputed by
calling each op's backward again on its saved values (gradient hooks are not run),
which needs the graph: draw before ``backward()`` or after ``backward(retain_graph=True)``.
After a backward that freed the graph ``to_dot`` raises RuntimeError saying so
(nothing useful is left to draw: only the output and its op, without inputs).
"""

from __future__ import annotations

import functools
import inspect
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gpubp import tensor as tape
from gpubp.ops import inplace
from gpubp.ops.activation import GELU, LeakyReLU, ReLU, Sigmoid, Tanh
from gpubp.ops.dropout import Dropout
from gpubp.ops.linear import Linear
from gpubp.tensor import Function, Tensor

__all__ = [
    "DETAILS",
    "GraphvizNotFoundError",
    "derivative_label",
    "draw",
    "input_name",
    "render",
    "to_dot",
    "unavailable_reason",
]

DETAILS = ("layers", "ops", "neurons")
# detail="neurons" draws one node per unit: beyond this many units a layer is a blur of edges.
NEURON_LIMIT = 16
RENDER_FORMATS = ("svg", "png", "pdf")
TEXT_FORMATS = ("dot", "gv")
# values=True prints arrays up to this many entries; larger ones as mean, min and max.
VALUE_LIMIT = 16
# detail="neurons" with values writes the weights on the edges between layers with at most this many.
WEIGHT_LABELS = 16
INSTALL_HINT = (
    "pip install -e \".[viz]\" in a checkout (pip install 'gpubp[viz]' otherwise) "
    "and Graphviz's dot program (apt-get install graphviz)"
)
# Ops that multiply the gradient entry by entry by a factor fixed in the forward pass:
# the notes' op-amps (triangles in the reverse network), and what a neuron layer may hold.
_GAIN_OPS = (Sigmoid, Tanh, ReLU, LeakyReLU, GELU, Dropout)

# detail="neurons" places every node itself (inches): the column step and the row heights.
_STEP, _ROW_F, _ROW_R, _GAP = 2.2, 1.45, 1.0, 1.0
_FONT = "DejaVu Sans,Helvetica,Arial,sans-serif"
_FORWARD = {"color": "#7f95c5", "bg": "#f3f6fc", "op": "#dbe5f7"}
_REVERSE = {"color": "#d0776b", "bg": "#fdf3f1", "op": "#f8d8cf", "edge": "#b03a2e", "gain": "#fbe3a3"}


class GraphvizNotFoundError(RuntimeError):
    """``draw`` needs the graphviz Python package and Graphviz's dot program; the
    message says which is missing and how to install it (``to_dot`` needs neither)."""


def unavailable_reason() -> str | None:
    """Why ``draw`` cannot render here (None when it can): the graphviz package or
    the ``dot`` program is missing."""
    try:
        import graphviz
    except ImportError:
        return f"the graphviz Python package is not installed; install it and Graphviz: {INSTALL_HINT}"
    try:
        graphviz.version()
    except graphviz.ExecutableNotFound:
        return f"Graphviz's dot program was not found on PATH; install it: {INSTALL_HINT}"
    return None


def to_dot(
    tensor: Tensor,
    backward: bool = True,
    values: bool = False,
    detail: str = "layers",
    *,
    params: Mapping[str, Tensor] | None = None,
    model: Any = None,
    sample: int = 0,
) -> str:
    """Graphviz DOT text of the tape that produced ``tensor`` (see the module docstring).

    ``backward`` adds the reverse network beside the forward graph; ``values``
    prints forward values and gradients; ``detail`` is "layers", "ops" or
    "neurons". Leaves are named from ``params`` ({name: tensor}, e.g.
    ``dict(model.named_parameters())``) or ``model`` (its named parameters); others
    show their shape. ``sample`` is the row of the batch whose unit values
    ``detail="neurons"`` prints. A tensor without a graph draws as one node.
    Raises RuntimeError when a backward without ``retain_graph=True`` freed the
    graph, and ValueError for a bad ``detail``, or for ``detail="neurons"`` on a
    graph that is not a chain of small Linear layers.
    """
    if detail not in DETAILS:
        raise ValueError(f"to_dot: detail must be one of {', '.join(DETAILS)}, got {detail!r}")
    if not isinstance(tensor, Tensor):
        raise TypeError(f"to_dot: expects a Tensor, got {type(tensor).__name__}")
    names = _leaf_names(params, model)
    graph = _walk(tensor, names)
    flows = _replay(graph) if values and backward and graph.ops else {}
    if detail == "neurons" and graph.ops:
        return _NeuronDrawing(graph, flows, backward, values, sample).dot()
    return _GraphDrawing(graph, flows, backward, values, detail).dot()


def draw(tensor: Tensor, path: str | Path, **options: Any) -> Path:
    """Writes the picture of ``to_dot(tensor, **options)`` to ``path``: SVG, PNG or
    PDF by its suffix (rendered with Graphviz's dot), or the DOT text for ``.dot``
    and ``.gv``. Returns the path. Raises GraphvizNotFoundError, saying what to
    install, where the graphviz package or dot is missing."""
    path = Path(path)
    kind = path.suffix.lower().lstrip(".")
    if kind not in RENDER_FORMATS + TEXT_FORMATS:
        known = ", ".join(f".{k}" for k in RENDER_FORMATS + TEXT_FORMATS)
        raise ValueError(f"draw: {path} has an unknown suffix; use one of {known}")
    source = to_dot(tensor, **options)
    if kind in TEXT_FORMATS:
        path.write_text(source, encoding="utf-8")
        return path
    path.write_bytes(render(source, kind))
    return path


def render(source: str, kind: str = "svg") -> bytes:
    """DOT text rendered by Graphviz's dot as ``kind`` ("svg", "png" or "pdf")."""
    reason = unavailable_reason()
    if reason is not None:
        raise GraphvizNotFoundError(f"cannot draw: {reason}; gp.viz.to_dot gives the DOT text without them")
    import graphviz

    return graphviz.Source(source).pipe(format=kind)


# -- the tape, read after the fact ------------------------------------------------------------
@dataclass(eq=False)
class _Leaf:
    tensor: Tensor
    id: str
    name: str | None


@dataclass(eq=False)
class _Op:
    node: Function
    id: str
    output: Tensor  # the tensor it made, as its consumers hold it (for the root op: the root)
    inputs: list[tuple[int, Tensor, _Op | _Leaf]] = field(default_factory=list)  # (position, tensor, source)
    consumers: int = 0  # edges into it from the ops above (as backward counts them)


@dataclass
class _Graph:
    root: Tensor
    root_leaf: _Leaf | None
    ops: list[_Op]  # each after all its consumers (backward's order), the root's op first
    leaves: list[_Leaf]


def _leaf_names(params: Mapping[str, Tensor] | None, model: Any) -> dict[int, str]:
    names: dict[int, str] = {}
    if model is not None:
        names.update((id(p), name) for name, p in model.named_parameters())
    if params is not None:
        names.update((id(t), name) for name, t in params.items())
    return names


def _walk(root: Tensor, names: dict[int, str]) -> _Graph:
    """Every op and leaf behind ``root``, iteratively (a 5000-op chain is fine), in
    backward's order: an op comes after all the ops that consume its output."""
    leaves: dict[int, _Leaf] = {}

    def leaf(t: Tensor) -> _Leaf:
        found = leaves.get(id(t))
        if found is None:
            found = leaves[id(t)] = _Leaf(t, f"leaf{len(leaves)}", names.get(id(t)))
        return found

    if root._node is None:
        return _Graph(root, leaf(root), [], list(leaves.values()))
    ops: dict[Function, _Op] = {root._node: _Op(root._node, "op0", root)}
    stack = [ops[root._node]]
    while stack:
        op = stack.pop()
        node = op.node
        if node.inputs is None:
            raise RuntimeError(
                f"to_dot: the graph was freed by backward() (at {node.name}); call backward(retain_graph=True) "
                "to draw the graph after backward, or draw it before"
            )
        for i, x in enumerate(node.inputs):
            if not isinstance(x, Tensor):
                continue  # a Python number: a constant of the op
            x = _as_seen(node, i, x)
            parent = x._node
            if parent is None:
                op.inputs.append((i, x, leaf(x)))
                continue
            source = ops.get(parent)
            if source is None:
                source = ops[parent] = _Op(parent, f"op{len(ops)}", x)
                stack.append(source)
            source.consumers += 1
            op.inputs.append((i, x, source))
    # Kahn's order from the root, as backward runs the nodes.
    remaining = {op: op.consumers for op in ops.values()}
    ready, order = [ops[root._node]], []
    while ready:
        op = ready.pop()
        order.append(op)
        for _, _, source in reversed(op.inputs):
            if isinstance(source, _Op):
                remaining[source] -= 1
                if remaining[source] == 0:
                    ready.append(source)
    return _Graph(root, None, order, list(leaves.values()))


def _as_seen(node: Function, i: int, x: Tensor) -> Tensor:
    """Input i of ``node`` as the node saw it: an in-place change recorded since
    made x's current node a later one (backward resolves it the same way, but in
    place on the node; this leaves the tape as it is)."""
    if tape._last_recorded_inplace < 0 or not node.needs_input_grad[i]:
        return x
    version = node.input_versions[i]
    return inplace._fresh_view(inplace._state_at(x, version), version)


def _replay(graph: _Graph) -> dict[_Op, Any]:
    """The gradient flowing into each op's backward (∂output/∂ its result), from the
    seed 1: each op's backward called again on its saved values, in backward's
    order. Nothing is accumulated into the leaves."""
    root = graph.root
    flows: dict[_Op, Any] = {}
    grads: dict[_Op, Any] = {graph.ops[0]: root.backend.one(root.shape, root.dtype)}
    for op in graph.ops:
        node = op.node
        g = grads.pop(op)
        flows[op] = g
        if node.epoch != tape._inplace_epoch:
            try:
                node.check_saved_versions()
            except RuntimeError:
                raise RuntimeError(
                    f"to_dot: values=True recomputes the gradients from the values the graph saved, but a tensor "
                    f"{node.name} saved was changed in place since (an optimizer step?); draw the values before "
                    "changing it, or draw with values=False"
                ) from None
        if node.backend.needs_activation:
            node.backend.activate()
        # A copy: a backward may work in its gradient's memory, and g is kept for drawing.
        out = node.backward(node.backend.xp.array(g, copy=True))
        out = out if type(out) is tuple else (out,)
        for i, _, source in op.inputs:
            if isinstance(source, _Op) and i < len(out) and out[i] is not None:
                grads[source] = grads[source] + out[i] if source in grads else out[i]
    return flows


# -- labels ---------------------------------------------------------------------------------
@functools.cache
def _input_names(cls: type) -> tuple[tuple[str, ...], str | None]:
    """The names of ``cls.forward``'s positional parameters, and that of its *args (or None)."""
    fixed, rest = [], None
    for p in list(inspect.signature(cls.forward).parameters.values())[1:]:
        if p.kind is p.VAR_POSITIONAL:
            rest = p.name
        elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            fixed.append(p.name)
    return tuple(fixed), rest


def input_name(op: type[Function] | Function, position: int) -> str:
    """The name ``derivatives`` uses for input ``position`` of an op (class or node):
    the forward's parameter there (a ``*arrays`` parameter names every input from its place on)."""
    fixed, rest = _input_names(op if isinstance(op, type) else type(op))
    if position < len(fixed):
        return fixed[position]
    if rest is None:
        raise IndexError(f"{getattr(op, '__name__', type(op).__name__)}.forward has no input {position}")
    return rest


class _NodeFields(string.Formatter):
    def __init__(self, node: Function) -> None:
        self.node = node

    def get_value(self, key: int | str, args: Any, kwargs: Any) -> Any:
        return getattr(self.node, str(key))


def _filled(template: str, node: Function) -> str:
    try:
        return _NodeFields(node).format(template)
    except (AttributeError, IndexError, KeyError, ValueError):  # an attribute this node lacks: as written
        return template


def derivative_label(node: Function, position: int) -> str:
    """What ``node``'s backward applies to the gradient on its way to input ``position``,
    from the op's ``derivatives`` table, with ``{attr}`` filled from the node."""
    template = type(node).derivatives.get(input_name(node, position))
    return "?" if template is None else _filled(template, node)


def _delta(node: Function) -> str | None:
    template = type(node).derivatives.get("δ")
    return None if template is None else "δ = " + _filled(template, node)


def _title(node: Function) -> str:
    """A short name of an op for its box."""
    if isinstance(node, Linear) and node.inputs is not None:
        out, n_in = node.inputs[1].shape
        return f"Linear {n_in}→{out}" + (f" + {node.activation}" if node.activation else "")
    if isinstance(node, Dropout):
        return f"Dropout p={node.p:g}"
    if isinstance(node, LeakyReLU):
        return f"LeakyReLU {node.negative_slope:g}"
    return node.name


def _signature(t: Tensor) -> str:
    return f"{tuple(t.shape)} {t.dtype} {t.device}"


def _text(array: Any, limit: int = VALUE_LIMIT) -> str:
    """An array in a few characters: its entries when small, else its mean and range."""
    a = np.asarray(array)
    if a.size == 0:
        return "[]"
    if a.dtype.kind == "f" and a.size > limit:
        return f"mean {a.mean():.3g}, min {a.min():.3g}, max {a.max():.3g}"
    if a.size > limit:
        return f"{a.size} entries"
    if a.ndim == 0:
        return _number(a.item())
    return np.array2string(
        a, separator=", ", max_line_width=44, formatter={"float_kind": _number}, threshold=limit
    ).replace("\n ", "\n")


def _number(v: float) -> str:
    return f"{v + 0.0:.4g}"  # + 0.0: -0.0 (a dropped entry of a negative gradient) prints as 0


def _host(value: Any, backend: Any = None) -> np.ndarray:
    """A tensor's or a backend array's values on the host."""
    if isinstance(value, Tensor):
        return value.numpy()
    return value if isinstance(value, np.ndarray) else backend.to_host(value)


def _pos(x: float, y: float) -> str:
    return f"{x:.3f},{y:.3f}!"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _attrs(**attrs: Any) -> str:
    """A DOT attribute list: strings quoted, numbers as they are, None left out."""
    parts = [
        f"{key}={_quote(value) if isinstance(value, str) else value}"
        for key, value in attrs.items()
        if value is not None
    ]
    return " [" + ", ".join(parts) + "]" if parts else ""


class _Dot:
    """DOT text, written line by line."""

    def __init__(self, title: str, pinned: bool = False) -> None:
        # dot ranks the graph left to right; a pinned drawing (every node given its pos)
        # is laid out by neato, which keeps the places given.
        layout = "layout=neato, splines=line, overlap=true" if pinned else "rankdir=LR, newrank=true, ranksep=0.45"
        self.lines = [
            "digraph gpubp {",
            f'  graph [{layout}, nodesep=0.25, fontname="{_FONT}", '
            f"fontsize=12, label={_quote(title)}, labelloc=t, forcelabels=true];",
            f'  node [fontname="{_FONT}", fontsize=10, style=filled, fillcolor=white, penwidth=0.8];',
            f'  edge [fontname="{_FONT}", fontsize=9, arrowsize=0.7, penwidth=0.8];',
        ]
        self.indent = "  "

    def node(self, name: str, **attrs: Any) -> None:
        self.lines.append(f"{self.indent}{name}{_attrs(**attrs)};")

    def edge(self, tail: str, head: str, **attrs: Any) -> None:
        self.lines.append(f"{self.indent}{tail} -> {head}{_attrs(**attrs)};")

    def reverse_edge(self, source: str, target: str, **attrs: Any) -> None:
        """The gradient flowing from ``source`` to ``target``: written target -> source
        with dir=back, so it keeps the forward edge's place in the layout."""
        attrs.setdefault("color", _REVERSE["edge"])
        attrs.setdefault("fontcolor", _REVERSE["edge"])
        self.lines.append(f"{self.indent}{target} -> {source}{_attrs(dir='back', **attrs)};")

    def cluster(self, name: str, label: str, colors: dict[str, str]) -> None:
        self.lines.append(f"  subgraph cluster_{name} {{")
        # Each line of the title left-justified ("\l" ends a left-justified line in DOT).
        title = _quote(label)[1:-1].replace("\\n", "\\l") + "\\l"
        self.lines.append(
            f'    graph [label="{title}", style="rounded,filled", color="{colors["color"]}", '
            f'fillcolor="{colors["bg"]}", fontsize=11, labeljust=l];'
        )
        self.indent = "    "

    def end(self) -> None:
        self.lines.append("  }")
        self.indent = "  "

    def same_rank(self, groups: Iterable[Iterable[str]]) -> None:
        """Each group in one column (a forward node and its twin in the reverse network)."""
        for group in groups:
            group = list(group)
            if len(group) > 1:
                self.lines.append("  { rank=same; " + "; ".join(group) + "; }")

    def mark(self) -> int:
        return len(self.lines)

    def move_to(self, start: int, place: int) -> None:
        """Moves the lines from ``start`` on to before line ``place``. dot stacks the
        clusters of a left-to-right drawing bottom up in the order they are written,
        so the reverse network is written first to come out below the forward pass."""
        block = self.lines[start:]
        del self.lines[start:]
        self.lines[place:place] = block

    def text(self) -> str:
        return "\n".join([*self.lines, "}"]) + "\n"


# -- ops and layers -------------------------------------------------------------------------
@dataclass(eq=False)
class _Unit:
    """What one box of the picture stands for: one op, or a layer of several in a chain."""

    members: list[_Op]  # in forward order, each consuming the one before
    id: str
    title: str
    is_layer: bool = False
    module: str | None = None  # the module its parameters belong to, when they are named


def _units(graph: _Graph, detail: str) -> tuple[list[_Unit], dict[_Op, _Unit]]:
    """The boxes, in forward order: each op alone (detail="ops"), or layers: an op with
    parameters (leaves that require grad) starts one, and the ops fed by its last op
    alone that keep the shape and take no other input needing a gradient (activation,
    dropout, …) join it. With named parameters, an op whose parameters belong to the
    layer's module joins it too (x @ W + b)."""
    units: list[_Unit] = []
    unit_of: dict[_Op, _Unit] = {}
    for op in reversed(graph.ops):
        params = [s for _, _, s in op.inputs if isinstance(s, _Leaf) and s.tensor._requires_grad]
        module = _module(params)
        joined = _joined_layer(op, params, module, unit_of) if detail == "layers" else None
        if joined is not None:
            joined.members.append(op)
            unit_of[op] = joined
            continue
        is_layer = detail == "layers" and bool(params)
        unit = _Unit([op], f"{'layer' if is_layer else 'op'}{len(units)}", "", is_layer, module)
        units.append(unit)
        unit_of[op] = unit
    count = 0
    for unit in units:
        titles = " → ".join(_title(m.node) for m in unit.members)
        if unit.is_layer:
            count += 1
            unit.title = f"{unit.module or f'layer {count}'}: {titles}"
        else:
            unit.title = titles
    return units, unit_of


def _joined_layer(op: _Op, params: list[_Leaf], module: str | None, unit_of: dict[_Op, _Unit]) -> _Unit | None:
    """The layer ``op`` continues, if any (see ``_units``)."""
    feeders = [(x, s) for _, x, s in op.inputs if isinstance(s, _Op)]
    if len(feeders) != 1:
        return None
    x, source = feeders[0]
    layer = unit_of[source]
    if not layer.is_layer or layer.members[-1] is not source or source.consumers != 1:
        return None
    if params:
        return layer if module is not None and module == layer.module else None
    return layer if op.output.shape == x.shape else None


def _module(params: list[_Leaf]) -> str | None:
    """The module all these parameters belong to ("0" for "0.weight" and "0.bias"), if named alike."""
    modules = {p.name.rpartition(".")[0] if p.name else None for p in params}
    if len(modules) != 1:
        return None
    (module,) = modules
    return module or None


def _chain_position(op: _Op, previous: _Op) -> int:
    return next(i for i, _, s in op.inputs if s is previous)


def _outside_inputs(unit: _Unit) -> list[tuple[int, Tensor, _Op | _Leaf, int]]:
    """(position, tensor, source, member index) of each input that comes from outside the unit."""
    found = []
    for j, member in enumerate(unit.members):
        chained = unit.members[j - 1] if j else None
        for i, x, source in member.inputs:
            if source is not chained:
                found.append((i, x, source, j))
    return found


class _GraphDrawing:
    """detail="ops" and "layers": boxes for ops (or layers), ellipses for leaves; dot
    lays it out left to right, each reverse node in the column of its forward twin."""

    def __init__(self, graph: _Graph, flows: dict[_Op, Any], backward: bool, values: bool, detail: str) -> None:
        self.graph, self.flows, self.backward, self.values = graph, flows, backward, values
        self.units, self.unit_of = _units(graph, detail) if graph.ops else ([], {})
        self.root = graph.root
        title = "gpubp: the forward pass and its reverse network" if backward else "gpubp: the forward pass"
        self.dot_ = _Dot(title)
        # Each forward node's column: itself and its twin in the reverse network.
        self.columns: dict[str, list[str]] = {}

    def dot(self) -> str:
        d = self.dot_
        forward = d.mark()
        d.cluster("forward", "forward pass", _FORWARD)
        for leaf in self.graph.leaves:
            self._leaf(leaf)
        for unit in self.units:
            self._unit(unit)
        d.node("output", **self._output())
        self.columns["output"] = ["output"]
        if self.units:
            d.edge(self.unit_of[self.graph.ops[0]].id, "output")
            for unit in self.units:
                for _, x, source, _ in _outside_inputs(unit):
                    d.edge(self._forward_id(source), unit.id, style=None if x._requires_grad else "dashed")
        elif self.graph.root_leaf is not None:
            d.edge(self.graph.root_leaf.id, "output")
        d.end()
        if self.backward and self.root._requires_grad:
            start = d.mark()
            d.cluster("backward", "backward pass: the reverse network (gradients flow ←)", _REVERSE)
            self._reverse()
            d.end()
            d.move_to(start, forward)
        d.same_rank(self.columns.values())
        return d.text()

    # forward
    def _forward_id(self, source: _Op | _Leaf) -> str:
        return source.id if isinstance(source, _Leaf) else self.unit_of[source].id

    def _leaf(self, leaf: _Leaf) -> None:
        t = leaf.tensor
        lines = [leaf.name] if leaf.name else []
        lines.append(_signature(t))
        if not t._requires_grad:
            lines.append("no grad")
        if self.values:
            lines.append("= " + _text(t.numpy()))
        style, fill = ("filled", "#dcefd5") if t._requires_grad else ("dashed,filled", "#f2f2f2")
        self.dot_.node(leaf.id, label="\n".join(lines), shape="ellipse", style=style, fillcolor=fill)
        self.columns[leaf.id] = [leaf.id]

    def _unit(self, unit: _Unit) -> None:
        lines = [unit.title]
        last = unit.members[-1]
        if self.values and last.output is not self.root:  # the root's value is on the output node
            lines.append("= " + _text(last.output.numpy()))
        self.dot_.node(unit.id, label="\n".join(lines), shape="box", style="rounded,filled", fillcolor=_FORWARD["op"])
        self.columns[unit.id] = [unit.id]

    def _output(self) -> dict[str, Any]:
        r = self.root
        lines = ["l" if r.size == 1 else "output", _signature(r)]
        if self.values:
            lines.append("= " + _text(r.numpy()))
        return {"label": "\n".join(lines), "shape": "ellipse", "penwidth": 1.6}

    # backward
    def _reverse(self) -> None:
        d = self.dot_
        seed = "∂l/∂l = 1" if self.root.size == 1 else "seed: ∂l/∂output = 1"
        d.node("seed", label=seed, shape="plaintext", style="solid")
        self.columns["output"].append("seed")
        for leaf in self.graph.leaves:
            if leaf.tensor._requires_grad:
                self._leaf_gradient(leaf)
                self.columns[leaf.id].append(f"grad_{leaf.id}")
        if self.graph.root_leaf is not None:  # the tensor drawn is a leaf: its gradient is the seed
            d.reverse_edge("seed", f"grad_{self.graph.root_leaf.id}", label="· 1")
            return
        for unit in self.units:
            self._reverse_unit(unit)
            self.columns[unit.id].append(f"back_{unit.id}")
        d.reverse_edge("seed", f"back_{self.unit_of[self.graph.ops[0]].id}")
        for unit in self.units:
            for position, x, source, j in _outside_inputs(unit):
                if x._requires_grad:
                    target = f"grad_{source.id}" if isinstance(source, _Leaf) else f"back_{self.unit_of[source].id}"
                    d.reverse_edge(f"back_{unit.id}", target, label=self._edge_label(unit, j, position))

    @staticmethod
    def _branch_end(unit: _Unit) -> int:
        """The last member with an outside input that needs a gradient: the gradient
        passes the members after it before it branches."""
        return max((j for _, x, _, j in _outside_inputs(unit) if x._requires_grad), default=0)

    @staticmethod
    def _through(unit: _Unit, start: int, stop: int) -> list[str]:
        """The labels of members start … stop − 1 along the chain, in backward order."""
        return [
            derivative_label(unit.members[k].node, _chain_position(unit.members[k], unit.members[k - 1]))
            for k in range(stop - 1, max(start, 1) - 1, -1)
        ]

    def _edge_label(self, unit: _Unit, j: int, position: int) -> str:
        """What the gradient meets from the unit's reverse node to member j's input ``position``."""
        end = self._branch_end(unit)
        parts = self._through(unit, j + 1, end + 1)
        delta = _delta(unit.members[j].node)
        if delta is not None and j != end:  # the branch end's δ is on the reverse node
            parts.append(delta)
        parts.append(derivative_label(unit.members[j].node, position))
        return ";\n".join(parts)

    def _reverse_unit(self, unit: _Unit) -> None:
        end = self._branch_end(unit)
        node = unit.members[end].node
        lines = [f"{unit.title} backward"]
        lines += self._through(unit, end + 1, len(unit.members))
        delta = _delta(node)
        if delta is not None:
            lines.append(delta)
        last = unit.members[-1]
        if self.values and last in self.flows:
            lines.append("g = " + _text(_host(self.flows[last], last.node.backend)))
        # A gain op alone (σ, dropout, …) is one of the notes' op-amps: drawn as an arrow.
        gain = len(unit.members) == 1 and isinstance(node, _GAIN_OPS)
        self.dot_.node(
            f"back_{unit.id}",
            label="\n".join(lines),
            shape="cds" if gain else "box",
            orientation=180 if gain else None,  # the arrow points the way the gradient flows
            style="filled" if gain else "rounded,filled",
            fillcolor=_REVERSE["gain"] if gain else _REVERSE["op"],
        )

    def _leaf_gradient(self, leaf: _Leaf) -> None:
        t = leaf.tensor
        lines = [f"∂l/∂{leaf.name}" if leaf.name else f"∂l/∂{tuple(t.shape)}"]
        if self.values:
            lines.append("= " + (_text(t.grad.numpy()) if t.grad is not None else "None (no backward yet)"))
        self.dot_.node(f"grad_{leaf.id}", label="\n".join(lines), shape="ellipse", fillcolor="#fff1b8")


# -- neurons -----------------------------------------------------------------------------------
@dataclass
class _NeuronLayer:
    unit: _Unit
    head: _Op
    weight: _Leaf
    bias: _Leaf | None
    first: int  # the number of its first unit (z1, z2, … over the whole net, as the notes count)


class _NeuronDrawing:
    """detail="neurons": one node per unit of a chain of small Linear layers, and the
    reverse network of op-amps the lecture notes draw."""

    def __init__(self, graph: _Graph, flows: dict[_Op, Any], backward: bool, values: bool, sample: int) -> None:
        self.graph, self.flows, self.backward, self.values = graph, flows, backward, values
        units, self.unit_of = _units(graph, "layers")
        self.layers, self.loss = self._chain(units)
        x = self.layers[0].head.node.inputs[0]
        rows = 1 if x.ndim == 1 else x.shape[0]
        if not 0 <= sample < rows:
            raise ValueError(f"to_dot: sample {sample} is not a row of the batch of {rows}")
        self.sample, self.rows = sample, rows
        self.dot_ = _Dot(
            "gpubp: the network neuron by neuron, and its reverse network of op-amps"
            + (f" (values of sample {sample} of {rows})" if values and rows > 1 else ""),
            pinned=True,
        )

    def _chain(self, units: list[_Unit]) -> tuple[list[_NeuronLayer], _Op | None]:
        def refuse(why: str) -> None:
            raise ValueError(
                f"to_dot: detail='neurons' draws a chain of Linear layers (each maybe followed by an activation "
                f"or dropout) of at most {NEURON_LIMIT} units, then at most one op such as the loss; {why}. "
                "Use detail='layers' or 'ops'"
            )

        layers: list[_NeuronLayer] = []
        loss = None
        count = 0
        for k, unit in enumerate(units):
            head = unit.members[0]
            if not unit.is_layer:
                if k != len(units) - 1 or not layers:
                    refuse(f"{unit.title} is not a Linear layer")
                loss = head
                continue
            if not isinstance(head.node, Linear) or any(not isinstance(m.node, _GAIN_OPS) for m in unit.members[1:]):
                refuse(f"{unit.title} is not a Linear layer followed by elementwise activations")
            sources = {i: s for i, _, s in head.inputs}
            weight = sources[1]
            if not isinstance(weight, _Leaf):
                refuse("a Linear layer's weight is computed, not a parameter")
            out, n_in = weight.tensor.shape
            if max(out, n_in) > NEURON_LIMIT:
                refuse(f"{unit.title} has {max(out, n_in)} units")
            feeder = sources[0]
            if (not layers and isinstance(feeder, _Op)) or (layers and feeder is not layers[-1].unit.members[-1]):
                refuse(f"the input of {unit.title} does not come from the layer before it")
            bias = sources.get(2)
            layers.append(_NeuronLayer(unit, head, weight, bias if isinstance(bias, _Leaf) else None, count + 1))
            count += out
        if not layers:
            refuse("there is no Linear layer")
        last = layers[-1].unit.members[-1]
        if loss is not None and any(isinstance(s, _Op) and s is not last for _, _, s in loss.inputs):
            refuse(f"{_title(loss.node)} takes more than the last layer's output")
        return layers, loss

    # values of one sample
    def _row(self, array: Any, backend: Any = None) -> np.ndarray:
        a = _host(array, backend).astype(np.float64)
        return a.reshape(-1, a.shape[-1])[self.sample] if a.ndim else a

    @staticmethod
    def _gain_labels(layer: _NeuronLayer) -> list[str]:
        """The factors the layer's op-amps multiply by, from the ops' derivatives tables:
        the fused activation's, then each gain op's after it ([] for a layer without)."""
        node = layer.head.node
        labels = [node.act_derivative.strip()] if node.activation else []
        return labels + [derivative_label(member.node, 0) for member in layer.unit.members[1:]]

    @staticmethod
    def _gains(layer: _NeuronLayer) -> Any:
        """Those factors' values, fixed by the forward pass: the fused activation's
        derivative from its output, times each gain op's backward of a gradient of ones."""
        node = layer.head.node
        backend = node.backend
        out = layer.head.output.data
        gain = backend.activation_backward(backend.xp.ones_like(out), out, node.activation)
        for member in layer.unit.members[1:]:
            gain = gain * member.node.backward(backend.xp.ones_like(member.output.data))
        return gain

    def dot(self) -> str:
        """The drawing, with every node at a fixed place (neato, pinned): the units in
        columns as the notes draw them, the forward pass above, its reverse network below."""
        d = self.dot_
        first = self.layers[0]
        x = first.head.node.inputs[0]
        sizes = [first.weight.tensor.shape[1]] + [layer.weight.tensor.shape[0] for layer in self.layers]
        tallest = max(sizes)
        row_f = _ROW_F if self.values else _ROW_F * 0.6  # circles with values in them are larger
        self.row_f = lambda j, n: -(j + (tallest - n) / 2) * row_f
        top_r = -tallest * row_f - _GAP
        self.row_r = lambda j, n: top_r - (j + (tallest - n) / 2) * _ROW_R
        self.bottom_r = top_r - tallest * _ROW_R - 0.2
        self.tallest = tallest

        # Columns: the inputs, then per layer its units and, where it has an activation
        # (an op-amp in the reverse network), a column for the op-amps after them.
        column_x, at = [], 0.0
        for layer in self.layers:
            at += _STEP
            column_x.append(at)
            if self._activated(layer):
                at += _STEP * 0.9
        self.column_x = column_x
        self.loss_x = at + _STEP

        d.cluster("forward", "forward pass: each circle a neuron, z = Σ w·a + b, a = σ(z)", _FORWARD)
        d.node("pad_f", shape="point", style="invis", pos=_pos(0, row_f * 0.75))
        x_row = self._row(x.numpy()) if self.values else None
        previous = []
        for i in range(sizes[0]):
            name = f"x{i + 1}"
            label = name + (f"\n{_number(x_row[i])}" if x_row is not None else "")
            d.node(name, label=label, shape="circle", fillcolor="#f2f2f2", pos=_pos(0, self.row_f(i, sizes[0])))
            previous.append(name)
        a_prev = x_row
        self.weights = []
        for index, layer in enumerate(self.layers):
            w = layer.weight.tensor.numpy().astype(np.float64)
            b = layer.bias.tensor.numpy().astype(np.float64) if layer.bias is not None else np.zeros(w.shape[0])
            a = self._row(layer.unit.members[-1].output.numpy()) if self.values else None
            z = w @ a_prev + b if self.values else None  # for display: a fused Linear keeps only σ(z)
            self.weights.append(w)
            names = [f"z{layer.first + j}" for j in range(w.shape[0])]
            for j, name in enumerate(names):
                lines = [name]
                if self.values:
                    lines.append(f"z = {_number(z[j])}")
                    if self._activated(layer):
                        lines.append(f"a = {_number(a[j])}")
                d.node(
                    name,
                    label="\n".join(lines),
                    shape="circle",
                    fillcolor=_FORWARD["op"],
                    pos=_pos(column_x[index], self.row_f(j, len(names))),
                )
                for i, source in enumerate(previous):
                    d.edge(source, name, **self._weight(w, j, i))
            previous = names
            a_prev = a
        if self.loss is not None:
            lines = [_title(self.loss.node), "l" + (f" = {_text(self.graph.root.numpy())}" if self.values else "")]
            d.node(
                "loss",
                label="\n".join(lines),
                shape="box",
                style="rounded,filled",
                fillcolor=_FORWARD["op"],
                pos=_pos(self.loss_x, self.row_f(0, 1)),
            )
            for name in previous:
                d.edge(name, "loss")
        d.end()
        if self.backward and self.graph.root._requires_grad:
            self._reverse()
        return d.text()

    @staticmethod
    def _activated(layer: _NeuronLayer) -> bool:
        return layer.head.node.activation is not None or len(layer.unit.members) > 1

    def _reverse(self) -> None:
        d = self.dot_
        d.cluster(
            "backward",
            "backward pass: the reverse network (gradients flow ←)\neach triangle an op-amp of gain σ′(z), "
            "fixed by the forward pass: ∂l/∂z = σ′(z) · Σ w · ∂l/∂z (layer above)",
            _REVERSE,
        )
        d.node("pad_r", shape="point", style="invis", pos=_pos(0, self.row_r(0, self.tallest) + 0.95))
        lowest = self.bottom_r
        if self.loss is not None:
            lines = ["∂l/∂l = 1", f"{_title(self.loss.node)} backward:", derivative_label(self.loss.node, 0)]
        else:  # the drawn tensor is the last layer's output: backward starts from a seed of ones
            lines = ["seed: ∂l/∂output = 1"]
        d.node(
            "dloss",
            label="\n".join(lines),
            shape="box",
            style="rounded,filled",
            fillcolor=_REVERSE["op"],
            pos=_pos(self.loss_x, self.row_r(0, 1)),
        )
        above: list[tuple[str, Any]] = [("dloss", None)]  # the layer above: (node, weights from this layer to it)
        for index in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[index]
            n_units = self.weights[index].shape[0]
            names = [f"dz{layer.first + j}" for j in range(n_units)]
            gain_labels = self._gain_labels(layer)
            delta = gain_row = None
            if self.values:
                backend = layer.head.node.backend
                gain = self._gains(layer)
                flow = self.flows[layer.head]
                delta = self._row(flow * gain if layer.head.node.activation else flow, backend)
                gain_row = self._row(gain, backend)
            x_units = self.column_x[index]
            if gain_labels:
                x_amps = x_units + _STEP * 0.9
                for j in range(n_units):
                    unit = layer.first + j
                    label = self._gain_symbol(gain_labels, unit)
                    if self.values:
                        label += f"\n= {_number(gain_row[j])}"
                    amp = f"amp{unit}"
                    d.node(
                        amp,
                        label=label,
                        shape="triangle",
                        orientation=90,  # pointing left, the way the gradient flows
                        fillcolor=_REVERSE["gain"],
                        margin=0,
                        pos=_pos(x_amps, self.row_r(j, n_units)),
                    )
                    self._feed(above, j, amp)
                d.node(
                    f"gain{index}",
                    label="gain " + "\n".join(gain_labels),
                    shape="plaintext",
                    style="solid",
                    fontcolor=_REVERSE["edge"],
                    pos=_pos(x_amps, self.bottom_r),
                )
            for j, name in enumerate(names):
                lines = [f"∂l/∂z{layer.first + j}"] + ([f"= {_number(delta[j])}"] if self.values else [])
                d.node(
                    name,
                    label="\n".join(lines),
                    shape="ellipse",
                    fillcolor=_REVERSE["op"],
                    pos=_pos(x_units, self.row_r(j, n_units)),
                )
                if gain_labels:
                    d.edge(f"amp{layer.first + j}", name, **self._reverse_style())
                else:
                    self._feed(above, j, name)
            label = self._parameter_gradients(layer)
            height = 0.17 * (label.count("\n") + 1) + 0.1  # inches: 10-point lines
            lowest = min(lowest, self.bottom_r - 0.35 - height)
            d.node(
                f"dw{index}",
                label=label,
                shape="box",
                fillcolor="#fff1b8",
                pos=_pos(x_units, self.bottom_r - 0.35 - height / 2),
            )
            above = [(name, self.weights[index]) for name in names]
        d.node("pad_b", shape="point", style="invis", pos=_pos(0, lowest - 0.1))
        d.end()

    def _feed(self, above: list[tuple[str, Any]], j: int, target: str) -> None:
        """The edges into unit j from the layer above: each ∂l/∂z there, times its weight to unit j."""
        for k, (source, weights) in enumerate(above):
            self.dot_.edge(source, target, **self._reverse_style(weights, k, j))

    def _reverse_style(self, weights: Any = None, k: int = 0, j: int = 0) -> dict[str, Any]:
        style = {"color": _REVERSE["edge"], "fontcolor": _REVERSE["edge"]}
        return {**style, **self._weight(weights, k, j)}

    def _weight(self, weights: Any, k: int, j: int) -> dict[str, Any]:
        """Weight (k, j)'s label, near the edge's start where the edges leaving a unit
        fan out; only with values, and only between layers with few connections
        (beyond ``WEIGHT_LABELS`` the numbers would cover the edges)."""
        if weights is None or not self.values or weights.size > WEIGHT_LABELS:
            return {}
        return {"taillabel": f"{weights[k, j]:.3g}", "labeldistance": 2.6, "labelangle": 10}

    @staticmethod
    def _gain_symbol(labels: list[str], unit: int) -> str:
        """The op-amp's gain for one unit, from the gain labels: "⊙ σ′(z) = s(1−s)" gives σ′(z3)."""
        parts = []
        for label in labels:
            match = re.match(r"⊙ (\S+′)\((?:z|x)\)", label)
            parts.append(f"{match.group(1)}(z{unit})" if match else label.removeprefix("⊙ "))
        return " · ".join(parts)

    def _parameter_gradients(self, layer: _NeuronLayer) -> str:
        node = layer.head.node
        lines = []
        for position, leaf in ((1, layer.weight), (2, layer.bias)):
            if leaf is None:
                continue
            name = leaf.name or _signature(leaf.tensor)
            lines.append(f"∂l/∂{name} = {derivative_label(node, position)}")
            if self.values:
                grad = leaf.tensor.grad
                lines.append(_text(grad.numpy()) if grad is not None else "None (no backward yet)")
        return "\n".join(lines)
