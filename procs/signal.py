"""``EmaCrossSignal``: a fast/slow EMA crossover of the mid, per symbol (the default strategy).

Why this strategy: it is the smallest real decision that exercises the whole order path
(intents, risk limits, fills, positions); it is not meant to make money.

Per symbol, on each *valid quote* event (a trade event leaves the mid unchanged, and an
event before both sides are known has no mid; both are consumed and counted in
``events_in`` only):

* ``mid = (bid + ask) / 2``; ``ema += alpha * (mid - ema)`` with ``alpha = 2 / (n + 1)``
  for ``n`` = ``fast`` and ``slow``.
* **Seeding: both EMAs start at the first mid.** This minimal strategy seeds with the first
  value, unlike TA-Lib's convention (seed with the SMA of the first ``n`` values) that the
  indicator library follows; ``warmup`` quote events per symbol (default ``slow``) pass
  before it trades, which lets the seed decay. Warm-up events are counted in ``warming``.
* A cross is the sign of ``fast - slow`` turning positive from <= 0 at the previous quote
  (``crosses_up`` -> INTENT BUY ``qty`` at market) or negative from >= 0
  (``crosses_down`` -> SELL). The sign is tracked during warm-up, so the first trade is a
  real cross after it, not the end of warm-up.

Intents carry ``seq`` (gap-free from 0), the event's ``feed_ns``, ``sent_ns`` (publish
time), ``ref_px`` = mid, ``tif`` DAY. Histogram ``latency`` records ``now - sent_ns`` of
every event consumed. Backpressure: one event produces at most one intent, so the step
claims output slots for the events it can see and consumes no more events than it has slots.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from layouts.market import TICK_QUOTE
from layouts.orders import BUY, ORDER_MARKET, SELL, TIF_DAY
from layouts.ring import IDX_HEAD
from pyrt_shm.hdr_recorder import hdr_record
from pyrt_shm.stage import Stage
from ringbuf import spsc
from ringbuf._atomics import monotonic_ns

from . import check_keys, float_param, int_param, publish, twin

C_EVENTS_IN, C_INTENTS_OUT, C_CROSSES_UP, C_CROSSES_DOWN, C_WARMING = 0, 1, 2, 3, 4
P_WARMUP, P_BATCH = 0, 1
F_ALPHA_FAST, F_ALPHA_SLOW, F_QTY = 0, 1, 2
S_NEXT_SEQ = 0


@njit(cache=True, inline="always")
def ema_update(ema, x, alpha):
    """One EMA step: ``ema + alpha * (x - ema)``."""
    return ema + alpha * (x - ema)


@njit(cache=True)
def signal_step(in_ctl, in_recs, out_ctl, out_recs, hists, h_lat, counters,
                fast, slow, count, sign, st, pi, pf):
    """Consume up to ``batch`` book events; return the number consumed."""
    avail = np.int64(spsc.poll(in_ctl, pi[P_BATCH]))
    if avail == 0:
        return 0
    k = np.int64(spsc.claim(out_ctl, avail))
    if k == 0:
        return 0
    now = monotonic_ns()
    af, aslow, qty, warmup = pf[F_ALPHA_FAST], pf[F_ALPHA_SLOW], pf[F_QTY], pi[P_WARMUP]
    nsym = fast.shape[0]
    rd, wr = spsc.tail_of(in_ctl), spsc.head_of(out_ctl)
    n_out = 0
    for j in range(k):
        e = in_recs[spsc.slot(in_ctl, rd + np.uint64(j))]
        hdr_record(hists, h_lat, now - e.sent_ns)
        s = e.sym
        if e.kind != TICK_QUOTE or e.valid == 0 or s >= nsym:
            continue
        mid = 0.5 * (e.bid + e.ask)
        if count[s] == 0:
            fast[s] = mid
            slow[s] = mid
        else:
            fast[s] = ema_update(fast[s], mid, af)
            slow[s] = ema_update(slow[s], mid, aslow)
        count[s] += 1
        d = fast[s] - slow[s]
        cur = 1 if d > 0.0 else (-1 if d < 0.0 else 0)
        prev = sign[s]
        sign[s] = cur
        if count[s] <= warmup:
            counters[C_WARMING] += np.uint64(1)
            continue
        if prev <= 0 and cur > 0:
            side = BUY
            counters[C_CROSSES_UP] += np.uint64(1)
        elif prev >= 0 and cur < 0:
            side = SELL
            counters[C_CROSSES_DOWN] += np.uint64(1)
        else:
            continue
        o = out_recs[spsc.slot(out_ctl, wr + np.uint64(n_out))]
        o.seq = st[S_NEXT_SEQ]
        st[S_NEXT_SEQ] += 1
        o.feed_ns = e.feed_ns
        o.sym = s
        o.side = side
        o.order_type = ORDER_MARKET
        o.tif = TIF_DAY
        o.qty = qty
        o.limit_px = 0.0
        o.ref_px = mid
        o.tag = 0
        n_out += 1
    spsc.release(in_ctl, k)
    publish(out_ctl, out_recs, n_out)
    counters[C_EVENTS_IN] += np.uint64(k)
    counters[C_INTENTS_OUT] += np.uint64(n_out)
    return k


class EmaCrossSignal(Stage):
    """EMA crossover of the mid (see module doc). Params: fast, slow, qty, warmup, batch."""

    INPUTS = ("top",)
    OUTPUTS = ("intent",)
    HISTOGRAMS = ("latency",)
    COUNTERS = ("events_in", "intents_out", "crosses_up", "crosses_down", "warming")
    PARAMS = ("fast", "slow", "qty", "warmup", "batch")

    def __init__(self, ctx):
        super().__init__(ctx)
        check_keys(ctx, self.PARAMS)
        fast = int_param(ctx, "fast", 8, lo=1)
        slow = int_param(ctx, "slow", 32, lo=2)
        if slow <= fast:
            raise ValueError(f"stages.{ctx.name}.params.slow: must be > fast ({fast}), got {slow}")
        qty = float_param(ctx, "qty", 100.0, lo=0.0, lo_open=True)
        warmup = int_param(ctx, "warmup", slow, lo=0)
        batch = int_param(ctx, "batch", 256, lo=1)
        self.inp, self.out = ctx.input("top"), ctx.output("intent")
        self.h_lat = ctx.hist("latency")
        n = len(ctx.symbols)
        self.fast, self.slow = np.zeros(n), np.zeros(n)
        self.count = np.zeros(n, np.int64)
        self.sign = np.zeros(n, np.int64)
        self.st = np.zeros(1, np.int64)
        self.pi = np.array([warmup, batch], np.int64)
        self.pf = np.array([2.0 / (fast + 1), 2.0 / (slow + 1), qty])

    def do_work(self, now_ns: int) -> int:
        ctx = self.ctx
        head = int(self.out.ctl[IDX_HEAD])
        k = signal_step(self.inp.ctl, self.inp.recs, self.out.ctl, self.out.recs, ctx.hists,
                        self.h_lat, ctx.counters, self.fast, self.slow, self.count, self.sign,
                        self.st, self.pi, self.pf)
        if k and int(self.out.ctl[IDX_HEAD]) != head:
            self.wake_consumers()
        return k

    def kernel(self):
        """(step, args, takes_now) for the process's jitted duty loop (see pyrt_shm.jit_loop)."""
        ctx = self.ctx
        return signal_step, (self.inp.ctl, self.inp.recs, self.out.ctl, self.out.recs, ctx.hists,
                             self.h_lat, ctx.counters, self.fast, self.slow, self.count, self.sign,
                             self.st, self.pi, self.pf), False

    def warm_up(self) -> None:
        ctx = self.ctx
        signal_step(twin(self.inp.ctl), twin(self.inp.recs, 2), twin(self.out.ctl),
                    twin(self.out.recs, 2), twin(ctx.hists, 1), 0, twin(ctx.counters),
                    twin(self.fast), twin(self.slow), twin(self.count), twin(self.sign),
                    twin(self.st), self.pi.copy(), self.pf.copy())
