"""The sim venue's models against hand-worked cases: queue position, partial fills, liquidity,
TIF, slippage, commission, latency.

Book moves are written to the ``tops`` table as the book stage would; the venue looks at a
symbol's resting orders again whenever its row changes.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from layouts.orders import (
    BUY, FILL_ACCEPTED, FILL_CANCELED, FILL_FULL, FILL_PARTIAL, LIQ_MAKER, LIQ_TAKER, SELL,
    TIF_FOK, TIF_GTC, TIF_IOC,
)
from procs.prng import new_state
from procs.sim_venue import (
    REASON_FOK_UNFILLED, REASON_IOC_REMAINDER, REASON_NOT_MARKETABLE, REQUEST, VENUE_STATE,
    latency_ns, submit, venue_params,
)
from test_exec import Venue, order

BID, ASK = 99.0, 101.0


@pytest.fixture
def venue(engine, drain_ring):
    def make(**params):
        params.setdefault("fee_per_share", 0.0)
        return Venue(engine, drain_ring, **params)
    return make


def fills(out):
    return [(int(r["order_id"]), int(r["status"]), float(r["qty"]), float(r["price"]), float(r["leaves_qty"]))
            for r in out]


def test_join_the_bid_behind_the_displayed_size_then_partial_fills(venue):
    v = venue()
    v.book(0, BID, ASK, bid_size=300.0)
    (a,) = v.send(order(1, limit_px=BID, qty=100.0, tif=TIF_GTC))
    assert a["status"] == FILL_ACCEPTED
    vo = v.ex.venue.vo[1]
    assert (vo["queue"], vo["last_size"]) == (300.0, 300.0)         # behind the 300 displayed
    v.book(0, BID, ASK, bid_size=250.0)                              # 50 executed ahead of us
    assert v.run().size == 0 and v.ex.venue.vo[1]["queue"] == 250.0
    v.book(0, BID, ASK, bid_size=400.0)                              # 150 joined behind us
    assert v.run().size == 0 and v.ex.venue.vo[1]["queue"] == 250.0
    v.book(0, BID, ASK, bid_size=100.0)                              # 300 left: 250 ahead, 50 of us
    assert fills(v.run()) == [(1, FILL_PARTIAL, 50.0, BID, 50.0)]
    v.book(0, BID, ASK, bid_size=60.0)                               # 40 more of us
    assert fills(v.run()) == [(1, FILL_PARTIAL, 40.0, BID, 10.0)]
    v.book(0, 98.99, ASK, bid_size=500.0)                            # the level emptied: the last 10
    (f,) = v.run()
    assert fills([f]) == [(1, FILL_FULL, 10.0, BID, 0.0)] and f["liquidity"] == LIQ_MAKER
    assert v.vpos()["bought"] == 100.0 and v.vpos()["fills"] == 3


def test_queue_ahead_is_consumed_before_the_order(venue):
    v = venue()
    v.book(0, BID, ASK, bid_size=300.0)
    v.send(order(1, limit_px=BID, qty=100.0))
    v.book(0, BID, ASK, bid_size=100.0)                              # 200 of the 300 ahead
    v.book(0, BID, ASK, bid_size=100.0)
    assert v.run().size == 0 and v.ex.venue.vo[1]["queue"] == 100.0
    v.book(0, 98.99, ASK)                                            # the other 100 ahead: level gone
    assert v.run().size == 0 and v.ex.venue.vo[1]["queue"] == 0.0   # we are next, nothing filled
    v.book(0, BID, ASK, bid_size=200.0)                              # others join behind us
    v.run()
    v.book(0, BID, ASK, bid_size=130.0)                              # 70 traded: ours
    assert fills(v.run()) == [(1, FILL_PARTIAL, 70.0, BID, 30.0)]


def test_an_improving_order_is_first_in_its_level(venue):
    v = venue()
    v.send(order(1, limit_px=99.5, qty=100.0))
    assert v.ex.venue.vo[1]["queue"] == 0.0
    v.book(0, 99.5, ASK, bid_size=200.0)                             # joined behind us
    assert v.run().size == 0
    v.book(0, 99.5, ASK, bid_size=150.0)
    assert fills(v.run()) == [(1, FILL_PARTIAL, 50.0, 99.5, 50.0)]


def test_behind_the_touch_the_queue_is_set_when_the_level_becomes_the_touch(venue):
    v = venue()
    v.send(order(1, limit_px=98.0, qty=100.0))
    assert v.ex.venue.vo[1]["level_known"] == 0
    v.book(0, 98.5, ASK)                                            # still behind
    v.run()
    assert v.ex.venue.vo[1]["level_known"] == 0
    v.book(0, 98.0, 98.5, bid_size=500.0)                           # our level is the touch now
    v.run()
    assert (v.ex.venue.vo[1]["level_known"], v.ex.venue.vo[1]["queue"]) == (1, 500.0)


def test_trade_through_fills_the_rest_at_the_limit(venue):
    v = venue()
    v.book(0, BID, ASK, bid_size=300.0)
    v.send(order(1, side=SELL, limit_px=ASK, qty=80.0))             # behind 100 on the ask
    v.book(0, 101.5, 102.0)                                         # the bid went through 101
    (f,) = v.run()
    assert fills([f]) == [(1, FILL_FULL, 80.0, ASK, 0.0)] and f["liquidity"] == LIQ_MAKER


def test_marketable_limit_takes_the_displayed_size_then_rests(venue):
    v = venue()
    v.book(0, BID, ASK, ask_size=200.0)
    out = v.send(order(1, limit_px=102.0, qty=500.0))
    assert fills(out) == [(1, FILL_PARTIAL, 200.0, ASK, 300.0)] and out["liquidity"][0] == LIQ_TAKER
    vo = v.ex.venue.vo[1]
    assert (vo["live"], vo["queue"], vo["px"]) == (1, 0.0, 102.0)  # rests at its limit, first
    v.book(0, BID, 102.0, ask_size=50.0)                            # offered at our price: crossed
    assert fills(v.run()) == [(1, FILL_FULL, 300.0, 102.0, 0.0)]


def test_market_order_larger_than_the_top(venue):
    v = venue()
    v.book(0, BID, ASK, ask_size=200.0)
    out = v.send(order(1, qty=500.0))
    assert fills(out) == [(1, FILL_PARTIAL, 200.0, ASK, 300.0), (1, FILL_CANCELED, 0.0, 0.0, 0.0)]
    assert out["reason"][1] == REASON_IOC_REMAINDER
    v2 = venue(liquidity="unlimited")
    v2.book(0, BID, ASK, ask_size=200.0)
    assert fills(v2.send(order(1, qty=500.0))) == [(1, FILL_FULL, 500.0, ASK, 0.0)]


def test_fok_and_ioc(venue):
    v = venue()
    v.book(0, BID, ASK, ask_size=200.0, bid_size=200.0)
    out = v.send(order(1, qty=500.0, tif=TIF_FOK), order(2, qty=200.0, tif=TIF_FOK),
                 order(3, side=SELL, limit_px=100.0, tif=TIF_IOC),      # not marketable
                 order(4, side=SELL, limit_px=98.0, qty=300.0, tif=TIF_IOC))
    assert fills(out) == [(1, FILL_CANCELED, 0.0, 0.0, 0.0), (2, FILL_FULL, 200.0, ASK, 0.0),
                          (3, FILL_CANCELED, 0.0, 0.0, 0.0), (4, FILL_PARTIAL, 200.0, BID, 100.0),
                          (4, FILL_CANCELED, 0.0, 0.0, 0.0)]
    assert out["reason"].tolist() == [REASON_FOK_UNFILLED, 0, REASON_NOT_MARKETABLE, 0, REASON_IOC_REMAINDER]
    assert v.vpos()["fills"] == 2


def test_slippage_and_commission(venue):
    v = venue(slippage_bps=10.0, fee_per_share=0.01, fee_bps=1.0)
    out = v.send(order(1, qty=100.0), order(2, side=SELL, qty=50.0))
    buy_px, sell_px = ASK * 1.001, BID * 0.999
    assert out["price"].tolist() == pytest.approx([buy_px, sell_px])
    assert out["fee"].tolist() == pytest.approx([0.01 * 100 + 1e-4 * 100 * buy_px,
                                                 0.01 * 50 + 1e-4 * 50 * sell_px])
    assert v.vpos()["fees"] == pytest.approx(out["fee"].sum())


def test_latency_models():
    rng = new_state(5)
    for model, kw, check in [
        ("constant", dict(latency_us=80.0), lambda x: np.all(x == 80_000)),
        ("uniform", dict(latency_us=50.0, latency_hi_us=150.0),
         lambda x: x.min() >= 50_000 and x.max() < 150_000 and abs(x.mean() - 100_000) < 2_000),
        ("exponential", dict(latency_us=100.0), lambda x: x.min() >= 0 and abs(x.mean() - 100_000) < 5_000),
        ("lognormal", dict(latency_us=100.0, latency_sigma=0.5),
         lambda x: abs(np.median(x) - 100_000) < 5_000 and abs(x.mean() - 100_000 * math.exp(0.125)) < 6_000),
    ]:
        vp = venue_params(model, **kw)
        x = np.array([latency_ns(vp[0], rng) for _ in range(20_000)])
        assert check(x), model


def test_requests_arrive_in_the_order_they_were_sent():
    vp = venue_params("uniform", latency_us=0.0, latency_hi_us=1000.0)
    vs, rq, rng = np.zeros(1, VENUE_STATE), np.zeros(64, REQUEST), new_state(1)
    for i in range(50):
        assert submit(vs, rq, vp, rng, 1_000 * i, 1, np.uint64(i + 1), np.uint64(0), 0, BUY, 0, 0, 1.0, 0.0)
    due = rq["due"][:50]
    assert np.all(np.diff(due) >= 0) and np.all(due >= 1_000 * np.arange(50))
    for _ in range(14):
        submit(vs, rq, vp, rng, 0, 1, np.uint64(1), np.uint64(0), 0, BUY, 0, 0, 1.0, 0.0)
    assert not submit(vs, rq, vp, rng, 0, 1, np.uint64(1), np.uint64(0), 0, BUY, 0, 0, 1.0, 0.0)  # link full


def _depth(v, sym=0, bids=(), asks=()):
    if "depth" not in v.mem.tables:
        pytest.skip("the book publishes no depth table in this build")
    n = v.mem.tables["depth"].rows.dtype["bid_px"].shape[0]
    f = {k: np.zeros(n) for k in ("bid_px", "bid_size", "ask_px", "ask_size")}
    for i, (px, sz) in enumerate(bids):
        f["bid_px"][i], f["bid_size"][i] = px, sz
    for i, (px, sz) in enumerate(asks):
        f["ask_px"][i], f["ask_size"][i] = px, sz
    v.mem.tables["depth"].write(sym, sym=sym, valid=1, n_bid=len(bids), n_ask=len(asks), **f)


ASKS = ((101.0, 100.0), (101.5, 200.0), (102.0, 300.0))
BIDS = ((99.0, 300.0), (98.5, 400.0))


def test_depth_walk_for_market_and_marketable_limit_orders(venue):
    v = venue()
    _depth(v, bids=BIDS, asks=ASKS)
    out = v.send(order(1, qty=250.0))                                # 100 @ 101 + 150 @ 101.5
    assert fills(out) == [(1, FILL_FULL, 250.0, pytest.approx((10100 + 15225) / 250), 0.0)]
    out = v.send(order(2, limit_px=101.5, qty=400.0))                # stops at its limit: 300
    assert fills(out) == [(2, FILL_PARTIAL, 300.0, pytest.approx((10100 + 20300) / 300), 100.0)]
    assert v.ex.venue.vo[2]["live"] == 1 and v.ex.venue.vo[2]["queue"] == 0.0
    out = v.send(order(3, qty=700.0, tif=TIF_FOK))                  # 600 shown in all: nothing
    assert fills(out) == [(3, FILL_CANCELED, 0.0, 0.0, 0.0)] and out["reason"][0] == REASON_FOK_UNFILLED


def test_stale_depth_is_ignored(venue):
    v = venue()
    _depth(v, bids=BIDS, asks=((100.5, 1000.0),))                   # its best ask is not the top's
    out = v.send(order(1, qty=250.0))                                # top only: 100 @ 101
    assert fills(out)[0] == (1, FILL_PARTIAL, 100.0, ASK, 150.0)


def test_behind_the_touch_queue_from_depth(venue):
    v = venue()
    _depth(v, bids=BIDS, asks=ASKS)
    v.send(order(1, limit_px=98.5, qty=50.0))
    vo = v.ex.venue.vo[1]
    assert (vo["level_known"], vo["queue"]) == (1, 400.0)           # behind the 400 at 98.5
    v.book(0, 98.5, 99.0, bid_size=150.0)                            # our level is the touch: 250 gone
    v.run()
    assert v.ex.venue.vo[1]["queue"] == 150.0
