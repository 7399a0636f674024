"""BookStage: events, ``tops`` and ``depth`` tables and counters against the plain-Python
``ReferenceBook`` (with venue bars: ``VenueReferenceBook``); rejects by reason; backpressure
(with bars); warm-up; params. Venue bars in detail: ``test_book_venue_bars.py``.

The test plays the feed (puts ticks into ``md``) and the signal (polls ``top``).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.market_book import make_stream
from layouts.market import (BAR_DAILY, BAR_MINUTE, BAR_UPDATED, DEPTH_LEVELS, TICK, TICK_BAR, TICK_BOOK_DELTA,
                            TICK_QUOTE, TICK_TRADE, VENUE_BAR_SPEC)
from procs.l2book import COUNTER_NAMES
from test_book_venue_bars import VenueReferenceBook, venue_bar

N_SYM = 4          # the embedded default's symbols
SMALL = {"rings.md.capacity": 1024, "rings.top.capacity": 2048}
EVENT_FIELDS = ("tick_seq", "feed_ns", "sym", "kind", "valid", "bid", "ask", "bid_size", "ask_size",
                "microprice", "imbalance", "trade_px", "trade_size")
BAR_FIELDS = ("bar_open", "bar_high", "bar_low", "bar_close", "bar_volume", "bar_vwap", "bar_start_ns",
              "bar_end_ns", "bar_count", "bar_type", "bar_spec")


def _ticks(rows):
    """TICK records from dicts; seq = index, recv_ns = 1000 + index unless given."""
    t = np.zeros(len(rows), TICK)
    for i, r in enumerate(rows):
        t[i]["seq"] = i
        t[i]["recv_ns"] = 1000 + i
        for k, v in r.items():
            t[i][k] = v
    return t


def quote(sym, bid, ask, bs=100.0, as_=200.0):
    return {"kind": TICK_QUOTE, "sym": sym, "bid": bid, "ask": ask, "bid_size": bs, "ask_size": as_}


def trade(sym, price, size=100.0):
    return {"kind": TICK_TRADE, "sym": sym, "price": price, "size": size}


def _run(engine, drain_ring, ticks, batch=256, **params):
    over = dict(SMALL)
    over["stages.book.params.batch"] = batch
    over.update({f"stages.book.params.{k}": v for k, v in params.items()})
    mem = engine(over)
    book = mem.build_stage("book")
    md, events, i = mem.rings["md"], [], 0
    while True:
        if i < len(ticks):
            i += md.offer(ticks[i:i + 512])
        w = book.do_work(0)
        events.append(drain_ring(mem.rings["top"]))
        if not w and i >= len(ticks):
            break
    return mem, book, np.concatenate(events)


def _expected(ticks, **params):
    ref = VenueReferenceBook(N_SYM, capacity=params.get("capacity", 64), depth=params.get("depth", 10),
                             bars=params.get("bars", ()))
    events = []
    for r in ticks.tolist():
        events += ref.apply(r)
    return ref, events


def _check_against_reference(mem, book, events, ticks, **params):
    ref, want = _expected(ticks, **params)
    assert len(events) == len(want)
    for e, w in zip(events, want):
        for f in EVENT_FIELDS:
            assert e[f] == w[f], (f, e, w)
        for f in BAR_FIELDS:
            assert e[f] == w.get(f, 0), (f, e, w)
    tops, depth = mem.tables["tops"], mem.tables["depth"]
    for s in range(N_SYM):
        row, top = tops.read(s), ref.tops[s]
        for k, v in top.items():
            assert row[k] == v, (s, k)
        assert tops.version(s) == top["updates"]
        d, wd = depth.read(s), ref.depth_row(s)
        if wd["updates"] == 0:
            assert depth.version(s) == 0 and not d["valid"] and d["n_bid"] == d["n_ask"] == 0
            continue
        assert depth.version(s) == wd["updates"]
        for k, v in wd.items():
            if k.endswith("_px") or k.endswith("_size"):
                got = d[k].tolist()
                assert got[:len(v)] == v and not any(got[len(v):]), (s, k)
            else:
                assert d[k] == v, (s, k)
        assert d["sym"] == s
    cv = book.counter_values()
    assert cv == ref.counters
    assert cv["ticks_in"] == len(ticks)
    venue_bars = int(np.sum(events["bar_spec"] == VENUE_BAR_SPEC))
    assert cv["ticks_in"] == sum(cv[k] for k in ("quotes", "trades", "deltas", "snapshot_levels")) + \
        venue_bars + sum(v for k, v in cv.items() if k.startswith("rejected_"))
    assert cv["events_out"] == len(events) == \
        sum(cv[k] for k in ("quotes", "trades", "deltas", "snapshots", "bars_out"))
    assert mem.hists[book.h_lat]["total"] == len(ticks)
    sent = events["sent_ns"]
    assert np.all(sent > 0) and np.all(np.diff(sent) >= 0)


prices = st.one_of(st.floats(90, 110, allow_nan=False), st.sampled_from([0.0, -1.0, math.nan, math.inf]))
good = st.floats(90, 110, allow_nan=False)
sizes = st.one_of(st.integers(0, 50).map(lambda n: 100.0 * n), st.sampled_from([-100.0, math.nan, math.inf]))
syms = st.one_of(st.integers(0, N_SYM - 1), st.just(N_SYM), st.just(2**32 - 1))
tick_rows = st.one_of(
    st.builds(lambda s, b, spread, bs, a_s: quote(s, b, b + spread, bs, a_s),
              syms, good, st.sampled_from([0.01, 0.05, 0.0, -0.02]), sizes, sizes),
    st.builds(quote, syms, prices, prices, sizes, sizes),
    st.builds(trade, syms, prices, sizes),
    st.builds(lambda s, side, p, q: {"kind": TICK_BOOK_DELTA, "sym": s, "flags": side, "price": p, "size": q},
              syms, st.sampled_from([0, 1]), prices, sizes),
    st.builds(lambda s, o, c, wick, v, fl: venue_bar(s, o, max(o, c) + wick, min(o, c) - wick, c, v, flags=fl),
              syms, prices, good, st.sampled_from([0.0, 0.25, -0.01]), sizes,
              st.sampled_from([BAR_MINUTE, BAR_UPDATED, BAR_DAILY, 3])),       # exch_ns: set by the test
    st.builds(lambda s, k: {"kind": k, "sym": s, "price": 100.0}, syms, st.sampled_from([0, 9, 65535])),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(tick_rows, max_size=120), batch=st.sampled_from([1, 7, 256]),
       bars=st.sampled_from([(), ("3t",), ("2t", "250v", "1ms", "3us")]))
def test_stage_matches_reference(engine, drain_ring, rows, batch, bars):
    ticks = _ticks(rows)
    ticks["exch_ns"] = np.where(np.arange(len(ticks)) % 3 == 0, 0, 10**6 * np.arange(len(ticks)))
    mem, book, events = _run(engine, drain_ring, ticks, batch, bars=list(bars))
    _check_against_reference(mem, book, events, ticks, bars=bars)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), depth=st.sampled_from([1, 3, 10, DEPTH_LEVELS]),
       capacity=st.sampled_from([20, 64]))
def test_l2_stream_matches_reference(engine, drain_ring, seed, depth, capacity):
    ticks = make_stream(1500, n_sym=N_SYM, seed=seed, bad=0.05, snapshot_every=300)
    params = dict(depth=depth, capacity=max(depth, capacity), bars=["5t", "3000v"])
    mem, book, events = _run(engine, drain_ring, ticks, 64, **params)
    _check_against_reference(mem, book, events, ticks, **params)


def test_feed_like_stream_matches_reference(engine, drain_ring):
    ticks = make_stream(20_000, n_sym=N_SYM, seed=1, bad=0.01)
    params = dict(bars=["1us", "100t", "5000v"])
    mem, book, events = _run(engine, drain_ring, ticks, **params)
    _check_against_reference(mem, book, events, ticks, **params)
    cv = book.counter_values()
    assert cv["snapshots"] >= N_SYM and cv["bars_out"] > 100 and cv["deltas"] > 10_000


def test_quotes_and_trades_only_give_one_event_per_tick(engine, drain_ring):
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(5000):
        s = int(rng.integers(0, N_SYM))
        if rng.random() < 0.3:
            rows.append(trade(s, round(100 + rng.normal(), 2), 100.0 * rng.integers(1, 5)))
        else:
            b = round(100 + rng.normal(), 2)
            rows.append(quote(s, b, b + 0.01 * rng.integers(1, 5)))
    ticks = _ticks(rows)
    mem, book, events = _run(engine, drain_ring, ticks)
    _check_against_reference(mem, book, events, ticks)
    assert book.counter("events_out") == 5000 == book.counter("quotes") + book.counter("trades")
    # the tops row is the last quote of each symbol
    for s in range(N_SYM):
        last = [r for r in rows if r["sym"] == s and r["kind"] == TICK_QUOTE][-1]
        row = mem.tables["tops"].read(s)
        assert (row["bid"], row["ask"]) == (last["bid"], last["ask"])


def test_rejects_are_counted_by_reason_and_not_forwarded(engine, drain_ring):
    ticks = _ticks([
        quote(0, 100.0, 100.02),            # ok
        quote(0, math.nan, 100.0),          # bad price
        quote(0, 0.0, 100.0),               # bad price
        quote(0, 99.0, math.inf),           # bad price
        trade(0, -5.0),                     # bad price
        quote(0, 99.0, 100.0, bs=-100.0),   # bad size
        quote(0, 99.0, 100.0, as_=math.nan),  # bad size
        trade(0, 100.0, math.nan),          # bad size
        trade(0, 100.0, 0.0),               # bad size: a zero trade means nothing
        quote(4, 99.0, 100.0),              # unknown symbol
        trade(1000, 99.0),                  # unknown symbol
        quote(0, 100.0, 100.0),             # crossed (locked)
        quote(0, 101.0, 100.0),             # crossed
        {"kind": 9, "sym": 0},              # unsupported kind
        {"kind": TICK_BAR, "sym": 0, "exch_ns": 60},                # a venue bar without prices: bad price
        venue_bar(0, 100.0, 100.0, 100.0, 100.0, flags=5),         # a bar of an unknown kind: unsupported
        dict(trade(0, 100.0), recv_ns=5),   # out of order
        trade(0, 100.01, 300.0),            # ok
        venue_bar(0, 100.0, 100.5, 99.5, 100.25, 700.0, 100.1),    # ok: forwarded
    ])
    mem, book, events = _run(engine, drain_ring, ticks)
    cv = book.counter_values()
    assert {k: v for k, v in cv.items() if v} == {
        "ticks_in": 19, "events_out": 3, "quotes": 1, "trades": 1, "bars_out": 1, "rejected_bad_price": 5,
        "rejected_bad_size": 4, "rejected_unknown_symbol": 2, "rejected_crossed": 2,
        "rejected_unsupported_kind": 2, "rejected_out_of_order": 1}
    assert set(cv) == set(COUNTER_NAMES) and len(cv) <= 16
    assert events["tick_seq"].tolist() == [0, 17, 18]
    row = mem.tables["tops"].read(0)
    assert (row["bid"], row["ask"], row["last"], row["valid"], row["updates"]) == (100.0, 100.02, 100.01, 1, 2)
    assert (events[1]["trade_px"], events[1]["trade_size"], events[1]["valid"]) == (100.01, 300.0, 1)
    assert (events[2]["kind"], events[2]["bar_close"], events[2]["bar_volume"], events[2]["bar_spec"]) == \
        (TICK_BAR, 100.25, 700.0, VENUE_BAR_SPEC)


def test_trade_before_any_quote_is_forwarded_with_an_invalid_top(engine, drain_ring):
    mem, book, events = _run(engine, drain_ring, _ticks([trade(2, 50.0), quote(2, 49.99, 50.01, 100.0, 300.0)]))
    assert events["valid"].tolist() == [0, 1]
    assert events[0]["bid"] == 0.0 and events[0]["trade_px"] == 50.0 and events[0]["microprice"] == 0.0
    assert events[1]["microprice"] == pytest.approx((49.99 * 300 + 50.01 * 100) / 400)
    assert events[1]["imbalance"] == pytest.approx(-0.5)
    d = mem.tables["depth"].read(2)
    assert (d["valid"], d["n_bid"], d["n_ask"], d["mid"]) == (1, 1, 1, 0.5 * (49.99 + 50.01))


def test_backpressure_consumes_only_what_it_can_forward(engine, drain_ring):
    mem = engine({"rings.top.capacity": 4})
    book = mem.build_stage("book")
    ticks = _ticks([quote(i % N_SYM, 100.0, 100.01 + i * 0.01) for i in range(23)])
    mem.rings["md"].put(ticks)
    assert book.do_work(0) == 4
    assert book.do_work(0) == 0                     # output full: no tick consumed
    assert book.counter("ticks_in") == 4 and mem.rings["md"].statistics().depth == 19
    got = [drain_ring(mem.rings["top"])]
    while book.do_work(0):
        got.append(drain_ring(mem.rings["top"]))
    got = np.concatenate(got)
    assert got["tick_seq"].tolist() == list(range(23))
    assert book.counter("ticks_in") == 23 == book.counter("events_out")


def test_backpressure_leaves_a_trade_until_there_is_room_for_its_bars(engine, drain_ring):
    mem = engine({"rings.top.capacity": 4, "stages.book.params.bars": ["1t", "2t", "100v"]})
    book = mem.build_stage("book")
    mem.rings["md"].put(_ticks([quote(0, 99.0, 101.0), trade(0, 100.0), trade(0, 100.5)]))
    assert book.do_work(0) == 1                     # the quote; the trade may need 4 slots, 3 left
    assert book.do_work(0) == 0 and book.counter("ticks_in") == 1
    assert len(drain_ring(mem.rings["top"])) == 1
    assert book.do_work(0) == 1                     # trade 1: its event + 1t + 100v bars
    ev = drain_ring(mem.rings["top"])
    assert ev["kind"].tolist() == [TICK_TRADE, TICK_BAR, TICK_BAR] and ev["bar_spec"].tolist()[1:] == [0, 2]
    assert book.do_work(0) == 1                     # trade 2: its event + 1t + 2t + 100v bars
    ev = drain_ring(mem.rings["top"])
    assert ev["kind"].tolist() == [TICK_TRADE] + [TICK_BAR] * 3 and ev["bar_spec"].tolist()[1:] == [0, 1, 2]
    assert ev[2]["bar_count"] == 2 and ev[2]["bar_volume"] == 200.0 and ev[2]["bar_open"] == 100.0
    assert book.counter_values()["bars_out"] == 5 and book.counter("events_out") == 8


def test_output_ring_must_hold_a_trade_and_all_its_bars(engine):
    with pytest.raises(ValueError, match=r"stages\.book\.params\.bars.*4 events.*holds 2"):
        engine({"rings.top.capacity": 2, "stages.book.params.bars": ["1t", "2t", "3t"]}).build_stage("book")


def test_warm_up_touches_no_shared_state(engine):
    mem = engine(dict(SMALL, **{"stages.book.params.bars": ["1t"]}))
    book = mem.build_stage("book")
    mem.rings["md"].put(_ticks([quote(0, 1.0, 2.0)]))
    before = {n: r.ctl.copy() for n, r in mem.rings.items()}
    tables = {n: (t.rows.copy(), t.seqs.copy()) for n, t in mem.tables.items()}
    stats, hists = mem.stats.copy(), mem.hists.copy()
    private = {k: v.copy() for k, v in book.book.items()}
    book.warm_up()
    assert all(np.array_equal(mem.rings[n].ctl, c) for n, c in before.items())
    assert all(np.array_equal(mem.tables[n].rows, r) and np.array_equal(mem.tables[n].seqs, s)
               for n, (r, s) in tables.items())
    assert np.array_equal(mem.stats, stats) and np.array_equal(mem.hists, hists)
    assert all(np.array_equal(book.book[k], v) for k, v in private.items())
    step, args, takes_now = book.kernel()
    assert not takes_now and step.py_func.__name__ == "book_step" and len(args) == 22


@pytest.mark.parametrize("key, value", [
    ("batch", 0), ("batch", -1), ("batch", 1.5), ("batch", "8"),
    ("depth", 0), ("depth", DEPTH_LEVELS + 1), ("capacity", 5), ("capacity", 10_000),
    ("bars", "1s"), ("bars", ["1x"]), ("bars", ["0t"]), ("bars", ["1.5t"]), ("bars", ["1s", "1000ms"]),
    ("bars", ["-5v"]), ("bars", [3]), ("speed", 1),
])
def test_bad_params_name_the_key(engine, key, value):
    with pytest.raises(ValueError, match=rf"stages\.book\.params\.{key}"):
        engine({f"stages.book.params.{key}": value}).build_stage("book")
