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
        for backend, entries in self._entries_by_backend().items():
            tensors = []
            for p, group in entries:
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = {}
                    if group["momentum"]:
                        state["momentum_buffer"] = _wrap(backend.xp.empty_like(p.data), backend)
                        self._unfilled.add(p)
                buffer = state.get("momentum_buffer")
                tensors.append((p.data, p.grad.data, None if buffer is None else buffer.data))
            backend.sgd_updates(tensors, lambda entries=entries: self._hypers(entries))
            self._updated(entries)

    def _hypers(self, entries: list[tuple[Tensor, dict]]) -> list[dict]:
        """sgd_update's keywords per parameter, read from the groups when the update
        is queued (at each replay of a captured step, so lr changes are honoured)."""
        out = []
        for p, group in entries:
            first_step = p in self._unfilled
            self._unfilled.discard(p)
            out.append(
                {
                    "lr": group["lr"],
                    "momentum": group["momentum"],
                    "dampening": group["dampening"],
                    "weight_decay": group["weight_decay"],
                    "nesterov": group["nesterov"],
                    "first_step": first_step,
                }
            )
        return out
