"""Layers and models: ``gp.nn.Sequential(gp.nn.Linear(784, 256), gp.nn.Sigmoid(), ...)``."""

from gpubp.nn import init
from gpubp.nn.activation import LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from gpubp.nn.dropout import Dropout
from gpubp.nn.linear import Linear
from gpubp.nn.loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from gpubp.nn.module import Module, Parameter
from gpubp.nn.sequential import Sequential

__all__ = [
    "init",
    "Module",
    "Parameter",
    "Linear",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "ReLU",
    "Softmax",
    "LogSoftmax",
    "Dropout",
    "CrossEntropyLoss",
    "MSELoss",
    "BCEWithLogitsLoss",
]
