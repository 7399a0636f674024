"""The synthetic feed's optional L2 data (``book_levels > 0``) through the book stage.

The feed emits well-formed snapshots and deltas; the book applies them with no rejection,
exactly as the plain-Python reference does; and the whole local pipeline still accounts for
every record.
"""
from __future__ import annotations

import numpy as np

from bench.market_book import ReferenceBook
from layouts.market import (BOOK_FIRST, BOOK_LAST, BOOK_SIDE, SIDE_ASK, SIDE_BID, TICK_BOOK_DELTA,
                            TICK_BOOK_SNAPSHOT, TICK_QUOTE, TICK_TRADE)
from pyrt_shm.agent import AgentInvoker, CompositeAgent

LEVELS = 5


def _feed_ticks(engine, drain_ring, n=20_000, **params):
    over = {"stages.feed.params.rate": 0, "stages.feed.params.max_ticks": n,
            "stages.feed.params.book_levels": LEVELS, "stages.feed.params.seed": 3}
    over.update({f"stages.feed.params.{k}": v for k, v in params.items()})
    mem = engine(over)
    feed = mem.build_stage("feed")
    got = []
    while feed.do_work(0):
        got.append(drain_ring(mem.rings["md"]))
    return mem, feed, np.concatenate(got)


def test_feed_emits_snapshots_then_quotes_deltas_and_trades(engine, drain_ring):
    mem, feed, t = _feed_ticks(engine, drain_ring)
    n_sym = len(mem.topology.engine.symbols)
    assert np.array_equal(t["seq"], np.arange(len(t)))
    kinds = set(t["kind"].tolist())
    assert kinds == {TICK_QUOTE, TICK_TRADE, TICK_BOOK_DELTA, TICK_BOOK_SNAPSHOT}
    cv = feed.counter_values()
    assert cv["quotes"] == np.sum(t["kind"] == TICK_QUOTE) and cv["trades"] == np.sum(t["kind"] == TICK_TRADE)
    # snapshots: runs of 2 * LEVELS records, one per symbol first, bids best first then asks
    snap = np.flatnonzero(t["kind"] == TICK_BOOK_SNAPSHOT)
    starts = snap[(t["flags"][snap] & BOOK_FIRST) != 0]
    assert starts[:n_sym].tolist() == [2 * LEVELS * i for i in range(n_sym)]
    assert t["sym"][starts[:n_sym]].tolist() == list(range(n_sym))
    assert starts[n_sym:].tolist() == [2 * LEVELS * (n_sym - 1) + 2 * LEVELS + 10_000]   # then every 10k ticks
    for a in starts:
        g = t[a:a + 2 * LEVELS]
        assert np.all(g["kind"] == TICK_BOOK_SNAPSHOT) and len(set(g["sym"].tolist())) == 1
        assert (g["flags"][-1] & BOOK_LAST) and not np.any(g["flags"][1:-1] & (BOOK_FIRST | BOOK_LAST))
        side = g["flags"] & BOOK_SIDE
        assert side.tolist() == [SIDE_BID] * LEVELS + [SIDE_ASK] * LEVELS
        bids, asks = g["price"][:LEVELS], g["price"][LEVELS:]
        assert np.all(np.diff(bids) < 0) and np.all(np.diff(asks) > 0) and bids[0] < asks[0]
    d = t[t["kind"] == TICK_BOOK_DELTA]
    assert 0.1 < np.mean(d["size"] == 0) < 0.3 and np.all(d["price"] > 0)


def test_book_applies_the_feed_without_rejections(engine, drain_ring):
    _, _, ticks = _feed_ticks(engine, drain_ring)
    mem = engine({"rings.md.capacity": 1024, "rings.top.capacity": 2048})
    book = mem.build_stage("book")
    ref = ReferenceBook(len(mem.topology.engine.symbols))
    want = sum((len(ref.apply(r)) for r in ticks.tolist()), 0)
    i, got = 0, 0
    while True:
        if i < len(ticks):
            i += mem.rings["md"].offer(ticks[i:i + 512])
        w = book.do_work(0)
        got += len(drain_ring(mem.rings["top"]))
        if not w and i >= len(ticks):
            break
    cv = book.counter_values()
    assert cv == ref.counters and got == want
    assert all(v == 0 for k, v in cv.items() if k.startswith("rejected_")) and cv["snapshots_abandoned"] == 0
    assert cv["snapshots"] >= 4 and cv["deltas"] > 1000
    for s in range(4):
        row = mem.tables["depth"].read(s)
        w = ref.depth_row(s)
        assert row["n_bid"] == w["n_bid"] and row["bid_px"][:w["n_bid"]].tolist() == w["bid_px"]
        assert row["ask_size"][:w["n_ask"]].tolist() == w["ask_size"]


def test_pipeline_with_book_data_accounts_for_every_record(engine):
    over = {"stages.feed.params.max_ticks": 20_000, "stages.feed.params.rate": 0,
            "stages.feed.params.book_levels": LEVELS, "stages.book.params.bars": ["50t", "20000v"]}
    mem = engine(over)
    stages = {s.name: mem.build_stage(s.name) for s in mem.topology.stages}
    for s in stages.values():
        s.warm_up()
    inv = AgentInvoker(CompositeAgent(list(stages.values())))
    inv.run_until_idle(max_cycles=1_000_000, idle_cycles=3)
    inv.close()
    c = {name: s.counter_values() for name, s in stages.items()}
    feed, book, sig = c["feed"], c["book"], c["signal"]
    assert book["ticks_in"] == feed["ticks_out"] == 20_000
    assert book["events_out"] == sig["events_in"] == \
        book["quotes"] + book["trades"] + book["deltas"] + book["snapshots"] + book["bars_out"]
    assert book["bars_out"] > 0 and all(v == 0 for k, v in book.items() if k.startswith("rejected_"))
    for ring in mem.rings.values():
        assert ring.statistics().depth == 0
