"""Counters of the fake: what it sent, refused, dropped and injected.

Written from three kinds of thread (the asyncio loop, HTTP handler threads, the caller's
thread publishing quotes); one lock makes each increment atomic. ``snapshot()`` returns a
consistent copy: every counter as of one instant.
"""
from __future__ import annotations

import threading
from collections import Counter


class Stats:
    """Named integer counters, thread-safe. Unknown names start at 0."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._c: Counter[str] = Counter()

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._c[name] += n

    def add(self, counts: dict[str, int]) -> None:
        """Several increments under one lock acquisition."""
        with self._lock:
            self._c.update(counts)

    def get(self, name: str) -> int:
        with self._lock:
            return self._c[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._c)
