"""Hand calls from any thread to the asyncio loop thread: in order, one wake-up per burst.

``loop.call_soon_threadsafe`` writes to the loop's self-pipe on every call (~50 us under GIL
contention, measured in the fake's order path). ``Handoff.put`` appends to a queue and
schedules one drain only when none is pending, so a burst of quotes or trade updates costs
one wake-up.

Ordering contract: calls run in the loop thread in the order their ``put`` took the lock.
A caller that must order its calls with its own state changes calls ``put`` while holding
its own lock (the broker and the market do). A call that raises is counted
(``handoff_errors``) and does not stop the calls behind it.
"""
from __future__ import annotations

import collections
import threading


class Handoff:
    """A FIFO of ``(fn, args)`` drained in the loop thread; ``bind`` it to the running loop first."""

    def __init__(self, stats) -> None:
        self._stats = stats
        self._lock = threading.Lock()
        self._q: collections.deque = collections.deque()
        self._scheduled = False
        self._loop = None
        self._loop_thread: int | None = None

    def bind(self, loop) -> None:
        """Called in the loop thread once the loop runs; ``put`` before that drops (counted)."""
        self._loop, self._loop_thread = loop, threading.get_ident()

    def unbind(self) -> None:
        with self._lock:
            self._loop = None
            self._q.clear()

    def put(self, fn, *args) -> bool:
        """Queue ``fn(*args)`` for the loop thread; False (and counted) if the loop is gone."""
        with self._lock:
            loop = self._loop
            if loop is None:
                self._stats.inc("handoff_dropped")
                return False
            self._q.append((fn, args))
            if self._scheduled:
                return True
            self._scheduled = True
            try:
                if threading.get_ident() == self._loop_thread:
                    loop.call_soon(self._drain)
                else:
                    loop.call_soon_threadsafe(self._drain)
            except RuntimeError:               # the loop closed under us: shutting down
                self._scheduled = False
                self._q.clear()
                self._stats.inc("handoff_dropped")
                return False
            return True

    def _drain(self) -> None:
        with self._lock:
            items = list(self._q)
            self._q.clear()
            self._scheduled = False
        for fn, args in items:
            try:
                fn(*args)
            except Exception:                  # one bad call must not starve the rest
                self._stats.inc("handoff_errors")
