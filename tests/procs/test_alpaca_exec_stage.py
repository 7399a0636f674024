"""``AlpacaExecStage`` in private memory with a stub REST worker: every trade-update event
mapped to its FILL report, executions counted once (execution ids, cumulative filled_qty,
missed updates), cancels before and after the venue knows the order, resyncs after
reconnects, unknown orders, adopted orders, and the refusal of an order ring risk does not
produce. No threads, no network: the test plays the worker and the stream by appending to
the stage's result deque.
"""
from __future__ import annotations

import dataclasses
import datetime

import numpy as np
import pytest

from layouts.orders import (
    ACTION_CANCEL, ACTION_NEW, ACTION_REPLACE, BUY, FILL_ACCEPTED, FILL_CANCEL_REJECTED,
    FILL_CANCELED, FILL_EXPIRED, FILL_FULL, FILL_PARTIAL, FILL_REJECTED, FILL_REPLACED, ORDER,
    ORDER_LIMIT, SELL,
)
from procs.alpaca_rest import (
    CancelResult, ReplaceResult, Snapshot, SubmitResult, Unresolved, VenueOrder, VenueUpdate,
)
from procs.alpaca_trade_updates import Listening, parse_trade_update
from pyrt_shm.config import load_topology
from pyrt_shm.config_model import deep_freeze
from pyrt_shm.wiring import EngineMemory, WiringError

PREFIX = "t-s1-"


class StubWorker:
    def __init__(self):
        self.calls = []
        self.busy = 0
        self.stats = {}

    def __getattr__(self, name):
        if name in ("submit", "cancel", "replace", "lookup", "refresh", "resync"):
            return lambda *a: self.calls.append((name,) + a)
        raise AttributeError(name)

    def pending(self):
        return self.busy


def build(monkeypatch, with_risk=True, **params):
    monkeypatch.setenv("APCA_API_KEY_ID", "PKSTAGETEST")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "stage-secret")
    topo = load_topology(None, available_cpus={0, 1}, isolated_cpus=())
    p = {"dotenv": "", "client_prefix": PREFIX, "session_start": "2026-01-01T00:00:00+00:00", **params}
    stages = tuple(dataclasses.replace(s, class_path="procs.alpaca_exec:AlpacaExecStage",
                                       params=deep_freeze(p)) if s.name == "exec" else s
                   for s in topo.stages)
    mem = EngineMemory(dataclasses.replace(topo, stages=stages), backend="local")
    if with_risk:
        mem.build_stage("risk")              # tags the order ring as risk's
    ex = mem.build_stage("exec")
    ex.worker = StubWorker()
    return mem, ex


def order(oid, sym=0, side=BUY, qty=10.0, limit=0.0, action=ACTION_NEW, orig=0):
    o = np.zeros(1, ORDER)
    o["order_id"], o["sym"], o["side"], o["qty"], o["limit_px"] = oid, sym, side, qty, limit
    o["order_type"] = ORDER_LIMIT if limit > 0 else 0
    o["action"], o["orig_order_id"], o["feed_ns"] = action, orig, 123
    return o


def vorder(cid, qty=10.0, filled=0.0, avg=0.0, status="new", vid=None, side=1, replaced_by=""):
    return VenueOrder(vid or f"v-{cid}", cid, "SYM0", side, qty, filled, avg, status, "market",
                      replaced_by=replaced_by)


def upd(event, cid, exec_id="", price=0.0, qty=0.0, **kw):
    return VenueUpdate(vorder(cid, **kw), event, exec_id, price, qty, "stream")


def cycle(mem, ex, *items, now=1):
    ex.results.extend(items)
    ex.do_work(now)
    out = mem.rings["fill"].poll(1024)
    return [(int(f["order_id"]), int(f["status"]), float(f["qty"]), float(f["price"]),
             float(f["leaves_qty"]), int(f["reason"]), int(f["replaced_by"]), int(f["fill_id"])) for f in out]


def submit(mem, ex, oid, **kw):
    mem.rings["order"].put(order(oid, **kw))
    cycle(mem, ex)
    assert ex.worker.calls[-1][:3] == ("submit", oid, PREFIX + str(oid))
    return cycle(mem, ex, SubmitResult(oid, True, vorder(PREFIX + str(oid), qty=kw.get("qty", 10.0)),
                                       done_ns=2))


def test_fills_are_counted_once_and_numbered_gap_free(monkeypatch):
    mem, ex = build(monkeypatch)
    assert submit(mem, ex, 1) == [(1, FILL_ACCEPTED, 0.0, 0.0, 10.0, 0, 0, 1)]
    cid = PREFIX + "1"
    got = cycle(mem, ex, upd("new", cid),                                    # already accepted
                upd("partial_fill", cid, "x1", 100.5, 4, filled=4, avg=100.5, status="partially_filled"),
                upd("partial_fill", cid, "x1", 100.5, 4, filled=4, avg=100.5, status="partially_filled"),
                upd("fill", cid, "x2", 100.7, 6, filled=10, avg=100.62, status="filled"),
                upd("fill", cid, "x2", 100.7, 6, filled=10, avg=100.62, status="filled"))
    assert got == [(1, FILL_PARTIAL, 4.0, 100.5, 6.0, 0, 0, 2), (1, FILL_FULL, 6.0, 100.7, 0.0, 0, 0, 3)]
    c = ex.counter_values()
    assert c["executions"] == 2 and c["orders_done"] == 1 and c["ignored_updates"] == 2 and c["in_flight"] == 0
    assert mem.tables["venue_positions"].rows[0]["qty"] == 10.0


def test_missed_updates_are_recovered_from_the_cumulative_fill(monkeypatch):
    mem, ex = build(monkeypatch)
    submit(mem, ex, 1)
    cid = PREFIX + "1"
    got = cycle(mem, ex, upd("partial_fill", cid, "x1", 100.5, 4, filled=4, avg=100.5),
                # the stream dropped; the resync's snapshot says 10 filled at 100.6 on average
                VenueUpdate(vorder(cid, filled=10, avg=100.6, status="filled"), "snapshot", source="resync"))
    assert got[1][:2] == (1, FILL_FULL) and got[1][2] == 6.0
    assert got[1][3] == pytest.approx((10 * 100.6 - 4 * 100.5) / 6)


@pytest.mark.parametrize("event,status,fill_status,reason", [
    ("canceled", "canceled", FILL_CANCELED, 14), ("expired", "expired", FILL_EXPIRED, 0),
    ("done_for_day", "done_for_day", FILL_EXPIRED, 0), ("rejected", "rejected", FILL_REJECTED, 0)])
def test_terminal_events(monkeypatch, event, status, fill_status, reason):
    mem, ex = build(monkeypatch)
    cid = PREFIX + "1"
    if event == "rejected":
        # received ("accepted") but not routed: the order stays SUBMITTED, the one state
        # the table lets end REJECTED
        mem.rings["order"].put(order(1))
        cycle(mem, ex)
        assert cycle(mem, ex, SubmitResult(1, True, vorder(cid, status="accepted"))) == []
        got = cycle(mem, ex, upd(event, cid, status=status), upd(event, cid, status=status))
        assert got == [(1, FILL_REJECTED, 0.0, 0.0, 10.0, 0, 0, 1)]
        assert ex.counter("orders_done") == 1 and ex.counter("ignored_updates") == 1
        return
    submit(mem, ex, 1)
    got = cycle(mem, ex, upd("partial_fill", cid, "x1", 99.0, 3, filled=3, avg=99.0),
                upd(event, cid, filled=3, avg=99.0, status=status), upd(event, cid, filled=3, status=status))
    assert [g[:2] for g in got] == [(1, FILL_PARTIAL), (1, fill_status)]
    assert got[1][4] == 7.0 and got[1][5] == reason                          # leaves = qty - filled
    assert ex.counter("orders_done") == 1


def test_refused_submit_is_rejected_with_the_venue_code(monkeypatch):
    mem, ex = build(monkeypatch)
    mem.rings["order"].put(order(1))
    cycle(mem, ex)
    got = cycle(mem, ex, SubmitResult(1, False, None, 40310000, "insufficient buying power"))
    assert got == [(1, FILL_REJECTED, 0.0, 0.0, 0.0, 40310000, 0, 1)]
    assert ex.counter("rejected") == 1 and ex.counter("orders_done") == 1


def test_cancel_paths(monkeypatch):
    mem, ex = build(monkeypatch)
    w = ex.worker
    submit(mem, ex, 1)                                           # at the venue: cancel sent at once
    mem.rings["order"].put(order(1, action=ACTION_CANCEL))
    assert cycle(mem, ex) == [] and w.calls[-1] == ("cancel", 1, "v-" + PREFIX + "1")
    got = cycle(mem, ex, CancelResult(1, False, 42210000, "not cancelable"))
    assert got[0][:2] == (1, FILL_CANCEL_REJECTED) and got[0][5] == 42210000     # restored: open
    assert w.calls[-1] == ("refresh", 1, "v-" + PREFIX + "1")

    mem.rings["order"].put(order(2))                             # submit sent, no answer yet
    cycle(mem, ex)
    mem.rings["order"].put(order(2, action=ACTION_CANCEL))
    cycle(mem, ex)
    assert w.calls[-1][0] == "submit"                            # cancel waits for the venue id
    cycle(mem, ex, SubmitResult(2, True, vorder(PREFIX + "2"), done_ns=2))
    assert w.calls[-1] == ("cancel", 2, "v-" + PREFIX + "2")
    got = cycle(mem, ex, upd("canceled", PREFIX + "2", status="canceled"))
    assert got == [(2, FILL_CANCELED, 0.0, 0.0, 10.0, 14, 0, 3)]

    w.busy = 5                                                   # worker busy: order 3 stays NEW
    mem.rings["order"].put(order(3))
    mem.rings["order"].put(order(3, action=ACTION_CANCEL))
    assert cycle(mem, ex) == [(3, FILL_CANCELED, 0.0, 0.0, 10.0, 14, 0, 4)]
    w.busy = 0
    cycle(mem, ex)
    assert not any(c[:2] == ("submit", 3) for c in w.calls)      # never left exec

    mem.rings["order"].put(order(99, action=ACTION_CANCEL))      # unknown order
    assert cycle(mem, ex)[0][:2] == (99, FILL_CANCEL_REJECTED)


def test_cancel_rejected_by_the_stream_restores_the_order(monkeypatch):
    mem, ex = build(monkeypatch)
    submit(mem, ex, 1)
    mem.rings["order"].put(order(1, action=ACTION_CANCEL))
    cycle(mem, ex)
    got = cycle(mem, ex, upd("order_cancel_rejected", PREFIX + "1", status="new"),
                upd("fill", PREFIX + "1", "x9", 101.0, 10, filled=10, avg=101.0, status="filled"))
    assert [g[:2] for g in got] == [(1, FILL_CANCEL_REJECTED), (1, FILL_FULL)]


def test_replace(monkeypatch):
    mem, ex = build(monkeypatch)
    w = ex.worker
    submit(mem, ex, 1, limit=50.0)
    mem.rings["order"].put(order(2, limit=51.0, qty=8.0, action=ACTION_REPLACE, orig=1))
    cycle(mem, ex)
    assert w.calls[-1] == ("replace", 1, "v-" + PREFIX + "1", 2, PREFIX + "2", 8.0, 51.0, 0)
    got = cycle(mem, ex, ReplaceResult(1, 2, True, vorder(PREFIX + "2", qty=8.0)))
    assert got == [(2, FILL_ACCEPTED, 0.0, 0.0, 8.0, 0, 0, 2)]
    assert w.calls[-1] == ("refresh", 1, "v-" + PREFIX + "1")
    got = cycle(mem, ex, upd("replaced", PREFIX + "1", status="replaced", replaced_by="v-" + PREFIX + "2"))
    assert got == [(1, FILL_REPLACED, 0.0, 0.0, 10.0, 0, 2, 3)]
    # a refused replace: the original stays open, the replacement id ends rejected
    mem.rings["order"].put(order(3, limit=52.0, qty=8.0, action=ACTION_REPLACE, orig=2))
    cycle(mem, ex)
    got = cycle(mem, ex, ReplaceResult(2, 3, False, None, 40310000, "not changed"))
    assert [g[:2] for g in got] == [(2, FILL_CANCEL_REJECTED), (3, FILL_REJECTED)]
    assert got[0][6] == 3 and got[1][5] == 40310000


def test_bad_and_duplicate_orders_are_rejected(monkeypatch):
    mem, ex = build(monkeypatch)
    mem.rings["order"].put(order(1, qty=-1.0))
    mem.rings["order"].put(order(1))
    mem.rings["order"].put(order(2, sym=99))
    got = cycle(mem, ex)
    assert [(g[0], g[1], g[5]) for g in got] == [(1, FILL_REJECTED, 4), (1, FILL_REJECTED, 3),
                                                 (2, FILL_REJECTED, 4)]


def test_unknown_orders_and_resyncs(monkeypatch):
    mem, ex = build(monkeypatch)
    submit(mem, ex, 1)
    assert cycle(mem, ex, upd("fill", "someone-else", "z", 1.0, 1, filled=1, status="filled")) == []
    assert ex.counter("unknown_updates") == 1
    cycle(mem, ex, Listening(1))
    kind, after, vids = ex.worker.calls[-1]
    assert kind == "resync" and vids == ["v-" + PREFIX + "1"]
    # from a little before the oldest unfinished order was received
    age = datetime.datetime.now(datetime.timezone.utc) - datetime.datetime.fromisoformat(after)
    assert datetime.timedelta(seconds=5) <= age < datetime.timedelta(seconds=60)
    cycle(mem, ex, upd("canceled", PREFIX + "1", status="canceled"))
    n = len(ex.worker.calls)
    cycle(mem, ex, Listening(2))
    assert ex.counter("stream_reconnects") == 1
    assert len(ex.worker.calls) == n                      # nothing unfinished: nothing to read


def test_unresolved_submit_is_looked_up_then_resent_only_if_absent(monkeypatch):
    mem, ex = build(monkeypatch, backoff_cap_ms=0)
    w = ex.worker
    mem.rings["order"].put(order(1))
    cycle(mem, ex)
    cycle(mem, ex, Unresolved(1), now=10)
    ex._next_watch = 0
    cycle(mem, ex, now=20)
    assert w.calls[-1] == ("lookup", 1, PREFIX + "1")
    cycle(mem, ex, Snapshot(1, None), now=30)                    # provably not at the venue
    assert w.calls[-1][:3] == ("submit", 1, PREFIX + "1")
    assert sum(1 for c in w.calls if c[0] == "submit") == 2


def test_adopted_orders_fill_as_engine_orders(monkeypatch):
    adopted = [{"id": 1, "venue_id": "venue-a", "client_order_id": "web-123", "symbol": "SYM1",
                "side": "sell", "qty": 20.0, "filled": 5.0, "avg_px": 10.0, "limit_px": 10.0}]
    mem, ex = build(monkeypatch, adopted_orders=adopted)
    v = VenueOrder("venue-a", "web-123", "SYM1", -1, 20.0, 20.0, 10.25, "filled", "limit", 10.0)
    got = cycle(mem, ex, VenueUpdate(v, "fill", "e1", 10.333333333333334, 15.0, "stream"))
    assert got[0][:3] == (1, FILL_FULL, 15.0)
    mem.rings["order"].put(order(1))                             # engine ids start after adopted
    assert cycle(mem, ex)[0][:2] == (1, FILL_REJECTED)


def test_exec_refuses_an_order_ring_risk_does_not_produce(monkeypatch):
    mem, ex = build(monkeypatch, with_risk=False)
    with pytest.raises(WiringError, match="risk"):
        ex.warm_up()


def test_params_are_validated(monkeypatch):
    with pytest.raises(ValueError, match=r"stages\.exec\.params\.open_orders"):
        build(monkeypatch, open_orders="keep")
    with pytest.raises(ValueError, match=r"stages\.exec\.params\.rest_url: give the base URL"):
        build(monkeypatch, rest_url="http://127.0.0.1:1/v2")
    with pytest.raises(ValueError, match=r"stages\.exec\.params\.bogus: unknown parameter"):
        build(monkeypatch, bogus=1)


def test_missing_credentials_name_the_variables(monkeypatch):
    from pyrt_shm.credentials import MissingCredentials

    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)
    topo = load_topology(None, available_cpus={0, 1}, isolated_cpus=())
    stages = tuple(dataclasses.replace(s, class_path="procs.alpaca_exec:AlpacaExecStage",
                                       params=deep_freeze({"dotenv": ""})) if s.name == "exec" else s
                   for s in topo.stages)
    mem = EngineMemory(dataclasses.replace(topo, stages=stages), backend="local")
    with pytest.raises(MissingCredentials, match="APCA_API_KEY_ID and APCA_API_SECRET_KEY"):
        mem.build_stage("exec")


def test_parse_trade_update():
    data = {"event": "partial_fill", "execution_id": "e-1", "price": "105.89", "qty": "7",
            "timestamp": "2026-01-01T00:00:00Z", "position_qty": "7",
            "order": {"id": "o-1", "client_order_id": "c-1", "symbol": "AAPL", "side": "sell", "qty": "10",
                      "filled_qty": "7", "filled_avg_price": "105.89", "status": "partially_filled",
                      "type": "limit", "limit_price": "105"}}
    u = parse_trade_update(data)
    assert (u.event, u.execution_id, u.price, u.qty) == ("partial_fill", "e-1", 105.89, 7.0)
    assert (u.order.side, u.order.filled_qty, u.order.limit_price) == (SELL, 7.0, 105.0)
    with pytest.raises(ValueError, match="side"):
        parse_trade_update({**data, "order": {**data["order"], "side": "up"}})
    with pytest.raises(ValueError, match="event"):
        parse_trade_update({"order": data["order"]})


@pytest.mark.parametrize("event,acked", [("pending_new", False), ("accepted", False), ("new", True)])
def test_acknowledgements(monkeypatch, event, acked):
    mem, ex = build(monkeypatch)
    mem.rings["order"].put(order(1))
    cycle(mem, ex)
    got = cycle(mem, ex, upd(event, PREFIX + "1", status=event))
    assert got == ([(1, FILL_ACCEPTED, 0.0, 0.0, 10.0, 0, 0, 1)] if acked else [])
    assert ex.counter("in_flight") == 1                     # a market order not yet done


def test_replace_rejected_by_the_stream(monkeypatch):
    mem, ex = build(monkeypatch)
    submit(mem, ex, 1, limit=50.0)
    mem.rings["order"].put(order(2, limit=51.0, action=ACTION_REPLACE, orig=1))
    cycle(mem, ex)
    got = cycle(mem, ex, upd("order_replace_rejected", PREFIX + "1", status="new"))
    assert got == [(1, FILL_CANCEL_REJECTED, 0.0, 0.0, 10.0, 8, 2, 2)]
    got = cycle(mem, ex, ReplaceResult(1, 2, False, None, 42210000, "not replaceable"))
    assert got == [(2, FILL_REJECTED, 0.0, 0.0, 0.0, 42210000, 0, 3)]   # the original stays open
