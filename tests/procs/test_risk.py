"""RiskStage basics: order ids, open orders, fills, backpressure, warm-up, params.

The test plays signal (puts INTENTs), exec (polls ORDERs, puts FILLs) and the book (writes
the ``tops`` table). ``Harness``, ``intent``, ``fill`` and ``limits_file`` are shared with the
other ``test_risk_*`` / ``test_positions*`` / ``test_algos`` modules.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from layouts.orders import (
    ACTION_CANCEL, ACTION_NEW, BUY, FILL, FILL_ACCEPTED, FILL_CANCELED, FILL_FULL, FILL_PARTIAL,
    FILL_REJECTED, INTENT, ORDER_LIMIT, ORDER_MARKET, SELL,
)
from layouts.risk import REJECT_REASONS

_seq = iter(range(10**9))
TOP = dict(valid=1, bid=99.0, ask=101.0, bid_size=1000.0, ask_size=1000.0)


def intent(sym=0, side=BUY, qty=100.0, **kw):
    r = np.zeros(1, INTENT)
    r["seq"], r["feed_ns"], r["sent_ns"] = next(_seq), 111, 222
    r["sym"], r["side"], r["qty"], r["order_type"] = sym, side, qty, ORDER_MARKET
    for k, v in kw.items():
        r[k] = v
    return r


def fill(order_id, qty, price, status=FILL_FULL, fee=0.0, side=BUY, sym=0):
    r = np.zeros(1, FILL)
    r["order_id"], r["qty"], r["price"], r["status"], r["fee"] = order_id, qty, price, status, fee
    r["side"], r["sym"], r["sent_ns"] = side, sym, 333
    return r


def limits_file(tmp_path, text: str, name="limits.toml"):
    """Write a risk limits TOML (sections not given keep their defaults) and return its path."""
    p = tmp_path / name
    p.write_text(text)
    return str(p)


class Harness:
    """One RiskStage over private memory; ``now`` is the injected clock (ns)."""

    def __init__(self, engine, drain_ring, limits=None, tops=True, **params):
        over = {f"stages.risk.params.{k}": v for k, v in params.items()}
        if limits is not None:
            over["stages.risk.params.limits"] = limits
        self.mem = engine(over)
        if tops:
            for s in range(len(self.mem.topology.engine.symbols)):
                self.top(s, **TOP)
        self.risk = self.mem.build_stage("risk")
        self.drain = drain_ring
        self.now = 1

    def top(self, sym, **fields):
        self.mem.tables["tops"].write(sym, sym=sym, **fields)

    def run(self, now=None):
        if now is not None:
            self.now = now
        n = 0
        while self.risk.do_work(self.now):
            n += 1
            assert n < 10_000
        return self.drain(self.mem.rings["order"])

    def send(self, *intents, now=None):
        """Put intents, run risk, return the records it sent (orders and cancels)."""
        self.mem.rings["intent"].put(np.concatenate(intents))
        return self.run(now)

    def fill(self, *fills, now=None):
        self.mem.rings["fill"].put(np.concatenate(fills))
        return self.run(now)

    def pos(self, sym=0):
        return self.mem.tables["positions"].read(sym)

    def state(self):
        return self.mem.tables["risk_state"].read(0)

    def counters(self):
        return {k: v for k, v in self.risk.counter_values().items() if v}

    def rejections(self):
        return {k: v for k, v in self.risk.table_counters(self.mem.tables).items() if v}


@pytest.fixture
def h(engine, drain_ring):
    return Harness(engine, drain_ring)


def test_accepted_intent_becomes_an_order_with_the_next_id(h):
    orders = h.send(intent(sym=2, side=SELL, qty=50.0, tag=7, feed_ns=999),
                    intent(sym=1, qty=10.0, order_type=ORDER_LIMIT, limit_px=99.5))
    assert orders["order_id"].tolist() == [1, 2]
    o = orders[0]
    assert (o["sym"], o["side"], o["qty"], o["tag"], o["feed_ns"]) == (2, SELL, 50.0, 7, 999)
    assert o["sent_ns"] > 0 and o["order_type"] == ORDER_MARKET and o["action"] == ACTION_NEW
    assert (orders[1]["order_type"], orders[1]["limit_px"]) == (ORDER_LIMIT, 99.5)
    assert h.pos(2)["open_sell"] == 50.0 and h.pos(1)["open_buy"] == 10.0
    assert h.pos(2)["open_orders"] == 1 and h.state()["open_orders"] == 2
    assert h.counters() == {"intents_in": 2, "orders_out": 2}
    assert h.mem.hists[h.risk.h_lat]["total"] == 2


def test_rejections_are_counted_by_reason_in_the_table(h):
    assert len(h.send(intent(sym=9), intent(qty=5000.0), intent())) == 1
    assert h.rejections() == {"rej_bad_intent": 1, "rej_max_order_qty": 1}
    assert h.counters() == {"intents_in": 3, "orders_out": 1, "rejected": 2,
                            "rej_bad_intent": 1, "rej_max_order_qty": 1}
    row = h.mem.tables["risk_rejections"].read(0)
    assert row.dtype.names == REJECT_REASONS and int(row["bad_intent"]) == 1
    assert h.risk.counter("rej_max_order_qty") == 1


def test_open_orders_table_full(engine, drain_ring):
    h = Harness(engine, drain_ring, open_orders=2, max_position=10**5)
    assert h.send(intent(), intent(), intent())["order_id"].tolist() == [1, 2]
    assert h.rejections() == {"rej_open_orders_full": 1}
    h.fill(fill(1, 100.0, 100.0))                                 # frees slot 1 (id 3's slot)
    assert h.send(intent())["order_id"].tolist() == [3]


def test_partial_fills_acks_and_releases(h):
    a, b, c = h.send(intent(qty=100.0), intent(qty=100.0), intent(side=SELL, qty=30.0))
    h.fill(fill(a["order_id"], 0.0, 0.0, status=FILL_ACCEPTED))     # an ack moves nothing
    assert (h.pos()["qty"], h.pos()["open_buy"]) == (0.0, 200.0)
    h.fill(fill(a["order_id"], 40.0, 10.0, status=FILL_PARTIAL))
    assert (h.pos()["qty"], h.pos()["open_buy"]) == (40.0, 160.0)
    h.fill(fill(a["order_id"], 0.0, 0.0, status=FILL_CANCELED))     # releases the other 60
    assert (h.pos()["qty"], h.pos()["open_buy"]) == (40.0, 100.0)
    h.fill(fill(b["order_id"], 0.0, 0.0, status=FILL_REJECTED))
    h.fill(fill(c["order_id"], 0.0, 0.0, status=FILL_REJECTED, side=SELL))
    p = h.pos()
    assert (p["qty"], p["open_buy"], p["open_sell"], p["fills"], p["open_orders"]) == (40.0, 0.0, 0.0, 1, 0)
    assert h.state()["open_orders"] == 0
    h.fill(fill(a["order_id"], 10.0, 10.0))                          # a is closed: unknown now
    assert h.counters()["fill_unknown_order"] == 1 and h.pos()["qty"] == 40.0


def test_unknown_overfill_and_bad_fills(h):
    (o,) = h.send(intent(qty=100.0))
    h.fill(fill(999, 10.0, 10.0), fill(0, 10.0, 10.0))              # never sent
    h.fill(fill(o["order_id"], 10.0, math.nan, status=FILL_PARTIAL))  # bad price
    h.fill(fill(o["order_id"], 10.0, 10.0, status=77))              # unknown status
    h.fill(fill(o["order_id"], 150.0, 10.0))                         # more than ordered
    c = h.counters()
    assert (c["fill_unknown_order"], c["fill_bad"], c["fill_overfill"], c["fills_in"]) == (2, 2, 1, 5)
    p = h.pos()
    assert (p["qty"], p["open_buy"], p["fills"]) == (150.0, 0.0, 1)  # the venue's fill is applied


def test_fills_are_drained_even_when_the_order_ring_is_full(engine, drain_ring):
    mem = engine({"rings.order.capacity": 2})
    mem.tables["tops"].write(0, sym=0, **TOP)
    risk = mem.build_stage("risk")
    mem.rings["intent"].put(np.concatenate([intent(qty=10.0) for _ in range(5)]))
    assert risk.do_work(1) == 4                                      # 2 intents + 2 orders sent
    assert risk.do_work(1) == 0                                      # order ring full
    assert risk.counter("intents_in") == 2
    orders = drain_ring(mem.rings["order"])
    mem.rings["fill"].put(np.concatenate([fill(i, 10.0, 5.0) for i in orders["order_id"]]))
    assert risk.do_work(1) == 6                                      # 2 fills, then 2 intents
    assert risk.counter("fills_in") == 2 and risk.counter("orders_out") == 4
    assert mem.tables["positions"].read(0)["qty"] == 20.0


def test_cancel_intents_are_not_supported_yet(h):
    assert len(h.send(intent(action=ACTION_CANCEL))) == 0
    assert h.rejections() == {"rej_bad_intent": 1}


def test_warm_up_touches_no_shared_state(engine):
    mem = engine()
    risk = mem.build_stage("risk")
    snap = ({n: r.ctl.copy() for n, r in mem.rings.items()}, mem.stats.copy(),
            {n: t.rows.copy() for n, t in mem.tables.items()}, mem.control.copy(),
            risk.pos.copy(), risk.pv.copy(), risk.rs.copy())
    risk.warm_up()
    assert all(np.array_equal(mem.rings[n].ctl, c) for n, c in snap[0].items())
    assert np.array_equal(mem.stats, snap[1])
    assert all(np.array_equal(mem.tables[n].rows, r) for n, r in snap[2].items())
    assert np.array_equal(mem.control, snap[3])
    assert np.array_equal(risk.pos, snap[4]) and np.array_equal(risk.pv, snap[5])
    assert np.array_equal(risk.rs, snap[6]) and int(risk.pv["next_id"][0]) == 1


def test_kernel_runs_the_same_step(h):
    step, args, takes_now = h.risk.kernel()
    assert takes_now and step.py_func.__name__ == "risk_step"
    h.mem.rings["intent"].put(intent())
    assert step(5, *args) == 2                                      # 1 intent in, 1 order out
    assert h.drain(h.mem.rings["order"])["order_id"].tolist() == [1]


@pytest.mark.parametrize("key, value", [("max_order_qty", 0), ("max_position", -1),
                                        ("open_orders", 1000), ("open_orders", 1), ("batch", 0),
                                        ("max_qty", 5), ("algo_parents", 3), ("fifo_lots", 0),
                                        ("vwap_profile", [1.0, -1.0]), ("limits", 5)])
def test_bad_params_name_the_key(engine, key, value):
    with pytest.raises(ValueError, match=rf"stages\.risk\.params\.{key}"):
        engine({f"stages.risk.params.{key}": value}).build_stage("risk")
