"""Positions and P&L: hand-computed examples for average cost and FIFO, and properties.

Properties (hypothesis), for both methods:
* the position equals the sum of the fills (qty, bought, sold, fills, fees);
* realized + unrealized == the mark-to-market change (cash flows + qty * mark), and
  net_pnl is that less fees;
* FIFO and average cost realize the same total on fills that go from flat to flat;
* through the stage, the positions table equals the sum of the fills risk was sent.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layouts.orders import BUY, POSITION, SELL
from procs.risk_limits import PNL_AVERAGE, PNL_FIFO
from procs.risk_pnl import replay
from test_risk import Harness, fill, intent, limits_file

AVG, FIFO = "average", "fifo"


def run(method, fills, marks=None, lots=64):
    """Replay ``fills`` = [(side, qty, px, fee)] on one symbol; return the position record."""
    pos = np.zeros(1, POSITION)
    n = len(fills)
    a = np.array(fills, dtype=np.float64).reshape(n, 4)
    lot_q, lot_px = np.zeros((1, lots)), np.zeros((1, lots))
    head, cnt = np.zeros(1, np.int64), np.zeros(1, np.int64)
    m = np.array(marks if marks is not None else a[:, 2], dtype=np.float64)
    merged = replay(pos, 0, a[:, 0].astype(np.int64), a[:, 1].copy(), a[:, 2].copy(), a[:, 3].copy(),
                    PNL_FIFO if method == FIFO else PNL_AVERAGE, lot_q, lot_px, head, cnt, m)
    return pos[0], merged, (lot_q[0], lot_px[0], int(head[0]), int(cnt[0]))


# -- hand-computed ------------------------------------------------------------------------------

STEPS = [(BUY, 100.0, 10.0, 1.0), (BUY, 100.0, 12.0, 1.0), (SELL, 150.0, 13.0, 1.5),
         (SELL, 100.0, 9.0, 1.0), (BUY, 50.0, 8.0, 0.5)]


def test_average_cost_by_hand():
    # buy 100@10, buy 100@12 -> 200 @ 11; sell 150@13 -> realized 150*2 = 300, 50 @ 11;
    # sell 100@9 -> flip: realized 50*(9-11) = -100 (total 200), -50 @ 9;
    # buy 50@8 -> realized 50*(9-8) = 50 (total 250), flat.
    expect = [(100.0, 10.0, 0.0), (200.0, 11.0, 0.0), (50.0, 11.0, 300.0), (-50.0, 9.0, 200.0),
              (0.0, 0.0, 250.0)]
    for i, e in enumerate(expect):
        p, _, _ = run(AVG, STEPS[:i + 1])
        assert (p["qty"], p["avg_px"], p["realized"]) == pytest.approx(e), i
    assert (p["fees"], p["bought"], p["sold"], p["fills"], p["cost"]) == (5.0, 250.0, 250.0, 5, 0.0)
    assert p["net_pnl"] == pytest.approx(245.0)


def test_fifo_by_hand():
    # buy 100@10, buy 100@12; sell 150@13 closes 100@10 (+300) and 50@12 (+50): 350, left 50@12;
    # sell 100@9 closes 50@12 (-150): 200, then opens -50@9; buy 50@8 closes it (+50): 250, flat.
    expect = [(100.0, 10.0, 0.0, 1), (200.0, 11.0, 0.0, 2), (50.0, 12.0, 350.0, 1),
              (-50.0, 9.0, 200.0, 1), (0.0, 0.0, 250.0, 0)]
    for i, (q, avg, real, lots) in enumerate(expect):
        p, _, (lq, lp, head, n) = run(FIFO, STEPS[:i + 1])
        assert (p["qty"], p["avg_px"], p["realized"]) == pytest.approx((q, avg, real)), i
        assert p["lots"] == n == lots
        assert p["cost"] == pytest.approx(abs(q) * avg)
    # the same round trip realizes the same under both methods
    assert run(AVG, STEPS)[0]["realized"] == pytest.approx(run(FIFO, STEPS)[0]["realized"])


def test_fifo_and_average_differ_while_open_and_agree_when_flat():
    f = [(BUY, 10.0, 100.0, 0.0), (BUY, 10.0, 110.0, 0.0), (SELL, 10.0, 120.0, 0.0)]
    a, fi = run(AVG, f)[0], run(FIFO, f)[0]
    assert (a["realized"], a["avg_px"]) == pytest.approx((150.0, 105.0))     # 10 * (120 - 105)
    assert (fi["realized"], fi["avg_px"]) == pytest.approx((200.0, 110.0))   # 10 * (120 - 100)
    # unrealized at 120 makes up the difference: both are +300 mark-to-market
    assert a["realized"] + a["unrealized"] == pytest.approx(fi["realized"] + fi["unrealized"]) == 300.0
    f.append((SELL, 10.0, 90.0, 0.0))
    assert run(AVG, f)[0]["realized"] == pytest.approx(run(FIFO, f)[0]["realized"]) == pytest.approx(0.0)


def test_unrealized_marks_and_fees():
    p, _, _ = run(FIFO, [(SELL, 30.0, 50.0, 0.3), (SELL, 10.0, 54.0, 0.1)], marks=[50.0, 49.0])
    # short 30@50 + 10@54: cost 1500 + 540 = 2040, avg 51; at 49 the short gains 40 * 2 = 80
    assert (p["qty"], p["cost"], p["avg_px"]) == pytest.approx((-40.0, 2040.0, 51.0))
    assert p["unrealized"] == pytest.approx(80.0) and p["mark"] == 49.0
    assert p["net_pnl"] == pytest.approx(80.0 - 0.4)
    assert p["trail_px"] == 49.0                                 # best (lowest) mark of a short


def test_fifo_lot_merge_when_the_lot_buffer_is_full():
    p, merged, (lq, lp, head, n) = run(FIFO, [(BUY, 1.0, 10.0, 0.0), (BUY, 1.0, 11.0, 0.0),
                                              (BUY, 1.0, 12.0, 0.0), (SELL, 1.0, 13.0, 0.0)], lots=2)
    assert merged == 1                                          # 11 and 12 became 2 @ 11.5
    assert p["realized"] == pytest.approx(3.0)                   # the oldest lot (10) closed first
    assert (p["qty"], p["avg_px"], p["lots"]) == pytest.approx((2.0, 11.5, 1))


def test_stage_uses_the_configured_method(engine, drain_ring, tmp_path):
    for method, real in ((AVG, 300.0), (FIFO, 350.0)):
        h = Harness(engine, drain_ring, limits=limits_file(tmp_path, f'[account]\npnl_method = "{method}"\n'))
        for side, q, px, fee in STEPS[:3]:
            (o,) = h.send(intent(side=side, qty=q))
            h.fill(fill(o["order_id"], q, px, fee=fee, side=side))
        p = h.pos()
        assert p["realized"] == pytest.approx(real) and p["fees"] == 3.5, method
        assert p["mark"] == 100.0 and p["unrealized"] == pytest.approx((100.0 - p["avg_px"]) * 50.0)
        st = h.state()
        assert st["realized"] == pytest.approx(real) and st["fees"] == 3.5
        assert st["net_pnl"] == pytest.approx(real + p["unrealized"] - 3.5)
        assert st["equity"] == pytest.approx(1_000_000.0 + st["net_pnl"])


# -- properties ---------------------------------------------------------------------------------

qtys = st.integers(1, 500).map(float)
prices = st.integers(100, 20000).map(lambda c: c / 100.0)
fees = st.integers(0, 100).map(lambda c: c / 100.0)
fill_st = st.tuples(st.sampled_from([BUY, SELL]), qtys, prices, fees)
fill_lists = st.lists(fill_st, min_size=1, max_size=60)


def mtm(fills, mark):
    """Mark-to-market P&L before fees: cash flows plus the position at the mark."""
    cash = sum(-(q if s == BUY else -q) * px for s, q, px, _ in fills)
    qty = sum(q if s == BUY else -q for s, q, _, _ in fills)
    return cash + qty * mark


@settings(max_examples=300, deadline=None)
@given(fill_lists, st.sampled_from([AVG, FIFO]), prices)
def test_position_is_the_sum_of_fills_and_pnl_is_mark_to_market(fills, method, mark):
    marks = [px for _, _, px, _ in fills]
    marks[-1] = mark
    p, _, (lq, lp, head, n) = run(method, fills, marks=marks)
    signed = [q if s == BUY else -q for s, q, _, _ in fills]
    assert p["qty"] == sum(signed)
    assert p["bought"] == sum(q for s, q, _, _ in fills if s == BUY)
    assert p["sold"] == sum(q for s, q, _, _ in fills if s == SELL)
    assert p["fills"] == len(fills)
    assert p["fees"] == pytest.approx(sum(f for *_, f in fills))
    scale = sum(q * px for _, q, px, _ in fills) + abs(p["qty"]) * mark
    assert p["realized"] + p["unrealized"] == pytest.approx(mtm(fills, mark), abs=1e-9 * scale + 1e-9)
    assert p["net_pnl"] == pytest.approx(mtm(fills, mark) - p["fees"], abs=1e-9 * scale + 1e-9)
    assert p["cost"] == pytest.approx(abs(p["qty"]) * p["avg_px"])
    if method == FIFO:
        idx = [(head + i) % len(lq) for i in range(n)]
        assert sum(lq[idx]) == pytest.approx(abs(p["qty"]))
        assert sum(lq[idx] * lp[idx]) == pytest.approx(p["cost"])


@settings(max_examples=300, deadline=None)
@given(fill_lists, prices)
def test_fifo_and_average_agree_on_flat_to_flat(fills, close_px):
    qty = sum(q if s == BUY else -q for s, q, _, _ in fills)
    if qty:
        fills = fills + [(SELL if qty > 0 else BUY, abs(qty), close_px, 0.0)]
    a, f = run(AVG, fills)[0], run(FIFO, fills)[0]
    assert a["qty"] == f["qty"] == 0.0 and a["unrealized"] == f["unrealized"] == 0.0
    scale = sum(q * px for _, q, px, _ in fills)
    assert a["realized"] == pytest.approx(f["realized"], abs=1e-9 * scale + 1e-9)
    assert a["realized"] == pytest.approx(mtm(fills, 1.0), abs=1e-9 * scale + 1e-9)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from([BUY, SELL]), st.integers(1, 100).map(float),
                          prices, fees), min_size=1, max_size=20),
       st.sampled_from([AVG, FIFO]))
def test_stage_positions_equal_the_sum_of_fills(engine, drain_ring, tmp_path_factory, fills, method):
    path = limits_file(tmp_path_factory.mktemp("lim"),
                       f'[account]\npnl_method = "{method}"\n[positions]\nmax_position = 100000.0\n'
                       "max_concentration = 100.0\nmax_gross_exposure = 1e12\nmax_net_exposure = 1e12\n"
                       "[orders]\nmax_order_notional = 1e12\nprice_collar_bps = 0.0\n"
                       "[loss]\ndaily_loss_limit = 0.0\nmax_drawdown = 0.0\n")
    h = Harness(engine, drain_ring, limits=path)
    for sym, side, q, px, fee in fills:
        (o,) = h.send(intent(sym=sym, side=side, qty=q))
        h.fill(fill(o["order_id"], q, px, fee=fee, side=side, sym=sym))
    total = 0.0
    for s in range(4):
        mine = [(side, q, px, fee) for sym, side, q, px, fee in fills if sym == s]
        p = h.pos(s)
        assert p["qty"] == sum(q if side == BUY else -q for side, q, _, _ in mine)
        assert p["fills"] == len(mine) and p["open_buy"] == p["open_sell"] == 0.0
        if mine:
            assert p["realized"] + p["unrealized"] == pytest.approx(mtm(mine, 100.0), abs=1e-6)
        total += p["net_pnl"]
    assert h.state()["net_pnl"] == pytest.approx(total, abs=1e-6)
