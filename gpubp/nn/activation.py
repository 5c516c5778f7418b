"""Activation layers. ``fused`` names the activation that Sequential folds into a
preceding Linear, so Linear + Sigmoid runs as one fused op."""

from __future__ import annotations

from gpubp.nn.module import Module
from gpubp.ops import activation
from gpubp.tensor import Tensor


class Sigmoid(Module):
    fused = "sigmoid"

    def forward(self, x: Tensor) -> Tensor:
        return activation.sigmoid(x)


class Tanh(Module):
    fused = "tanh"

    def forward(self, x: Tensor) -> Tensor:
        return activation.tanh(x)


class ReLU(Module):
    fused = "relu"

    def forward(self, x: Tensor) -> Tensor:
        return activation.relu(x)


class Softmax(Module):
    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: Tensor) -> Tensor:
        return activation.softmax(x, self.axis)


class LogSoftmax(Module):
    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: Tensor) -> Tensor:
        return activation.log_softmax(x, self.axis)
