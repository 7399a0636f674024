"""A dependency-free progress bar for long offline jobs (backtests, sweeps).

Writes ``label [#####.....] 52% 1.2M/2.3M 3.1s eta 2.8s`` to a terminal stream, redrawn
at most every ``every_s`` seconds; silent when the stream is not a TTY unless ``force``.
Counts are whatever the caller measures (events, bars, runs).
"""
from __future__ import annotations

import sys
import time


def _human(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.1f}{unit}"
    return f"{n:.0f}"


class Progress:
    def __init__(self, total: int, label: str = "", stream=None, every_s: float = 0.2,
                 force: bool = False, width: int = 30):
        self.total, self.label, self.width, self.every_s = max(int(total), 0), label, width, every_s
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.enabled = force or bool(isatty())
        self.done = 0
        self.t0 = time.monotonic()
        self._last = 0.0

    def update(self, done: int) -> None:
        """Set the absolute count done (cheap when not redrawing)."""
        self.done = done
        if self.enabled:
            now = time.monotonic()
            if now - self._last >= self.every_s:
                self._last = now
                self._draw(now)

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def _draw(self, now: float) -> None:
        el = now - self.t0
        frac = min(self.done / self.total, 1.0) if self.total else 0.0
        fill = int(frac * self.width)
        eta = (el / frac - el) if frac > 0 else 0.0
        line = (f"\r{self.label} [{'#' * fill}{'.' * (self.width - fill)}] {frac * 100:3.0f}% "
                f"{_human(self.done)}/{_human(self.total)} {el:.1f}s eta {eta:.1f}s")
        self.stream.write(line)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
