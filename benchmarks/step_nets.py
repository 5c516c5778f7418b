"""The training steps the GPU benchmark times (issue 10), one table for every contender.

Each net is a sigmoid MLP with a softmax cross-entropy head, trained on one fixed
batch (``benchmarks.mlp.make_batch``) from the same initial weights
(``benchmarks.mlp.init_params``). gpubp eager, gpubp jit, PyTorch eager and
PyTorch with the whole step in one CUDA graph all build from these entries.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.mlp import Config


@dataclass(frozen=True)
class StepNet:
    """A net and its optimizer: "sgd-momentum" (lr 0.01, momentum 0.9) or "adam"
    (lr 1e-3, PyTorch's defaults otherwise); ``dropout`` after every hidden layer."""

    config: Config
    optimizer: str
    dropout: float = 0.0

    @property
    def name(self) -> str:
        extras = [self.optimizer] + ([f"dropout {self.dropout:g}"] if self.dropout else [])
        return f"{'-'.join(map(str, self.config.sizes))}@{self.config.batch} ({', '.join(extras)})"

    @property
    def key(self) -> str:
        """A short key for JSON: ``784-512-256-10@128``."""
        return f"{'-'.join(map(str, self.config.sizes))}@{self.config.batch}"


SGD_LR = 0.01
SGD_MOMENTUM = 0.9
ADAM_LR = 1e-3

# The targets (issue 10) are stated on the second and third nets.
STEP_NETS = (
    StepNet(Config((64, 32, 10), 32), "sgd-momentum"),
    StepNet(Config((784, 256, 128, 10), 128), "sgd-momentum"),
    StepNet(Config((784, 512, 256, 10), 128), "adam", dropout=0.2),
    StepNet(Config((784, 1024, 1024, 10), 256), "sgd-momentum"),
)
