"""FIFO round trips: hand-computed examples (partials, flips, open lots) and properties.

Properties (hypothesis):
* the P&L of all trades (closed + open marked) equals the executions' cash flows after fees
  plus the positions left marked at the marks, computed independently;
* per symbol, closed gross P&L is the risk stage's FIFO ``realized`` and open gross P&L its
  ``unrealized`` (``procs.risk_pnl.replay``), and the fees add up;
* every executed share is in exactly one trade leg.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layouts.orders import BUY, FILL, FILL_ACCEPTED, FILL_CANCELED, FILL_FULL, FILL_PARTIAL, POSITION, SELL
from procs.risk_limits import PNL_FIFO
from procs.risk_pnl import replay
from pyrt_shm.research.trades import TRADE, round_trips


def execs(rows) -> np.ndarray:
    """(sym, side, qty, price, fee[, status]) -> FILL rows at venue_ns 1000, 2000, ..."""
    x = np.zeros(len(rows), FILL)
    for i, r in enumerate(rows):
        sym, side, q, px, fee = r[:5]
        x[i] = np.zeros((), FILL)
        x[i]["sym"], x[i]["side"], x[i]["qty"], x[i]["price"], x[i]["fee"] = sym, side, q, px, fee
        x[i]["status"] = r[5] if len(r) > 5 else FILL_FULL
        x[i]["venue_ns"] = (i + 1) * 1000
    return x


def as_tuples(tr):
    return [(int(r["side"]), float(r["qty"]), int(r["entry_ns"]), int(r["exit_ns"]), float(r["entry_px"]),
             float(r["exit_px"]), round(float(r["pnl"]), 9), round(float(r["fees"]), 9), int(r["open"]))
            for r in tr]


def test_fifo_by_hand_with_partials_and_a_flip():
    # the fills of tests/procs/test_positions.py: buy 100@10 (fee 1), buy 100@12 (1), sell 150@13
    # (1.5), sell 100@9 (1), buy 50@8 (.5)
    tr = round_trips(execs([(0, BUY, 100, 10, 1.0), (0, BUY, 100, 12, 1.0), (0, SELL, 150, 13, 1.5),
                            (0, SELL, 100, 9, 1.0), (0, BUY, 50, 8, 0.5)]), {})
    assert as_tuples(tr) == [
        # sell 150 closes lot 1 in full: 100 * (13 - 10) = 300; fees 1 + 1.5 * 100/150 = 2 -> 298
        (1, 100.0, 1000, 3000, 10.0, 13.0, 298.0, 2.0, 0),
        # ... and 50 of lot 2: 50 * (13 - 12) = 50; fees 1 * 50/100 + 1.5 * 50/150 = 1 -> 49
        (1, 50.0, 2000, 3000, 12.0, 13.0, 49.0, 1.0, 0),
        # sell 100@9 closes the other 50 of lot 2: 50 * (9 - 12) = -150; fees .5 + .5 -> -151
        (1, 50.0, 2000, 4000, 12.0, 9.0, -151.0, 1.0, 0),
        # ... and flips: short 50@9 (fee .5), closed by buy 50@8: 50 * (9 - 8) = 50; fees 1 -> 49
        (-1, 50.0, 4000, 5000, 9.0, 8.0, 49.0, 1.0, 0)]
    # gross 300 + 50 - 150 + 50 = 250 = the FIFO realized of test_positions; fees 5 in all
    assert (tr["pnl"] + tr["fees"]).sum() == pytest.approx(250.0) and tr["fees"].sum() == pytest.approx(5.0)
    assert tr["ret"][0] == pytest.approx(298 / 1000) and tr["ret"][3] == pytest.approx(49 / 450)
    assert tr.dtype == TRADE


def test_open_lot_is_marked_not_closed():
    # buy 100@10 (fee 2), sell 40@12 (fee 1); 60 left, marked at 11
    st_ = {}
    tr = round_trips(execs([(3, BUY, 100, 10, 2.0), (3, SELL, 40, 12, 1.0)]), {3: 11.0}, st_)
    assert as_tuples(tr) == [
        # 40 * (12 - 10) = 80; fees 2 * 40/100 + 1 = 1.8 -> 78.2
        (1, 40.0, 1000, 2000, 10.0, 12.0, 78.2, 1.8, 0),
        # open 60: 60 * (11 - 10) = 60; fee 2 * 60/100 = 1.2 -> 58.8; exit_ns 0, exit_px = mark
        (1, 60.0, 1000, 0, 10.0, 11.0, 58.8, 1.2, 1)]
    assert st_ == {"executions": 2, "ignored_reports": 0, "open_lots": 1}


def test_flip_in_one_execution_and_array_marks():
    # sell 100@10 opens a short; buy 150@9 closes it (100 * (10 - 9) = 100) and opens long 50@9,
    # marked at 9.5: 50 * .5 = 25. No fees.
    marks = np.array([0.0, 9.5])
    tr = round_trips(execs([(1, SELL, 100, 10, 0.0), (1, BUY, 150, 9, 0.0)]), marks)
    assert as_tuples(tr) == [(-1, 100.0, 1000, 2000, 10.0, 9.0, 100.0, 0.0, 0),
                             (1, 50.0, 2000, 0, 9.0, 9.5, 25.0, 0.0, 1)]


def test_one_sell_closes_many_lots_of_its_own_symbol_only():
    tr = round_trips(execs([(0, BUY, 10, 10, 0.0), (1, BUY, 10, 50, 0.0), (0, BUY, 10, 11, 0.0),
                            (0, SELL, 20, 12, 0.0), (1, SELL, 10, 49, 0.0)]), {})
    assert [(int(r["sym"]), float(r["entry_px"]), float(r["pnl"])) for r in tr] == \
        [(0, 10.0, 20.0), (0, 11.0, 10.0), (1, 50.0, -10.0)]     # closed in order of closing


def test_reports_without_quantity_are_ignored_and_counted():
    st_ = {}
    x = execs([(0, BUY, 10, 10, 0.0, FILL_ACCEPTED), (0, BUY, 4, 10, 0.0, FILL_PARTIAL),
               (0, BUY, 6, 10, 0.0, FILL_FULL), (0, SELL, 0, 0, 0.0, FILL_CANCELED),
               (0, SELL, 10, 12, 0.0)])
    tr = round_trips(x, {}, st_)
    assert st_["ignored_reports"] == 2 and st_["executions"] == 3
    assert tr["qty"].tolist() == [4.0, 6.0] and tr["pnl"].sum() == pytest.approx(20.0)


def test_no_executions():
    tr = round_trips(np.zeros(0, FILL), {})
    assert len(tr) == 0 and tr.dtype == TRADE


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"marks\[2\]: no mark for the open position in symbol 2"):
        round_trips(execs([(2, BUY, 1, 10, 0.0)]), {0: 1.0})
    with pytest.raises(ValueError, match=r"marks\[2\]: must be a finite price > 0"):
        round_trips(execs([(2, BUY, 1, 10, 0.0)]), {2: float("nan")})
    with pytest.raises(ValueError, match=r"executions\[1\]\['qty'\]: must be finite and > 0"):
        round_trips(execs([(0, BUY, 1, 10, 0.0), (0, SELL, -1, 10, 0.0)]), {})
    with pytest.raises(ValueError, match=r"executions\[0\]\['price'\]"):
        round_trips(execs([(0, BUY, 1, np.inf, 0.0)]), {})
    with pytest.raises(ValueError, match=r"executions\[0\]\['side'\]: must be \+1"):
        round_trips(execs([(0, 0, 1, 10, 0.0)]), {})
    with pytest.raises(ValueError, match="executions: missing field"):
        round_trips(np.zeros(1, [("qty", "<f8")]), {})
    with pytest.raises(ValueError, match="executions: expected a numpy structured array"):
        round_trips([(0, 1, 1.0)], {})


fills_st = st.lists(st.tuples(st.integers(0, 2), st.sampled_from([BUY, SELL]),
                              st.integers(1, 40).map(lambda q: q * 25.0),
                              st.integers(100, 20_000).map(lambda c: c / 100.0),
                              st.integers(0, 500).map(lambda c: c / 100.0)), min_size=0, max_size=40)
marks_st = st.lists(st.integers(100, 20_000).map(lambda c: c / 100.0), min_size=3, max_size=3)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fills_st, marks_st)
def test_trade_pnl_is_the_mark_to_market_pnl(rows, marks):
    x = execs(rows)
    tr = round_trips(x, dict(enumerate(marks)))
    # independently: cash = -sum(side * qty * px) - fees; positions marked
    s = x["side"].astype(np.float64)
    cash = float(-(s * x["qty"] * x["price"]).sum() - x["fee"].sum())
    pos = np.bincount(x["sym"], weights=s * x["qty"], minlength=3)
    expected = cash + float((pos * np.array(marks)).sum())
    scale = 1.0 + float((x["qty"] * x["price"]).sum())
    assert float(tr["pnl"].sum()) == pytest.approx(expected, abs=1e-9 * scale)
    assert float(tr["fees"].sum()) == pytest.approx(float(x["fee"].sum()), abs=1e-9 * scale)
    # every share executed is in one leg: an entry of each trade, an exit of each closed one
    legs = tr["qty"].sum() + tr["qty"][tr["open"] == 0].sum()
    assert legs == pytest.approx(float(x["qty"].sum()))
    # open trades are the positions left, on the position's side
    for sym in range(3):
        o = tr[(tr["sym"] == sym) & (tr["open"] == 1)]
        assert float((o["side"] * o["qty"]).sum()) == pytest.approx(pos[sym], abs=1e-9)
        assert (o["exit_px"] == marks[sym]).all() and (o["exit_ns"] == 0).all()
    assert (tr["exit_ns"][tr["open"] == 0] >= tr["entry_ns"][tr["open"] == 0]).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fills_st, marks_st)
def test_trades_agree_with_the_risk_stage_fifo(rows, marks):
    x = execs(rows)
    tr = round_trips(x, dict(enumerate(marks)))
    gross = tr["pnl"] + tr["fees"]
    for sym in range(3):
        f = x[x["sym"] == sym]
        pos = np.zeros(1, POSITION)
        lot_q, lot_px = np.zeros((1, 64)), np.zeros((1, 64))
        head, cnt = np.zeros(1, np.int64), np.zeros(1, np.int64)
        replay(pos, 0, f["side"].astype(np.int64), f["qty"].copy(), f["price"].copy(), f["fee"].copy(),
               PNL_FIFO, lot_q, lot_px, head, cnt, np.full(len(f), marks[sym]))
        p = pos[0]
        mine = tr["sym"] == sym
        closed, open_ = mine & (tr["open"] == 0), mine & (tr["open"] == 1)
        assert gross[closed].sum() == pytest.approx(p["realized"], abs=1e-6)
        if len(f):
            assert gross[open_].sum() == pytest.approx(p["unrealized"], abs=1e-6)
        assert tr["fees"][mine].sum() == pytest.approx(p["fees"], abs=1e-9)
        assert int(open_.sum()) == int(p["lots"])
