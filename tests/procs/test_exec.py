"""ExecStage (sim venue): fills at the touch, rejects by reason, fees, duplicate ids.

The test plays risk (puts ORDERs, polls FILLs) and the book (writes the ``tops`` table).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from layouts.orders import BUY, FILL_FULL, FILL_REJECTED, ORDER, ORDER_LIMIT, ORDER_MARKET, SELL
from procs.exec import (
    REASON_BAD_ORDER, REASON_DUPLICATE_ID, REASON_NO_BOOK, REASON_NONE, REASON_NOT_MARKETABLE,
)


def order(order_id, sym=0, side=BUY, qty=100.0, limit_px=0.0, **kw):
    r = np.zeros(1, ORDER)
    r["order_id"], r["sym"], r["side"], r["qty"] = order_id, sym, side, qty
    r["order_type"] = ORDER_LIMIT if limit_px else ORDER_MARKET
    r["limit_px"], r["feed_ns"], r["sent_ns"] = limit_px, 1000 + order_id, 2000 + order_id
    for k, v in kw.items():
        r[k] = v
    return r


@pytest.fixture
def venue(engine, drain_ring):
    def make(**params):
        mem = engine({f"stages.exec.params.{k}": v for k, v in params.items()})
        mem.tables["tops"].write(0, sym=0, valid=1, bid=99.0, ask=101.0, bid_size=100.0, ask_size=100.0)
        ex = mem.build_stage("exec")

        def send(*orders):
            mem.rings["order"].put(np.concatenate(orders))
            while ex.do_work(0):
                pass
            return drain_ring(mem.rings["fill"])
        return mem, ex, send
    return make


def test_market_and_marketable_limit_orders_fill_at_the_touch(venue):
    mem, ex, send = venue()
    f = send(order(1, side=BUY), order(2, side=SELL, qty=30.0), order(3, limit_px=101.0),
             order(4, limit_px=105.0), order(5, side=SELL, limit_px=99.0),
             order(6, side=SELL, limit_px=90.0))
    assert f["order_id"].tolist() == [1, 2, 3, 4, 5, 6]
    assert f["status"].tolist() == [FILL_FULL] * 6 and f["reason"].tolist() == [REASON_NONE] * 6
    assert f["price"].tolist() == [101.0, 99.0, 101.0, 101.0, 99.0, 99.0]
    assert f["qty"].tolist() == [100.0, 30.0, 100.0, 100.0, 100.0, 100.0]
    assert f["fee"].tolist() == pytest.approx([0.5, 0.15, 0.5, 0.5, 0.5, 0.5])   # 0.005 / share
    assert f["fill_id"].tolist() == [1, 2, 3, 4, 5, 6] and np.all(f["leaves_qty"] == 0)
    assert f["side"].tolist() == [BUY, SELL, BUY, BUY, SELL, SELL]
    assert f["feed_ns"].tolist() == [1001, 1002, 1003, 1004, 1005, 1006] and np.all(f["sent_ns"] > 0)
    vp = mem.tables["venue_positions"].read(0)
    assert (vp["qty"], vp["bought"], vp["sold"], vp["fills"]) == (70.0, 300.0, 230.0, 6)
    assert vp["fees"] == pytest.approx(2.65)
    assert mem.hists[ex.h_lat]["total"] == 6 and mem.hists[ex.h_t2o]["total"] == 6


def test_rejects_by_reason_and_every_order_gets_one_report(venue):
    mem, ex, send = venue(fee_per_share=0.01)
    f = send(order(1, limit_px=100.0),                    # buy below the ask: not marketable
             order(2, side=SELL, limit_px=99.5),          # sell above the bid: not marketable
             order(3, sym=1),                             # no book for symbol 1
             order(4, sym=9),                             # unknown symbol: bad order
             order(5, qty=0.0), order(6, side=0), order(7, qty=math.nan),
             order(8, limit_px=math.inf),
             order(9, order_type=5),
             order(10, qty=7.0))                          # fine
    assert f["order_id"].tolist() == list(range(1, 11))
    assert f["reason"].tolist() == [REASON_NOT_MARKETABLE] * 2 + [REASON_NO_BOOK] + \
        [REASON_BAD_ORDER] * 6 + [REASON_NONE]
    assert f["status"].tolist() == [FILL_REJECTED] * 9 + [FILL_FULL]
    assert np.all(f["qty"][:9] == 0) and np.all(f["fee"][:9] == 0)
    assert f["fee"][9] == pytest.approx(0.07)
    assert f["fill_id"].tolist() == list(range(1, 11))
    assert ex.counter_values() == {"orders_in": 10, "fills_out": 10, "rejected_no_book": 1,
                                   "rejected_not_marketable": 2, "duplicate_order_id": 0,
                                   "bad_order": 6}


def test_invalid_top_is_no_book(venue):
    mem, ex, send = venue()
    mem.tables["tops"].write(0, valid=0)
    assert send(order(1))["reason"].tolist() == [REASON_NO_BOOK]


def test_duplicate_and_non_increasing_order_ids_are_rejected(venue):
    mem, ex, send = venue()
    f = send(order(5), order(5), order(3), order(6), order(6, sym=9), order(6), order(7))
    assert f["reason"].tolist() == [REASON_NONE, REASON_DUPLICATE_ID, REASON_DUPLICATE_ID,
                                    REASON_NONE, REASON_DUPLICATE_ID, REASON_DUPLICATE_ID,
                                    REASON_NONE]
    assert ex.counter("duplicate_order_id") == 4
    assert mem.tables["venue_positions"].read(0)["fills"] == 3


def test_backpressure_consumes_no_more_orders_than_report_slots(engine, drain_ring):
    mem = engine({"rings.fill.capacity": 4})
    mem.tables["tops"].write(0, valid=1, bid=1.0, ask=2.0)
    ex = mem.build_stage("exec")
    mem.rings["order"].put(np.concatenate([order(i) for i in range(1, 11)]))
    assert ex.do_work(0) == 4 and ex.do_work(0) == 0
    got = [drain_ring(mem.rings["fill"])]
    while ex.do_work(0):
        got.append(drain_ring(mem.rings["fill"]))
    got = np.concatenate(got)
    assert got["order_id"].tolist() == list(range(1, 11)) and ex.counter("fills_out") == 10


def test_warm_up_touches_no_shared_state(venue):
    mem, ex, _ = venue()
    snap = {n: r.ctl.copy() for n, r in mem.rings.items()}, mem.stats.copy(), \
        mem.tables["venue_positions"].rows.copy()
    ex.warm_up()
    assert all(np.array_equal(mem.rings[n].ctl, c) for n, c in snap[0].items())
    assert np.array_equal(mem.stats, snap[1])
    assert np.array_equal(mem.tables["venue_positions"].rows, snap[2])
    assert ex.st.tolist() == [0, 1]


@pytest.mark.parametrize("key, value", [("fee_per_share", -0.1), ("fee_per_share", "0"),
                                        ("batch", 0), ("venue", "sim")])
def test_bad_params_name_the_key(engine, key, value):
    with pytest.raises(ValueError, match=rf"stages\.exec\.params\.{key}"):
        engine({f"stages.exec.params.{key}": value}).build_stage("exec")
