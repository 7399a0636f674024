"""Positions and P&L per symbol: average cost or FIFO lots, fees, marks, stops (numba).

One ``POSITION`` record per symbol (``layouts.orders``) is the state; FIFO keeps its lots in
per-symbol circular buffers beside it (``lot_q``/``lot_px``: ``float64[n_symbols, L]``,
``lot_head``/``lot_n``: ``int64[n_symbols]``, ``L`` a power of two).

Conventions (both methods):

* ``qty`` is signed; ``bought``/``sold`` and ``fills`` count every execution;
* ``realized`` is before fees, ``fees`` sums commissions, ``net_pnl = realized + unrealized - fees``;
* ``cost`` is what the open position cost (sum of |lot qty| * lot price); ``avg_px = cost / |qty|``;
* ``unrealized = (mark - avg_px) * qty``, which for FIFO equals the sum over lots of
  ``(mark - lot price) * lot qty``. Hence for either method
  ``realized + unrealized = sum(-signed qty * price over fills) + qty * mark``: the
  mark-to-market change, and ``net_pnl`` is that less fees.
* **Average cost**: adding moves ``avg_px`` to the quantity-weighted average; reducing
  realizes ``closed * (price - avg_px) * sign(position)`` and keeps ``avg_px``; flipping
  through zero realizes the closed part and opens the rest at the fill price.
* **FIFO**: reducing closes the oldest lots first, realizing ``take * (price - lot price) *
  sign``; what is left after all lots are closed opens a lot on the other side. When a
  symbol already has ``L`` open lots, a new lot is merged into the newest one at their
  weighted price (``cost`` stays exact; only the order in which those two close changes);
  ``merged`` counts such merges.

Both methods realize the same total on any sequence of fills that goes from flat to flat
(the cost of what was bought minus what was sold does not depend on matching order).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from layouts.orders import BUY

from .risk_limits import PNL_FIFO

EPS = 1e-9            #: quantities are share counts in f8: tolerance for "nothing left"


@njit(cache=True, inline="always")
def _count(p, side, q, fee):
    p.fees += fee
    if side == BUY:
        p.bought += q
    else:
        p.sold += q
    p.fills += np.uint32(1)


# Called from risk's duty cycle for every fill and mark: compiled without numba's reference
# counting (``_nrt=False``) like their callers; nothing here allocates.
@njit(cache=True, _nrt=False)
def apply_fill_average(p, side, q, px, fee):
    """Apply a fill of ``q`` at ``px`` on ``side`` to ``p`` (average cost). Return True if the
    fill opened a new position or flipped it (the trailing-stop reference restarts)."""
    pq = p.qty
    sq = q if side == BUY else -q
    opened = False
    if pq == 0.0 or (pq > 0.0) == (side == BUY):
        nq = pq + sq
        p.avg_px = (abs(pq) * p.avg_px + q * px) / abs(nq) if nq != 0.0 else 0.0
        opened = pq == 0.0
    else:
        closed = min(q, abs(pq))
        p.realized += closed * (px - p.avg_px) * (1.0 if pq > 0.0 else -1.0)
        nq = pq + sq
        if abs(nq) < EPS:
            nq = 0.0
            p.avg_px = 0.0
        elif (nq > 0.0) != (pq > 0.0):
            p.avg_px = px            # flipped: the remainder opened at the fill price
            opened = True
    p.qty = nq
    p.cost = abs(nq) * p.avg_px
    p.lots = np.uint32(0 if nq == 0.0 else 1)
    _count(p, side, q, fee)
    return opened


@njit(cache=True, _nrt=False)
def apply_fill_fifo(p, s, side, q, px, fee, lot_q, lot_px, lot_head, lot_n):
    """Apply a fill to ``p`` (symbol ``s``) with FIFO lots. Return (opened_or_flipped, merged)."""
    mask = lot_q.shape[1] - 1
    cap = lot_q.shape[1]
    pq = p.qty
    rem = q
    merged = 0
    opened = pq == 0.0
    if pq != 0.0 and (pq > 0.0) != (side == BUY):
        sign = 1.0 if pq > 0.0 else -1.0
        while rem > EPS and lot_n[s] > 0:
            i = lot_head[s] & mask
            take = min(rem, lot_q[s, i])
            p.realized += take * (px - lot_px[s, i]) * sign
            p.cost -= take * lot_px[s, i]
            lot_q[s, i] -= take
            rem -= take
            if lot_q[s, i] <= EPS:
                lot_head[s] += 1
                lot_n[s] -= 1
        if lot_n[s] == 0:
            p.cost = 0.0
            opened = rem > EPS          # flipped through zero
    if rem > EPS:
        if lot_n[s] == cap:
            j = (lot_head[s] + lot_n[s] - 1) & mask
            lot_px[s, j] = (lot_q[s, j] * lot_px[s, j] + rem * px) / (lot_q[s, j] + rem)
            lot_q[s, j] += rem
            merged = 1
        else:
            j = (lot_head[s] + lot_n[s]) & mask
            lot_q[s, j] = rem
            lot_px[s, j] = px
            lot_n[s] += 1
        p.cost += rem * px
    nq = pq + (q if side == BUY else -q)
    if abs(nq) < EPS:
        nq = 0.0
        p.cost = 0.0
        lot_n[s] = 0
    p.qty = nq
    p.avg_px = p.cost / abs(nq) if nq != 0.0 else 0.0
    p.lots = np.uint32(lot_n[s])
    _count(p, side, q, fee)
    return opened, merged


@njit(cache=True, _nrt=False)
def apply_fill(p, s, side, q, px, fee, method, lot_q, lot_px, lot_head, lot_n):
    """Apply a fill by ``method`` (PNL_AVERAGE / PNL_FIFO); restart the trailing reference
    when the fill opened or flipped the position. Return the number of FIFO lot merges."""
    merged = 0
    if method == PNL_FIFO:
        opened, merged = apply_fill_fifo(p, s, side, q, px, fee, lot_q, lot_px, lot_head, lot_n)
    else:
        opened = apply_fill_average(p, side, q, px, fee)
    if p.qty == 0.0:
        p.trail_px = 0.0
    elif opened:
        p.trail_px = px
    return merged


@njit(cache=True, _nrt=False)
def mark_position(p, mark):
    """Mark ``p`` at ``mark`` (> 0): unrealized, net P&L, its peak, the trailing reference."""
    if mark > 0.0:
        p.mark = mark
    p.unrealized = (p.mark - p.avg_px) * p.qty if p.qty != 0.0 else 0.0
    p.net_pnl = p.realized + p.unrealized - p.fees
    if p.net_pnl > p.peak_pnl:
        p.peak_pnl = p.net_pnl
    if p.qty > 0.0 and p.mark > p.trail_px:
        p.trail_px = p.mark
    elif p.qty < 0.0 and (p.trail_px == 0.0 or p.mark < p.trail_px):
        p.trail_px = p.mark


@njit(cache=True, _nrt=False)
def stop_level(p, stop_bps, trail_bps):
    """(stop price, 1 if the trailing stop is the binding one) for ``p``; (0, 0) when flat or off."""
    if p.qty == 0.0 or (stop_bps <= 0.0 and trail_bps <= 0.0):
        return 0.0, 0
    lvl, trailing = 0.0, 0
    if p.qty > 0.0:
        if stop_bps > 0.0:
            lvl = p.avg_px * (1.0 - stop_bps * 1e-4)
        if trail_bps > 0.0 and p.trail_px > 0.0:
            t = p.trail_px * (1.0 - trail_bps * 1e-4)
            if t > lvl:
                lvl, trailing = t, 1
    else:
        lvl = np.inf
        if stop_bps > 0.0:
            lvl = p.avg_px * (1.0 + stop_bps * 1e-4)
        if trail_bps > 0.0 and p.trail_px > 0.0:
            t = p.trail_px * (1.0 + trail_bps * 1e-4)
            if t < lvl:
                lvl, trailing = t, 1
        if lvl == np.inf:
            lvl = 0.0
    return lvl, trailing


@njit(cache=True, _nrt=False)
def stop_hit(p, lvl):
    """True when the mark has reached the stop level ``lvl`` of ``p``."""
    if lvl <= 0.0 or p.mark <= 0.0:
        return False
    return (p.qty > 0.0 and p.mark <= lvl) or (p.qty < 0.0 and p.mark >= lvl)


@njit(cache=True)
def replay(pos, s, sides, qtys, pxs, fees, method, lot_q, lot_px, lot_head, lot_n, marks):
    """Apply fills ``i`` to ``pos[s]`` in order and mark at ``marks[i]`` after each (tests,
    benchmarks, backtests). Return the number of FIFO lot merges."""
    merged = 0
    p = pos[s]
    for i in range(sides.shape[0]):
        merged += apply_fill(p, s, sides[i], qtys[i], pxs[i], fees[i], method, lot_q, lot_px,
                             lot_head, lot_n)
        mark_position(p, marks[i])
    return merged
