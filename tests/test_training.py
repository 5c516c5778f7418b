"""End to end: sigmoid MLPs trained with backprop learn XOR and a small classification set."""

import numpy as np

import gpubp as gp


def test_sigmoid_mlp_learns_xor() -> None:
    gp.manual_seed(0)
    x = gp.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    labels = np.array([0, 1, 1, 0])
    model = gp.nn.Sequential(gp.nn.Linear(2, 8), gp.nn.Sigmoid(), gp.nn.Linear(8, 2))
    opt = gp.optim.SGD(model.parameters(), lr=2.0, momentum=0.9)
    for _ in range(300):
        loss = gp.cross_entropy(model(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (model(x).argmax(axis=1).numpy() == labels).all()
    assert loss.item() < 0.05


def spirals(n_per_class: int, classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    points, labels = [], []
    for c in range(classes):
        r = np.linspace(0.1, 1.0, n_per_class)
        theta = c * 2 * np.pi / classes + r * 3 + rng.normal(0, 0.1, n_per_class)
        points.append(np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1))
        labels.append(np.full(n_per_class, c))
    return np.concatenate(points).astype(np.float32), np.concatenate(labels)


def test_sigmoid_mlp_with_l2_and_dropout_classifies_spirals() -> None:
    gp.manual_seed(1)
    rng = np.random.default_rng(1)
    x_np, labels = spirals(100, 3, rng)
    x = gp.tensor(x_np)
    model = gp.nn.Sequential(
        gp.nn.Linear(2, 64),
        gp.nn.Sigmoid(),
        gp.nn.Dropout(0.05),
        gp.nn.Linear(64, 64),
        gp.nn.Sigmoid(),
        gp.nn.Linear(64, 3),
    )
    opt = gp.optim.Adam(model.parameters(), lr=0.02, weight_decay=1e-5)
    for _ in range(600):
        loss = gp.cross_entropy(model(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with gp.no_grad():
        accuracy = (model(x).argmax(axis=1).numpy() == labels).mean()
    assert accuracy > 0.95, accuracy
