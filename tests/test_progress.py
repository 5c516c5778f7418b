"""Progress bars: the built-in fallback draws loss and samples/s; disabled bars draw nothing."""

from __future__ import annotations

import io

from gpubp.progress import Bar, _TextBar, progress_bar


def test_text_bar_shows_progress_loss_and_rate() -> None:
    stream = io.StringIO()
    bar = _TextBar(total=100, desc="epoch 1/3", initial=0, stream=stream)
    bar.update(50, loss=0.25)
    bar.update(50)
    bar.close()
    text = stream.getvalue()
    assert "epoch 1/3 [" in text and "100%" in text and "loss 0.2500" in text and "samples/s" in text
    assert text.endswith("\r\033[K")


def test_disabled_bar_draws_nothing() -> None:
    stream = io.StringIO()
    bar = progress_bar(10, "x", enabled=False, stream=stream)
    assert type(bar) is Bar
    bar.update(10, loss=1.0)
    bar.close()
    assert stream.getvalue() == ""
