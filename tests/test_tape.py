"""The tape: order, fan-out, deep graphs, freeing, accumulation, in-place detection."""

import gc
import weakref

import numpy as np
import pytest

import gpubp as gp


def test_fan_out_sums_gradients() -> None:
    a = gp.tensor(3.0, requires_grad=True)
    b = a + a
    c = b + b
    c.backward()
    assert a.grad.item() == 4.0


def test_shared_value_with_two_consumers() -> None:
    # ∂l/∂a = w3·∂l/∂z′ + w4·∂l/∂z″ (the notes' example of a value feeding two neurons)
    a = gp.tensor(0.5, dtype="float64", requires_grad=True)
    z1, z2 = 2.0 * a, -3.0 * a
    loss = gp.sigmoid(z1) * 4.0 + gp.tanh(z2)
    loss.backward()
    s = 1 / (1 + np.exp(-1.0))
    expected = 4.0 * s * (1 - s) * 2.0 + (1 - np.tanh(-1.5) ** 2) * -3.0
    assert a.grad.item() == pytest.approx(expected, rel=1e-12)


def test_diamond_runs_each_node_once() -> None:
    x = gp.randn(3, dtype="float64", requires_grad=True)
    h = gp.sigmoid(x)
    y = (h * h + h.exp()).sum()
    assert gp.gradcheck(lambda t: (gp.sigmoid(t) * gp.sigmoid(t) + gp.sigmoid(t).exp()).sum(), [x])
    y.backward()
    s = 1 / (1 + np.exp(-x.numpy()))
    np.testing.assert_allclose(x.grad.numpy(), (2 * s + np.exp(s)) * s * (1 - s), rtol=1e-12)


def test_deep_chain_has_no_recursion_limit() -> None:
    x = gp.tensor(1.0, dtype="float64", requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.backward()
    assert x.grad.item() == pytest.approx(1.0001**5000, rel=1e-9)


def test_leaf_gradients_accumulate_across_backward_calls() -> None:
    x = gp.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3 + 2, 3 + 4])
    x.zero_grad()
    assert x.grad is None


def test_gradients_are_not_aliased_between_leaves() -> None:
    a = gp.ones(3, requires_grad=True)
    b = gp.ones(3, requires_grad=True)
    (a + b).sum().backward()
    a.grad.data *= 0  # changing one .grad in place must not change the other
    np.testing.assert_array_equal(b.grad.numpy(), 1)


def test_second_backward_without_retain_graph_raises() -> None:
    x = gp.randn(3, requires_grad=True)
    y = gp.sigmoid(x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()


def test_retain_graph_allows_second_backward() -> None:
    x = gp.randn(3, requires_grad=True)
    y = gp.sigmoid(x).sum()
    y.backward(retain_graph=True)
    first = x.grad.numpy()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first)


def test_saved_arrays_and_edges_released_after_backward() -> None:
    x = gp.randn(4, 3, requires_grad=True)
    h = gp.sigmoid(x)
    probe = weakref.ref(h)
    loss = (h * 2).sum()
    del h
    gc.collect()
    assert probe() is not None  # still needed by the graph
    loss.backward()
    gc.collect()
    assert probe() is None
    assert loss.grad_fn.inputs is None and loss.grad_fn.saved == ()


def test_inplace_change_of_saved_input_raises_naming_op() -> None:
    x = gp.randn(3, requires_grad=True)
    w = gp.randn(3)
    y = (x * w).sum()
    w += 1.0
    with pytest.raises(RuntimeError, match="Mul: a tensor this op saved for backward was modified in place"):
        y.backward()


def test_inplace_change_of_saved_output_raises() -> None:
    x = gp.randn(3, requires_grad=True)
    s = gp.sigmoid(x)
    loss = s.sum()
    with gp.no_grad():
        s *= 2.0
    with pytest.raises(RuntimeError, match="Sigmoid: a tensor this op saved"):
        loss.backward()


def test_inplace_through_a_view_is_detected() -> None:
    w = gp.randn(3, 2)
    x = gp.randn(4, 3, requires_grad=True)
    y = (x @ w).sum()
    w.T[0] = 5.0  # a view shares the version counter
    with pytest.raises(RuntimeError, match="MatMul"):
        y.backward()


def test_optimizer_step_before_backward_is_detected() -> None:
    layer = gp.nn.Linear(3, 2)
    opt = gp.optim.SGD(layer.parameters(), lr=0.1)
    loss = layer(gp.randn(4, 3)).sum()
    loss.backward(retain_graph=True)
    opt.step()
    with pytest.raises(RuntimeError, match="Linear: a tensor this op saved"):
        loss.backward()


def test_inplace_on_tensor_requiring_grad_is_refused() -> None:
    x = gp.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place operation on a tensor that requires grad"):
        x += 1


def test_no_grad_records_nothing() -> None:
    x = gp.randn(3, requires_grad=True)
    with gp.no_grad():
        assert not gp.is_grad_enabled()
        y = gp.sigmoid(x) * 2
    assert gp.is_grad_enabled()
    assert y.grad_fn is None and not y.requires_grad


def test_no_grad_as_decorator() -> None:
    @gp.no_grad()
    def f(t: gp.Tensor) -> gp.Tensor:
        return t * 2

    assert not f(gp.randn(2, requires_grad=True)).requires_grad


def test_only_needed_gradients_are_computed() -> None:
    x = gp.randn(4, 3)  # data: no gradient wanted
    w = gp.randn(2, 3, requires_grad=True)
    gp.linear(x, w, activation="sigmoid").sum().backward()
    assert x.grad is None and w.grad is not None


def test_backward_with_explicit_gradient() -> None:
    x = gp.randn(2, 3, requires_grad=True)
    y = x * 2
    y.backward(gp.ones(2, 3))
    np.testing.assert_array_equal(x.grad.numpy(), 2)


def test_backward_on_non_scalar_without_gradient_raises() -> None:
    y = gp.randn(2, 3, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"one-element tensor; this one has shape \(2, 3\)"):
        y.backward()


def test_backward_gradient_shape_and_dtype_checked() -> None:
    y = gp.randn(2, 3, requires_grad=True) * 2
    with pytest.raises(ValueError, match=r"gradient shape \(3,\) does not match tensor shape \(2, 3\)"):
        y.backward(gp.ones(3))
    with pytest.raises(TypeError, match="gradient dtype float64"):
        y.backward(gp.ones(2, 3, dtype="float64"))


def test_backward_on_tensor_without_grad_raises() -> None:
    with pytest.raises(RuntimeError, match="does not require grad"):
        gp.ones(1).backward()


def test_float32_stays_float32_through_a_network() -> None:
    model = gp.nn.Sequential(gp.nn.Linear(4, 8), gp.nn.Tanh(), gp.nn.Dropout(0.1), gp.nn.Linear(8, 3))
    loss = gp.cross_entropy(model(gp.randn(5, 4)), [0, 1, 2, 0, 1])
    loss.backward()
    assert loss.dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in model.parameters())
