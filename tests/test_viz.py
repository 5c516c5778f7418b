"""gp.viz: the DOT text of a tape and its reverse network, the derivative labels of
every op, printed values against .grad, and rendering where Graphviz is installed."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import gpubp as gp
import gpubp.ops
from gpubp import viz
from gpubp.tensor import Function

RENDER_SKIP = viz.unavailable_reason()
needs_graphviz = pytest.mark.skipif(RENDER_SKIP is not None, reason=f"cannot render: {RENDER_SKIP}")


# -- reading DOT back ------------------------------------------------------------------------------
_ATTR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^,\]\s]+)')


def _attrs(text: str | None) -> dict[str, str]:
    found = {}
    for key, value in _ATTR.findall(text or ""):
        if value.startswith('"'):
            value = value[1:-1].replace('\\"', '"').replace("\\n", "\n").replace("\\l", "\n").replace("\\\\", "\\")
        found[key] = value
    return found


class Dot:
    """The nodes and edges of gp.viz's DOT text. A reverse edge (dir=back) is read the
    way the gradient flows, from the node that sends it to the node that receives it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.nodes: dict[str, dict[str, str]] = {}
        self.edges: list[tuple[str, str, dict[str, str]]] = []
        for line in text.splitlines():
            edge = re.match(r"^\s+(\w+) -> (\w+)(?: \[(.*)\])?;$", line)
            if edge:
                tail, head, attrs = edge.group(1), edge.group(2), _attrs(edge.group(3))
                if attrs.get("dir") == "back":
                    tail, head = head, tail
                self.edges.append((tail, head, attrs))
                continue
            node = re.match(r"^\s+(\w+)(?: \[(.*)\])?;$", line)
            if node and node.group(1) not in ("graph", "node", "edge"):
                attrs = _attrs(node.group(2))
                if attrs.get("style") != "invis":
                    self.nodes[node.group(1)] = attrs

    def label(self, node: str) -> str:
        return self.nodes[node].get("label", "")

    def find(self, first_line: str) -> str:
        """The node whose label's first line is ``first_line``."""
        found = [n for n, a in self.nodes.items() if a.get("label", "").split("\n")[0] == first_line]
        assert len(found) == 1, (first_line, found)
        return found[0]

    def edge(self, tail: str, head: str) -> dict[str, str]:
        found = [a for t, h, a in self.edges if (t, h) == (tail, head)]
        assert len(found) == 1, (tail, head, found)
        return found[0]

    def forward(self) -> list[str]:
        return [n for n in self.nodes if not n.startswith(("back_", "grad_", "seed", "d", "amp", "gain"))]

    def reverse(self) -> list[str]:
        return [n for n in self.nodes if n not in self.forward()]


# -- the lecture notes' network: two inputs, two hidden layers of two sigmoid neurons, two outputs -
NOTES_WEIGHTS = {
    "0.weight": [[1, -2], [-1, 1]],
    "0.bias": [1, 0],
    "2.weight": [[2, -1], [-2, -1]],
    "2.bias": [0, 0],
    "4.weight": [[3, -1], [-1, 4]],
    "4.bias": [-1, 2],
}


def notes_network(dtype: str = "float64") -> gp.nn.Sequential:
    model = gp.nn.Sequential(
        gp.nn.Linear(2, 2, dtype=dtype),
        gp.nn.Sigmoid(),
        gp.nn.Linear(2, 2, dtype=dtype),
        gp.nn.Sigmoid(),
        gp.nn.Linear(2, 2, dtype=dtype),
    )
    model.load_state_dict({k: np.array(v, dtype=dtype) for k, v in NOTES_WEIGHTS.items()})
    return model


def notes_step(dtype: str = "float64") -> tuple[gp.Tensor, gp.nn.Sequential]:
    """The notes' sample x = (1, −1) of class 0 (z5), cross-entropy, backward keeping the graph."""
    model = notes_network(dtype)
    loss = gp.cross_entropy(model(gp.tensor([[1.0, -1.0]], dtype=dtype)), [0])
    loss.backward(retain_graph=True)
    return loss, model


def notes_by_hand() -> dict[str, np.ndarray]:
    """The notes' forward and backward pass, unit by unit, in NumPy (column vectors)."""
    w = {k: np.array(v, dtype=np.float64) for k, v in NOTES_WEIGHTS.items()}
    a0 = np.array([1.0, -1.0])
    z1 = w["0.weight"] @ a0 + w["0.bias"]
    a1 = 1 / (1 + np.exp(-z1))
    z2 = w["2.weight"] @ a1 + w["2.bias"]
    a2 = 1 / (1 + np.exp(-z2))
    z3 = w["4.weight"] @ a2 + w["4.bias"]
    p = np.exp(z3) / np.exp(z3).sum()
    d3 = p - np.array([1.0, 0.0])  # ∂l/∂z5, ∂l/∂z6: softmax − onehot
    gain2 = a2 * (1 - a2)  # σ′(z3), σ′(z4): the op-amps' gains
    d2 = gain2 * (w["4.weight"].T @ d3)  # ∂l/∂z = σ′(z) Σ w ∂l/∂z(above)
    gain1 = a1 * (1 - a1)
    d1 = gain1 * (w["2.weight"].T @ d2)
    return {"z1": z1, "z2": z2, "z3": z3, "gain1": gain1, "gain2": gain2, "d1": d1, "d2": d2, "d3": d3}


# -- the labels: one table beside each op's backward -----------------------------------------------
def _ops_classes() -> list[type[Function]]:
    for info in pkgutil.iter_modules(gpubp.ops.__path__):
        importlib.import_module(f"gpubp.ops.{info.name}")
    found, stack = [], list(Function.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__.startswith("gpubp.ops.") and not cls.__name__.startswith("_"):
            found.append(cls)
    return sorted(set(found), key=lambda c: (c.__module__, c.__name__))


def _label_problems(cls: type[Function]) -> list[str]:
    """What is wrong with an op's derivatives table ([] when nothing is)."""
    owner = next(k for k in cls.__mro__ if "derivatives" in vars(k))
    backward = next(k for k in cls.__mro__ if "backward" in vars(k))
    if owner is Function or not issubclass(owner, backward):
        return [f"{cls.__name__}: no derivatives table at or below its backward ({backward.__name__})"]
    params = list(inspect.signature(cls.forward).parameters.values())[1:]
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)}
    table = cls.derivatives
    problems = []
    if set(table) - {"δ"} != names:
        problems.append(f"{cls.__name__}: labels for {sorted(set(table) - {'δ'})}, forward takes {sorted(names)}")
    problems += [f"{cls.__name__}: empty label for {k}" for k, v in table.items() if not (isinstance(v, str) and v)]
    return problems


def test_every_op_has_a_derivative_label_for_each_input() -> None:
    classes = _ops_classes()
    names = {c.__name__ for c in classes}
    # The families the issue lists, so the search itself cannot come back short.
    assert {"Add", "Sum", "Reshape", "MatMul", "Sigmoid", "Linear", "CrossEntropy", "Dropout", "Cast"} <= names
    assert {"Where", "Cat", "WriteView", "ViewOf", "GELU", "BCEWithLogits", "Variance", "SetItem"} <= names
    assert len(classes) >= 45
    assert [p for cls in classes for p in _label_problems(cls)] == []


def test_a_new_op_without_labels_is_caught() -> None:
    from gpubp.ops.elementwise import Add

    class Cube(Function):  # an op added without its table
        def forward(self, a: object) -> object:
            return a

        def backward(self, g: object) -> object:
            return g

    class FastAdd(Add):  # a new backward under an old table: the labels may no longer say what it does
        def backward(self, g: object) -> tuple:
            return g, g

    class PartialSub(Function):
        derivatives = {"a": "· 1"}  # b forgotten

        def forward(self, a: object, b: object) -> object:
            return a

        def backward(self, g: object) -> tuple:
            return g, g

    assert _label_problems(Cube) == ["Cube: no derivatives table at or below its backward (Cube)"]
    assert _label_problems(FastAdd) == ["FastAdd: no derivatives table at or below its backward (FastAdd)"]
    assert _label_problems(PartialSub) == ["PartialSub: labels for ['a'], forward takes ['a', 'b']"]


def test_labels_are_filled_from_the_node() -> None:
    x = gp.randn(2, 3, requires_grad=True)
    y = gp.dropout(x.mean(dim=1), 0.25)
    assert viz.derivative_label(y.grad_fn, 0) == "⊙ mask/(1 − 0.25)"
    assert viz.derivative_label(y.grad_fn.inputs[0].grad_fn, 0) == "/ 3, spread over the averaged axes"
    layer = gp.linear(x, gp.randn(4, 3, requires_grad=True), activation="tanh")
    assert viz.derivative_label(layer.grad_fn, 1) == "δᵀ · a"
    assert viz._delta(layer.grad_fn) == "δ = g ⊙ tanh′(z) = 1 − y²"  # the Tanh op's own label
    assert viz.input_name(gp.cat([x, x]).grad_fn, 1) == "arrays"


# -- DOT structure ---------------------------------------------------------------------------------
def test_layers_of_the_notes_network() -> None:
    loss, model = notes_step()
    dot = Dot(viz.to_dot(loss, model=model))
    # Forward: x, six parameters, three layer boxes, the loss op, the output. Reverse: the
    # seed, six parameter gradients, four backward nodes.
    assert len(dot.forward()) == 12 and len(dot.reverse()) == 11
    assert len([e for e in dot.edges if e[2].get("dir") != "back"]) == 11
    assert len([e for e in dot.edges if e[2].get("dir") == "back"]) == 10
    layers = [dot.find(f"{m}: Linear 2→2" + (" + sigmoid" if m != "4" else "")) for m in "024"]
    for name in NOTES_WEIGHTS:
        leaf = dot.find(name)
        assert dot.label(leaf) == f"{name}\n{(2, 2) if 'weight' in name else (2,)} float64 cpu"
    x = dot.find("(1, 2) float64 cpu")
    assert "no grad" in dot.label(x) and dot.nodes[x]["style"] == "dashed,filled"
    assert [(t, h) for t, h, a in dot.edges if h == layers[0] and a.get("dir") != "back"] == [
        (x, layers[0]),
        (dot.find("0.weight"), layers[0]),
        (dot.find("0.bias"), layers[0]),
    ]

    back = {m: dot.find(f"{m}: Linear 2→2{' + sigmoid' if m != '4' else ''} backward") for m in "024"}
    ce = dot.find("CrossEntropy backward")
    assert dot.edge("seed", ce) == {"dir": "back", "color": "#b03a2e", "fontcolor": "#b03a2e"}
    assert dot.edge(ce, back["4"])["label"] == "(softmax − onehot)/N"
    assert dot.edge(back["4"], back["2"])["label"] == "δ · W (Wᵀδ per sample)"
    assert dot.edge(back["2"], dot.find("∂l/∂2.weight"))["label"] == "δᵀ · a"
    assert dot.edge(back["2"], dot.find("∂l/∂2.bias"))["label"] == "Σ_rows δ"
    assert dot.label(back["0"]).split("\n")[1] == "δ = g ⊙ σ′(z) = s(1−s)"
    assert dot.label(back["4"]).split("\n")[1] == "δ = g"
    # The data gets no gradient: nothing flows back to it.
    assert not [e for e in dot.edges if e[1] == x and e[2].get("dir") == "back"]
    # Each reverse node in its forward twin's column.
    assert f"{{ rank=same; {layers[1]}; back_{layers[1]}; }}" in dot.text


def test_ops_detail_draws_every_op_and_labels_each_backward_edge() -> None:
    w = gp.randn(3, 2, requires_grad=True)
    b = gp.zeros(2, requires_grad=True)
    x = gp.randn(4, 3)
    h = gp.tanh(x @ w + b)
    loss = gp.mse_loss((h * h).sum(dim=1), [1.0, 0.0, 1.0, 0.0])
    dot = Dot(viz.to_dot(loss, detail="ops", params={"w": w, "b": b}))
    ops = ["MatMul", "Add", "Tanh", "Mul", "Sum", "MSE"]
    forward = {name: dot.find(name) for name in ops}
    back = {name: dot.find(f"{name} backward") for name in ops}
    # x, w, b, the MSE target (a constant), six ops, the output; seed, two gradients, six backward nodes.
    assert len(dot.forward()) == 11 and len(dot.reverse()) == 9
    assert dot.edge(back["MSE"], back["Sum"])["label"] == "2(pred − target) (/N for the mean)"
    assert dot.edge(back["Sum"], back["Mul"])["label"] == "· 1, spread over the summed axes"
    # h * h: one edge for each operand, each with its own label.
    assert sorted(a["label"] for t, h_, a in dot.edges if (t, h_) == (back["Mul"], back["Tanh"])) == [
        "⊙ a (Σ to b's shape)",
        "⊙ b (Σ to a's shape)",
    ]
    assert dot.edge(back["Tanh"], back["Add"])["label"] == "⊙ tanh′(z) = 1 − y²"
    assert dot.edge(back["Add"], back["MatMul"])["label"] == "· 1 (Σ to a's shape)"
    assert dot.edge(back["Add"], dot.find("∂l/∂b"))["label"] == "· 1 (Σ to b's shape)"
    assert dot.edge(back["MatMul"], dot.find("∂l/∂w"))["label"] == "aᵀ · g"
    assert dot.nodes[back["Tanh"]]["shape"] == "cds"  # a gain op: the notes' op-amp
    assert dot.edge(forward["MSE"], "output") == {}


def test_layers_group_x_at_w_plus_b_by_module_name() -> None:
    w, b = gp.randn(3, 2, requires_grad=True), gp.zeros(2, requires_grad=True)
    v = gp.randn(2, 1, requires_grad=True)
    h = gp.dropout(gp.tanh(gp.randn(4, 3) @ w + b), 0.5)
    loss = (h @ v).sum()
    named = Dot(viz.to_dot(loss, params={"fc1.weight": w, "fc1.bias": b, "fc2.weight": v}))
    layer = named.find("fc1: MatMul → Add → Tanh → Dropout p=0.5")
    back = named.find("fc1: MatMul → Add → Tanh → Dropout p=0.5 backward")
    assert named.label(back).split("\n")[1:] == ["⊙ mask/(1 − 0.5)", "⊙ tanh′(z) = 1 − y²"]
    # To the weight the gradient also passes the Add: both steps, in backward order.
    assert named.edge(back, named.find("∂l/∂fc1.weight"))["label"] == "· 1 (Σ to a's shape);\naᵀ · g"
    assert named.edge(back, named.find("∂l/∂fc1.bias"))["label"] == "· 1 (Σ to b's shape)"
    assert named.find("fc2: MatMul") and layer
    # Unnamed, each op with parameters starts a layer of its own.
    unnamed = Dot(viz.to_dot(loss))
    assert unnamed.find("layer 1: MatMul") and unnamed.find("layer 2: Add → Tanh → Dropout p=0.5")
    assert unnamed.find("(3, 2) float32 cpu")  # an unnamed parameter shows its shape


def test_a_deep_chain_draws_without_recursion() -> None:
    x = gp.randn(3, requires_grad=True)
    y = x
    for _ in range(3000):
        y = y * 1.0
    dot = Dot(viz.to_dot(y.sum(), detail="ops"))
    assert len([n for n in dot.nodes if dot.label(n) == "Mul"]) == 3000


# -- values ----------------------------------------------------------------------------------------
def test_values_print_the_leaves_grad_and_the_gradient_at_each_op() -> None:
    gp.manual_seed(3)
    w = gp.randn(3, 2, requires_grad=True)
    x = gp.randn(2, 3)
    h = gp.sigmoid(x @ w)
    h.retain_grad()
    s = h * 3.0
    s.retain_grad()
    loss = s.mean()
    loss.backward(retain_graph=True)
    dot = Dot(viz.to_dot(loss, detail="ops", values=True, params={"w": w}))
    assert dot.label(dot.find("∂l/∂w")) == "∂l/∂w\n= " + viz._text(w.grad.numpy())
    # The gradient flowing into an op's backward is ∂l/∂ of its output: what retain_grad kept.
    assert dot.label(dot.find("Mul backward")).endswith("g = " + viz._text(s.grad.numpy()))
    assert dot.label(dot.find("Sigmoid backward")).endswith("g = " + viz._text(h.grad.numpy()))
    assert dot.label(dot.find("Mean backward")).endswith("g = 1")
    assert dot.label(dot.find("Sigmoid")) == "Sigmoid\n= " + viz._text(h.numpy())
    assert dot.label("output").endswith("= " + viz._text(loss.numpy()))
    assert dot.label(dot.find("(2, 3) float32 cpu")).endswith("= " + viz._text(x.numpy()))
    # Drawing accumulated nothing: a second backward doubles the gradient, as it should.
    before = w.grad.numpy().copy()
    loss.backward()
    np.testing.assert_allclose(w.grad.numpy(), 2 * before, rtol=1e-6)


def test_values_before_backward_show_no_leaf_gradient_yet() -> None:
    w = gp.randn(2, 2, requires_grad=True)
    loss = gp.sigmoid(gp.randn(3, 2) @ w).sum()
    dot = Dot(viz.to_dot(loss, detail="ops", values=True, params={"w": w}))
    assert dot.label(dot.find("∂l/∂w")) == "∂l/∂w\n= None (no backward yet)"
    assert "g = " in dot.label(dot.find("Sigmoid backward"))
    assert w.grad is None


def test_large_arrays_are_summarised() -> None:
    assert viz._text(np.arange(20.0)) == "mean 9.5, min 0, max 19"
    assert viz._text(np.array([[1.0, -2.0], [0.5, -0.0]])) == "[[1, -2],\n[0.5, 0]]"
    assert viz._text(np.float32(0.25)) == "0.25"


# -- neurons: the notes' figure --------------------------------------------------------------------
def _value(label: str) -> float:
    return float(label.split("= ")[-1])


def test_neurons_draw_the_notes_network_as_their_figure() -> None:
    loss, model = notes_step()
    dot = Dot(viz.to_dot(loss, detail="neurons", values=True, model=model))
    by_hand = notes_by_hand()
    units = [f"z{k}" for k in range(1, 7)]
    assert set(dot.forward()) == {"x1", "x2", *units, "loss"}
    # The reverse network: ∂l/∂z of every unit, an op-amp (a triangle pointing back) for
    # each sigmoid neuron z1 … z4, and the loss's backward.
    amps = [f"amp{k}" for k in range(1, 5)]
    assert {n for n in dot.nodes if n.startswith("amp")} == set(amps)
    assert all(dot.nodes[a]["shape"] == "triangle" and dot.nodes[a]["orientation"] == "90" for a in amps)
    assert {f"dz{k}" for k in range(1, 7)} <= set(dot.nodes)
    forward = [(t, h) for t, h, a in dot.edges if not t.startswith(("d", "amp"))]
    backward = [(t, h) for t, h, a in dot.edges if t.startswith(("d", "amp"))]
    assert len(forward) == 14 and len(backward) == 14
    # The op-amp of z3 sums w·∂l/∂z from z5 and z6, multiplies by σ′(z3) and gives ∂l/∂z3.
    assert {t for t, h in backward if h == "amp3"} == {"dz5", "dz6"}
    assert dot.edge("dz5", "amp3")["taillabel"] == "3" and dot.edge("dz6", "amp3")["taillabel"] == "-1"
    assert ("amp3", "dz3") in backward and ("dloss", "dz5") in backward
    for k in range(2):
        assert dot.label(f"amp{k + 1}").startswith(f"σ′(z{k + 1})\n= ")
        assert _value(dot.label(f"amp{k + 1}")) == pytest.approx(by_hand["gain1"][k], rel=1e-3)
        assert _value(dot.label(f"amp{k + 3}")) == pytest.approx(by_hand["gain2"][k], rel=1e-3)
        assert _value(dot.label(f"dz{k + 1}")) == pytest.approx(by_hand["d1"][k], rel=1e-3)
        assert _value(dot.label(f"dz{k + 3}")) == pytest.approx(by_hand["d2"][k], rel=1e-3)
        assert _value(dot.label(f"dz{k + 5}")) == pytest.approx(by_hand["d3"][k], rel=1e-3)
        z = dot.label(f"z{k + 3}").split("\n")[1]
        assert _value(z) == pytest.approx(by_hand["z2"][k], rel=1e-3)
    assert dot.label("z1") == "z1\nz = 4\na = 0.982"  # the notes' 0.98
    assert dot.label("dloss") == "∂l/∂l = 1\nCrossEntropy backward:\n(softmax − onehot)/N"
    # The parameters' gradients are their .grad: ∂l/∂W = δᵀ·a from the table.
    for index, module in enumerate("024"):
        weight, bias = model[int(module)].weight.grad, model[int(module)].bias.grad
        assert dot.label(f"dw{index}") == (
            f"∂l/∂{module}.weight = δᵀ · a\n{viz._text(weight.numpy())}\n"
            f"∂l/∂{module}.bias = Σ_rows δ\n{viz._text(bias.numpy())}"
        )
    np.testing.assert_allclose(model[0].bias.grad.numpy(), by_hand["d1"], rtol=1e-12)


def test_neurons_without_values_name_the_units_and_gains() -> None:
    loss, model = notes_step()
    dot = Dot(viz.to_dot(loss, detail="neurons", model=model))
    assert dot.label("amp4") == "σ′(z4)" and dot.label("dz4") == "∂l/∂z4" and dot.label("z4") == "z4"
    assert dot.label("gain0") == "gain ⊙ σ′(z) = s(1−s)"
    assert "taillabel" not in dot.edge("dz5", "amp3")


def test_neurons_take_a_sample_of_a_batch_and_dropout_joins_the_gain() -> None:
    gp.manual_seed(0)
    model = gp.nn.Sequential(gp.nn.Linear(3, 4), gp.nn.ReLU(), gp.nn.Dropout(0.5), gp.nn.Linear(4, 2))
    loss = gp.cross_entropy(model(gp.randn(5, 3)), [0, 1, 0, 1, 1])
    loss.backward(retain_graph=True)
    dot = Dot(viz.to_dot(loss, detail="neurons", values=True, sample=2, model=model))
    assert "(values of sample 2 of 5)" in dot.text
    assert dot.label("amp1").startswith("relu′(z1) · mask/(1 − 0.5)\n= ")
    assert dot.label("gain0") == "gain ⊙ relu′(z) = [y > 0]\n⊙ mask/(1 − 0.5)"
    with pytest.raises(ValueError, match="sample 5 is not a row of the batch of 5"):
        viz.to_dot(loss, detail="neurons", sample=5)


def test_neurons_refuse_what_is_not_a_small_mlp() -> None:
    wide = gp.nn.Sequential(gp.nn.Linear(2, 17))
    with pytest.raises(ValueError, match=r"at most 16 units.*Linear 2→17 has 17 units.*detail='layers'"):
        viz.to_dot(wide(gp.randn(1, 2)).sum(), detail="neurons")
    w = gp.randn(2, 2, requires_grad=True)
    with pytest.raises(ValueError, match="MatMul is not a Linear layer"):
        viz.to_dot((gp.randn(1, 2) @ w).sum(), detail="neurons")


# -- graphs without a tape, and after backward -----------------------------------------------------
def test_a_tensor_without_a_graph_is_one_node() -> None:
    constant = Dot(viz.to_dot(gp.ones(2, 3)))
    assert set(constant.nodes) == {"leaf0", "output"} and "backward" not in constant.text
    leaf = gp.ones(2, requires_grad=True)
    drawn = Dot(viz.to_dot(leaf, params={"w": leaf}))
    assert drawn.label("leaf0") == "w\n(2,) float32 cpu"
    assert drawn.edge("seed", "grad_leaf0")["label"] == "· 1"


def test_after_a_backward_that_freed_the_graph_to_dot_says_so() -> None:
    w = gp.randn(2, 2, requires_grad=True)
    loss = gp.sigmoid(gp.randn(3, 2) @ w).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match=r"freed by backward\(\) \(at Sum\).*retain_graph=True"):
        viz.to_dot(loss)


def test_values_after_an_optimizer_step_say_the_saved_values_changed() -> None:
    loss, model = notes_step()
    gp.optim.SGD(model.parameters(), lr=0.1).step()
    assert viz.to_dot(loss, model=model)  # the structure is still there
    with pytest.raises(RuntimeError, match="changed in place since \\(an optimizer step\\?\\)"):
        viz.to_dot(loss, model=model, values=True)


def test_an_in_place_change_draws_the_graph_backward_sees() -> None:
    x = gp.randn(3, requires_grad=True)
    y = x * 2
    z = gp.sigmoid(y)
    y += 1  # z's input is the y from before this
    loss = (z + y).sum()
    loss.backward(retain_graph=True)
    dot = Dot(viz.to_dot(loss, detail="ops", params={"x": x}))
    sigmoid, mul = dot.find("Sigmoid"), dot.find("Mul")
    assert (mul, sigmoid) in [(t, h) for t, h, _ in dot.edges]
    assert len([n for n in dot.nodes if dot.label(n) == "Mul"]) == 1


def test_backward_false_and_bad_options() -> None:
    loss, model = notes_step()
    dot = Dot(viz.to_dot(loss, backward=False, model=model))
    assert dot.reverse() == [] and "reverse" not in dot.text
    with pytest.raises(ValueError, match="detail must be one of layers, ops, neurons"):
        viz.to_dot(loss, detail="units")
    with pytest.raises(TypeError, match="expects a Tensor"):
        viz.to_dot(np.ones(2))  # type: ignore[arg-type]


# -- rendering -------------------------------------------------------------------------------------
@needs_graphviz
@pytest.mark.parametrize("detail", ["layers", "ops", "neurons"])
def test_draw_renders_svg_and_png(tmp_path: Path, detail: str) -> None:
    loss, model = notes_step("float32")
    svg = viz.draw(loss, tmp_path / "g.svg", detail=detail, values=True, model=model)
    text = svg.read_text()
    assert "<svg" in text and "∂l/∂" in text and "error" not in text.lower()
    assert viz.draw(loss, tmp_path / "g.png", detail=detail, model=model).read_bytes()[:4] == b"\x89PNG"


def test_draw_writes_dot_text_without_graphviz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "graphviz", None)  # makes `import graphviz` fail
    loss, model = notes_step()
    assert viz.draw(loss, tmp_path / "g.dot", model=model).read_text() == viz.to_dot(loss, model=model)
    assert "the graphviz Python package is not installed" in viz.unavailable_reason()
    with pytest.raises(viz.GraphvizNotFoundError, match=r'pip install -e "\.\[viz\]".*apt-get install graphviz'):
        viz.draw(loss, tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()
    with pytest.raises(ValueError, match=r"unknown suffix; use one of \.svg, \.png, \.pdf, \.dot, \.gv"):
        viz.draw(loss, tmp_path / "g.jpeg")


def test_a_missing_dot_program_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("graphviz")
    monkeypatch.setenv("PATH", "")
    assert "Graphviz's dot program was not found on PATH; install it" in viz.unavailable_reason()
    assert "apt-get install graphviz" in viz.unavailable_reason()
