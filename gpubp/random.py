"""Seeding and saving the random generators of every device."""

from __future__ import annotations

from gpubp import backends


def manual_seed(seed: int) -> None:
    """Seeds the generator of every device (now and ones first used later)."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    backends.set_seed(seed)


def get_rng_state(device: str = "cpu") -> dict:
    """The device generator's state as a JSON-serialisable dict."""
    return backends.get_backend(device).get_rng_state()


def set_rng_state(state: dict, device: str = "cpu") -> None:
    """Restores a state returned by ``get_rng_state``."""
    backends.get_backend(device).set_rng_state(state)
