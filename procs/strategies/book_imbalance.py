"""``BookImbalance``: mean reversion on the order-book imbalance at the touch (numba).

Per symbol, on each quote event with a valid book:

* ``imbalance = (bid_size - ask_size) / (bid_size + ask_size)`` in [-1, 1];
* ``signal = EMA_window(imbalance)`` (``procs.indicators.ma.ema_update``, TA-Lib seeding:
  the first ``window - 1`` quotes of a symbol return WARMING);
* fade the extremes: ``signal >= entry`` (bids pile up: expect the pressure to revert)
  -> target short; ``signal <= -entry`` -> target long; ``|signal| <= exit`` -> target flat;
  otherwise hold the current target;
* when the target changes, one intent moves there: a **limit order at the touch** (buy at
  the ask, sell at the bid: marketable now, never through the touch), time in force IOC,
  ``qty * |target - current|``, tag ``tag``.

The target is the strategy's intent, not a position (risk owns positions and limits).

Parameters: ``window`` (8), ``entry`` (0.5, in (0, 1]), ``exit`` (0.1, in [0, entry)),
``qty`` (100), ``tag`` (2).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from procs.indicators.ma import ema_init, ema_state_len, ema_update
from procs.strategy import BUY, SELL, TIF_IOC, WARMING, NumbaStrategy, emit

F_ENTRY, F_EXIT, F_QTY = 0, 1, 2
P_TAG = 0


@njit(cache=True)
def imbalance_on_quote(ev, state, out):
    ema, target, pf, pi = state
    s = ev.sym
    tot = ev.bid_size + ev.ask_size
    imb = (ev.bid_size - ev.ask_size) / tot if tot > 0.0 else 0.0
    sig = ema_update(ema[s], imb)
    if not np.isfinite(sig):
        return WARMING
    cur = target[s]
    if sig >= pf[F_ENTRY]:
        tgt = -1
    elif sig <= -pf[F_ENTRY]:
        tgt = 1
    elif abs(sig) <= pf[F_EXIT]:
        tgt = 0
    else:
        tgt = cur
    if tgt == cur:
        return 0
    target[s] = tgt
    d = tgt - cur
    if d > 0:
        return emit(out, 0, s, BUY, pf[F_QTY] * d, ev.ask, pi[P_TAG], TIF_IOC)
    return emit(out, 0, s, SELL, pf[F_QTY] * -d, ev.bid, pi[P_TAG], TIF_IOC)


@njit(cache=True)
def _init_rows(ema, window):
    for s in range(ema.shape[0]):
        ema_init(ema[s], window)


class BookImbalance(NumbaStrategy):
    """Mean reversion on the touch imbalance (see module doc)."""

    PARAMS = ("window", "entry", "exit", "qty", "tag")
    MAX_INTENTS = 1
    on_quote = imbalance_on_quote

    def __init__(self, ctx):
        super().__init__(ctx)
        window = ctx.int("window", 8, lo=1, hi=100_000)
        entry = ctx.float("entry", 0.5, lo=0.0, hi=1.0, lo_open=True)
        exit_ = ctx.float("exit", 0.1, lo=0.0)
        if exit_ >= entry:
            raise ValueError(f"{ctx.where('exit')}: must be < entry ({entry}), got {exit_}")
        qty = ctx.float("qty", 100.0, lo=0.0, lo_open=True)
        tag = ctx.int("tag", 2, lo=0, hi=2**32 - 1)
        n = len(ctx.symbols)
        self.ema = np.zeros((n, int(ema_state_len(window))))
        _init_rows(self.ema, window)
        self.target = np.zeros(n, np.int64)
        self.pf = np.array([entry, exit_, qty])
        self.pi = np.array([tag], np.int64)

    def make_state(self):
        return (self.ema, self.target, self.pf, self.pi)
