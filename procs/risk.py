"""``RiskStage``: pre-trade checks, order ids, open orders, and positions/P&L from fills.

Why risk owns positions: exec reads orders only from risk's ring, so every order passes
here, and fills come back here, so this is the one place that knows both what is open and
what is held. Every decision is counted by reason.

Each cycle first drains the fill ring (up to ``batch``, unconditionally: fills produce no
output, so the risk <-> exec cycle cannot deadlock on a full ring), then handles intents:

Intent checks, in order (the first failure is the counted reason; rejected intents produce
nothing):

1. ``rej_bad_intent``: unknown symbol, side not BUY/SELL, qty not finite or <= 0, unknown
   order type or tif, a limit order without a finite positive limit price;
2. ``rej_kill_switch``: ``control.kill_switch`` is set (read on every intent);
3. ``rej_halted``: ``control.trading_state`` is HALTED;
4. ``rej_reduce_only``: state REDUCING and the order, with the open orders on its side,
   would take the position beyond flat;
5. ``rej_max_order_qty``: qty > ``max_order_qty``;
6. ``rej_max_position``: |position + open orders on that side + this order| > ``max_position``
   (``qty + open_buy + q`` for a buy, ``qty - open_sell - q`` for a sell);
7. ``rej_open_orders_full``: the open-orders slot of the next id is still taken (more than
   ``open_orders`` orders open at once).

An accepted intent gets the next order id (engine-unique, gap-free from 1), an entry in the
private open-orders table (arrays indexed by ``order_id & (open_orders - 1)``), its quantity
added to ``open_buy``/``open_sell``, and one ORDER record (backpressure: the step claims
order slots first and consumes no more intents than it has slots).

Fills: an unknown order id is counted (``fill_unknown_order``) and ignored. A partial/full
fill is applied to the position in full (it happened at the venue); any quantity beyond
the order's remaining is counted ``fill_overfill``. FILL_FULL, or a fill that completes the
quantity, closes the order; FILL_REJECTED/CANCELED/EXPIRED release its open quantity and
close it. A malformed report (unknown status, bad qty/price/fee) is counted ``fill_bad``.

Positions use the **average-cost method** (FIFO lots come in a later issue): adding to a
position moves ``avg_px`` to the quantity-weighted average; reducing realizes
``closed_qty * (price - avg_px) * sign(position)`` and keeps ``avg_px``; flipping through
zero realizes the closed part and opens the rest at the fill price. ``realized`` is before
fees; ``fees`` sums commissions. ``mark`` is the book's mid (``tops`` table, seqlock
``read_row``) when the table exists and the row is valid, else the last fill price;
``unrealized = (mark - avg_px) * qty``. Rows of ``positions`` are written under the seqlock
from a private copy. Histograms: ``latency`` (intents, ``now - sent_ns``) and
``fill_latency`` (fills).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from layouts.control import CONTROL, TRADING_HALTED, TRADING_REDUCING
from layouts.market import TOP
from layouts.orders import (
    BUY, FILL_CANCELED, FILL_EXPIRED, FILL_FULL, FILL_PARTIAL, FILL_REJECTED, ORDER_LIMIT,
    ORDER_MARKET, POSITION, SELL, TIF_FOK,
)
from layouts.ring import IDX_HEAD
from pyrt_shm.hdr_recorder import hdr_record
from pyrt_shm.stage import Stage
from ringbuf import spsc
from ringbuf._atomics import load_relaxed, monotonic_ns
from ringbuf.seqlock import read_row, write_begin, write_end

from . import check_keys, float_param, int_param, publish, twin

(C_INTENTS_IN, C_ORDERS_OUT, C_REJ_KILL, C_REJ_HALTED, C_REJ_QTY, C_REJ_POSITION, C_REJ_BAD,
 C_FILLS_IN, C_FILL_UNKNOWN, C_FILL_OVERFILL, C_REJ_REDUCE_ONLY, C_REJ_OPEN_FULL,
 C_FILL_BAD) = range(13)
P_BATCH, P_MASK = 0, 1
F_MAX_ORDER_QTY, F_MAX_POSITION = 0, 1
S_NEXT_ID = 0
IDX_KILL = CONTROL.fields["kill_switch"][1] // 8
IDX_TRADING_STATE = CONTROL.fields["trading_state"][1] // 8
EPS = 1e-9            #: quantities are share counts in f8: tolerance for "nothing left"
READ_TRIES = 1000     #: seqlock read attempts before giving up on a mark


@njit(cache=True)
def apply_fill(p, side, q, px, fee):
    """Apply a fill of ``q`` at ``px`` on ``side`` to position record ``p`` (average cost)."""
    pq = p.qty
    sq = q if side == BUY else -q
    if pq == 0.0 or (pq > 0.0) == (side == BUY):
        nq = pq + sq
        p.avg_px = (abs(pq) * p.avg_px + q * px) / abs(nq) if nq != 0.0 else 0.0
    else:
        closed = min(q, abs(pq))
        p.realized += closed * (px - p.avg_px) * (1.0 if pq > 0.0 else -1.0)
        nq = pq + sq
        if abs(nq) < EPS:
            nq = 0.0
            p.avg_px = 0.0
        elif (nq > 0.0) != (pq > 0.0):
            p.avg_px = px            # flipped: the remainder opened at the fill price
    p.qty = nq
    p.fees += fee
    if side == BUY:
        p.bought += q
    else:
        p.sold += q
    p.fills += np.uint32(1)


@njit(cache=True)
def _publish_position(seqs, rows, pos, s, top_seqs, top_rows, top_buf, fill_px):
    """Refresh the mark of ``pos[s]`` and publish the row under its seqlock."""
    p = pos[s]
    if s < top_rows.shape[0] and read_row(top_seqs, top_rows, s, top_buf, READ_TRIES) > 0 \
            and top_buf[0].valid:
        p.mark = 0.5 * (top_buf[0].bid + top_buf[0].ask)
    elif fill_px > 0.0:
        p.mark = fill_px
    p.unrealized = (p.mark - p.avg_px) * p.qty if p.qty != 0.0 else 0.0
    write_begin(seqs, s)
    rows[s] = p
    write_end(seqs, s)


@njit(cache=True, inline="always")
def _release_open(p, side, q):
    if side == BUY:
        p.open_buy = max(p.open_buy - q, 0.0)
    else:
        p.open_sell = max(p.open_sell - q, 0.0)


@njit(cache=True)
def drain_fills(fill_ctl, fill_recs, pos_seqs, pos_rows, pos, top_seqs, top_rows, top_buf,
                hists, h_fill, counters, o_id, o_sym, o_side, o_qty, o_filled, batch, mask):
    """Apply up to ``batch`` fill reports; return the number consumed."""
    k = np.int64(spsc.poll(fill_ctl, batch))
    if k == 0:
        return 0
    now = monotonic_ns()
    rd = spsc.tail_of(fill_ctl)
    for j in range(k):
        f = fill_recs[spsc.slot(fill_ctl, rd + np.uint64(j))]
        hdr_record(hists, h_fill, now - f.sent_ns)
        oid = f.order_id
        i = np.int64(oid & np.uint64(mask))
        if oid == 0 or o_id[i] != oid:
            counters[C_FILL_UNKNOWN] += np.uint64(1)
            continue
        s, side = o_sym[i], o_side[i]
        p = pos[s]
        status = f.status
        fill_px = 0.0
        if status == FILL_PARTIAL or status == FILL_FULL:
            q, px, fee = f.qty, f.price, f.fee
            if not (math.isfinite(q) and q >= 0.0 and math.isfinite(px) and px > 0.0
                    and math.isfinite(fee)):
                counters[C_FILL_BAD] += np.uint64(1)
                continue
            rem = o_qty[i] - o_filled[i]
            if q > rem + EPS:
                counters[C_FILL_OVERFILL] += np.uint64(1)
            take = min(q, rem)
            o_filled[i] += take
            _release_open(p, side, take)
            apply_fill(p, side, q, px, fee)
            fill_px = px
            done = status == FILL_FULL or o_qty[i] - o_filled[i] <= EPS
        elif status == FILL_REJECTED or status == FILL_CANCELED or status == FILL_EXPIRED:
            done = True
        else:
            counters[C_FILL_BAD] += np.uint64(1)
            continue
        if done:
            _release_open(p, side, o_qty[i] - o_filled[i])
            o_id[i] = 0
        _publish_position(pos_seqs, pos_rows, pos, s, top_seqs, top_rows, top_buf, fill_px)
    spsc.release(fill_ctl, k)
    counters[C_FILLS_IN] += np.uint64(k)
    return k


@njit(cache=True, inline="always")
def _check(it, p, nsym, control, max_qty, max_pos, o_id, next_id, mask):
    """Counter index of the first failed check, or -1 if the intent may become an order."""
    s, side, q, ot = it.sym, it.side, it.qty, it.order_type
    if s >= nsym or (side != BUY and side != SELL) or not (math.isfinite(q) and q > 0.0) \
            or (ot != ORDER_MARKET and ot != ORDER_LIMIT) or it.tif > TIF_FOK \
            or (ot == ORDER_LIMIT and not (math.isfinite(it.limit_px) and it.limit_px > 0.0)):
        return C_REJ_BAD
    if load_relaxed(control, IDX_KILL) != 0:
        return C_REJ_KILL
    state = load_relaxed(control, IDX_TRADING_STATE)
    if state == TRADING_HALTED:
        return C_REJ_HALTED
    if state == TRADING_REDUCING:
        if (side == BUY and q + p.open_buy > -p.qty + EPS) or \
                (side == SELL and q + p.open_sell > p.qty + EPS):
            return C_REJ_REDUCE_ONLY
    if q > max_qty:
        return C_REJ_QTY
    if (side == BUY and p.qty + p.open_buy + q > max_pos + EPS) or \
            (side == SELL and p.qty - p.open_sell - q < -max_pos - EPS):
        return C_REJ_POSITION
    if o_id[np.int64(np.uint64(next_id) & np.uint64(mask))] != 0:
        return C_REJ_OPEN_FULL
    return -1


@njit(cache=True)
def handle_intents(in_ctl, in_recs, out_ctl, out_recs, pos_seqs, pos_rows, pos, top_seqs,
                   top_rows, top_buf, control, hists, h_lat, counters,
                   o_id, o_sym, o_side, o_qty, o_filled, st, batch, mask, max_qty, max_pos):
    """Check up to ``batch`` intents (no more than there are order slots); return the number consumed."""
    avail = np.int64(spsc.poll(in_ctl, batch))
    if avail == 0:
        return 0
    k = np.int64(spsc.claim(out_ctl, avail))
    if k == 0:
        return 0
    now = monotonic_ns()
    nsym = pos.shape[0]
    rd, wr = spsc.tail_of(in_ctl), spsc.head_of(out_ctl)
    n_out = 0
    for j in range(k):
        it = in_recs[spsc.slot(in_ctl, rd + np.uint64(j))]
        hdr_record(hists, h_lat, now - it.sent_ns)
        p = pos[min(np.int64(it.sym), nsym - 1)]          # only used once sym is checked
        reason = _check(it, p, nsym, control, max_qty, max_pos, o_id, st[S_NEXT_ID], mask)
        if reason >= 0:
            counters[reason] += np.uint64(1)
            continue
        oid = st[S_NEXT_ID]
        st[S_NEXT_ID] = oid + 1
        i = np.int64(np.uint64(oid) & np.uint64(mask))
        s, side, q = np.int64(it.sym), np.int64(it.side), it.qty
        o_id[i], o_sym[i], o_side[i], o_qty[i], o_filled[i] = oid, s, side, q, 0.0
        if side == BUY:
            p.open_buy += q
        else:
            p.open_sell += q
        _publish_position(pos_seqs, pos_rows, pos, s, top_seqs, top_rows, top_buf, 0.0)
        o = out_recs[spsc.slot(out_ctl, wr + np.uint64(n_out))]
        o.order_id = oid
        o.intent_seq = it.seq
        o.feed_ns = it.feed_ns
        o.sym = s
        o.side = side
        o.order_type = it.order_type
        o.tif = it.tif
        o.qty = q
        o.limit_px = it.limit_px
        o.tag = it.tag
        n_out += 1
    spsc.release(in_ctl, k)
    publish(out_ctl, out_recs, n_out)
    counters[C_INTENTS_IN] += np.uint64(k)
    counters[C_ORDERS_OUT] += np.uint64(n_out)
    return k


@njit(cache=True)
def risk_step(in_ctl, in_recs, fill_ctl, fill_recs, out_ctl, out_recs, pos_seqs, pos_rows, pos,
              top_seqs, top_rows, top_buf, control, hists, h_lat, h_fill, counters,
              o_id, o_sym, o_side, o_qty, o_filled, st, pi, pf):
    """One duty cycle: fills first (unconditionally), then intents; return records consumed."""
    batch, mask = pi[P_BATCH], pi[P_MASK]
    work = drain_fills(fill_ctl, fill_recs, pos_seqs, pos_rows, pos, top_seqs, top_rows, top_buf,
                       hists, h_fill, counters, o_id, o_sym, o_side, o_qty, o_filled, batch, mask)
    work += handle_intents(in_ctl, in_recs, out_ctl, out_recs, pos_seqs, pos_rows, pos, top_seqs,
                           top_rows, top_buf, control, hists, h_lat, counters, o_id, o_sym,
                           o_side, o_qty, o_filled, st, batch, mask,
                           pf[F_MAX_ORDER_QTY], pf[F_MAX_POSITION])
    return work


class RiskStage(Stage):
    """Pre-trade risk and positions (see module doc).

    Params: max_order_qty (1000), max_position (500), open_orders (65536, power of two), batch (256).
    """

    INPUTS = ("intent", "fill")
    OUTPUTS = ("order",)
    TABLES = {"positions": (POSITION, "symbols")}
    HISTOGRAMS = ("latency", "fill_latency")
    COUNTERS = ("intents_in", "orders_out", "rej_kill_switch", "rej_halted", "rej_max_order_qty",
                "rej_max_position", "rej_bad_intent", "fills_in", "fill_unknown_order",
                "fill_overfill", "rej_reduce_only", "rej_open_orders_full", "fill_bad")
    PARAMS = ("max_order_qty", "max_position", "open_orders", "batch")

    def __init__(self, ctx):
        super().__init__(ctx)
        check_keys(ctx, self.PARAMS)
        max_qty = float_param(ctx, "max_order_qty", 1000.0, lo=0.0, lo_open=True)
        max_pos = float_param(ctx, "max_position", 500.0, lo=0.0)
        cap = int_param(ctx, "open_orders", 65536, lo=2, hi=1 << 24, power_of_two=True)
        batch = int_param(ctx, "batch", 256, lo=1)
        self.inp, self.fills, self.out = ctx.input("intent"), ctx.input("fill"), ctx.output("order")
        self.table = ctx.tables["positions"]
        n = len(self.table)
        self.pos = np.zeros(n, POSITION)          # private working copy; the table is its snapshot
        self.pos["sym"] = np.arange(n)
        tops = ctx.tables.get("tops")
        self.top_seqs = tops.seqs if tops is not None else np.zeros(0, np.uint64)
        self.top_rows = tops.rows if tops is not None else np.zeros(0, TOP)
        self.top_buf = np.zeros(1, TOP)
        self.control = (ctx.control.view(np.uint64) if ctx.control is not None
                        else np.zeros(CONTROL.itemsize // 8, np.uint64))
        self.o_id = np.zeros(cap, np.uint64)
        self.o_sym = np.zeros(cap, np.int64)
        self.o_side = np.zeros(cap, np.int64)
        self.o_qty = np.zeros(cap)
        self.o_filled = np.zeros(cap)
        self.st = np.ones(1, np.int64)           # next order id
        self.pi = np.array([batch, cap - 1], np.int64)
        self.pf = np.array([max_qty, max_pos])
        self.h_lat, self.h_fill = ctx.hist("latency"), ctx.hist("fill_latency")

    def do_work(self, now_ns: int) -> int:
        ctx, t = self.ctx, self.table
        head = int(self.out.ctl[IDX_HEAD])
        k = risk_step(self.inp.ctl, self.inp.recs, self.fills.ctl, self.fills.recs, self.out.ctl,
                      self.out.recs, t.seqs, t.rows, self.pos, self.top_seqs, self.top_rows,
                      self.top_buf, self.control, ctx.hists, self.h_lat, self.h_fill, ctx.counters,
                      self.o_id, self.o_sym, self.o_side, self.o_qty, self.o_filled, self.st,
                      self.pi, self.pf)
        if k and int(self.out.ctl[IDX_HEAD]) != head:
            self.wake_consumers()
        return k

    def kernel(self):
        """(step, args, takes_now) for the process's jitted duty loop (see pyrt_shm.jit_loop)."""
        ctx, t = self.ctx, self.table
        return risk_step, (self.inp.ctl, self.inp.recs, self.fills.ctl, self.fills.recs, self.out.ctl,
                           self.out.recs, t.seqs, t.rows, self.pos, self.top_seqs, self.top_rows,
                           self.top_buf, self.control, ctx.hists, self.h_lat, self.h_fill, ctx.counters,
                           self.o_id, self.o_sym, self.o_side, self.o_qty, self.o_filled, self.st,
                           self.pi, self.pf), False

    def warm_up(self) -> None:
        ctx, t = self.ctx, self.table
        risk_step(twin(self.inp.ctl), twin(self.inp.recs, 2), twin(self.fills.ctl),
                  twin(self.fills.recs, 2), twin(self.out.ctl), twin(self.out.recs, 2),
                  twin(t.seqs), twin(t.rows), twin(self.pos), twin(self.top_seqs),
                  twin(self.top_rows), twin(self.top_buf), twin(self.control),
                  twin(ctx.hists, 1), 0, 0, twin(ctx.counters), twin(self.o_id, 2),
                  twin(self.o_sym, 2), twin(self.o_side, 2), twin(self.o_qty, 2),
                  twin(self.o_filled, 2), self.st.copy(), self.pi.copy(), self.pf.copy())
