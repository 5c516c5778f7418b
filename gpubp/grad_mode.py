"""Whether ops are recorded on the tape: ``no_grad`` switches recording off."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

# A plain module global: reading it costs one attribute lookup per op, which
# matters on the small-model hot path.
enabled = True


def is_grad_enabled() -> bool:
    """True when new ops are recorded for backward."""
    return enabled


class _GradMode:
    """Context manager and decorator that sets recording on or off."""

    def __init__(self, mode: bool) -> None:
        self.mode = mode
        self.previous: list[bool] = []

    def __enter__(self) -> None:
        global enabled
        self.previous.append(enabled)
        enabled = self.mode

    def __exit__(self, *exc: object) -> None:
        global enabled
        enabled = self.previous.pop()

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _GradMode(self.mode):
                return fn(*args, **kwargs)

        return wrapper


def no_grad() -> _GradMode:
    """``with gp.no_grad():`` runs ops without recording them (inference, updates)."""
    return _GradMode(False)


def enable_grad() -> _GradMode:
    """Re-enables recording inside a ``no_grad`` block."""
    return _GradMode(True)
