"""L2 order books, one per symbol, in numba arrays: the book stage's core (``procs.book``).

Storage (private to the book stage; readers see the ``depth`` and ``tops`` tables), two
arrays so that a call passes few arguments (numba passes every array as ~10 words):

* ``lv``: ``float64[n_sym, 8, 2 * capacity]``: row ``4 * b + 2 * f + side`` holds the prices
  (``f = 0``) or sizes (``f = 1``) of one side (0 = bids, 1 = asks) of the live book
  (``b = 0``) or of the symbol's staged snapshot (``b = 1``).
* ``st``: ``int64[n_sym, N_ST]``: per side and book, where its levels start (``4 * b + side``)
  and how many there are (``4 * b + 2 + side``); then the stamps for the order checks and
  the open-snapshot state (``S_*``).

A side's ``n`` levels lie **best first** (bids descending, asks ascending) in the slots
``lo .. lo + n - 1`` of its ``2 * capacity`` slots, with free slots on both sides of the
run. So the frequent changes at the touch are O(1) or move only the few levels in front of
the change (a new best takes the slot before the run; removing the k best moves ``lo``),
dropping the worst level is O(1), a change at depth k moves min(k, n - k) levels, and the
top N levels are contiguous for publishing. A run that reaches an end of its slots is
re-centred (moved once; it then has at least ``capacity / 2`` free slots that way). A
level is found by a linear scan of the best ``LINEAR_SCAN`` levels, then a binary search.
Functions that take arrays are compiled with ``_nrt=False`` (no reference counting: they
allocate nothing) and ``apply_tick`` is inlined into its caller.

Messages (``layouts.market`` documents the TICK protocol; sizes and prices as sent):

* **quote** ``(bid, bid_size, ask, ask_size)``: replaces the best level of each side: bid
  levels above ``bid`` are removed and level ``bid`` is set to ``bid_size``; the same for
  asks below ``ask``. Deeper levels (from deltas or snapshots) stay.
* **delta** ``(side, price, size)``: sets the level; ``size == 0`` removes it.
* **snapshot**: staged per symbol from its ``BOOK_FIRST`` record to its ``BOOK_LAST``
  record, then replaces both sides at once.
* **trade**: does not change the book (the stage records ``last`` and feeds the bars).
* **venue bar** (``TICK_BAR``, a bar the venue computed; ``flags`` = ``BAR_MINUTE``,
  ``BAR_UPDATED`` or ``BAR_DAILY``): does not change the book; once validated (below) the
  stage forwards it to the signal as one BOOK_EVENT (``procs.bars.venue_bar_fields``).

**Crossed and stale levels.** A book never stays crossed or locked: an update that sets a
level at price ``p`` on one side removes every level of the other side at ``p`` or better
for that side (a bid at 101 removes asks at 101 and below, an ask at 100 removes bids at
100 and above). The later update wins because it is the newer information; the opposite
levels it crosses are stale (their removal was lost or is still in flight). A quote has
the same effect through its two sides. A *message* that is crossed in itself is rejected
instead (``rejected_crossed``), because there is no later update to prefer: a quote with
``bid >= ask``, or a snapshot whose best staged bid is >= its best staged ask (the live book
is left as it was).

**Capacity.** A side holds at most ``capacity`` levels. Setting a new level on a full side
drops the worst level if the new one is better, else the new level is not kept (it is
beyond the tracked depth). Nothing is counted: holding the best ``capacity`` levels is the
design, not an error.

**Validation**, in this order; a rejected tick changes nothing of the book, its stamps or
its bars, and is counted once, by the first reason:

1. ``sym >= n_sym`` -> ``rejected_unknown_symbol``;
2. a kind other than trade, quote, delta, snapshot, bar, or a bar whose ``flags`` is not a
   ``BAR_*`` value (its length is unknown) -> ``rejected_unsupported_kind``;
3. a price that is NaN, infinite or <= 0 -> ``rejected_bad_price``; for a bar, any of its
   open, high, low and close, a VWAP that is NaN, infinite or < 0 (0 = unknown), and prices
   that contradict each other (``low > min(open, close)`` or ``high < max(open, close)``);
4. a size that is NaN, infinite, negative, or zero where zero means nothing (trades,
   quotes, snapshot levels; only a delta's 0 means "remove"; a bar's volume may be 0) ->
   ``rejected_bad_size``;
5. stamps going backwards for the symbol -> ``rejected_out_of_order``: ``recv_ns`` below the
   symbol's last accepted ``recv_ns`` (any kind: one feed stamps them all), or a non-zero
   ``exch_ns`` below the last non-zero ``exch_ns`` of the same stream (trades, quotes,
   book records = deltas and snapshots, minute bars = minute and updated bars, daily bars;
   venues stamp each channel on its own, so a trade may legitimately carry an earlier venue
   time than the quote before it, and a day's bar starts before that day's minute bars);
   equal stamps are in order (e.g. a daily bar sent again, with its start, as the day
   goes on). A bar's ``exch_ns`` is its start, which the event needs: a bar without
   one (``exch_ns <= 0``, or too late for its end to fit in an int64) is out of order too.
   **An updated bar** (``BAR_UPDATED``) is exempt from the ``exch_ns`` order of its stream:
   it re-sends the start of a minute already past (Alpaca re-sends a bar corrected by late
   trades with the same ``t``, possibly after later minutes' bars), so it is forwarded
   whatever its start, and the strategy decides what a correction means to it; it moves
   its stream's floor only forwards;
6. a quote with ``bid >= ask`` -> ``rejected_crossed``;
7. a snapshot record without ``BOOK_FIRST`` while no snapshot of its symbol is open ->
   ``rejected_bad_snapshot``; a snapshot crossed at its last record -> ``rejected_crossed``
   (counted on that record).

A snapshot record rejected by 3-5 also abandons the open snapshot of its symbol (so a bad
level never makes it into a book; the records that follow are then rejected as
``rejected_bad_snapshot``); a ``BOOK_FIRST`` record while a snapshot is open abandons the
open one and starts afresh. Abandoned snapshots are counted in ``snapshots_abandoned``.
Stamps of a staged snapshot count only once it is applied.

Counting: every tick lands in exactly one of ``quotes``, ``trades``, ``deltas``,
``snapshot_levels`` (records of snapshots, staged or applied), ``bars_out`` (venue bars
accepted: the stage forwards each as one event) or a ``rejected_*`` counter, so ``ticks_in``
is their sum. (The stage also counts the bars it builds from trades in ``bars_out``; its
doc states the identity that then holds.) ``snapshots`` counts applied snapshots.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from layouts.market import (
    BAR_DAILY,
    BAR_UPDATED,
    BOOK_FIRST,
    BOOK_LAST,
    BOOK_NO_LEVEL,
    BOOK_SIDE,
    SIDE_ASK,
    SIDE_BID,
    TICK_BAR,
    TICK_BOOK_DELTA,
    TICK_BOOK_SNAPSHOT,
    TICK_QUOTE,
    TICK_TRADE,
)

from .bars import VENUE_MAX_START

#: The book stage's counters, in slot order (at most 16).
COUNTER_NAMES = ("ticks_in", "events_out", "quotes", "trades", "deltas", "snapshot_levels",
                 "snapshots", "snapshots_abandoned", "bars_out", "rejected_bad_price",
                 "rejected_bad_size", "rejected_unknown_symbol", "rejected_crossed",
                 "rejected_unsupported_kind", "rejected_out_of_order", "rejected_bad_snapshot")
(C_TICKS_IN, C_EVENTS_OUT, C_QUOTES, C_TRADES, C_DELTAS, C_SNAPSHOT_LEVELS, C_SNAPSHOTS,
 C_SNAPSHOTS_ABANDONED, C_BARS_OUT, C_BAD_PRICE, C_BAD_SIZE, C_UNKNOWN_SYMBOL, C_CROSSED,
 C_UNSUPPORTED_KIND, C_OUT_OF_ORDER, C_BAD_SNAPSHOT) = range(16)

LIVE, STAGED = 0, 1
#: ``st`` columns after the run starts/lengths (0..7): last accepted recv_ns; last non-zero
#: exch_ns per stream (trades, quotes, book records, minute bars, daily bars); the open
#: snapshot (flag, its latest recv_ns and exch_ns).
(S_RECV, S_EXCH_TRADE, S_EXCH_QUOTE, S_EXCH_BOOK, S_EXCH_BAR, S_EXCH_DAY, S_SNAP_OPEN, S_SNAP_RECV,
 S_SNAP_EXCH) = range(8, 17)
N_ST = S_SNAP_EXCH + 1
NO_STAMP = np.iinfo(np.int64).min
LINEAR_SCAN = 8     #: levels scanned linearly from the best before a binary search

#: ``apply_tick`` results.
EV_NONE = 0      #: rejected, or a snapshot record staged: nothing to publish
EV_BOOK = 1      #: the book changed (quote, delta, applied snapshot)
EV_TRADE = 2     #: a trade was accepted (the book is unchanged)
EV_BAR = 3       #: a venue bar was accepted (the book is unchanged): forward it


def new_book(n_sym: int, capacity: int) -> dict:
    """Empty book arrays ``{"lv", "st"}`` for ``n_sym`` symbols."""
    st = np.zeros((n_sym, N_ST), np.int64)
    st[:, 0:2] = capacity
    st[:, 4:6] = capacity
    st[:, S_RECV] = NO_STAMP
    return {"lv": np.zeros((n_sym, 8, 2 * capacity)), "st": st}


#: The arrays of a book, in ``apply_tick``'s argument order.
BOOK_ARRAYS = ("lv", "st")


@njit(cache=True, inline="always")
def good_price(x):
    return math.isfinite(x) and x > 0.0


@njit(cache=True, inline="always")
def good_size(x):
    return math.isfinite(x) and x > 0.0


@njit(cache=True, inline="always")
def _better(side, a, b):
    """``a`` is a strictly better price than ``b`` on ``side``."""
    return a > b if side == SIDE_BID else a < b


@njit(cache=True, inline="always")
def _find(lv, s, pr, side, a, n, p):
    """Position ``k`` (0 = best) of the first level not better than ``p``; ``n`` if none."""
    k = 0
    lim = min(n, LINEAR_SCAN)
    while k < lim and _better(side, lv[s, pr, a + k], p):
        k += 1
    if k < lim or k == n:
        return k
    lo_, hi = k, n
    while lo_ < hi:
        mid = (lo_ + hi) >> 1
        if _better(side, lv[s, pr, a + mid], p):
            lo_ = mid + 1
        else:
            hi = mid
    return lo_


@njit(cache=True, _nrt=False)
def _recenter(lv, st, s, b, side, n):
    """Move a side's ``n`` levels to the middle of its slots; return the new start."""
    pr, lc = 4 * b + side, 4 * b + side
    old = st[s, lc]
    new = (lv.shape[2] - n) // 2
    if new < old:
        for j in range(n):
            lv[s, pr, new + j] = lv[s, pr, old + j]
            lv[s, pr + 2, new + j] = lv[s, pr + 2, old + j]
    elif new > old:
        for j in range(n - 1, -1, -1):
            lv[s, pr, new + j] = lv[s, pr, old + j]
            lv[s, pr + 2, new + j] = lv[s, pr + 2, old + j]
    st[s, lc] = new
    return new


@njit(cache=True, _nrt=False)
def set_level(lv, st, s, b, side, p, q):
    """Set level ``p`` of a side of book ``b`` to size ``q`` (> 0); a full side drops its worst."""
    pr, lc = 4 * b + side, 4 * b + side
    zr, nc = pr + 2, lc + 2
    width = lv.shape[2]
    cap = width // 2
    a, n = st[s, lc], st[s, nc]
    k = _find(lv, s, pr, side, a, n, p)
    if k < n and lv[s, pr, a + k] == p:
        lv[s, zr, a + k] = q
        return
    if n == cap:
        if k == n:
            return                     # worse than every level of a full side: not kept
        n -= 1                         # drop the worst
    if k <= n - k:                     # move the k better levels one slot towards the front
        if a == 0:
            a = _recenter(lv, st, s, b, side, n)
        for j in range(k):
            lv[s, pr, a - 1 + j] = lv[s, pr, a + j]
            lv[s, zr, a - 1 + j] = lv[s, zr, a + j]
        a -= 1
        st[s, lc] = a
    else:                              # move the n - k worse levels one slot towards the back
        if a + n == width:
            a = _recenter(lv, st, s, b, side, n)
        for j in range(n, k, -1):
            lv[s, pr, a + j] = lv[s, pr, a + j - 1]
            lv[s, zr, a + j] = lv[s, zr, a + j - 1]
    lv[s, pr, a + k] = p
    lv[s, zr, a + k] = q
    st[s, nc] = n + 1


@njit(cache=True, _nrt=False)
def remove_level(lv, st, s, side, p):
    """Remove level ``p`` of a side of the live book, if present."""
    pr, lc = side, side
    zr, nc = pr + 2, lc + 2
    a, n = st[s, lc], st[s, nc]
    k = _find(lv, s, pr, side, a, n, p)
    if k == n or lv[s, pr, a + k] != p:
        return
    if k < n - 1 - k:                  # close the gap from the front
        for j in range(k, 0, -1):
            lv[s, pr, a + j] = lv[s, pr, a + j - 1]
            lv[s, zr, a + j] = lv[s, zr, a + j - 1]
        st[s, lc] = a + 1
    else:
        for j in range(k, n - 1):
            lv[s, pr, a + j] = lv[s, pr, a + j + 1]
            lv[s, zr, a + j] = lv[s, zr, a + j + 1]
    st[s, nc] = n - 1
    if n == 1:
        st[s, lc] = lv.shape[2] // 2


@njit(cache=True, inline="always")
def trim_better(lv, st, s, side, p, inclusive):
    """Remove the live levels of ``side`` better than ``p`` (and at ``p`` when ``inclusive``)."""
    a, n = st[s, side], st[s, side + 2]
    k = 0
    while k < n and (_better(side, lv[s, side, a + k], p) or (inclusive and lv[s, side, a + k] == p)):
        k += 1
    if k == 0:
        return
    st[s, side + 2] = n - k
    st[s, side] = a + k if k < n else lv.shape[2] // 2


@njit(cache=True, inline="always")
def _in_order(recv, exch, rfloor, efloor):
    return recv >= rfloor and (exch == 0 or exch >= efloor)


@njit(cache=True, inline="always")
def _stamp(st, s, recv, exch, col):
    st[s, S_RECV] = recv
    if exch != 0:
        st[s, col] = exch


@njit(cache=True, _nrt=False)
def _snapshot_record(t, s, lv, st, counters):
    fl = t.flags
    first = (fl & BOOK_FIRST) != 0
    last = (fl & BOOK_LAST) != 0
    has_level = (fl & BOOK_NO_LEVEL) == 0
    side = fl & BOOK_SIDE
    is_open = st[s, S_SNAP_OPEN] != 0
    reason = -1
    if has_level and not good_price(t.price):
        reason = C_BAD_PRICE
    elif has_level and not good_size(t.size):
        reason = C_BAD_SIZE
    else:
        rfloor, efloor = st[s, S_RECV], st[s, S_EXCH_BOOK]
        if is_open and not first:
            rfloor = max(rfloor, st[s, S_SNAP_RECV])
            efloor = max(efloor, st[s, S_SNAP_EXCH])
        if not _in_order(t.recv_ns, t.exch_ns, rfloor, efloor):
            reason = C_OUT_OF_ORDER
        elif not first and not is_open:
            reason = C_BAD_SNAPSHOT
    if reason >= 0:
        if is_open:
            st[s, S_SNAP_OPEN] = 0
            counters[C_SNAPSHOTS_ABANDONED] += np.uint64(1)
        counters[reason] += np.uint64(1)
        return EV_NONE
    width = lv.shape[2]
    if first:
        if is_open:
            counters[C_SNAPSHOTS_ABANDONED] += np.uint64(1)
        st[s, S_SNAP_OPEN] = 1
        st[s, S_SNAP_EXCH] = 0
        st[s, 4] = width // 2          # staged runs: empty, centred
        st[s, 5] = width // 2
        st[s, 6] = 0
        st[s, 7] = 0
    st[s, S_SNAP_RECV] = t.recv_ns
    if t.exch_ns != 0:
        st[s, S_SNAP_EXCH] = t.exch_ns
    if has_level:
        set_level(lv, st, s, STAGED, side, t.price, t.size)
    if not last:
        counters[C_SNAPSHOT_LEVELS] += np.uint64(1)
        return EV_NONE
    st[s, S_SNAP_OPEN] = 0
    if st[s, 6] > 0 and st[s, 7] > 0 and lv[s, 4, st[s, 4]] >= lv[s, 5, st[s, 5]]:
        counters[C_CROSSED] += np.uint64(1)
        return EV_NONE
    for d in range(2):
        n, src = st[s, 6 + d], st[s, 4 + d]
        dst = (width - n) // 2
        for i in range(n):
            lv[s, d, dst + i] = lv[s, 4 + d, src + i]
            lv[s, 2 + d, dst + i] = lv[s, 6 + d, src + i]
        st[s, d] = dst
        st[s, 2 + d] = n
    st[s, S_RECV] = t.recv_ns
    if st[s, S_SNAP_EXCH] > st[s, S_EXCH_BOOK]:
        st[s, S_EXCH_BOOK] = st[s, S_SNAP_EXCH]
    counters[C_SNAPSHOT_LEVELS] += np.uint64(1)
    counters[C_SNAPSHOTS] += np.uint64(1)
    return EV_BOOK


# Not inlined: venue bars are rare, and their checks would only grow the hot step's code.
@njit(cache=True, _nrt=False)
def _venue_bar(t, s, st, counters):
    """Validate venue bar ``t`` (rules 2-5 of the module doc); count it; EV_BAR or EV_NONE."""
    fl = t.flags
    if fl > BAR_DAILY:                              # BAR_MINUTE, BAR_UPDATED, BAR_DAILY = 0, 1, 2
        counters[C_UNSUPPORTED_KIND] += np.uint64(1)
        return EV_NONE
    o, h, lo, c, vw = t.bid, t.ask, t.bid_size, t.price, t.ask_size
    if not (good_price(o) and good_price(h) and good_price(lo) and good_price(c)
            and math.isfinite(vw) and vw >= 0.0) or lo > min(o, c) or h < max(o, c):
        counters[C_BAD_PRICE] += np.uint64(1)
        return EV_NONE
    if not (math.isfinite(t.size) and t.size >= 0.0):
        counters[C_BAD_SIZE] += np.uint64(1)
        return EV_NONE
    col = S_EXCH_DAY if fl == BAR_DAILY else S_EXCH_BAR
    x = t.exch_ns
    if not (0 < x <= VENUE_MAX_START) or t.recv_ns < st[s, S_RECV] or (fl != BAR_UPDATED and x < st[s, col]):
        counters[C_OUT_OF_ORDER] += np.uint64(1)
        return EV_NONE
    st[s, S_RECV] = t.recv_ns
    if x > st[s, col]:                              # an older updated bar leaves the floor
        st[s, col] = x
    counters[C_BARS_OUT] += np.uint64(1)
    return EV_BAR


@njit(cache=True, inline="always")
def apply_tick(t, lv, st, counters):
    """Validate and apply one TICK record to its symbol's book; count it; return EV_*."""
    s = t.sym
    if s >= st.shape[0]:
        counters[C_UNKNOWN_SYMBOL] += np.uint64(1)
        return EV_NONE
    kind = t.kind
    if kind == TICK_QUOTE:
        if not (good_price(t.bid) and good_price(t.ask)):
            counters[C_BAD_PRICE] += np.uint64(1)
            return EV_NONE
        if not (good_size(t.bid_size) and good_size(t.ask_size)):
            counters[C_BAD_SIZE] += np.uint64(1)
            return EV_NONE
        if not _in_order(t.recv_ns, t.exch_ns, st[s, S_RECV], st[s, S_EXCH_QUOTE]):
            counters[C_OUT_OF_ORDER] += np.uint64(1)
            return EV_NONE
        if t.bid >= t.ask:
            counters[C_CROSSED] += np.uint64(1)
            return EV_NONE
        _stamp(st, s, t.recv_ns, t.exch_ns, S_EXCH_QUOTE)
        trim_better(lv, st, s, SIDE_BID, t.bid, False)
        set_level(lv, st, s, LIVE, SIDE_BID, t.bid, t.bid_size)
        trim_better(lv, st, s, SIDE_ASK, t.ask, False)
        set_level(lv, st, s, LIVE, SIDE_ASK, t.ask, t.ask_size)
        counters[C_QUOTES] += np.uint64(1)
        return EV_BOOK
    if kind == TICK_TRADE:
        if not good_price(t.price):
            counters[C_BAD_PRICE] += np.uint64(1)
            return EV_NONE
        if not good_size(t.size):
            counters[C_BAD_SIZE] += np.uint64(1)
            return EV_NONE
        if not _in_order(t.recv_ns, t.exch_ns, st[s, S_RECV], st[s, S_EXCH_TRADE]):
            counters[C_OUT_OF_ORDER] += np.uint64(1)
            return EV_NONE
        _stamp(st, s, t.recv_ns, t.exch_ns, S_EXCH_TRADE)
        counters[C_TRADES] += np.uint64(1)
        return EV_TRADE
    if kind == TICK_BOOK_DELTA:
        if not good_price(t.price):
            counters[C_BAD_PRICE] += np.uint64(1)
            return EV_NONE
        if not (math.isfinite(t.size) and t.size >= 0.0):
            counters[C_BAD_SIZE] += np.uint64(1)
            return EV_NONE
        if not _in_order(t.recv_ns, t.exch_ns, st[s, S_RECV], st[s, S_EXCH_BOOK]):
            counters[C_OUT_OF_ORDER] += np.uint64(1)
            return EV_NONE
        _stamp(st, s, t.recv_ns, t.exch_ns, S_EXCH_BOOK)
        side = t.flags & BOOK_SIDE
        if t.size == 0.0:
            remove_level(lv, st, s, side, t.price)
        else:
            set_level(lv, st, s, LIVE, side, t.price, t.size)
            trim_better(lv, st, s, 1 - side, t.price, True)
        counters[C_DELTAS] += np.uint64(1)
        return EV_BOOK
    if kind == TICK_BOOK_SNAPSHOT:
        return _snapshot_record(t, s, lv, st, counters)
    if kind == TICK_BAR:
        return _venue_bar(t, s, st, counters)
    counters[C_UNSUPPORTED_KIND] += np.uint64(1)
    return EV_NONE


@njit(cache=True, inline="always")
def touch_stats(bid, ask, bs, as_):
    """(mid, microprice, imbalance) of a two-sided touch."""
    tot = bs + as_
    return 0.5 * (bid + ask), (bid * as_ + ask * bs) / tot, (bs - as_) / tot


@njit(cache=True, inline="always")
def best(lv, st, s, side):
    """(price, size) of the best live level of ``side``, (0, 0) when the side is empty."""
    if st[s, 2 + side] == 0:
        return 0.0, 0.0
    a = st[s, side]
    return lv[s, side, a], lv[s, 2 + side, a]


@njit(cache=True, _nrt=False)
def write_depth_row(row, lv, st, s, depth, recv_ns):
    """Write symbol ``s``'s top ``depth`` levels and touch measures into a DEPTH record."""
    b0, a0, nb, na = st[s, 0], st[s, 1], st[s, 2], st[s, 3]
    pb, pa = min(nb, depth), min(na, depth)
    row.sym = s
    row.n_bid = pb
    row.n_ask = pa
    row.bid_levels = nb
    row.ask_levels = na
    row.updated_ns = recv_ns
    row.updates += np.uint64(1)
    tb, ta = 0.0, 0.0
    for k in range(depth):
        if k < pb:
            row.bid_px[k] = lv[s, 0, b0 + k]
            row.bid_size[k] = lv[s, 2, b0 + k]
            tb += lv[s, 2, b0 + k]
        else:
            row.bid_px[k] = 0.0
            row.bid_size[k] = 0.0
        if k < pa:
            row.ask_px[k] = lv[s, 1, a0 + k]
            row.ask_size[k] = lv[s, 3, a0 + k]
            ta += lv[s, 3, a0 + k]
        else:
            row.ask_px[k] = 0.0
            row.ask_size[k] = 0.0
    if nb > 0 and na > 0:
        row.valid = 1
        mid, micro, imb = touch_stats(lv[s, 0, b0], lv[s, 1, a0], lv[s, 2, b0], lv[s, 3, a0])
        row.mid = mid
        row.microprice = micro
        row.imbalance = imb
        row.depth_imbalance = (tb - ta) / (tb + ta)
    else:
        row.valid = 0
        row.mid = 0.0
        row.microprice = 0.0
        row.imbalance = 0.0
        row.depth_imbalance = 0.0


def levels(book: dict, s: int, side: int, n: int | None = None, staged: bool = False) -> list:
    """[(price, size)] of the best ``n`` levels of a side, best first (plain Python, for tests)."""
    b = 4 * int(staged)
    lv, st = book["lv"], book["st"]
    a, m = int(st[s, b + side]), int(st[s, b + 2 + side])
    out = [(float(lv[s, b + side, i]), float(lv[s, b + 2 + side, i])) for i in range(a, a + m)]
    return out if n is None else out[:n]
