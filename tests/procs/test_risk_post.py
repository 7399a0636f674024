"""Post-trade: marks, drawdown, automatic HALTED, stop-loss and trailing stop, P&L history, VaR.

Marks come from the ``tops`` table (mid) whenever a symbol's row changes; the harness moves the
book with ``h.top``.
"""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from layouts.control import TRADING_HALTED
from layouts.orders import ACTION_CANCEL, ACTION_NEW, BUY, ORDER_LIMIT, ORDER_MARKET, SELL, TIF_IOC
from layouts.risk import HALT_DAILY_LOSS, HALT_DRAWDOWN, PNL_SAMPLE
from procs.risk import RiskStage
from procs.risk_var import (
    cvar_historical, cvar_parametric, pnl_changes, var_historical, var_parametric, var_report,
)
from test_risk import Harness, fill, intent, limits_file

MS = 1_000_000


@pytest.fixture
def mk(engine, drain_ring, tmp_path):
    def make(text="", **params):
        return Harness(engine, drain_ring, limits=limits_file(tmp_path, text), **params)
    return make


def book(h, sym, mid):
    h.top(sym, valid=1, bid=mid - 0.5, ask=mid + 0.5, bid_size=1000.0, ask_size=1000.0)


def buy_fill(h, qty, px, sym=0, side=BUY):
    (o,) = h.send(intent(sym=sym, side=side, qty=qty))
    h.fill(fill(o["order_id"], qty, px, sym=sym, side=side))


def accounting(c):
    return c.get("intents_in", 0) + c.get("algo_children", 0) + c.get("stop_loss", 0) \
        + c.get("trailing_stop", 0) == c.get("orders_out", 0) + c.get("rejected", 0) + c.get("algo_parents", 0)


def test_marks_follow_the_book(mk):
    h = mk()
    buy_fill(h, 100.0, 100.0)
    for mid, unreal in ((101.0, 100.0), (97.5, -250.0)):
        book(h, 0, mid)
        h.run()
        p = h.pos()
        assert (p["mark"], p["unrealized"], p["net_pnl"]) == pytest.approx((mid, unreal, unreal))
        assert h.state()["unrealized"] == pytest.approx(unreal)
    st = h.state()
    assert st["peak_equity"] == pytest.approx(1_000_100.0) and st["drawdown"] == pytest.approx(350.0)
    assert st["max_drawdown"] == pytest.approx(350.0)
    assert h.pos()["peak_pnl"] == pytest.approx(100.0)


def test_daily_loss_breach_halts_and_cancels_open_orders(mk):
    h = mk("[loss]\ndaily_loss_limit = 1000.0\n[orders]\nprice_collar_bps = 0.0\n")
    buy_fill(h, 100.0, 100.0)
    (rest,) = h.send(intent(sym=1, qty=10.0, order_type=ORDER_LIMIT, limit_px=95.0))
    book(h, 0, 90.5)                                            # -950: fine
    h.run()
    assert h.mem.control["trading_state"][0] == 0
    book(h, 0, 90.0)                                            # -1000: breach
    out = h.run()
    assert h.mem.control["trading_state"][0] == TRADING_HALTED
    st = h.state()
    assert (st["halt_reason"], st["trading_state"]) == (HALT_DAILY_LOSS, TRADING_HALTED)
    assert st["halted_ns"] == h.now and st["day_pnl"] == pytest.approx(-1000.0)
    assert out["action"].tolist() == [ACTION_CANCEL] and out["order_id"].tolist() == [rest["order_id"]]
    assert len(h.send(intent(sym=2), intent(side=SELL))) == 0   # even reducing orders: HALTED
    assert h.rejections() == {"rej_halted": 2}
    assert h.counters()["auto_halts"] == 1 and h.counters()["cancels_out"] == 1


def test_drawdown_breach_halts(mk):
    h = mk("[loss]\nmax_drawdown = 500.0\ndaily_loss_limit = 0.0\n")
    buy_fill(h, 100.0, 100.0)
    book(h, 0, 110.0)                                          # +1000: the peak
    h.run()
    book(h, 0, 105.0)                                          # 500 below it
    h.run()
    st = h.state()
    assert st["halt_reason"] == HALT_DRAWDOWN and st["drawdown"] == pytest.approx(500.0)
    assert h.mem.control["trading_state"][0] == TRADING_HALTED


def test_stop_loss_flattens_once_through_the_checks(mk):
    h = mk("[loss]\nstop_loss_bps = 500.0\n")                  # 5 % against the average cost
    buy_fill(h, 100.0, 100.0)
    assert h.pos()["stop_px"] == pytest.approx(95.0)
    book(h, 0, 95.5)
    assert len(h.run()) == 0
    book(h, 0, 95.0)
    (o,) = h.run()
    assert (o["action"], o["side"], o["qty"], o["order_type"], o["tif"]) == \
        (ACTION_NEW, SELL, 100.0, ORDER_MARKET, TIF_IOC)
    book(h, 0, 94.0)
    assert len(h.run()) == 0                                  # one stop order at a time
    h.fill(fill(o["order_id"], 100.0, 94.0, side=SELL))
    p = h.pos()
    assert (p["qty"], p["stop_px"]) == (0.0, 0.0) and p["realized"] == pytest.approx(-600.0)
    c = h.counters()
    assert c["stop_loss"] == 1 and "trailing_stop" not in c and accounting(c)


def test_short_stop_loss(mk):
    h = mk("[loss]\nstop_loss_bps = 100.0\n")
    buy_fill(h, 50.0, 100.0, side=SELL)
    assert h.pos()["stop_px"] == pytest.approx(101.0)
    book(h, 0, 101.0)
    (o,) = h.run()
    assert (o["side"], o["qty"]) == (BUY, 50.0) and h.counters()["stop_loss"] == 1


def test_trailing_stop_follows_the_best_mark(mk):
    h = mk("[loss]\ntrailing_stop_bps = 200.0\nstop_loss_bps = 1000.0\n")
    buy_fill(h, 100.0, 100.0)
    assert h.pos()["stop_px"] == pytest.approx(98.0)          # trailing 98 beats stop-loss 90
    book(h, 0, 110.0)
    h.run()
    p = h.pos()
    assert (p["trail_px"], p["stop_px"]) == pytest.approx((110.0, 107.8))
    book(h, 0, 108.0)
    assert len(h.run()) == 0 and h.pos()["trail_px"] == 110.0
    book(h, 0, 107.5)
    (o,) = h.run()
    assert (o["side"], o["qty"]) == (SELL, 100.0)
    c = h.counters()
    assert c["trailing_stop"] == 1 and "stop_loss" not in c and accounting(c)


def test_stop_net_of_open_reducing_orders_and_retry_after_rejection(mk):
    h = mk("[loss]\nstop_loss_bps = 500.0\n[orders]\nrate_per_sec = 1\nrate_per_min = 0\n",
           algo_retry_ms=10)
    buy_fill(h, 100.0, 100.0, )                                # takes the one token at now=1
    h.send(intent(side=SELL, qty=30.0), now=2_000_000_000)     # a reducing sell is open (token 2)
    book(h, 0, 94.0)
    assert len(h.run(now=2_000_000_000)) == 0                  # no token: rejected, retry later
    assert h.rejections() == {"rej_rate_per_sec": 1}
    assert len(h.run(now=2_000_000_000 + 5 * MS)) == 0         # within the retry delay
    (o,) = h.run(now=3_000_000_000)                            # a token and the retry is due
    assert (o["side"], o["qty"]) == (SELL, 70.0)               # 100 held - 30 already selling
    assert h.counters()["stop_loss"] == 2 and accounting(h.counters())


def test_pnl_history_and_var_in_the_report(mk):
    h = mk(pnl_sample_ms=10)
    buy_fill(h, 100.0, 100.0)
    mids = [100.0, 101.0, 99.0, 102.0, 98.0, 100.5, 97.0]
    for i, mid in enumerate(mids):
        book(h, 0, mid)
        h.run(now=(i + 1) * 10 * MS + 1)
    rows = h.mem.tables["pnl_history"].snapshot()
    got = rows[rows["t_ns"] != 0]
    assert len(got) == len(mids) + 1 and got["seq"].tolist() == list(range(1, len(mids) + 2))
    assert got["net_pnl"][1:].tolist() == pytest.approx([(m - 100.0) * 100.0 for m in mids])
    assert h.state()["samples"] == len(mids) + 1
    rep = RiskStage.summarize(h.mem.tables)
    ch = np.diff(got["net_pnl"])
    assert rep["var"]["var_hist_99"] == pytest.approx(var_historical(ch, 0.99))
    assert rep["var"]["cvar_param_95"] == pytest.approx(cvar_parametric(ch, 0.95))
    assert rep["trading_state"] == "ACTIVE" and rep["equity"] == pytest.approx(999_700.0)


def test_var_cvar_by_hand():
    ch = np.array([-10.0, -4.0, -2.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    # 10th percentile (linear): -10 + 0.9 * (-4 - -10) = -4.6 -> VaR 4.6; tail mean: -10 -> 10
    assert var_historical(ch, 0.9) == pytest.approx(4.6)
    assert cvar_historical(ch, 0.9) == pytest.approx(10.0)
    mu, sd = ch.mean(), ch.std(ddof=1)
    z = NormalDist().inv_cdf(0.99)
    assert var_parametric(ch, 0.99) == pytest.approx(z * sd - mu)
    assert cvar_parametric(ch, 0.99) == pytest.approx(sd * math.exp(-z * z / 2) / math.sqrt(2 * math.pi) / 0.01 - mu)
    assert cvar_parametric(ch, 0.99) > var_parametric(ch, 0.99)
    assert var_historical([1.0], 0.99) is None and cvar_parametric([], 0.99) is None


def test_pnl_changes_orders_by_sequence_and_skips_empty_rows():
    rows = np.zeros(6, PNL_SAMPLE)
    rows[[3, 4, 0, 1]] = [(30, 3, 0, 5.0, 0, 0, 0, 0), (40, 4, 0, 2.0, 0, 0, 0, 0),
                          (50, 5, 0, 7.0, 0, 0, 0, 0), (60, 6, 0, 6.0, 0, 0, 0, 0)]
    assert pnl_changes(rows).tolist() == [-3.0, 5.0, -1.0]       # ring wrapped: 3, 4, 5, 6
    rep = var_report(rows)
    assert rep["samples"] == 4 and rep["var_hist_95"] is not None


def test_report_survives_a_writer_killed_inside_a_write(mk):
    h = mk()
    buy_fill(h, 10.0, 100.0)
    for name in ("risk_state", "risk_rejections", "pnl_history"):
        h.mem.tables[name].seqs[0] += 1                      # odd: a write that never ended
    rep = RiskStage.summarize(h.mem.tables)
    assert rep["open_orders"] == 0 and rep["var"]["samples"] >= 1
    assert RiskStage.table_counters(h.mem.tables)["rej_halted"] == 0
