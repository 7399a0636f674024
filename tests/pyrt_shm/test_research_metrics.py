"""Performance metrics on small hand-computed series (arithmetic in the comments).

Every result must also be valid strict JSON (no NaN/inf) and raise no numpy warning.
"""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from pyrt_shm.research.equity import EQUITY, check_equity, drawdown, fill_drawdown
from pyrt_shm.research.metrics import NS_PER_DAY, NS_PER_YEAR, Conventions, performance, period_returns
from pyrt_shm.research.trades import TRADE

Q = int(NS_PER_YEAR) // 4          # a quarter of a 365.25-day year: 7,889,400 s, exact in ns
H = 3_600 * 10**9
SAMPLE = Conventions(period="sample")


def curve(values, t=None, gross=None) -> np.ndarray:
    e = np.zeros(len(values), EQUITY)
    e["t_ns"] = np.arange(len(values)) * Q if t is None else t
    e["equity"] = values
    e["gross"] = 0.0 if gross is None else gross
    return fill_drawdown(e)


def perf(eq, trades=None, conv=SAMPLE, initial=None) -> dict:
    """performance() with every numpy warning an error, checked to be strict JSON."""
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        p = performance(eq, trades, conv, initial)
    json.dumps(p, allow_nan=False)
    return p


# the 5-sample curve: returns +10%, -10%, +10%, +10% over exactly one year (4 quarters)
FIVE = [100.0, 110.0, 99.0, 108.9, 119.79]


def test_five_periods_by_hand():
    p = perf(curve(FIVE))
    assert p["n_periods"] == 4 and p["n_samples"] == 5 and p["periods_dropped"] == 0
    # total 119.79 / 100 - 1; the span is one year, so CAGR = the total return
    assert p["total_return"] == pytest.approx(0.1979)
    assert p["years"] == pytest.approx(1.0)
    assert p["cagr"] == pytest.approx(0.1979)
    # mean 0.05; deviations .05 -.15 .05 .05 -> squares .03 in all, /3 = .01, sd .1
    assert p["mean_period_return"] == pytest.approx(0.05)
    assert p["annual_volatility"] == pytest.approx(0.1 * math.sqrt(252))      # 1.58745
    assert p["sharpe"] == pytest.approx(0.05 / 0.1 * math.sqrt(252))         # 7.93725
    # downside: min(0, r)^2 = 0, .01, 0, 0 -> mean .0025 -> .05; sortino = .05 / .05 * sqrt(252)
    assert p["sortino"] == pytest.approx(math.sqrt(252))                      # 15.87451
    # peak 110 (row 1), trough 99 (row 2): 99/110 - 1 = -10%; 108.9 < 110, recovered at row 4
    assert p["max_drawdown"] == pytest.approx(-0.1)
    assert (p["max_drawdown_peak_ns"], p["max_drawdown_trough_ns"], p["max_drawdown_recovery_ns"]) == (Q, 2 * Q, 4 * Q)
    assert p["max_drawdown_duration_ns"] == 3 * Q and p["max_drawdown_duration_periods"] == 3
    assert p["max_drawdown_duration_recovered"] is True
    assert p["calmar"] == pytest.approx(0.1979 / 0.1)
    # historical 95%: sorted -.1 .1 .1 .1, quantile .05 at position .15: -.1 + .15 * .2 = -.07
    assert p["var_historical"] == pytest.approx(0.07) and p["var"] == p["var_historical"]
    assert p["cvar_historical"] == pytest.approx(0.1)          # mean of {-.1} (the returns <= -.07)
    # parametric: z = 1.644854; VaR = z * .1 - .05 = .114485; CVaR = .1 * phi(z) / .05 - .05,
    # phi(z) = .1031356 -> .206271 - .05 = .156271
    assert p["var_parametric"] == pytest.approx(0.1144854, abs=1e-6)
    assert p["cvar_parametric"] == pytest.approx(0.1562713, abs=1e-6)
    c = p["conventions"]
    assert (c["periods_per_year"], c["risk_free_rate"], c["period"], c["var_level"], c["var_method"]) == \
        (252.0, 0.0, "sample", 0.95, "historical")
    assert c["std_ddof"] == 1 and "sortino_downside" in c and c["year_days"] == 365.25


def test_sortino_downside_deviation_counts_every_period():
    # 100 -> 120 -> 108 -> 102.6 -> 112.86: returns .2, -.1, -.05, .1, mean .0375
    p = perf(curve([100.0, 120.0, 108.0, 102.6, 112.86]))
    # downside: sqrt((0 + .01 + .0025 + 0) / 4) = sqrt(.003125) = .0559017 (over all 4 periods,
    # not over the 2 losing ones: sqrt(.0125 / 2) = .0790569, nor their std)
    assert p["sortino"] == pytest.approx(0.0375 / 0.0559017 * math.sqrt(252), rel=1e-6)   # 10.6489
    # std ddof=1: squares of the deviations .1625 -.1375 -.0875 .0625 sum to .056875; /3 -> .137689
    assert p["sharpe"] == pytest.approx(0.0375 / 0.1376893 * math.sqrt(252), rel=1e-6)    # 4.3235


def test_periods_per_year_252_vs_365():
    a, b = perf(curve(FIVE)), perf(curve(FIVE), conv=Conventions(periods_per_year=365, period="sample"))
    assert b["annual_volatility"] == pytest.approx(0.1 * math.sqrt(365))      # 1.91050
    assert b["sharpe"] == pytest.approx(0.5 * math.sqrt(365))                 # 9.55249
    assert b["sharpe"] / a["sharpe"] == pytest.approx(math.sqrt(365 / 252))
    assert b["cagr"] == a["cagr"]                       # CAGR is over the span, not the periods
    assert b["conventions"]["periods_per_year"] == 365.0


def test_risk_free_rate():
    # rf 5% a year at 4 periods a year: 1.05 ** .25 - 1 = .0122722 per period
    p = perf(curve(FIVE), conv=Conventions(periods_per_year=4, risk_free_rate=0.05, period="sample"))
    assert p["conventions"]["risk_free_per_period"] == pytest.approx(0.0122722344)
    # sharpe = (.05 - .0122722) / .1 * sqrt(4) = .754555
    assert p["sharpe"] == pytest.approx(0.754555311)
    # excess: .0877278 -.1122722 .0877278 .0877278; downside sqrt(.1122722^2 / 4) = .0561361;
    # sortino = .0377278 / .0561361 * 2 = 1.344153
    assert p["sortino"] == pytest.approx(1.344153014)
    assert p["annual_volatility"] == pytest.approx(0.2)   # the rf does not move the deviation


def test_period_resampling_takes_the_last_value_of_each_day():
    # day 0: 100 (opening), 105, 102 | day 1: 101, 108 | day 2: 90, 99 -- hours apart
    t = np.array([9, 12, 15, 24 + 9, 24 + 15, 48 + 9, 48 + 15]) * H
    v = [100.0, 105.0, 102.0, 101.0, 108.0, 90.0, 99.0]
    eq = curve(v, t)
    r, tc, _ = period_returns(eq, Conventions(period="1d"))
    # closes 102, 108, 99 after the opening 100: 102/100-1, 108/102-1, 99/108-1
    assert r == pytest.approx([0.02, 0.0588235294, -0.0833333333])
    assert tc.tolist() == [15 * H, 39 * H, 63 * H]
    p = perf(eq, conv=Conventions(period="1d"))
    assert p["n_periods"] == 3
    assert p["mean_period_return"] == pytest.approx(-0.0015032680)
    assert p["annual_volatility"] == pytest.approx(0.0734774544 * math.sqrt(252))
    assert perf(eq, conv=SAMPLE)["n_periods"] == 6
    assert perf(eq, conv=Conventions(period="1h"))["n_periods"] == 6          # one sample per hour
    # with starting capital 95 the first return is 102/95 - 1
    r, _, _ = period_returns(eq, Conventions(period="1d"), initial_equity=95.0)
    assert r[0] == pytest.approx(102 / 95 - 1) and len(r) == 3


def test_first_row_alone_in_its_period_only_opens():
    # day 0: 100 only; day 1: 104, 110 -> one return 110/100 - 1 (no spurious 0% for day 0)
    eq = curve([100.0, 104.0, 110.0], np.array([15, 33, 39]) * H)
    r, _, _ = period_returns(eq, Conventions(period="1d"))
    assert r == pytest.approx([0.1])
    # with initial equity the first row is a close: 100/100-1 = 0, then 110/100-1
    r, _, _ = period_returns(eq, Conventions(period="1d"), initial_equity=100.0)
    assert r == pytest.approx([0.0, 0.1])


def test_var_method_parametric_selects_the_normal_figures():
    p = perf(curve(FIVE), conv=Conventions(period="sample", var_method="parametric", var_level=0.99))
    # z(.99) = 2.326348; VaR = 2.326348 * .1 - .05 = .1826348
    assert p["var"] == p["var_parametric"] == pytest.approx(0.1826348, abs=1e-6)
    assert p["cvar"] == p["cvar_parametric"]
    # historical at 99%: position .03 between -.1 and .1: -.1 + .03 * .2 = -.094
    assert p["var_historical"] == pytest.approx(0.094)
    assert p["conventions"]["var_method"] == "parametric"


def test_drawdown_without_recovery():
    # peak 120 at row 1, 90 at row 2 (-25%), never back to 120
    p = perf(curve([100.0, 120.0, 90.0, 100.0, 110.0]))
    assert p["max_drawdown"] == pytest.approx(-0.25)
    assert p["max_drawdown_recovery_ns"] is None
    assert p["max_drawdown_duration_recovered"] is False
    assert p["max_drawdown_duration_ns"] == 3 * Q and p["max_drawdown_duration_periods"] == 3
    assert p["calmar"] == pytest.approx(0.1 / 0.25)     # one year: cagr 10%


def test_longest_drawdown_is_not_the_deepest():
    # episode 1: 100 -> 90 -> 100 (depth -10%, 2 rows); episode 2: 120 -> 117 -> 121
    # (depth 117/120-1 = -2.5%, rows 3..7 = 4 rows)
    p = perf(curve([100.0, 90.0, 100.0, 120.0, 119.0, 118.0, 117.0, 121.0]))
    assert p["max_drawdown"] == pytest.approx(-0.1) and p["drawdown_episodes"] == 2
    assert p["max_drawdown_duration_periods"] == 4 and p["max_drawdown_duration_ns"] == 4 * Q


def test_drawdown_from_initial_equity():
    # starting capital 100 at t0; the first sample 95 is already 5% under it; back at row 1
    eq = curve([95.0, 100.0, 101.0])
    p = perf(eq, initial=100.0)
    assert p["max_drawdown"] == pytest.approx(-0.05) and p["max_drawdown_peak_ns"] == 0
    assert p["max_drawdown_duration_ns"] == Q and p["max_drawdown_duration_periods"] == 2
    assert p["total_return"] == pytest.approx(0.01) and p["n_periods"] == 3
    assert fill_drawdown(eq, 100.0)["drawdown"] == pytest.approx([-0.05, 0.0, 0.0])
    assert perf(eq)["max_drawdown"] == 0.0             # without it, 95 is the first peak


def test_drawdown_series():
    assert drawdown(np.array([100.0, 110.0, 99.0, 121.0])) == pytest.approx([0.0, 0.0, -0.1, 0.0])
    # a non-positive peak has no fraction: 0 at it, -1 below it
    assert drawdown(np.array([0.0, -5.0, 0.0])).tolist() == [0.0, -1.0, 0.0]
    assert (drawdown(np.random.default_rng(0).normal(100, 5, 500)) <= 0.0).all()


def test_flat_equity():
    p = perf(curve([100.0] * 5))
    assert p["annual_volatility"] == 0.0 and p["sharpe"] is None and p["sortino"] is None
    assert p["max_drawdown"] == 0.0 and p["max_drawdown_duration_ns"] == 0 and p["calmar"] is None
    assert p["total_return"] == 0.0 and p["cagr"] == 0.0 and p["var"] == 0.0


def test_constant_returns_have_no_sharpe():
    # +1% every period: the sample std is float dust (~1e-18), not risk
    p = perf(curve([100.0, 101.0, 102.01, 103.0301]))
    assert p["sharpe"] is None and p["sortino"] is None
    assert p["mean_period_return"] == pytest.approx(0.01)


def test_one_sample_and_empty():
    p = perf(curve([100.0]))
    assert p["n_periods"] == 0 and p["total_return"] == 0.0
    for k in ("cagr", "annual_volatility", "sharpe", "sortino", "var", "cvar", "calmar", "exposure",
              "win_rate", "profit_factor", "expectancy", "turnover_annual", "mean_period_return"):
        assert p[k] is None, k
    e = perf(np.zeros(0, EQUITY))
    assert e["n_periods"] == 0 and e["total_return"] is None and e["max_drawdown"] is None


def test_cagr_of_a_short_span_is_none_not_inf():
    # +10% in one second annualises to 1.1 ** 31557600: beyond a float
    eq = curve([100.0, 110.0], np.array([0, 10**9]))
    p = perf(eq)
    assert p["cagr"] is None and p["calmar"] is None and p["total_return"] == pytest.approx(0.1)


def test_ruin_drops_the_periods_it_cannot_measure():
    # 100 -> 0 -> 10: -100%, then no return from 0 (dropped, counted); CAGR -1
    p = perf(curve([100.0, 0.0, 10.0]))
    assert p["periods_dropped"] == 1 and p["n_periods"] == 1
    assert p["mean_period_return"] == -1.0 and p["max_drawdown"] == -1.0


def trades(rows) -> np.ndarray:
    """(side, qty, entry_px, exit_px, pnl, open) -> TRADE rows."""
    t = np.zeros(len(rows), TRADE)
    for i, (side, q, a, b, pnl, op) in enumerate(rows):
        t[i] = (0, side, q, 0, 0 if op else 1, a, b, pnl, 0.0, pnl / (a * q), op)
    return t


def test_trade_stats_count_closed_trades_only():
    tr = trades([(1, 1, 10, 20, 10.0, 0), (1, 1, 10, 5, -5.0, 0), (-1, 1, 10, 10, 0.0, 0),
                 (1, 1, 10, 30, 20.0, 0), (1, 1, 10, 110, 100.0, 1)])
    p = perf(curve(FIVE), tr)
    assert p["n_trades"] == 4 and p["n_open_trades"] == 1
    assert p["win_rate"] == 0.5                           # 10 and 20 win; 0 is not a win
    assert p["gross_profit"] == 30.0 and p["gross_loss"] == -5.0
    assert p["profit_factor"] == 6.0                      # 30 / |-5|
    assert p["expectancy"] == 6.25                        # (10 - 5 + 0 + 20) / 4
    assert p["open_pnl"] == 100.0 and p["closed_pnl"] == 25.0


def test_profit_factor_without_losses_is_none():
    p = perf(curve(FIVE), trades([(1, 1, 10, 20, 10.0, 0), (1, 1, 10, 5, -5.0, 1)]))
    assert p["profit_factor"] is None and p["gross_loss"] == 0.0 and p["win_rate"] == 1.0
    assert p["conventions"]["profit_factor_without_losses"] is None


def test_exposure_is_time_weighted():
    # samples at 0, 1, 2, 3, 5 s; a position after rows 1 and 2 (1 s each) and row 3 (2 s): 4 of 5 s
    eq = curve([100.0] * 5, np.array([0, 1, 2, 3, 5]) * 10**9, gross=[0.0, 10.0, 10.0, 3.0, 0.0])
    assert perf(eq)["exposure"] == pytest.approx(0.8)
    eq["gross"] = [5.0, 0.0, 0.0, 0.0, 7.0]           # the last row opens no interval
    assert perf(eq)["exposure"] == pytest.approx(0.2)


def test_turnover():
    # closed long 10 @ 100 -> 110: 1000 + 1100; open short 5 @ 200: 1000 -> 3100 traded;
    # mean equity (1000 + 1000 + 1200 + 800 + 1000) / 5 = 1000 -> 3.1; over one year: 3.1 a year
    tr = trades([(1, 10, 100, 110, 100.0, 0), (-1, 5, 200, 190, 50.0, 1)])
    p = perf(curve([1000.0, 1000.0, 1200.0, 800.0, 1000.0]), tr)
    assert p["traded_notional"] == 3100.0
    assert p["turnover"] == pytest.approx(3.1) and p["turnover_annual"] == pytest.approx(3.1)


def test_conventions_validation_names_every_bad_field():
    with pytest.raises(ValueError) as e:
        Conventions(periods_per_year=0, risk_free_rate=-2.0, period="1w", var_level=1.0, var_method="mc")
    msg = str(e.value)
    for f in ("periods_per_year", "risk_free_rate", "period", "var_level", "var_method"):
        assert f"Conventions.{f}:" in msg
    with pytest.raises(ValueError, match="Conventions.periods_per_year"):
        Conventions(periods_per_year=float("nan"))
    with pytest.raises(ValueError, match="Conventions.var_level"):
        Conventions(var_level=True)
    with pytest.raises(ValueError, match=r"backtest\.metrics\.ppy: unknown key"):
        Conventions.from_dict({"ppy": 365}, where="backtest.metrics")
    c = Conventions.from_dict({"periods_per_year": 365, "period": "1h"})
    assert c.periods_per_year == 365.0 and isinstance(c.periods_per_year, float)


def test_bad_equity_is_named():
    eq = curve(FIVE)
    eq["t_ns"][3] = 0
    with pytest.raises(ValueError, match=r"equity\['t_ns'\]: must not decrease, row 3"):
        perf(eq)
    eq = curve(FIVE)
    eq["equity"][2] = np.nan
    with pytest.raises(ValueError, match=r"equity\['equity'\]: must be finite, row 2"):
        perf(eq)
    with pytest.raises(ValueError, match="equity: missing field"):
        check_equity(np.zeros(3, [("t_ns", "<i8"), ("equity", "<f8")]))
    with pytest.raises(ValueError, match="initial_equity"):
        performance(curve(FIVE), None, SAMPLE, float("inf"))
    with pytest.raises(ValueError, match="trades: missing field"):
        performance(curve(FIVE), np.zeros(1, [("pnl", "<f8")]), SAMPLE)
    tr = trades([(1, 1, 10, 20, 10.0, 0), (1, 1, 10, 20, 10.0, 0)])
    tr["pnl"][1] = np.nan
    with pytest.raises(ValueError, match=r"trades\[1\]\['pnl'\]: must be finite"):
        performance(curve(FIVE), tr, SAMPLE)


def test_random_curves_are_strict_json():
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = int(rng.integers(1, 300))
        t = np.cumsum(rng.integers(1, 3 * NS_PER_DAY, n))
        v = np.maximum(1000.0 + np.cumsum(rng.normal(0, 20, n)), 1.0)
        for conv in (SAMPLE, Conventions(), Conventions(period="1h", var_method="parametric")):
            p = perf(curve(v, t, gross=rng.integers(0, 2, n) * 1.0), conv=conv, initial=1000.0)
            # beyond strict JSON (checked in perf): the values hold for any curve
            assert p["n_samples"] == n and p["final_equity"] == v[-1]
            assert p["total_return"] == pytest.approx(v[-1] / 1000.0 - 1.0)
            assert p["max_drawdown"] is None or -1.0 <= p["max_drawdown"] <= 0.0
            assert p["exposure"] is None or 0.0 <= p["exposure"] <= 1.0
