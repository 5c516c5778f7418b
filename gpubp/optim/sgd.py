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
        for group in self.param_groups:
            lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
            weight_decay, nesterov = group["weight_decay"], group["nesterov"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.get(p)
                first_step = state is None
                if first_step:
                    state = self.state[p] = {}
                    if momentum:
                        state["momentum_buffer"] = _wrap(p._backend.xp.empty_like(p.data), p._backend)
                buffer = state.get("momentum_buffer")
                p._backend.sgd_update(
                    p.data,
                    p.grad.data,
                    None if buffer is None else buffer.data,
                    lr=lr,
                    momentum=momentum,
                    dampening=dampening,
                    weight_decay=weight_decay,
                    nesterov=nesterov,
                    first_step=first_step,
                )
                p.bump_version()  # backward through a graph that saved p must now fail
