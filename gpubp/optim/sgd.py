"""Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay."""

from __future__ import annotations

from collections.abc import Iterable

from gpubp.optim.optimizer import Optimizer
from gpubp.tensor import Tensor, _wrap


class SGD(Optimizer):
    """PyTorch's SGD: d = g + weight_decay·p (the L2 term's gradient);
    with momentum, buf = momentum·buf + (1 − dampening)·d and d = buf
    (or d + momentum·buf with Nesterov); then p −= lr·d. The momentum buffer's
    first step sets buf = d; with a GradScaler, whose skipped steps only the device
    knows of, that first step is the first one the device did not skip."""

    _step_supports_amp_scaling = True

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
        # Per parameter with a momentum buffer, once steps are counted on the device:
        # the updates the buffer has had (0: it holds nothing yet), a 0-d float64 tensor.
        self._fills: dict[Tensor, Tensor] = {}

    def step(self) -> None:
        found_inf = self._found_inf()
        for backend, entries in self._entries_by_backend().items():
            tensors, fills = [], []
            for p, group in entries:
                state = self.state.setdefault(p, {})
                if group["momentum"] and state.get("momentum_buffer") is None:
                    state["momentum_buffer"] = _wrap(backend.xp.empty_like(p.data), backend)
                    self._unfilled.add(p)
                    self._fills.pop(p, None)
                buffer = state.get("momentum_buffer")
                tensors.append((p.data, p.grad.data, None if buffer is None else buffer.data))
                fills.append(None if buffer is None or not self._steps_on_device else self._fill_count(p).data)
            amp = {"found_inf": found_inf, "steps": fills} if self._steps_on_device else {}
            backend.sgd_updates(tensors, lambda entries=entries: self._hypers(entries), **amp)
            self._updated(entries)

    def _fill_count(self, p: Tensor) -> Tensor:
        """p's device count of momentum-buffer updates, made from the host's knowledge
        the first time it is needed (afterwards only the device knows)."""
        count = self._fills.get(p)
        if count is None:
            count = self._fills[p] = self._device_count(p.backend, 0 if p in self._unfilled else 1, "momentum buffer")
            self._unfilled.discard(p)
        return count

    def _loaded(self) -> None:
        """Counts of the loaded buffers on the device, when steps are counted there:
        a saved buffer has been filled; a parameter saved without one (its steps so
        far were skipped) gets an empty buffer counted 0."""
        self._fills = {}
        if not self._steps_on_device:
            return
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                if state is None:
                    continue
                if group["momentum"] and state.get("momentum_buffer") is None:
                    state["momentum_buffer"] = _wrap(p.backend.xp.empty_like(p.data), p.backend)
                    self._unfilled.add(p)
                if state.get("momentum_buffer") is not None:
                    self._fill_count(p)

    def _saved_state(self, p: Tensor) -> dict:
        """As the base's, with a buffer that holds nothing yet saved as None (PyTorch's
        state before a buffer's first step)."""
        saved = super()._saved_state(p)
        if "momentum_buffer" in saved:
            count = self._fills.get(p)
            if p in self._unfilled or (count is not None and count.item() == 0):
                saved["momentum_buffer"] = None
        return saved

    def _hypers(self, entries: list[tuple[Tensor, dict]]) -> list[dict]:
        """sgd_update's keywords per parameter, read from the groups when the update
        is queued (at each replay of a captured step, so lr changes are honoured).
        first_step is None where the device counts the buffer's updates."""
        out = []
        for p, group in entries:
            first_step = None if p in self._fills else p in self._unfilled
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
