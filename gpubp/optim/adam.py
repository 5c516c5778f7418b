"""Adam and AdamW."""

from __future__ import annotations

from collections.abc import Iterable

from gpubp import capture
from gpubp.optim.optimizer import Optimizer
from gpubp.tensor import Tensor, _wrap


class Adam(Optimizer):
    """PyTorch's Adam: m = β₁m + (1 − β₁)g, v = β₂v + (1 − β₂)g², and
    p −= lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + eps). ``weight_decay`` adds the L2
    term to g (Adam) or shrinks p directly (AdamW). Stepped by a GradScaler, t is
    a device count (``state["step"]``, a 0-d float64 tensor) that skipped steps do
    not advance, and the bias corrections are worked out on the device."""

    decoupled = False
    _step_supports_amp_scaling = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {betas}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    def step(self) -> None:
        found_inf = self._found_inf()
        for backend, entries in self._entries_by_backend().items():
            tensors, steps = [], []
            for p, _ in entries:
                state = self.state.get(p)
                if state is None:
                    if capture.current is not None:
                        capture.current.cannot_replay(
                            f"{type(self).__name__}'s first step of a parameter (its state starts at zero once, "
                            "not at every replay); run a step before capturing, as gp.jit's warm-up calls do"
                        )
                    zeros = backend.xp.zeros_like
                    state = self.state[p] = {
                        "step": 0,
                        "exp_avg": _wrap(zeros(p.data), backend),
                        "exp_avg_sq": _wrap(zeros(p.data), backend),
                    }
                if self._steps_on_device and not isinstance(state["step"], Tensor):
                    state["step"] = self._device_count(backend, state["step"], "step count")
                tensors.append((p.data, p.grad.data, state["exp_avg"].data, state["exp_avg_sq"].data))
                steps.append(state["step"].data if self._steps_on_device else None)
            amp = {"found_inf": found_inf, "steps": steps} if self._steps_on_device else {}
            backend.adam_updates(tensors, lambda entries=entries: self._hypers(entries), **amp)
            self._updated(entries)

    def _loaded(self) -> None:
        """Loaded step counts (plain numbers) go back to the device when steps are counted there."""
        if self._steps_on_device:
            for p, state in self.state.items():
                if "step" in state and not isinstance(state["step"], Tensor):
                    state["step"] = self._device_count(p.backend, state["step"], "step count")

    def _hypers(self, entries: list[tuple[Tensor, dict]]) -> list[dict]:
        """adam_update's keywords per parameter, advancing each step count: called
        when the update is queued (at each replay of a captured step). A device
        count is the kernel's to read and advance: its step is None here."""
        out = []
        for p, group in entries:
            state = self.state[p]
            if isinstance(state["step"], Tensor):
                step = None
            else:
                state["step"] += 1
                step = state["step"]
            beta1, beta2 = group["betas"]
            out.append(
                {
                    "step": step,
                    "lr": group["lr"],
                    "beta1": beta1,
                    "beta2": beta2,
                    "eps": group["eps"],
                    "weight_decay": group["weight_decay"],
                    "decoupled": self.decoupled,
                }
            )
        return out


class AdamW(Adam):
    """Adam with decoupled weight decay: p ← p·(1 − lr·weight_decay) before the Adam step."""

    decoupled = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)
