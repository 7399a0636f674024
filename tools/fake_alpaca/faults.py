"""Fault-injection switches of the fake: what a real venue does on a bad day, on demand.

Two kinds of switch:

* **armed counts** (``malformed_md``, ``http_429``, ``http_500``, ``drop_after_accept``,
  ``reject_orders``): the next ``n`` occurrences are faulty; each server calls
  :meth:`Faults.take` once per occurrence, which consumes one atomically. Arming again
  replaces the count.
* **actions** (``drop_md_connections``, ``drop_trade_stream``): done at once in the
  servers' loop thread; the call returns when the connections have been aborted.

Settings (``stall_md``, ``replay_on_reconnect``) hold until changed. Every method may be
called from any thread; one lock guards the state.
"""
from __future__ import annotations

import math
import threading
import time


def _count(n, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"faults.{name}: n must be an int >= 0, got {n!r}")
    return n


def _seconds(s, name: str) -> float:
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s < 0:
        raise ValueError(f"faults.{name}: seconds must be finite and >= 0, got {s!r}")
    return float(s)


class Faults:
    """Fault switches; ``actions`` maps ``"drop_md"``/``"drop_stream"`` to the app's callables."""

    def __init__(self, actions: dict) -> None:
        self._lock = threading.Lock()
        self._actions = actions
        self._armed: dict[str, int] = {}
        self._stall_until = 0.0
        self._replay = 0
        self.http_429_reset_s = 1.0

    # -- public switches ----------------------------------------------------------------------
    def drop_md_connections(self) -> None:
        """Abort every market-data connection now (no CLOSE frame: the TCP connection drops)."""
        self._actions["drop_md"]()

    def stall_md(self, seconds: float) -> None:
        """Send no market data for ``seconds`` (control replies still flow; connections stay open).

        Data generated or published meanwhile is not queued: it is dropped and counted
        (``md_dropped_stall``), as a mute upstream would lose it. ``stall_md(0)`` ends a stall.
        """
        s = _seconds(seconds, "stall_md")
        with self._lock:
            self._stall_until = time.monotonic() + s

    def malformed_md(self, n: int) -> None:
        """The next ``n`` market-data frames sent are malformed, each inserted just before a
        data frame (which follows intact): kinds in turn not-JSON/msgpack, not an array,
        missing ``T``, wrong field types."""
        self._arm("malformed_md", _count(n, "malformed_md"))

    def replay_on_reconnect(self, n: int) -> None:
        """After a reconnect (a new connection authenticated on an endpoint that had one
        before) and its first subscribe, first re-send the last ``n`` data messages matching
        the new subscription, as a provider that replays would. 0 turns it off."""
        with self._lock:
            self._replay = _count(n, "replay_on_reconnect")

    def http_429(self, n: int, reset_s: float = 1) -> None:
        """The next ``n`` REST calls get 429, ``X-Ratelimit-Reset`` = now + ``reset_s``."""
        with self._lock:
            self.http_429_reset_s = _seconds(reset_s, "http_429")
        self._arm("http_429", _count(n, "http_429"))

    def http_500(self, n: int) -> None:
        """The next ``n`` REST calls get 500 ``{"code": 50010000, "message": ...}``."""
        self._arm("http_500", _count(n, "http_500"))

    def drop_after_accept(self, n: int) -> None:
        """The next ``n`` accepted ``POST /v2/orders`` create the order, then the connection
        is closed without a response (the client cannot know whether it was accepted)."""
        self._arm("drop_after_accept", _count(n, "drop_after_accept"))

    def reject_orders(self, n: int) -> None:
        """The next ``n`` orders pass validation (REST 200, status ``accepted``), then are
        rejected: a ``rejected`` trade update, status ``rejected``, never a fill."""
        self._arm("reject_orders", _count(n, "reject_orders"))

    def drop_trade_stream(self) -> None:
        """Abort every trading-stream connection now."""
        self._actions["drop_stream"]()

    # -- what the servers ask -----------------------------------------------------------------
    def _arm(self, name: str, n: int) -> None:
        with self._lock:
            self._armed[name] = n

    def take(self, name: str) -> bool:
        """Consume one armed occurrence of ``name``; True if this occurrence is faulty."""
        with self._lock:
            n = self._armed.get(name, 0)
            if n <= 0:
                return False
            self._armed[name] = n - 1
            return True

    def md_stalled(self) -> bool:
        with self._lock:
            return time.monotonic() < self._stall_until

    def replay_count(self) -> int:
        with self._lock:
            return self._replay
