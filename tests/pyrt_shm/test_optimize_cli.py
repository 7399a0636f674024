"""``pyrt optimize`` end to end: bad command lines exit 2 naming the fault; a tiny grid and a
walk-forward over the real backtest on the bundled data write their results."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from pyrt_shm.research import optimize_cmd


@pytest.mark.parametrize("argv, words", [
    ([], "nothing to sweep"),
    (["--grid", "stages.signal.params.fast"], "--grid stages.signal.params.fast: expected KEY=VALUES"),
    (["--grid", "a=9:1", "--grid", "b=1,1"], "stop (1) is below start (9)"),
    (["--grid", "a=1", "--walk-forward", "rolling", "--train", "30d"],
     "--walk-forward needs --train SPAN and --test SPAN"),
    (["--grid", "a=1", "--train", "30d"], "need --walk-forward"),
    (["--grid", "a=1", "--walk-forward", "rolling", "--train", "30x", "--test", "1d"], "--train '30x'"),
    (["--grid", "a=1", "--executor", "dask"], "needs --scheduler"),
    (["--grid", "a=1", "--workers", "0"], "--workers: must be >= 1"),
    (["--grid", "a=1", "--period", "2d"], "Conventions.period"),
    (["--grid", "a=1", "--config", "/nonexistent/topo.toml"], "cannot read topology file"),
    (["--grid", "a=1", "--data", "/nonexistent/ticks.csv"], "/nonexistent/ticks.csv: no such file"),
    (["--grid-file", "/nonexistent/grid.toml"], "cannot read grid file"),
    (["--grid", "a=1", "--objective", "sharp"],
     "--objective sharp: not a metric of a backtest (did you mean 'sharpe'?)"),
])
def test_bad_command_lines_exit_2_naming_the_fault(argv, words, capsys, tmp_path):
    assert optimize_cmd.main(argv + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


# --- end to end on the real backtest and the bundled data ----------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BARS = os.path.join(ROOT, "config", "backtest-bars.toml")
FAST, SLOW = "stages.signal.params.fast", "stages.signal.params.slow"


def _pyrt(*args, timeout=600):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "pyrt_shm.cli", "optimize", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=timeout)


def test_grid_on_the_bundled_data_writes_results(tmp_path):
    out = tmp_path / "grid"      # the embedded default topology, as `pyrt backtest` runs it
    p = _pyrt("--grid", f"{FAST}=3,8", "--grid", f"{SLOW}=5:21:16", "--set", "stages.signal.params.qty=50",
              "--workers", "2", "--no-progress", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert "DEMO" in p.stdout and "4 runs (1 failed)" in p.stdout and "2 local worker(s)" in p.stdout
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 4
    ok = [r for r in rows if r["status"] == "ok"]
    sharpe = [float(r["sharpe"]) for r in ok]
    assert len(ok) == 3 and sharpe == sorted(sharpe, reverse=True)
    assert rows[-1]["status"] == "failed" and (rows[-1][FAST], rows[-1][SLOW]) == ("8", "5")
    assert "must be > fast" in rows[-1]["error"]
    doc = json.load(open(out / "results.json"))
    assert doc["workers"] == 2 and doc["runs"] == 4 and doc["elapsed_s"] > 0 and doc["runs_per_s"] > 0
    assert doc["data"].endswith("DEMO_1min.csv") and doc["ticks"] == 1950
    assert doc["best"]["params"] == {"stages.signal.params.qty": 50, FAST: int(ok[0][FAST]),
                                     SLOW: int(ok[0][SLOW])}
    assert doc["dropped_metrics"] == {"conventions": 3}     # nested, not a number: counted
    assert all(r["params"]["stages.signal.params.qty"] == 50 for r in doc["rows"])
    assert doc["config"] == "<embedded default>"


def test_walk_forward_and_bayes_on_the_bundled_data(tmp_path):
    out = tmp_path / "wf"
    p = _pyrt("--config", BARS, "--grid", f"{FAST}=3,8", "--grid", f"{SLOW}=13,21", "--walk-forward",
              "anchored", "--train", "780", "--test", "390", "--objective", "total_return",
              "--workers", "2", "--no-progress", "--out", str(out))
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 3 and all(r["oos_status"] == "ok" for r in rows)
    assert [r["test_start"] for r in rows] == ["2024-01-04T14:30:00Z", "2024-01-05T14:30:00Z",
                                               "2024-01-08T14:30:00Z"]
    assert all(r["train_start"] == "2024-01-02T14:30:00Z" for r in rows)
    doc = json.load(open(out / "results.json"))
    assert doc["oos"]["windows"] == 3 and doc["oos"]["joined_by"].startswith("equity curves")
    assert doc["oos"]["start_ns"] >= doc["windows"][0]["test_start_ns"]
    assert doc["runs"] == 3 * 4 + 3
    p = _pyrt("--config", BARS, "--grid", f"{FAST}=3:8", "--grid", f"{SLOW}=13:34", "--search", "bayes",
              "--trials", "6", "--seed", "1", "--workers", "2", "--no-progress", "--out", str(tmp_path / "bayes"))
    assert p.returncode == 0, p.stderr
    doc = json.load(open(tmp_path / "bayes" / "results.json"))
    assert doc["search"] == "bayes" and doc["trials_run"] == 6 and doc["seed"] == 1


def test_backtest_evaluator_uses_only_the_window():
    from pyrt_shm.research.backtest import run_backtest
    from pyrt_shm.research.data import load_ticks
    from pyrt_shm.research.optimize import BacktestEvaluator
    from pyrt_shm.research.backtest_cmd import bundled_data

    data = load_ticks(bundled_data())
    ev = BacktestEvaluator(BARS, data)
    t = data.ticks["exch_ns"]
    window = (int(t[400]), int(t[900]))
    got = ev({FAST: 5, SLOW: 13}, window)
    assert got["_equity"]["t_ns"][0] >= window[0] and got["_equity"]["t_ns"][-1] < window[1]
    direct = run_backtest(BARS, replace(data, ticks=data.ticks[400:900]),
                          overrides={FAST: 5, SLOW: 13}).metrics
    assert {k: got[k] for k in ("total_return", "n_trades", "final_equity")} == \
        {k: direct[k] for k in ("total_return", "n_trades", "final_equity")}
    with pytest.raises(ValueError, match="no ticks in the window"):
        ev({}, (0, 1))
    with pytest.raises(ValueError, match="not sorted by exch_ns"):
        BacktestEvaluator(BARS, replace(data, ticks=data.ticks[::-1]))
