"""``procs.replay_feed``: ReplayFeed (ticks for the book) and ReplayBars (bars for the signal).

Each stage is built over the embedded default topology in private memory (the feed's class
swapped), fed a ``MarketData`` through its ``data`` param, and driven by hand with chosen
``now`` values; the test plays the consumer of its output ring.
"""
from __future__ import annotations

from types import MappingProxyType

import numpy as np
import pytest

from layouts.market import (BOOK_FIRST, BOOK_LAST, SIDE_ASK, SIDE_BID, TICK, TICK_BAR, TICK_BOOK_SNAPSHOT, TICK_QUOTE,
                            TICK_TRADE)
from layouts.orders import BAR_TIME
from procs.replay_feed import NEVER, ReplayBars, ReplayFeed, next_time
from pyrt_shm.research.data import MarketData

T0 = 1_704_205_800_000_000_000          # 2024-01-02T14:30:00Z
US = 1_000


def ticks(rows) -> np.ndarray:
    """TICK records from (t, sym, kind, fields...) dicts."""
    out = np.zeros(len(rows), TICK)
    for i, r in enumerate(rows):
        for k, v in r.items():
            out[i][k] = v
    out["recv_ns"] = out["exch_ns"]
    out["seq"] = np.arange(len(rows))
    return out


def quote(t, sym=0, bid=99.0, ask=101.0, size=100.0):
    return {"exch_ns": t, "sym": sym, "kind": TICK_QUOTE, "bid": bid, "ask": ask, "bid_size": size, "ask_size": size}


def trade(t, sym=0, price=100.0, size=100.0):
    return {"exch_ns": t, "sym": sym, "kind": TICK_TRADE, "price": price, "size": size}


def bar(t, sym=0, o=100.0, h=102.0, lo=99.0, c=101.0, v=1000.0, vw=100.5):
    return {"exch_ns": t, "sym": sym, "kind": TICK_BAR, "price": c, "size": v, "bid": o, "ask": h,
            "bid_size": lo, "ask_size": vw}


def build(engine, cls, md, symbols=("SYM0", "SYM1"), capacity=64, **params):
    """The feed stage of class ``cls`` over ``md``; ReplayFeed in the embedded default (ring
    ``md``), ReplayBars in a feed -> signal topology (ring ``bars``)."""
    if cls is ReplayBars:
        mem = _bars_memory(symbols, capacity)
    else:
        mem = engine({"engine.symbols": list(symbols), "stages.feed.class": "procs.replay_feed:ReplayFeed",
                      "stages.feed.params": {}, "rings.md.capacity": capacity})
    ctx = mem.stage_context("feed")
    ctx.params = MappingProxyType({**params, "data": md})
    return mem, cls(ctx)


def _bars_memory(symbols, capacity):
    """A minimal topology for ReplayBars: feed --top--> signal (only the feed is built)."""
    from pyrt_shm.config_model import EngineConfig, ProcessConfig, RingConfig, StageConfig, Topology
    from pyrt_shm.wiring import EngineMemory

    topo = Topology(
        engine=EngineConfig(name="t", run_dir="runs", heartbeat_timeout_ms=500, sched_fifo=False, fifo_priority=10,
                            mlockall=False, symbols=tuple(symbols)),
        processes=(ProcessConfig("p", None, True, "yield", ("feed", "signal")),),
        stages=(StageConfig("feed", "procs.replay_feed:ReplayBars", MappingProxyType({})),
                StageConfig("signal", "procs.signal:SignalStage", MappingProxyType({}))),
        rings=(RingConfig("bars", "feed", "signal", "top", capacity, "block"),
               RingConfig("intent", "signal", "x", "intent", 2, "block")),
        source="<test>")
    classes = {"feed": ReplayBars, "signal": type("Sink", (), {"INPUTS": ("top",), "OUTPUTS": (), "TABLES": {},
                                                              "HISTOGRAMS": (), "COUNTERS": ()})}
    return EngineMemory(topo, "local", classes=classes)


def md(rows, symbols=("SYM0", "SYM1")):
    return MarketData(ticks(rows), tuple(symbols), "<test>")


# -- ReplayFeed ------------------------------------------------------------------------------------

def test_data_clock_publishes_what_is_due_with_data_stamps(engine, drain_ring):
    data = md([quote(T0), trade(T0 + 5 * US), quote(T0 + 5 * US, sym=1), trade(T0 + 9 * US)])
    mem, feed = build(engine, ReplayFeed, data, clock="data")
    ring = mem.rings["md"]
    assert feed.do_work(T0 - 1) == 0 and len(drain_ring(ring)) == 0        # nothing due yet
    assert next_time(T0 - 1, feed.data, feed.st, feed.pi) == T0
    assert feed.do_work(T0 + 5 * US) == 3
    got = drain_ring(ring)
    assert got["seq"].tolist() == [0, 1, 2]
    assert got["recv_ns"].tolist() == got["exch_ns"].tolist() == [T0, T0 + 5 * US, T0 + 5 * US]
    assert got["kind"].tolist() == [TICK_QUOTE, TICK_TRADE, TICK_QUOTE] and got["sym"].tolist() == [0, 0, 1]
    assert next_time(0, feed.data, feed.st, feed.pi) == T0 + 9 * US
    assert feed.counter("finished") == 0
    assert feed.do_work(T0 + 10 * US) == 1
    assert drain_ring(ring)["seq"].tolist() == [3]
    assert feed.counter("finished") == 1 and next_time(0, feed.data, feed.st, feed.pi) == NEVER
    assert feed.counter_values() == {"ticks_out": 4, "records_in": 4, "skipped": 0, "finished": 1, "synthetic": 0,
                                     "trades": 2, "quotes": 2, "book": 0}


def test_batch_bounds_records_per_step_and_the_ring_applies_backpressure(engine, drain_ring):
    data = md([quote(T0 + i) for i in range(10)])
    mem, feed = build(engine, ReplayFeed, data, clock="data", batch=4, capacity=8)
    ring = mem.rings["md"]
    assert feed.do_work(T0 + 100) == 4
    assert feed.do_work(T0 + 100) == 4                # the ring (8) is now full
    assert feed.do_work(T0 + 100) == 0
    assert drain_ring(ring)["seq"].tolist() == list(range(8))
    assert feed.do_work(T0 + 100) == 2 and drain_ring(ring)["seq"].tolist() == [8, 9]


def test_wall_clock_paces_at_the_recorded_speed_scaled(engine, drain_ring):
    data = md([quote(T0), quote(T0 + 1000), quote(T0 + 3000)])
    mem, feed = build(engine, ReplayFeed, data, clock="wall", speed=2.0)
    ring = mem.rings["md"]
    start = 5_000_000
    assert feed.do_work(start) == 1                   # t0 = the first cycle's now
    assert feed.do_work(start + 499) == 0             # 1000 ns of data at 2x: due at +500
    assert feed.do_work(start + 600) == 1
    assert feed.do_work(start + 1400) == 0
    assert feed.do_work(start + 1600) == 1            # due at +1500
    got = drain_ring(ring)
    assert got["recv_ns"].tolist() == [start, start + 500, start + 1500]     # the due times (CO corrected)
    assert got["exch_ns"].tolist() == [T0, T0 + 1000, T0 + 3000]
    h = mem.hists[mem.hist_names.index("feed.lag")]
    assert h["total"] == 3 and h["max"] >= 100       # lag 0, 100 and 100 ns (clamped at the lowest value)


def test_unpaced_wall_clock_publishes_everything_at_once(engine, drain_ring):
    data = md([quote(T0 + i * 10**9) for i in range(5)])
    mem, feed = build(engine, ReplayFeed, data, clock="wall", speed=0.0)
    assert feed.do_work(123) == 5
    got = drain_ring(mem.rings["md"])
    assert len(set(got["recv_ns"].tolist())) == 1 and got["recv_ns"][0] > 0     # the clock at publication


def test_synthetic_books_for_trades_only_data(engine, drain_ring):
    data = md([trade(T0, price=100.0, size=300.0), trade(T0 + 1, price=50.0, size=100.0)])
    mem, feed = build(engine, ReplayFeed, data, clock="data", spread_bps=2.0)
    assert feed.synthetic_quotes
    assert feed.do_work(T0 + 1) == 2
    got = drain_ring(mem.rings["md"])
    snap = TICK_BOOK_SNAPSHOT
    assert got["kind"].tolist() == [snap, snap, TICK_TRADE, snap, snap, TICK_TRADE]
    assert got["seq"].tolist() == list(range(6))
    # a one-level book 2 bps wide: bid = p (1 - 1e-4) (first record), ask = p (1 + 1e-4) (last)
    assert got["flags"].tolist()[:2] == [SIDE_BID | BOOK_FIRST, SIDE_ASK | BOOK_LAST]
    assert got["price"][0] == pytest.approx(99.99) and got["price"][1] == pytest.approx(100.01)
    assert got["size"][:2].tolist() == [300.0, 300.0] and got["price"][2] == 100.0
    assert got["price"][3] == pytest.approx(49.995) and got["price"][4] == pytest.approx(50.005)
    assert feed.counter("synthetic") == 2 and feed.counter("ticks_out") == 6


def test_the_synthetic_book_replaces_the_last_one_whole(engine, drain_ring):
    from procs.l2book import levels

    data = md([trade(T0, price=100.0, size=300.0), trade(T0 + 1, price=101.0, size=100.0)])
    mem, feed = build(engine, ReplayFeed, data, clock="data", spread_bps=2.0)
    book = mem.build_stage("book")
    feed.do_work(T0 + 1)
    while book.do_work(0):
        pass
    # only the second trade's levels: nothing of the first book stays as stale depth
    assert levels(book.book, 0, 0) == [(pytest.approx(100.9899), 100.0)]
    assert levels(book.book, 0, 1) == [(pytest.approx(101.0101), 100.0)]


def test_no_synthetic_quotes_when_the_data_have_quotes(engine):
    _, feed = build(engine, ReplayFeed, md([quote(T0), trade(T0 + 1)]), clock="data")
    assert not feed.synthetic_quotes
    with pytest.raises(ValueError, match=r"stages.feed.params.spread_bps: synthetic books need a spread > 0"):
        build(engine, ReplayFeed, md([trade(T0)]), clock="data", spread_bps=0.0)


def test_symbols_map_by_name_and_unknown_ones_are_skipped_and_counted(engine, drain_ring):
    data = md([quote(T0, sym=0), quote(T0, sym=1), quote(T0, sym=2)], symbols=("SYM1", "ZZZ", "SYM0"))
    mem, feed = build(engine, ReplayFeed, data, clock="data")
    assert feed.do_work(T0) == 3
    got = drain_ring(mem.rings["md"])
    assert got["sym"].tolist() == [1, 0] and got["seq"].tolist() == [0, 1]     # gap-free over what is published
    assert feed.counter("skipped") == 1 and feed.unknown == ["ZZZ"]


def test_replay_feed_refuses_bars_and_bad_params(engine):
    with pytest.raises(ValueError, match="hold bars.*ReplayBars"):
        build(engine, ReplayFeed, md([bar(T0)]), clock="data")
    with pytest.raises(ValueError, match=r"stages.feed.params.clock: 'wall' .* or 'data'"):
        build(engine, ReplayFeed, md([quote(T0)]), clock="sim")
    _, feed = build(engine, ReplayFeed, md([trade(T0)]), clock="data", batch=256, capacity=64)
    assert feed.batch == 21                   # a trade and its synthetic book: three slots each
    with pytest.raises(ValueError, match=r"stages.feed.params.nope: unknown parameter"):
        build(engine, ReplayFeed, md([quote(T0)]), nope=1)


def _with_params(engine, **params):
    mem = engine({"engine.symbols": ["SYM0", "SYM1"], "stages.feed.class": "procs.replay_feed:ReplayFeed"})
    ctx = mem.stage_context("feed")
    ctx.params = MappingProxyType(params)
    return mem, ctx


def test_path_param_loads_the_file(engine, tmp_path, drain_ring):
    p = tmp_path / "SYM1.csv"
    p.write_text("t,bp,bs,ap,as\n2024-01-02T14:30:00Z,99,100,101,200\n2024-01-02T14:30:00.5Z,99.5,100,101,200\n")
    mem, ctx = _with_params(engine, path=str(p), clock="data")
    feed = ReplayFeed(ctx)
    assert feed.do_work(T0 + 10**9) == 2
    got = drain_ring(mem.rings["md"])
    assert got["sym"].tolist() == [1, 1] and got["exch_ns"].tolist() == [T0, T0 + 500_000_000]
    assert got["bid"].tolist() == [99.0, 99.5] and got["ask_size"].tolist() == [200.0, 200.0]
    with pytest.raises(ValueError, match=r"stages.feed.params.path: .*nope.csv: no such file"):
        ReplayFeed(_with_params(engine, path=str(tmp_path / "nope.csv"))[1])
    with pytest.raises(ValueError, match=r"stages.feed.params: give exactly one of path .* and data"):
        ReplayFeed(_with_params(engine)[1])


def test_a_relative_path_is_found_in_the_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)               # not found here: taken from the repository root
    ctx = _bars_memory(("DEMO",), 64).stage_context("feed")
    ctx.params = MappingProxyType({"path": "pyrt_shm/research/data/DEMO_1min.csv", "clock": "data"})
    feed = ReplayBars(ctx)
    assert len(feed.data) == 1950 and feed.names == ("DEMO",) and feed.period.tolist() == [60 * 10**9]


def test_warm_up_touches_nothing(engine):
    data = md([quote(T0), trade(T0 + 1)])
    mem, feed = build(engine, ReplayFeed, data, clock="data")
    before = (mem.rings["md"].ctl.copy(), feed.st.copy(), mem.stats.copy(), mem.hists.copy())
    feed.warm_up()
    after = (mem.rings["md"].ctl, feed.st, mem.stats, mem.hists)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


# -- ReplayBars ------------------------------------------------------------------------------------

def test_bars_become_a_top_a_quote_event_and_a_bar_event(drain_ring):
    data = md([bar(T0, o=100.0, h=102.0, lo=99.0, c=101.0, v=1000.0, vw=100.5),
               bar(T0 + 60 * 10**9, sym=1, c=50.0, o=50.0, h=50.0, lo=50.0, v=0.0, vw=0.0),
               bar(T0 + 60 * 10**9, o=101.0, h=101.5, lo=100.0, c=100.0, v=400.0, vw=100.25)])
    mem, feed = build(None, ReplayBars, data, spread_bps=2.0, clock="data")
    assert feed.do_work(T0) == 1
    ev = drain_ring(mem.rings["bars"])
    assert ev["kind"].tolist() == [TICK_QUOTE, TICK_BAR]
    q, b = ev[0], ev[1]
    assert q["valid"] == 1 and q["bid"] == pytest.approx(101.0 * (1 - 1e-4))
    assert q["ask"] == pytest.approx(101.0 * (1 + 1e-4))
    assert q["bid_size"] == q["ask_size"] == 1000.0 and q["microprice"] == pytest.approx(101.0)
    assert (b["bar_open"], b["bar_high"], b["bar_low"], b["bar_close"], b["bar_volume"], b["bar_vwap"]) == \
        (100.0, 102.0, 99.0, 101.0, 1000.0, 100.5)
    assert b["bar_start_ns"] == T0 and b["bar_end_ns"] == T0 + 60 * 10**9       # the symbol's bar period
    assert b["bar_type"] == BAR_TIME and b["bar_spec"] == 0xFFFF                  # a venue's bar
    assert b["feed_ns"] == T0 and ev["tick_seq"].tolist() == [0, 1]
    top = mem.tables["tops"].read(0)
    assert top["valid"] == 1 and top["last"] == 101.0 and top["updated_ns"] == T0
    assert feed.do_work(T0 + 60 * 10**9) == 2
    ev = drain_ring(mem.rings["bars"])
    # SYM1's bar has no volume: no liquidity, no quote event, the top is invalid
    assert ev["kind"].tolist() == [TICK_BAR, TICK_QUOTE, TICK_BAR] and ev["sym"].tolist() == [1, 0, 0]
    assert ev["valid"].tolist() == [0, 1, 1] and mem.tables["tops"].read(1)["valid"] == 0
    assert ev["bar_end_ns"][0] == ev["bar_start_ns"][0]            # one bar of SYM1: no period known
    assert feed.counter_values() == {"ticks_out": 5, "bars_in": 3, "skipped": 0, "finished": 1, "bars": 3,
                                     "no_volume": 1}


def test_zero_spread_quotes_the_close_and_quote_size_overrides_volume(drain_ring):
    mem, feed = build(None, ReplayBars, md([bar(T0, c=101.0, v=1000.0)]), clock="data", quote_size=50.0)
    feed.do_work(T0)
    q = drain_ring(mem.rings["bars"])[0]
    assert q["bid"] == q["ask"] == 101.0 and q["bid_size"] == 50.0


def test_replay_bars_refuses_ticks():
    with pytest.raises(ValueError, match="ReplayBars replays bars only.*ReplayFeed"):
        build(None, ReplayBars, md([bar(T0), quote(T0 + 1)]), clock="data")
