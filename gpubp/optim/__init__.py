"""Optimizers with PyTorch's update formulas: ``gp.optim.SGD(model.parameters(), lr=0.1)``."""

from gpubp.optim.adam import Adam, AdamW
from gpubp.optim.optimizer import Optimizer
from gpubp.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]
