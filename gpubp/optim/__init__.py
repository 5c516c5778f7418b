"""Optimizers with PyTorch's update formulas: ``gp.optim.SGD(model.parameters(), lr=0.1)``,
and their learning-rate schedules in ``gp.optim.lr_scheduler``."""

from gpubp.optim import lr_scheduler
from gpubp.optim.adam import Adam, AdamW
from gpubp.optim.optimizer import Optimizer
from gpubp.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]
