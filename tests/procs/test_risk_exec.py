"""Risk and exec together over the sim venue (the test plays signal and the book).

The kill switch cancels resting orders end to end; an algo parent trades through the venue;
positions in risk equal the venue's record.
"""
from __future__ import annotations

import numpy as np
import pytest

from layouts.orders import ALGO_ICEBERG, ALGO_TWAP, BUY, ORDER_LIMIT, TIF_GTC
from test_risk import intent, limits_file

SEC = 1_000_000_000
T0 = 50 * SEC


class Pair:
    def __init__(self, engine, drain_ring, limits=None, **exec_params):
        over = {f"stages.exec.params.{k}": v for k, v in exec_params.items()}
        if limits:
            over["stages.risk.params.limits"] = limits
        self.mem = engine(over)
        for s in range(4):
            self.book(s, 99.0, 101.0)
        self.risk = self.mem.build_stage("risk")
        self.ex = self.mem.build_stage("exec")
        self.ex.warm_up()                                  # checks the wiring too
        self.drain = drain_ring
        self.now = T0

    def book(self, sym, bid, ask, bid_size=1000.0, ask_size=1000.0):
        self.mem.tables["tops"].write(sym, sym=sym, valid=1, bid=bid, ask=ask, bid_size=bid_size,
                                      ask_size=ask_size)

    def run(self, now=None):
        if now is not None:
            self.now = now
        for _ in range(10_000):
            if not (self.risk.do_work(self.now) + self.ex.do_work(self.now)):
                return
        raise AssertionError("still busy")

    def send(self, *intents, now=None):
        self.mem.rings["intent"].put(np.concatenate(intents))
        self.run(now)

    def check_positions(self):
        for s in range(4):
            p, v = self.mem.tables["positions"].read(s), self.mem.tables["venue_positions"].read(s)
            assert (p["qty"], p["bought"], p["sold"], p["fills"]) == (v["qty"], v["bought"], v["sold"], v["fills"])
            assert p["fees"] == pytest.approx(v["fees"])


@pytest.fixture
def pair(engine, drain_ring):
    def make(**kw):
        return Pair(engine, drain_ring, **kw)
    return make


def test_kill_switch_cancels_resting_orders_end_to_end(pair):
    x = pair()
    x.send(*[intent(sym=s % 4, qty=10.0, order_type=ORDER_LIMIT, limit_px=95.0 + s, tif=TIF_GTC)
             for s in range(4)], intent(sym=1, qty=10.0))
    st = x.mem.tables["risk_state"].read(0)
    assert st["open_orders"] == 4                                  # the market order filled
    x.mem.control["kill_switch"] = 1
    x.run(T0 + 1)
    st = x.mem.tables["risk_state"].read(0)
    assert st["open_orders"] == 0 and st["kill_seen_ns"] == T0 + 1
    rc, ec = x.risk.counter_values(), x.ex.counter_values()
    assert rc["cancels_out"] == ec["cancels_in"] == 4 and ec["orders_done"] == ec["orders_in"] == 5
    assert all(x.mem.tables["positions"].read(s)["open_buy"] == 0 for s in range(4))
    x.check_positions()


def test_twap_through_the_venue(pair, tmp_path):
    x = pair(limits=limits_file(tmp_path, "[orders]\nmax_order_qty = 5000.0\nmax_order_notional = 1e7\n"
                                          "[positions]\nmax_position = 5000.0\nmax_concentration = 1.0\n"))
    x.send(intent(qty=900.0, algo=ALGO_TWAP, slices=3, duration_ns=3 * SEC), now=T0)
    for k in range(1, 4):
        x.run(T0 + k * SEC)
    p = x.mem.tables["positions"].read(0)
    assert (p["qty"], p["fills"]) == (900.0, 3) and x.risk.counter("algo_done") == 1
    x.check_positions()


def test_iceberg_rests_and_fills_through_the_queue(pair, tmp_path):
    x = pair(limits=limits_file(tmp_path, "[positions]\nmax_concentration = 1.0\n"))
    x.book(0, 99.0, 101.0, bid_size=200.0)
    x.send(intent(side=BUY, qty=300.0, algo=ALGO_ICEBERG, display_qty=100.0, order_type=ORDER_LIMIT,
                  limit_px=99.0))
    assert x.ex.venue.vo[1]["queue"] == 200.0      # the first child waits behind 200
    x.book(0, 99.0, 101.0, bid_size=50.0)          # 150 of them traded
    x.run()
    assert x.ex.venue.vo[1]["queue"] == 50.0 and x.mem.tables["positions"].read(0)["qty"] == 0.0
    x.book(0, 98.0, 99.0)                          # offered at our bid: the child fills, and the
    x.run()                                        # next two children are marketable and fill
    p = x.mem.tables["positions"].read(0)
    assert p["qty"] == 300.0 and x.risk.counter("algo_children") == 3
    x.check_positions()
