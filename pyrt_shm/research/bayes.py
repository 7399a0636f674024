"""Bayesian search over the ``--grid`` space with optuna's TPE sampler (``--search bayes``).

The space comes from the same dimensions as the grid: an integer range becomes an
``IntDistribution(low, high, step)``, a float range a ``FloatDistribution`` (stepped when it
has a step, continuous when not), a list a ``CategoricalDistribution``. The sampler is
``TPESampler(seed=seed, constant_liar=True)``: the liar keeps the trials of one batch apart.

Trials run in batches as wide as the executor (ask ``workers`` trials, evaluate them in
parallel, tell the results), so the sequence of trials depends on the seed **and the number
of workers**: the same seed and worker count give the same trials and the same table. A
trial whose parameters were already evaluated reuses that result (evaluations are
deterministic; TPE repeats points of a discrete space) and is counted in ``cached``. A failed
run is told to optuna as a failed trial; the search goes on.

optuna is an optional dependency: ``pip install 'pyrt-shm[research]'``.
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .executors import Task
from .optimize import Dimension, GridError, Sweep, check_keys, rank_runs, run_tasks, start_executor
from .progress import Progress

__all__ = ["require_optuna", "distributions", "run_bayes", "MissingDependency"]


class MissingDependency(ImportError):
    """An optional dependency of the research side is not installed."""


def require_optuna():
    """Import optuna or raise MissingDependency naming the extra that provides it."""
    try:
        import optuna
    except ImportError:
        raise MissingDependency("--search bayes needs optuna, which is not installed: "
                                "pip install 'pyrt-shm[research]'") from None
    return optuna


def distributions(dims: Sequence[Dimension]) -> dict:
    """The optuna search space of ``dims`` (module doc), keyed by dotted key."""
    optuna = require_optuna()
    d = optuna.distributions
    space = {}
    for dim in dims:
        if not dim.is_range:
            space[dim.key] = d.CategoricalDistribution(list(dim.values))
        elif dim.integer:
            space[dim.key] = d.IntDistribution(int(dim.low), int(dim.high), step=int(dim.step))
        else:
            space[dim.key] = d.FloatDistribution(float(dim.low), float(dim.high), step=dim.step)
    return space


def _frozen(params: Mapping) -> tuple:
    return tuple(sorted(params.items()))


def run_bayes(evaluator, dims: Sequence[Dimension], executor, objective: str = "sharpe",
              minimize: bool = False, trials: int = 50, seed: int = 0,
              window: tuple[int, int] | None = None, fixed: Mapping[str, Any] | None = None,
              progress: bool = False, timeout_s: float | None = None) -> Sweep:
    """Run ``trials`` TPE trials; return every trial as a ranked ``Sweep`` (row index = trial
    number). ObjectiveError as soon as a successful run lacks ``objective``."""
    optuna = require_optuna()
    if not isinstance(trials, int) or trials < 1:
        raise GridError([f"--trials: must be an integer >= 1, got {trials!r}"])
    if not dims:
        raise GridError(["no dimensions to search: give --grid KEY=VALUES or --grid-file FILE"])
    check_keys(dims, fixed)
    space = distributions(dims)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per trial otherwise
    try:
        sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
        study = optuna.create_study(direction="minimize" if minimize else "maximize", sampler=sampler)
        return _search(optuna, study, space, evaluator, dims, executor, objective, minimize,
                       trials, seed, window, fixed, progress, timeout_s)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _search(optuna, study, space, evaluator, dims, executor, objective, minimize, trials, seed,
            window, fixed, progress, timeout_s) -> Sweep:
    startup = start_executor(executor, evaluator)
    t0 = time.perf_counter()
    deadline = None if timeout_s is None else t0 + timeout_s
    done: dict[tuple, Any] = {}    # params -> Run, for repeated suggestions
    runs, cached = [], 0
    batch = max(1, int(executor.workers))
    bar = Progress(trials, "bayes") if progress else None
    try:
        while len(runs) < trials:
            asked = [study.ask(space) for _ in range(min(batch, trials - len(runs)))]
            params = [dict(fixed or {}) | {d.key: t.params[d.key] for d in dims} for t in asked]
            fresh, seen = [], set()
            for trial, p in zip(asked, params):
                key = _frozen(p)
                if key not in done and key not in seen:
                    seen.add(key)
                    fresh.append(Task(trial.number, p, window))
            left = None if deadline is None else max(0.0, deadline - time.perf_counter())
            new, _ = run_tasks(executor, evaluator, fresh, False, "bayes", left)
            for run in new:
                done[_frozen(run.params)] = run
            for trial, p in zip(asked, params):
                base = done[_frozen(p)]
                if base.index != trial.number:
                    cached += 1
                run = _copy_run(base, trial.number)
                runs.append(run)
                value = run.metrics.get(objective) if run.ok else None
                if run.ok and objective not in run.metrics:
                    rank_runs([run], objective, minimize)  # raises ObjectiveError, naming the metrics
                if value is not None and math.isfinite(value):
                    study.tell(trial, float(value))
                else:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                if bar:
                    bar.advance()
            if deadline is not None and time.perf_counter() > deadline:
                break
    finally:
        if bar:
            bar.close()
    elapsed = time.perf_counter() - t0
    extra = {"startup_s": round(startup, 6), "trials": trials, "trials_run": len(runs), "seed": seed,
             "cached": cached,
             "sampler": "optuna TPESampler(seed, constant_liar=True)", "batch": batch,
             "space": {k: repr(v) for k, v in space.items()}}
    return Sweep(rank_runs(runs, objective, minimize), [d.key for d in dims], objective, minimize,
                 "bayes", executor.name, executor.workers, elapsed, window, extra)


def _copy_run(run, index: int):
    from dataclasses import replace
    return run if run.index == index else replace(run, index=index, elapsed_s=0.0,
                                                  params=dict(run.params))
