"""``RiskStage``: pre-trade checks, algo slicing, positions and P&L, post-trade limits, kill switch.

Why risk owns all of it: exec reads orders only from risk's ring, so every order passes
here, and fills come back here, so this is the one place that knows what is open, what is
held and what it is worth. Every decision is counted by reason.

One duty cycle (``risk_step(now, ...)``; ``now`` is the loop's clock, injected in tests):

1. **Reports** (fills, acks, cancels, rejects) from exec, up to ``batch``, unconditionally
   (they produce no output, so the risk <-> exec cycle cannot deadlock): update the open
   order, the position (``procs.risk_pnl``: average cost or FIFO, fees), the algo parent.
2. **Control**: the kill switch, or trading state HALTED (set by anyone), first seen ->
   every algo parent stops and a cancel sweep starts (``risk_state.kill_seen_ns``).
3. **Post-trade**: symbols whose top of book changed (seqlock version) are marked to the
   mid (unrealized, net P&L, trailing reference); the portfolio (equity, peak, drawdown,
   day P&L, gross/net exposure, buying power) is recomputed when anything changed; a day
   loss or drawdown beyond the limits sets trading state HALTED (``auto_halts``,
   ``risk_state.halt_reason``; with ``auto_halt = false`` the pre-trade checks reject
   non-reducing orders instead) and starts the sweep at once; a position whose mark
   reaches its stop-loss or trailing-stop level gets one market IOC order that flattens it
   (net of reducing orders already open), through the pre-trade checks, where, reducing,
   it is exempt from the exposure checks (``stop_loss`` / ``trailing_stop``; a rejected
   stop order is retried after ``algo_retry_ms``).
4. **Cancel sweep**: every open order gets one ORDER with ``ACTION_CANCEL``
   (``cancels_out``), as many per cycle as the order ring has room for, until all the
   orders open when it started have one (``risk_state.cancels_sent_ns``).
5. **Algos** (``procs.algos``): due TWAP/VWAP/iceberg children, each through the checks.
6. **Intents**, up to the order slots left: a plain intent through the checks
   (``procs.risk_checks.pretrade``) becomes an ORDER or a counted rejection; an algo
   intent becomes a parent (``algo_parents``) after the state checks.
7. Every ``pnl_sample_ms`` the portfolio is appended to ``pnl_history`` (VaR/CVaR input).

Accounting (checked by the engine tests): every intent, algo child and stop order ends as
exactly one of an order, a rejection or an accepted algo parent::

    intents_in + algo_children + stop_loss + trailing_stop
        == orders_out + rejected + algo_parents

Rejections by reason are in the ``risk_rejections`` table (one ``u8`` per reason, see
``layouts.risk``); ``rejected`` is their sum; the report and ``counter_values()`` show them
as ``rej_<reason>``. Order ids are engine-unique, gap-free from 1 (client order id
``<engine>-<run>-<id>`` at venues, the same on every retry); an order's open-order slot is
``id & (open_orders - 1)``.

Tables: ``positions`` (per symbol), ``risk_state`` (portfolio), ``risk_rejections``,
``pnl_history`` (ring of samples). Histograms: ``latency`` (intents, ``now - sent_ns``) and
``fill_latency`` (reports).

Limits come from ``config/risk_limits.toml`` (``procs.risk_limits``); params
``max_order_qty`` / ``max_position`` override the file's global values.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from numba import njit

from layouts.control import CONTROL, TRADING_HALTED
from layouts.market import TOP
from layouts.orders import (
    ACTION_CANCEL, ACTION_NEW, ALGO_ICEBERG, ALGO_NONE, ALGO_TWAP, ALGO_VWAP, BUY, FILL_ACCEPTED,
    FILL_CANCEL_REJECTED, FILL_CANCELED, FILL_EXPIRED, FILL_FULL, FILL_PARTIAL, FILL_REJECTED,
    FILL_REPLACED, ORDER_LIMIT, ORDER_MARKET, POSITION, SELL, TIF_IOC,
)
from layouts.ring import IDX_HEAD
from layouts.risk import (
    HALT_DAILY_LOSS, HALT_DRAWDOWN, HALT_EXTERNAL, HALT_KILL_SWITCH, HALT_NONE, PNL_SAMPLE,
    REJECT_REASONS, RISK_REJECTIONS, RISK_STATE,
)
from pyrt_shm.hdr_recorder import hdr_record
from pyrt_shm.stage import Stage
from ringbuf import spsc
from ringbuf._atomics import load_acquire, load_relaxed, monotonic_ns, store_release
from ringbuf.seqlock import write_begin, write_end

from . import check_keys, float_param, int_param, publish, twin
from .algos import ALGO_PARENT, DEFAULT_VWAP_PROFILE, finished, next_child, profile_cum
from .risk_checks import (
    IDX_KILL, IDX_TRADING_STATE, OK, R_BAD, R_HALTED, R_KILL, R_OPEN_FULL, R_REDUCE_ONLY,
    R_RESTRICTED, pretrade, read_top, reduces, valid_order,
)
from .risk_limits import PNL_METHODS, load_limits
from .risk_pnl import EPS, apply_fill, mark_position, stop_hit, stop_level

(C_INTENTS_IN, C_ORDERS_OUT, C_REJECTED, C_FILLS_IN, C_FILL_UNKNOWN, C_FILL_OVERFILL, C_FILL_BAD,
 C_CANCELS_OUT, C_STOP_LOSS, C_TRAILING_STOP, C_AUTO_HALTS, C_ALGO_PARENTS, C_ALGO_CHILDREN,
 C_ALGO_DONE, C_CANCEL_REJECTED, C_LOTS_MERGED) = range(16)
(P_BATCH, P_MASK, P_PMASK, P_SAMPLE_NS, P_RETRY_NS, P_METHOD, P_SWEEP) = range(7)
PNL_HISTORY_ROWS = 4096
SWEEP_SLOTS = 8192    #: open-order slots a cancel sweep scans per cycle at most

#: Open orders (private): one slot per order id & mask.
OPEN = np.dtype([("id", "<u8"), ("parent", "<u8"), ("sym", "<i8"), ("side", "<i8"), ("qty", "<f8"),
                 ("filled", "<f8"), ("px", "<f8"), ("tag", "<i8"), ("cancel_sent", "<i8"),
                 ("working", "<i8"), ("stop", "<i8")], align=True)

#: Private scalars of the stage (the token-bucket fields are read by ``pretrade``).
PRIV = np.dtype([("next_id", "<i8"), ("next_parent", "<i8"), ("kill_seen", "<i8"),
                 ("halt_seen", "<i8"), ("cancel_all", "<i8"), ("cancel_cursor", "<i8"),
                 ("cancel_left", "<i8"), ("last_sample_ns", "<i8"), ("dirty", "<i8"),
                 ("day_start_pnl", "<f8"), ("tok_s", "<f8"), ("tok_m", "<f8"), ("tok_ns", "<i8"),
                 ("tok_init", "<i8"), ("rs_changed", "<i8"), ("stop_wait", "<i8")], align=True)


# -- small helpers ----------------------------------------------------------------------------
# The duty cycle's functions (and the helpers they call in risk_checks, risk_pnl, algos) are
# compiled without numba's reference counting (``_nrt=False``; numba refuses to compile any
# that would need it): none allocates, and with NRT every array argument of every nested
# call costs an atomic incref/decref pair (risk_step takes 38 arrays and hands most of them
# on): an idle ``risk_step`` measured ~1.3 us with NRT, ~0.6 us without.

@njit(cache=True, inline="always")
def _publish_pos(seqs, rows, pos, s):
    write_begin(seqs, s)
    rows[s] = pos[s]
    write_end(seqs, s)


@njit(cache=True, inline="always")
def _reject(rej_seqs, rej, reason, counters):
    write_begin(rej_seqs, 0)
    rej[reason] += np.uint64(1)
    write_end(rej_seqs, 0)
    counters[C_REJECTED] += np.uint64(1)


@njit(cache=True, inline="always")
def _release_open(p, side, q):
    if side == BUY:
        p.open_buy = max(p.open_buy - q, 0.0)
    else:
        p.open_sell = max(p.open_sell - q, 0.0)


@njit(cache=True, _nrt=False)
def _mark_symbol(pos, s, top_seqs, top_rows, top_buf):
    valid, bid, ask = read_top(top_seqs, top_rows, s, top_buf)
    mark_position(pos[s], 0.5 * (bid + ask) if valid else 0.0)
    return valid, bid, ask


@njit(cache=True, _nrt=False)
def _emit(out_ctl, out_recs, wr, n, action, oid, sym, side, ot, tif, q, lp, tag, seq, feed_ns, parent):
    o = out_recs[spsc.slot(out_ctl, wr + np.uint64(n))]
    o.order_id = np.uint64(oid)
    o.intent_seq = seq
    o.feed_ns = feed_ns
    o.sym = sym
    o.side = side
    o.order_type = ot
    o.tif = tif
    o.qty = q
    o.limit_px = lp
    o.tag = tag
    o.action = action
    o.orig_order_id = np.uint64(0)
    o.parent_id = np.uint64(parent)


@njit(cache=True, _nrt=False)
def _new_order(now, sym, side, ot, tif, q, lp, ref_px, tag, seq, feed_ns, parent, is_stop,
               out_ctl, out_recs, wr, n_out, pos_seqs, pos_rows, pos, rs, top_seqs, top_rows,
               top_buf, control, oo, lim, lim_qty, lim_pos, restricted, pv, mask, counters):
    """Check one new order and, if it passes, book it and write its ORDER. Return (reason, id)."""
    nsym = pos.shape[0]
    valid, bid, ask = False, 0.0, 0.0
    if sym < nsym:
        valid, bid, ask = _mark_symbol(pos, np.int64(sym), top_seqs, top_rows, top_buf)
    oid = pv[0].next_id
    taken = oo[np.int64(np.uint64(oid) & np.uint64(mask))].id != 0
    reason, px = pretrade(sym, side, q, ot, tif, lp, ref_px, pos, rs, lim, lim_qty, lim_pos,
                          restricted, control, valid, bid, ask, now, pv, taken)
    if reason != OK:
        return reason, 0
    pv[0].next_id = oid + 1
    s = np.int64(sym)
    o = oo[np.int64(np.uint64(oid) & np.uint64(mask))]
    o.id, o.parent, o.sym, o.side, o.qty, o.filled, o.px = np.uint64(oid), np.uint64(parent), s, side, q, 0.0, px
    o.tag, o.cancel_sent, o.working, o.stop = tag, 0, 0, is_stop
    p = pos[s]
    if side == BUY:
        p.open_buy += q
    else:
        p.open_sell += q
    p.open_orders += np.uint32(1)
    r = rs[0]
    r.open_orders += np.uint64(1)
    notional = q * px
    r.gross_exposure += notional
    r.net_exposure += notional if side == BUY else -notional
    _publish_pos(pos_seqs, pos_rows, pos, s)
    _emit(out_ctl, out_recs, wr, n_out, ACTION_NEW, oid, sym, side, ot, tif, q, lp, tag, seq, feed_ns, parent)
    counters[C_ORDERS_OUT] += np.uint64(1)
    pv[0].dirty = 1
    return OK, oid


# -- 1. reports --------------------------------------------------------------------------------

@njit(cache=True, _nrt=False)
def drain_reports(fill_ctl, fill_recs, pos_seqs, pos_rows, pos, rs, top_seqs, top_rows, top_buf,
                  hists, h_fill, counters, oo, lot_q, lot_px, lot_head, lot_n, par, stop_oid, pv, pi):
    """Apply up to ``batch`` reports from exec; return the number consumed."""
    k = np.int64(spsc.poll(fill_ctl, pi[P_BATCH]))
    if k == 0:
        return 0
    mask, pmask, method = np.uint64(pi[P_MASK]), np.uint64(pi[P_PMASK]), pi[P_METHOD]
    clock = monotonic_ns()
    rd = spsc.tail_of(fill_ctl)
    r = rs[0]
    for j in range(k):
        f = fill_recs[spsc.slot(fill_ctl, rd + np.uint64(j))]
        hdr_record(hists, h_fill, clock - f.sent_ns)
        oid = f.order_id
        o = oo[np.int64(oid & mask)]
        if oid == 0 or o.id != oid:
            counters[C_FILL_UNKNOWN] += np.uint64(1)
            continue
        s, side = o.sym, o.side
        p = pos[s]
        a = par[np.int64(o.parent & pmask)]
        has_parent = o.parent != 0 and a.id == o.parent
        status = f.status
        done = False
        if status == FILL_PARTIAL or status == FILL_FULL:
            q, px, fee = f.qty, f.price, f.fee
            if not (np.isfinite(q) and q >= 0.0 and np.isfinite(px) and px > 0.0 and np.isfinite(fee)):
                counters[C_FILL_BAD] += np.uint64(1)
                continue
            rem = o.qty - o.filled
            if q > rem + EPS:
                counters[C_FILL_OVERFILL] += np.uint64(1)
            take = min(q, rem)
            o.filled += take
            _release_open(p, side, take)
            counters[C_LOTS_MERGED] += np.uint64(apply_fill(p, s, side, q, px, fee, method, lot_q,
                                                            lot_px, lot_head, lot_n))
            valid, bid, ask = read_top(top_seqs, top_rows, s, top_buf)
            mark_position(p, 0.5 * (bid + ask) if valid else px)
            if has_parent:
                a.filled += q
                a.open_qty = max(a.open_qty - take, 0.0)
            done = status == FILL_FULL or o.qty - o.filled <= EPS
        elif status == FILL_ACCEPTED:
            o.working = 1
        elif status == FILL_CANCEL_REJECTED:
            counters[C_CANCEL_REJECTED] += np.uint64(1)
        elif status == FILL_REJECTED or status == FILL_CANCELED or status == FILL_EXPIRED \
                or status == FILL_REPLACED:
            done = True
        else:
            counters[C_FILL_BAD] += np.uint64(1)
            continue
        if done:
            leaves = max(o.qty - o.filled, 0.0)
            _release_open(p, side, leaves)
            if p.open_orders > 0:
                p.open_orders -= np.uint32(1)
            if r.open_orders > 0:
                r.open_orders -= np.uint64(1)
            if has_parent:
                a.sent -= leaves
                a.open_qty = max(a.open_qty - leaves, 0.0)
                if a.open_child == oid:
                    a.open_child = np.uint64(0)
            if stop_oid[s] == np.int64(oid):
                stop_oid[s] = 0
            o.id = np.uint64(0)
        _publish_pos(pos_seqs, pos_rows, pos, s)
    spsc.release(fill_ctl, k)
    counters[C_FILLS_IN] += np.uint64(k)
    pv[0].dirty = 1
    return k


# -- 2. control: kill switch and HALTED --------------------------------------------------------

@njit(cache=True, _nrt=False)
def _stop_all(rs, pv, par, counters):
    """Start the cancel sweep of every open order and stop every algo parent."""
    v = pv[0]
    r = rs[0]
    v.cancel_all = 1
    v.cancel_cursor = 0
    v.cancel_left = np.int64(r.open_orders)
    for j in range(par.shape[0]):
        if par[j].active != 0:
            par[j].active = 0
            r.algo_active -= np.uint64(1)
            counters[C_ALGO_DONE] += np.uint64(1)
    v.dirty = 1


@njit(cache=True, _nrt=False)
def watch_control(now, control, rs, pv, par, counters):
    """React to the kill switch / HALTED the first time they are seen: start the cancel sweep
    and stop every algo parent."""
    v = pv[0]
    r = rs[0]
    kill = load_relaxed(control, IDX_KILL) != 0
    state = load_relaxed(control, IDX_TRADING_STATE)
    start = False
    if kill and v.kill_seen == 0:
        v.kill_seen = 1
        r.kill_seen_ns = now
        if r.halt_reason == HALT_NONE:
            r.halt_reason = HALT_KILL_SWITCH
        start = True
    if state == TRADING_HALTED:
        if v.halt_seen == 0:
            v.halt_seen = 1
            if r.halt_reason == HALT_NONE:
                r.halt_reason = HALT_EXTERNAL
            if r.halted_ns == 0:
                r.halted_ns = now
            start = True
    else:
        v.halt_seen = 0
    if r.trading_state != state:
        r.trading_state = state
        v.dirty = 1
    if start:
        _stop_all(rs, pv, par, counters)


@njit(cache=True, _nrt=False)
def cancel_sweep(now, out_ctl, out_recs, wr, n_out, room, oo, rs, pv, counters, sweep):
    """Send a CANCEL for every open order not yet canceled (as room allows); return n_out.

    The sweep ends after the last of the orders open when it started (or at the end of the
    table); it scans at most ``sweep`` slots per cycle."""
    v = pv[0]
    cap = oo.shape[0]
    scanned = 0
    while v.cancel_all != 0 and n_out < room and scanned < sweep:
        i = v.cancel_cursor
        o = oo[i]
        if o.id != 0:
            v.cancel_left -= 1
            if o.cancel_sent == 0:
                _emit(out_ctl, out_recs, wr, n_out, ACTION_CANCEL, o.id, o.sym, o.side, ORDER_MARKET,
                      0, o.qty - o.filled, 0.0, o.tag, np.uint64(0), 0, o.parent)
                o.cancel_sent = 1
                n_out += 1
                counters[C_CANCELS_OUT] += np.uint64(1)
        scanned += 1
        v.cancel_cursor = i + 1
        if v.cancel_cursor >= cap or v.cancel_left <= 0:
            v.cancel_all = 0
            v.cancel_cursor = 0
            rs[0].cancels_sent_ns = now
            v.dirty = 1
    return n_out


# -- 3. post-trade -------------------------------------------------------------------------------

@njit(cache=True, _nrt=False)
def portfolio(now, pos, rs, lim, pv):
    """Recompute the portfolio row from the positions."""
    r = rs[0]
    L = lim[0]
    real = unreal = fees = gross = net = 0.0
    for s in range(pos.shape[0]):
        p = pos[s]
        real += p.realized
        unreal += p.unrealized
        fees += p.fees
        m = p.mark if p.mark > 0.0 else p.avg_px
        gross += (abs(p.qty) + p.open_buy + p.open_sell) * m
        net += (p.qty + p.open_buy - p.open_sell) * m
    r.realized, r.unrealized, r.fees = real, unreal, fees
    r.net_pnl = real + unreal - fees
    r.start_equity = L.starting_equity
    r.equity = L.starting_equity + r.net_pnl
    if r.equity > r.peak_equity:
        r.peak_equity = r.equity
    r.drawdown = r.peak_equity - r.equity
    if r.drawdown > r.max_drawdown:
        r.max_drawdown = r.drawdown
    r.day_pnl = r.net_pnl - pv[0].day_start_pnl
    r.gross_exposure, r.net_exposure = gross, net
    r.buying_power = r.equity * L.leverage - gross
    r.updated_ns = now
    pv[0].rs_changed = 1


@njit(cache=True, _nrt=False)
def mark_changed(pos_seqs, pos_rows, pos, top_seqs, top_rows, top_buf, top_seen):
    """Mark to the mid every symbol whose top of book changed (seqlock version) since it was
    last seen, and publish its position. Return True if any did."""
    changed = False
    for s in range(min(pos.shape[0], top_rows.shape[0])):
        ver = load_acquire(top_seqs, s)
        if ver != top_seen[s]:
            top_seen[s] = ver
            _mark_symbol(pos, s, top_seqs, top_rows, top_buf)
            _publish_pos(pos_seqs, pos_rows, pos, s)
            changed = True
    return changed


@njit(cache=True, _nrt=False)
def post_trade(now, out_ctl, out_recs, wr, n_out, room, pos_seqs, pos_rows, pos, rs, rej_seqs, rej,
               top_seqs, top_rows, top_buf, control, oo, lim, lim_qty, lim_pos, restricted,
               pv, par, stop_oid, stop_retry, counters, pi):
    """Portfolio, automatic halt, stops; called after ``mark_changed`` when a mark changed,
    or ``dirty`` or ``stop_wait`` is set. Return n_out.

    Clears ``dirty`` once the portfolio is computed: the step recomputes it at the end only
    if something after this point changed it again (an order, a fill, a sweep, a sample).
    """
    v = pv[0]
    nsym = pos.shape[0]
    portfolio(now, pos, rs, lim, pv)
    v.dirty = 0
    r = rs[0]
    L = lim[0]
    state = load_relaxed(control, IDX_TRADING_STATE)
    if state != TRADING_HALTED and L.auto_halt != 0:
        why = HALT_NONE
        if L.daily_loss_limit > 0.0 and r.day_pnl <= -L.daily_loss_limit:
            why = HALT_DAILY_LOSS
        elif L.max_drawdown > 0.0 and r.drawdown >= L.max_drawdown:
            why = HALT_DRAWDOWN
        if why != HALT_NONE:
            store_release(control, IDX_TRADING_STATE, np.uint64(TRADING_HALTED))
            r.halt_reason = why
            r.halted_ns = now
            r.trading_state = TRADING_HALTED
            v.halt_seen = 1
            counters[C_AUTO_HALTS] += np.uint64(1)
            _stop_all(rs, pv, par, counters)
            return n_out
    sl, tr = L.stop_loss_bps, L.trailing_stop_bps
    v.stop_wait = 0
    if sl > 0.0 or tr > 0.0:
        for s in range(nsym):
            p = pos[s]
            lvl, trailing = stop_level(p, sl, tr)
            if p.stop_px != lvl:
                p.stop_px = lvl
                _publish_pos(pos_seqs, pos_rows, pos, s)
            if lvl == 0.0 or stop_oid[s] != 0 or not stop_hit(p, lvl):
                continue
            if now < stop_retry[s]:
                v.stop_wait = 1
                continue
            side = SELL if p.qty > 0.0 else BUY
            q = abs(p.qty) - (p.open_sell if side == SELL else p.open_buy)
            if q <= EPS or n_out >= room:
                continue
            counters[C_TRAILING_STOP if trailing else C_STOP_LOSS] += np.uint64(1)
            r.stops += np.uint64(1)
            reason, oid = _new_order(now, np.uint32(s), side, ORDER_MARKET, TIF_IOC, q, 0.0, p.mark, 0,
                                     np.uint64(0), 0, 0, 1, out_ctl, out_recs, wr, n_out, pos_seqs,
                                     pos_rows, pos, rs, top_seqs, top_rows, top_buf, control, oo, lim,
                                     lim_qty, lim_pos, restricted, pv, pi[P_MASK], counters)
            if reason == OK:
                stop_oid[s] = oid
                n_out += 1
            else:
                _reject(rej_seqs, rej, reason, counters)
                stop_retry[s] = now + pi[P_RETRY_NS]
                v.stop_wait = 1
    return n_out


# -- 4. algos ----------------------------------------------------------------------------------

@njit(cache=True, _nrt=False)
def run_algos(now, out_ctl, out_recs, wr, n_out, room, pos_seqs, pos_rows, pos, rs, rej_seqs, rej,
              top_seqs, top_rows, top_buf, control, oo, lim, lim_qty, lim_pos, restricted, pv, par,
              prof_cum, counters, pi):
    """Send the children that are due; retire finished parents. Return n_out."""
    r = rs[0]
    if r.algo_active == 0:
        return n_out
    for j in range(par.shape[0]):
        a = par[j]
        if a.active == 0:
            continue
        if n_out < room:
            q = next_child(a, now, prof_cum)
            if q > 0.0:
                counters[C_ALGO_CHILDREN] += np.uint64(1)
                p = pos[a.sym]
                ref = p.mark if p.mark > 0.0 else a.ref_px
                reason, oid = _new_order(now, np.uint32(a.sym), a.side, a.order_type, a.tif, q,
                                         a.limit_px, ref, a.tag, a.seq, a.feed_ns, a.id, 0, out_ctl,
                                         out_recs, wr, n_out, pos_seqs, pos_rows, pos, rs, top_seqs,
                                         top_rows, top_buf, control, oo, lim, lim_qty, lim_pos,
                                         restricted, pv, pi[P_MASK], counters)
                if reason == OK:
                    n_out += 1
                    a.sent += q
                    a.open_qty += q
                    a.children += 1
                    if a.algo == ALGO_ICEBERG:
                        a.open_child = np.uint64(oid)
                else:
                    _reject(rej_seqs, rej, reason, counters)
                    a.rejected += 1
                    if a.algo == ALGO_ICEBERG:
                        a.retry_ns = now + pi[P_RETRY_NS]
        if finished(a):
            a.active = 0
            r.algo_active -= np.uint64(1)
            counters[C_ALGO_DONE] += np.uint64(1)
    return n_out


@njit(cache=True, _nrt=False)
def _accept_parent(now, it, pos, rs, control, restricted, pv, par, n_prof):
    """State checks of an algo parent intent; on success book it. Return reason or OK."""
    nsym = pos.shape[0]
    al = it.algo
    q = it.qty
    if not valid_order(it.sym, it.side, q, it.order_type, it.tif, it.limit_px, nsym) \
            or (al != ALGO_TWAP and al != ALGO_VWAP and al != ALGO_ICEBERG) or it.duration_ns < 0 \
            or (al == ALGO_TWAP and it.slices < 1) \
            or (al == ALGO_VWAP and it.slices != 0 and it.slices != n_prof) \
            or (al == ALGO_ICEBERG and (it.order_type != ORDER_LIMIT
                                        or not (np.isfinite(it.display_qty) and it.display_qty > 0.0))):
        return R_BAD
    if load_relaxed(control, IDX_KILL) != 0:
        return R_KILL
    state = load_relaxed(control, IDX_TRADING_STATE)
    if state == TRADING_HALTED:
        return R_HALTED
    s = np.int64(it.sym)
    if restricted[s] != 0:
        return R_RESTRICTED
    if state != 0 and not reduces(pos[s], it.side, q):
        return R_REDUCE_ONLY
    v = pv[0]
    pid = v.next_parent
    a = par[np.int64(pid & (par.shape[0] - 1))]
    if a.active != 0:
        return R_OPEN_FULL
    v.next_parent = pid + 1
    a.id, a.active, a.algo, a.sym, a.side = np.uint64(pid), 1, al, s, it.side
    a.order_type = ORDER_LIMIT if al == ALGO_ICEBERG else it.order_type
    a.tif, a.qty, a.limit_px, a.ref_px, a.display = it.tif, q, it.limit_px, it.ref_px, it.display_qty
    a.tag, a.seq, a.feed_ns = it.tag, it.seq, it.feed_ns
    a.start_ns, a.duration_ns = now, it.duration_ns
    a.slices = n_prof if al == ALGO_VWAP else it.slices
    a.next_slice, a.sent, a.filled, a.open_child, a.open_qty = 0, 0.0, 0.0, np.uint64(0), 0.0
    a.retry_ns, a.children, a.rejected = 0, 0, 0
    rs[0].algo_active += np.uint64(1)
    return OK


# -- 5. intents -------------------------------------------------------------------------------

@njit(cache=True, _nrt=False)
def handle_intents(now, in_ctl, in_recs, out_ctl, out_recs, wr, n_out, room, pos_seqs, pos_rows,
                   pos, rs, rej_seqs, rej, top_seqs, top_rows, top_buf, control, hists, h_lat,
                   counters, oo, lim, lim_qty, lim_pos, restricted, pv, par, n_prof, pi):
    """Decide up to the free order slots' worth of intents. Return (consumed, n_out)."""
    avail = np.int64(spsc.poll(in_ctl, pi[P_BATCH]))
    k = min(avail, np.int64(room - n_out))
    if k <= 0:
        return 0, n_out
    clock = monotonic_ns()
    rd = spsc.tail_of(in_ctl)
    for j in range(k):
        it = in_recs[spsc.slot(in_ctl, rd + np.uint64(j))]
        hdr_record(hists, h_lat, clock - it.sent_ns)
        if it.action != ACTION_NEW:
            reason = R_BAD
        elif it.algo != ALGO_NONE:
            reason = _accept_parent(now, it, pos, rs, control, restricted, pv, par, n_prof)
            if reason == OK:
                counters[C_ALGO_PARENTS] += np.uint64(1)
                pv[0].dirty = 1
        else:
            reason, oid = _new_order(now, it.sym, it.side, it.order_type, it.tif, it.qty, it.limit_px,
                                     it.ref_px, it.tag, it.seq, it.feed_ns, 0, 0, out_ctl, out_recs,
                                     wr, n_out, pos_seqs, pos_rows, pos, rs, top_seqs, top_rows,
                                     top_buf, control, oo, lim, lim_qty, lim_pos, restricted, pv,
                                     pi[P_MASK], counters)
            if reason == OK:
                n_out += 1
        if reason != OK:
            _reject(rej_seqs, rej, reason, counters)
    spsc.release(in_ctl, k)
    counters[C_INTENTS_IN] += np.uint64(k)
    return k, n_out


# -- 6. P&L history ---------------------------------------------------------------------------

@njit(cache=True, inline="always", _nrt=False)
def _sample_due(now, rs, pv, sample_ns):
    """True when the portfolio is to be appended to ``pnl_history`` at ``now``."""
    return sample_ns > 0 and (rs[0].samples == 0 or now - pv[0].last_sample_ns >= sample_ns)


@njit(cache=True, _nrt=False)
def sample_pnl(now, rs, ph_seqs, ph_rows, pv, sample_ns):
    v = pv[0]
    r = rs[0]
    if not _sample_due(now, rs, pv, sample_ns):
        return
    v.last_sample_ns = now
    n = ph_rows.shape[0]
    i = np.int64(r.samples % np.uint64(n))
    write_begin(ph_seqs, i)
    h = ph_rows[i]
    h.t_ns = now if now != 0 else 1
    h.seq = r.samples + np.uint64(1)
    h.equity, h.net_pnl, h.realized = r.equity, r.net_pnl, r.realized
    h.unrealized, h.fees, h.gross_exposure = r.unrealized, r.fees, r.gross_exposure
    write_end(ph_seqs, i)
    r.samples += np.uint64(1)
    v.dirty = 1


# -- the step ---------------------------------------------------------------------------------

@njit(cache=True, _nrt=False)
def risk_step(now, in_ctl, in_recs, fill_ctl, fill_recs, out_ctl, out_recs, pos_seqs, pos_rows, pos,
              rs_seqs, rs_rows, rs, rej_seqs, rej, ph_seqs, ph_rows, top_seqs, top_rows, top_buf,
              top_seen, control, hists, h_lat, h_fill, counters, oo, lot_q, lot_px, lot_head, lot_n,
              par, prof_cum, stop_oid, stop_retry, lim, lim_qty, lim_pos, restricted, pv, pi):
    """One duty cycle (see module doc); return records consumed + orders sent.

    Each part is called only when it may have something to do (an idle cycle is a handful of
    loads, not seven calls of up to 30 arguments): each guard tests what the part itself
    tests first, so the cycle does the same work in the same order. ``drain_reports`` /
    ``handle_intents`` poll their ring again (a record committed in between is read by the
    same cycle, as before). The portfolio is computed by ``post_trade`` and again at the end
    only if ``dirty`` was set after it; the inputs it reads (positions' marks, quantities,
    open quantities, fees) only change together with ``dirty`` or a new top version (a top
    that changes mid-cycle is marked and valued by the next cycle's scan), so the figures
    are the ones a second computation would give (checked on fused backtests:
    orders, fills, positions, equity and every counter identical).
    """
    work = 0
    if spsc.poll(fill_ctl, 1) != 0:
        work = drain_reports(fill_ctl, fill_recs, pos_seqs, pos_rows, pos, rs, top_seqs, top_rows,
                             top_buf, hists, h_fill, counters, oo, lot_q, lot_px, lot_head, lot_n,
                             par, stop_oid, pv, pi)
    watch_control(now, control, rs, pv, par, counters)
    v = pv[0]
    want = np.int64(spsc.poll(in_ctl, pi[P_BATCH]))
    if v.cancel_all != 0 or rs[0].algo_active != 0 or lim[0].stop_loss_bps > 0.0 \
            or lim[0].trailing_stop_bps > 0.0:
        want = pi[P_BATCH]
    room = np.int64(spsc.claim(out_ctl, want)) if want > 0 else np.int64(0)
    wr = spsc.head_of(out_ctl)
    n_out = 0
    marked = mark_changed(pos_seqs, pos_rows, pos, top_seqs, top_rows, top_buf, top_seen)
    if marked or v.dirty != 0 or v.stop_wait != 0:
        n_out = post_trade(now, out_ctl, out_recs, wr, n_out, room, pos_seqs, pos_rows, pos, rs,
                           rej_seqs, rej, top_seqs, top_rows, top_buf, control, oo, lim, lim_qty,
                           lim_pos, restricted, pv, par, stop_oid, stop_retry, counters, pi)
    if v.cancel_all != 0:
        n_out = cancel_sweep(now, out_ctl, out_recs, wr, n_out, room, oo, rs, pv, counters, pi[P_SWEEP])
    if rs[0].algo_active != 0:
        n_out = run_algos(now, out_ctl, out_recs, wr, n_out, room, pos_seqs, pos_rows, pos, rs,
                          rej_seqs, rej, top_seqs, top_rows, top_buf, control, oo, lim, lim_qty,
                          lim_pos, restricted, pv, par, prof_cum, counters, pi)
    k = 0
    if room > n_out and spsc.poll(in_ctl, 1) != 0:
        k, n_out = handle_intents(now, in_ctl, in_recs, out_ctl, out_recs, wr, n_out, room, pos_seqs,
                                  pos_rows, pos, rs, rej_seqs, rej, top_seqs, top_rows, top_buf,
                                  control, hists, h_lat, counters, oo, lim, lim_qty, lim_pos,
                                  restricted, pv, par, prof_cum.shape[0], pi)
    if n_out > 0:
        publish(out_ctl, out_recs, n_out)
    if _sample_due(now, rs, pv, pi[P_SAMPLE_NS]):
        sample_pnl(now, rs, ph_seqs, ph_rows, pv, pi[P_SAMPLE_NS])
    if v.dirty != 0:
        portfolio(now, pos, rs, lim, pv)
        v.dirty = 0
    if v.rs_changed != 0:
        v.rs_changed = 0
        write_begin(rs_seqs, 0)
        rs_rows[0] = rs[0]
        write_end(rs_seqs, 0)
    return work + k + n_out + pv[0].cancel_all      # a pending sweep is work still to do


class RiskStage(Stage):
    """Pre-trade risk, algos, positions/P&L and post-trade limits (see module doc).

    Params: ``limits`` (path of a risk limits TOML; default the shipped file),
    ``max_order_qty`` / ``max_position`` (override the file), ``open_orders`` (65536, power
    of two: the open-order table), ``algo_parents`` (64, power of two), ``fifo_lots`` (1024,
    power of two: open FIFO lots per symbol before merging), ``vwap_profile`` (list of
    weights), ``algo_retry_ms`` (100), ``pnl_sample_ms`` (1000; 0 = off), ``batch`` (256).

    Seeding (a live account's state at start, or a backtest's opening book; see ``_seed``):
    ``initial_positions`` (``{SYM = [qty, avg_px]}``, signed qty), ``initial_cash`` (cash;
    equity starts at cash + the positions' cost), ``buying_power`` (the venue's figure:
    the leverage becomes ``(buying_power + gross cost) / equity`` so that risk's buying
    power starts equal to it), ``adopted_orders`` (``[{id, symbol, side = "buy"|"sell",
    qty, filled, limit_px}]``: open venue orders tracked as engine orders ``id``; their
    unfilled quantity counts as open and their fills update positions like any other;
    new engine ids start after the largest).
    """

    INPUTS = ("intent", "fill")
    OUTPUTS = ("order",)
    TABLES = {"positions": (POSITION, "symbols"), "risk_state": (RISK_STATE, 1),
              "risk_rejections": (RISK_REJECTIONS, 1), "pnl_history": (PNL_SAMPLE, PNL_HISTORY_ROWS)}
    HISTOGRAMS = ("latency", "fill_latency")
    COUNTERS = ("intents_in", "orders_out", "rejected", "fills_in", "fill_unknown_order",
                "fill_overfill", "fill_bad", "cancels_out", "stop_loss", "trailing_stop",
                "auto_halts", "algo_parents", "algo_children", "algo_done", "cancel_rejected",
                "lots_merged")
    PARAMS = ("limits", "max_order_qty", "max_position", "open_orders", "algo_parents", "fifo_lots",
              "vwap_profile", "algo_retry_ms", "pnl_sample_ms", "batch", "initial_positions",
              "initial_cash", "buying_power", "adopted_orders")

    def __init__(self, ctx):
        super().__init__(ctx)
        check_keys(ctx, self.PARAMS)
        path = ctx.param("limits", None, kind=str)
        self.limits = load_limits(path, tuple(ctx.symbols))
        cap = int_param(ctx, "open_orders", 65536, lo=2, hi=1 << 24, power_of_two=True)
        n_par = int_param(ctx, "algo_parents", 64, lo=2, hi=1 << 16, power_of_two=True)
        n_lots = int_param(ctx, "fifo_lots", 1024, lo=2, hi=1 << 20, power_of_two=True)
        retry_ms = float_param(ctx, "algo_retry_ms", 100.0, lo=0.0)
        sample_ms = float_param(ctx, "pnl_sample_ms", 1000.0, lo=0.0)
        batch = int_param(ctx, "batch", 256, lo=1)
        prof = ctx.param("vwap_profile", DEFAULT_VWAP_PROFILE, kind=(list, tuple))
        try:
            self.prof_cum = profile_cum(prof)
        except ValueError as e:
            raise ValueError(f"stages.{ctx.name}.params.vwap_profile: {e}") from None
        self.lim = self.limits.record()
        if "max_order_qty" in ctx.params:
            self.lim["max_order_qty"] = float_param(ctx, "max_order_qty", 1000.0, lo=0.0, lo_open=True)
        if "max_position" in ctx.params:
            self.lim["max_position"] = float_param(ctx, "max_position", 500.0, lo=0.0)
        n = len(ctx.symbols)
        self.lim_qty = self.limits.per_symbol_array("max_order_qty")
        self.lim_pos = self.limits.per_symbol_array("max_position")
        for key, arr in (("max_order_qty", self.lim_qty), ("max_position", self.lim_pos)):
            if key in ctx.params:                       # a param overrides every symbol
                arr[:] = self.lim[key][0]
        self.restricted = self.limits.restricted_mask()
        method = int(self.lim["pnl_method"][0])

        self.inp, self.fills, self.out = ctx.input("intent"), ctx.input("fill"), ctx.output("order")
        self.out.order_source = (ctx.name, type(self))    # exec accepts orders from this ring only
        self.table = ctx.tables["positions"]
        self.rs_table = ctx.tables["risk_state"]
        self.rej_table = ctx.tables["risk_rejections"]
        self.ph_table = ctx.tables["pnl_history"]
        self.rej = self.rej_table.rows.view(np.uint64).reshape(-1)
        self.pos = np.zeros(n, POSITION)          # private working copy; the table is its snapshot
        self.pos["sym"] = np.arange(n)
        self.rs = np.zeros(1, RISK_STATE)
        self.rs["start_equity"] = self.rs["equity"] = self.rs["peak_equity"] = self.lim["starting_equity"]
        self.rs["buying_power"] = self.lim["starting_equity"] * self.lim["leverage"]
        self.rs_table.rows[0] = self.rs[0]        # before any process starts: no reader yet
        tops = ctx.tables.get("tops")
        self.top_seqs = tops.seqs if tops is not None else np.zeros(0, np.uint64)
        self.top_rows = tops.rows if tops is not None else np.zeros(0, TOP)
        self.top_buf = np.zeros(1, TOP)
        self.top_seen = np.zeros(max(n, 1), np.uint64)
        self.control = (ctx.control.view(np.uint64) if ctx.control is not None
                        else np.zeros(CONTROL.itemsize // 8, np.uint64))
        self.oo = np.zeros(cap, OPEN)
        lots = n_lots if method == PNL_METHODS["fifo"] else 1
        self.lot_q = np.zeros((n, lots))
        self.lot_px = np.zeros((n, lots))
        self.lot_head = np.zeros(n, np.int64)
        self.lot_n = np.zeros(n, np.int64)
        self.par = np.zeros(n_par, ALGO_PARENT)
        self.stop_oid = np.zeros(n, np.int64)
        self.stop_retry = np.zeros(n, np.int64)
        self.pv = np.zeros(1, PRIV)
        self.pv["next_id"] = 1
        self.pv["next_parent"] = 1
        _seed(self, ctx, method, cap)
        self.pi = np.array([batch, cap - 1, n_par - 1, int(sample_ms * 1e6), int(retry_ms * 1e6),
                            method, SWEEP_SLOTS], np.int64)
        self.h_lat, self.h_fill = ctx.hist("latency"), ctx.hist("fill_latency")

    # -- engine interface ------------------------------------------------------------------
    def _args(self):
        ctx, t = self.ctx, self.table
        return (self.inp.ctl, self.inp.recs, self.fills.ctl, self.fills.recs, self.out.ctl,
                self.out.recs, t.seqs, t.rows, self.pos, self.rs_table.seqs, self.rs_table.rows,
                self.rs, self.rej_table.seqs, self.rej, self.ph_table.seqs, self.ph_table.rows,
                self.top_seqs, self.top_rows, self.top_buf, self.top_seen, self.control, ctx.hists,
                self.h_lat, self.h_fill, ctx.counters, self.oo, self.lot_q, self.lot_px,
                self.lot_head, self.lot_n, self.par, self.prof_cum, self.stop_oid, self.stop_retry,
                self.lim, self.lim_qty, self.lim_pos, self.restricted, self.pv, self.pi)

    def do_work(self, now_ns: int) -> int:
        head = int(self.out.ctl[IDX_HEAD])
        k = risk_step(now_ns, *self._args())
        if k and int(self.out.ctl[IDX_HEAD]) != head:
            self.wake_consumers()
        return k

    def kernel(self):
        """(step, args, takes_now) for the process's jitted duty loop (see pyrt_shm.jit_loop)."""
        return risk_step, self._args(), True

    def warm_up(self) -> None:
        a = list(self._args())
        shared = {0: None, 1: 2, 2: None, 3: 2, 4: None, 5: 2, 6: None, 7: None, 9: None, 10: None,
                  12: None, 13: None, 14: None, 15: None, 16: None, 17: None, 20: None, 21: 1,
                  24: None}
        for i, n in shared.items():
            a[i] = twin(a[i], n)
        for i in (8, 11, 18, 19, 25, 26, 27, 28, 29, 30, 32, 33, 38):   # private state: copies
            a[i] = a[i].copy()
        a[22], a[23] = 0, 0
        risk_step(0, *a)

    # -- reporting ---------------------------------------------------------------------------
    def counter_values(self) -> dict:
        out = super().counter_values()
        out.update(self.table_counters(self.ctx.tables))
        return out

    def counter(self, name: str) -> int:
        if name.startswith("rej_"):
            return self.table_counters(self.ctx.tables)[name]
        return super().counter(name)

    @classmethod
    def table_counters(cls, tables) -> dict:
        """``{"rej_<reason>": n}`` from the ``risk_rejections`` table."""
        t = tables.get("risk_rejections")
        if t is None:
            return {}
        row = _read(t, 0)
        return {f"rej_{r}": int(row[r]) for r in REJECT_REASONS}

    @classmethod
    def summarize(cls, tables) -> dict:
        """The risk section of the run report: portfolio, trading state, VaR/CVaR."""
        from layouts.control import TRADING_STATE_NAMES
        from layouts.risk import HALT_REASON_NAMES

        from .risk_var import var_report

        out = {}
        t = tables.get("risk_state")
        if t is not None:
            r = _read(t, 0)
            out = {k: (float(r[k]) if isinstance(r[k], np.floating) else int(r[k])) for k in r.dtype.names}
            out["trading_state"] = TRADING_STATE_NAMES.get(out["trading_state"], "?")
            out["halt_reason"] = HALT_REASON_NAMES.get(out["halt_reason"], "?")
        h = tables.get("pnl_history")
        if h is not None:
            try:
                rows = h.snapshot(timeout=0.05)
            except TimeoutError:            # the stage died inside a write: use what is there
                rows = h.rows.copy()
            out["var"] = var_report(rows)
        return out


def _seed(stage, ctx, method: int, cap: int) -> None:
    """Apply the seeding params (see ``RiskStage``) before any process starts.

    A seeded position is one lot at ``avg_px`` (average cost and FIFO alike), marked at
    ``avg_px`` until the book has a price; equity starts at ``initial_cash + sum(qty *
    avg_px)`` (cash plus what the positions cost), so after marking it is the account's
    market value. Every bad value raises ValueError naming ``stages.<risk>.params.<key>``.
    """
    where = f"stages.{ctx.name}.params"
    syms = list(ctx.symbols)
    pos, lim, rs = stage.pos, stage.lim, stage.rs
    seeded = ctx.param("initial_positions", {}, kind=Mapping)
    gross0 = cost0 = 0.0
    for sym, v in seeded.items():
        if sym not in syms:
            raise ValueError(f"{where}.initial_positions.{sym}: unknown symbol (engine symbols: {syms})")
        if not isinstance(v, (list, tuple)) or len(v) != 2 or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v) \
                or v[1] < 0 or (v[0] != 0 and v[1] <= 0):
            raise ValueError(f"{where}.initial_positions.{sym}: expected [qty, avg_px] with a finite qty "
                             f"and avg_px > 0, got {v!r}")
        q, px = float(v[0]), float(v[1])
        if q == 0.0:
            continue
        s = syms.index(sym)
        p = pos[s]
        p["qty"], p["avg_px"], p["cost"], p["lots"], p["trail_px"] = q, px, abs(q) * px, 1, px
        if method == PNL_METHODS["fifo"]:
            stage.lot_q[s, 0], stage.lot_px[s, 0] = abs(q), px
            stage.lot_n[s], stage.lot_head[s] = 1, 0
        gross0 += abs(q) * px
        cost0 += q * px
    if "initial_cash" in ctx.params:
        equity = float_param(ctx, "initial_cash", 0.0) + cost0
        if equity <= 0.0:
            raise ValueError(f"{where}.initial_cash: cash + positions at cost must be > 0, got {equity!r}")
        lim["starting_equity"] = equity
    equity = float(lim["starting_equity"][0])
    if "buying_power" in ctx.params:
        bp = float_param(ctx, "buying_power", 0.0, lo=0.0)
        lim["leverage"] = (bp + gross0) / equity
    adopted = ctx.param("adopted_orders", (), kind=(list, tuple))
    last = 0
    for i, a in enumerate(adopted):
        w = f"{where}.adopted_orders[{i}]"
        if not isinstance(a, Mapping) or set(a) - {"id", "symbol", "side", "qty", "filled", "limit_px"}:
            raise ValueError(f"{w}: expected a table of id, symbol, side, qty, filled, limit_px, got {a!r}")
        try:
            oid, sym, side = int(a["id"]), a["symbol"], a["side"]
            q, f, lp = float(a["qty"]), float(a.get("filled", 0.0)), float(a.get("limit_px", 0.0))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{w}: bad or missing field ({e})") from None
        if sym not in syms or side not in ("buy", "sell") or not (1 <= oid) or not (q > 0.0) \
                or not (0.0 <= f < q) or not math.isfinite(lp) or lp < 0.0:
            raise ValueError(f"{w}: needs a known symbol, side 'buy'/'sell', id >= 1, qty > 0, "
                             f"0 <= filled < qty, limit_px >= 0; got {dict(a)!r}")
        o = stage.oo[oid & (cap - 1)]
        if o["id"] != 0:
            raise ValueError(f"{w}: id {oid} collides with adopted order {int(o['id'])} in the open-order "
                             f"table (open_orders = {cap})")
        s = syms.index(sym)
        sd = BUY if side == "buy" else SELL
        o["id"], o["parent"], o["sym"], o["side"], o["qty"], o["filled"] = oid, 0, s, sd, q, f
        o["px"] = lp if lp > 0.0 else float(pos[s]["avg_px"])
        o["working"] = 1
        p = pos[s]
        p["open_buy" if sd == BUY else "open_sell"] += q - f
        p["open_orders"] += 1
        rs["open_orders"] += 1
        last = max(last, oid)
    if not (seeded or adopted or "initial_cash" in ctx.params or "buying_power" in ctx.params):
        return
    stage.pv["next_id"] = last + 1
    rs["start_equity"] = rs["equity"] = rs["peak_equity"] = equity
    rs["buying_power"] = equity * float(lim["leverage"][0]) - gross0
    stage.rs_table.rows[0] = rs[0]
    stage.pv["dirty"] = 1               # the first cycle computes the portfolio from the seeds
    for s in range(len(syms)):          # before any process starts: no reader yet
        stage.table.rows[s] = pos[s]


def _read(table, i):
    """A consistent copy of row ``i``, or the raw row if its writer died inside a write (a
    killed risk process leaves the row's seqlock odd forever; the report must still work)."""
    try:
        return table.read(i, timeout=0.05)
    except TimeoutError:
        return table.rows[i].copy()
