"""``ExecStage`` with the ``sim`` venue: fills orders against the book's top, immediately.

Why so simple: the embedded default needs a venue that answers every order at once, so the
whole order path (risk -> exec -> fill -> risk) runs without a network. Resting orders,
latency, slippage and partial fills come in a later issue.

Every order produces exactly one FILL report (backpressure: the step claims report slots
first and consumes no more orders than it has slots), numbered by ``fill_id`` (every report,
fills and rejects alike, gap-free from 1):

* ``order_id`` not greater than the last one seen (risk sends ids in increasing order) ->
  ``duplicate_order_id``, FILL_REJECTED reason ``REASON_DUPLICATE_ID``;
* unknown symbol, side not BUY/SELL, qty not finite or <= 0, unknown order type, a limit
  price not finite or <= 0 -> ``bad_order``, reason ``REASON_BAD_ORDER``;
* no valid top for the symbol (``tops`` table absent, row not valid, or the seqlock read
  failed) -> ``rejected_no_book``, reason ``REASON_NO_BOOK``;
* MARKET: BUY fills in full at the ask, SELL at the bid. LIMIT: fills in full at the touch
  if marketable (buy limit >= ask -> at ask; sell limit <= bid -> at bid), else
  ``rejected_not_marketable``, reason ``REASON_NOT_MARKETABLE`` (no resting orders yet).

A fill has status FILL_FULL, ``fee = fee_per_share * qty``, ``leaves_qty`` 0; a reject has
qty, price, fee and leaves 0. The ``venue_positions`` table is the venue's own record per
symbol (qty, bought, sold, fills, fees), kept independently of risk so tests can
cross-check risk's positions. Histograms: ``latency`` (``now - sent_ns`` of each order) and
``tick_to_order`` (``now - feed_ns``: the tick-to-order figure of the whole pipeline).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from layouts.market import TOP
from layouts.orders import BUY, FILL_FULL, FILL_REJECTED, ORDER_LIMIT, ORDER_MARKET, POSITION, SELL
from pyrt_shm.hdr_recorder import hdr_record
from pyrt_shm.stage import Stage
from ringbuf import spsc
from ringbuf._atomics import monotonic_ns
from ringbuf.seqlock import read_row, write_begin, write_end

from . import check_keys, float_param, int_param, publish, twin

#: FILL.reason codes of the sim venue.
REASON_NONE = 0
REASON_NO_BOOK = 1
REASON_NOT_MARKETABLE = 2
REASON_DUPLICATE_ID = 3
REASON_BAD_ORDER = 4

C_ORDERS_IN, C_FILLS_OUT, C_NO_BOOK, C_NOT_MARKETABLE, C_DUPLICATE, C_BAD_ORDER = range(6)
S_LAST_ORDER_ID, S_NEXT_FILL_ID = 0, 1
READ_TRIES = 1000


@njit(cache=True, inline="always")
def _decide(o, top_seqs, top_rows, top_buf, nsym, last_id):
    """(reason, price) for order ``o`` against the top of its symbol."""
    if np.int64(o.order_id) <= last_id:
        return REASON_DUPLICATE_ID, 0.0
    s, side, q, ot, lp = o.sym, o.side, o.qty, o.order_type, o.limit_px
    if s >= nsym or (side != BUY and side != SELL) or not (math.isfinite(q) and q > 0.0) \
            or (ot != ORDER_MARKET and ot != ORDER_LIMIT) \
            or (ot == ORDER_LIMIT and not (math.isfinite(lp) and lp > 0.0)):
        return REASON_BAD_ORDER, 0.0
    if s >= top_rows.shape[0] or read_row(top_seqs, top_rows, s, top_buf, READ_TRIES) == 0:
        return REASON_NO_BOOK, 0.0
    t = top_buf[0]
    if t.valid == 0 or not (t.bid > 0.0 and t.ask > 0.0):
        return REASON_NO_BOOK, 0.0
    px = t.ask if side == BUY else t.bid
    if ot == ORDER_LIMIT and ((side == BUY and lp < px) or (side == SELL and lp > px)):
        return REASON_NOT_MARKETABLE, 0.0
    return REASON_NONE, px


@njit(cache=True)
def exec_step(in_ctl, in_recs, out_ctl, out_recs, top_seqs, top_rows, top_buf, vp_seqs, vp_rows,
              vpos, hists, h_lat, h_t2o, counters, st, fee_per_share, batch):
    """Answer up to ``batch`` orders (no more than there are report slots); return the count."""
    avail = np.int64(spsc.poll(in_ctl, batch))
    if avail == 0:
        return 0
    k = np.int64(spsc.claim(out_ctl, avail))
    if k == 0:
        return 0
    now = monotonic_ns()
    nsym = vpos.shape[0]
    rd, wr = spsc.tail_of(in_ctl), spsc.head_of(out_ctl)
    for j in range(k):
        o = in_recs[spsc.slot(in_ctl, rd + np.uint64(j))]
        hdr_record(hists, h_lat, now - o.sent_ns)
        hdr_record(hists, h_t2o, now - o.feed_ns)
        reason, px = _decide(o, top_seqs, top_rows, top_buf, nsym, st[S_LAST_ORDER_ID])
        f = out_recs[spsc.slot(out_ctl, wr + np.uint64(j))]
        f.order_id = o.order_id
        f.fill_id = st[S_NEXT_FILL_ID]
        st[S_NEXT_FILL_ID] += 1
        f.feed_ns = o.feed_ns
        f.sym = o.sym
        f.side = o.side
        f.leaves_qty = 0.0
        f.reason = reason
        if reason == REASON_NONE:
            st[S_LAST_ORDER_ID] = o.order_id
            q = o.qty
            fee = fee_per_share * q
            f.status = FILL_FULL
            f.qty, f.price, f.fee = q, px, fee
            s = np.int64(o.sym)
            v = vpos[s]
            v.sym = s
            v.fills += np.uint32(1)
            v.fees += fee
            if o.side == BUY:
                v.qty += q
                v.bought += q
            else:
                v.qty -= q
                v.sold += q
            write_begin(vp_seqs, s)
            vp_rows[s] = v
            write_end(vp_seqs, s)
        else:
            if reason != REASON_DUPLICATE_ID:
                st[S_LAST_ORDER_ID] = o.order_id
            f.status = FILL_REJECTED
            f.qty, f.price, f.fee = 0.0, 0.0, 0.0
            c = C_DUPLICATE if reason == REASON_DUPLICATE_ID else C_BAD_ORDER \
                if reason == REASON_BAD_ORDER else C_NO_BOOK if reason == REASON_NO_BOOK \
                else C_NOT_MARKETABLE
            counters[c] += np.uint64(1)
    spsc.release(in_ctl, k)
    publish(out_ctl, out_recs, k)
    counters[C_ORDERS_IN] += np.uint64(k)
    counters[C_FILLS_OUT] += np.uint64(k)
    return k


class ExecStage(Stage):
    """Order execution on the ``sim`` venue (see module doc). Params: fee_per_share, batch."""

    INPUTS = ("order",)
    OUTPUTS = ("fill",)
    TABLES = {"venue_positions": (POSITION, "symbols")}
    HISTOGRAMS = ("latency", "tick_to_order")
    COUNTERS = ("orders_in", "fills_out", "rejected_no_book", "rejected_not_marketable",
                "duplicate_order_id", "bad_order")
    PARAMS = ("fee_per_share", "batch")

    def __init__(self, ctx):
        super().__init__(ctx)
        check_keys(ctx, self.PARAMS)
        self.fee = float_param(ctx, "fee_per_share", 0.005, lo=0.0)
        self.batch = int_param(ctx, "batch", 256, lo=1)
        self.inp, self.out = ctx.input("order"), ctx.output("fill")
        self.table = ctx.tables["venue_positions"]
        n = len(self.table)
        self.vpos = np.zeros(n, POSITION)         # private working copy; the table is its snapshot
        self.vpos["sym"] = np.arange(n)
        tops = ctx.tables.get("tops")
        self.top_seqs = tops.seqs if tops is not None else np.zeros(0, np.uint64)
        self.top_rows = tops.rows if tops is not None else np.zeros(0, TOP)
        self.top_buf = np.zeros(1, TOP)
        self.st = np.array([0, 1], np.int64)      # last order id, next fill id
        self.h_lat, self.h_t2o = ctx.hist("latency"), ctx.hist("tick_to_order")

    def do_work(self, now_ns: int) -> int:
        ctx, t = self.ctx, self.table
        k = exec_step(self.inp.ctl, self.inp.recs, self.out.ctl, self.out.recs, self.top_seqs,
                      self.top_rows, self.top_buf, t.seqs, t.rows, self.vpos, ctx.hists,
                      self.h_lat, self.h_t2o, ctx.counters, self.st, self.fee, self.batch)
        if k:
            self.wake_consumers()
        return k

    def kernel(self):
        """(step, args, takes_now) for the process's jitted duty loop (see pyrt_shm.jit_loop)."""
        ctx, t = self.ctx, self.table
        return exec_step, (self.inp.ctl, self.inp.recs, self.out.ctl, self.out.recs, self.top_seqs,
                           self.top_rows, self.top_buf, t.seqs, t.rows, self.vpos, ctx.hists,
                           self.h_lat, self.h_t2o, ctx.counters, self.st, self.fee, self.batch), False

    def warm_up(self) -> None:
        ctx, t = self.ctx, self.table
        exec_step(twin(self.inp.ctl), twin(self.inp.recs, 2), twin(self.out.ctl),
                  twin(self.out.recs, 2), twin(self.top_seqs), twin(self.top_rows),
                  twin(self.top_buf), twin(t.seqs), twin(t.rows), twin(self.vpos),
                  twin(ctx.hists, 1), 0, 0, twin(ctx.counters), self.st.copy(), self.fee,
                  self.batch)
