"""Execution algorithms: TWAP / VWAP / iceberg schedules by hand, and their children in risk,
every one through the pre-trade checks."""
from __future__ import annotations

import pytest

from layouts.orders import (
    ACTION_CANCEL, ALGO_ICEBERG, ALGO_TWAP, ALGO_VWAP, BUY, FILL_CANCELED, FILL_PARTIAL,
    ORDER_LIMIT, ORDER_MARKET, SELL,
)
from procs.algos import iceberg_children, twap_schedule, vwap_schedule
from test_risk import Harness, fill, intent, limits_file

SEC = 1_000_000_000
T0 = 100 * SEC
BIG = {"orders": {"max_order_qty": 100000.0, "max_order_notional": 1e9},
       "positions": {"max_position": 100000.0, "max_concentration": 10.0,
                     "max_gross_exposure": 1e9, "max_net_exposure": 1e9}}


def toml(**sections) -> str:
    """BIG with ``sections`` merged in, as TOML."""
    merged = {k: dict(v) for k, v in BIG.items()}
    for sec, keys in sections.items():
        merged.setdefault(sec, {}).update(keys)
    return "".join(f"[{sec}]\n" + "".join(f"{k} = {v!r}\n" for k, v in keys.items())
                   for sec, keys in merged.items())

def test_twap_schedule_by_hand():
    assert twap_schedule(1000.0, 3, 0, 3 * SEC) == [(0, 333.0), (SEC, 333.0), (2 * SEC, 334.0)]
    assert twap_schedule(10.0, 4, 5, 100) == [(5, 2.0), (30, 3.0), (55, 2.0), (80, 3.0)]
    assert twap_schedule(7.0, 1, 0, 0) == [(0, 7.0)]


def test_vwap_schedule_by_hand():
    # weights 1, 2, 1: cumulative 1/4, 3/4, 1 -> 250, 750, 1000
    assert vwap_schedule(1000.0, [1, 2, 1], 0, 3 * SEC) == [(0, 250.0), (SEC, 500.0), (2 * SEC, 250.0)]
    # 0.16 + 0.11 ... : floor(101 * 0.16) = 16, floor(101 * 0.27) = 27 -> 11, ...
    s = vwap_schedule(101.0, [0.16, 0.11, 0.73], 0, 3)
    assert [q for _, q in s] == [16.0, 11.0, 74.0]
    with pytest.raises(ValueError, match="positive"):
        vwap_schedule(1.0, [1.0, 0.0], 0, 1)


def test_iceberg_children_by_hand():
    assert iceberg_children(1000.0, 300.0) == [300.0, 300.0, 300.0, 100.0]
    assert iceberg_children(200.0, 500.0) == [200.0]


@pytest.fixture
def h(engine, drain_ring, tmp_path):
    def make(limits=None, **params):
        return Harness(engine, drain_ring, limits=limits_file(tmp_path, toml(**(limits or {}))), **params)
    return make


def parent(qty, algo, side=BUY, **kw):
    return intent(qty=qty, algo=algo, side=side, **kw)


def accounting(c):
    return c.get("intents_in", 0) + c.get("algo_children", 0) + c.get("stop_loss", 0) \
        + c.get("trailing_stop", 0) == c.get("orders_out", 0) + c.get("rejected", 0) + c.get("algo_parents", 0)


def fill_all(x, orders, px=100.0):
    for o in orders:
        x.fill(fill(o["order_id"], o["qty"], px, side=o["side"], sym=o["sym"]))


def test_twap_children_on_schedule(h):
    x = h()
    first = x.send(parent(1000.0, ALGO_TWAP, slices=3, duration_ns=3 * SEC, tag=9), now=T0)
    assert first["qty"].tolist() == [333.0] and first["parent_id"].tolist() == [1]
    assert first["tag"][0] == 9 and first["order_type"][0] == ORDER_MARKET
    fill_all(x, first)
    assert x.run(T0 + SEC - 1).size == 0
    second = x.run(T0 + SEC)
    assert second["qty"].tolist() == [333.0]
    fill_all(x, second)
    third = x.run(T0 + 2 * SEC)
    assert third["qty"].tolist() == [334.0] and "algo_done" not in x.counters()
    fill_all(x, third)
    x.run(T0 + 3 * SEC)
    c = x.counters()
    assert (c["algo_parents"], c["algo_children"], c["algo_done"], c["orders_out"]) == (1, 3, 1, 3)
    assert x.pos()["qty"] == 1000.0 and x.state()["algo_active"] == 0 and accounting(c)
    assert first["intent_seq"][0] == second["intent_seq"][0] == third["intent_seq"][0]


def test_a_late_stage_sends_the_due_slices_as_one_child(h):
    x = h()
    x.send(parent(1000.0, ALGO_TWAP, slices=4, duration_ns=4 * SEC), now=T0)   # 250 at T0
    late = x.run(T0 + 3 * SEC)                                                 # slices 1, 2, 3 due
    assert late["qty"].tolist() == [750.0]


def test_children_rejected_by_the_checks_are_made_up_later(h):
    x = h({"orders": {"max_open_orders": 1}})
    (c1,) = x.send(parent(1000.0, ALGO_TWAP, slices=3, duration_ns=3 * SEC), now=T0)
    assert c1["qty"] == 333.0
    assert x.run(T0 + SEC).size == 0                          # c1 still open: rejected
    assert x.rejections() == {"rej_max_open_orders": 1}
    fill_all(x, [c1])
    (c3,) = x.run(T0 + 2 * SEC)
    assert c3["qty"] == 667.0                                  # target 1000 - 333 sent
    fill_all(x, [c3])
    x.run(T0 + 3 * SEC)
    c = x.counters()
    assert (c["algo_children"], c["orders_out"], c["rejected"], c["algo_done"]) == (3, 2, 1, 1)
    assert x.pos()["qty"] == 1000.0 and accounting(c)


def test_unfilled_child_quantity_is_made_up_by_the_next_slice(h):
    x = h()
    (c1,) = x.send(parent(900.0, ALGO_TWAP, slices=3, duration_ns=3 * SEC), now=T0)
    x.fill(fill(c1["order_id"], 100.0, 100.0, status=FILL_PARTIAL))
    x.fill(fill(c1["order_id"], 0.0, 0.0, status=FILL_CANCELED))          # 200 left unfilled
    (c2,) = x.run(T0 + SEC)
    assert c2["qty"] == 600.0 - 100.0                          # target 600, 100 done
    fill_all(x, [c2])
    (c3,) = x.run(T0 + 2 * SEC)
    assert c3["qty"] == 300.0
    fill_all(x, [c3])
    x.run(T0 + 3 * SEC)
    assert x.pos()["qty"] == 900.0 and x.counters()["algo_done"] == 1


def test_vwap_children_follow_the_profile(h):
    x = h(vwap_profile=[1.0, 2.0, 1.0])
    out = [x.send(parent(1000.0, ALGO_VWAP, duration_ns=3 * SEC), now=T0)]
    fill_all(x, out[-1])
    for t in (SEC, 2 * SEC):
        out.append(x.run(T0 + t))
        fill_all(x, out[-1])
    assert [o["qty"].tolist() for o in out] == [[250.0], [500.0], [250.0]]
    x.run(T0 + 3 * SEC)
    assert x.counters()["algo_done"] == 1


def test_iceberg_shows_one_child_at_a_time(h):
    x = h()
    out = x.send(parent(1000.0, ALGO_ICEBERG, side=SELL, display_qty=300.0, order_type=ORDER_LIMIT,
                        limit_px=100.5), now=T0)
    sizes = []
    for _ in range(10):
        if not len(out):
            break
        (o,) = out
        assert (o["order_type"], o["limit_px"], o["side"]) == (ORDER_LIMIT, 100.5, SELL)
        sizes.append(float(o["qty"]))
        assert x.run(T0 + 1).size == 0                         # nothing more while it works
        out = x.fill(fill(o["order_id"], o["qty"], 100.5, side=SELL), now=T0 + 2)
    assert sizes == [300.0, 300.0, 300.0, 100.0]
    assert x.pos()["qty"] == -1000.0 and x.counters()["algo_done"] == 1


def test_iceberg_child_rejection_waits_for_the_retry_delay(h):
    x = h({"orders": {"rate_per_sec": 1, "rate_per_min": 0}}, algo_retry_ms=50)
    (o,) = x.send(parent(600.0, ALGO_ICEBERG, display_qty=300.0, order_type=ORDER_LIMIT,
                         limit_px=100.0), now=T0)
    assert x.fill(fill(o["order_id"], 300.0, 100.0), now=T0).size == 0   # no token: rejected
    assert x.rejections() == {"rej_rate_per_sec": 1}
    assert x.run(T0 + 40_000_000).size == 0                   # within algo_retry_ms
    assert x.run(T0 + SEC)["qty"].tolist() == [300.0]         # a token and the retry


def test_kill_switch_stops_parents_and_cancels_their_children(h):
    x = h()
    (o,) = x.send(parent(1000.0, ALGO_TWAP, slices=2, duration_ns=2 * SEC), now=T0)
    x.mem.control["kill_switch"] = 1
    out = x.run(T0 + SEC)
    assert out["action"].tolist() == [ACTION_CANCEL] and out["order_id"].tolist() == [o["order_id"]]
    assert x.counters()["algo_done"] == 1 and x.state()["algo_active"] == 0
    assert x.run(T0 + 5 * SEC).size == 0


@pytest.mark.parametrize("bad", [
    dict(algo=ALGO_TWAP, slices=0, duration_ns=SEC),
    dict(algo=ALGO_TWAP, slices=2, duration_ns=-1),
    dict(algo=ALGO_VWAP, slices=3),                                 # the profile has 10 buckets
    dict(algo=ALGO_ICEBERG, display_qty=100.0),                      # not a limit order
    dict(algo=ALGO_ICEBERG, display_qty=0.0, order_type=ORDER_LIMIT, limit_px=100.0),
    dict(algo=7),
])
def test_bad_parents(h, bad):
    x = h()
    assert x.send(intent(qty=1000.0, **bad), now=T0).size == 0
    assert x.rejections() == {"rej_bad_intent": 1} and "algo_parents" not in x.counters()


def test_parent_table_full_and_state_checks(h):
    x = h(algo_parents=2)
    p = dict(algo=ALGO_TWAP, slices=10, duration_ns=100 * SEC)
    x.send(intent(qty=1000.0, **p), intent(qty=1000.0, **p), intent(qty=1000.0, **p), now=T0)
    assert x.rejections() == {"rej_open_orders_full": 1} and x.counters()["algo_parents"] == 2
    x.mem.control["trading_state"] = 2
    x.send(intent(qty=1000.0, **p), now=T0)
    assert x.rejections() == {"rej_open_orders_full": 1, "rej_halted": 1}
    assert accounting(x.counters())
