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


def test_inplace_on_a_leaf_requiring_grad_is_refused() -> None:
    x = gp.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf tensor that requires grad is being used in an in-place operation"):
        x += 1
    with pytest.raises(RuntimeError, match="a view of a leaf tensor that requires grad"):
        x[1:] *= 2
    with pytest.raises(RuntimeError, match="a leaf tensor that requires grad"):
        x[0] = 1.0
    with gp.no_grad():  # updates (an optimizer's) stay possible
        x += 1
        x[0] = 5.0
    assert x.requires_grad and x.is_leaf and x.tolist()[0] == 5.0


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


# -- in-place changes are recorded (issue 11: they dropped gradients silently) ------------------
def zeros(lib, *shape):
    return lib.zeros(*shape, dtype=lib.float64)


def accumulate_into_zeros(lib, a, b, c):
    z = zeros(lib, 3)
    z += a * 2
    return (z * b).sum()


def assign_rows(lib, a, b, c):
    out = zeros(lib, 2, 3)
    out[0] = a
    out[1] = b * c
    return (out * out).sum()


def consumer_before_change(lib, a, b, c):
    y = a * 2
    z = y + 1  # uses y before the change: its gradient must not see c
    y += c
    return (z * b).sum() + (y * y).sum()


def sub_div_by_tensors(lib, a, b, c):
    y = a * 1
    y /= b
    y -= c
    return (y * y).sum()


def assign_number_into_region(lib, a, b, c):
    y = a * b
    y[1:] = 2.0
    y[0] = c[0]
    return (y * y).sum()


def index_augmented_assignment(lib, a, b, c):
    y = a * 2
    y[0] += c[1]
    y[1:] *= b[1:]
    return (y * y).sum()


def buffer_augmented_assignment(lib, a, b, c):
    buf = zeros(lib, 3)
    buf[1:] += a[:2] * c[1:]
    return (buf * b).sum()


def change_through_a_view(lib, a, b, c):
    y = a * 2
    v = y[1:]
    v += c[:2]
    return (y * b).sum() + (v * v).sum()


def view_taken_before_a_change_of_its_base(lib, a, b, c):
    y = a * 2
    v = y[0:2]
    y += c
    return (v * b[:2]).sum()


def view_taken_before_a_change_of_another_view(lib, a, b, c):
    y = a * 2
    v = y[0:2]
    w = y[1:]
    w *= c[1:]
    return (v * b[:2]).sum() + (y * y).sum()


def change_through_a_transpose(lib, a, b, c):
    y = a.reshape(3, 1) * b
    t = y.T
    t += c
    return (y * y).sum()


def change_through_a_reshape(lib, a, b, c):
    y = a.reshape(3, 1) * b
    r = y.reshape(-1)
    r *= 2
    return (y * y).sum() + r.sum()


def change_through_a_view_of_a_view(lib, a, b, c):
    m = a.reshape(3, 1) * b
    row = m[1]
    row[0] += c[0]
    return (m * m).sum() + (row * 5).sum()


def fill_and_zero(lib, a, b, c):
    y = a * b
    y[1:].zero_()
    z = a * c
    z.fill_(2.0)
    return (y * y).sum() + (z * a).sum()


def copy_into(lib, a, b, c):
    out = zeros(lib, 3)
    out.copy_(a * b)
    out += c
    return (out * out).sum()


def mixed_dtypes(lib, a, b, c):
    y = zeros(lib, 3).float()
    y += a  # float64 into float32: stored as float32, the gradient returns as float64
    y *= c.float()
    return (y.double() * b).sum()


INPLACE = [
    accumulate_into_zeros,
    assign_rows,
    consumer_before_change,
    sub_div_by_tensors,
    assign_number_into_region,
    index_augmented_assignment,
    buffer_augmented_assignment,
    change_through_a_view,
    view_taken_before_a_change_of_its_base,
    view_taken_before_a_change_of_another_view,
    change_through_a_transpose,
    change_through_a_reshape,
    change_through_a_view_of_a_view,
    fill_and_zero,
    copy_into,
    mixed_dtypes,
]


def _inputs(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.5, 2.0, 3) for _ in range(3)]


# mixed_dtypes computes in float32, too coarse for float64 finite differences: PyTorch checks it.
@pytest.mark.parametrize("fn", [f for f in INPLACE if f is not mixed_dtypes], ids=lambda f: f.__name__)
def test_inplace_changes_have_the_gradients_of_finite_differences(fn) -> None:
    tensors = [gp.tensor(a, dtype="float64", requires_grad=True) for a in _inputs()]
    report = gp.gradcheck(lambda *xs: fn(gp, *xs), tensors)
    assert report.ok and set(report.differences) == {0, 1, 2}


@pytest.mark.torch
@pytest.mark.parametrize("fn", INPLACE, ids=lambda f: f.__name__)
def test_inplace_changes_match_torch(fn) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed; the cross-check is optional")
    ours = [gp.tensor(a, dtype="float64", requires_grad=True) for a in _inputs()]
    theirs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in _inputs()]
    out, expected = fn(gp, *ours), fn(torch, *theirs)
    out.backward()
    expected.backward()
    assert out.item() == pytest.approx(expected.item(), rel=1e-12)
    for x, t in zip(ours, theirs):
        assert (x.grad is None) == (t.grad is None)
        if x.grad is not None:
            np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_augmented_assignment_into_zeros_regression() -> None:
    a = gp.tensor([1.0, 2.0], requires_grad=True)
    b = gp.tensor([3.0, 4.0])
    z = gp.zeros(2)
    z += a * 2
    (z * b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [6.0, 8.0])  # was None
    out = gp.zeros(2, 2)
    out[0] = a
    assert out.requires_grad and out.grad_fn is not None  # was a plain tensor
    (out * 3).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [9.0, 11.0])


def test_squaring_in_place_uses_the_old_values() -> None:
    # PyTorch refuses x *= x on a non-leaf (its Mul saved x); gpubp copies the old values first.
    a = gp.tensor([0.5, 1.5, 2.0], dtype="float64", requires_grad=True)

    def square(x: gp.Tensor) -> gp.Tensor:
        y = x * 1
        y *= y
        return (y * gp.arange(3.0).double()).sum()

    assert gp.gradcheck(square, [a])


def test_a_node_that_saved_the_changed_array_still_fails_loudly() -> None:
    a = gp.randn(3, requires_grad=True)
    y = a * 2
    z = y * y  # saves y's array
    y += 1
    with pytest.raises(RuntimeError, match="Mul: a tensor this op saved for backward was modified in place"):
        z.sum().backward()


def test_views_of_a_changed_tensor_see_the_change() -> None:
    a = gp.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = a * 1
    v = y[1:]
    y += 10
    assert v.tolist() == [12.0, 13.0]


def test_inplace_refuses_what_the_tensor_cannot_hold() -> None:
    a = gp.tensor([1.0, 2.0], requires_grad=True)
    counts = gp.zeros(2, dtype="int64")
    with pytest.raises(TypeError, match="float32 result cannot be stored in a int64 tensor"):
        counts += a
    y = a * 1
    with pytest.raises(ValueError, match=r"shape \(2, 2\) differs"):
        y += gp.ones(2, 2)


def test_inplace_under_no_grad_or_without_grads_is_not_recorded() -> None:
    a = gp.randn(3, requires_grad=True)
    y = a * 2
    with gp.no_grad():
        y += 1
    assert type(y.grad_fn).__name__ == "Mul"
    z = gp.zeros(3)
    z += gp.ones(3)
    assert z.grad_fn is None and not z.requires_grad


# -- hooks, retain_grad, zero_grad(set_to_none) ---------------------------------------------------------
def test_retain_grad_keeps_a_non_leafs_gradient_and_accumulates() -> None:
    x = gp.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    y.retain_grad()
    assert y.retains_grad and not x.retains_grad
    (y * y).sum().backward(retain_graph=True)
    np.testing.assert_array_equal(y.grad.numpy(), [6.0, 12.0])
    (y * y).sum().backward()
    np.testing.assert_array_equal(y.grad.numpy(), [12.0, 24.0])
    z = x * 2
    z.sum().backward()
    assert z.grad is None  # not retained


def test_hooks_see_and_may_replace_gradients_as_torch() -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed; the cross-check is optional")
    results = []
    for lib in (gp, torch):
        seen = []
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y = x * 3
        y.retain_grad()
        y.register_hook(lambda g, seen=seen: seen.append(("y", g.tolist())) or g * 2)
        x.register_hook(lambda g, seen=seen: seen.append(("x", g.tolist())))
        (y * y + x).sum().backward()
        results.append((seen, y.grad.tolist(), x.grad.tolist()))
    assert results[0] == results[1]


def test_a_leafs_hook_runs_once_on_the_summed_gradient() -> None:
    x = gp.tensor([1.0, 2.0], requires_grad=True)
    calls = []
    x.register_hook(lambda g: calls.append(g.tolist()) or g * 10)
    (x * 2 + x * 3).sum().backward()
    assert calls == [[5.0, 5.0]] and x.grad.tolist() == [50.0, 50.0]


def test_hook_handle_removes_the_hook() -> None:
    x = gp.tensor([1.0], requires_grad=True)
    y = x * 2
    calls = []
    handle = y.register_hook(calls.append)
    handle.remove()
    handle.remove()  # twice is fine
    y.sum().backward()
    assert calls == []


def test_hook_registered_before_an_inplace_change_sees_the_old_values_gradient() -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed; the cross-check is optional")
    results = []
    for lib in (gp, torch):
        seen = []
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y = x * 1
        y.register_hook(lambda g, seen=seen: seen.append(("before", g.tolist())))
        y *= 3
        y.register_hook(lambda g, seen=seen: seen.append(("after", g.tolist())))
        y.retain_grad()
        (y * y).sum().backward()
        results.append((sorted(seen), y.grad.tolist(), x.grad.tolist()))
    assert results[0] == results[1]


def test_hooks_are_checked() -> None:
    with pytest.raises(RuntimeError, match="does not require grad"):
        gp.ones(2).register_hook(lambda g: g)
    with pytest.raises(RuntimeError, match="does not require grad"):
        gp.ones(2).retain_grad()
    x = gp.ones(2, requires_grad=True)
    y = x * 2
    y.register_hook(lambda g: gp.ones(3))
    with pytest.raises(RuntimeError, match="hook returned"):
        y.sum().backward()


def test_post_accumulate_hooks_run_on_the_leaf_once_its_grad_holds_the_pass_as_torch() -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed; the cross-check is optional")
    results = []
    for lib in (gp, torch):
        seen = []
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        x.register_hook(lambda g: g * 10)
        x.register_post_accumulate_grad_hook(lambda leaf, seen=seen: seen.append(leaf.grad.tolist()))
        (x * 2 + x * 3).sum().backward()
        (x * 1).sum().backward()
        results.append((seen, x.grad.tolist()))
    assert results[0] == results[1] == ([[50.0, 50.0], [60.0, 60.0]], [60.0, 60.0])


def test_a_leafs_hooks_run_as_soon_as_its_last_gradient_is_summed() -> None:
    """Not at the end of the pass: DistributedDataParallel overlaps the rest of it."""
    w1 = gp.tensor([[1.0, 2.0]], requires_grad=True)
    w2 = gp.tensor([[3.0], [4.0]], requires_grad=True)
    x = gp.tensor([[1.0], [-1.0]])
    early = []
    w2.register_post_accumulate_grad_hook(lambda leaf: early.append(w1.grad is None))
    (gp.sigmoid(x @ w1) @ w2).sum().backward()  # w2's gradient is complete before w1's is computed
    assert early == [True] and w1.grad is not None


def test_post_accumulate_hooks_are_for_leaves_and_can_be_removed() -> None:
    x = gp.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="cannot be registered on non-leaf tensors"):
        (x * 2).register_post_accumulate_grad_hook(lambda leaf: None)
    with pytest.raises(RuntimeError, match="does not require grad"):
        gp.ones(1).register_post_accumulate_grad_hook(lambda leaf: None)
    calls = []
    handle = x.register_post_accumulate_grad_hook(calls.append)
    x.register_hook(lambda g: g * 2)
    handle.remove()
    (x * 3).sum().backward()
    assert calls == [] and x.grad.tolist() == [6.0]


def test_queued_callbacks_run_once_at_the_end_of_the_pass() -> None:
    from gpubp.tensor import queue_callback

    with pytest.raises(RuntimeError, match="only be called during a backward pass"):
        queue_callback(lambda: None)
    x = gp.tensor([1.0, 2.0], requires_grad=True)
    y = gp.tensor([3.0], requires_grad=True)
    order = []
    x.register_hook(lambda g: queue_callback(lambda: order.append(("end", y.grad.tolist()))))
    (x.sum() * y).sum().backward()
    assert order == [("end", [3.0])]  # after every gradient of the pass
    (x * 1).sum().backward()
    assert len(order) == 2  # queued again by the hook, run once more


def test_a_failed_pass_drops_its_queued_callbacks() -> None:
    from gpubp.tensor import queue_callback

    x = gp.tensor([1.0], requires_grad=True)
    calls = []
    hook = x.register_hook(lambda g: queue_callback(lambda: calls.append("end")) or gp.ones(3))
    with pytest.raises(RuntimeError, match="hook returned"):
        (x * 2).sum().backward()
    hook.remove()
    (x * 2).sum().backward()
    assert calls == []


def test_zero_grad_can_keep_the_gradient_tensor() -> None:
    x = gp.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    grad = x.grad
    x.zero_grad(set_to_none=False)
    assert x.grad is grad and grad.tolist() == [0.0, 0.0]
    (x * 3).sum().backward()
    assert x.grad is grad and grad.tolist() == [3.0, 3.0]
    x.zero_grad()
    assert x.grad is None
    x.zero_grad(set_to_none=False)  # no gradient yet: nothing to do
    assert x.grad is None
