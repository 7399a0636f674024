"""The L2 book core (``procs.l2book``) against the plain-Python ``bench.market_book.ReferenceBook``.

Random message streams (snapshots complete, partial, crossed or orphaned; deltas; quotes;
trades; venue bars; bad prices, sizes, symbols, kinds and stamps): after every message the
numba book holds exactly the reference's levels on every side of every symbol, and the
counters agree (the reference with venue bars: ``test_book_venue_bars.VenueReferenceBook``).
Then the crossed/stale rule worked by hand, and every rejection reason: counted once, the
book and its stamps unchanged.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import njit

from layouts.market import (BAR_DAILY, BAR_MINUTE, BAR_UPDATED, BOOK_FIRST, BOOK_LAST, BOOK_NO_LEVEL, SIDE_ASK,
                            SIDE_BID, TICK, TICK_BAR, TICK_BOOK_DELTA, TICK_BOOK_SNAPSHOT, TICK_QUOTE, TICK_TRADE)
from procs.l2book import (BOOK_ARRAYS, COUNTER_NAMES, EV_BAR, EV_BOOK, EV_NONE, EV_TRADE, S_EXCH_BAR, S_EXCH_DAY,
                          S_RECV, S_SNAP_OPEN, apply_tick, levels, new_book)
from test_book_venue_bars import VenueReferenceBook

N_SYM = 3


@njit(cache=True, _nrt=False)
def _apply_one(recs, i, lv, st, counters):
    return apply_tick(recs[i], lv, st, counters)


class Book:
    """The numba book driven one record at a time."""

    def __init__(self, n_sym=N_SYM, capacity=64):
        self.b = new_book(n_sym, capacity)
        self.counters = np.zeros(16, np.uint64)

    def apply(self, rec) -> int:
        return int(_apply_one(rec, 0, *(self.b[k] for k in BOOK_ARRAYS), self.counters))

    def levels(self, s, side):
        return levels(self.b, s, side)

    def counter_values(self):
        return {n: int(v) for n, v in zip(COUNTER_NAMES, self.counters)}

    def state(self):
        """The book as seen by anyone: levels and committed stamps (not the staging area)."""
        return ([(self.levels(s, 0), self.levels(s, 1)) for s in range(self.b["st"].shape[0])],
                self.b["st"][:, S_RECV:S_SNAP_OPEN].copy())


def rec(kind, sym=0, price=0.0, size=0.0, flags=0, bid=0.0, ask=0.0, bid_size=0.0, ask_size=0.0,
        recv_ns=1000, exch_ns=0, seq=0):
    r = np.zeros(1, TICK)
    r[0] = (seq, recv_ns, exch_ns, sym, kind, flags, price, size, bid, ask, bid_size, ask_size)
    return r


def quote(sym, bid, ask, bs=100.0, as_=200.0, **kw):
    return rec(TICK_QUOTE, sym, bid=bid, ask=ask, bid_size=bs, ask_size=as_, **kw)


def delta(sym, side, price, size, **kw):
    return rec(TICK_BOOK_DELTA, sym, price, size, flags=side, **kw)


def trade(sym, price, size=100.0, **kw):
    return rec(TICK_TRADE, sym, price, size, **kw)


def bar(sym, o, h, lo, c, v=500.0, vw=0.0, flags=BAR_MINUTE, exch_ns=5000, **kw):
    """A venue bar (layouts.market: close in price, volume in size, open/high/low/vwap in the quote fields)."""
    return rec(TICK_BAR, sym, c, v, flags=flags, bid=o, ask=h, bid_size=lo, ask_size=vw, exch_ns=exch_ns, **kw)


def snapshot(sym, bids, asks, **kw):
    """The records of a complete snapshot (bids then asks); [] -> one NO_LEVEL record."""
    lv = [(SIDE_BID, p, q) for p, q in bids] + [(SIDE_ASK, p, q) for p, q in asks]
    if not lv:
        return [rec(TICK_BOOK_SNAPSHOT, sym, flags=BOOK_FIRST | BOOK_LAST | BOOK_NO_LEVEL, **kw)]
    return [rec(TICK_BOOK_SNAPSHOT, sym, p, q, flags=side | (BOOK_FIRST if i == 0 else 0)
                | (BOOK_LAST if i == len(lv) - 1 else 0), **kw) for i, (side, p, q) in enumerate(lv)]


def _both(book, ref, r):
    got = book.apply(r)
    want = ref.apply_book(r[0].tolist())
    assert got == want, (r, got, want)
    return got


def _same(book, ref):
    for s in range(N_SYM):
        for side in (SIDE_BID, SIDE_ASK):
            assert book.levels(s, side) == ref.levels(s, side), (s, side)
    cv = book.counter_values()
    for k, v in ref.counters.items():
        if k not in ("ticks_in", "events_out"):          # the stage's: apply_book counts the rest
            assert cv[k] == v, k


# ---- random streams ----------------------------------------------------------------------------

GRID = [100.0 + 0.5 * k for k in range(-8, 9)]                 # exact in binary
prices = st.sampled_from(GRID)
bad_prices = st.sampled_from([0.0, -100.0, math.nan, math.inf, -math.inf])
sizes = st.sampled_from([1.0, 2.5, 100.0, 300.0])
bad_sizes = st.sampled_from([-1.0, math.nan, math.inf])
syms = st.integers(0, N_SYM - 1)


@st.composite
def messages(draw):
    """A list of (kind, fields) dicts; one draw may be a whole snapshot group."""
    what = draw(st.sampled_from(["quote", "quote", "delta", "delta", "delta", "remove", "trade",
                                 "snapshot", "bar", "bad"]))
    s = draw(syms)
    if what == "quote":
        b = draw(prices)
        a = draw(st.one_of(prices.filter(lambda a: a > b), prices))     # sometimes crossed
        return [dict(kind=TICK_QUOTE, sym=s, bid=b, ask=a, bid_size=draw(sizes), ask_size=draw(sizes))]
    if what in ("delta", "remove"):
        return [dict(kind=TICK_BOOK_DELTA, sym=s, flags=draw(st.sampled_from([SIDE_BID, SIDE_ASK])),
                     price=draw(prices), size=0.0 if what == "remove" else draw(sizes))]
    if what == "trade":
        return [dict(kind=TICK_TRADE, sym=s, price=draw(prices), size=draw(sizes))]
    if what == "bar":                   # mostly good; its own venue time, in order or not
        o, c = draw(prices), draw(prices)
        wick = draw(st.sampled_from([0.0, 0.5, 0.5, -0.5]))
        return [dict(kind=TICK_BAR, sym=s, flags=draw(st.sampled_from([BAR_MINUTE, BAR_UPDATED, BAR_DAILY, 3])),
                     bid=o, ask=max(o, c) + wick, bid_size=min(o, c) - wick, price=c,
                     ask_size=draw(st.sampled_from([0.0, c, -1.0])), size=draw(st.sampled_from([0.0, 7.0, -7.0])),
                     exch_ns=draw(st.sampled_from([0, 60, 120, 120, 180, 240])) * 10**9)]
    if what == "snapshot":
        lv = draw(st.lists(st.tuples(st.sampled_from([SIDE_BID, SIDE_ASK]), prices, sizes), max_size=10))
        if draw(st.booleans()):                        # mostly well-formed: bids below asks
            mid = draw(prices)
            lv = [(sd, p, q) for sd, p, q in lv if (p < mid if sd == SIDE_BID else p > mid)]
        recs = [dict(kind=TICK_BOOK_SNAPSHOT, sym=s, flags=sd, price=p, size=q) for sd, p, q in lv]
        if not recs:
            recs = [dict(kind=TICK_BOOK_SNAPSHOT, sym=s, flags=BOOK_NO_LEVEL)]
        recs[0]["flags"] |= BOOK_FIRST
        recs[-1]["flags"] |= BOOK_LAST
        mess = draw(st.sampled_from(["ok", "ok", "ok", "no_first", "no_last", "bad_level"]))
        if mess == "no_first":
            recs[0]["flags"] &= ~BOOK_FIRST
        elif mess == "no_last":
            recs[-1]["flags"] &= ~BOOK_LAST
        elif mess == "bad_level" and lv:
            i = draw(st.integers(0, len(recs) - 1))
            recs[i]["price" if draw(st.booleans()) else "size"] = draw(st.one_of(bad_prices, bad_sizes))
        return recs
    bad = draw(st.sampled_from(["price", "size", "zero_size", "sym", "kind"]))
    base = draw(st.sampled_from([TICK_QUOTE, TICK_TRADE, TICK_BOOK_DELTA, TICK_BOOK_SNAPSHOT]))
    m = dict(kind=base, sym=s, flags=draw(st.integers(0, 7)), price=draw(prices), size=draw(sizes),
             bid=100.0, ask=100.5, bid_size=1.0, ask_size=1.0)
    if bad == "price":
        m["bid" if base == TICK_QUOTE else "price"] = draw(bad_prices)
    elif bad == "size":
        m["ask_size" if base == TICK_QUOTE else "size"] = draw(bad_sizes)
    elif bad == "zero_size":
        m["bid_size" if base == TICK_QUOTE else "size"] = 0.0
    elif bad == "sym":
        m["sym"] = draw(st.sampled_from([N_SYM, 2**32 - 1]))
    else:
        m["kind"] = draw(st.sampled_from([0, 6, 9, 65535]))
    return [m]


@st.composite
def streams(draw):
    groups = draw(st.lists(messages(), max_size=60))
    out, recv, exch = [], 1000, 10**18
    for g in groups:
        step = draw(st.sampled_from([0, 1, 7, 7, 7, 7, 7, -5, -30]))   # sometimes backwards
        recv += step
        stamp_exch = draw(st.sampled_from([0, 0, 1]))
        if stamp_exch:
            exch += draw(st.sampled_from([3, 3, 0, -2]))
        for m in g:                                    # a bar keeps its own venue time
            out.append(dict({"exch_ns": exch if stamp_exch else 0}, **m, recv_ns=recv))
    return out


def _record(m, seq):
    r = np.zeros(1, TICK)
    for k, v in m.items():
        r[0][k] = v
    r[0]["seq"] = seq
    return r


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msgs=streams(), capacity=st.sampled_from([3, 64]))
def test_book_matches_reference_after_every_message(msgs, capacity):
    book, ref = Book(capacity=capacity), VenueReferenceBook(N_SYM, capacity=capacity)
    for i, m in enumerate(msgs):
        _both(book, ref, _record(m, i))
        _same(book, ref)
    cv = book.counter_values()
    assert sum(cv[k] for k in ("quotes", "trades", "deltas", "snapshot_levels", "bars_out")) + \
        sum(v for k, v in cv.items() if k.startswith("rejected_")) == len(msgs)
    for s in range(N_SYM):                                   # never crossed, never over capacity
        b, a = book.levels(s, SIDE_BID), book.levels(s, SIDE_ASK)
        assert len(b) <= capacity and len(a) <= capacity
        assert not (b and a) or b[0][0] < a[0][0]
        assert all(q > 0 and math.isfinite(q) for _, q in b + a)
        assert [p for p, _ in b] == sorted({p for p, _ in b}, reverse=True)
        assert [p for p, _ in a] == sorted({p for p, _ in a})


def test_long_random_stream_matches_reference():
    from bench.market_book import make_stream

    ticks = make_stream(30_000, n_sym=N_SYM, seed=3, bad=0.03, snapshot_every=500)
    book, ref = Book(), VenueReferenceBook(N_SYM)
    for i in range(len(ticks)):
        _both(book, ref, ticks[i:i + 1])
        if i % 97 == 0:
            _same(book, ref)
    _same(book, ref)
    assert ref.counters["snapshots"] > 10 and ref.counters["rejected_out_of_order"] > 0


# ---- the crossed / stale rule, by hand ------------------------------------------------------------

def _book_with(bids, asks, capacity=64):
    b = Book(capacity=capacity)
    for r in snapshot(0, bids, asks):
        b.apply(r)
    assert b.levels(0, SIDE_BID) == sorted(bids, reverse=True) and b.levels(0, SIDE_ASK) == sorted(asks)
    return b


def test_a_bid_through_the_asks_removes_the_stale_asks():
    b = _book_with([(100.0, 1.0), (99.5, 2.0)], [(100.5, 3.0), (101.0, 4.0), (101.5, 5.0)])
    assert b.apply(delta(0, SIDE_BID, 101.0, 7.0, recv_ns=1001)) == EV_BOOK
    assert b.levels(0, SIDE_BID) == [(101.0, 7.0), (100.0, 1.0), (99.5, 2.0)]
    assert b.levels(0, SIDE_ASK) == [(101.5, 5.0)]            # 100.5 and 101 (locked) removed


def test_an_ask_through_the_bids_removes_the_stale_bids():
    b = _book_with([(100.0, 1.0), (99.5, 2.0), (99.0, 3.0)], [(100.5, 3.0)])
    b.apply(delta(0, SIDE_ASK, 99.5, 9.0, recv_ns=1001))
    assert b.levels(0, SIDE_ASK) == [(99.5, 9.0), (100.5, 3.0)]
    assert b.levels(0, SIDE_BID) == [(99.0, 3.0)]


def test_a_removal_never_removes_anything_else():
    b = _book_with([(100.0, 1.0)], [(100.5, 3.0)])
    b.apply(delta(0, SIDE_BID, 101.0, 0.0, recv_ns=1001))     # absent level: no-op
    b.apply(delta(0, SIDE_ASK, 100.5, 0.0, recv_ns=1002))
    assert b.levels(0, SIDE_BID) == [(100.0, 1.0)] and b.levels(0, SIDE_ASK) == []
    assert b.counter_values()["deltas"] == 2


def test_a_quote_replaces_the_touch_and_keeps_the_depth_behind_it():
    b = _book_with([(100.0, 1.0), (99.5, 2.0), (99.0, 3.0)], [(100.5, 4.0), (101.0, 5.0), (102.0, 6.0)])
    b.apply(quote(0, 99.5, 101.5, bs=20.0, as_=30.0, recv_ns=1001))
    assert b.levels(0, SIDE_BID) == [(99.5, 20.0), (99.0, 3.0)]
    assert b.levels(0, SIDE_ASK) == [(101.5, 30.0), (102.0, 6.0)]
    b.apply(quote(0, 102.0, 102.5, bs=1.0, as_=1.0, recv_ns=1002))     # moves up through the asks
    assert b.levels(0, SIDE_BID) == [(102.0, 1.0), (99.5, 20.0), (99.0, 3.0)]
    assert b.levels(0, SIDE_ASK) == [(102.5, 1.0)]


def test_a_crossed_or_locked_snapshot_is_rejected_and_the_book_kept():
    b = _book_with([(100.0, 1.0)], [(100.5, 3.0)])
    before = b.state()
    for bids, asks in (([(101.0, 1.0)], [(100.5, 1.0)]), ([(100.5, 1.0)], [(100.5, 1.0)])):
        recs = snapshot(0, bids + [(99.0, 1.0)], asks + [(102.0, 1.0)], recv_ns=1001)
        assert [b.apply(r) for r in recs] == [EV_NONE] * len(recs)
        assert b.state()[0] == before[0]
    cv = b.counter_values()
    assert cv["rejected_crossed"] == 2 and cv["snapshots"] == 1 and cv["snapshots_abandoned"] == 0


def test_a_snapshot_replaces_both_sides_and_an_empty_one_clears_the_book():
    b = _book_with([(100.0, 1.0), (99.0, 1.0)], [(100.5, 3.0)])
    for r in snapshot(0, [(98.0, 5.0)], [(98.5, 6.0), (99.0, 7.0)], recv_ns=1001):
        b.apply(r)
    assert b.levels(0, SIDE_BID) == [(98.0, 5.0)] and b.levels(0, SIDE_ASK) == [(98.5, 6.0), (99.0, 7.0)]
    (r,) = snapshot(0, [], [], recv_ns=1002)
    assert b.apply(r) == EV_BOOK
    assert b.levels(0, SIDE_BID) == [] and b.levels(0, SIDE_ASK) == []


def test_a_snapshot_is_invisible_until_its_last_record_and_others_may_interleave():
    b = _book_with([(100.0, 1.0)], [(100.5, 3.0)])
    recs = snapshot(0, [(90.0, 1.0), (89.0, 2.0)], [(91.0, 1.0)], recv_ns=1001)
    assert b.apply(recs[0]) == EV_NONE and b.apply(recs[1]) == EV_NONE
    assert b.apply(quote(1, 50.0, 51.0, recv_ns=1001)) == EV_BOOK           # another symbol
    assert b.apply(trade(0, 100.2, recv_ns=1001)) == EV_TRADE               # same symbol, a trade
    assert b.levels(0, SIDE_BID) == [(100.0, 1.0)]
    assert b.apply(recs[2]) == EV_BOOK
    assert b.levels(0, SIDE_BID) == [(90.0, 1.0), (89.0, 2.0)] and b.levels(0, SIDE_ASK) == [(91.0, 1.0)]
    assert b.counter_values()["snapshot_levels"] == 5                        # 2 + 3 records


def test_a_new_first_record_abandons_the_open_snapshot():
    b = _book_with([(100.0, 1.0)], [(100.5, 3.0)])
    first = snapshot(0, [(90.0, 1.0), (89.0, 1.0)], [(91.0, 1.0)], recv_ns=1001)
    b.apply(first[0])
    for r in snapshot(0, [(95.0, 1.0)], [(96.0, 1.0)], recv_ns=1002):
        b.apply(r)
    assert b.levels(0, SIDE_BID) == [(95.0, 1.0)]
    first[2][0]["recv_ns"] = 1003
    assert b.apply(first[2]) == EV_NONE                                      # an orphan now
    cv = b.counter_values()
    assert cv["snapshots_abandoned"] == 1 and cv["rejected_bad_snapshot"] == 1


def test_capacity_keeps_the_best_levels():
    b = Book(capacity=3)
    for i, p in enumerate([100.0, 99.0, 98.0, 97.0, 101.0, 99.5]):
        b.apply(delta(0, SIDE_BID, p, 1.0 + i, recv_ns=1000 + i))
    assert b.levels(0, SIDE_BID) == [(101.0, 5.0), (100.0, 1.0), (99.5, 6.0)]


# ---- every bad input: counted once, nothing changed --------------------------------------------------

BAD = [
    ("rejected_unknown_symbol", quote(N_SYM, 100.0, 100.5)),
    ("rejected_unknown_symbol", delta(2**32 - 1, SIDE_BID, 100.0, 1.0)),
    ("rejected_unsupported_kind", bar(0, 100.0, 100.0, 100.0, 100.0, flags=3)),     # a bar of unknown length
    ("rejected_unsupported_kind", rec(77, 0, 100.0, 5.0)),
    ("rejected_bad_price", rec(TICK_BAR, 0, 100.0, 5.0, exch_ns=5000)),     # no open, high, low
    ("rejected_bad_price", bar(0, 100.0, 101.0, 99.0, 100.5, vw=math.nan)),
    ("rejected_bad_price", bar(0, 100.0, 100.25, 99.0, 100.5)),                # high below the close
    ("rejected_bad_size", bar(0, 100.0, 101.0, 99.0, 100.5, v=-1.0)),
    ("rejected_out_of_order", bar(0, 100.0, 101.0, 99.0, 100.5, exch_ns=4999)),
    ("rejected_out_of_order", bar(0, 100.0, 101.0, 99.0, 100.5, flags=BAR_DAILY, exch_ns=4999)),
    ("rejected_out_of_order", bar(0, 100.0, 101.0, 99.0, 100.5, flags=BAR_UPDATED, exch_ns=0)),
    ("rejected_out_of_order", bar(0, 100.0, 101.0, 99.0, 100.5, flags=BAR_UPDATED, recv_ns=999)),
    ("rejected_bad_price", quote(0, math.nan, 100.5)),
    ("rejected_bad_price", quote(0, 100.0, math.inf)),
    ("rejected_bad_price", quote(0, 0.0, 100.5)),
    ("rejected_bad_price", trade(0, -1.0)),
    ("rejected_bad_price", delta(0, SIDE_ASK, math.nan, 1.0)),
    ("rejected_bad_price", delta(0, SIDE_BID, 0.0, 0.0)),
    ("rejected_bad_price", snapshot(0, [(-3.0, 1.0)], [])[0]),
    ("rejected_bad_size", quote(0, 99.0, 100.5, bs=-1.0)),
    ("rejected_bad_size", quote(0, 99.0, 100.5, as_=math.nan)),
    ("rejected_bad_size", quote(0, 99.0, 100.5, bs=0.0)),
    ("rejected_bad_size", trade(0, 100.0, 0.0)),
    ("rejected_bad_size", trade(0, 100.0, math.inf)),
    ("rejected_bad_size", delta(0, SIDE_BID, 99.0, -2.0)),
    ("rejected_bad_size", delta(0, SIDE_BID, 99.0, math.nan)),
    ("rejected_bad_size", snapshot(0, [(99.0, 0.0)], [])[0]),
    ("rejected_out_of_order", quote(0, 99.0, 100.5, recv_ns=999)),
    ("rejected_out_of_order", trade(0, 99.0, recv_ns=500)),
    ("rejected_out_of_order", delta(0, SIDE_BID, 99.0, 1.0, recv_ns=999)),
    ("rejected_out_of_order", snapshot(0, [(99.0, 1.0)], [], recv_ns=999)[0]),
    ("rejected_out_of_order", delta(0, SIDE_BID, 99.0, 1.0, recv_ns=2000, exch_ns=4999)),
    ("rejected_out_of_order", quote(0, 99.0, 100.5, recv_ns=2000, exch_ns=4999)),
    ("rejected_out_of_order", trade(0, 99.0, recv_ns=2000, exch_ns=4999)),
    ("rejected_crossed", quote(0, 100.5, 100.5)),
    ("rejected_crossed", quote(0, 101.0, 100.5)),
    ("rejected_crossed", snapshot(0, [(101.0, 1.0)], [(100.0, 1.0)])[-1]),    # see below: opened first
    ("rejected_bad_snapshot", rec(TICK_BOOK_SNAPSHOT, 0, 99.0, 1.0, flags=BOOK_LAST)),
    ("rejected_bad_snapshot", rec(TICK_BOOK_SNAPSHOT, 0, 99.0, 1.0, flags=SIDE_ASK)),
]


@pytest.mark.parametrize("reason, bad", BAD, ids=[f"{i}-{r}" for i, (r, _) in enumerate(BAD)])
def test_a_bad_tick_is_counted_once_and_changes_nothing(reason, bad):
    b = Book()
    for r in snapshot(0, [(100.0, 1.0), (99.5, 2.0)], [(100.5, 3.0), (101.0, 4.0)], recv_ns=1000, exch_ns=5000):
        b.apply(r)
    for r in (quote(0, 100.0, 100.5, recv_ns=1000, exch_ns=5000), trade(0, 100.0, recv_ns=1000, exch_ns=5000),
              bar(0, 100.0, 100.0, 100.0, 100.0), bar(0, 100.0, 100.0, 100.0, 100.0, flags=BAR_DAILY)):
        b.apply(r)
    assert b.counter_values()["bars_out"] == 2
    if reason == "rejected_crossed" and bad[0]["kind"] == TICK_BOOK_SNAPSHOT:
        b.apply(snapshot(0, [(101.0, 1.0)], [(100.0, 1.0)], recv_ns=1000)[0])      # the open snapshot
    before, cv0 = b.state(), b.counter_values()
    assert b.apply(bad) == EV_NONE
    assert b.state()[0] == before[0] and np.array_equal(b.state()[1], before[1])
    cv = b.counter_values()
    diff = {k: cv[k] - cv0[k] for k in cv if cv[k] != cv0[k]}
    assert diff == {reason: 1}
    # and a good tick after it still applies
    assert b.apply(quote(0, 100.0, 100.5, bs=9.0, recv_ns=3000)) == EV_BOOK
    assert b.levels(0, SIDE_BID)[0] == (100.0, 9.0)


def test_a_bad_level_inside_a_snapshot_abandons_it():
    b = _book_with([(100.0, 1.0)], [(100.5, 3.0)])
    before = b.state()
    recs = snapshot(0, [(90.0, 1.0), (89.0, 1.0)], [(91.0, 1.0)], recv_ns=1001)
    recs[1][0]["size"] = math.nan
    assert [b.apply(r) for r in recs] == [EV_NONE] * 3
    assert b.state()[0] == before[0]
    cv = b.counter_values()
    assert (cv["rejected_bad_size"], cv["snapshots_abandoned"], cv["rejected_bad_snapshot"]) == (1, 1, 1)
    assert b.b["st"][0, S_SNAP_OPEN] == 0


def test_exchange_stamps_are_ordered_per_stream_and_zero_is_unknown():
    b = Book()
    assert b.apply(quote(0, 99.0, 100.0, recv_ns=10, exch_ns=500)) == EV_BOOK
    assert b.apply(trade(0, 99.5, recv_ns=11, exch_ns=400)) == EV_TRADE        # other stream: fine
    assert b.apply(trade(0, 99.5, recv_ns=12, exch_ns=0)) == EV_TRADE          # unknown: fine
    assert b.apply(trade(0, 99.5, recv_ns=13, exch_ns=399)) == EV_NONE         # backwards in trades
    assert b.apply(quote(0, 99.0, 100.0, recv_ns=14, exch_ns=500)) == EV_BOOK  # equal: in order
    assert b.apply(quote(1, 99.0, 100.0, recv_ns=1, exch_ns=1)) == EV_BOOK     # per symbol
    assert b.counter_values()["rejected_out_of_order"] == 1


def test_venue_bars_change_no_book_and_are_ordered_per_stream():
    """A bar returns EV_BAR, leaves the levels alone, moves the receive floor (every kind) and
    the venue-time floor of its own stream; an updated bar may go back, and leaves the floor."""
    b = _book_with([(100.0, 1.0)], [(100.5, 3.0)])
    before = b.state()[0]
    st_ = b.b["st"]
    assert b.apply(bar(0, 1.0, 2.0, 0.5, 1.5, recv_ns=1001, exch_ns=120)) == EV_BAR
    assert b.state()[0] == before and (st_[0, S_RECV], st_[0, S_EXCH_BAR], st_[0, S_EXCH_DAY]) == (1001, 120, 0)
    assert b.apply(bar(0, 1.0, 2.0, 0.5, 1.5, flags=BAR_DAILY, recv_ns=1002, exch_ns=60)) == EV_BAR   # own stream
    assert b.apply(bar(0, 1.0, 2.0, 0.5, 1.5, flags=BAR_UPDATED, recv_ns=1003, exch_ns=60)) == EV_BAR
    assert (st_[0, S_EXCH_BAR], st_[0, S_EXCH_DAY]) == (120, 60)
    assert b.apply(bar(0, 1.0, 2.0, 0.5, 1.5, recv_ns=1004, exch_ns=119)) == EV_NONE        # behind 120
    assert b.apply(bar(0, 1.0, 2.0, 0.5, 1.5, recv_ns=1005, exch_ns=120)) == EV_BAR         # equal: in order
    assert b.apply(bar(0, 1.0, 2.0, 0.5, 1.5, flags=BAR_UPDATED, recv_ns=1006, exch_ns=180)) == EV_BAR
    assert st_[0, S_EXCH_BAR] == 180
    assert b.apply(quote(0, 100.0, 100.5, recv_ns=1005)) == EV_NONE                          # recv floor 1006
    assert b.state()[0] == before
    cv = b.counter_values()
    assert (cv["bars_out"], cv["rejected_out_of_order"], cv["quotes"]) == (5, 2, 0)


@pytest.mark.parametrize("capacity", [1, 2, 8, 64])
def test_drifting_books_and_deep_levels_match_reference(capacity):
    """Runs that drift to either end of their slots (re-centring), deep levels found by binary
    search, full sides dropping their worst: level for level equal to the reference."""
    rng = np.random.default_rng(capacity)
    book, ref = Book(capacity=capacity), VenueReferenceBook(N_SYM, capacity=capacity)
    recv = 1000
    for i in range(3000):
        recv += 1
        phase = (i // 500) % 4                       # new bests upwards, downwards, then random
        side = int(rng.integers(2))
        if phase == 0:
            p = 100.0 + 0.5 * (i % 500) if side == SIDE_BID else 400.0 + 0.5 * (i % 500)
        elif phase == 1:
            p = 100.0 - 0.25 * (i % 500) if side == SIDE_BID else 400.0 - 0.25 * (i % 500)
        else:
            p = float(rng.integers(1, 800)) * 0.5
        q = 0.0 if rng.random() < 0.25 else float(rng.integers(1, 9))
        _both(book, ref, delta(int(rng.integers(N_SYM)), side, p, q, recv_ns=recv))
        if rng.random() < 0.1:
            b = float(rng.integers(1, 400)) * 0.5
            _both(book, ref, quote(int(rng.integers(N_SYM)), b, b + 0.5 * float(rng.integers(1, 4)), recv_ns=recv))
        if i % 7 == 0:
            _same(book, ref)
    _same(book, ref)


def test_the_book_benchmark_runs_and_reports_its_targets():
    from bench.market_book import run

    r = run(quick=True, n=5000)
    b = r["book"]
    assert b["books_agree"] and b["messages"] == 5000 and b["python_reference"]["messages"] == 5000
    assert set(b["numba_per_update"]) >= {"p50_ns", "p99_ns", "p999_ns", "max_ns", "clock_overhead_ns"}
    assert r["stage"]["counters"]["ticks_in"] == 5000 and r["stage"]["ticks_per_s"] > 0
    assert set(r["targets"]) == {"book_update_p99_ns", "book_updates_per_s"}
    assert r["targets"]["book_update_p99_ns"]["target"] == 1000
