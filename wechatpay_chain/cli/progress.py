"""A progress line for a transfer on standard error, redrawn in place on a terminal."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["ProgressBar", "human_size"]

_UNITS = (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))


def _unit(size: float) -> tuple[str, int]:
    for name, scale in _UNITS:
        if size >= scale:
            return name, scale
    return "bytes", 1


def _amount(value: float, unit: tuple[str, int]) -> str:
    scale = unit[1]
    return f"{value:,.0f}" if scale == 1 else f"{value / scale:,.1f}"


def human_size(size: float) -> str:
    """``900 bytes``, ``12.3 KiB``, ``4.0 MiB``: the unit follows the size."""
    unit = _unit(size)
    return f"{_amount(size, unit)} {unit[0]}"


class ProgressBar:
    """``on_progress`` for a download: on a terminal, one line redrawn in place at most ten
    times a second; elsewhere (a pipe, a log) only the final state, written by :meth:`finish`.

    A command that fails calls :meth:`abandon`, which erases the line, so that the error
    message is not printed after a half-drawn bar.
    """

    def __init__(
        self, stream: TextIO, *, width: int = 30, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._stream = stream
        self._width = width
        self._clock = clock
        self._live = stream.isatty()
        self._started = clock()
        self._drawn_at: float | None = None
        self._shown = 0  # the length of the line on screen, to erase or overwrite it
        self._state: tuple[int, int | None] = (0, None)

    def __call__(self, done: int, total: int | None) -> None:
        self._state = (done, total)
        now = self._clock()
        if self._live and (self._drawn_at is None or now - self._drawn_at >= 0.1):
            self._drawn_at = now
            self._draw("")

    def finish(self) -> None:
        """The final state, and the end of the line."""
        self._draw("\n")
        self._shown = 0

    def abandon(self) -> None:
        """Erase the line from a terminal (and write nothing elsewhere)."""
        if self._shown:
            self._stream.write("\r" + " " * self._shown + "\r")
            self._stream.flush()
            self._shown = 0

    def text(self) -> str:
        """The current state: a bar, a percentage and sizes when the total is known and not
        zero; the bytes received so far otherwise. Then the rate."""
        done, total = self._state
        elapsed = max(self._clock() - self._started, 1e-6)
        rate = f"{human_size(done / elapsed)}/s"
        if not total:
            return f"{human_size(done)}  {rate}"
        filled = max(0, min(self._width, self._width * done // total))
        bar = "#" * filled + "-" * (self._width - filled)
        unit = _unit(total)
        sizes = f"{_amount(done, unit)} of {_amount(total, unit)} {unit[0]}"
        return f"[{bar}] {done / total:6.1%}  {sizes}  {rate}"

    def _draw(self, end: str) -> None:
        text = self.text()
        # A shorter line than the one on screen is padded over the old one's tail.
        padding = " " * max(0, self._shown - len(text))
        start = "\r" if self._live else ""
        self._stream.write(f"{start}{text}{padding}{end}")
        self._stream.flush()
        self._shown = len(text) + len(padding)
