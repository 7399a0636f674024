"""Grid search: spec parsing, the known best on a constructed series, failed combinations,
deterministic ordering, the results files, and how the local pool ships the evaluator."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from pyrt_shm.research.executors import InlineExecutor, LocalExecutor
from pyrt_shm.research.optimize import (GridError, ObjectiveError, expand_grid, format_table,
                                        load_grid_file, parse_grid_arg, parse_set_arg,
                                        run_grid, write_results)
from test_optimize_support import (Constant, CountsPickles, Crashes, LoadsFromFile, MaSpread,
                                   Prepares, Sleeps, analytic_pnl, sine_series)

PERIOD = 40


def _table(sweep):
    return [(r.index, r.status, r.params, r.metrics, r.error) for r in sweep.runs]


# --- specs ---------------------------------------------------------------------------------

def test_grid_specs_lists_and_ranges():
    assert parse_grid_arg("stages.signal.params.fast=5,8,13").values == (5, 8, 13)
    slow = parse_grid_arg("stages.signal.params.slow=21:55:8")
    assert slow.values == (21, 29, 37, 45, 53) and slow.integer and (slow.low, slow.high) == (21, 53)
    assert parse_grid_arg("k=1:3").values == (1, 2, 3)
    assert parse_grid_arg("k=0.1:0.5:0.1").values == (0.1, 0.2, 0.3, 0.4, 0.5)
    assert parse_grid_arg("k=-2:2:2").values == (-2, 0, 2)
    assert parse_grid_arg('k=a,"7",true,1.5').values == ("a", "7", True, 1.5)
    # a class path holds colons but is not numeric: a one-item list, not a range
    path = "procs.strategies.ema_cross:EmaCross"
    assert parse_grid_arg(f"k={path}").values == (path,)
    cont = parse_grid_arg("k=0.5:1.5")
    assert cont.values == () and cont.is_range and not cont.integer
    assert parse_set_arg("stages.signal.params.qty=10") == ("stages.signal.params.qty", 10)
    assert parse_set_arg('k="8"') == ("k", "8") and parse_set_arg("k=abc") == ("k", "abc")
    assert parse_set_arg('k=["1m", "5m"]') == ("k", ["1m", "5m"])
    with pytest.raises(GridError, match="--set k: expected KEY=VALUE"):
        parse_set_arg("k")


@pytest.mark.parametrize("arg, words", [
    ("fast", "expected KEY=VALUES"),
    ("fast=", "empty value"),
    ("fast=1,,2", "empty value"),
    ("fast=9:1", "below start"),
    ("fast=1:9:0", "step must be > 0"),
    ("fast=1,2,1", "listed twice"),
    ("a..b=1", "dotted path"),
])
def test_bad_grid_specs_name_the_argument(arg, words):
    with pytest.raises(GridError) as e:
        parse_grid_arg(arg)
    assert f"--grid {arg}" in str(e.value) and words in str(e.value)


def test_expand_grid_errors_all_at_once():
    dims = [parse_grid_arg("a=1,2"), parse_grid_arg("a=3"), parse_grid_arg("x=0.1:0.2")]
    with pytest.raises(GridError) as e:
        expand_grid(dims)
    assert "already swept" in str(e.value)
    with pytest.raises(GridError, match="needs a step"):
        expand_grid([parse_grid_arg("x=0.1:0.2")])
    with pytest.raises(GridError, match="is already set to a value"):
        expand_grid([parse_grid_arg("a.b=1"), parse_grid_arg("a.b.c=2")])
    with pytest.raises(GridError, match="more than the limit"):
        expand_grid([parse_grid_arg("a=1:100"), parse_grid_arg("b=1:100")], max_runs=5_000)
    with pytest.raises(GridError, match="also swept"):
        expand_grid([parse_grid_arg("a=1,2")], fixed={"a": 3})


def test_grid_file(tmp_path):
    f = tmp_path / "sweep.toml"
    f.write_text('[grid]\n"stages.signal.params.fast" = [5, 8]\n'
                 '[grid.stages.signal.params]\nslow = "21:29:8"\n'
                 'qty = { start = 1.0, stop = 2.0, step = 0.5 }\n'
                 '[set.stages.feed.params]\nseed = 7\n')
    dims, fixed = load_grid_file(f)
    assert [(d.key, d.values) for d in dims] == [
        ("stages.signal.params.fast", (5, 8)), ("stages.signal.params.slow", (21, 29)),
        ("stages.signal.params.qty", (1.0, 1.5, 2.0))]
    assert fixed == {"stages.feed.params.seed": 7}
    combos = expand_grid(dims, fixed)
    assert len(combos) == 12
    assert combos[0] == {"stages.feed.params.seed": 7, "stages.signal.params.fast": 5,
                         "stages.signal.params.slow": 21, "stages.signal.params.qty": 1.0}
    bad = tmp_path / "bad.toml"
    bad.write_text('[grids]\na = [1]\n')
    with pytest.raises(GridError) as e:
        load_grid_file(bad)
    assert "bad.toml: grids: unknown table" in str(e.value) and "no [grid] table" in str(e.value)
    with pytest.raises(GridError, match="cannot read grid file"):
        load_grid_file(tmp_path / "missing.toml")


# --- the sweep ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def series():
    return sine_series(4000, PERIOD)


def test_grid_finds_the_analytic_best_and_reports_failed_combos(series):
    t, p = series
    dims = [parse_grid_arg("fast=2,3,5,8,13"), parse_grid_arg("slow=8,13,21,34")]
    with LocalExecutor(workers=2) as ex:
        sweep = run_grid(MaSpread(t, p), dims, ex, objective="pnl", timeout_s=120)
    assert len(sweep.runs) == 20 and sweep.workers == 2 and sweep.executor == "local"
    # every run matches the closed form within its remainder bound
    expected = {}
    for r in sweep.runs:
        f, s = r.params["fast"], r.params["slow"]
        if f < s:
            e, bound = analytic_pnl(f, s, r.metrics["steps"], PERIOD)
            assert abs(r.metrics["pnl"] - e) <= bound + 1e-9, (f, s)
            expected[(f, s)] = e
    best = max(expected, key=expected.get)
    assert best == (2, 13)
    assert (sweep.best.params["fast"], sweep.best.params["slow"]) == best
    pnl = [r.metrics["pnl"] for r in sweep.runs if r.ok]
    assert pnl == sorted(pnl, reverse=True)
    # fast >= slow: (8, 8), (13, 8), (13, 13) are failed rows at the end, with the error
    failed = sweep.runs[-3:]
    assert [(r.params["fast"], r.params["slow"]) for r in failed] == [(8, 8), (13, 8), (13, 13)]
    assert all(r.status == "failed" and "ValueError: fast" in r.error for r in failed)
    assert sweep.failed == 3
    text = format_table(sweep, top=5)
    assert "pnl (max)" in text and "20 runs (3 failed)" in text and "failed x1: ValueError" in text


def test_minimize_reverses_and_ties_break_by_parameter_order():
    dims = [parse_grid_arg("a=3,1,2"), parse_grid_arg("b=0,1")]
    sweep = run_grid(Constant(), dims, InlineExecutor(), objective="score")
    assert [r.index for r in sweep.runs] == list(range(6))   # all tied: product order
    assert [r.metrics["echo"] for r in sweep.runs] == [30, 31, 10, 11, 20, 21]
    up = run_grid(Constant(), dims, InlineExecutor(), objective="echo", minimize=True)
    assert [r.metrics["echo"] for r in up.runs] == [10, 11, 20, 21, 30, 31]


def test_pool_and_inline_give_the_same_table(series):
    t, p = series
    dims = [parse_grid_arg("fast=2:6"), parse_grid_arg("slow=6,9,12")]
    inline = run_grid(MaSpread(t, p), dims, InlineExecutor(), objective="sharpe")
    with LocalExecutor(workers=2) as ex:
        pooled = run_grid(MaSpread(t, p), dims, ex, objective="sharpe", timeout_s=120)
        again = run_grid(MaSpread(t, p), dims, ex, objective="sharpe", timeout_s=120)
    assert _table(pooled) == _table(inline) == _table(again)
    assert len({r.worker for r in pooled.runs}) <= 2


def test_unknown_objective_names_the_metrics(series):
    t, p = series
    with pytest.raises(ObjectiveError) as e:
        run_grid(MaSpread(t, p), [parse_grid_arg("fast=2"), parse_grid_arg("slow=5")], InlineExecutor(),
                 objective="sharp")
    assert "did you mean 'sharpe'" in str(e.value) and "pnl" in str(e.value)


def test_results_files(tmp_path, series):
    t, p = series
    dims = [parse_grid_arg("fast=2,8"), parse_grid_arg("slow=5,13")]
    sweep = run_grid(MaSpread(t, p), dims, InlineExecutor(), objective="pnl")
    paths = write_results(sweep, tmp_path, meta={"command": "test"})
    rows = list(csv.DictReader(open(paths["csv"])))
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    assert rows[0]["fast"] == "2" and rows[0]["slow"] == "13" and rows[0]["status"] == "ok"
    assert rows[-1]["status"] == "failed" and "must be <" in rows[-1]["error"]
    assert rows[-1]["pnl"] == ""
    doc = json.load(open(paths["json"]))
    assert doc["command"] == "test" and doc["objective"] == "pnl" and doc["runs"] == 4
    assert doc["workers"] == 1 and doc["elapsed_s"] > 0 and doc["runs_per_s"] > 0
    assert doc["best"]["params"] == {"fast": 2, "slow": 13} and doc["failed"] == 1
    assert doc["rows"][0]["metrics"]["pnl"] == pytest.approx(float(rows[0]["pnl"]))
    assert not any(n.endswith(".tmp") or ".tmp" in n for n in os.listdir(tmp_path))


# --- how the evaluator reaches the workers -------------------------------------------------

def test_each_worker_loads_the_data_once(tmp_path):
    path = str(tmp_path / "data.npy")
    np.save(path, np.arange(100.0) * 2)
    with LocalExecutor(workers=2) as ex:
        sweep = run_grid(LoadsFromFile(path), [parse_grid_arg("i=0:39")], ex, objective="value",
                         timeout_s=120)
    assert sweep.failed == 0
    assert sweep.best.metrics["value"] == 78.0
    assert {r.metrics["loads"] for r in sweep.runs} == {1}           # never per task
    assert 1 <= len({r.metrics["pid"] for r in sweep.runs}) <= 2


def test_spawned_pool_pickles_the_evaluator_once_per_worker_not_per_task():
    CountsPickles.pickled = 0
    ev = CountsPickles(np.arange(1000.0))
    with LocalExecutor(workers=2, start_method="spawn") as ex:
        sweep = run_grid(ev, [parse_grid_arg("i=0:29")], ex, objective="value", timeout_s=120)
    assert sweep.failed == 0 and sweep.best.metrics["value"] == 29.0
    assert CountsPickles.pickled == 2
    CountsPickles.pickled = 0
    with LocalExecutor(workers=2) as ex:      # fork: inherited, never pickled
        run_grid(ev, [parse_grid_arg("i=0:29")], ex, objective="value", timeout_s=120)
    assert CountsPickles.pickled == 0


def test_prepare_runs_once_in_the_parent_before_forking():
    with LocalExecutor(workers=2) as ex:
        sweep = run_grid(Prepares(), [parse_grid_arg("i=0:9")], ex, objective="value", timeout_s=120)
    assert {r.metrics["prepared_in"] for r in sweep.runs} == {os.getpid()}
    assert {r.metrics["prepares"] for r in sweep.runs} == {1}          # not again in the workers
    assert os.getpid() not in {r.metrics["pid"] for r in sweep.runs}
    with LocalExecutor(workers=2, start_method="spawn") as ex:          # a pickled copy prepares itself
        sweep = run_grid(Prepares(), [parse_grid_arg("i=0:9")], ex, objective="value", timeout_s=120)
    assert all(r.metrics["prepared_in"] == r.metrics["pid"] for r in sweep.runs)


def test_a_dying_worker_fails_rows_not_the_sweep():
    with LocalExecutor(workers=2) as ex:
        sweep = run_grid(Crashes(crash_at=3), [parse_grid_arg("i=0:5")], ex, objective="value",
                         timeout_s=120)
        crashed = next(r for r in sweep.runs if r.params["i"] == 3)
        assert crashed.status == "failed" and "worker process died" in crashed.error
        after = run_grid(Crashes(crash_at=-1), [parse_grid_arg("i=0:3")], ex, objective="value",
                         timeout_s=120)  # a fresh pool
    assert after.failed == 0 and after.best.params == {"i": 3}


def test_timeout_fails_the_unfinished_rows_and_stops_the_workers():
    ex = LocalExecutor(workers=2)
    try:
        sweep = run_grid(Sleeps(), [parse_grid_arg("s=0,30,31")], ex, objective="value", timeout_s=3)
        assert ex._pool is None                      # killed, not waited for
    finally:
        ex.close(kill=True)
    by_s = {r.index: r for r in sweep.runs}
    assert by_s[0].ok
    assert all("timeout" in by_s[i].error for i in (1, 2))
