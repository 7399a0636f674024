"""Start-up reconciliation (cancel and adopt policies, positions, cash, buying power -> risk's
params), the client-order-id session counter, and the trade_updates client (auth, listen,
updates, reconnect + resync marker, refused keys) against the fake Alpaca on loopback."""
from __future__ import annotations

import collections
import dataclasses
import time

import pytest

from procs.alpaca_exec import AlpacaExecStage
from procs.alpaca_reconcile import (
    ReconcileError, allocate_session, client_prefix, engine_tag, reconcile,
)
from procs.alpaca_rest import RateLimiter, make_client
from procs.alpaca_trade_updates import Listening, TradeUpdatesClient
from pyrt_shm.config import load_topology
from pyrt_shm.config_model import deep_freeze
from pyrt_shm.wiring import EngineMemory
from tools.fake_alpaca import FakeAlpaca

KEY, SECRET = "PKRECONCILE", "reconcile-secret"
SYMS = ("AAPL", "MSFT")


@pytest.fixture
def fake():
    with FakeAlpaca(key_id=KEY, secret_key=SECRET, symbols=SYMS, quote_rate=0, seed=3) as f:
        f.publish_quote("AAPL", 100.0, 100.02, 300, 300)
        f.publish_quote("MSFT", 300.0, 300.05, 300, 300)
        yield f


def client(fake):
    return make_client(KEY, SECRET, True, fake.rest_url, 5.0)


def wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def seed(fake):
    fake.seed_position("AAPL", 30, 99.5)
    fake.seed_position("MSFT", -10, 310.0)
    fake.seed_position("TSLA", 5, 200.0)                    # not an engine symbol
    a = fake.seed_open_order("AAPL", "buy", 10, 50.0, client_order_id="old-run-1")
    b = fake.seed_open_order("MSFT", "sell", 4, 900.0)
    c = fake.seed_open_order("TSLA", "buy", 1, 10.0)
    return a, b, c


def test_cancel_policy_cancels_every_open_order_then_reads_positions(fake):
    a, b, c = seed(fake)
    lines = []
    rec = reconcile(client(fake), RateLimiter(200), SYMS, "cancel", log=lines.append)
    assert {o["id"]: o["status"] for o in fake.orders()} == {a["id"]: "canceled", b["id"]: "canceled",
                                                              c["id"]: "canceled"}
    assert rec.positions == {"AAPL": (30.0, 99.5), "MSFT": (-10.0, 310.0)}
    assert rec.other_positions == {"TSLA": 5.0}
    assert len(rec.canceled) == 3 and rec.adopted == []
    assert rec.cash == pytest.approx(float(fake.account()["cash"]))
    assert rec.buying_power == pytest.approx(float(fake.account()["buying_power"]))
    text = "\n".join(lines)
    assert "old-run-1" in text and "TSLA 5 is not an engine symbol" in text
    assert KEY not in text and SECRET not in text


def test_adopt_policy_tracks_open_orders_as_engine_orders(fake):
    a, b, c = seed(fake)
    rec = reconcile(client(fake), RateLimiter(200), SYMS, "adopt", log=lambda m: None)
    assert all(o["status"] == "new" for o in fake.orders())             # nothing canceled
    assert sorted(x["id"] for x in rec.adopted) == [1, 2]
    assert {x["venue_id"]: (x["symbol"], x["side"], x["qty"], x["filled"], x["limit_px"]) for x in rec.adopted} \
        == {a["id"]: ("AAPL", "buy", 10.0, 0.0, 50.0), b["id"]: ("MSFT", "sell", 4.0, 0.0, 900.0)}
    assert [o.venue_id for o in rec.left_alone] == [c["id"]]


def test_prepare_seeds_risk_and_exec(fake, monkeypatch, tmp_path):
    seed(fake)
    monkeypatch.setenv("APCA_API_KEY_ID", KEY)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    monkeypatch.setenv("PYRT_STATE_DIR", str(tmp_path))
    topo = load_topology(None, available_cpus={0, 1}, isolated_cpus=())
    engine = dataclasses.replace(topo.engine, symbols=SYMS, name="recon-test")
    p = {"dotenv": "", "rest_url": fake.rest_url, "open_orders": "adopt"}
    stages = tuple(dataclasses.replace(s, class_path="procs.alpaca_exec:AlpacaExecStage",
                                       params=deep_freeze(p)) if s.name == "exec" else s
                   for s in topo.stages)
    topo = dataclasses.replace(topo, engine=engine, stages=stages)
    lines = []
    topo2 = AlpacaExecStage.prepare(topo, "exec", log=lines.append)
    risk = topo2.stage("risk").params
    assert dict(risk["initial_positions"]) == {"AAPL": (30.0, 99.5), "MSFT": (-10.0, 310.0)}
    assert risk["initial_cash"] == pytest.approx(float(fake.account()["cash"]))
    assert len(risk["adopted_orders"]) == 2
    ex = topo2.stage("exec").params
    assert ex["client_prefix"].startswith("recon-test-") and len(ex["adopted_orders"]) == 2
    mem = EngineMemory(topo2, backend="local")
    r = mem.build_stage("risk")
    assert list(r.pos["qty"]) == [30.0, -10.0] and int(r.rs["open_orders"][0]) == 2
    assert int(r.pv["next_id"][0]) == 3
    x = mem.build_stage("exec")
    assert sorted(x.orders) == [1, 2] and x.last_oid == 2
    assert any("account reconciled" in m for m in lines)
    assert not any(KEY in m or SECRET in m for m in lines)


def test_bad_keys_fail_reconciliation_clearly(fake):
    bad = make_client(KEY, "wrong", True, fake.rest_url, 5.0)
    with pytest.raises(ReconcileError, match=r"HTTP 401 code 40110000.*APCA_API_KEY_ID") as e:
        reconcile(bad, RateLimiter(200), SYMS, "cancel", log=lambda m: None)
    assert "wrong" not in str(e.value)


def test_session_counter_never_repeats(tmp_path):
    a = allocate_session("eng", str(tmp_path))
    b = allocate_session("eng", str(tmp_path))
    assert int(b, 36) == int(a, 36) + 1 or int(b, 36) > int(a, 36)
    (tmp_path / "eng.alpaca-session").unlink()                  # state lost: the clock still moves on
    c = allocate_session("eng", str(tmp_path))
    assert int(c, 36) >= int(a, 36)
    assert client_prefix("eng", b) == f"eng-{b}-"
    long = "x" * 32
    assert len(engine_tag(long)) == 26 and engine_tag(long) != engine_tag("x" * 31 + "y")
    assert len(client_prefix(long, b) + str(10 ** 13)) <= 48


# -- the trade_updates client ------------------------------------------------------------------

def test_trade_updates_client_listens_reconnects_and_refuses_bad_keys(fake):
    res = collections.deque()
    c = TradeUpdatesClient(fake.stream_url, KEY, SECRET, res, reconnect_min_s=0.05, reconnect_max_s=0.2,
                           log=lambda m: None)
    bad_log = []
    bad = TradeUpdatesClient(fake.stream_url, KEY, "nope", collections.deque(), reconnect_min_s=0.05,
                             reconnect_max_s=0.1, log=bad_log.append)
    c.start()
    bad.start()
    try:
        assert wait_for(lambda: any(isinstance(r, Listening) for r in res))
        cl = client(fake)
        from procs.alpaca_rest import order_request

        cl.submit_order(order_request("tu-1", "AAPL", 1, 5, 0.0, 0))
        assert wait_for(lambda: any(getattr(r, "event", "") == "fill" for r in res))
        events = [r.event for r in res if hasattr(r, "event")]
        assert events[:2] == ["new", "fill"]
        fill = next(r for r in res if getattr(r, "event", "") == "fill")
        assert fill.order.cid == "tu-1" and fill.qty == 5.0 and fill.price == 100.02 and fill.execution_id
        fake.faults.drop_trade_stream()
        assert wait_for(lambda: [r.n for r in res if isinstance(r, Listening)] == [1, 2])
        assert c.stats["reconnects"] >= 1
        assert wait_for(lambda: bad.stats["auth_failures"] >= 1)
        assert not bad.listening
        assert "authentication refused" in "\n".join(bad_log) and "nope" not in "\n".join(bad_log)
    finally:
        c.stop()
        bad.stop()
    assert not c._thread.is_alive() and not bad._thread.is_alive()
