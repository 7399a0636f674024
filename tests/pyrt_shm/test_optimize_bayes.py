"""Bayesian search (optuna TPE): finds a known optimum, reproducible with a seed, shares the
grid's space syntax, reports failures, and names the extra to install when optuna is missing."""
from __future__ import annotations

import sys

import pytest

from pyrt_shm.research.bayes import MissingDependency, distributions, require_optuna, run_bayes
from pyrt_shm.research.executors import InlineExecutor, LocalExecutor
from pyrt_shm.research.optimize import GridError, ObjectiveError, parse_grid_arg
from pyrt_shm.research.walkforward import parse_span, run_walk_forward
from test_optimize_support import Bowl, MaSpread, sine_series

SPACE = [parse_grid_arg("x=0.0:10.0"), parse_grid_arg("y=0:30")]


def test_space_from_grid_specs():
    optuna = require_optuna()
    d = optuna.distributions
    space = distributions([parse_grid_arg("a=21:55:8"), parse_grid_arg("b=0.0:1.0"),
                           parse_grid_arg("c=0.5:1.5:0.25"), parse_grid_arg("d=5,8,13")])
    assert space["a"] == d.IntDistribution(21, 53, step=8)
    assert space["b"] == d.FloatDistribution(0.0, 1.0)
    assert space["c"] == d.FloatDistribution(0.5, 1.5, step=0.25)
    assert space["d"] == d.CategoricalDistribution([5, 8, 13])


def test_tpe_finds_the_optimum_of_a_smooth_function():
    sweep = run_bayes(Bowl(), SPACE, InlineExecutor(), objective="score", trials=60, seed=7)
    best = sweep.best
    assert len(sweep.runs) == 60 and sweep.search == "bayes" and sweep.failed == 0
    assert abs(best.params["x"] - 3.7) < 0.5 and abs(best.params["y"] - 12) <= 1
    assert best.metrics["score"] > -0.5
    assert sorted(r.index for r in sweep.runs) == list(range(60))     # index = trial number
    assert sweep.to_json()["seed"] == 7


def test_same_seed_same_trials_and_parallel_batches_reproduce():
    a = run_bayes(Bowl(), SPACE, InlineExecutor(), objective="score", trials=15, seed=3)
    b = run_bayes(Bowl(), SPACE, InlineExecutor(), objective="score", trials=15, seed=3)
    c = run_bayes(Bowl(), SPACE, InlineExecutor(), objective="score", trials=15, seed=4)

    def trials(s):
        return [(r.index, r.params) for r in sorted(s.runs, key=lambda r: r.index)]

    assert trials(a) == trials(b) and trials(a) != trials(c)
    with LocalExecutor(workers=2) as ex:   # batches of 2: reproducible for a given worker count
        p1 = run_bayes(Bowl(), SPACE, ex, objective="score", trials=10, seed=3, timeout_s=120)
        p2 = run_bayes(Bowl(), SPACE, ex, objective="score", trials=10, seed=3, timeout_s=120)
    assert trials(p1) == trials(p2) and p1.extra["batch"] == 2


def test_failed_trials_and_repeats():
    t, p = sine_series(2000, 40)
    dims = [parse_grid_arg("fast=2,5,13"), parse_grid_arg("slow=5,13")]
    sweep = run_bayes(MaSpread(t, p), dims, InlineExecutor(), objective="pnl", trials=20, seed=1)
    failed = [r for r in sweep.runs if not r.ok]
    assert failed and all("must be <" in r.error for r in failed)
    assert (sweep.best.params["fast"], sweep.best.params["slow"]) == (2, 13)
    # a space of 6 points cannot give 20 fresh trials: the repeats reuse their first result
    assert sweep.extra["cached"] >= 14


def test_bad_input():
    with pytest.raises(GridError, match="--trials"):
        run_bayes(Bowl(), SPACE, InlineExecutor(), objective="score", trials=0)
    with pytest.raises(ObjectiveError, match="did you mean 'score'"):
        run_bayes(Bowl(), SPACE, InlineExecutor(), objective="scor", trials=3)


def test_missing_optuna_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)   # import optuna -> ImportError
    with pytest.raises(MissingDependency) as e:
        run_bayes(Bowl(), SPACE, InlineExecutor(), objective="score", trials=3)
    assert "pip install 'pyrt-shm[research]'" in str(e.value)


def test_walk_forward_with_bayes():
    t, p = sine_series(24 * 60, 40)
    dims = [parse_grid_arg("fast=2,3,5"), parse_grid_arg("slow=8,13,21")]
    wf = run_walk_forward(MaSpread(t, p), dims, InlineExecutor(), t, "anchored", parse_span("12h"),
                          parse_span("6h"), objective="pnl", search="bayes", trials=8, seed=0)
    assert len(wf.windows) == 2 and wf.search == "bayes"
    for w in wf.windows:
        assert len(w.fit.runs) == 8 and w.fit.window == w.window.train
        assert w.test.ok and w.test.metrics["seen_first_ns"] >= w.window.test_start
