"""The ``sim`` venue: matches exec's orders against the live book, with latency and a queue model.

Exec hands requests (new, cancel, replace) to the venue with ``submit``; they arrive after
the latency model's delay, in the order they were sent (one connection: a request never
overtakes the one before it, so its arrival is ``max(now + latency, previous arrival)``).
``venue_step`` processes what has arrived and re-evaluates resting orders against the
``tops`` table, writing venue events (ack, fill, cancel, reject, expire, replaced, cancel
reject, retry) into an event buffer exec turns into reports.

**Latency** (``latency_model``): ``constant`` (``latency_us``), ``uniform`` (between
``latency_us`` and ``latency_hi_us``), ``lognormal`` (median ``latency_us``, log-sd
``latency_sigma``), ``exponential`` (mean ``latency_us``); seeded, deterministic.

**A new order on arrival** (reasons are FILL.reason codes):

* no valid top for the symbol -> reject ``NO_BOOK``; after the session close -> reject
  ``SESSION_CLOSED``; an id seen before -> reject ``DUPLICATE``;
* ``error_rate``: that share of arrivals gets a retryable ``VENUE_BUSY``; above the venue's
  own ``venue_rate_per_sec`` (token bucket) a retryable ``RATE_LIMITED`` (exec retries both);
* marketable (market, buy limit >= ask, sell limit <= bid): takes the displayed liquidity
  (``liquidity = "top"``): when the book's ``depth`` table has a valid row for the symbol
  whose first level is the touch, it walks the levels (up to the limit price) and fills at
  their volume-weighted price; otherwise it takes up to the size at the touch.
  ``"unlimited"``: any quantity at the touch. The fill price then moves ``slippage_bps``
  against the order (taker). FOK: if the liquidity is short, the whole order is canceled
  (``FOK_UNFILLED``) before any fill. The rest of a market or IOC order is canceled
  (``IOC_REMAINDER``); the rest of a DAY/GTC limit rests at its limit at the front of the
  queue (it is the best price);
* not marketable: IOC/FOK -> canceled (``NOT_MARKETABLE``); DAY/GTC -> acknowledged and
  resting, **behind the quantity displayed at its price when it arrived** (``queue`` =
  bid size if the buy limit equals the bid; 0 if it improves the bid; behind the touch: the
  size of its level in the ``depth`` table, or, without one, the displayed size when the
  level becomes the touch).

**A resting order** (buy at ``px``; sells mirror), each time its symbol's top changes:

* the ask comes down to ``px`` or below: the market traded through the level; the rest
  fills at ``px`` (maker);
* the bid is at ``px``: a drop of the displayed size by ``d`` is taken as executions from
  the front of the queue: ``queue`` shrinks by up to ``d`` and what is left of ``d`` fills
  the order (partial fills; maker, at ``px``); growth joins behind it;
* the bid falls below ``px`` after being at it: the level emptied; the whole last size
  counts as executed (same rule);
* DAY orders expire at ``session_close_s`` after the first cycle (0 = no close).

Fees on every fill: ``fee_per_share * qty + fee_bps * 1e-4 * qty * price``.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from layouts.orders import BUY, ORDER_MARKET, TIF_DAY, TIF_FOK, TIF_IOC
from ringbuf._atomics import load_acquire

from ringbuf.seqlock import read_row

from .prng import normal, uniform
from .risk_checks import READ_TRIES, read_top

try:                                   # the book's top-N levels (layouts.market.DEPTH), if any
    from layouts.market import DEPTH
except ImportError:                    # pragma: no cover - a build without L2 depth
    DEPTH = np.dtype([("sym", "<u4"), ("valid", "<u4"), ("n_bid", "<u4"), ("n_ask", "<u4"),
                      ("bid_px", "<f8", (1,)), ("bid_size", "<f8", (1,)), ("ask_px", "<f8", (1,)),
                      ("ask_size", "<f8", (1,))], align=True)

EPS = 1e-9

# Requests (exec -> venue).
RQ_NEW, RQ_CANCEL, RQ_REPLACE = 1, 2, 3
# Events (venue -> exec).
(EV_ACK, EV_FILL, EV_CANCELED, EV_REJECT, EV_EXPIRED, EV_REPLACED, EV_CANCEL_REJECT,
 EV_RETRY) = range(1, 9)

#: FILL.reason codes (venue and exec).
REASON_NONE = 0
REASON_NO_BOOK = 1
REASON_NOT_MARKETABLE = 2       #: IOC/FOK limit that could not trade on arrival
REASON_DUPLICATE_ID = 3
REASON_BAD_ORDER = 4
REASON_VENUE_BUSY = 5           #: retryable
REASON_RATE_LIMITED = 6         #: retryable
REASON_RETRIES_EXHAUSTED = 7
REASON_UNKNOWN_ORDER = 8        #: cancel/replace of an order the venue no longer has (too late)
REASON_SESSION_CLOSED = 9
REASON_FOK_UNFILLED = 10
REASON_IOC_REMAINDER = 11
REASON_TABLE_FULL = 12
REASON_REPLACE_FAILED = 13
REASON_CANCELED = 14            #: canceled on request
REASON_DAY_EXPIRED = 15
REASON_NAMES = {REASON_NONE: "none", REASON_NO_BOOK: "no_book",
                REASON_NOT_MARKETABLE: "not_marketable", REASON_DUPLICATE_ID: "duplicate_id",
                REASON_BAD_ORDER: "bad_order", REASON_VENUE_BUSY: "venue_busy",
                REASON_RATE_LIMITED: "rate_limited", REASON_RETRIES_EXHAUSTED: "retries_exhausted",
                REASON_UNKNOWN_ORDER: "unknown_order", REASON_SESSION_CLOSED: "session_closed",
                REASON_FOK_UNFILLED: "fok_unfilled", REASON_IOC_REMAINDER: "ioc_remainder",
                REASON_TABLE_FULL: "table_full", REASON_REPLACE_FAILED: "replace_failed",
                REASON_CANCELED: "canceled", REASON_DAY_EXPIRED: "day_expired"}
RETRYABLE = (REASON_VENUE_BUSY, REASON_RATE_LIMITED)

LAT_CONSTANT, LAT_UNIFORM, LAT_LOGNORMAL, LAT_EXPONENTIAL = range(4)
LATENCY_MODELS = {"constant": LAT_CONSTANT, "uniform": LAT_UNIFORM, "lognormal": LAT_LOGNORMAL,
                  "exponential": LAT_EXPONENTIAL}
LIQ_TOP, LIQ_UNLIMITED = 0, 1
LIQUIDITY_MODELS = {"top": LIQ_TOP, "unlimited": LIQ_UNLIMITED}

VENUE_PARAMS = np.dtype([("latency_model", "<i8"), ("lat_a", "<f8"), ("lat_b", "<f8"),
                         ("error_rate", "<f8"), ("venue_rate", "<f8"), ("fee_per_share", "<f8"),
                         ("fee_bps", "<f8"), ("slippage_bps", "<f8"), ("liquidity", "<i8"),
                         ("session_close_ns", "<i8")], align=True)
VENUE_STATE = np.dtype([("start_ns", "<i8"), ("last_due", "<i8"), ("rq_head", "<i8"),
                        ("rq_tail", "<i8"), ("ev_n", "<i8"), ("n_rest", "<i8"), ("tok", "<f8"),
                        ("tok_ns", "<i8"), ("tok_init", "<i8"), ("closed", "<i8"),
                        ("arrivals", "<i8"), ("ver_sum", "<u8"), ("dead", "<i8")], align=True)
VENUE_ORDER = np.dtype([("id", "<u8"), ("live", "<i8"), ("sym", "<i8"), ("side", "<i8"),
                        ("ot", "<i8"), ("tif", "<i8"), ("qty", "<f8"), ("filled", "<f8"),
                        ("px", "<f8"), ("queue", "<f8"), ("level_known", "<i8"),
                        ("last_size", "<f8"), ("top_ver", "<u8"), ("at_touch", "<i8")], align=True)
REQUEST = np.dtype([("kind", "<i8"), ("id", "<u8"), ("new_id", "<u8"), ("sym", "<i8"),
                    ("side", "<i8"), ("ot", "<i8"), ("tif", "<i8"), ("qty", "<f8"), ("px", "<f8"),
                    ("due", "<i8")], align=True)
EVENT = np.dtype([("kind", "<i8"), ("id", "<u8"), ("qty", "<f8"), ("px", "<f8"), ("fee", "<f8"),
                  ("leaves", "<f8"), ("reason", "<i8"), ("liq", "<i8"), ("other", "<u8"),
                  ("sym", "<i8"), ("side", "<i8")], align=True)


# Compiled without numba's reference counting (``_nrt=False``), like exec's step that calls
# them: nothing here allocates, and with NRT every array argument costs an atomic
# incref/decref pair per call.
@njit(cache=True, _nrt=False)
def latency_ns(vp, rng):
    """One draw of the request latency (ns)."""
    m = vp.latency_model
    if m == LAT_CONSTANT:
        return np.int64(vp.lat_a)
    if m == LAT_UNIFORM:
        return np.int64(vp.lat_a + (vp.lat_b - vp.lat_a) * uniform(rng))
    if m == LAT_LOGNORMAL:
        return np.int64(vp.lat_a * math.exp(vp.lat_b * normal(rng)))
    return np.int64(-vp.lat_a * math.log(1.0 - uniform(rng)))


@njit(cache=True, _nrt=False)
def submit(vs, rq, vp, rng, now, kind, oid, new_id, sym, side, ot, tif, qty, px):
    """Hand one request to the venue (FIFO, arrives after the latency). False if the link is full."""
    v = vs[0]
    cap = rq.shape[0]
    if v.rq_tail - v.rq_head >= cap:
        return False
    due = now + latency_ns(vp[0], rng)
    if due < v.last_due:
        due = v.last_due
    v.last_due = due
    r = rq[v.rq_tail & (cap - 1)]
    r.kind, r.id, r.new_id, r.sym, r.side, r.ot, r.tif = kind, oid, new_id, sym, side, ot, tif
    r.qty, r.px, r.due = qty, px, due
    v.rq_tail += 1
    return True


@njit(cache=True, inline="always")
def _event(ev, vs, kind, oid, qty, px, fee, leaves, reason, liq, other, sym, side):
    v = vs[0]
    e = ev[v.ev_n]
    e.kind, e.id, e.qty, e.px, e.fee, e.leaves = kind, oid, qty, px, fee, leaves
    e.reason, e.liq, e.other, e.sym, e.side = reason, liq, other, sym, side
    v.ev_n += 1


@njit(cache=True, inline="always")
def fee_of(vp, q, px):
    return vp.fee_per_share * q + vp.fee_bps * 1e-4 * q * px


@njit(cache=True, _nrt=False)
def _compact(vs, vo, rest):
    """Drop the rest-list entries of orders that are no longer resting."""
    v = vs[0]
    mask = np.uint64(vo.shape[0] - 1)
    j = 0
    for i in range(v.n_rest):
        o = vo[np.int64(rest[i] & mask)]
        if o.id == rest[i] and o.live != 0:
            rest[j] = rest[i]
            j += 1
    v.n_rest = j
    v.dead = 0


@njit(cache=True, _nrt=False)
def _rest_add(vs, vo, rest, o, oid):
    v = vs[0]
    if v.n_rest >= rest.shape[0]:
        _compact(vs, vo, rest)           # every live order has a slot, so there is room now
    rest[v.n_rest] = oid
    v.n_rest += 1
    o.live = 1


@njit(cache=True, _nrt=False)
def _fill(ev, vs, vp, o, q, px, liq):
    """Fill ``q`` of venue order ``o`` at ``px``; return True if it is now complete."""
    o.filled += q
    leaves = max(o.qty - o.filled, 0.0)
    if leaves <= EPS:
        leaves = 0.0
    _event(ev, vs, EV_FILL, o.id, q, px, fee_of(vp[0], q, px), leaves, REASON_NONE, liq,
           np.uint64(0), o.sym, o.side)
    return leaves == 0.0


@njit(cache=True, _nrt=False)
def _read_depth(dep_seqs, dep_rows, sym, dep_buf, touch, buy):
    """True if the symbol has a valid depth row whose best level on the taken side is ``touch``."""
    if sym >= dep_rows.shape[0] or read_row(dep_seqs, dep_rows, sym, dep_buf, READ_TRIES) == 0:
        return False
    d = dep_buf[0]
    if d.valid == 0:
        return False
    if buy:
        return d.n_ask > 0 and d.ask_px[0] == touch
    return d.n_bid > 0 and d.bid_px[0] == touch


@njit(cache=True, _nrt=False)
def _walk(dep_buf, buy, qty, limit, is_limit):
    """(quantity, volume-weighted price) a taker of ``qty`` gets from the depth levels."""
    d = dep_buf[0]
    n = d.n_ask if buy else d.n_bid
    rem = qty
    notional = 0.0
    for k in range(min(np.int64(n), d.ask_px.shape[0])):
        lp = d.ask_px[k] if buy else d.bid_px[k]
        sz = d.ask_size[k] if buy else d.bid_size[k]
        if is_limit and ((buy and lp > limit) or (not buy and lp < limit)):
            break
        t = min(rem, sz)
        notional += t * lp
        rem -= t
        if rem <= EPS:
            break
    got = qty - max(rem, 0.0)
    return got, (notional / got if got > EPS else 0.0)


@njit(cache=True, _nrt=False)
def _depth_size(dep_seqs, dep_rows, sym, dep_buf, buy, px):
    """Size of our side's level at ``px`` in the depth table, or -1 if unknown."""
    if sym >= dep_rows.shape[0] or read_row(dep_seqs, dep_rows, sym, dep_buf, READ_TRIES) == 0:
        return -1.0
    d = dep_buf[0]
    if d.valid == 0:
        return -1.0
    n = d.n_bid if buy else d.n_ask
    for k in range(min(np.int64(n), d.bid_px.shape[0])):
        lp = d.bid_px[k] if buy else d.ask_px[k]
        if lp == px:
            return d.bid_size[k] if buy else d.ask_size[k]
    return -1.0


@njit(cache=True, _nrt=False)
def _arrive(now, vs, vp, vo, rest, ev, rng, top_seqs, top_rows, top_buf, dep_seqs, dep_rows, dep_buf,
            oid, sym, side, ot, tif, qty, px, replaced):
    """A new order (or a replacement of ``replaced`` != 0) arrives at the venue. Return False if
    it was turned away (a refused replacement leaves the original as it was)."""
    v = vs[0]
    p = vp[0]
    mask = np.uint64(vo.shape[0] - 1)
    valid, bid, ask = read_top(top_seqs, top_rows, sym, top_buf)
    o = vo[np.int64(oid & mask)]
    reason = REASON_NONE
    if v.closed != 0:
        reason = REASON_SESSION_CLOSED
    elif not valid:
        reason = REASON_NO_BOOK
    elif o.id == oid:
        reason = REASON_DUPLICATE_ID
    elif o.live != 0:
        reason = REASON_TABLE_FULL
    if reason != REASON_NONE:
        _event(ev, vs, EV_REJECT, oid, 0.0, 0.0, 0.0, 0.0, reason, 0, np.uint64(0), sym, side)
        if replaced != 0:
            _event(ev, vs, EV_CANCEL_REJECT, replaced, 0.0, 0.0, 0.0, 0.0, REASON_REPLACE_FAILED, 0,
                   oid, sym, side)
        return False
    if replaced == 0:
        if p.error_rate > 0.0 and uniform(rng) < p.error_rate:
            _event(ev, vs, EV_RETRY, oid, 0.0, 0.0, 0.0, qty, REASON_VENUE_BUSY, 0, np.uint64(0), sym, side)
            return False
        if p.venue_rate > 0.0:
            if v.tok_init == 0:
                v.tok, v.tok_ns, v.tok_init = p.venue_rate, now, 1
            elif now > v.tok_ns:
                v.tok = min(p.venue_rate, v.tok + (now - v.tok_ns) * p.venue_rate / 1e9)
                v.tok_ns = now
            if v.tok < 1.0:
                _event(ev, vs, EV_RETRY, oid, 0.0, 0.0, 0.0, qty, REASON_RATE_LIMITED, 0, np.uint64(0), sym, side)
                return False
            v.tok -= 1.0
    v.arrivals += 1
    o.id, o.live, o.sym, o.side, o.ot, o.tif = oid, 0, sym, side, ot, tif
    o.qty, o.filled, o.px, o.queue, o.level_known, o.last_size, o.at_touch = qty, 0.0, px, 0.0, 0, 0.0, 0
    if replaced != 0:
        _event(ev, vs, EV_REPLACED, replaced, 0.0, 0.0, 0.0, 0.0, REASON_NONE, 0, oid, sym, side)
    buy = side == BUY
    touch = ask if buy else bid
    marketable = ot == ORDER_MARKET or (buy and px >= ask) or (not buy and px <= bid)
    if marketable:
        vwap = touch
        if p.liquidity == LIQ_UNLIMITED:
            take = qty
        elif _read_depth(dep_seqs, dep_rows, sym, dep_buf, touch, buy):
            take, vwap = _walk(dep_buf, buy, qty, px, ot != ORDER_MARKET)
        else:
            take = min(qty, top_buf[0].ask_size if buy else top_buf[0].bid_size)
        if tif == TIF_FOK and take < qty - EPS:
            _event(ev, vs, EV_CANCELED, oid, 0.0, 0.0, 0.0, 0.0, REASON_FOK_UNFILLED, 0, np.uint64(0), sym, side)
            return True
        slip = p.slippage_bps * 1e-4
        fpx = vwap * (1.0 + slip) if buy else vwap * (1.0 - slip)
        done = False
        if take > EPS:
            done = _fill(ev, vs, vp, o, take, fpx, 1)
        else:
            _event(ev, vs, EV_ACK, oid, 0.0, 0.0, 0.0, qty, REASON_NONE, 0, np.uint64(0), sym, side)
        if done:
            return True
        if ot == ORDER_MARKET or tif == TIF_IOC or tif == TIF_FOK:
            _event(ev, vs, EV_CANCELED, oid, 0.0, 0.0, 0.0, 0.0, REASON_IOC_REMAINDER, 0, np.uint64(0), sym, side)
            return True
        o.level_known, o.queue, o.last_size = 1, 0.0, 0.0     # rests at the best price, alone
    else:
        if tif == TIF_IOC or tif == TIF_FOK:
            _event(ev, vs, EV_CANCELED, oid, 0.0, 0.0, 0.0, 0.0, REASON_NOT_MARKETABLE, 0, np.uint64(0), sym, side)
            return True
        _event(ev, vs, EV_ACK, oid, 0.0, 0.0, 0.0, qty, REASON_NONE, 0, np.uint64(0), sym, side)
        same = top_buf[0].bid if buy else top_buf[0].ask
        size = top_buf[0].bid_size if buy else top_buf[0].ask_size
        if px == same:
            o.level_known, o.queue, o.last_size, o.at_touch = 1, size, size, 1
        elif (buy and px > bid) or (not buy and px < ask):
            o.level_known, o.queue, o.last_size = 1, 0.0, 0.0
        else:                                 # behind the touch: the depth table knows the level
            lvl = _depth_size(dep_seqs, dep_rows, sym, dep_buf, buy, px)
            if lvl >= 0.0:
                o.level_known, o.queue, o.last_size = 1, lvl, lvl
    o.top_ver = load_acquire(top_seqs, sym) if sym < top_seqs.shape[0] else np.uint64(0)
    _rest_add(vs, vo, rest, o, oid)
    return True


@njit(cache=True, _nrt=False)
def _consume(ev, vs, vp, o, d):
    """``d`` shares left the order's level: the queue ahead first, then the order. True if done."""
    dq = min(o.queue, d)
    o.queue -= dq
    r = d - dq
    if r > EPS:
        return _fill(ev, vs, vp, o, min(r, o.qty - o.filled), o.px, 2)
    return False


@njit(cache=True, _nrt=False)
def _evaluate(ev, vs, vp, o, top_seqs, top_rows, top_buf):
    """Re-evaluate a resting order against its symbol's top; True if it is done."""
    valid, bid, ask = read_top(top_seqs, top_rows, o.sym, top_buf)
    if not valid:
        return False
    buy = o.side == BUY
    px = o.px
    far = ask if buy else bid                 # the opposite touch
    near = bid if buy else ask                # our side's touch
    size = top_buf[0].bid_size if buy else top_buf[0].ask_size
    if (buy and far <= px) or (not buy and far >= px):
        return _fill(ev, vs, vp, o, o.qty - o.filled, px, 2)
    if near == px:
        o.at_touch = 1
        if o.level_known == 0:
            o.level_known, o.queue, o.last_size = 1, size, size
            return False
        done = False
        if size < o.last_size:
            done = _consume(ev, vs, vp, o, o.last_size - size)
        o.last_size = size
        return done
    if (buy and near < px) or (not buy and near > px):
        done = False
        if o.level_known != 0 and o.last_size > 0.0:
            done = _consume(ev, vs, vp, o, o.last_size)
        o.last_size = 0.0
        o.level_known = 1
        o.at_touch = 0
        return done
    o.at_touch = 0                            # behind the touch: wait
    return False


@njit(cache=True, _nrt=False)
def venue_step(now, vs, vp, rq, vo, rest, ev, rng, top_seqs, top_rows, top_buf, dep_seqs, dep_rows, dep_buf,
               max_events):
    """Process arrived requests, resting orders and the session close. Return events written."""
    v = vs[0]
    v.ev_n = 0
    if v.start_ns == 0:
        v.start_ns = now if now != 0 else 1
    top = min(max_events, ev.shape[0])
    limit = top - 1                               # a resting order writes at most one event
    mask = np.uint64(vo.shape[0] - 1)
    cap = rq.shape[0]
    while v.rq_head < v.rq_tail:
        r = rq[v.rq_head & (cap - 1)]
        # events a request can write: cancel 1; new 2 (fill + cancel of the rest); replace 3
        need = 1 if r.kind == RQ_CANCEL else (2 if r.kind == RQ_NEW else 3)
        if r.due > now or v.ev_n + need > top:
            break
        v.rq_head += 1
        if r.kind == RQ_NEW:
            _arrive(now, vs, vp, vo, rest, ev, rng, top_seqs, top_rows, top_buf, dep_seqs, dep_rows, dep_buf,
                    r.id, r.sym, r.side, r.ot, r.tif, r.qty, r.px, np.uint64(0))
        else:
            o = vo[np.int64(r.id & mask)]
            if o.id != r.id or o.live == 0:
                _event(ev, vs, EV_CANCEL_REJECT, r.id, 0.0, 0.0, 0.0, 0.0, REASON_UNKNOWN_ORDER, 0,
                       r.new_id, r.sym, r.side)
                if r.kind == RQ_REPLACE:
                    _event(ev, vs, EV_REJECT, r.new_id, 0.0, 0.0, 0.0, 0.0, REASON_REPLACE_FAILED, 0,
                           np.uint64(0), r.sym, r.side)
                continue
            if r.kind == RQ_CANCEL:
                o.live = 0                        # leaves the rest list below
                v.dead += 1
                _event(ev, vs, EV_CANCELED, r.id, 0.0, 0.0, 0.0, o.qty - o.filled, REASON_CANCELED, 0,
                       np.uint64(0), o.sym, o.side)
            elif _arrive(now, vs, vp, vo, rest, ev, rng, top_seqs, top_rows, top_buf, dep_seqs, dep_rows,
                         dep_buf, r.new_id, o.sym, o.side, r.ot, r.tif, r.qty, r.px, r.id):
                o.live = 0                        # replaced
                v.dead += 1
    # session close: DAY orders expire, nothing new is accepted
    p = vp[0]
    if v.closed == 0 and p.session_close_ns > 0 and now - v.start_ns >= p.session_close_ns:
        v.closed = 1
        for i in range(v.n_rest):
            o = vo[np.int64(rest[i] & mask)]
            if o.live != 0 and o.id == rest[i] and o.tif == TIF_DAY:
                if v.ev_n >= top:
                    v.closed = 0                  # no room: finish the close next cycle
                    break
                o.live = 0
                v.dead += 1
                _event(ev, vs, EV_EXPIRED, o.id, 0.0, 0.0, 0.0, o.qty - o.filled, REASON_DAY_EXPIRED, 0,
                       np.uint64(0), o.sym, o.side)
    # resting orders whose top changed (only when some top changed, or to drop dead entries);
    # the list is compacted as orders leave it
    vsum = np.uint64(0)
    for s in range(top_seqs.shape[0]):
        vsum += load_acquire(top_seqs, s)
    if vsum == v.ver_sum and v.dead == 0:
        return v.ev_n
    complete = True
    j = 0
    n = v.n_rest
    for i in range(n):
        oid = rest[i]
        o = vo[np.int64(oid & mask)]
        if o.id != oid or o.live == 0:
            continue
        if o.sym < top_seqs.shape[0]:
            ver = load_acquire(top_seqs, o.sym)
            if ver != o.top_ver:
                if v.ev_n <= limit:
                    o.top_ver = ver
                    if _evaluate(ev, vs, vp, o, top_seqs, top_rows, top_buf):
                        o.live = 0
                        continue
                else:
                    complete = False          # no room for its event: look again next cycle
        rest[j] = oid
        j += 1
    v.n_rest = j
    v.dead = 0
    if complete:
        v.ver_sum = vsum
    return v.ev_n


def venue_params(latency_model="constant", latency_us=0.0, latency_hi_us=0.0, latency_sigma=0.5,
                 error_rate=0.0, venue_rate_per_sec=0.0, fee_per_share=0.005, fee_bps=0.0,
                 slippage_bps=0.0, liquidity="top", session_close_s=0.0) -> np.ndarray:
    """A 1-row VENUE_PARAMS array (plain values; validation is the stage's)."""
    p = np.zeros(1, VENUE_PARAMS)
    p["latency_model"] = LATENCY_MODELS[latency_model]
    p["lat_a"] = latency_us * 1e3
    p["lat_b"] = latency_hi_us * 1e3 if latency_model == "uniform" else latency_sigma
    p["error_rate"], p["venue_rate"] = error_rate, venue_rate_per_sec
    p["fee_per_share"], p["fee_bps"], p["slippage_bps"] = fee_per_share, fee_bps, slippage_bps
    p["liquidity"] = LIQUIDITY_MODELS[liquidity]
    p["session_close_ns"] = int(session_close_s * 1e9)
    return p


class SimVenue:
    """The venue's private state (arrays the jitted functions share), sized at construction."""

    def __init__(self, params: np.ndarray, seed: int = 0, orders: int = 65536, link: int = 4096,
                 events: int = 512):
        from .prng import new_state

        self.vp = params
        self.vs = np.zeros(1, VENUE_STATE)
        self.rq = np.zeros(link, REQUEST)
        self.vo = np.zeros(orders, VENUE_ORDER)
        self.rest = np.zeros(orders, np.uint64)
        self.ev = np.zeros(events, EVENT)
        self.rng = new_state(seed)

    def arrays(self):
        return self.vs, self.vp, self.rq, self.vo, self.rest, self.ev, self.rng
