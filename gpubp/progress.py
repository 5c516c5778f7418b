"""Per-epoch progress bars: tqdm when it is installed, else a small built-in bar.

Both count samples, so the rate shown is samples per second. ``progress_bar``
returns a bar that draws nothing when ``enabled`` is false (output is not a
terminal), so callers never need to branch. ``plural`` words the counts the
command line prints ("1 epoch", "2 epochs").
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any


class Bar:
    """The interface the training loop uses; this base draws nothing."""

    draws = False  # whether the bar is shown (the loop reads the loss back only for one that is)

    def update(self, samples: int, loss: float | None = None) -> None:
        """``samples`` more samples are done; ``loss`` is the running mean to show."""

    def close(self) -> None:
        """Removes the bar (the epoch's summary line replaces it)."""


class _TqdmBar(Bar):
    draws = True

    def __init__(self, total: int, desc: str, initial: int, stream: IO[str]) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit="samples",
            unit_scale=True,
            leave=False,
            file=stream,
            dynamic_ncols=True,
        )

    def update(self, samples: int, loss: float | None = None) -> None:
        if loss is not None:
            self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        self._bar.update(samples)

    def close(self) -> None:
        self._bar.close()


class _TextBar(Bar):
    """A one-line bar redrawn in place with a carriage return, at most 10 times a second."""

    width = 30
    draws = True

    def __init__(self, total: int, desc: str, initial: int, stream: IO[str]) -> None:
        self.total = max(total, 1)
        self.desc = desc
        self.done = initial
        self.stream = stream
        self.start = time.perf_counter()
        self.counted = 0  # samples done in this session, for the rate
        self.last_draw = 0.0
        self.loss: float | None = None

    def update(self, samples: int, loss: float | None = None) -> None:
        self.done += samples
        self.counted += samples
        if loss is not None:
            self.loss = loss
        now = time.perf_counter()
        if now - self.last_draw >= 0.1 or self.done >= self.total:
            self.last_draw = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        fraction = min(self.done / self.total, 1.0)
        filled = int(fraction * self.width)
        rate = self.counted / max(now - self.start, 1e-9)
        loss = f" loss {self.loss:.4f}" if self.loss is not None else ""
        line = f"{self.desc} [{'#' * filled}{'.' * (self.width - filled)}] {fraction:4.0%}{loss} {rate:,.0f} samples/s"
        self.stream.write("\r" + line)
        self.stream.flush()

    def close(self) -> None:
        # Clears the line so the epoch summary starts at column 0.
        self.stream.write("\r\033[K")
        self.stream.flush()


def progress_bar(total: int, desc: str, initial: int = 0, enabled: bool = True, stream: IO[str] | None = None) -> Bar:
    """A bar over ``total`` samples starting at ``initial`` (a resumed epoch), drawn
    on ``stream`` (stderr by default): tqdm's when installed, else the built-in one."""
    if not enabled:
        return Bar()
    stream = stream or sys.stderr
    try:
        return _TqdmBar(total, desc, initial, stream)
    except ImportError:
        return _TextBar(total, desc, initial, stream)


def plural(count: int, noun: str, plural_form: str | None = None, thousands: bool = False) -> str:
    """ "1 epoch", "2 epochs", "0 epochs"; ``thousands`` groups digits ("60,000 samples")."""
    number = f"{count:,}" if thousands else str(count)
    return f"{number} {noun if count == 1 else plural_form or noun + 's'}"


def is_terminal(*streams: Any) -> bool:
    """True when every stream is an interactive terminal."""
    return all(hasattr(s, "isatty") and s.isatty() for s in streams)
