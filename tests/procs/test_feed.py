"""SyntheticFeed: determinism, gap-free seq, pacing stamps, max_ticks, backpressure, params.

The test plays the book: it polls the ``md`` ring as its consumer. Pacing tests inject
``now_ns`` directly (the feed reads no clock when ``rate > 0``).
"""
from __future__ import annotations

import numpy as np
import pytest

from layouts.market import TICK_QUOTE, TICK_TRADE

T0 = 1_000_000_000_000


def _feed(engine, **params):
    mem = engine({f"stages.feed.params.{k}": v for k, v in params.items()})
    return mem, mem.build_stage("feed"), mem.rings["md"]


def _generate(engine, drain_ring, **params):
    """Run an unpaced feed to completion; return (ticks, feed, mem)."""
    mem, feed, ring = _feed(engine, rate=0, **params)
    ticks = []
    while feed.do_work(0):
        ticks.append(drain_ring(ring))
    return np.concatenate(ticks), feed, mem


def _payload(ticks):
    """Everything but the wall-clock stamp."""
    names = [n for n in ticks.dtype.names if n != "recv_ns"]
    return ticks[names]


def test_same_seed_same_market_and_gap_free_seq(engine, drain_ring):
    a, feed, _ = _generate(engine, drain_ring, seed=7, max_ticks=3000)
    b, _, _ = _generate(engine, drain_ring, seed=7, max_ticks=3000, batch=17)   # other batch split
    c, _, _ = _generate(engine, drain_ring, seed=8, max_ticks=3000)
    assert len(a) == 3000
    assert np.array_equal(a["seq"], np.arange(3000))
    assert np.array_equal(_payload(a), _payload(b))
    assert not np.array_equal(_payload(a), _payload(c))
    assert np.all(np.diff(a["recv_ns"]) >= 0)
    cv = feed.counter_values()
    assert cv == {"ticks_out": 3000, "quotes": int(np.sum(a["kind"] == TICK_QUOTE)),
                  "trades": int(np.sum(a["kind"] == TICK_TRADE)), "finished": 1}


def test_market_model_is_sane(engine, drain_ring):
    t, _, mem = _generate(engine, drain_ring, seed=3, max_ticks=20000, trade_ratio=0.25,
                          start_price=50.0, tick_size=0.05)
    n_sym = len(mem.topology.engine.symbols)
    assert set(np.unique(t["sym"])) == set(range(n_sym))
    q, tr = t[t["kind"] == TICK_QUOTE], t[t["kind"] == TICK_TRADE]
    assert abs(len(tr) / len(t) - 0.25) < 0.02
    spread_ticks = np.round((q["ask"] - q["bid"]) / 0.05)
    assert spread_ticks.min() >= 1 and spread_ticks.max() <= 10
    assert np.allclose(q["bid"] / 0.05, np.round(q["bid"] / 0.05))
    assert np.all(q["bid"] > 0) and abs(np.median(q["bid"]) - 50.0) < 5.0
    for col in ("bid_size", "ask_size"):
        assert np.all(q[col] % 100 == 0) and q[col].min() >= 100
    assert np.all(q["price"] == 0) and np.all(q["size"] == 0)
    assert np.all(tr["price"] > 0) and np.all(tr["size"] % 100 == 0) and tr["size"].min() >= 100
    assert np.all(tr["bid"] == 0) and np.all(tr["ask"] == 0)
    # A trade prints at the model's bid or ask: on the tick grid.
    assert np.allclose(tr["price"] / 0.05, np.round(tr["price"] / 0.05))


def test_pacing_stamps_the_schedule_and_records_lag(engine, drain_ring):
    mem, feed, ring = _feed(engine, rate=1000, seed=1, batch=256)   # one tick per ms
    assert feed.do_work(T0) == 1                                     # tick 0 is due at t0
    assert feed.do_work(T0 + 999_999) == 0
    assert feed.do_work(T0 + 5_500_000) == 5                         # ticks 1..5
    got = drain_ring(ring)
    assert got["seq"].tolist() == list(range(6))
    assert got["recv_ns"].tolist() == [T0 + i * 1_000_000 for i in range(6)]
    h = mem.hists[feed.h_lag]
    assert h["total"] == 6 and h["max"] == 4_500_000              # tick 1 published 4.5 ms late
    # Far behind: at most `batch` per cycle, stamps stay on the schedule (CO-corrected).
    assert feed.do_work(T0 + 10_000_000_000) == 256
    assert feed.do_work(T0 + 10_000_000_000) == 256
    got = drain_ring(ring)
    assert got["seq"].tolist() == list(range(6, 518))
    assert got["recv_ns"].tolist() == [T0 + i * 1_000_000 for i in range(6, 518)]


def test_pacing_has_no_drift_for_rates_that_do_not_divide_a_second(engine, drain_ring):
    mem, feed, ring = _feed(engine, rate=3, seed=1)
    for s in range(4):
        feed.do_work(T0 + s * 1_000_000_000)
    got = drain_ring(ring)
    assert got["recv_ns"].tolist() == [T0 + (i * 1_000_000_000) // 3 for i in range(10)]


def test_max_ticks_then_finished(engine, drain_ring):
    mem, feed, ring = _feed(engine, rate=0, max_ticks=300, batch=256)
    assert feed.do_work(0) == 256
    assert feed.counter("finished") == 0
    assert feed.do_work(0) == 44
    assert feed.counter("finished") == 1
    assert feed.do_work(0) == 0 and feed.do_work(10**15) == 0
    assert len(drain_ring(ring)) == 300 and feed.counter("ticks_out") == 300


def test_backpressure_generates_fewer_and_loses_none(engine, drain_ring):
    ref, _, _ = _generate(engine, drain_ring, seed=5, max_ticks=1000)
    mem = engine({"stages.feed.params.rate": 0, "stages.feed.params.seed": 5,
                  "stages.feed.params.max_ticks": 1000, "rings.md.capacity": 64})
    feed, ring = mem.build_stage("feed"), mem.rings["md"]
    assert feed.do_work(0) == 64                 # ring full after 64
    assert feed.do_work(0) == 0                  # nothing generated, nothing skipped
    assert ring.statistics().times_full >= 1
    got = [drain_ring(ring)]
    while feed.counter("finished") == 0:
        feed.do_work(0)
        got.append(drain_ring(ring))
    got = np.concatenate(got)
    assert np.array_equal(got["seq"], np.arange(1000))
    assert np.array_equal(_payload(got), _payload(ref))


def test_backpressure_keeps_the_schedule(engine, drain_ring):
    mem = engine({"stages.feed.params.rate": 1000, "rings.md.capacity": 8})
    feed, ring = mem.build_stage("feed"), mem.rings["md"]
    feed.do_work(T0)
    now = T0 + 100_000_000                        # 100 ticks due, 8 slots
    got = []
    for _ in range(20):
        feed.do_work(now)
        got.append(drain_ring(ring))
    got = np.concatenate(got)
    assert got["seq"].tolist() == list(range(101))
    assert got["recv_ns"].tolist() == [T0 + i * 1_000_000 for i in range(101)]


def test_warm_up_touches_no_shared_state(engine):
    mem, feed, ring = _feed(engine, rate=0, max_ticks=10)
    ctl, counters, hists = ring.ctl.copy(), mem.stats.copy(), mem.hists.copy()
    feed.warm_up()
    assert np.array_equal(ring.ctl, ctl) and np.array_equal(mem.stats, counters)
    assert np.array_equal(mem.hists, hists)
    assert feed.do_work(0) == 10                 # and the private state is untouched too
    assert ring.statistics().published == 10


@pytest.mark.parametrize("key, value, message", [
    ("rate", -1, "must be between 0 and"),
    ("rate", 1.5, "expected int"),
    ("rate", True, "expected int"),
    ("seed", "x", "expected int"),
    ("max_ticks", -5, "must be >= 0"),
    ("trade_ratio", 1.5, "<= 1.0"),
    ("start_price", 0, "> 0.0"),
    ("volatility", float("nan"), "finite"),
    ("tick_size", -0.01, "> 0.0"),
    ("batch", 0, ">= 1"),
    ("sped", 3, "unknown parameter"),
])
def test_bad_params_name_the_key(engine, key, value, message):
    mem = engine({f"stages.feed.params.{key}": value})
    with pytest.raises(ValueError) as e:
        mem.build_stage("feed")
    assert f"stages.feed.params.{key}" in str(e.value) and message in str(e.value)
