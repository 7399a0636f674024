"""``SyntheticFeed``: a seeded market generator, paced by a schedule (the embedded default's feed).

Market model, per symbol (ids ``0..n-1`` = ``ctx.symbols``):

* mid: a log random walk, ``log(mid) += volatility * N(0, 1)`` on each tick of the symbol;
* spread, in ticks: a latent AR(1), ``x = 2 + 0.9 (x - 2) + 0.6 N(0, 1)``, rounded and
  clamped to 1..10 ticks, so it mean-reverts around two ticks with occasional wide spells;
* sizes: ``100 * lots`` with ``lots = round(exp(ln 2 + 0.8 N(0, 1)))`` clamped to 1..50;
* each tick picks a symbol uniformly; with probability ``trade_ratio`` it is a trade (at the
  bid or the ask, side 50/50, price = that side's price), otherwise a quote
  (``bid = round_to_tick(mid - spread/2)``, ``ask = bid + spread``, both sizes drawn).

The random draws per tick are in a fixed order from one xoshiro256** stream (``procs.prng``),
so the tick *contents* depend on the seed alone: not on batch sizes, timing or backpressure.

Pacing (coordinated-omission corrected): tick ``i`` is scheduled at
``t0 + i * 1e9 / rate`` ns (integer maths, no drift), ``t0`` being the first ``do_work``'s
``now_ns``. Each cycle generates every tick due by ``now`` (at most ``batch``), stamped
``recv_ns`` = its *scheduled* time, so when the feed falls behind, every latency measured
downstream includes the delay. Histogram ``lag`` records ``now - scheduled`` for each tick
published. A full ring makes the feed generate fewer this cycle; the schedule stays, and
nothing is skipped. ``rate = 0`` means as fast as the ring takes them: ``recv_ns`` is the
clock at generation and no lag is recorded (there is no schedule to lag behind).

``seq`` is gap-free from 0. After ``max_ticks`` (0 = unlimited) ticks the feed sets its
counter ``finished`` to 1 and produces nothing more.

L2 book data (``book_levels = L > 0``; default 0 = quotes and trades only, exactly as
above): the feed also emits the ``layouts.market`` book protocol. Each symbol starts with a
full snapshot (``2 L`` consecutive TICK_BOOK_SNAPSHOT records: bids best first, then asks,
``L`` levels a side one tick apart from the model's touch, ``BOOK_FIRST`` on the first,
``BOOK_LAST`` on the last), and a snapshot of the next symbol in turn follows every
``SNAPSHOT_EVERY`` ticks; each snapshot record is one tick (its own ``seq`` and schedule
slot). Between snapshots a non-trade tick is a quote with probability 1/2, else a
TICK_BOOK_DELTA on a random side at a random depth ``k < L`` from the model's touch, size
0 (remove) with probability 1/5, else a lot. ``quotes`` counts quotes only; the book
records are ``ticks_out - quotes - trades``.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from layouts.market import (BOOK_FIRST, BOOK_LAST, BOOK_NO_LEVEL, SIDE_ASK, SIDE_BID, TICK_BOOK_DELTA,
                            TICK_BOOK_SNAPSHOT, TICK_QUOTE, TICK_TRADE)
from pyrt_shm.hdr_recorder import hdr_record
from pyrt_shm.stage import Stage
from ringbuf import spsc
from ringbuf._atomics import monotonic_ns

from . import check_keys, float_param, int_param, twin
from .prng import below, new_state, normal, uniform

# counters
C_TICKS_OUT, C_QUOTES, C_TRADES, C_FINISHED = 0, 1, 2, 3
# int params / float params / state slots
P_RATE, P_MAX_TICKS, P_BATCH, P_BOOK_LEVELS = 0, 1, 2, 3
F_TRADE_RATIO, F_VOLATILITY, F_TICK_SIZE = 0, 1, 2
S_STARTED, S_T0, S_NEXT, S_FINISHED = 0, 1, 2, 3
# book data state: snapshot in progress (symbol, records left, its touch), next due, turn
S_SNAP_SYM, S_SNAP_LEFT, S_SNAP_BID, S_SNAP_SPREAD, S_SNAP_DUE, S_SNAP_TURN = 4, 5, 6, 7, 8, 9
N_STATE = 10
SNAPSHOT_EVERY = 10_000
DELTA_REMOVE = 0.2
# market model constants
SPREAD_MEAN, SPREAD_PHI, SPREAD_SIGMA, SPREAD_MAX = 2.0, 0.9, 0.6, 10
LOT_LOG_MEAN, LOT_LOG_SIGMA, LOT_MAX, LOT_SHARES = math.log(2.0), 0.8, 50, 100.0
NS_PER_S = 1_000_000_000


@njit(cache=True, inline="always")
def scheduled_ns(t0, i, rate):
    """Scheduled time of tick ``i``: ``t0 + i * 1e9 / rate``, exact in int64 for any i."""
    return t0 + (i // rate) * NS_PER_S + ((i % rate) * NS_PER_S) // rate


@njit(cache=True, inline="always")
def _lot(rng):
    lots = math.floor(math.exp(LOT_LOG_MEAN + LOT_LOG_SIGMA * normal(rng)) + 0.5)
    return LOT_SHARES * min(max(lots, 1.0), LOT_MAX)


@njit(cache=True)
def feed_step(now, ctl, recs, hists, h_lag, counters, st, rng, logmid, spread, pi, pf):
    """Generate and publish the ticks due by ``now`` (at most ``batch``); return how many."""
    if st[S_FINISHED]:
        return 0
    if st[S_STARTED] == 0:
        st[S_STARTED] = 1
        st[S_T0] = now
    rate, max_ticks, n = pi[P_RATE], pi[P_MAX_TICKS], pi[P_BATCH]
    i0 = st[S_NEXT]
    if max_ticks > 0 and max_ticks - i0 < n:
        n = max_ticks - i0
    if rate > 0:
        due = 0
        while due < n and scheduled_ns(st[S_T0], i0 + due, rate) <= now:
            due += 1
        n = due
    k = np.int64(spsc.claim(ctl, n)) if n > 0 else 0
    trade_ratio, vol, tick = pf[F_TRADE_RATIO], pf[F_VOLATILITY], pf[F_TICK_SIZE]
    levels = pi[P_BOOK_LEVELS]
    nsym = logmid.shape[0]
    start = spsc.head_of(ctl)
    trades = 0
    quotes = 0
    for j in range(k):
        i = i0 + j
        r = recs[spsc.slot(ctl, start + np.uint64(j))]
        r.seq = i
        if rate > 0:
            t = scheduled_ns(st[S_T0], i, rate)
            r.recv_ns = t
            hdr_record(hists, h_lag, now - t)
        else:
            r.recv_ns = monotonic_ns()
        r.exch_ns = 0
        r.flags = 0
        if levels > 0 and st[S_SNAP_LEFT] == 0 and i >= st[S_SNAP_DUE]:
            s = st[S_SNAP_TURN] % nsym              # start the next symbol's snapshot
            st[S_SNAP_TURN] += 1
            sp = min(max(math.floor(spread[s] + 0.5), 1.0), SPREAD_MAX)
            st[S_SNAP_SYM] = s
            st[S_SNAP_LEFT] = 2 * levels
            st[S_SNAP_BID] = np.int64(max(math.floor(math.exp(logmid[s]) / tick - 0.5 * sp + 0.5), 1.0))
            st[S_SNAP_SPREAD] = np.int64(sp)
            st[S_SNAP_DUE] = i + 2 * levels + (0 if st[S_SNAP_TURN] < nsym else SNAPSHOT_EVERY)
        if st[S_SNAP_LEFT] > 0:
            m = 2 * levels - st[S_SNAP_LEFT]        # record m of the snapshot
            st[S_SNAP_LEFT] -= 1
            side = SIDE_BID if m < levels else SIDE_ASK
            lvl_t = st[S_SNAP_BID] - m if m < levels else st[S_SNAP_BID] + st[S_SNAP_SPREAD] + (m - levels)
            r.sym = st[S_SNAP_SYM]
            r.kind = TICK_BOOK_SNAPSHOT
            r.flags = side | (BOOK_FIRST if m == 0 else 0) | (BOOK_LAST if st[S_SNAP_LEFT] == 0 else 0)
            if lvl_t < 1:
                r.flags |= BOOK_NO_LEVEL
            r.price = lvl_t * tick
            r.size = _lot(rng)
            r.bid = 0.0
            r.ask = 0.0
            r.bid_size = 0.0
            r.ask_size = 0.0
            continue
        s = below(rng, nsym)
        logmid[s] += vol * normal(rng)
        spread[s] = SPREAD_MEAN + SPREAD_PHI * (spread[s] - SPREAD_MEAN) + SPREAD_SIGMA * normal(rng)
        sp = min(max(math.floor(spread[s] + 0.5), 1.0), SPREAD_MAX)
        bid_t = max(math.floor(math.exp(logmid[s]) / tick - 0.5 * sp + 0.5), 1.0)
        bid, ask = bid_t * tick, (bid_t + sp) * tick
        r.sym = s
        if uniform(rng) < trade_ratio:
            trades += 1
            r.kind = TICK_TRADE
            r.price = ask if uniform(rng) < 0.5 else bid
            r.size = _lot(rng)
            r.bid = 0.0
            r.ask = 0.0
            r.bid_size = 0.0
            r.ask_size = 0.0
        elif levels > 0 and uniform(rng) < 0.5:
            side = SIDE_BID if uniform(rng) < 0.5 else SIDE_ASK
            d = below(rng, levels)
            r.kind = TICK_BOOK_DELTA
            r.flags = side
            r.price = (bid_t - d) * tick if side == SIDE_BID else (bid_t + sp + d) * tick
            r.size = 0.0 if uniform(rng) < DELTA_REMOVE else _lot(rng)
            if r.price <= 0.0:
                r.price = tick
            r.bid = 0.0
            r.ask = 0.0
            r.bid_size = 0.0
            r.ask_size = 0.0
        else:
            quotes += 1
            r.kind = TICK_QUOTE
            r.price = 0.0
            r.size = 0.0
            r.bid = bid
            r.ask = ask
            r.bid_size = _lot(rng)
            r.ask_size = _lot(rng)
    if k > 0:
        spsc.commit(ctl, k)
        st[S_NEXT] = i0 + k
        counters[C_TICKS_OUT] += np.uint64(k)
        counters[C_TRADES] += np.uint64(trades)
        counters[C_QUOTES] += np.uint64(quotes)
    if max_ticks > 0 and st[S_NEXT] >= max_ticks:
        st[S_FINISHED] = 1
        counters[C_FINISHED] = np.uint64(1)
    return k


class SyntheticFeed(Stage):
    """Seeded synthetic market (see module doc). Params: rate, seed, max_ticks, trade_ratio,
    start_price, volatility, tick_size, batch, book_levels."""

    OUTPUTS = ("tick",)
    HISTOGRAMS = ("lag",)
    COUNTERS = ("ticks_out", "quotes", "trades", "finished")
    PARAMS = ("rate", "seed", "max_ticks", "trade_ratio", "start_price", "volatility",
              "tick_size", "batch", "book_levels")

    def __init__(self, ctx):
        super().__init__(ctx)
        check_keys(ctx, self.PARAMS)
        rate = int_param(ctx, "rate", 10_000, lo=0, hi=NS_PER_S)
        seed = int_param(ctx, "seed", 0)
        max_ticks = int_param(ctx, "max_ticks", 0, lo=0)
        batch = int_param(ctx, "batch", 256, lo=1)
        trade_ratio = float_param(ctx, "trade_ratio", 0.2, lo=0.0, hi=1.0)
        start_price = float_param(ctx, "start_price", 100.0, lo=0.0, lo_open=True)
        volatility = float_param(ctx, "volatility", 1e-4, lo=0.0)
        tick_size = float_param(ctx, "tick_size", 0.01, lo=0.0, lo_open=True)
        book_levels = int_param(ctx, "book_levels", 0, lo=0, hi=1000)
        n = len(ctx.symbols)
        if n == 0:
            raise ValueError(f"stages.{ctx.name}: the feed needs at least one symbol (engine.symbols)")
        self.out = ctx.output("tick")
        self.h_lag = ctx.hist("lag")
        self.pi = np.array([rate, max_ticks, batch, book_levels], np.int64)
        self.pf = np.array([trade_ratio, volatility, tick_size], np.float64)
        self.st = np.zeros(N_STATE, np.int64)
        self.rng = new_state(seed)
        self.logmid = np.full(n, math.log(start_price))
        self.spread = np.full(n, SPREAD_MEAN)

    def do_work(self, now_ns: int) -> int:
        ctx = self.ctx
        k = feed_step(now_ns, self.out.ctl, self.out.recs, ctx.hists, self.h_lag, ctx.counters,
                      self.st, self.rng, self.logmid, self.spread, self.pi, self.pf)
        if k:
            self.wake_consumers()
        return k

    def kernel(self):
        """(step, args, takes_now) for the process's jitted duty loop (see pyrt_shm.jit_loop)."""
        ctx = self.ctx
        return feed_step, (self.out.ctl, self.out.recs, ctx.hists, self.h_lag, ctx.counters,
                           self.st, self.rng, self.logmid, self.spread, self.pi, self.pf), True

    def warm_up(self) -> None:
        ctx = self.ctx
        feed_step(0, twin(self.out.ctl), twin(self.out.recs, 2), twin(ctx.hists, 1), 0,
                  twin(ctx.counters), twin(self.st), self.rng.copy(), self.logmid.copy(),
                  self.spread.copy(), self.pi.copy(), self.pf.copy())
