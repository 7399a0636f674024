"""``BookStage``: L2 books per symbol, top of book and depth tables, bars from trades, venue bars.

Per tick, in ring order, each consumed exactly once (``procs.l2book`` has the rules):

* quotes, book deltas and book snapshots update the symbol's L2 book (``procs.l2book``:
  levels sorted in numba arrays, ``capacity`` per side; a later update at a better price
  removes the stale opposite levels it crosses; a quote or snapshot crossed in itself is
  rejected);
* trades set ``last`` and feed the bars (``procs.bars``: time, tick and volume bars);
* venue bars (``TICK_BAR`` records: bars the venue computed, e.g. Alpaca minute, updated and
  daily bars) are forwarded to the signal as they are; they change neither the book nor the
  ``tops`` and ``depth`` tables, and build no bars;
* bad ticks (unknown symbol or kind, bad price or size, stamps going backwards, crossed
  quote or snapshot, snapshot records out of protocol, inconsistent bars) are rejected: not
  applied, not forwarded, counted by reason (``rejected_*``).

Outputs, per accepted tick (a snapshot counts once, when its last record applies it):

* the symbol's row of the ``tops`` table (TOP: best bid/ask and sizes, ``valid`` when both
  sides have a level, ``last`` trade, ``updated_ns`` = the tick's ``recv_ns``,
  ``updates``), written under the row's seqlock from the stage's private copy;
* when the book changed, the symbol's row of the ``depth`` table (DEPTH: the best ``depth``
  levels per side, mid, microprice, imbalance at the touch and over the published levels);
* one ``BOOK_EVENT`` (``kind`` = the tick's kind, the top after the tick, microprice and
  imbalance, the trade's price and size for trades), followed, for a trade, by one
  ``BOOK_EVENT`` with ``kind = TICK_BAR`` per bar it completed, in spec order;
* for a venue bar, its one ``BOOK_EVENT``: ``kind = TICK_BAR``, the symbol's current top
  (invalid, microprice and imbalance 0, until both sides are known) and the bar's fields
  (``procs.bars.venue_bar_fields``: ``bar_start_ns`` = its ``exch_ns``, ``bar_end_ns`` = start
  + 1 minute, or + 1 day for daily bars, ``bar_count`` 0, ``bar_type = BAR_TIME``, ``bar_spec
  = layouts.market.VENUE_BAR_SPEC``, which no bar built here carries). An updated (corrected)
  bar is forwarded with the start of the bar it corrects, even when later bars went before
  it: the strategy decides what to do with a correction.

Events carry the tick's ``seq`` as ``tick_seq``, its ``recv_ns`` as ``feed_ns``, and
``sent_ns`` when the batch was published. Histogram ``latency`` records ``now - recv_ns``
for every tick consumed, rejected ones included.

Counters (``procs.l2book.COUNTER_NAMES``): ``ticks_in`` = ``quotes + trades + deltas +
snapshot_levels + venue bars + sum(rejected_*)``; ``events_out`` = ``quotes + trades + deltas
+ snapshots + bars_out``, where ``bars_out`` = venue bars forwarded + bars built from trades
(with no ``bars`` param, ``bars_out`` is exactly the venue bars). With only quotes and
trades and no bars (the default), every accepted tick makes exactly one event.

Backpressure: a tick is consumed only when the output ring has room for everything it may
produce (1 event, ``1 + len(bars)`` for a trade; a venue bar makes 1). The step polls up
to ``batch`` ticks, claims ``ticks + len(bars)`` slots and stops at the first tick it has no
room for; the output ring must hold at least ``1 + len(bars)`` records (checked at
construction).

Params: ``batch`` (256), ``depth`` (levels published per side, 1..DEPTH_LEVELS, default
10), ``capacity`` (levels held per side, ``depth``..4096, default 64), ``bars`` (list of
bar specs, default ``[]``: no bars; see ``procs.bars``).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from layouts.market import DEPTH, DEPTH_LEVELS, TICK_BAR, TICK_TRADE, TOP
from layouts.ring import IDX_CAPACITY, IDX_HEAD
from pyrt_shm.hdr_recorder import hdr_record
from pyrt_shm.stage import Stage
from ringbuf import spsc
from ringbuf._atomics import monotonic_ns
from ringbuf.seqlock import write_begin, write_end

from . import check_keys, int_param, publish, twin
from .bars import (F_CLOSE, F_HIGH, F_LOW, F_OPEN, F_PV, F_VOLUME, O_COUNT, O_END, O_SPEC, O_START,
                   bars_on_trade, new_bars, parse_bar_specs, venue_bar_fields)
from .book_events import top_event, top_touch
from .l2book import (BOOK_ARRAYS, C_BARS_OUT, C_EVENTS_OUT, C_TICKS_IN, COUNTER_NAMES, EV_BAR, EV_BOOK,
                     EV_NONE, EV_TRADE, apply_tick, best, new_book, write_depth_row)

P_BATCH, P_DEPTH = 0, 1


# Compiled without numba's reference counting (``_nrt=False``, as the l2book/bars helpers it
# calls): nothing is allocated here, and with NRT every array argument passed to a helper
# costs atomic incref/decref pairs, which measured ~40 ns per tick.
@njit(cache=True, _nrt=False)
def book_step(in_ctl, in_recs, out_ctl, out_recs, top_seqs, top_rows, tops, dep_seqs, dep_rows,
              lv, st, btypes, bints, bvols, bf, bi, out_f, out_i,
              hists, h_lat, counters, pi):
    """Apply up to ``pi[P_BATCH]`` ticks; return the number consumed."""
    avail = np.int64(spsc.poll(in_ctl, pi[P_BATCH]))
    if avail == 0:
        return 0
    nspec = btypes.shape[0]
    k_out = np.int64(spsc.claim(out_ctl, avail + nspec))
    if k_out == 0:
        return 0
    now = monotonic_ns()
    depth = pi[P_DEPTH]
    rd, wr = spsc.tail_of(in_ctl), spsc.head_of(out_ctl)
    n_out = 0
    j = 0
    while j < avail:
        t = in_recs[spsc.slot(in_ctl, rd + np.uint64(j))]
        if n_out + (1 + nspec if t.kind == TICK_TRADE else 1) > k_out:
            break                                  # no room for all it may produce: leave it
        j += 1
        hdr_record(hists, h_lat, now - t.recv_ns)
        code = apply_tick(t, lv, st, counters)
        if code == EV_NONE:
            continue
        s = t.sym
        top = tops[s]
        if code == EV_BAR:        # a venue bar (counted in bars_out by apply_tick): the top as it is
            micro, imb = top_touch(top)
            e = out_recs[spsc.slot(out_ctl, wr + np.uint64(n_out))]
            top_event(e, t.seq, t.recv_ns, s, TICK_BAR, top, micro, imb)
            venue_bar_fields(e, t)
            n_out += 1
            continue
        if code == EV_BOOK:
            top.bid, top.bid_size = best(lv, st, s, 0)
            top.ask, top.ask_size = best(lv, st, s, 1)
            top.valid = 1 if top.bid_size > 0.0 and top.ask_size > 0.0 else 0
            write_begin(dep_seqs, s)
            write_depth_row(dep_rows[s], lv, st, s, depth, t.recv_ns)
            write_end(dep_seqs, s)
        else:
            top.last = t.price
        top.updated_ns = t.recv_ns
        top.updates += np.uint64(1)
        write_begin(top_seqs, s)
        top_rows[s] = top
        write_end(top_seqs, s)
        micro, imb = top_touch(top)
        e = out_recs[spsc.slot(out_ctl, wr + np.uint64(n_out))]
        top_event(e, t.seq, t.recv_ns, s, t.kind, top, micro, imb)
        n_out += 1
        if code == EV_TRADE:
            e.trade_px = t.price
            e.trade_size = t.size
            if nspec > 0:
                clock = t.exch_ns if t.exch_ns != 0 else t.recv_ns
                nb = bars_on_trade(btypes, bints, bvols, bf, bi, s, t.price, t.size, clock, out_f, out_i)
                for b in range(nb):
                    e = out_recs[spsc.slot(out_ctl, wr + np.uint64(n_out))]
                    top_event(e, t.seq, t.recv_ns, s, TICK_BAR, top, micro, imb)
                    spec = out_i[b, O_SPEC]
                    e.bar_open = out_f[b, F_OPEN]
                    e.bar_high = out_f[b, F_HIGH]
                    e.bar_low = out_f[b, F_LOW]
                    e.bar_close = out_f[b, F_CLOSE]
                    e.bar_volume = out_f[b, F_VOLUME]
                    e.bar_vwap = out_f[b, F_PV]
                    e.bar_start_ns = out_i[b, O_START]
                    e.bar_end_ns = out_i[b, O_END]
                    e.bar_count = out_i[b, O_COUNT]
                    e.bar_type = btypes[spec]
                    e.bar_spec = spec
                    n_out += 1
                counters[C_BARS_OUT] += np.uint64(nb)
    if j == 0:
        return 0
    spsc.release(in_ctl, j)
    publish(out_ctl, out_recs, n_out)
    counters[C_TICKS_IN] += np.uint64(j)
    counters[C_EVENTS_OUT] += np.uint64(n_out)
    return j


class BookStage(Stage):
    """L2 books, tops, depth and bars (see module doc). Params: batch, depth, capacity, bars."""

    INPUTS = ("tick",)
    OUTPUTS = ("top",)
    TABLES = {"tops": (TOP, "symbols"), "depth": (DEPTH, "symbols")}
    HISTOGRAMS = ("latency",)
    COUNTERS = COUNTER_NAMES
    PARAMS = ("batch", "depth", "capacity", "bars")

    def __init__(self, ctx):
        super().__init__(ctx)
        check_keys(ctx, self.PARAMS)
        self.batch = int_param(ctx, "batch", 256, lo=1)
        self.depth = int_param(ctx, "depth", 10, lo=1, hi=DEPTH_LEVELS)
        self.capacity = int_param(ctx, "capacity", 64, lo=self.depth, hi=4096)
        self.bar_specs = tuple(ctx.param("bars", ()))
        self.btypes, self.bints, self.bvols = parse_bar_specs(self.bar_specs, f"stages.{ctx.name}.params.bars")
        self.inp, self.out = ctx.input("tick"), ctx.output("top")
        cap = int(self.out.ctl[IDX_CAPACITY])
        if cap < 1 + len(self.bar_specs):
            raise ValueError(f"stages.{ctx.name}.params.bars: a trade may produce {1 + len(self.bar_specs)} "
                             f"events but the output ring holds {cap}")
        self.table, self.depth_table = ctx.tables["tops"], ctx.tables["depth"]
        n = len(self.table)
        self.tops = np.zeros(n, TOP)     # private working copy; the table is its snapshot
        self.tops["sym"] = np.arange(n)
        self.book = new_book(n, self.capacity)
        self.bars = new_bars(n, len(self.bar_specs))
        self.pi = np.array([self.batch, self.depth], np.int64)
        self.h_lat = ctx.hist("latency")

    def _args(self, private):
        ctx, t, d = self.ctx, self.table, self.depth_table
        b, bars = self.book, self.bars
        if private:       # warm_up: same types, nothing shared or private touched
            c = lambda a: a.copy()                                   # noqa: E731
            return (twin(self.inp.ctl), twin(self.inp.recs, 2), twin(self.out.ctl), twin(self.out.recs, 2),
                    twin(t.seqs), twin(t.rows), twin(self.tops), twin(d.seqs), twin(d.rows),
                    *(c(b[k]) for k in BOOK_ARRAYS), c(self.btypes), c(self.bints), c(self.bvols),
                    c(bars["bf"]), c(bars["bi"]), c(bars["out_f"]), c(bars["out_i"]),
                    twin(ctx.hists, 1), 0, twin(ctx.counters), self.pi.copy())
        return (self.inp.ctl, self.inp.recs, self.out.ctl, self.out.recs, t.seqs, t.rows, self.tops,
                d.seqs, d.rows, *(b[k] for k in BOOK_ARRAYS), self.btypes, self.bints, self.bvols,
                bars["bf"], bars["bi"], bars["out_f"], bars["out_i"], ctx.hists, self.h_lat,
                ctx.counters, self.pi)

    def do_work(self, now_ns: int) -> int:
        head = int(self.out.ctl[IDX_HEAD])
        k = book_step(*self._args(False))
        if k and int(self.out.ctl[IDX_HEAD]) != head:
            self.wake_consumers()
        return k

    def kernel(self):
        """(step, args, takes_now) for the process's jitted duty loop (see pyrt_shm.jit_loop)."""
        return book_step, self._args(False), False

    def warm_up(self) -> None:
        book_step(*self._args(True))

