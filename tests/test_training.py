"""End to end: sigmoid MLPs trained with backprop learn XOR and a small classification set;
the training loop's model building, memory check and stop on a non-finite loss."""

from pathlib import Path

import numpy as np
import pytest

import gpubp as gp
from gpubp import memory
from gpubp.data import Standardize, make_spirals
from gpubp.memory import estimate, format_bytes, format_count
from gpubp.training import ConfigError, NonFiniteLoss, Run, TrainConfig, build_model, check_memory


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


# -- the training loop (gpubp.training) ----------------------------------------------------------------------------


def test_build_model_gives_the_same_initial_weights_on_every_device(device: str) -> None:
    config = TrainConfig(hidden=(64, 32), activation="relu")
    gp.manual_seed(7)
    on_cpu = build_model(20, 5, config)
    gp.manual_seed(7)
    on_device = build_model(20, 5, config, device)
    assert all(p.device.startswith(device) for p in on_device.parameters())
    for (name, a), (_, b) in zip(on_cpu.state_dict().items(), on_device.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)


def test_memory_check_of_a_gpu_run_counts_the_device_and_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_spirals(train=100, test=50)
    config = TrainConfig(dataset="spirals", hidden=(1000, 1000))
    monkeypatch.setattr(memory, "host_available", lambda: 10**12)
    monkeypatch.setattr(memory, "device_available", lambda device: 10**12)
    check_memory(config, data, "cuda:0")  # fits
    monkeypatch.setattr(memory, "device_available", lambda device: 5_000_000)
    with pytest.raises(ConfigError, match=r"^training the MLP 2-1000-1000-3 \(1.0 M parameters\) needs about "):
        check_memory(config, data, "cuda:0")
    with pytest.raises(ConfigError, match=r"needs about \d+\.\d MB on cuda:1, which has 5.0 MB free; choose"):
        check_memory(config, data, "cuda:1")
    # The weights are drawn on the host one layer at a time: its largest layer must fit there.
    monkeypatch.setattr(memory, "host_available", lambda: 1_000_000)
    with pytest.raises(ConfigError, match=r"and 8.\d MB of host memory \(the weights are initialised there\)"):
        check_memory(config, data, "cuda:0")
    monkeypatch.setattr(memory, "device_available", lambda device: None)  # unknown: not checked
    monkeypatch.setattr(memory, "host_available", lambda: None)
    check_memory(config, data, "cuda:0")


def test_memory_estimate_counts_parameters_gradients_optimizer_state_activations_and_data() -> None:
    need = estimate([10, 20, 3], batch=8, eval_batch=4, data_rows=100, state_per_parameter=2)
    parameters = 10 * 20 + 20 + 20 * 3 + 3
    assert need.parameters == parameters == 283
    activations = 4 * 8 * (10 + 20 + 3)  # training copies × batch × widths
    data = 100 * (4 * 10 + 8)
    assert need.host == 4 * (4 * parameters + activations) + data + 4 * 200 and need.device == 0
    gpu = estimate([10, 20, 3], batch=8, eval_batch=4, data_rows=100, state_per_parameter=2, on_gpu=True)
    assert gpu.device == 4 * (4 * parameters + activations) + data and gpu.host == data + 8 * 200
    assert [format_bytes(n) for n in (999, 1000, 12_345_678, 3.6e11, 2.4e12)] == [
        "999 B",
        "1.0 kB",
        "12.3 MB",
        "360 GB",
        "2.4 TB",
    ]
    assert [format_count(n) for n in (999, 669_706, 79_500_000_000)] == ["999", "670 k", "79.5 G"]


def test_nan_in_the_data_stops_at_its_batch_without_saving(tmp_path: Path, device: str) -> None:
    """On the CPU every step is checked; on a GPU the check is read with the metrics
    (here at the epoch's end), and names the same first bad batch."""
    clean = make_spirals(train=200, test=50)
    x_train = clean.x_train.copy()
    x_train[57, 1] = np.nan
    data = type(clean)(**{**clean.__dict__, "x_train": x_train})
    config = TrainConfig(dataset="spirals", hidden=(16,), epochs=2, batch_size=32, device=device, seed=3)
    run = Run.create(config, data, tmp_path / "run")
    run.normalization = Standardize.fit(clean.x_train)  # only the one sample is NaN
    order = np.random.default_rng([3, 0]).permutation(200)
    batch = int(np.flatnonzero(order == 57)[0]) // 32 + 1
    with pytest.raises(NonFiniteLoss, match=rf"in epoch 1 at batch {batch} of 7, .*; no checkpoint was saved$"):
        run.fit(log=lambda _: None)
    assert not (tmp_path / "run").exists()
