"""Walk-forward: spans, windows that tile the data (rolling, anchored, bar counts), and no
look-ahead, proved twice: by the windows each evaluation saw, and by poisoning the future."""
from __future__ import annotations

import numpy as np
import pytest

from pyrt_shm.research.executors import InlineExecutor, LocalExecutor
from pyrt_shm.research.optimize import parse_grid_arg
from pyrt_shm.research.walkforward import Span, make_windows, parse_span, run_walk_forward
from test_optimize_support import CAPITAL, MINUTE, T0, Leaky, MaSpread, sine_series

HOUR = 60 * MINUTE
DIMS = [parse_grid_arg("fast=2,3,5"), parse_grid_arg("slow=8,13,21")]


def _span(text):
    return parse_span(text)


def test_parse_span():
    assert parse_span("30d") == Span(30 * 86_400 * 10**9, "time", "30d")
    assert parse_span("12h").amount == 12 * HOUR and parse_span("1.5h").amount == 90 * MINUTE
    assert parse_span("15m").amount == parse_span("15min").amount == 15 * MINUTE
    assert parse_span("500ms").amount == 500 * 10**6 and parse_span("2w").amount == 14 * 86_400 * 10**9
    assert parse_span("500") == Span(500, "bars", "500") and parse_span("500bars").kind == "bars"
    for bad, words in (("30x", "expected a duration"), ("0d", "must be > 0"), ("1.5bars", "whole number"),
                       ("-3d", "expected a duration")):
        with pytest.raises(ValueError, match=words) as e:
            parse_span(bad, "--train")
        assert f"--train {bad!r}" in str(e.value)


def test_rolling_and_anchored_windows_tile_the_data():
    t = T0 + np.arange(0, 72 * 60) * MINUTE             # 72 h of minutes
    end = int(t[-1]) + 1
    for mode in ("rolling", "anchored"):
        windows, skipped = make_windows(t, mode, _span("12h"), _span("6h"))
        assert not skipped and len(windows) == 10
        assert windows[0].test_start == T0 + 12 * HOUR
        assert windows[-1].test_end == end                 # cut at the data's end
        for a, b in zip(windows, windows[1:]):
            assert a.test_end == b.test_start               # no gap, no overlap
        for w in windows:
            assert w.train_start < w.test_start < w.test_end
            if mode == "rolling":
                assert w.test_start - w.train_start == 12 * HOUR
            else:
                assert w.train_start == T0
    # a step longer than the test leaves gaps between test windows, never overlaps
    windows, _ = make_windows(t, "rolling", _span("12h"), _span("6h"), _span("12h"))
    assert [w.test_start - T0 for w in windows] == [h * HOUR for h in (12, 24, 36, 48, 60)]


def test_window_errors():
    t = T0 + np.arange(0, 48 * 60) * MINUTE
    with pytest.raises(ValueError, match="would overlap"):
        make_windows(t, "rolling", _span("12h"), _span("6h"), _span("3h"))
    with pytest.raises(ValueError, match="durations for all three or bar counts"):
        make_windows(t, "rolling", _span("12h"), _span("100"))
    with pytest.raises(ValueError, match="leave no window") as e:
        make_windows(t, "rolling", _span("30d"), _span("10d"))
    assert "--train 30d" in str(e.value) and "2 days" in str(e.value)
    with pytest.raises(ValueError, match="must be one of rolling, anchored"):
        make_windows(t, "expanding", _span("12h"), _span("6h"))


def test_bar_count_windows_follow_the_data_clock():
    # 3 sessions of 10 bars with nights between them; two ticks share some timestamps
    t = np.concatenate([T0 + d * 24 * HOUR + np.arange(10) * HOUR for d in range(3)])
    t = np.sort(np.concatenate([t, t[::7]]))
    windows, skipped = make_windows(t, "rolling", _span("8"), _span("5bars"))
    clock = np.unique(t)
    assert not skipped and len(windows) == 5          # tests start at bars 8, 13, 18, 23, 28
    for k, w in enumerate(windows):
        assert w.train_start == clock[5 * k] and w.test_start == clock[8 + 5 * k]
        n_test = len(np.unique(t[(t >= w.test_start) & (t < w.test_end)]))
        assert n_test == (5 if k < 4 else 2)          # the last is cut at the end
        assert len(np.unique(t[(t >= w.train_start) & (t < w.test_start)])) == 8


def test_windows_without_ticks_are_skipped_and_reported():
    day = 24 * HOUR
    t = np.concatenate([T0 + np.arange(0, 2 * day, HOUR), T0 + 4 * day + np.arange(0, 2 * day, HOUR)])
    windows, skipped = make_windows(t, "rolling", _span("1d"), _span("1d"))
    # tests on days 2 and 3 have no tick; the one on day 4 has no tick to train on (day 3)
    assert [w.test_start for w in windows] == [T0 + day, T0 + 5 * day]
    assert [w.index for w in windows] == [0, 1]
    assert len(skipped) == 3 and all("no tick" in s for s in skipped)
    assert "out-of-sample" in skipped[0] and "in-sample" in skipped[2]


# --- evaluation ----------------------------------------------------------------------------

def _walk(evaluator, executor=None, t=None, mode="rolling", train="12h", test="6h"):
    return run_walk_forward(evaluator, DIMS, executor or InlineExecutor(),
                            t if t is not None else evaluator.t, mode, _span(train), _span(test),
                            objective="pnl")


@pytest.mark.parametrize("mode", ["rolling", "anchored"])
def test_every_evaluation_saw_only_its_window(mode):
    t, p = sine_series(72 * 60, 40)
    with LocalExecutor(workers=2) as ex:
        wf = _walk(MaSpread(t, p), ex, mode=mode)
    assert len(wf.windows) == 10 and wf.workers == 2
    for w in wf.windows:
        win = w.window
        assert len(w.fit.runs) == 9 and w.fit.best is not None
        for r in w.fit.runs:
            if r.ok:
                assert r.window == win.train
                assert win.train_start <= r.metrics["seen_first_ns"]
                assert r.metrics["seen_last_ns"] < win.test_start            # fit: t < test start
                if mode == "anchored":
                    assert r.metrics["seen_first_ns"] == T0
        assert w.test.ok and w.test.params == w.fit.best.params
        assert win.test_start <= w.test.metrics["seen_first_ns"]             # test: t >= test start
        assert w.test.metrics["seen_last_ns"] < win.test_end
        assert w.test.metrics["seen_n"] == ((t >= win.test_start) & (t < win.test_end)).sum()
    doc = wf.to_json()
    assert doc["runs"] == 100 and doc["windows"][0]["params"] == w.fit.best.params


def _summary(wf):
    return [(w.window, w.fit.best.params, w.fit.best.metrics, w.test.metrics if w.test else None)
            for w in wf.windows]


def _poisoned(t, p, tau):
    q = p.copy()
    late = t >= tau
    q[late] = 100.0 + 50.0 * np.sin(2 * np.pi * np.arange(late.sum()) / 12)   # another market
    return q


def _first_difference(clean, dirty):
    """(window, part) of the first difference between two walk-forward summaries."""
    for (wa, ba, ia, oa), (wb, bb, ib, ob) in zip(clean, dirty):
        assert wa == wb
        if (ba, ia) != (bb, ib):
            return wa.index, "in-sample"
        if oa != ob:
            return wa.index, "out-of-sample"
    return None


def test_poisoned_future_changes_nothing_before_it():
    t, p = sine_series(72 * 60, 40)
    k = 5
    tau = T0 + (12 + 6 * k) * HOUR                     # window k's test start
    clean = _summary(_walk(MaSpread(t, p)))
    dirty = _summary(_walk(MaSpread(t, _poisoned(t, p, tau))))
    assert clean[k][0].test_start == tau
    # windows before k: identical; window k: same fit and choice, only its test differs
    assert _first_difference(clean, dirty) == (k, "out-of-sample")
    assert clean[k][1] == dirty[k][1] and clean[k][2] == dirty[k][2]
    # the poison does change what a fit over it would choose: the check has teeth
    late = _walk(MaSpread(t, _poisoned(t, p, T0)), train="12h", test="6h")
    assert late.windows[k].fit.best.params != clean[k][1]
    # and an evaluator that peeks 3 h past its window is caught one window earlier
    leak = 3 * HOUR
    leaky_clean = _summary(_walk(Leaky(t, p, leak)))
    leaky_dirty = _summary(_walk(Leaky(t, _poisoned(t, p, tau), leak)))
    assert _first_difference(leaky_clean, leaky_dirty) == (k - 1, "out-of-sample")


def test_joined_out_of_sample_is_one_account():
    t, p = sine_series(72 * 60, 40)
    wf = _walk(MaSpread(t, p, equity=True))
    pnl = sum(w.test.metrics["pnl"] for w in wf.windows)
    oos = wf.oos
    assert oos["windows"] == 10 and oos["windows_failed"] == 0
    assert oos["joined_by"].startswith("equity curves")
    assert oos["initial_equity"] == CAPITAL
    assert oos["final_equity"] == pytest.approx(CAPITAL + pnl)
    assert oos["total_return"] == pytest.approx(pnl / CAPITAL)
    assert oos["start_ns"] >= wf.windows[0].window.test_start
    assert oos["max_drawdown"] <= 0 and "sharpe" in oos
    assert all(w.test.series is None for w in wf.windows)     # curves dropped once joined


def test_joined_without_curves_compounds_total_return():
    t, p = sine_series(72 * 60, 40)
    wf = _walk(MaSpread(t, p))
    expected = np.prod([1 + w.test.metrics["total_return"] for w in wf.windows]) - 1
    assert wf.oos["total_return"] == pytest.approx(expected)
    assert "compounded" in wf.oos["joined_by"]


def test_failed_windows_are_reported_not_fatal():
    t, p = sine_series(72 * 60, 40)
    dims = [parse_grid_arg("fast=2,3"), parse_grid_arg("slow=21")]
    # 20 one-minute samples per test window cannot feed slow = 21: every test run fails
    wf = run_walk_forward(MaSpread(t, p), dims, InlineExecutor(), t, "rolling", _span("12h"),
                          _span("20m"), step=_span("6h"), objective="pnl")
    assert len(wf.windows) == 10
    assert all(w.fit.best is not None and not w.test.ok and "samples in the window" in w.test.error
               for w in wf.windows)
    assert wf.oos == {"windows": 10, "windows_failed": 10}
    assert wf.to_json()["windows"][0]["oos_status"] == "failed"
