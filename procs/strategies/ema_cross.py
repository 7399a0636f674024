"""``EmaCross``: fast/slow EMA crossover of the mid, per symbol (numba; the default strategy).

Why this strategy: it is the smallest real decision that exercises the whole order path
(intents, risk limits, fills, positions); it is not meant to make money.

Per symbol, on each quote event (``on_quote``: a valid top of book; trades are ignored):

* ``mid = (bid + ask) / 2``; ``ema += alpha * (mid - ema)`` with ``alpha = 2 / (n + 1)``
  for ``n`` = ``fast`` and ``slow``.
* **Seeding: both EMAs start at the first mid.** This minimal strategy seeds with the first
  value, unlike TA-Lib's convention (seed with the SMA of the first ``n`` values) that the
  indicator library (``procs.indicators``) follows; ``warmup`` quote events per symbol
  (default ``slow``) pass before it trades, which lets the seed decay. Warm-up events
  return ``WARMING`` (counted by the stage in ``warming``).
* A cross is the sign of ``fast - slow`` turning positive from <= 0 at the previous quote
  (-> BUY ``qty`` at market) or negative from >= 0 (-> SELL). The sign is tracked during
  warm-up, so the first trade is a real cross after it, not the end of warm-up.

Parameters: ``fast`` (8), ``slow`` (32, > fast), ``qty`` (100), ``warmup`` (= slow).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from procs.strategy import BUY, SELL, WARMING, NumbaStrategy, emit

F_ALPHA_FAST, F_ALPHA_SLOW, F_QTY = 0, 1, 2
P_WARMUP = 0


@njit(cache=True, inline="always")
def ema_update(ema, x, alpha):
    """One EMA step: ``ema + alpha * (x - ema)``."""
    return ema + alpha * (x - ema)


@njit(cache=True)
def ema_cross_on_quote(ev, state, out):
    fast, slow, count, sign, pf, pi = state
    s = ev.sym
    mid = 0.5 * (ev.bid + ev.ask)
    if count[s] == 0:
        fast[s] = mid
        slow[s] = mid
    else:
        fast[s] = ema_update(fast[s], mid, pf[F_ALPHA_FAST])
        slow[s] = ema_update(slow[s], mid, pf[F_ALPHA_SLOW])
    count[s] += 1
    d = fast[s] - slow[s]
    cur = 1 if d > 0.0 else (-1 if d < 0.0 else 0)
    prev = sign[s]
    sign[s] = cur
    if count[s] <= pi[P_WARMUP]:
        return WARMING
    if prev <= 0 and cur > 0:
        return emit(out, 0, s, BUY, pf[F_QTY])
    if prev >= 0 and cur < 0:
        return emit(out, 0, s, SELL, pf[F_QTY])
    return 0


class EmaCross(NumbaStrategy):
    """EMA crossover (see module doc). Params: fast, slow, qty, warmup."""

    PARAMS = ("fast", "slow", "qty", "warmup")
    MAX_INTENTS = 1
    on_quote = ema_cross_on_quote

    def __init__(self, ctx):
        super().__init__(ctx)
        fast = ctx.int("fast", 8, lo=1)
        slow = ctx.int("slow", 32, lo=2)
        if slow <= fast:
            raise ValueError(f"{ctx.where('slow')}: must be > fast ({fast}), got {slow}")
        qty = ctx.float("qty", 100.0, lo=0.0, lo_open=True)
        warmup = ctx.int("warmup", slow, lo=0)
        n = len(ctx.symbols)
        self.fast, self.slow = np.zeros(n), np.zeros(n)
        self.count = np.zeros(n, np.int64)
        self.sign = np.zeros(n, np.int64)
        self.pf = np.array([2.0 / (fast + 1), 2.0 / (slow + 1), qty])
        self.pi = np.array([warmup], np.int64)

    def make_state(self):
        return (self.fast, self.slow, self.count, self.sign, self.pf, self.pi)
