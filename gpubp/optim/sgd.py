"""Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay."""

from __future__ import annotations

from collections.abc import Iterable

from gpubp.optim.optimizer import Optimizer
from gpubp.tensor import Tensor, _wrap


class SGD(Optimizer):
    """PyTorch's SGD: d = g + weight_decay·p (the L2 term's gradient);
    with momentum, buf = momentum·buf + (1 − dampening)·d and d = buf
    (or d + momentum·buf with Nesterov); then p −= lr·d."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(
            params,
            {
                "lr": lr,
                "momentum": momentum,
                "dampening": dampening,
                "nesterov": nesterov,
                "weight_decay": weight_decay,
            },
        )
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening = 0")

    def step(self) -> None:
        for group, p in self._params_with_grad():
            momentum = group["momentum"]
            state = self.state.get(p)
            first_step = state is None
            if first_step:
                state = self.state[p] = {}
                if momentum:
                    state["momentum_buffer"] = _wrap(p.backend.xp.empty_like(p.data), p.backend)
            buffer = state.get("momentum_buffer")
            p.backend.sgd_update(
                p.data,
                p.grad.data,
                buffer.data if buffer is not None else None,
                lr=group["lr"],
                momentum=momentum,
                dampening=group["dampening"],
                weight_decay=group["weight_decay"],
                nesterov=group["nesterov"],
                first_step=first_step,
            )
            p.bump_version()
