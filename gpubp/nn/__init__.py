"""Layers and models, as torch.nn: ``gp.nn.Sequential(gp.nn.Linear(784, 256), gp.nn.Sigmoid(), ...)``;
``gp.nn.functional`` (``import gpubp.nn.functional as F``), ``gp.nn.utils`` (gradient clipping) and
``gp.nn.parallel`` (``DistributedDataParallel``)."""

from gpubp.nn import functional, init, parallel, utils
from gpubp.nn.activation import GELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from gpubp.nn.container import ModuleList
from gpubp.nn.dropout import Dropout
from gpubp.nn.flatten import Flatten
from gpubp.nn.linear import Identity, Linear
from gpubp.nn.loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, NLLLoss
from gpubp.nn.module import Module, Parameter
from gpubp.nn.sequential import Sequential

__all__ = [
    "functional",
    "init",
    "parallel",
    "utils",
    "Module",
    "Parameter",
    "Linear",
    "Identity",
    "Flatten",
    "Sequential",
    "ModuleList",
    "Sigmoid",
    "Tanh",
    "ReLU",
    "LeakyReLU",
    "GELU",
    "Softmax",
    "LogSoftmax",
    "Dropout",
    "CrossEntropyLoss",
    "NLLLoss",
    "MSELoss",
    "BCEWithLogitsLoss",
]
