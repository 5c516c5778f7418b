import numpy as np

import gpubp as gp


def test_sigmoid_mlp_step_reduces_loss():
    gp.manual_seed(0)
    x = gp.randn(64, 5)
    labels = (x.numpy()[:, 0] > 0).astype(np.int64)
    model = gp.nn.Sequential(gp.nn.Linear(5, 16), gp.nn.Sigmoid(), gp.nn.Linear(16, 2))
    opt = gp.optim.SGD(model.parameters(), lr=0.5)
    first = gp.cross_entropy(model(x), labels).item()
    for _ in range(50):
        loss = gp.cross_entropy(model(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first * 0.8
