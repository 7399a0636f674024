"""``BookStage``: top of book per symbol from the tick stream; one book event per accepted tick.

Why top of book only: the embedded default pipeline needs bid/ask/last to drive a signal and
a simulated venue; full L2 books (deltas, snapshots) come with the feeds that send them.

Per tick, in ring order, each consumed exactly once (``ticks_in`` = quotes + trades + every
``rejected_*``):

* ``sym >= n_symbols`` -> ``rejected_unknown_symbol``;
* a quote sets bid/ask/sizes; a trade sets ``last``; any other kind ->
  ``rejected_unsupported_kind`` (bars and L2 deltas are not applied here yet);
* a price that is NaN, infinite or <= 0 -> ``rejected_bad_price``; a size that is NaN,
  infinite or negative -> ``rejected_bad_size``; a quote with bid >= ask -> ``rejected_crossed``.
  Rejected ticks are dropped: not applied, not forwarded.

Every accepted tick updates its symbol's row of the ``tops`` table under the row's seqlock
(one record copy between ``write_begin`` and ``write_end``, from the stage's private copy,
so readers retry for the shortest time) and produces one ``BOOK_EVENT`` carrying the
current top (``valid`` = 1 once a quote has set both sides) and the tick's ``seq``, its
``recv_ns`` as ``feed_ns``, and ``sent_ns`` when the batch was published. Histogram
``latency`` records ``now - recv_ns`` for every tick consumed, rejected ones included.

Backpressure: the step peeks how many ticks are readable, claims that many output slots,
and consumes only as many ticks as it has slots for (one tick produces at most one event).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from layouts.market import TICK_QUOTE, TICK_TRADE, TOP
from layouts.ring import IDX_HEAD
from pyrt_shm.hdr_recorder import hdr_record
from pyrt_shm.stage import Stage
from ringbuf import spsc
from ringbuf._atomics import monotonic_ns
from ringbuf.seqlock import write_begin, write_end

from . import check_keys, int_param, publish, twin

C_TICKS_IN, C_EVENTS_OUT, C_QUOTES, C_TRADES = 0, 1, 2, 3
C_BAD_PRICE, C_BAD_SIZE, C_UNKNOWN_SYMBOL, C_CROSSED, C_UNSUPPORTED_KIND = 4, 5, 6, 7, 8


@njit(cache=True, inline="always")
def _good_price(x):
    return math.isfinite(x) and x > 0.0


@njit(cache=True, inline="always")
def _good_size(x):
    return math.isfinite(x) and x >= 0.0


@njit(cache=True)
def book_step(in_ctl, in_recs, out_ctl, out_recs, seqs, rows, tops, hists, h_lat, counters, batch):
    """Apply up to ``batch`` ticks; return the number consumed."""
    avail = np.int64(spsc.poll(in_ctl, batch))
    if avail == 0:
        return 0
    k = np.int64(spsc.claim(out_ctl, avail))
    if k == 0:
        return 0
    now = monotonic_ns()
    nsym = tops.shape[0]
    rd, wr = spsc.tail_of(in_ctl), spsc.head_of(out_ctl)
    n_out = 0
    for j in range(k):
        t = in_recs[spsc.slot(in_ctl, rd + np.uint64(j))]
        hdr_record(hists, h_lat, now - t.recv_ns)
        s = t.sym
        if s >= nsym:
            counters[C_UNKNOWN_SYMBOL] += np.uint64(1)
            continue
        kind = t.kind
        trade_px, trade_size = 0.0, 0.0
        if kind == TICK_QUOTE:
            if not (_good_price(t.bid) and _good_price(t.ask)):
                counters[C_BAD_PRICE] += np.uint64(1)
                continue
            if not (_good_size(t.bid_size) and _good_size(t.ask_size)):
                counters[C_BAD_SIZE] += np.uint64(1)
                continue
            if t.bid >= t.ask:
                counters[C_CROSSED] += np.uint64(1)
                continue
            top = tops[s]
            top.bid, top.ask = t.bid, t.ask
            top.bid_size, top.ask_size = t.bid_size, t.ask_size
            top.valid = 1
            counters[C_QUOTES] += np.uint64(1)
        elif kind == TICK_TRADE:
            if not _good_price(t.price):
                counters[C_BAD_PRICE] += np.uint64(1)
                continue
            if not _good_size(t.size):
                counters[C_BAD_SIZE] += np.uint64(1)
                continue
            trade_px, trade_size = t.price, t.size
            top = tops[s]
            top.last = t.price
            counters[C_TRADES] += np.uint64(1)
        else:
            counters[C_UNSUPPORTED_KIND] += np.uint64(1)
            continue
        top.sym = s
        top.updated_ns = t.recv_ns
        top.updates += np.uint64(1)
        write_begin(seqs, s)
        rows[s] = top
        write_end(seqs, s)
        e = out_recs[spsc.slot(out_ctl, wr + np.uint64(n_out))]
        e.tick_seq = t.seq
        e.feed_ns = t.recv_ns
        e.sym = s
        e.kind = kind
        e.valid = top.valid
        e.bid, e.ask = top.bid, top.ask
        e.bid_size, e.ask_size = top.bid_size, top.ask_size
        e.trade_px, e.trade_size = trade_px, trade_size
        n_out += 1
    spsc.release(in_ctl, k)
    publish(out_ctl, out_recs, n_out)
    counters[C_TICKS_IN] += np.uint64(k)
    counters[C_EVENTS_OUT] += np.uint64(n_out)
    return k


class BookStage(Stage):
    """Top of book per symbol (see module doc). Params: batch."""

    INPUTS = ("tick",)
    OUTPUTS = ("top",)
    TABLES = {"tops": (TOP, "symbols")}
    HISTOGRAMS = ("latency",)
    COUNTERS = ("ticks_in", "events_out", "quotes", "trades", "rejected_bad_price",
                "rejected_bad_size", "rejected_unknown_symbol", "rejected_crossed",
                "rejected_unsupported_kind")
    PARAMS = ("batch",)

    def __init__(self, ctx):
        super().__init__(ctx)
        check_keys(ctx, self.PARAMS)
        self.batch = int_param(ctx, "batch", 256, lo=1)
        self.inp, self.out = ctx.input("tick"), ctx.output("top")
        self.table = ctx.tables["tops"]
        self.tops = np.zeros(len(self.table), TOP)     # private working copy; the table is its snapshot
        self.tops["sym"] = np.arange(len(self.table))
        self.h_lat = ctx.hist("latency")

    def do_work(self, now_ns: int) -> int:
        ctx, t = self.ctx, self.table
        head = int(self.out.ctl[IDX_HEAD])
        k = book_step(self.inp.ctl, self.inp.recs, self.out.ctl, self.out.recs, t.seqs, t.rows,
                      self.tops, ctx.hists, self.h_lat, ctx.counters, self.batch)
        if k and int(self.out.ctl[IDX_HEAD]) != head:
            self.wake_consumers()
        return k

    def kernel(self):
        """(step, args, takes_now) for the process's jitted duty loop (see pyrt_shm.jit_loop)."""
        ctx, t = self.ctx, self.table
        return book_step, (self.inp.ctl, self.inp.recs, self.out.ctl, self.out.recs, t.seqs, t.rows,
                           self.tops, ctx.hists, self.h_lat, ctx.counters, self.batch), False

    def warm_up(self) -> None:
        ctx, t = self.ctx, self.table
        book_step(twin(self.inp.ctl), twin(self.inp.recs, 2), twin(self.out.ctl),
                  twin(self.out.recs, 2), twin(t.seqs), twin(t.rows), twin(self.tops),
                  twin(ctx.hists, 1), 0, twin(ctx.counters), self.batch)
