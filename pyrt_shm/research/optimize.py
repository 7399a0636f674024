"""Parameter grids, the ranked results table and the objective of ``pyrt optimize``.

A **dimension** is one dotted topology key and the values it takes, written as on the
command line (``--grid KEY=SPEC``) or in a TOML file's ``[grid]`` table:

* a list: ``stages.signal.params.fast=5,8,13`` (ints, floats, ``true``/``false``, or text;
  ``"..."`` quotes text that would read as a number);
* a range, ``start:stop[:step]``, **stop included** when the steps land on it:
  ``stages.signal.params.slow=21:55:8`` is 21, 29, 37, 45, 53. Integer ranges default to
  step 1. A float range needs a step for a grid; the Bayesian search samples it continuously
  without one;
* in TOML also an array (``fast = [5, 8, 13]``), a spec string (``slow = "21:55:8"``) or a
  range table (``slow = { start = 21, stop = 55, step = 8 }``); nested tables spell the
  dotted key (``[grid.stages.signal.params]``). A ``[set]`` table holds fixed overrides
  (``--set KEY=VALUE`` on the command line, the value read as TOML).

The grid is the cartesian product of the dimensions in the order given (the first varies
slowest); a combination's ``index`` is its position in that product. The results table ranks
runs by the objective (a metric name, maximised unless ``minimize``), failed runs and runs
without the objective last, ties broken by index: the same inputs always give the same table.
"""
from __future__ import annotations

import csv
import difflib
import io
import itertools
import json
import math
import os
import re
import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ConfigError, override_from_dotted
from .backtest_cmd import parse_value
from .executors import Run, Task
from .progress import Progress
from .report_files import write_atomic

__all__ = ["GridError", "ObjectiveError", "Dimension", "parse_grid_arg", "parse_set_arg",
           "load_grid_file", "check_keys", "grid_size", "expand_grid", "check_objective",
           "rank_runs", "Sweep", "start_executor", "run_tasks", "run_grid", "format_table",
           "write_results", "BacktestEvaluator", "HEADLINE", "MAX_RUNS"]

#: A grid larger than this is refused unless the caller raises ``max_runs`` (a typo in a
#: range should not queue a week of backtests).
MAX_RUNS = 100_000
#: Metrics printed beside the objective when the evaluator reports them.
HEADLINE = ("total_return", "sharpe", "max_drawdown", "n_trades")
_KEY = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


class GridError(ValueError):
    """The grid (or a fixed override) is unusable; ``errors`` has one line per problem."""

    def __init__(self, errors: Iterable[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class ObjectiveError(ValueError):
    """The objective is not a metric the evaluator reports."""


@dataclass(frozen=True)
class Dimension:
    """One swept key. ``values``: the grid's values (empty for a float range without a step).
    For a range, ``low``/``high``/``step`` describe it (``high`` = the last value reached)."""

    key: str
    values: tuple
    source: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    integer: bool = False

    @property
    def is_range(self) -> bool:
        return self.low is not None


# --- parsing -------------------------------------------------------------------------------

def _scalar(token: str, where: str):
    """A list item: int, float, bool, quoted or bare text."""
    t = token.strip()
    if not t:
        raise GridError([f"{where}: empty value"])
    if len(t) >= 2 and t[0] == t[-1] == '"':
        return t[1:-1]
    if _INT.fullmatch(t):
        return int(t)
    if _FLOAT.fullmatch(t):
        return float(t)
    if t in ("true", "false"):
        return t == "true"
    return t


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _range(key: str, start, stop, step, where: str) -> Dimension:
    """Build a range dimension from numbers (``step`` None = 1 for ints, continuous for floats)."""
    errors = [f"{where}: {name} must be a number, got {v!r}"
              for name, v in (("start", start), ("stop", stop), ("step", step))
              if v is not None and not _is_number(v) or (name != "step" and v is None)]
    if errors:
        raise GridError(errors)
    if any(isinstance(v, float) and not math.isfinite(v) for v in (start, stop, step)):
        raise GridError([f"{where}: start, stop and step must be finite"])
    integer = all(isinstance(v, int) for v in (start, stop, step) if v is not None)
    if step is None and integer:
        step = 1
    if step is not None and step <= 0:
        raise GridError([f"{where}: step must be > 0, got {step}"])
    if stop < start:
        raise GridError([f"{where}: stop ({stop}) is below start ({start})"])
    if step is None:  # continuous float range: Bayesian only
        return Dimension(key, (), where, float(start), float(stop), None, False)
    n = int(math.floor((stop - start) / step + 1e-9)) + 1
    if n > MAX_RUNS:
        raise GridError([f"{where}: {n} values; more than {MAX_RUNS}"])
    if integer:
        values = tuple(start + i * step for i in range(n))
    else:  # start + i*step, not repeated addition: no drift; rounding hides float dust
        values = tuple(float(np.round(start + i * step, 12)) for i in range(n))
    return Dimension(key, values, where, values[0], values[-1], step, integer)


def _spec(key: str, spec: str, where: str) -> Dimension:
    parts = spec.split(":")
    numeric = "," not in spec and len(parts) in (2, 3) and all(
        _INT.fullmatch(p.strip()) or _FLOAT.fullmatch(p.strip()) for p in parts)
    if numeric:
        nums = [_scalar(p, where) for p in parts]
        return _range(key, nums[0], nums[1], nums[2] if len(nums) == 3 else None, where)
    values = tuple(_scalar(tok, where) for tok in spec.split(","))
    return _list(key, values, where)


def _list(key: str, values: Sequence, where: str) -> Dimension:
    if not values:
        raise GridError([f"{where}: no values"])
    seen = set()
    for v in values:
        if not isinstance(v, (str, int, float, bool)):
            raise GridError([f"{where}: values must be numbers, booleans or text, got {v!r}"])
        if (type(v), v) in seen:
            raise GridError([f"{where}: value {v!r} is listed twice"])
        seen.add((type(v), v))
    return Dimension(key, tuple(values), where)


def _check_key(key: str, where: str) -> str:
    key = key.strip()
    if not _KEY.fullmatch(key):
        raise GridError([f"{where}: key {key!r} must be a dotted path like "
                         "stages.signal.params.fast"])
    return key


def parse_grid_arg(text: str) -> Dimension:
    """Parse one ``--grid KEY=SPEC`` (module doc); GridError names the argument."""
    where = f"--grid {text}"
    key, eq, spec = text.partition("=")
    if not eq:
        raise GridError([f"{where}: expected KEY=VALUES (e.g. stages.signal.params.fast=5,8,13 "
                         "or ...slow=21:55:8)"])
    return _spec(_check_key(key, where), spec.strip(), where)


def parse_set_arg(text: str) -> tuple[str, Any]:
    """Parse one ``--set KEY=VALUE`` (a fixed override applied to every run). The value is
    TOML (``5``, ``2.5``, ``true``, ``"text"``, ``["1m"]``), else bare text, as in ``pyrt backtest``."""
    where = f"--set {text}"
    key, eq, value = text.partition("=")
    if not eq or not value.strip():
        raise GridError([f"{where}: expected KEY=VALUE"])
    return _check_key(key, where), parse_value(value.strip())


def _range_table(v) -> bool:
    return isinstance(v, dict) and {"start", "stop"} <= set(v) <= {"start", "stop", "step"}


def load_grid_file(path: str | os.PathLike) -> tuple[list[Dimension], dict]:
    """Read ``[grid]`` (dimensions) and ``[set]`` (fixed overrides) from a TOML file."""
    source = os.fspath(path)
    try:
        data = tomllib.loads(Path(source).read_text(encoding="utf-8"))
    except OSError as exc:
        raise GridError([f"{source}: cannot read grid file: {exc.strerror or exc}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GridError([f"{source}: invalid TOML: {exc}"]) from None
    errors = [f"{source}: {k}: unknown table (a grid file has [grid] and [set])"
              for k in data if k not in ("grid", "set")]
    if "grid" not in data:
        errors.append(f"{source}: no [grid] table")
    if errors:
        raise GridError(errors)
    dims, fixed = [], {}

    def walk(node, prefix, table):
        if not isinstance(node, dict):
            raise GridError([f"{source}: {table}: must be a table"])
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else k
            where = f"{source}: {table}.{key}"
            if table == "set":
                if isinstance(v, dict):
                    walk(v, key, table)
                else:
                    fixed[_check_key(key, where)] = v
            elif _range_table(v):
                dims.append(_range(_check_key(key, where), v["start"], v["stop"], v.get("step"), where))
            elif isinstance(v, dict):
                walk(v, key, table)
            elif isinstance(v, list):
                dims.append(_list(_check_key(key, where), v, where))
            elif isinstance(v, str):
                dims.append(_spec(_check_key(key, where), v, where))
            else:
                dims.append(_list(_check_key(key, where), [v], where))

    problems = []
    for table in ("grid", "set"):
        try:
            walk(data.get(table, {}), "", table)
        except GridError as exc:
            problems += exc.errors
    if problems:
        raise GridError(problems)
    return dims, fixed


# --- the product ---------------------------------------------------------------------------

def check_keys(dims: Sequence[Dimension], fixed: Mapping[str, Any] | None = None) -> None:
    """Every key once; no key both a value and a table (``a.b`` and ``a.b.c``)."""
    errors, first = [], {}
    for d in dims:
        if d.key in first:
            errors.append(f"{d.source}: {d.key} is already swept by {first[d.key]}")
        first.setdefault(d.key, d.source)
    for k in fixed or {}:
        if k in first:
            errors.append(f"--set {k}: {k} is also swept by {first[k]}")
    if not errors:
        probe = {d.key: 0 for d in dims} | dict(fixed or {})
        try:
            override_from_dotted(probe)
        except ConfigError as exc:
            errors += exc.errors
    if errors:
        raise GridError(errors)


def grid_size(dims: Sequence[Dimension]) -> int:
    return math.prod(len(d.values) for d in dims)


def expand_grid(dims: Sequence[Dimension], fixed: Mapping[str, Any] | None = None,
                max_runs: int = MAX_RUNS) -> list[dict]:
    """The combinations in product order, each ``fixed | {key: value}``; GridError if unusable."""
    if not dims:
        raise GridError(["no dimensions to sweep: give --grid KEY=VALUES or --grid-file FILE"])
    check_keys(dims, fixed)
    errors = [f"{d.source}: a float range needs a step for a grid search (start:stop:step)"
              for d in dims if not d.values]
    if errors:
        raise GridError(errors)
    n = grid_size(dims)
    if n > max_runs:
        raise GridError([f"the grid has {n:,} combinations, more than the limit {max_runs:,} "
                         "(raise --max-runs if you mean it)"])
    keys = [d.key for d in dims]
    return [dict(fixed or {}) | dict(zip(keys, combo)) for combo in
            itertools.product(*(d.values for d in dims))]


# --- ranking -------------------------------------------------------------------------------

def _objective(run: Run, objective: str) -> float | None:
    v = run.metrics.get(objective) if run.ok else None
    return float(v) if v is not None and math.isfinite(v) else None


def check_objective(objective: str, names, whose: str = "the evaluator") -> None:
    """ObjectiveError unless ``objective`` is one of ``names`` (the message lists them)."""
    if objective in names:
        return
    names = sorted(names)
    close = difflib.get_close_matches(objective, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ObjectiveError(f"--objective {objective}: not a metric of {whose}{hint}; "
                         f"metrics: {', '.join(names)}")


def rank_runs(runs: Iterable[Run], objective: str, minimize: bool = False) -> list[Run]:
    """Best first: ok runs by objective, then ok runs without it, then failed; ties by index.

    ObjectiveError when some run succeeded and none reported ``objective`` (a typo, most
    likely: the message lists the metrics there are).
    """
    runs = list(runs)
    ok = [r for r in runs if r.ok]
    if ok and not any(objective in r.metrics for r in ok):
        check_objective(objective, {m for r in ok for m in r.metrics}, "these runs")

    def key(run: Run):
        v = _objective(run, objective)
        group = 0 if v is not None else (1 if run.ok else 2)
        return group, 0.0 if v is None else (v if minimize else -v), run.index

    return sorted(runs, key=key)


@dataclass
class Sweep:
    """A ranked set of runs and how it was produced (``runs[0]`` is the best)."""

    runs: list[Run]
    keys: list[str]
    objective: str
    minimize: bool
    search: str
    executor: str
    workers: int
    elapsed_s: float
    window: tuple[int, int] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def best(self) -> Run | None:
        """The top run if it has the objective, else None (everything failed)."""
        top = self.runs[0] if self.runs else None
        return top if top is not None and _objective(top, self.objective) is not None else None

    @property
    def failed(self) -> int:
        return sum(not r.ok for r in self.runs)

    def scaling(self) -> dict:
        """Throughput figures: compare ``runs_per_s`` across ``--workers`` to see the scaling.
        ``parallelism`` = sum of per-run times / wall time (how many ran at once, in effect).
        ``elapsed_s`` excludes the executor's start (``startup_s``: pool, warm-up, scatter)."""
        busy = sum(r.elapsed_s for r in self.runs)
        n = len(self.runs)
        return {"executor": self.executor, "workers": self.workers, "runs": n,
                "elapsed_s": round(self.elapsed_s, 6),
                "runs_per_s": round(n / self.elapsed_s, 3) if self.elapsed_s > 0 else None,
                "run_s_total": round(busy, 6),
                "parallelism": round(busy / self.elapsed_s, 3) if self.elapsed_s > 0 else None}

    def dropped_metrics(self) -> dict:
        """Non-numeric outputs left out of the table: name -> number of runs that had it."""
        out: dict[str, int] = {}
        for r in self.runs:
            for name in r.dropped:
                out[name] = out.get(name, 0) + 1
        return out

    def metric_names(self) -> list[str]:
        """Objective first, then the metrics in the order the runs reported them."""
        names = {self.objective: None}
        for r in self.runs:
            names.update(dict.fromkeys(r.metrics))
        return list(names)

    def rows(self) -> list[dict]:
        """One JSON-ready dict per run, ranked."""
        return [{"rank": i + 1, "index": r.index, "status": r.status, "params": r.params,
                 "objective": _objective(r, self.objective),
                 "metrics": {k: _json_num(v) for k, v in r.metrics.items()},
                 "error": r.error or None, "elapsed_s": round(r.elapsed_s, 6), "worker": r.worker,
                 **({"window": list(r.window)} if r.window else {})}
                for i, r in enumerate(self.runs)]

    def to_json(self) -> dict:
        best = self.best
        return {"search": self.search, "objective": self.objective, "minimize": self.minimize,
                "keys": self.keys, "window": list(self.window) if self.window else None,
                "ok": len(self.runs) - self.failed, "failed": self.failed,
                "best": {"index": best.index, "params": best.params,
                         "objective": _objective(best, self.objective)} if best else None,
                **self.scaling(), "dropped_metrics": self.dropped_metrics(), **self.extra,
                "rows": self.rows()}


def _json_num(v):
    return v if v is None or not isinstance(v, float) or math.isfinite(v) else None


# --- running -------------------------------------------------------------------------------

def start_executor(executor, evaluator) -> float:
    """Start ``executor`` for ``evaluator`` (pool up, workers prepared, data scattered) and
    return the seconds it took: warm-up is reported apart from the sweep's throughput."""
    t0 = time.perf_counter()
    executor.start(evaluator)
    return time.perf_counter() - t0


def run_tasks(executor, evaluator, tasks: Sequence[Task], progress: bool = False,
              label: str = "optimize", timeout_s: float | None = None) -> tuple[list[Run], float]:
    """Run ``tasks`` on a started ``executor`` with a progress bar; return (runs in task
    order, wall seconds)."""
    t0 = time.perf_counter()
    bar = Progress(len(tasks), label) if progress else None
    try:
        runs = executor.run(evaluator, tasks, on_done=(lambda _r: bar.advance()) if bar else None,
                            timeout_s=timeout_s)
    finally:
        if bar:
            bar.close()
    return runs, time.perf_counter() - t0


def run_grid(evaluator, dims: Sequence[Dimension], executor, objective: str = "sharpe",
             minimize: bool = False, window: tuple[int, int] | None = None,
             fixed: Mapping[str, Any] | None = None, progress: bool = False,
             timeout_s: float | None = None, max_runs: int = MAX_RUNS) -> Sweep:
    """Evaluate every combination of ``dims`` (over ``window``) on ``executor``; rank them.

    GridError for an unusable grid (before anything runs); ObjectiveError if no successful
    run reports ``objective``. A combination the evaluator rejects is a failed row.
    """
    combos = expand_grid(dims, fixed, max_runs)
    tasks = [Task(i, p, window) for i, p in enumerate(combos)]
    startup = start_executor(executor, evaluator)
    runs, elapsed = run_tasks(executor, evaluator, tasks, progress, "grid", timeout_s)
    return Sweep(rank_runs(runs, objective, minimize), [d.key for d in dims], objective, minimize,
                 "grid", executor.name, executor.workers, elapsed, window,
                 {"startup_s": round(startup, 6)})


# --- output --------------------------------------------------------------------------------

def short_names(keys: Sequence[str]) -> dict[str, str]:
    """Shortest unique dotted suffix of each key (``fast`` for ``stages.signal.params.fast``)."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            cand = ".".join(parts[-n:])
            if sum(k == cand or k.endswith("." + cand) for k in keys) == 1:
                out[key] = cand
                break
        else:
            out[key] = key
    return out


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def format_table(sweep: Sweep, top: int = 20) -> str:
    """The ``top`` best rows as aligned text, with a line on failures and throughput."""
    short = short_names(sweep.keys)
    metrics = [sweep.objective] + [m for m in HEADLINE if m != sweep.objective
                                   and any(m in r.metrics for r in sweep.runs)]
    head = ["rank"] + [short[k] for k in sweep.keys] + \
        [f"{m} ({'min' if sweep.minimize else 'max'})" if m == sweep.objective else m
         for m in metrics] + ["status"]
    body = []
    for rank, r in enumerate(sweep.runs[:max(top, 0)], 1):
        status = "ok" if r.ok else f"FAILED {r.error[:60]}"
        body.append([str(rank)] + [_cell(r.params.get(k)) for k in sweep.keys] +
                    [_cell(r.metrics.get(m)) for m in metrics] + [status])
    widths = [max(len(row[i]) for row in [head] + body) for i in range(len(head) - 1)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row[:-1], widths)) + "  " + row[-1]
             for row in [head] + body]
    s = sweep.scaling()
    startup = sweep.extra.get("startup_s")
    lines.append(f"{s['runs']} runs ({sweep.failed} failed) in {s['elapsed_s']:.2f}s on "
                 f"{s['workers']} {sweep.executor} worker(s): {_cell(s['runs_per_s'])} runs/s, "
                 f"parallelism {_cell(s['parallelism'])}"
                 + (f" (+{startup:.2f}s start-up)" if startup is not None else ""))
    if len(sweep.runs) > top:
        lines.append(f"({len(sweep.runs) - top} more rows in results.csv)")
    errors: dict[str, int] = {}
    for r in sweep.runs:
        if not r.ok:
            errors[r.error] = errors.get(r.error, 0) + 1
    for msg, n in list(errors.items())[:5]:
        lines.append(f"  failed x{n}: {msg}")
    return "\n".join(lines)


def csv_text(sweep: Sweep) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    metrics = sweep.metric_names()
    window = any(r.window for r in sweep.runs)
    w.writerow(["rank", "index", "status", *sweep.keys, *metrics, "elapsed_s", "worker",
                *(["window_start_ns", "window_end_ns"] if window else []), "error"])
    for rank, r in enumerate(sweep.runs, 1):
        w.writerow([rank, r.index, r.status, *(r.params.get(k) for k in sweep.keys),
                    *(_csv_num(r.metrics.get(m)) for m in metrics), f"{r.elapsed_s:.6f}", r.worker,
                    *((list(r.window) if r.window else ["", ""]) if window else []), r.error])
    return out.getvalue()


def _csv_num(v):
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else v


def write_json(path: str | os.PathLike, doc: dict) -> None:
    """Write ``doc`` as JSON (NaN/inf as null), atomically: a reader never sees half a file."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(_clean(doc), f, indent=1, default=str)
            f.write("\n")
    write_atomic(os.fspath(path), write)


def _clean(v):
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        return _clean(v.item())
    return v


def write_results(sweep: Sweep, out_dir: str | os.PathLike, meta: Mapping | None = None) -> dict:
    """Write ``results.csv`` (one row per run, ranked) and ``results.json``; return the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {"csv": os.path.join(out_dir, "results.csv"), "json": os.path.join(out_dir, "results.json")}
    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(csv_text(sweep))
    write_atomic(paths["csv"], write)
    write_json(paths["json"], {**(meta or {}), **sweep.to_json()})
    return paths


# --- the backtest as an evaluator ----------------------------------------------------------

class BacktestEvaluator:
    """``evaluate(params, window)`` = ``run_backtest`` over the ticks with ``exch_ns`` in window.

    ``config``: topology path (None = the embedded default) or a Topology; ``data``: a
    ``MarketData`` whose ticks are sorted by ``exch_ns`` (``load_ticks`` sorts them); the
    window is cut by binary search, so no tick outside ``[start, end)`` reaches the backtest.
    ``params`` are dotted topology overrides (``stages.signal.params.fast``); an invalid
    combination fails in the topology's validation or the stage's constructor, and that run
    becomes a failed row. Side outputs ``_equity`` / ``_trades`` / ``_initial_equity`` feed
    walk-forward's concatenated out-of-sample metrics.

    Pickled (for forkserver/spawn pools and Dask), it carries its data once per worker; the
    local pool forks and carries nothing.
    """

    def __init__(self, config, data, conventions=None, warmup_ticks: int = 2_000, equity_every=None):
        t = np.asarray(data.ticks["exch_ns"])
        if len(t) == 0:
            raise ValueError(f"{getattr(data, 'source', 'data')}: no ticks")
        if len(t) > 1 and (np.diff(t) < 0).any():
            raise ValueError(f"{getattr(data, 'source', 'data')}: ticks are not sorted by exch_ns "
                             "(load them with load_ticks(..., sort='sort'))")
        self.config = os.fspath(config) if isinstance(config, (str, os.PathLike)) else config
        self.data = data
        self.conventions = conventions
        self.warmup_ticks = warmup_ticks
        self.equity_every = equity_every
        if equity_every is not None:
            from .backtest import parse_every
            parse_every(equity_every)  # BacktestError (a ValueError) naming the option, now

    @staticmethod
    def metric_names() -> list[str]:
        """The numeric metrics a backtest reports (``metrics.performance`` on a tiny curve)."""
        from .equity import EQUITY
        from .metrics import performance
        eq = np.zeros(3, EQUITY)
        eq["t_ns"] = np.arange(3) * 86_400 * 10**9
        eq["equity"] = eq["cash"] = (100.0, 99.0, 101.0)
        return [k for k, v in performance(eq, None).items() if not isinstance(v, (dict, list, str))]

    @property
    def span(self) -> tuple[int, int]:
        """``(first, last)`` exch_ns of the data."""
        t = self.data.ticks["exch_ns"]
        return int(t[0]), int(t[-1])

    @property
    def times(self) -> np.ndarray:
        return self.data.ticks["exch_ns"]

    def _slice(self, window):
        if window is None:
            return self.data
        t = self.data.ticks["exch_ns"]
        lo, hi = np.searchsorted(t, window, side="left")
        return replace(self.data, ticks=self.data.ticks[lo:hi])

    def prepare(self) -> None:
        """Compile the pipeline on the first ticks, so forked workers inherit the machine code.
        A failure here is not raised: every run would report the same error in its row."""
        from .backtest import run_backtest
        try:
            run_backtest(self.config, replace(self.data, ticks=self.data.ticks[:self.warmup_ticks]),
                         progress=False, conventions=self.conventions, equity_every=self.equity_every)
        except Exception:  # noqa: BLE001 - see docstring
            pass

    def __call__(self, params: dict, window: tuple[int, int] | None) -> dict:
        from .backtest import run_backtest
        data = self._slice(window)
        if len(data.ticks) == 0:
            raise ValueError(f"no ticks in the window [{window[0]}, {window[1]}) ns")
        result = run_backtest(self.config, data, overrides=dict(params) or None, progress=False,
                              conventions=self.conventions, equity_every=self.equity_every)
        out = dict(result.metrics)
        out["_equity"] = result.equity
        out["_trades"] = result.trades
        out["_initial_equity"] = float(result.initial_equity)
        return out
