"""BookStage: top of book against a plain-Python reference; rejects by reason; forwarding.

The test plays the feed (puts ticks into ``md``) and the signal (polls ``top``).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layouts.market import TICK, TICK_BAR, TICK_QUOTE, TICK_TRADE

N_SYM = 4          # the embedded default's symbols


def _ticks(rows):
    """TICK records from dicts; seq = index, recv_ns = 1000 + index."""
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


def reference(ticks):
    """Plain-Python book: (tops by sym, events, counters) for a tick stream."""
    tops = {s: dict(bid=0.0, ask=0.0, bid_size=0.0, ask_size=0.0, last=0.0, valid=0, updates=0,
                    updated_ns=0) for s in range(N_SYM)}
    events, c = [], dict.fromkeys(["quotes", "trades", "rejected_bad_price", "rejected_bad_size",
                                   "rejected_unknown_symbol", "rejected_crossed",
                                   "rejected_unsupported_kind"], 0)
    good_px = lambda x: math.isfinite(x) and x > 0           # noqa: E731
    good_sz = lambda x: math.isfinite(x) and x >= 0          # noqa: E731
    for t in ticks:
        s, kind = int(t["sym"]), int(t["kind"])
        reason, tpx, tsz = None, 0.0, 0.0
        if s >= N_SYM:
            reason = "rejected_unknown_symbol"
        elif kind == TICK_QUOTE:
            if not (good_px(t["bid"]) and good_px(t["ask"])):
                reason = "rejected_bad_price"
            elif not (good_sz(t["bid_size"]) and good_sz(t["ask_size"])):
                reason = "rejected_bad_size"
            elif t["bid"] >= t["ask"]:
                reason = "rejected_crossed"
            else:
                tops[s].update(bid=t["bid"], ask=t["ask"], bid_size=t["bid_size"],
                               ask_size=t["ask_size"], valid=1)
                c["quotes"] += 1
        elif kind == TICK_TRADE:
            if not good_px(t["price"]):
                reason = "rejected_bad_price"
            elif not good_sz(t["size"]):
                reason = "rejected_bad_size"
            else:
                tops[s]["last"] = tpx = t["price"]
                tsz = t["size"]
                c["trades"] += 1
        else:
            reason = "rejected_unsupported_kind"
        if reason:
            c[reason] += 1
            continue
        top = tops[s]
        top["updates"] += 1
        top["updated_ns"] = int(t["recv_ns"])
        events.append((int(t["seq"]), int(t["recv_ns"]), s, kind, top["valid"], top["bid"],
                       top["ask"], top["bid_size"], top["ask_size"], tpx, tsz))
    return tops, events, c


def _run(engine, drain_ring, ticks, batch=256):
    mem = engine({"stages.book.params.batch": batch})
    book = mem.build_stage("book")
    mem.rings["md"].put(ticks)
    events = []
    while book.do_work(0):
        events.append(drain_ring(mem.rings["top"]))
    events = np.concatenate(events) if events else np.zeros(0, mem.rings["top"].dtype)
    return mem, book, events


def _event_tuples(ev):
    return [(int(e["tick_seq"]), int(e["feed_ns"]), int(e["sym"]), int(e["kind"]), int(e["valid"]),
             float(e["bid"]), float(e["ask"]), float(e["bid_size"]), float(e["ask_size"]),
             float(e["trade_px"]), float(e["trade_size"])) for e in ev]


def _check_against_reference(mem, book, events, ticks):
    tops, ref_events, ref_c = reference(ticks)
    assert _event_tuples(events) == ref_events
    table = mem.tables["tops"]
    for s in range(N_SYM):
        row = table.read(s)
        for k, v in tops[s].items():
            assert row[k] == v, (s, k)
        assert table.version(s) == tops[s]["updates"]
    cv = book.counter_values()
    assert cv["ticks_in"] == len(ticks)
    assert cv["events_out"] == len(ref_events) == cv["quotes"] + cv["trades"]
    for k, v in ref_c.items():
        assert cv[k] == v, k
    assert cv["ticks_in"] == sum(v for k, v in cv.items() if k not in ("ticks_in", "events_out"))
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
    st.builds(lambda s: {"kind": TICK_BAR, "sym": s, "price": 100.0}, syms),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(tick_rows, max_size=120), batch=st.sampled_from([1, 7, 256]))
def test_top_of_book_matches_reference(engine, drain_ring, rows, batch):
    ticks = _ticks(rows)
    mem, book, events = _run(engine, drain_ring, ticks, batch)
    _check_against_reference(mem, book, events, ticks)


def test_feed_like_stream_matches_reference(engine, drain_ring):
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
    assert book.counter("events_out") == 5000


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
        quote(4, 99.0, 100.0),              # unknown symbol
        trade(1000, 99.0),                  # unknown symbol
        quote(0, 100.0, 100.0),             # crossed (locked)
        quote(0, 101.0, 100.0),             # crossed
        {"kind": TICK_BAR, "sym": 0},       # unsupported kind
        trade(0, 100.01, 300.0),            # ok
    ])
    mem, book, events = _run(engine, drain_ring, ticks)
    assert book.counter_values() == {
        "ticks_in": 14, "events_out": 2, "quotes": 1, "trades": 1, "rejected_bad_price": 4,
        "rejected_bad_size": 3, "rejected_unknown_symbol": 2, "rejected_crossed": 2,
        "rejected_unsupported_kind": 1}
    assert events["tick_seq"].tolist() == [0, 13]
    row = mem.tables["tops"].read(0)
    assert (row["bid"], row["ask"], row["last"], row["valid"], row["updates"]) == (100.0, 100.02, 100.01, 1, 2)
    assert (events[1]["trade_px"], events[1]["trade_size"], events[1]["valid"]) == (100.01, 300.0, 1)


def test_trade_before_any_quote_is_forwarded_with_an_invalid_top(engine, drain_ring):
    mem, book, events = _run(engine, drain_ring, _ticks([trade(2, 50.0), quote(2, 49.99, 50.01)]))
    assert events["valid"].tolist() == [0, 1]
    assert events[0]["bid"] == 0.0 and events[0]["trade_px"] == 50.0


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


def test_warm_up_touches_no_shared_state(engine):
    mem = engine()
    book = mem.build_stage("book")
    mem.rings["md"].put(_ticks([quote(0, 1.0, 2.0)]))
    before = {n: r.ctl.copy() for n, r in mem.rings.items()}
    tops, stats = mem.tables["tops"].rows.copy(), mem.stats.copy()
    book.warm_up()
    assert all(np.array_equal(mem.rings[n].ctl, c) for n, c in before.items())
    assert np.array_equal(mem.tables["tops"].rows, tops) and np.array_equal(mem.stats, stats)


@pytest.mark.parametrize("value", [0, -1, 1.5, "8"])
def test_bad_batch_names_the_key(engine, value):
    with pytest.raises(ValueError, match=r"stages\.book\.params\.batch"):
        engine({"stages.book.params.batch": value}).build_stage("book")
