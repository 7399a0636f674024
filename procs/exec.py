"""``ExecStage``: the order router. Orders from risk's ring only, a state machine per order,
a per-venue rate limiter, retries with backoff, and the ``sim`` venue.

**Exec reads orders only from risk's ring.** Its one input is the ``order`` ring, and at
start (``warm_up``, after every stage is built) it refuses, with a ``WiringError`` naming
the ring, an order ring whose producer is not the risk stage (``procs.risk:RiskStage``
tags the ring it produces). The venue is reached only from ``exec_step`` with records read
from that ring: there is no other path to ``sim_venue.submit``.

One duty cycle (``exec_step(now, ...)``; ``now`` is the loop's clock, injected in tests):

1. **Orders** from risk (up to the report slots free): ``ACTION_NEW`` -> validated (a bad
   order, a non-increasing id or a full order table is rejected at once) and queued in
   state NEW; ``ACTION_CANCEL`` -> NEW orders are canceled here, orders at the venue go to
   PENDING_CANCEL and a cancel is sent; ``ACTION_REPLACE`` -> the original goes to
   PENDING_REPLACE and the replacement (its own id) is sent. A cancel or replace that comes
   too late gets a ``FILL_CANCEL_REJECTED`` report.
2. **Hand-off**: queued orders whose retry time has come go to the venue (NEW -> SUBMITTED)
   as the per-venue token bucket (``rate_limit_per_sec``, burst ``rate_limit_burst``; 0 =
   off) allows; a delayed order is counted once in ``throttled``. Histogram ``handoff``:
   exec received the order -> handed to the venue. Cancels are not rate limited.
3. **Venue** (``procs.sim_venue``): arrivals, resting orders against the book, the session
   close; each venue event moves the order's state (``procs.exec_orders``: a transition
   the table does not allow is counted in ``illegal_transitions`` and dropped) and becomes
   one FILL report to risk: ACCEPTED, PARTIAL/FULL (qty, price, fee, leaves, liquidity),
   CANCELED, REJECTED, EXPIRED, REPLACED, CANCEL_REJECTED.
4. **Retries**: a retryable venue error (``VENUE_BUSY``, ``RATE_LIMITED``; nothing else) puts
   the order back to NEW with the same client order id, after
   ``min(backoff_cap, backoff * 2**(attempt-1)) * (1 - jitter * u)``, u uniform in [0, 1);
   after ``max_retries`` retries it is rejected (``RETRIES_EXHAUSTED``).

Reports are numbered by ``fill_id`` (gap-free from 1). Every order id gets exactly one
terminal report (``orders_done``). ``venue_positions`` is the venue's own record of
executions per symbol, kept apart from risk's so tests can compare them. Histograms:
``latency`` (order ring hop), ``tick_to_order`` (feed stamp -> order at exec), ``handoff``.
The venue reads the book's ``tops`` table and, when the book publishes one, its ``depth``
table (``layouts.market.DEPTH``) to walk levels and place orders behind the touch.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from layouts.market import TOP
from layouts.orders import (
    ACTION_CANCEL, ACTION_NEW, ACTION_REPLACE, BUY, FILL_ACCEPTED, FILL_CANCEL_REJECTED,
    FILL_CANCELED, FILL_EXPIRED, FILL_FULL, FILL_PARTIAL, FILL_REJECTED, FILL_REPLACED,
    ORDER, ORDER_LIMIT, ORDER_MARKET, POSITION, SELL, TIF_FOK,
)
from layouts.ring import IDX_HEAD
from pyrt_shm.hdr_recorder import hdr_record
from pyrt_shm.stage import Stage
from ringbuf import spsc
from ringbuf._atomics import monotonic_ns
from ringbuf.seqlock import write_begin, write_end

from . import check_keys, check_order_source, float_param, int_param, publish, twin
from .exec_orders import (
    ACCEPTED, E_ACCEPT, E_CANCEL_REJECT, E_CANCEL_REQ, E_CANCELED, E_EXPIRE, E_FILL,
    E_PARTIAL_FILL, E_REJECT, E_REPLACE_REJECT, E_REPLACE_REQ, E_REPLACED, E_RETRY, E_SUBMIT,
    ILLEGAL, NEW, PARTIALLY_FILLED, PENDING_CANCEL, PENDING_REPLACE, SUBMITTED, TRANSITIONS,
    next_state,
)
from .journal import DEFAULT_ORDER_CAPACITY, PendingJournal, journal_ring
from .prng import uniform
from .sim_venue import (
    EV_ACK, EV_CANCEL_REJECT, EV_CANCELED, EV_EXPIRED, EV_FILL, EV_REJECT, EV_REPLACED, EV_RETRY,
    DEPTH, LATENCY_MODELS, LIQUIDITY_MODELS, REASON_BAD_ORDER, REASON_CANCELED, REASON_DUPLICATE_ID,
    REASON_NO_BOOK, REASON_NONE, REASON_REPLACE_FAILED, REASON_RETRIES_EXHAUSTED,
    REASON_TABLE_FULL, REASON_UNKNOWN_ORDER, RQ_CANCEL, RQ_NEW, RQ_REPLACE, SimVenue, submit,
    venue_params, venue_step,
)

(C_ORDERS_IN, C_FILLS_OUT, C_CANCELS_IN, C_REPLACES_IN, C_EXECUTIONS, C_ORDERS_DONE, C_REJECTED,
 C_NO_BOOK, C_BAD_ORDER, C_DUPLICATE, C_VENUE_ERRORS, C_RETRIES, C_RETRIES_EXHAUSTED, C_THROTTLED,
 C_CANCEL_REJECTED, C_ILLEGAL) = range(16)
P_BATCH, P_MASK, P_MAX_RETRIES = 0, 1, 2
F_BACKOFF, F_BACKOFF_CAP, F_JITTER, F_RATE, F_BURST = 0, 1, 2, 3, 4
EPS = 1e-9

# The duty cycle's functions (and the venue's, procs.sim_venue) are compiled without numba's
# reference counting (``_nrt=False``): none allocates, and with NRT each of exec_step's 27
# array arguments costs an atomic incref/decref pair per nested call, idle cycles included.

#: Exec's view of an order (private; one slot per id & mask).
EXEC_ORDER = np.dtype([("id", "<u8"), ("sym", "<i8"), ("side", "<i8"), ("ot", "<i8"), ("tif", "<i8"),
                       ("qty", "<f8"), ("px", "<f8"), ("filled", "<f8"), ("state", "<i8"),
                       ("attempts", "<i8"), ("next_try_ns", "<i8"), ("recv_clock", "<i8"),
                       ("feed_ns", "<i8"), ("throttled", "<i8"), ("live", "<i8")], align=True)
#: Exec's private scalars.
EXEC_STATE = np.dtype([("last_order_id", "<i8"), ("next_fill_id", "<i8"), ("tok", "<f8"),
                       ("tok_ns", "<i8"), ("tok_init", "<i8"), ("n_pend", "<i8"),
                       ("open", "<i8")], align=True)


@njit(cache=True, _nrt=False)
def _report(out_ctl, out_recs, wr, n, est, oid, sym, side, feed_ns, status, qty, px, fee, leaves,
            reason, liq, attempts, other, now):
    f = out_recs[spsc.slot(out_ctl, wr + np.uint64(n))]
    f.order_id = oid
    e = est[0]
    f.fill_id = np.uint64(e.next_fill_id)
    e.next_fill_id += 1
    f.feed_ns = feed_ns
    f.sym = sym
    f.side = side
    f.status = status
    f.qty, f.price, f.fee, f.leaves_qty = qty, px, fee, leaves
    f.reason = reason
    f.liquidity = liq
    f.attempts = attempts
    f.replaced_by = other
    f.venue_ns = now


@njit(cache=True, _nrt=False)
def _book_execution(vp_seqs, vp_rows, vpos, s, side, q, fee):
    v = vpos[s]
    v.sym = s
    v.fills += np.uint32(1)
    v.fees += fee
    if side == BUY:
        v.qty += q
        v.bought += q
    else:
        v.qty -= q
        v.sold += q
    write_begin(vp_seqs, s)
    vp_rows[s] = v
    write_end(vp_seqs, s)


@njit(cache=True, inline="always")
def _move(o, event, counters):
    """Apply ``event`` to order ``o``; False (and counted) if the table does not allow it."""
    n = next_state(TRANSITIONS, o.state, event, o.filled)
    if n == ILLEGAL:
        counters[C_ILLEGAL] += np.uint64(1)
        return False
    o.state = n
    return True


@njit(cache=True, _nrt=False)
def _valid(o, nsym):
    s, side, q, ot, lp = o.sym, o.side, o.qty, o.order_type, o.limit_px
    return s < nsym and (side == BUY or side == SELL) and math.isfinite(q) and q > 0.0 \
        and (ot == ORDER_MARKET or ot == ORDER_LIMIT) and o.tif <= TIF_FOK \
        and (ot != ORDER_LIMIT or (math.isfinite(lp) and lp > 0.0))


@njit(cache=True, _nrt=False)
def intake(now, clock, in_ctl, in_recs, out_ctl, out_recs, wr, n_out, room, eo, pend, est, hists,
           h_lat, h_t2o, counters, vs, vp, rq, rng, nsym, pi):
    """Read up to the free report slots' worth of orders; return (consumed, n_out)."""
    avail = np.int64(spsc.poll(in_ctl, pi[P_BATCH]))
    e = est[0]
    v = vs[0]
    # every order already queued or in flight will need a report slot: keep one for each
    k = min(avail, np.int64(room - n_out) - e.n_pend - (v.rq_tail - v.rq_head))
    if k <= 0:
        return 0, n_out
    mask = np.uint64(pi[P_MASK])
    rd = spsc.tail_of(in_ctl)
    for j in range(k):
        r = in_recs[spsc.slot(in_ctl, rd + np.uint64(j))]
        hdr_record(hists, h_lat, clock - r.sent_ns)
        oid = r.order_id
        if r.action == ACTION_CANCEL:
            counters[C_CANCELS_IN] += np.uint64(1)
            o = eo[np.int64(oid & mask)]
            if o.live == 0 or o.id != oid or not (o.state == NEW or o.state == SUBMITTED
                                                  or o.state == ACCEPTED or o.state == PARTIALLY_FILLED):
                counters[C_CANCEL_REJECTED] += np.uint64(1)
                _report(out_ctl, out_recs, wr, n_out, est, oid, r.sym, r.side, r.feed_ns,
                        FILL_CANCEL_REJECTED, 0.0, 0.0, 0.0, 0.0, REASON_UNKNOWN_ORDER, 0, 0,
                        np.uint64(0), now)
                n_out += 1
                continue
            at_venue = o.state != NEW
            _move(o, E_CANCEL_REQ, counters)
            if at_venue:
                submit(vs, rq, vp, rng, now, RQ_CANCEL, oid, np.uint64(0), o.sym, o.side, o.ot, o.tif,
                       0.0, 0.0)
            else:                                   # never left exec: canceled here
                o.live = 0
                e.open -= 1
                counters[C_ORDERS_DONE] += np.uint64(1)
                _report(out_ctl, out_recs, wr, n_out, est, oid, o.sym, o.side, o.feed_ns,
                        FILL_CANCELED, 0.0, 0.0, 0.0, 0.0, REASON_CANCELED, 0, o.attempts,
                        np.uint64(0), now)
                n_out += 1
            continue
        # a new order, or a replacement (its own id)
        hdr_record(hists, h_t2o, clock - r.feed_ns)
        replace = r.action == ACTION_REPLACE
        if replace:
            counters[C_REPLACES_IN] += np.uint64(1)
        elif r.action == ACTION_NEW:
            counters[C_ORDERS_IN] += np.uint64(1)
        reason = REASON_NONE
        o = eo[np.int64(oid & mask)]
        if np.int64(oid) <= e.last_order_id:
            reason = REASON_DUPLICATE_ID
            counters[C_DUPLICATE] += np.uint64(1)
        elif r.action > ACTION_REPLACE or not _valid(r, nsym):
            reason = REASON_BAD_ORDER
            counters[C_BAD_ORDER] += np.uint64(1)
        elif o.live != 0:
            reason = REASON_TABLE_FULL
        orig = eo[np.int64(r.orig_order_id & mask)]
        if reason == REASON_NONE and replace and not (
                orig.live != 0 and orig.id == r.orig_order_id
                and (orig.state == ACCEPTED or orig.state == PARTIALLY_FILLED)
                and orig.sym == r.sym and orig.side == r.side):
            reason = REASON_REPLACE_FAILED
        if reason != REASON_DUPLICATE_ID:
            e.last_order_id = np.int64(oid)
        if reason != REASON_NONE:
            counters[C_REJECTED] += np.uint64(1)
            counters[C_ORDERS_DONE] += np.uint64(1)
            _report(out_ctl, out_recs, wr, n_out, est, oid, r.sym, r.side, r.feed_ns, FILL_REJECTED,
                    0.0, 0.0, 0.0, 0.0, reason, 0, 0, np.uint64(0), now)
            n_out += 1
            continue
        o.id, o.sym, o.side, o.ot, o.tif = oid, r.sym, r.side, r.order_type, r.tif
        o.qty, o.px, o.filled, o.state, o.attempts = r.qty, r.limit_px, 0.0, NEW, 0
        o.next_try_ns, o.recv_clock, o.feed_ns, o.throttled, o.live = 0, clock, r.feed_ns, 0, 1
        e.open += 1
        if replace:
            _move(orig, E_REPLACE_REQ, counters)
            _move(o, E_SUBMIT, counters)
            o.attempts = 1
            submit(vs, rq, vp, rng, now, RQ_REPLACE, r.orig_order_id, oid, o.sym, o.side, o.ot, o.tif,
                   o.qty, o.px)
        else:
            pend[e.n_pend] = oid
            e.n_pend += 1
    spsc.release(in_ctl, k)
    return k, n_out


@njit(cache=True, _nrt=False)
def hand_off(now, eo, pend, est, hists, h_hand, counters, vs, vp, rq, rng, pi, pf):
    """Send the queued orders that are due to the venue, as the rate limiter allows."""
    e = est[0]
    if e.n_pend == 0:
        return 0
    mask = np.uint64(pi[P_MASK])
    rate, burst = pf[F_RATE], pf[F_BURST]
    if rate > 0.0:
        if e.tok_init == 0:
            e.tok, e.tok_ns, e.tok_init = burst, now, 1
        elif now > e.tok_ns:
            e.tok = min(burst, e.tok + (now - e.tok_ns) * rate / 1e9)
            e.tok_ns = now
    sent = 0
    keep = 0
    for i in range(e.n_pend):
        oid = pend[i]
        o = eo[np.int64(oid & mask)]
        if o.live == 0 or o.id != oid or o.state != NEW:
            continue                                    # canceled or gone: drop from the queue
        if now < o.next_try_ns:
            pend[keep] = oid
            keep += 1
            continue
        if rate > 0.0 and e.tok < 1.0:
            if o.throttled == 0:
                o.throttled = 1
                counters[C_THROTTLED] += np.uint64(1)
            pend[keep] = oid
            keep += 1
            continue
        if not submit(vs, rq, vp, rng, now, RQ_NEW, oid, np.uint64(0), o.sym, o.side, o.ot, o.tif,
                      o.qty, o.px):
            pend[keep] = oid                            # the link is full: next cycle
            keep += 1
            continue
        if rate > 0.0:
            e.tok -= 1.0
        _move(o, E_SUBMIT, counters)
        o.attempts += 1
        if o.attempts == 1:
            hdr_record(hists, h_hand, monotonic_ns() - o.recv_clock)
        sent += 1
    e.n_pend = keep
    return sent


@njit(cache=True, _nrt=False)
def apply_events(now, n_ev, ev, out_ctl, out_recs, wr, n_out, eo, pend, est, vp_seqs, vp_rows, vpos,
                 counters, rng, pi, pf):
    """Turn venue events into state changes and reports; return n_out."""
    mask = np.uint64(pi[P_MASK])
    e = est[0]
    for i in range(n_ev):
        x = ev[i]
        o = eo[np.int64(x.id & mask)]
        if o.live == 0 or o.id != x.id:
            if x.kind == EV_CANCEL_REJECT:          # the order ended before the cancel arrived
                counters[C_CANCEL_REJECTED] += np.uint64(1)
                _report(out_ctl, out_recs, wr, n_out, est, x.id, x.sym, x.side, 0,
                        FILL_CANCEL_REJECTED, 0.0, 0.0, 0.0, 0.0, x.reason, 0, 0, x.other, now)
                n_out += 1
            else:
                counters[C_ILLEGAL] += np.uint64(1)
            continue
        k = x.kind
        status = 0
        done = False
        if k == EV_ACK:
            if _move(o, E_ACCEPT, counters):
                status = FILL_ACCEPTED
        elif k == EV_FILL:
            complete = o.filled + x.qty >= o.qty - EPS
            if _move(o, E_FILL if complete else E_PARTIAL_FILL, counters):
                o.filled += x.qty
                status = FILL_FULL if complete else FILL_PARTIAL
                done = complete
                counters[C_EXECUTIONS] += np.uint64(1)
                _book_execution(vp_seqs, vp_rows, vpos, o.sym, o.side, x.qty, x.fee)
        elif k == EV_CANCELED:
            if _move(o, E_CANCELED, counters):
                status, done = FILL_CANCELED, True
        elif k == EV_REJECT:
            if _move(o, E_REJECT, counters):
                status, done = FILL_REJECTED, True
                counters[C_REJECTED] += np.uint64(1)
                if x.reason == REASON_NO_BOOK:
                    counters[C_NO_BOOK] += np.uint64(1)
        elif k == EV_EXPIRED:
            if _move(o, E_EXPIRE, counters):
                status, done = FILL_EXPIRED, True
        elif k == EV_REPLACED:
            if _move(o, E_REPLACED, counters):
                status, done = FILL_REPLACED, True
        elif k == EV_CANCEL_REJECT:
            counters[C_CANCEL_REJECTED] += np.uint64(1)
            ev_kind = E_REPLACE_REJECT if o.state == PENDING_REPLACE else E_CANCEL_REJECT
            if o.state == PENDING_CANCEL or o.state == PENDING_REPLACE:
                _move(o, ev_kind, counters)
            status = FILL_CANCEL_REJECTED
        elif k == EV_RETRY:
            counters[C_VENUE_ERRORS] += np.uint64(1)
            if _move(o, E_RETRY, counters):
                if o.attempts > pi[P_MAX_RETRIES]:
                    _move(o, E_REJECT, counters)
                    counters[C_RETRIES_EXHAUSTED] += np.uint64(1)
                    counters[C_REJECTED] += np.uint64(1)
                    status, done = FILL_REJECTED, True
                    x.reason = REASON_RETRIES_EXHAUSTED
                else:
                    b = min(pf[F_BACKOFF_CAP], pf[F_BACKOFF] * 2.0 ** (o.attempts - 1))
                    o.next_try_ns = now + np.int64(b * (1.0 - pf[F_JITTER] * uniform(rng)))
                    pend[e.n_pend] = o.id
                    e.n_pend += 1
                    counters[C_RETRIES] += np.uint64(1)
        if status == 0:
            continue
        leaves = 0.0 if done else max(o.qty - o.filled, 0.0)
        _report(out_ctl, out_recs, wr, n_out, est, o.id, o.sym, o.side, o.feed_ns, status,
                x.qty if k == EV_FILL else 0.0, x.px if k == EV_FILL else 0.0,
                x.fee if k == EV_FILL else 0.0, leaves, x.reason, x.liq, o.attempts, x.other, now)
        n_out += 1
        if done:
            o.live = 0
            e.open -= 1
            counters[C_ORDERS_DONE] += np.uint64(1)
    return n_out


@njit(cache=True, _nrt=False)
def exec_step(now, in_ctl, in_recs, out_ctl, out_recs, top_seqs, top_rows, top_buf, vp_seqs, vp_rows,
              vpos, hists, h_lat, h_t2o, h_hand, counters, eo, pend, est, vs, vp, rq, vo, rest, ev, rng,
              pi, pf, dep_seqs, dep_rows, dep_buf):
    """One duty cycle (see module doc); return records consumed + reports published."""
    want = np.int64(spsc.poll(in_ctl, pi[P_BATCH]))
    v = vs[0]
    if est[0].n_pend > 0 or v.rq_head < v.rq_tail or v.n_rest > 0 or \
            (vp[0].session_close_ns > 0 and v.closed == 0):
        want = pi[P_BATCH]
    if want == 0:
        return 0
    room = np.int64(spsc.claim(out_ctl, want))
    if room == 0:
        return 0
    clock = monotonic_ns()
    wr = spsc.head_of(out_ctl)
    k, n_out = intake(now, clock, in_ctl, in_recs, out_ctl, out_recs, wr, 0, room, eo, pend, est,
                      hists, h_lat, h_t2o, counters, vs, vp, rq, rng, vpos.shape[0], pi)
    sent = hand_off(now, eo, pend, est, hists, h_hand, counters, vs, vp, rq, rng, pi, pf)
    n_ev = venue_step(now, vs, vp, rq, vo, rest, ev, rng, top_seqs, top_rows, top_buf, dep_seqs, dep_rows,
                      dep_buf, room - n_out)
    n_out = apply_events(now, n_ev, ev, out_ctl, out_recs, wr, n_out, eo, pend, est, vp_seqs, vp_rows,
                         vpos, counters, rng, pi, pf)
    publish(out_ctl, out_recs, n_out)
    counters[C_FILLS_OUT] += np.uint64(n_out)
    return k + n_out + sent


@njit(cache=True, _nrt=False)
def exec_step_journaled(now, jrecs, jst, in_ctl, in_recs, *rest):
    """``exec_step`` after appending every order readable in the input ring, not yet journaled,
    to the order journal (``procs.journal.journal_ring``): param ``order_journal``."""
    journal_ring(in_ctl, in_recs, jrecs, jst)
    return exec_step(now, in_ctl, in_recs, *rest)


class ExecStage(Stage):
    """Order execution on the ``sim`` venue (see module doc).

    Params: ``venue`` ("sim"); venue model: ``latency_model`` (constant | uniform | lognormal |
    exponential), ``latency_us`` (0), ``latency_hi_us``, ``latency_sigma`` (0.5), ``error_rate``
    (0), ``venue_rate_per_sec`` (0 = no venue limit), ``fee_per_share`` (0.005), ``fee_bps`` (0),
    ``slippage_bps`` (0), ``liquidity`` ("top" | "unlimited"), ``session_close_s`` (0 = none),
    ``seed``; router: ``rate_limit_per_sec`` (0 = off), ``rate_limit_burst`` (= rate),
    ``max_retries`` (5), ``backoff_ms`` (1), ``backoff_cap_ms`` (100), ``jitter`` (0.5),
    ``open_orders`` (65536, power of two), ``batch`` (256); journal: ``order_journal``
    (absent = none; ``{ path = "runs/journal-{engine}-{pid}/orders.npy", capacity = 1048576,
    overwrite = false }``: every ORDER record received from risk, in ring order, appended to a
    ``.npy`` file, see ``procs.journal``).
    """

    INPUTS = ("order",)
    OUTPUTS = ("fill",)
    TABLES = {"venue_positions": (POSITION, "symbols")}
    HISTOGRAMS = ("latency", "tick_to_order", "handoff")
    COUNTERS = ("orders_in", "fills_out", "cancels_in", "replaces_in", "executions", "orders_done",
                "rejected", "rejected_no_book", "bad_order", "duplicate_order_id", "venue_errors",
                "retries", "retries_exhausted", "throttled", "cancel_rejected", "illegal_transitions")
    PARAMS = ("venue", "latency_model", "latency_us", "latency_hi_us", "latency_sigma", "error_rate",
              "venue_rate_per_sec", "fee_per_share", "fee_bps", "slippage_bps", "liquidity",
              "session_close_s", "seed", "rate_limit_per_sec", "rate_limit_burst", "max_retries",
              "backoff_ms", "backoff_cap_ms", "jitter", "open_orders", "batch", "order_journal")

    def __init__(self, ctx):
        super().__init__(ctx)
        check_keys(ctx, self.PARAMS)
        venue = ctx.param("venue", "sim", kind=str)
        if venue != "sim":
            raise ValueError(f"stages.{ctx.name}.params.venue: only 'sim' is built in, got {venue!r}")
        model = ctx.param("latency_model", "constant", kind=str)
        if model not in LATENCY_MODELS:
            raise ValueError(f"stages.{ctx.name}.params.latency_model: one of {', '.join(LATENCY_MODELS)}, "
                             f"got {model!r}")
        liq = ctx.param("liquidity", "top", kind=str)
        if liq not in LIQUIDITY_MODELS:
            raise ValueError(f"stages.{ctx.name}.params.liquidity: one of {', '.join(LIQUIDITY_MODELS)}, "
                             f"got {liq!r}")
        lat = float_param(ctx, "latency_us", 0.0, lo=0.0)
        lat_hi = float_param(ctx, "latency_hi_us", lat, lo=lat)
        self.fee = float_param(ctx, "fee_per_share", 0.005, lo=0.0)
        vp = venue_params(model, lat, lat_hi, float_param(ctx, "latency_sigma", 0.5, lo=0.0),
                          float_param(ctx, "error_rate", 0.0, lo=0.0, hi=1.0),
                          float_param(ctx, "venue_rate_per_sec", 0.0, lo=0.0), self.fee,
                          float_param(ctx, "fee_bps", 0.0, lo=0.0),
                          float_param(ctx, "slippage_bps", 0.0, lo=0.0, hi=10_000.0), liq,
                          float_param(ctx, "session_close_s", 0.0, lo=0.0))
        cap = int_param(ctx, "open_orders", 65536, lo=2, hi=1 << 24, power_of_two=True)
        self.batch = int_param(ctx, "batch", 256, lo=1)
        rate = float_param(ctx, "rate_limit_per_sec", 0.0, lo=0.0)
        burst = float_param(ctx, "rate_limit_burst", max(rate, 1.0), lo=1.0)
        self.venue = SimVenue(vp, seed=int_param(ctx, "seed", 0), orders=cap,
                              events=max(64, 2 * self.batch + 8))
        self.inp, self.out = ctx.input("order"), ctx.output("fill")
        self.table = ctx.tables["venue_positions"]
        n = len(self.table)
        self.vpos = np.zeros(n, POSITION)         # private working copy; the table is its snapshot
        self.vpos["sym"] = np.arange(n)
        tops = ctx.tables.get("tops")
        self.top_seqs = tops.seqs if tops is not None else np.zeros(0, np.uint64)
        self.top_rows = tops.rows if tops is not None else np.zeros(0, TOP)
        self.top_buf = np.zeros(1, TOP)
        depth = ctx.tables.get("depth")               # the book's top-N levels, when it has them
        if depth is not None and depth.rows.dtype != DEPTH:
            depth = None
        self.dep_seqs = depth.seqs if depth is not None else np.zeros(0, np.uint64)
        self.dep_rows = depth.rows if depth is not None else np.zeros(0, DEPTH)
        self.dep_buf = np.zeros(1, DEPTH)
        self.eo = np.zeros(cap, EXEC_ORDER)
        self.pend = np.zeros(cap, np.uint64)
        self.est = np.zeros(1, EXEC_STATE)
        self.est["next_fill_id"] = 1
        self.pi = np.array([self.batch, cap - 1, int_param(ctx, "max_retries", 5, lo=0)], np.int64)
        self.pf = np.array([float_param(ctx, "backoff_ms", 1.0, lo=0.0) * 1e6,
                            float_param(ctx, "backoff_cap_ms", 100.0, lo=0.0) * 1e6,
                            float_param(ctx, "jitter", 0.5, lo=0.0, hi=1.0), rate, burst])
        self.h_lat, self.h_t2o = ctx.hist("latency"), ctx.hist("tick_to_order")
        self.h_hand = ctx.hist("handoff")
        spec = ctx.params.get("order_journal")
        self.order_journal = None if spec is None else PendingJournal(
            ctx, spec, f"stages.{ctx.name}.params.order_journal", ORDER, kind="order",
            default_capacity=DEFAULT_ORDER_CAPACITY, seq_field=None)

    # -- wiring: orders only from risk -------------------------------------------------------
    def check_order_source(self) -> None:
        """Refuse an order ring that the risk stage does not produce (see module doc)."""
        check_order_source(self)

    # -- engine interface ----------------------------------------------------------------------
    def _args(self):
        ctx, t = self.ctx, self.table
        vs, vp, rq, vo, rest, ev, rng = self.venue.arrays()
        return (self.inp.ctl, self.inp.recs, self.out.ctl, self.out.recs, self.top_seqs, self.top_rows,
                self.top_buf, t.seqs, t.rows, self.vpos, ctx.hists, self.h_lat, self.h_t2o, self.h_hand,
                ctx.counters, self.eo, self.pend, self.est, vs, vp, rq, vo, rest, ev, rng, self.pi,
                self.pf, self.dep_seqs, self.dep_rows, self.dep_buf)

    def do_work(self, now_ns: int) -> int:
        head = int(self.out.ctl[IDX_HEAD])
        if self.order_journal is None:
            k = exec_step(now_ns, *self._args())
        else:
            j = self.order_journal.open()
            k = exec_step_journaled(now_ns, j.recs, j.st, *self._args())
        if k and int(self.out.ctl[IDX_HEAD]) != head:
            self.wake_consumers()
        return k

    def kernel(self):
        """(step, args, takes_now) for the process's jitted duty loop (see pyrt_shm.jit_loop)."""
        if self.order_journal is None:
            return exec_step, self._args(), True
        j = self.order_journal.open()
        return exec_step_journaled, (j.recs, j.st, *self._args()), True

    def warm_up(self) -> None:
        self.check_order_source()
        a = list(self._args())
        for i, n in {0: None, 1: 2, 2: None, 3: 2, 4: None, 5: None, 7: None, 8: None, 10: 1,
                     14: None, 27: None, 28: None}.items():
            a[i] = twin(a[i], n)
        for i in (6, 9, 15, 16, 17, 18, 20, 21, 22, 23, 24, 29):   # private state: copies
            a[i] = a[i].copy()
        a[11] = a[12] = a[13] = 0
        exec_step(0, *a)
        if self.order_journal is not None:
            j = self.order_journal.open()
            exec_step_journaled(0, twin(j.recs, 1), j.st.copy(), *a)

    def on_close(self) -> None:
        """Finish the order journal, if there is one (in the process that wrote it)."""
        if self.order_journal is not None:
            self.order_journal.finish()
