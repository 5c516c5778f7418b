import numpy as np
import pytest

import gpubp as gp
from tests.opcheck import OpCase, away_from_zero, normal, op_tests
from tests.ops.test_activation import np_sigmoid

ACTIVATIONS = {None: lambda z: z, "sigmoid": np_sigmoid, "tanh": np.tanh, "relu": lambda z: np.maximum(z, 0)}


def case(activation: str | None, bias: bool = True, x_shape: tuple = (5, 3)) -> OpCase:
    ref = ACTIVATIONS[activation]
    inputs = [normal(*x_shape), normal(4, 3)] + ([normal(4)] if bias else [])
    if activation == "relu":  # keep pre-activations off the kink: a sparse weight with large entries
        inputs[0] = away_from_zero(*x_shape)
        inputs[1] = lambda rng: np.eye(4, 3) * 3
        inputs = inputs[:2] + ([lambda rng: rng.uniform(-0.5, 0.5, 4)] if bias else [])
    name = f"linear_{activation}_{'bias' if bias else 'nobias'}_{'x'.join(map(str, x_shape))}"
    return OpCase(
        name,
        lambda x, w, b=None: gp.linear(x, w, b, activation),
        lambda x, w, b=None: ref(x @ w.T + (0 if b is None else b)),
        inputs,
    )


CASES = [case(a) for a in ACTIVATIONS] + [case("sigmoid", bias=False), case("tanh", x_shape=(2, 5, 3))]


test_forward, test_gradient, test_against_torch = op_tests(CASES)


def test_fused_equals_unfused_for_sequential() -> None:
    layers = [gp.nn.Linear(3, 4), gp.nn.Sigmoid(), gp.nn.Linear(4, 2), gp.nn.Tanh()]
    model = gp.nn.Sequential(*layers)
    x = gp.randn(6, 3)
    fused = model(x)
    fused.sum().backward()
    fused_grads = [p.grad.numpy() for p in model.parameters()]
    model.zero_grad()
    unfused = x
    for layer in layers:
        unfused = layer(unfused)
    unfused.sum().backward()
    np.testing.assert_allclose(fused.numpy(), unfused.numpy(), rtol=1e-6)
    for a, p in zip(fused_grads, model.parameters()):
        np.testing.assert_allclose(a, p.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_wrong_feature_count_is_named() -> None:
    with pytest.raises(ValueError, match=r"input has 5 features .* expects 3"):
        gp.linear(gp.ones(2, 5), gp.ones(4, 3))


def test_unknown_activation() -> None:
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        gp.linear(gp.ones(2, 3), gp.ones(4, 3), activation="gelu")
