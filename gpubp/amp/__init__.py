"""Mixed precision's loss scaling: ``gp.amp.GradScaler`` (PyTorch's ``torch.amp.GradScaler``)."""

from gpubp.amp.grad_scaler import GradScaler

__all__ = ["GradScaler"]
