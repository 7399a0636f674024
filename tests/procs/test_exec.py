"""ExecStage: the router (state machine, cancels, replaces, rate limiter, retries) over the sim venue.

The test plays risk (puts ORDERs, polls FILL reports) and the book (writes the ``tops``
table); ``now`` is the injected clock. ``Venue``, ``order`` and the constants are shared with
``test_sim_venue.py``. The venue's queue model is in test_sim_venue.py.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from layouts.orders import (
    ACTION_CANCEL, ACTION_REPLACE, BUY, FILL_ACCEPTED, FILL_CANCEL_REJECTED, FILL_CANCELED,
    FILL_EXPIRED, FILL_FULL, FILL_REJECTED, FILL_REPLACED, LIQ_MAKER, LIQ_TAKER,
    ORDER, ORDER_LIMIT, ORDER_MARKET, SELL, TIF_DAY, TIF_GTC,
)
from procs.exec_orders import ACCEPTED, NEW, PENDING_CANCEL, SUBMITTED
from procs.sim_venue import (
    REASON_BAD_ORDER, REASON_CANCELED, REASON_DAY_EXPIRED, REASON_DUPLICATE_ID, REASON_NO_BOOK,
    REASON_NONE, REASON_REPLACE_FAILED, REASON_RETRIES_EXHAUSTED, REASON_SESSION_CLOSED,
    REASON_UNKNOWN_ORDER,
)
from pyrt_shm.wiring import WiringError

US = 1_000
MS = 1_000_000
SEC = 1_000_000_000
T0 = 10 * SEC
SEED = 4             #: the sim venue's seed that makes the first attempts of order 7 fail


def order(order_id, sym=0, side=BUY, qty=100.0, limit_px=0.0, **kw):
    r = np.zeros(1, ORDER)
    r["order_id"], r["sym"], r["side"], r["qty"] = order_id, sym, side, qty
    r["order_type"] = ORDER_LIMIT if limit_px else ORDER_MARKET
    r["limit_px"], r["feed_ns"], r["sent_ns"] = limit_px, 1000 + order_id, 2000 + order_id
    r["tif"] = TIF_DAY
    for k, v in kw.items():
        r[k] = v
    return r


def cancel(order_id, sym=0, side=BUY):
    return order(order_id, sym=sym, side=side, action=ACTION_CANCEL)


def replace(new_id, orig_id, qty, limit_px, sym=0, side=BUY, **kw):
    return order(new_id, sym=sym, side=side, qty=qty, limit_px=limit_px, action=ACTION_REPLACE,
                 orig_order_id=orig_id, **kw)


class Venue:
    """Exec over private memory with risk built (it tags the order ring) but never run."""

    def __init__(self, engine, drain_ring, **params):
        self.mem = engine({f"stages.exec.params.{k}": v for k, v in params.items()})
        self.book(0, 99.0, 101.0, 100.0, 100.0)
        self.mem.build_stage("risk")
        self.ex = self.mem.build_stage("exec")
        self.drain = drain_ring
        self.now = T0

    def book(self, sym, bid, ask, bid_size=100.0, ask_size=100.0):
        self.mem.tables["tops"].write(sym, sym=sym, valid=1, bid=bid, ask=ask, bid_size=bid_size,
                                      ask_size=ask_size)

    def run(self, now=None):
        if now is not None:
            self.now = now
        n = 0
        while self.ex.do_work(self.now):
            n += 1
            assert n < 10_000
        return self.drain(self.mem.rings["fill"])

    def send(self, *orders, now=None):
        self.mem.rings["order"].put(np.concatenate(orders))
        return self.run(now)

    def state(self, oid):
        return int(self.ex.eo[oid & (len(self.ex.eo) - 1)]["state"])

    def c(self):
        return {k: v for k, v in self.ex.counter_values().items() if v}

    def vpos(self, sym=0):
        return self.mem.tables["venue_positions"].read(sym)


@pytest.fixture
def venue(engine, drain_ring):
    def make(**params):
        return Venue(engine, drain_ring, **params)
    return make


def test_market_and_marketable_limit_orders_fill_at_the_touch(venue):
    v = venue()
    f = v.send(order(1, side=BUY), order(2, side=SELL, qty=30.0), order(3, limit_px=101.0),
               order(4, limit_px=105.0), order(5, side=SELL, limit_px=99.0),
               order(6, side=SELL, limit_px=90.0))
    assert f["order_id"].tolist() == [1, 2, 3, 4, 5, 6]
    assert f["status"].tolist() == [FILL_FULL] * 6 and f["reason"].tolist() == [REASON_NONE] * 6
    assert f["price"].tolist() == [101.0, 99.0, 101.0, 101.0, 99.0, 99.0]
    assert f["qty"].tolist() == [100.0, 30.0, 100.0, 100.0, 100.0, 100.0]
    assert f["fee"].tolist() == pytest.approx([0.5, 0.15, 0.5, 0.5, 0.5, 0.5])   # 0.005 / share
    assert f["fill_id"].tolist() == [1, 2, 3, 4, 5, 6] and np.all(f["leaves_qty"] == 0)
    assert f["side"].tolist() == [BUY, SELL, BUY, BUY, SELL, SELL]
    assert f["liquidity"].tolist() == [LIQ_TAKER] * 6 and f["attempts"].tolist() == [1] * 6
    assert f["feed_ns"].tolist() == [1001, 1002, 1003, 1004, 1005, 1006] and np.all(f["sent_ns"] > 0)
    assert np.all(f["venue_ns"] == T0)
    vp = v.vpos()
    assert (vp["qty"], vp["bought"], vp["sold"], vp["fills"]) == (70.0, 300.0, 230.0, 6)
    assert vp["fees"] == pytest.approx(2.65)
    h = {n: v.mem.hists[v.mem.hist_names.index(f"exec.{n}")]["total"] for n in v.ex.HISTOGRAMS}
    assert h == {"latency": 6, "tick_to_order": 6, "handoff": 6}
    assert v.c() == {"orders_in": 6, "fills_out": 6, "executions": 6, "orders_done": 6}


def test_rejects_by_reason_and_every_order_gets_one_terminal_report(venue):
    v = venue(fee_per_share=0.01)
    f = v.send(order(3, sym=1),                             # no book for symbol 1
               order(4, sym=9),                             # unknown symbol: bad order
               order(5, qty=0.0), order(6, side=0), order(7, qty=math.nan),
               order(8, limit_px=math.inf), order(9, order_type=5), order(10, tif=9),
               order(11, qty=7.0))                          # fine
    # exec's own rejects come back at once, the venue's after it has seen the order
    assert f["order_id"].tolist() == [4, 5, 6, 7, 8, 9, 10, 3, 11]
    assert f["fill_id"].tolist() == list(range(1, 10))
    f = np.sort(f, order="order_id")
    assert f["order_id"].tolist() == list(range(3, 12))
    assert f["reason"].tolist() == [REASON_NO_BOOK] + [REASON_BAD_ORDER] * 7 + [REASON_NONE]
    assert f["status"].tolist() == [FILL_REJECTED] * 8 + [FILL_FULL]
    assert np.all(f["qty"][:8] == 0) and np.all(f["fee"][:8] == 0)
    assert f["fee"][8] == pytest.approx(0.07)
    assert v.c() == {"orders_in": 9, "fills_out": 9, "executions": 1, "orders_done": 9, "rejected": 8,
                     "rejected_no_book": 1, "bad_order": 7}


def test_duplicate_and_non_increasing_order_ids_are_rejected(venue):
    v = venue()
    f = v.send(order(5), order(5), order(3), order(6), order(6, sym=9), order(6), order(7))
    # exec's rejects first (at intake), then the venue's fills
    assert list(zip(f["order_id"].tolist(), f["reason"].tolist())) == \
        [(5, REASON_DUPLICATE_ID), (3, REASON_DUPLICATE_ID), (6, REASON_DUPLICATE_ID),
         (6, REASON_DUPLICATE_ID), (5, REASON_NONE), (6, REASON_NONE), (7, REASON_NONE)]
    assert v.ex.counter("duplicate_order_id") == 4
    assert v.vpos()["fills"] == 3


def test_resting_limit_is_acknowledged_then_fills_when_the_market_comes(venue):
    v = venue()
    (a,) = v.send(order(1, limit_px=100.0, qty=50.0))
    assert (a["status"], a["leaves_qty"], a["qty"]) == (FILL_ACCEPTED, 50.0, 0.0)
    assert v.state(1) == ACCEPTED and v.run() .size == 0
    v.book(0, 99.0, 100.0)                                   # the ask comes down to our bid
    (f,) = v.run()
    assert (f["status"], f["qty"], f["price"], f["liquidity"]) == (FILL_FULL, 50.0, 100.0, LIQ_MAKER)


def test_cancel_paths(venue):
    v = venue(rate_limit_per_sec=1.0)
    out = v.send(order(1, limit_px=95.0), order(2, limit_px=95.0))      # 2 is held by the limiter
    assert out["order_id"].tolist() == [1] and v.state(2) == NEW
    f = v.send(cancel(2))                                    # never left exec: canceled at once
    assert (f["order_id"][0], f["status"][0], f["reason"][0]) == (2, FILL_CANCELED, REASON_CANCELED)
    f = v.send(cancel(1))                                    # at the venue: pending, then canceled
    assert (f["status"][0], f["leaves_qty"][0], f["qty"][0]) == (FILL_CANCELED, 0.0, 0.0)
    f = v.send(cancel(1), cancel(77))                        # too late / never known
    assert f["status"].tolist() == [FILL_CANCEL_REJECTED] * 2
    assert f["reason"].tolist() == [REASON_UNKNOWN_ORDER] * 2
    c = v.c()
    assert (c["cancels_in"], c["cancel_rejected"], c["orders_done"], c["throttled"]) == (4, 2, 2, 1)


def test_cancel_in_flight_races_a_fill(venue):
    v = venue(latency_us=100.0)
    v.send(order(1, limit_px=100.0, qty=10.0))
    v.run(T0 + 100 * US)                                     # acknowledged, resting
    v.book(0, 99.0, 100.0)                                   # fills at once...
    v.send(cancel(1), now=T0 + 110 * US)                     # ...while the cancel is on its way
    assert v.state(1) != PENDING_CANCEL and v.ex.eo[1]["live"] == 0
    f = v.run(T0 + 210 * US)
    assert f["status"].tolist() == [FILL_CANCEL_REJECTED] and f["reason"][0] == REASON_UNKNOWN_ORDER


def test_replace_moves_a_resting_order(venue):
    v = venue()
    v.send(order(1, limit_px=95.0, tif=TIF_GTC))
    f = v.send(replace(2, 1, 60.0, 96.0))
    assert [(r["order_id"], r["status"]) for r in f] == [(1, FILL_REPLACED), (2, FILL_ACCEPTED)]
    assert f[0]["replaced_by"] == 2 and f[0]["leaves_qty"] == 0.0 and f[1]["leaves_qty"] == 60.0
    assert v.mem.rings and v.ex.eo[2]["qty"] == 60.0 and v.ex.venue.vo[2]["px"] == 96.0
    f = v.send(replace(3, 1, 10.0, 97.0))                    # 1 is gone: refused here
    assert (f["order_id"][0], f["status"][0], f["reason"][0]) == (3, FILL_REJECTED, REASON_REPLACE_FAILED)
    f = v.send(replace(4, 2, 60.0, 102.0))                   # marketable replacement fills
    assert [(r["order_id"], r["status"]) for r in f] == [(2, FILL_REPLACED), (4, FILL_FULL)]
    assert v.c()["replaces_in"] == 3 and v.c()["orders_done"] == 4


def test_replace_refused_at_the_venue_restores_the_original(venue):
    v = venue(latency_us=50.0)
    v.send(order(1, limit_px=95.0, qty=10.0), now=T0)
    v.run(T0 + 50 * US)
    v.send(replace(2, 1, 10.0, 96.0), now=T0 + 60 * US)      # in flight...
    v.mem.tables["tops"].write(0, valid=0)                   # ...and the book goes away
    f = v.run(T0 + 200 * US)
    assert [(r["order_id"], r["status"]) for r in f] == [(2, FILL_REJECTED), (1, FILL_CANCEL_REJECTED)]
    assert f[0]["reason"] == REASON_NO_BOOK and v.state(1) == ACCEPTED


def test_latency_delays_the_venue(venue):
    v = venue(latency_us=250.0)
    assert v.send(order(1)).size == 0 and v.state(1) == SUBMITTED
    assert v.run(T0 + 249 * US).size == 0
    (f,) = v.run(T0 + 250 * US)
    assert f["status"] == FILL_FULL and f["venue_ns"] == T0 + 250 * US


def test_rate_limiter_per_venue(venue):
    v = venue(rate_limit_per_sec=2.0)
    assert v.send(*[order(i, qty=1.0) for i in (1, 2, 3, 4)]).size == 2      # burst of 2
    assert v.run(T0 + SEC // 4).size == 0                                    # half a token
    assert v.run(T0 + SEC // 2)["order_id"].tolist() == [3]
    assert v.run(T0 + SEC)["order_id"].tolist() == [4]
    assert v.c()["throttled"] == 2


def test_retries_with_exponential_backoff_then_give_up(venue):
    v = venue(error_rate=1.0, max_retries=3, backoff_ms=1.0, jitter=0.0)
    assert v.send(order(1)).size == 0
    times = [T0]
    for delay in (1 * MS, 2 * MS, 4 * MS):                    # 1, 2, 4 ms: doubling
        t = times[-1] + delay
        assert v.run(t - 1).size == 0 and v.state(1) == NEW  # waiting out the backoff
        out = v.run(t)
        times.append(t)
    (f,) = out
    assert (f["status"], f["reason"], f["attempts"]) == (FILL_REJECTED, REASON_RETRIES_EXHAUSTED, 4)
    c = v.c()
    assert (c["venue_errors"], c["retries"], c["retries_exhausted"]) == (4, 3, 1)
    assert v.ex.venue.vs[0]["arrivals"] == 0                 # the venue never took it


def test_backoff_is_capped_and_jittered_and_the_id_is_stable(venue):
    v = venue(error_rate=0.5, max_retries=50, backoff_ms=1.0, backoff_cap_ms=4.0, jitter=0.5, seed=SEED)
    out, t, tries = v.send(order(7)), T0, []
    while out.size == 0:
        o = v.ex.eo[7]
        if o["state"] == NEW and int(o["attempts"]) > len(tries):      # a retry set up at ``t``
            delay = int(o["next_try_ns"]) - t
            b = min(4 * MS, MS * 2 ** (int(o["attempts"]) - 1))
            assert b // 2 <= delay <= b                      # equal jitter in [b/2, b], capped
            tries.append(delay)
        t += 50 * US
        out = v.run(t)
        assert t < T0 + SEC
    assert out["order_id"].tolist() == [7] and out["status"][0] == FILL_FULL
    assert out["attempts"][0] == len(tries) + 1 >= 4         # one id, every attempt
    assert v.ex.venue.vs[0]["arrivals"] == 1 and v.c()["retries"] == len(tries)


def test_non_retryable_errors_are_not_retried(venue):
    v = venue(max_retries=5)
    f = v.send(order(1, sym=2))                              # no book: final at once
    assert (f["status"][0], f["attempts"][0]) == (FILL_REJECTED, 1)
    assert "retries" not in v.c()


def test_session_close_expires_day_orders_only(venue):
    v = venue(session_close_s=1.0)
    v.send(order(1, limit_px=90.0, tif=TIF_DAY), order(2, limit_px=91.0, tif=TIF_GTC), now=T0)
    assert v.run(T0 + SEC - 1).size == 0
    f = v.run(T0 + SEC)
    assert (f["order_id"].tolist(), f["status"].tolist(), f["reason"].tolist()) == \
        ([1], [FILL_EXPIRED], [REASON_DAY_EXPIRED])
    f = v.send(order(3))
    assert (f["status"][0], f["reason"][0]) == (FILL_REJECTED, REASON_SESSION_CLOSED)


def test_backpressure_consumes_no_more_orders_than_report_slots(engine, drain_ring):
    mem = engine({"rings.fill.capacity": 4})
    mem.tables["tops"].write(0, valid=1, bid=1.0, ask=2.0, bid_size=1e6, ask_size=1e6)
    mem.build_stage("risk")
    ex = mem.build_stage("exec")
    mem.rings["order"].put(np.concatenate([order(i) for i in range(1, 11)]))
    while ex.do_work(T0):
        pass
    # 4 orders read (one report slot each), 3 answered: a new order may need 2 slots
    assert ex.counter("orders_in") == 4 and ex.counter("fills_out") == 3
    got = [drain_ring(mem.rings["fill"])]
    for _ in range(100):
        while ex.do_work(T0):
            pass
        got.append(drain_ring(mem.rings["fill"]))
        assert len(got[-1]) <= 4
    got = np.concatenate(got)
    assert got["order_id"].tolist() == list(range(1, 11)) and ex.counter("fills_out") == 10


def test_orders_only_from_risk(engine):
    mem = engine()
    ex = mem.build_stage("exec")                             # risk was never built: no tag
    with pytest.raises(WiringError, match=r"reads orders only from the risk stage"):
        ex.warm_up()


def test_warm_up_touches_no_shared_state(venue):
    v = venue()
    mem, ex = v.mem, v.ex
    snap = {n: r.ctl.copy() for n, r in mem.rings.items()}, mem.stats.copy(), \
        mem.tables["venue_positions"].rows.copy()
    ex.warm_up()
    assert all(np.array_equal(mem.rings[n].ctl, c) for n, c in snap[0].items())
    assert np.array_equal(mem.stats, snap[1])
    assert np.array_equal(mem.tables["venue_positions"].rows, snap[2])
    assert ex.est[0]["next_fill_id"] == 1 and ex.venue.vs[0]["rq_tail"] == 0


@pytest.mark.parametrize("key, value", [("fee_per_share", -0.1), ("fee_per_share", "0"),
                                        ("batch", 0), ("venue", "alpaca"), ("latency_model", "gamma"),
                                        ("liquidity", "deep"), ("error_rate", 1.5), ("jitter", 2.0),
                                        ("open_orders", 100), ("bogus", 1)])
def test_bad_params_name_the_key(engine, key, value):
    with pytest.raises(ValueError, match=rf"stages\.exec\.params\.{key}"):
        engine({f"stages.exec.params.{key}": value}).build_stage("exec")
