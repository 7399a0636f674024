"""RiskStage: every rejection reason, kill switch, order ids, average-cost positions, fills.

The test plays signal (puts INTENTs), exec (polls ORDERs, puts FILLs) and the book (writes
the ``tops`` table).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from layouts.control import TRADING_ACTIVE, TRADING_HALTED, TRADING_REDUCING
from layouts.orders import (
    BUY, FILL, FILL_CANCELED, FILL_FULL, FILL_PARTIAL, FILL_REJECTED, INTENT, ORDER_LIMIT,
    ORDER_MARKET, SELL,
)

_seq = iter(range(10**9))


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


class Harness:
    def __init__(self, engine, drain_ring, **params):
        over = {f"stages.risk.params.{k}": v for k, v in params.items()}
        self.mem = engine(over)
        self.risk = self.mem.build_stage("risk")
        self.drain = drain_ring

    def send(self, *intents):
        """Put intents, run risk, return the orders it sent."""
        self.mem.rings["intent"].put(np.concatenate(intents))
        while self.risk.do_work(0):
            pass
        return self.drain(self.mem.rings["order"])

    def fill(self, *fills):
        self.mem.rings["fill"].put(np.concatenate(fills))
        while self.risk.do_work(0):
            pass

    def pos(self, sym=0):
        return self.mem.tables["positions"].read(sym)

    def counters(self):
        return {k: v for k, v in self.risk.counter_values().items() if v}


@pytest.fixture
def h(engine, drain_ring):
    return Harness(engine, drain_ring)


def test_accepted_intent_becomes_an_order_with_the_next_id(h):
    orders = h.send(intent(sym=2, side=SELL, qty=50.0, tag=7, feed_ns=999),
                    intent(sym=1, qty=10.0, order_type=ORDER_LIMIT, limit_px=99.5))
    assert orders["order_id"].tolist() == [1, 2]
    o = orders[0]
    assert (o["sym"], o["side"], o["qty"], o["tag"], o["feed_ns"]) == (2, SELL, 50.0, 7, 999)
    assert o["sent_ns"] > 0 and o["order_type"] == ORDER_MARKET
    assert (orders[1]["order_type"], orders[1]["limit_px"]) == (ORDER_LIMIT, 99.5)
    assert h.pos(2)["open_sell"] == 50.0 and h.pos(1)["open_buy"] == 10.0
    assert h.counters() == {"intents_in": 2, "orders_out": 2}
    assert h.mem.hists[h.risk.h_lat]["total"] == 2


@pytest.mark.parametrize("bad", [
    dict(sym=4), dict(sym=2**32 - 1), dict(side=0), dict(side=2), dict(qty=0.0), dict(qty=-1.0),
    dict(qty=math.nan), dict(qty=math.inf), dict(order_type=7), dict(tif=9),
    dict(order_type=ORDER_LIMIT), dict(order_type=ORDER_LIMIT, limit_px=math.nan),
])
def test_bad_intent(h, bad):
    assert len(h.send(intent(**bad))) == 0
    assert h.counters() == {"intents_in": 1, "rej_bad_intent": 1}


def test_kill_switch_and_halted_reject_everything(h):
    h.mem.control["kill_switch"] = 1
    assert len(h.send(intent(), intent(side=SELL))) == 0
    h.mem.control["kill_switch"] = 0
    h.mem.control["trading_state"] = TRADING_HALTED
    assert len(h.send(intent())) == 0
    h.mem.control["trading_state"] = TRADING_ACTIVE
    orders = h.send(intent())
    assert orders["order_id"].tolist() == [1]                  # ids are given to orders only
    assert h.counters() == {"intents_in": 4, "orders_out": 1, "rej_kill_switch": 2, "rej_halted": 1}


def test_reduce_only(h):
    (o,) = h.send(intent(side=BUY, qty=100.0))
    h.fill(fill(o["order_id"], 100.0, 10.0))
    h.mem.control["trading_state"] = TRADING_REDUCING
    assert len(h.send(intent(side=BUY, qty=1.0))) == 0           # would add
    assert len(h.send(intent(side=SELL, qty=150.0))) == 0        # would flip
    assert len(h.send(intent(side=SELL, qty=60.0))) == 1         # reduces
    assert len(h.send(intent(side=SELL, qty=50.0))) == 0         # 60 open + 50 > 100 held
    assert len(h.send(intent(side=SELL, qty=40.0))) == 1         # exactly to flat
    assert h.counters()["rej_reduce_only"] == 3


def test_max_order_qty_and_max_position_count_open_orders(engine, drain_ring):
    h = Harness(engine, drain_ring, max_order_qty=400, max_position=500)
    assert len(h.send(intent(qty=401.0))) == 0
    assert len(h.send(intent(qty=300.0))) == 1
    assert len(h.send(intent(qty=300.0))) == 0                   # 0 held + 300 open + 300 > 500
    assert len(h.send(intent(qty=200.0))) == 1                   # exactly 500
    assert len(h.send(intent(side=SELL, qty=400.0))) == 1        # sells are checked on their side
    assert len(h.send(intent(side=SELL, qty=200.0))) == 0        # 0 - 400 - 200 < -500
    assert len(h.send(intent(sym=1, qty=400.0))) == 1            # per symbol
    c = h.counters()
    assert (c["rej_max_order_qty"], c["rej_max_position"], c["orders_out"]) == (1, 2, 4)
    p = h.pos(0)
    assert (p["open_buy"], p["open_sell"]) == (500.0, 400.0)


def test_open_orders_table_full(engine, drain_ring):
    h = Harness(engine, drain_ring, open_orders=2, max_position=10**6)
    assert h.send(intent(), intent(), intent())["order_id"].tolist() == [1, 2]
    assert h.counters()["rej_open_orders_full"] == 1
    h.fill(fill(1, 100.0, 10.0))                                  # frees slot 1 (id 3's slot)
    assert h.send(intent())["order_id"].tolist() == [3]


def test_average_cost_positions_and_pnl(h):
    # buy 100@10, buy 100@12 -> 200 @ 11; sell 150@13 -> realized 150*2 = 300, 50 @ 11;
    # sell 100@9 -> flip: realized 50*(9-11) = -100 (total 200), -50 @ 9;
    # buy 50@8 -> realized 50*(9-8) = 50 (total 250), flat.
    steps = [(BUY, 100.0, 10.0, 1.0), (BUY, 100.0, 12.0, 1.0), (SELL, 150.0, 13.0, 1.5),
             (SELL, 100.0, 9.0, 1.0), (BUY, 50.0, 8.0, 0.5)]
    expect = [(100.0, 10.0, 0.0), (200.0, 11.0, 0.0), (50.0, 11.0, 300.0), (-50.0, 9.0, 200.0),
              (0.0, 0.0, 250.0)]
    for (side, q, px, fee), (eq, eavg, ereal) in zip(steps, expect):
        (o,) = h.send(intent(side=side, qty=q))
        assert h.pos()["open_buy" if side == BUY else "open_sell"] == q
        h.fill(fill(o["order_id"], q, px, fee=fee, side=side))
        p = h.pos()
        assert (p["qty"], p["avg_px"], p["realized"]) == pytest.approx((eq, eavg, ereal))
        assert p["open_buy"] == 0.0 and p["open_sell"] == 0.0
        assert p["mark"] == px                                   # no valid top: last fill price
    p = h.pos()
    assert (p["bought"], p["sold"], p["fills"], p["fees"], p["unrealized"]) == (250.0, 250.0, 5, 5.0, 0.0)
    assert h.counters() == {"intents_in": 5, "orders_out": 5, "fills_in": 5}
    assert h.mem.hists[h.risk.h_fill]["total"] == 5


def test_mark_and_unrealized_from_the_tops_table(h):
    h.mem.tables["tops"].write(3, sym=3, valid=1, bid=20.0, ask=20.2)
    (o,) = h.send(intent(sym=3, side=SELL, qty=10.0))
    h.fill(fill(o["order_id"], 10.0, 20.0, side=SELL, sym=3))
    p = h.pos(3)
    assert p["mark"] == pytest.approx(20.1) and p["unrealized"] == pytest.approx((20.1 - 20.0) * -10)


def test_partial_fills_and_releases(h):
    a, b, c = h.send(intent(qty=100.0), intent(qty=100.0), intent(side=SELL, qty=30.0))
    h.fill(fill(a["order_id"], 40.0, 10.0, status=FILL_PARTIAL))
    assert (h.pos()["qty"], h.pos()["open_buy"]) == (40.0, 160.0)
    h.fill(fill(a["order_id"], 0.0, 0.0, status=FILL_CANCELED))     # releases the other 60
    assert (h.pos()["qty"], h.pos()["open_buy"]) == (40.0, 100.0)
    h.fill(fill(b["order_id"], 0.0, 0.0, status=FILL_REJECTED))
    h.fill(fill(c["order_id"], 0.0, 0.0, status=FILL_REJECTED, side=SELL))
    p = h.pos()
    assert (p["qty"], p["open_buy"], p["open_sell"], p["fills"]) == (40.0, 0.0, 0.0, 1)
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
    risk = mem.build_stage("risk")
    mem.rings["intent"].put(np.concatenate([intent(qty=10.0) for _ in range(5)]))
    assert risk.do_work(0) == 2
    assert risk.do_work(0) == 0                                      # order ring full
    assert risk.counter("intents_in") == 2
    orders = drain_ring(mem.rings["order"])
    mem.rings["fill"].put(np.concatenate([fill(i, 10.0, 5.0) for i in orders["order_id"]]))
    assert risk.do_work(0) == 4                                      # 2 fills, then 2 intents
    assert risk.counter("fills_in") == 2 and risk.counter("orders_out") == 4
    assert mem.tables["positions"].read(0)["qty"] == 20.0


def test_warm_up_touches_no_shared_state(engine):
    mem = engine()
    risk = mem.build_stage("risk")
    snap = ({n: r.ctl.copy() for n, r in mem.rings.items()}, mem.stats.copy(),
            mem.tables["positions"].rows.copy(), mem.control.copy())
    risk.warm_up()
    assert all(np.array_equal(mem.rings[n].ctl, c) for n, c in snap[0].items())
    assert np.array_equal(mem.stats, snap[1]) and np.array_equal(mem.tables["positions"].rows, snap[2])
    assert np.array_equal(mem.control, snap[3]) and int(risk.st[0]) == 1


@pytest.mark.parametrize("key, value", [("max_order_qty", 0), ("max_position", -1),
                                        ("open_orders", 1000), ("open_orders", 1), ("batch", 0),
                                        ("max_qty", 5)])
def test_bad_params_name_the_key(engine, key, value):
    with pytest.raises(ValueError, match=rf"stages\.risk\.params\.{key}"):
        engine({f"stages.risk.params.{key}": value}).build_stage("risk")
