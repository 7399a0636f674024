"""Report files: summary.json / trades.csv / equity.csv / report.html written and parseable."""
from __future__ import annotations

import csv
import json
import re
from xml.etree import ElementTree

import numpy as np
import pytest

from layouts.orders import BUY, FILL, FILL_FULL, SELL
from pyrt_shm.research.equity import EQUITY, fill_drawdown
from pyrt_shm.research.metrics import Conventions, performance
from pyrt_shm.research.report_files import iso_utc, json_safe, write_reports
from pyrt_shm.research.report_html import MAX_POINTS, downsample, render_html
from pyrt_shm.research.trades import round_trips

T0 = 1_704_205_800 * 10**9          # 2024-01-02T14:30:00Z
SYMS = ("AAPL", "MSFT")


def strict_json(path) -> dict:
    def no_constant(c):
        raise AssertionError(f"{path}: non-JSON constant {c}")
    with open(path) as f:
        return json.loads(f.read(), parse_constant=no_constant)


def backtest(n=50, seed=3):
    """A small run: executions on two symbols, their trades, an equity curve and the metrics."""
    rng = np.random.default_rng(seed)
    x = np.zeros(12, FILL)
    x["status"], x["sym"] = FILL_FULL, [0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 1, 0]
    x["side"] = [BUY, SELL, BUY, SELL, BUY, SELL, SELL, BUY, BUY, SELL, SELL, BUY]
    x["qty"] = [10, 5, 10, 15, 5, 5, 10, 10, 5, 5, 5, 7]
    x["price"] = 100 + rng.normal(0, 2, 12)
    x["fee"] = 0.1
    x["venue_ns"] = T0 + np.arange(12) * 3_600 * 10**9
    tr = round_trips(x, {0: 101.0, 1: 99.0})
    eq = np.zeros(n, EQUITY)
    eq["t_ns"] = T0 + np.arange(n) * 1_800 * 10**9
    eq["equity"] = 10_000 + np.cumsum(rng.normal(0, 25, n))
    eq["gross"] = np.abs(rng.normal(0, 500, n))
    fill_drawdown(eq, 10_000.0)
    perf = performance(eq, tr, Conventions(period="1h", periods_per_year=252 * 6.5), 10_000.0)
    return {"performance": perf, "run": {"strategy": "ema", "seed": seed}}, tr, eq


def test_iso_utc_has_nanoseconds():
    assert iso_utc(np.array([T0 + 1, 0])) == ["2024-01-02T14:30:00.000000001Z", "1970-01-01T00:00:00.000000000Z"]


def test_write_reports_files_parse_back(tmp_path):
    summary, tr, eq = backtest()
    summary["run"]["bad"] = float("nan")
    summary["run"]["ratio"] = np.float64(np.inf)
    summary["run"][7] = np.int64(3)                       # non-string key, numpy int
    out = write_reports(tmp_path / "r", summary, tr, eq, SYMS)
    assert set(out) == {"summary", "trades", "equity", "html"}
    # summary.json: strict JSON, keys sorted, NaN/inf made null and listed
    s = strict_json(out["summary"])
    assert s["run"]["bad"] is None and s["run"]["ratio"] is None and s["run"]["7"] == 3
    assert s["non_finite_fields"] == ["run.bad", "run.ratio"]
    assert s["performance"]["n_trades"] == summary["performance"]["n_trades"]
    text = open(out["summary"]).read()
    keys = re.findall(r'^  "([^"]+)":', text, re.M)
    assert keys == sorted(keys) == ["non_finite_fields", "performance", "run"]
    # trades.csv: one row per trade, names, ISO times beside the ns, floats exact
    with open(out["trades"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(tr)
    for r, t in zip(rows, tr):
        assert r["symbol"] == SYMS[t["sym"]]
        assert r["side"] == ("long" if t["side"] > 0 else "short")
        assert int(r["entry_ns"]) == t["entry_ns"] and float(r["pnl"]) == t["pnl"]
        assert float(r["qty"]) == t["qty"] and float(r["exit_px"]) == t["exit_px"]
        assert re.fullmatch(r"2024-01-0[23]T\d\d:\d\d:\d\d\.\d{9}Z", r["entry_time"])
        assert (r["exit_time"] == "") == bool(t["open"]) and int(r["open"]) == t["open"]
    assert any(r["open"] == "1" for r in rows) and any(r["open"] == "0" for r in rows)
    # equity.csv
    with open(out["equity"], newline="") as f:
        erows = list(csv.DictReader(f))
    assert len(erows) == len(eq)
    assert [float(r["equity"]) for r in erows] == eq["equity"].tolist()
    assert [float(r["drawdown"]) for r in erows] == eq["drawdown"].tolist()
    assert erows[0]["time"] == "2024-01-02T14:30:00.000000000Z" and int(erows[1]["t_ns"]) == T0 + 1_800 * 10**9
    assert not list((tmp_path / "r").glob("*.tmp*"))


def test_html_has_the_charts_the_metrics_and_the_trades(tmp_path):
    summary, tr, eq = backtest()
    out = write_reports(tmp_path, summary, tr, eq, SYMS, max_html_trades=3)
    page = open(out["html"], encoding="utf-8").read()
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 2
    assert "<script" not in page and "src=" not in page and "href=" not in page   # self-contained
    assert "NaN" not in page and "inf" not in page.replace("info", "")
    sharpe = summary["performance"]["sharpe"]
    assert "<td>Sharpe</td>" in page and f"<td>{sharpe:,.4g}</td>" in page
    assert "<td>Max drawdown</td>" in page and "<td>Profit factor</td>" in page
    # markers: one entry per trade, one exit per closed trade
    assert page.count('class="long"') + page.count('class="short"') == len(tr)
    assert page.count('class="exit"') == int((tr["open"] == 0).sum())
    assert f"first 3 of {len(tr)} trades" in page and page.count("<td>AAPL</td>") + page.count("<td>MSFT</td>") == 3
    assert '<polygon class="dd"' in page and '<polyline class="eq"' in page
    for svg in re.findall(r"<svg.*?</svg>", page, re.S):       # each chart is well-formed XML
        assert ElementTree.fromstring(svg).tag.endswith("svg")


def test_profit_factor_without_losses_is_said_in_words():
    page = render_html({"profit_factor": None, "gross_loss": 0.0, "gross_profit": 5.0},
                       round_trips(np.zeros(0, FILL), {}), np.zeros(0, EQUITY), SYMS)
    assert "<td>Profit factor</td><td>no losing trade</td>" in page


def test_big_curve_is_downsampled_keeping_extremes():
    rng = np.random.default_rng(1)
    n = 100_003
    t = np.arange(n, dtype=np.int64) * 10**9
    v = np.cumsum(rng.normal(0, 1, n))
    td, vd = downsample(t, v)
    assert len(vd) <= MAX_POINTS and (np.diff(td) > 0).all()
    assert vd.max() == v.max() and vd.min() == v.min() and td[0] == 0 and td[-1] == t[-1]
    small_t, small_v = downsample(t[:10], v[:10])
    assert len(small_v) == 10
    eq = np.zeros(n, EQUITY)
    eq["t_ns"], eq["equity"] = t, 1e6 + v
    fill_drawdown(eq)
    page = render_html({"total_return": 0.1}, round_trips(np.zeros(0, FILL), {}), eq, SYMS)
    pts = re.search(r'<polyline class="eq" points="([^"]+)"', page).group(1).split()
    assert 2 < len(pts) <= MAX_POINTS and "<td>Total return</td><td>10.00%</td>" in page


def test_bad_symbol_id_writes_nothing(tmp_path):
    summary, tr, eq = backtest()
    with pytest.raises(ValueError, match=r"trades\[\d+\]\['sym'\]: 1 is not a symbol id \(symbols has 1 names\)"):
        write_reports(tmp_path / "x", summary, tr, eq, ("AAPL",))
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="summary: expected a dict"):
        write_reports(tmp_path / "y", [1], tr, eq, SYMS)
    eq["t_ns"][5] = 0
    with pytest.raises(ValueError, match=r"equity\['t_ns'\]"):
        write_reports(tmp_path / "z", summary, tr, eq, SYMS)


def test_empty_run_still_reports(tmp_path):
    eq = np.zeros(0, EQUITY)
    tr = round_trips(np.zeros(0, FILL), {})
    summary = {"performance": performance(eq, tr, Conventions(), 1000.0)}
    out = write_reports(tmp_path, summary, tr, eq, SYMS)
    assert strict_json(out["summary"])["performance"]["n_periods"] == 0
    assert "No equity samples" in open(out["html"]).read()
    with open(out["trades"], newline="") as f:
        assert list(csv.reader(f)) == [["trade", "symbol", "side", "qty", "entry_time", "entry_ns", "exit_time",
                                        "exit_ns", "entry_px", "exit_px", "pnl", "fees", "ret", "open"]]


def test_json_safe():
    bad = []
    assert json_safe({"a": [1.0, np.nan, np.array([np.inf, 2])], "b": np.bool_(True), 3: None}, "", bad) == \
        {"a": [1.0, None, [None, 2.0]], "b": True, "3": None}
    assert bad == ["a[1]", "a[2][0]"]


def test_end_to_end_no_nan(tmp_path):
    rng = np.random.default_rng(11)
    n = 400
    x = np.zeros(n, FILL)
    x["status"], x["sym"] = FILL_FULL, rng.integers(0, 2, n)
    x["side"] = rng.choice([BUY, SELL], n)
    x["qty"] = rng.integers(1, 20, n) * 5.0
    x["price"] = 50 + np.cumsum(rng.normal(0, 0.2, n))
    x["fee"] = 0.05
    x["venue_ns"] = T0 + np.arange(n) * 60 * 10**9
    tr = round_trips(x, np.array([x["price"][-1], x["price"][-1]]))
    eq = np.zeros(n, EQUITY)
    eq["t_ns"] = x["venue_ns"]
    eq["equity"] = 5_000 + np.cumsum(rng.normal(0, 5, n))
    fill_drawdown(eq, 5_000.0)
    for conv in (Conventions(period="1m", periods_per_year=252 * 390), Conventions(period="1d")):
        summary = {"performance": performance(eq, tr, conv, 5_000.0)}
        out = write_reports(tmp_path / conv.period, summary, tr, eq, SYMS)
        s = strict_json(out["summary"])
        assert "non_finite_fields" not in s and s["performance"]["n_trades"] == int((tr["open"] == 0).sum())
