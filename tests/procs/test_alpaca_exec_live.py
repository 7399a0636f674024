"""``AlpacaExecStage`` with its real threads (REST worker, trade_updates client) against the
fake Alpaca, in one process over private memory: fills that happen while the trade stream is
down are recovered by the resync after the reconnect, each counted once; the stage stops its
threads when closed."""
from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np

from layouts.orders import ACTION_NEW, BUY, FILL_ACCEPTED, FILL_FULL, FILL_PARTIAL, ORDER, SELL
from pyrt_shm.agent import AgentInvoker
from pyrt_shm.config import load_topology
from pyrt_shm.config_model import deep_freeze
from pyrt_shm.wiring import EngineMemory
from tools.fake_alpaca import FakeAlpaca

KEY, SECRET = "PKLIVESTAGE", "live-stage-secret"


def test_fills_missed_while_the_stream_was_down_come_back_once(monkeypatch, tmp_path):
    monkeypatch.setenv("APCA_API_KEY_ID", KEY)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    with FakeAlpaca(key_id=KEY, secret_key=SECRET, symbols=("AAPL", "MSFT"), quote_rate=0, seed=5) as fake:
        fake.publish_quote("AAPL", 100.0, 100.02, 1000, 1000)
        fake.publish_quote("MSFT", 300.0, 300.04, 1000, 1000)
        topo = load_topology(None, available_cpus={0, 1}, isolated_cpus=())
        engine = dataclasses.replace(topo.engine, symbols=("AAPL", "MSFT"))
        p = {"dotenv": "", "rest_url": fake.rest_url, "stream_url": fake.stream_url,
             "client_prefix": "live-x-", "reconnect_min_ms": 300, "reconnect_max_ms": 600,
             "session_start": "2000-01-01T00:00:00+00:00", "backoff_ms": 10}
        stages = tuple(dataclasses.replace(s, class_path="procs.alpaca_exec:AlpacaExecStage",
                                           params=deep_freeze(p)) if s.name == "exec" else s
                       for s in topo.stages)
        mem = EngineMemory(dataclasses.replace(topo, engine=engine, stages=stages), backend="local")
        mem.build_stage("risk")
        ex = mem.build_stage("exec")
        ex.warm_up()
        inv = AgentInvoker(ex)
        fills = []

        def run_until(pred, timeout=15.0):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                inv.invoke()
                fills.extend(mem.rings["fill"].poll(256))
                if pred():
                    return True
                time.sleep(0.002)
            return False

        def put(oid, sym, side, qty):
            o = np.zeros(1, ORDER)
            o["order_id"], o["sym"], o["side"], o["qty"], o["action"] = oid, sym, side, qty, ACTION_NEW
            mem.rings["order"].put(o)

        before = {t.name for t in threading.enumerate()}
        try:
            inv.start()
            assert run_until(lambda: ex.stream.listening)
            put(1, 0, BUY, 10)
            assert run_until(lambda: any(f["order_id"] == 1 and f["status"] == FILL_FULL for f in fills))
            fake.faults.drop_trade_stream()
            assert run_until(lambda: not ex.stream.listening, 5)
            put(2, 1, SELL, 7)                          # fills at the fake while nobody listens
            put(3, 0, BUY, 3)
            assert run_until(lambda: sum(f["status"] == FILL_FULL for f in fills) == 3)
            assert run_until(lambda: ex.counter("stream_reconnects") == 1 and ex.counter("in_flight") == 0)
        finally:
            inv.close()
        deadline = time.monotonic() + 5      # our threads stopped, our connections closed
        while {t.name for t in threading.enumerate()} - before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {t.name for t in threading.enumerate()} - before == set()
        full = [(int(f["order_id"]), float(f["qty"])) for f in fills if f["status"] == FILL_FULL]
        assert sorted(full) == [(1, 10.0), (2, 7.0), (3, 3.0)]
        assert not any(f["status"] == FILL_PARTIAL for f in fills)
        assert [int(f["fill_id"]) for f in fills] == list(range(1, len(fills) + 1))
        assert {int(f["order_id"]) for f in fills if f["status"] == FILL_ACCEPTED} <= {1, 2, 3}
        vp = mem.tables["venue_positions"].rows
        assert (vp[0]["qty"], vp[1]["qty"]) == (13.0, -7.0)
        assert fake.positions() == {"AAPL": 13.0, "MSFT": -7.0}
        ap = mem.tables["alpaca_positions"].rows          # read from the venue at close
        assert (ap[0]["qty"], ap[1]["qty"]) == (13.0, -7.0)
        assert ex.counter("executions") == 3 and ex.counter("orders_done") == 3
