"""AlpacaFeed against the fake Alpaca on loopback: data, reconnects, watchdog, fatal errors, books.

The stage is built over a local EngineMemory (feed -> sink); the test calls ``on_start`` /
``do_work`` / ``on_close`` itself and plays the ring's consumer. Every wait is bounded; every
stage and fake is closed in ``finally``/fixtures.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from layouts.market import (BOOK_FIRST, BOOK_LAST, BOOK_SIDE, SIDE_ASK, SIDE_BID, TICK, TICK_BAR, TICK_BOOK_DELTA,
                            TICK_BOOK_SNAPSHOT, TICK_QUOTE, TICK_TRADE)
from procs.alpaca_feed import AlpacaFeedError
from test_alpaca_md_support import alpaca_engine, wait_for
from tools.fake_alpaca import FakeAlpaca

KEY, SECRET = "test-key-id", "test-secret-value"


@pytest.fixture(autouse=True)
def creds(monkeypatch, tmp_path):
    monkeypatch.setenv("APCA_API_KEY_ID", KEY)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)


@pytest.fixture
def fake():
    with FakeAlpaca(key_id=KEY, secret_key=SECRET, symbols=("AAPL", "MSFT"), crypto_symbols=("BTC/USD",),
                    quote_rate=0, seed=1) as f:
        yield f


@pytest.fixture
def feeds(tmp_path):
    """``make(fake, **params) -> (stage, mem)``: started stages, all closed at the end."""
    made = []

    def make(fake, symbols=("AAPL", "MSFT"), capacity=1024, full="block", start=True, **params):
        params.setdefault("url", fake.md_base_url)
        params.setdefault("stale_ms", 0)                 # quote_rate=0: silence is not a fault here
        params.setdefault("reconnect_min_ms", 20)
        params.setdefault("reconnect_max_ms", 200)
        params.setdefault("dotenv", str(tmp_path / "no.env"))
        d = tmp_path / f"e{len(made)}"
        d.mkdir()
        mem = alpaca_engine(d, symbols=symbols, capacity=capacity, full=full, **params)
        st = mem.build_stage("feed")
        made.append(st)
        if start:
            st.on_start()
        return st, mem

    yield make
    for st in made:
        st.on_close()
        assert st.client._thread is None or not st.client._thread.is_alive()


def pump(st):
    return st.do_work(time.monotonic_ns())


def live(st, timeout=10.0):
    assert wait_for(lambda: st.client.live, timeout, work=lambda: pump(st)), \
        f"feed not live after {timeout} s: {st.session!r}, counters {st.counter_values()}"


def collect(mem, n, timeout=10.0, st=None):
    """Consume the tick ring until ``n`` records arrived (or timeout); return them."""
    ring, got = mem.rings["md"], []

    def have():
        got.append(ring.poll(4096))
        return sum(len(g) for g in got) >= n

    wait_for(have, timeout, work=(lambda: pump(st)) if st is not None else None)
    return np.concatenate(got) if got else np.zeros(0, TICK)


def counter(st, name, value, timeout=5.0):
    """Wait until the (10 ms-flushed) counter ``name`` reaches ``value``; return what it is."""
    wait_for(lambda: st.counter(name) >= value, timeout, work=lambda: pump(st))
    return st.counter(name)


def fatal(st, timeout=10.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            pump(st)
        except AlpacaFeedError as e:
            return str(e)
        time.sleep(0.01)
    raise AssertionError(f"no fatal error within {timeout} s: {st.counter_values()}")


# -- data ------------------------------------------------------------------------------------------

def test_published_quotes_and_trades_arrive_in_order_with_gap_free_seq(fake, feeds):
    st, mem = feeds(fake)
    live(st)
    for i in range(50):
        fake.publish_quote("AAPL", 100.0 + i, 100.05 + i, 100, 200)
        fake.publish_trade("MSFT", 50.0 + i, 10 + i)
    got = collect(mem, 100, st=st)
    assert len(got) == 100
    assert got["seq"].tolist() == list(range(100))
    assert got["kind"].tolist() == [TICK_QUOTE, TICK_TRADE] * 50
    q, t = got[got["kind"] == TICK_QUOTE], got[got["kind"] == TICK_TRADE]
    assert q["bid"].tolist() == [100.0 + i for i in range(50)] and set(q["sym"].tolist()) == {0}
    assert t["price"].tolist() == [50.0 + i for i in range(50)] and t["size"].tolist() == [10.0 + i for i in range(50)]
    assert np.all(np.diff(got["recv_ns"]) >= 0) and np.all(np.diff(got["exch_ns"]) >= 0)
    now_wall = time.time_ns()
    assert np.all(now_wall - got["exch_ns"] < 60 * 10**9)                 # the fake stamps wall-clock t
    assert np.all(got["recv_ns"] <= time.monotonic_ns())
    assert counter(st, "ticks_out", 100) == 100
    cv = st.counter_values()
    assert (cv["quotes"], cv["trades"], cv["connected"], cv["malformed"], cv["duplicates"]) == (50, 50, 1, 0, 0)
    h = mem.hists[mem.hist_names.index("feed.decode")]
    assert wait_for(lambda: h["total"] >= 1, 2.0) and h["min"] > 0


def test_drop_reconnects_resubscribes_and_drops_replayed_duplicates(fake, feeds):
    st, mem = feeds(fake)
    live(st)
    for i in range(20):
        fake.publish_quote("AAPL", 100.0 + i, 100.05 + i, 100, 200)
        fake.publish_trade("AAPL", 100.0 + i, 5)
    first = collect(mem, 40, st=st)
    assert len(first) == 40
    fake.faults.replay_on_reconnect(10)
    fake.faults.drop_md_connections()
    assert wait_for(lambda: st.client.reconnects >= 1 and st.client.live, 10.0, work=lambda: pump(st))
    assert wait_for(lambda: fake.stats().get("md_replayed", 0) == 10, 5.0)
    for i in range(5):
        fake.publish_quote("AAPL", 200.0 + i, 200.05 + i, 100, 200)
        fake.publish_trade("AAPL", 200.0 + i, 5)
    rest = collect(mem, 10, st=st)
    assert len(rest) == 10, rest
    assert rest["seq"].tolist() == list(range(40, 50))                     # gap-free across the reconnect
    assert rest["bid"][rest["kind"] == TICK_QUOTE].tolist() == [200.0 + i for i in range(5)]
    assert counter(st, "duplicates", 10) == 10
    assert st.counter("reconnects") >= 1 and fake.stats()["md_connections"] >= 2


def test_stall_fires_the_watchdog_which_reconnects(feeds):
    with FakeAlpaca(key_id=KEY, secret_key=SECRET, symbols=("AAPL", "MSFT"), quote_rate=200.0, seed=3) as fake:
        st, mem = feeds(fake, stale_ms=800)
        live(st)
        end = time.monotonic() + 1.0                                        # data flows: no stale
        while time.monotonic() < end:
            pump(st)
            mem.rings["md"].poll(4096)
            time.sleep(0.01)
        assert st.counter("stale") == 0
        fake.faults.stall_md(2.5)
        assert counter(st, "stale", 1, timeout=5.0) >= 1
        assert wait_for(lambda: st.client.reconnects >= 1, 5.0, work=lambda: pump(st))
        before = st.client.writer.seq
        assert wait_for(lambda: st.client.writer.seq > before + 20, 10.0,
                        work=lambda: (pump(st), mem.rings["md"].poll(4096)))   # data again after the stall
        got_seq = st.client.writer.seq
        assert got_seq > before


def test_malformed_frames_are_counted_and_data_keeps_flowing(fake, feeds):
    st, mem = feeds(fake)
    live(st)
    fake.faults.malformed_md(4)
    for i in range(6):
        fake.publish_quote("MSFT", 10.0 + i, 10.5 + i, 1, 1)
    got = collect(mem, 6, st=st)
    assert got["bid"].tolist() == [10.0 + i for i in range(6)]
    assert counter(st, "malformed", 4) == 4
    assert st.client.live and st.counter("reconnects") == 0


def test_max_ticks_finishes_and_disconnects(fake, feeds):
    st, mem = feeds(fake, max_ticks=5)
    live(st)
    for i in range(8):
        fake.publish_trade("AAPL", 10.0 + i, 1)
    got = collect(mem, 5, st=st)
    assert counter(st, "finished", 1) == 1
    assert wait_for(lambda: not st.client.open, 5.0, work=lambda: pump(st))
    time.sleep(0.1)
    got = np.concatenate([got, mem.rings["md"].poll(4096)])
    assert got["seq"].tolist() == [0, 1, 2, 3, 4] and st.counter("ticks_out") == 5


def test_full_ring_blocks_reading_and_loses_nothing(fake, feeds):
    st, mem = feeds(fake, capacity=8)
    live(st)
    with fake.batch():                                    # one frame of 200 quotes
        for i in range(200):
            fake.publish_quote("AAPL", 1.0 + i, 1.5 + i, 1, 1)
    ring, got = mem.rings["md"], []
    end = time.monotonic() + 20.0
    while sum(map(len, got)) < 200 and time.monotonic() < end:
        pump(st)
        got.append(ring.poll(3))                          # a slow consumer
        time.sleep(0.002)
    got = np.concatenate(got)
    assert got["bid"].tolist() == [1.0 + i for i in range(200)]
    assert got["seq"].tolist() == list(range(200))
    assert ring.statistics().dropped == 0 and ring.statistics().times_full >= 1
    assert not st.writer.pending


def test_drop_policy_counts_what_does_not_fit(fake, feeds):
    st, mem = feeds(fake, capacity=8, full="drop")
    live(st)
    with fake.batch():
        for i in range(50):
            fake.publish_quote("AAPL", 1.0 + i, 1.5 + i, 1, 1)
    assert counter(st, "quotes", 50) == 50
    got = mem.rings["md"].poll(100)
    assert len(got) == 8 and mem.rings["md"].statistics().dropped == 42
    assert got["seq"].tolist() == list(range(8))


def test_runtime_subscribe_and_unsubscribe(fake, feeds):
    st, mem = feeds(fake)
    live(st)
    st.subscribe(["bars"], ["MSFT"])
    assert wait_for(lambda: st.session.server.get("bars") == ["MSFT"], 5.0, work=lambda: pump(st))
    fake.publish_bar("MSFT", 10.0, 12.0, 9.0, 11.0, 1000, vw=10.5)
    (b,) = collect(mem, 1, st=st)
    assert (b["kind"], b["sym"], b["price"], b["size"], b["bid"], b["ask"], b["bid_size"], b["ask_size"]) == \
        (TICK_BAR, 1, 11.0, 1000.0, 10.0, 12.0, 9.0, 10.5)
    st.unsubscribe(["quotes"], ["AAPL"])
    assert wait_for(lambda: "AAPL" not in st.session.server.get("quotes", []), 5.0, work=lambda: pump(st))
    fake.publish_quote("AAPL", 1.0, 1.1, 1, 1)
    fake.publish_trade("AAPL", 1.05, 1)
    (t,) = collect(mem, 1, st=st)
    assert t["kind"] == TICK_TRADE
    with pytest.raises(ValueError, match="not in engine.symbols"):
        st.subscribe(["quotes"], ["TSLA"])


def test_crypto_orderbooks_become_snapshot_and_delta_records(fake, feeds):
    fake.publish_quote("BTC/USD", 64000.0, 64001.0, 0.5, 0.75)          # the fake has a book now
    st, mem = feeds(fake, symbols=("BTC/USD",), feed="crypto", channels=["quotes", "orderbooks"])
    live(st)
    ring, got = mem.rings["md"], []
    assert wait_for(lambda: got.append(ring.poll(4096)) or any(
        (g["kind"] == TICK_BOOK_SNAPSHOT).any() and (g["flags"] & BOOK_LAST).any() for g in got), 10.0,
        work=lambda: pump(st))
    snap = np.concatenate(got)
    snap = snap[snap["kind"] == TICK_BOOK_SNAPSHOT]
    assert snap["flags"][0] & BOOK_FIRST and snap["flags"][-1] & BOOK_LAST and len(snap) >= 2
    sides = snap["flags"] & BOOK_SIDE
    bids, asks = snap[sides == SIDE_BID], snap[sides == SIDE_ASK]
    assert bids["price"].max() == 64000.0 and asks["price"].min() == 64001.0
    assert np.all(snap["size"] > 0) and set(snap["sym"].tolist()) == {0}
    fake.publish_quote("BTC/USD", 63999.0, 64002.0, 1.0, 2.0)             # the touch moves: deltas
    got = collect(mem, 3, st=st)
    kinds = got["kind"].tolist()
    assert kinds[0] == TICK_QUOTE and set(kinds[1:]) == {TICK_BOOK_DELTA}
    d = got[got["kind"] == TICK_BOOK_DELTA]
    assert 64000.0 in d["price"][d["size"] == 0].tolist() or 64001.0 in d["price"][d["size"] == 0].tolist()
    assert (63999.0, 1.0) in list(zip(d["price"].tolist(), d["size"].tolist()))


# -- fatal errors ------------------------------------------------------------------------------------

def test_wrong_keys_is_a_clear_fatal_error_without_secrets(fake, feeds, monkeypatch):
    monkeypatch.setenv("APCA_API_SECRET_KEY", "wrong-secret-value")
    st, mem = feeds(fake)
    msg = fatal(st)
    assert "402" in msg and fake.md_url("iex") in msg and "APCA_API_KEY_ID" in msg
    assert "wrong-secret-value" not in msg and KEY not in msg
    assert wait_for(lambda: not st.client._thread.is_alive(), 5.0)
    assert fake.stats().get("md_auth_failures") == 1                    # no retry storm on bad keys


def test_feed_not_in_plan_is_fatal_409(feeds):
    with FakeAlpaca(key_id=KEY, secret_key=SECRET, symbols=("AAPL",), quote_rate=0, plan_feeds=("iex", "test")) as fake:
        st, _ = feeds(fake, symbols=("AAPL",), feed="sip")
        msg = fatal(st)
        assert "409" in msg and fake.md_url("sip") in msg and "iex" in msg


def test_second_connection_gets_406_retries_then_fatal(fake, feeds):
    first, _ = feeds(fake)
    live(first)
    second, _ = feeds(fake, reconnect_min_ms=5, reconnect_max_ms=20)
    msg = fatal(second, timeout=20.0)
    assert "406" in msg and "retries" in msg
    assert second.counter("reconnects") >= 5
    assert first.client.live                                              # the first one is untouched


def test_symbol_limit_is_fatal_405(feeds):
    with FakeAlpaca(key_id=KEY, secret_key=SECRET, symbols=("AAPL", "MSFT"), quote_rate=0, symbol_limit=1) as fake:
        st, _ = feeds(fake)
        assert "405" in fatal(st)


# -- lifecycle ---------------------------------------------------------------------------------------

def test_stop_flag_stops_the_source(fake, feeds):
    st, mem = feeds(fake)
    live(st)
    mem.control[0]["stop"][st.ctx.index] = 1
    assert wait_for(lambda: not st.client.open, 5.0)
    fake.publish_quote("AAPL", 1.0, 1.1, 1, 1)
    time.sleep(0.2)
    assert len(mem.rings["md"].poll(10)) == 0


def test_on_close_joins_the_thread_and_flushes_counters(fake, feeds):
    st, mem = feeds(fake)
    live(st)
    fake.publish_quote("AAPL", 1.0, 1.1, 1, 1)
    collect(mem, 1, st=st)
    st.on_close()
    assert not st.client._thread.is_alive()
    assert st.counter("quotes") == 1 and st.counter("connected") == 0
    assert not [t for t in threading.enumerate() if t.name == "alpaca-md" and t is st.client._thread]


def test_unreachable_url_retries_with_backoff_until_closed(feeds, fake):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                        # nothing listens there now
    st, _ = feeds(fake, url=f"ws://127.0.0.1:{port}", reconnect_min_ms=10, reconnect_max_ms=40)
    assert counter(st, "errors", 3, timeout=10.0) >= 3
    assert st.client.fatal is None and pump(st) == 0


def test_stop_while_the_handshake_hangs_is_prompt(feeds, fake):
    """A server that accepts TCP but never answers the upgrade: on_close must not wait for it."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    try:
        st, _ = feeds(fake, url=f"ws://127.0.0.1:{srv.getsockname()[1]}")
        time.sleep(0.3)
        assert not st.client.open
        t0 = time.monotonic()
        st.on_close()
        assert time.monotonic() - t0 < 3.0 and not st.client._thread.is_alive()
        assert st.client.fatal is None
    finally:
        srv.close()
