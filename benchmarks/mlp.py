"""The benchmarked networks: sigmoid MLPs with a softmax cross-entropy head.

Every contender (gpubp, PyTorch, the hand-written NumPy step, the GEMM floor)
builds its network from the same ``init_params`` and trains on the same
``make_batch``, so they start from identical weights and data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEARNING_RATE = 0.1
DTYPE = np.float32


@dataclass(frozen=True)
class Config:
    """Layer widths (input first, classes last) and the batch size."""

    sizes: tuple[int, ...]
    batch: int

    @property
    def name(self) -> str:
        """``784-1024-1024-10:256``: the form ``parse_config`` reads back."""
        return "-".join(map(str, self.sizes)) + f":{self.batch}"

    @property
    def layers(self) -> list[tuple[int, int]]:
        """(in, out) of each Linear layer."""
        return list(zip(self.sizes[:-1], self.sizes[1:]))

    def gemm_flops(self) -> int:
        """Floating-point operations of the matrix products one training step must do:
        forward x·Wᵀ and backward dW = δᵀa for every layer, dX = δW for every
        layer but the first (nobody needs the gradient of the input batch).
        Elementwise work (bias, sigmoid, softmax, update) is not counted."""
        products = 0
        for i, (n_in, n_out) in enumerate(self.layers):
            products += (3 if i > 0 else 2) * n_in * n_out
        return 2 * self.batch * products

    def param_count(self) -> int:
        return sum(n_in * n_out + n_out for n_in, n_out in self.layers)


# The four configurations, from overhead-bound to GEMM-bound.
CONFIGS = {
    "tiny": Config((64, 32, 10), 32),
    "small": Config((784, 256, 128, 10), 128),
    "medium": Config((784, 1024, 1024, 10), 256),
    "large": Config((4096, 4096, 4096, 4096, 10), 512),
}


def parse_config(text: str) -> Config:
    """A config from its alias (``medium``), its full name (``784-1024-1024-10:256``),
    or its widths alone when they match a default config (``784-1024-1024-10``)."""
    if text in CONFIGS:
        return CONFIGS[text]
    widths, _, batch = text.partition(":")
    try:
        sizes = tuple(int(n) for n in widths.split("-"))
        if len(sizes) < 2 or min(sizes) <= 0:
            raise ValueError
    except ValueError:
        raise ValueError(f"bad config {text!r}: expected an alias {sorted(CONFIGS)} or WIDTHS:BATCH") from None
    if batch:
        return Config(sizes, int(batch))
    for config in CONFIGS.values():
        if config.sizes == sizes:
            return config
    raise ValueError(f"config {text!r} has no default batch size; write it as {widths}:BATCH")


Params = list[tuple[np.ndarray, np.ndarray]]  # (weight (out, in), bias (out,)) per layer


def init_params(config: Config, seed: int = 0) -> Params:
    """(weight (out, in), bias (out,)) per layer, float32: Xavier-uniform weights
    (what gpubp's Linear uses for sigmoid nets) and small nonzero biases."""
    rng = np.random.default_rng(seed)
    params = []
    for n_in, n_out in config.layers:
        bound = np.sqrt(6.0 / (n_in + n_out))
        weight = rng.uniform(-bound, bound, (n_out, n_in)).astype(DTYPE)
        bias = rng.uniform(-0.1, 0.1, n_out).astype(DTYPE)
        params.append((weight, bias))
    return params


def make_batch(config: Config, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Inputs in [0, 1) (like scaled pixels), float32, and int64 class labels."""
    rng = np.random.default_rng(seed)
    x = rng.random((config.batch, config.sizes[0]), dtype=DTYPE)
    labels = rng.integers(0, config.sizes[-1], config.batch, dtype=np.int64)
    return x, labels
