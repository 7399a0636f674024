"""Walk-forward optimization: fit on in-sample windows, judge on the out-of-sample ones.

Windows (data time, unix ns, all half-open ``[start, end)``), with ``t0`` the first tick's
time and ``T`` one past the last:

* **rolling**: window k trains on ``[t0 + k*step, t0 + k*step + train)`` and tests on the
  next ``[test_start, test_start + test)``;
* **anchored**: the training start stays at ``t0``: ``[t0, t0 + train + k*step)``, same tests.

``step`` defaults to ``test``, so the test windows tile ``[t0 + train, T)`` without gaps or
overlap (the last one is cut at ``T``). A step below ``test`` is refused: overlapping
out-of-sample windows would count the same days twice in the joined result. Spans are
durations (``30d``, ``12h``, ``15m``, ``90s``, ``500ms``, ``2w``) or counts of bars: ``500``
or ``500bars`` counts distinct data timestamps (one per bar in bar data), so windows follow
the data's own clock across nights and weekends. Train, test and step must be of one kind.
A time window holding no tick (a weekend) is skipped and reported, never evaluated empty.

**No look-ahead**: the in-sample search of window k sees only ``[train_start, test_start)``;
its best parameters are then evaluated on ``[test_start, test_end)`` alone (a strategy warms
up again inside the test window: nothing of the in-sample data leaks into it). The
evaluator contract (``executors``) forbids using data outside the window it is given.

The joined out-of-sample result: the evaluator's ``combine(series)`` when it has one; else,
when every test run returned an ``_equity`` curve (``equity.EQUITY``), the curves are joined
as one account trading the same sizes (each segment's P&L added where the previous ended,
trades concatenated) and scored by ``metrics.performance`` with the evaluator's
``conventions``; else only the compounded ``total_return`` and summed ``n_trades``.
"""
from __future__ import annotations

import csv
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from .executors import Run, Task
from .optimize import (HEADLINE, MAX_RUNS, Dimension, GridError, Sweep, _csv_num, expand_grid, rank_runs,
                       run_tasks, short_names, start_executor, write_json)
from .report_files import write_atomic

__all__ = ["Span", "Window", "parse_span", "make_windows", "WindowResult", "WalkForward",
           "run_walk_forward", "join_oos", "format_walk_forward", "write_walk_forward", "MODES"]

MODES = ("rolling", "anchored")
#: More windows than this is a typo in a span (``--step 1s`` over a year), not a plan.
MAX_WINDOWS = 10_000
_UNIT_NS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "min": 60 * 10**9, "m": 60 * 10**9,
            "h": 3_600 * 10**9, "d": 86_400 * 10**9, "w": 7 * 86_400 * 10**9}
_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*(ns|us|ms|s|min|m|h|d|w|bars?)?")


@dataclass(frozen=True)
class Span:
    """A window length: ``amount`` ns (``kind`` "time") or ``amount`` bars (``kind`` "bars")."""

    amount: int
    kind: str
    text: str


def parse_span(text: str, what: str = "span") -> Span:
    """``30d`` -> 30 days in ns; ``500`` / ``500bars`` -> 500 bars. ValueError names ``what``."""
    m = _SPAN.fullmatch(str(text).strip())
    if not m:
        raise ValueError(f"{what} {text!r}: expected a duration like 30d, 12h, 15m, 90s, 500ms "
                         "or a count of bars like 500 / 500bars")
    number, unit = m.group(1), m.group(2)
    if unit is None or unit.startswith("bar"):
        if "." in number:
            raise ValueError(f"{what} {text!r}: a count of bars must be a whole number")
        amount, kind = int(number), "bars"
    else:
        amount, kind = int(round(float(number) * _UNIT_NS[unit])), "time"
    if amount <= 0:
        raise ValueError(f"{what} {text!r}: must be > 0")
    return Span(amount, kind, str(text).strip())


@dataclass(frozen=True)
class Window:
    """Window ``index``: in-sample ``[train_start, test_start)``, out-of-sample ``[test_start, test_end)``."""

    index: int
    train_start: int
    test_start: int
    test_end: int

    @property
    def train(self) -> tuple[int, int]:
        return self.train_start, self.test_start

    @property
    def test(self) -> tuple[int, int]:
        return self.test_start, self.test_end


def iso(ns: int) -> str:
    """Unix ns as ISO-8601 UTC (to the microsecond)."""
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def make_windows(times: np.ndarray, mode: str, train: Span, test: Span,
                 step: Span | None = None) -> tuple[list[Window], list[str]]:
    """The windows over ``times`` (data time stamps, ascending) and the skipped ones (why).

    ValueError for a bad mode, mixed span kinds, ``step < test``, or spans that leave no window.
    """
    if mode not in MODES:
        raise ValueError(f"--walk-forward {mode!r}: must be one of {', '.join(MODES)}")
    step = step or test
    if len({train.kind, test.kind, step.kind}) != 1:
        raise ValueError(f"--train {train.text}, --test {test.text}, --step {step.text}: use "
                         "durations for all three or bar counts for all three")
    if step.amount < test.amount:
        raise ValueError(f"--step {step.text} is shorter than --test {test.text}: out-of-sample "
                         "windows would overlap")
    times = np.asarray(times, dtype=np.int64)
    if len(times) == 0:
        raise ValueError("walk-forward: the data has no ticks")
    if train.kind == "bars":
        clock = np.unique(times)
        clock = np.append(clock, clock[-1] + 1)  # clock[i] = start of bar i; clock[n] = one past the end
        last, origin = len(clock) - 1, 0
    else:
        clock, last, origin = None, int(times[-1]) + 1, int(times[0])
    if (last - origin - train.amount) / step.amount > MAX_WINDOWS:
        raise ValueError(f"--step {step.text}: more than {MAX_WINDOWS} windows; use a longer step")

    def at(i):  # a position on the window clock, as data time
        return int(clock[i]) if clock is not None else i

    windows, skipped = [], []
    k = 0
    while True:
        test_start = origin + train.amount + k * step.amount
        if test_start >= last:
            break
        train_start = origin + k * step.amount if mode == "rolling" else origin
        test_end = min(test_start + test.amount, last)
        w = Window(len(windows), at(train_start), at(test_start), at(test_end))
        k += 1
        lo, mid, hi = np.searchsorted(times, (w.train_start, w.test_start, w.test_end))
        if mid == lo or hi == mid:
            part = "in-sample" if mid == lo else "out-of-sample"
            skipped.append(f"train {iso(w.train_start)}..{iso(w.test_start)} test ..{iso(w.test_end)}: "
                           f"no tick in the {part} part")
            continue
        windows.append(w)
    if not windows:
        span = _describe_span(times, train.kind)
        empty = f" ({len(skipped)} windows had no ticks)" if skipped else ""
        raise ValueError(f"walk-forward: --train {train.text} + --test {test.text} leave no window "
                         f"with data in {span}{empty}")
    return windows, skipped


def _describe_span(times: np.ndarray, kind: str) -> str:
    if kind == "bars":
        return f"{len(np.unique(times))} bars"
    days = (int(times[-1]) - int(times[0])) / 86_400e9
    return f"the data's {days:.3g} days ({iso(int(times[0]))} .. {iso(int(times[-1]))})"


@dataclass
class WindowResult:
    window: Window
    fit: Sweep          #: the in-sample search, ranked
    test: Run | None    #: the best parameters out of sample (None when no in-sample run succeeded)


@dataclass
class WalkForward:
    mode: str
    train: Span
    test: Span
    step: Span
    windows: list[WindowResult]
    skipped: list[str]
    oos: dict                   #: joined out-of-sample metrics
    objective: str
    minimize: bool
    search: str
    executor: str
    workers: int
    elapsed_s: float
    extra: dict = field(default_factory=dict)

    def runs(self) -> int:
        return sum(len(w.fit.runs) + (w.test is not None) for w in self.windows)

    def table(self) -> list[dict]:
        """One row per window: spans, best parameters, in-sample and out-of-sample objective."""
        rows = []
        for w in self.windows:
            best = w.fit.best
            rows.append({
                "window": w.window.index, "train_start": iso(w.window.train_start),
                "test_start": iso(w.window.test_start), "test_end": iso(w.window.test_end),
                "train_start_ns": w.window.train_start, "test_start_ns": w.window.test_start,
                "test_end_ns": w.window.test_end,
                "is_runs": len(w.fit.runs), "is_failed": w.fit.failed,
                "params": best.params if best else None,
                f"is_{self.objective}": best.metrics.get(self.objective) if best else None,
                f"oos_{self.objective}": w.test.metrics.get(self.objective) if w.test and w.test.ok else None,
                "oos_status": None if w.test is None else w.test.status,
                "oos_error": w.test.error if w.test is not None and not w.test.ok else None,
                "is_metrics": best.metrics if best else None,
                "oos_metrics": w.test.metrics if w.test is not None and w.test.ok else None,
            })
        return rows

    def to_json(self) -> dict:
        busy = sum(r.elapsed_s for w in self.windows for r in w.fit.runs) + \
            sum(w.test.elapsed_s for w in self.windows if w.test is not None)
        n = self.runs()
        return {"walk_forward": self.mode, "train": self.train.text, "test": self.test.text,
                "step": self.step.text, "search": self.search, "objective": self.objective,
                "minimize": self.minimize, "executor": self.executor, "workers": self.workers,
                "runs": n, "elapsed_s": round(self.elapsed_s, 6),
                "runs_per_s": round(n / self.elapsed_s, 3) if self.elapsed_s > 0 else None,
                "run_s_total": round(busy, 6),
                "parallelism": round(busy / self.elapsed_s, 3) if self.elapsed_s > 0 else None,
                "windows_skipped": len(self.skipped), "skipped": self.skipped, **self.extra,
                "oos": self.oos, "windows": self.table(),
                "in_sample": [w.fit.to_json() for w in self.windows]}


def join_oos(evaluator, tests: Sequence[Run]) -> dict:
    """The out-of-sample runs, in time order, joined into one result (module doc)."""
    ok = [r for r in tests if r.ok]
    out: dict[str, Any] = {"windows": len(tests), "windows_failed": len(tests) - len(ok)}
    series = [r.series or {} for r in ok]
    combine = getattr(evaluator, "combine", None)
    if combine is not None and ok:
        out.update(combine(series))
        out["joined_by"] = "evaluator.combine"
    elif ok and all(isinstance(s.get("_equity"), np.ndarray) for s in series):
        from .metrics import performance
        eq, trades, initial = _stitch(series)
        joined = performance(eq, trades, getattr(evaluator, "conventions", None), initial_equity=initial)
        joined.pop("conventions", None)
        out.update(joined)
        out["joined_by"] = "equity curves, one account"
    elif ok:
        total = math.prod(1.0 + r.metrics.get("total_return", math.nan) for r in ok) - 1.0
        out["total_return"] = total if math.isfinite(total) else None
        if all("n_trades" in r.metrics for r in ok):
            out["n_trades"] = sum(int(r.metrics["n_trades"]) for r in ok)
        out["joined_by"] = "compounded total_return (no equity curves to join)"
    return out


def _stitch(series: Sequence[Mapping]) -> tuple[np.ndarray, np.ndarray | None, float | None]:
    """Join equity curves: segment k is shifted so that its opening capital equals the
    equity where segment k-1 ended (its P&L carries over); trades are concatenated."""
    from .equity import EQUITY, check_equity, fill_drawdown
    parts, first_initial, end = [], None, None
    for s in series:
        eq = check_equity(s["_equity"]).copy()
        if len(eq) == 0:
            continue
        initial = s.get("_initial_equity")
        initial = float(eq["equity"][0]) if initial is None or not math.isfinite(initial) else float(initial)
        if end is not None:
            shift = end - initial
            eq["equity"] += shift
            eq["cash"] += shift
        else:
            first_initial = initial
        end = float(eq["equity"][-1])
        parts.append(eq)
    eq = np.concatenate(parts) if parts else np.zeros(0, EQUITY)
    fill_drawdown(eq, first_initial)
    trades = [s["_trades"] for s in series if isinstance(s.get("_trades"), np.ndarray)]
    return eq, (np.concatenate(trades) if trades else None), first_initial


def run_walk_forward(evaluator, dims: Sequence[Dimension], executor, times: np.ndarray,
                     mode: str, train: Span, test: Span, step: Span | None = None,
                     objective: str = "sharpe", minimize: bool = False,
                     fixed: Mapping[str, Any] | None = None, search: str = "grid",
                     trials: int = 50, seed: int = 0, progress: bool = False,
                     timeout_s: float | None = None, max_runs: int | None = None) -> WalkForward:
    """Optimize on each window's in-sample part, test the best on its out-of-sample part.

    ``times``: the data's time stamps (``exch_ns``), ascending. Grid search submits the
    in-sample runs of every window as one batch (they are independent), then the test runs
    as a second; Bayesian search runs one study per window, in order.
    """
    windows, skipped = make_windows(times, mode, train, test, step)
    startup = start_executor(executor, evaluator)
    t0 = time.perf_counter()
    keys = [d.key for d in dims]
    fits: list[Sweep] = []
    extra: dict = {"startup_s": round(startup, 6)}
    if search == "grid":
        limit = max_runs or MAX_RUNS
        combos = expand_grid(dims, fixed, limit)
        if len(combos) * len(windows) > limit:
            raise GridError([f"{len(combos)} combinations x {len(windows)} windows = "
                             f"{len(combos) * len(windows):,} runs; raise --max-runs if you mean it"])
        tasks = [Task(i, p, w.train, tag=w.index) for w in windows for i, p in enumerate(combos)]
        runs, elapsed = run_tasks(executor, evaluator, tasks, progress, "in-sample", timeout_s)
        for w in windows:
            mine = [r for r in runs if r.tag == w.index]
            fits.append(Sweep(rank_runs(mine, objective, minimize), keys, objective, minimize, "grid",
                              executor.name, executor.workers, elapsed, w.train))
    elif search == "bayes":
        from .bayes import run_bayes
        for w in windows:
            fits.append(run_bayes(evaluator, dims, executor, objective, minimize, trials, seed,
                                  window=w.train, fixed=fixed, progress=progress, timeout_s=timeout_s))
        extra.update(trials=trials, seed=seed)
    else:
        raise ValueError(f"--search {search!r}: must be grid or bayes")
    tests = [Task(w.index, fit.best.params, w.test, keep_series=True, tag=w.index)
             for w, fit in zip(windows, fits) if fit.best is not None]
    test_runs, _ = run_tasks(executor, evaluator, tests, progress, "out-of-sample", timeout_s)
    by_window = {r.tag: r for r in test_runs}
    results = [WindowResult(w, fit, by_window.get(w.index)) for w, fit in zip(windows, fits)]
    oos = join_oos(evaluator, test_runs)
    for r in test_runs:
        r.series = None  # joined already; the report keeps only the numbers
    return WalkForward(mode, train, test, step or test, results, skipped, oos, objective, minimize,
                       search, executor.name, executor.workers, time.perf_counter() - t0, extra)


# --- output --------------------------------------------------------------------------------

def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def _day(ns: int) -> str:
    return iso(ns)[:19].replace("T", " ")


def format_walk_forward(wf: WalkForward) -> str:
    """One line per window (spans, chosen parameters, in- and out-of-sample objective), the
    joined out-of-sample metrics, and the throughput."""
    keys = wf.windows[0].fit.keys if wf.windows else []
    short = short_names(keys)
    head = ["win", "train from", "test from", "test to"] + [short[k] for k in keys] + \
        [f"IS {wf.objective}", f"OOS {wf.objective}", "status"]
    body = []
    for w in wf.windows:
        best = w.fit.best
        oos = w.test.metrics.get(wf.objective) if w.test is not None and w.test.ok else None
        status = ("no in-sample run succeeded" if best is None else
                  "ok" if w.test.ok else f"FAILED {w.test.error[:60]}")
        body.append([str(w.window.index), _day(w.window.train_start), _day(w.window.test_start),
                     _day(w.window.test_end)] +
                    [_cell(best.params.get(k)) if best else "-" for k in keys] +
                    [_cell(best.metrics.get(wf.objective)) if best else "-", _cell(oos), status])
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head) - 1)]
    lines = ["  ".join(c.rjust(wd) for c, wd in zip(r[:-1], widths)) + "  " + r[-1] for r in [head] + body]
    shown = [m for m in (wf.objective,) + HEADLINE if m in wf.oos]
    shown = list(dict.fromkeys(shown))
    lines.append(f"joined out-of-sample ({wf.oos['windows']} windows, {wf.oos['windows_failed']} failed): "
                 + ("  ".join(f"{m} {_cell(wf.oos[m])}" for m in shown) or "no metrics"))
    if wf.skipped:
        lines.append(f"{len(wf.skipped)} window(s) skipped (no ticks): first: {wf.skipped[0]}")
    doc = wf.to_json()
    lines.append(f"{doc['runs']} runs in {doc['elapsed_s']:.2f}s on {wf.workers} {wf.executor} "
                 f"worker(s): {_cell(doc['runs_per_s'])} runs/s, parallelism {_cell(doc['parallelism'])} "
                 f"(+{wf.extra.get('startup_s', 0.0):.2f}s start-up)")
    return "\n".join(lines)


def write_walk_forward(wf: WalkForward, out_dir: str | os.PathLike, meta: Mapping | None = None) -> dict:
    """``results.csv``: one row per window; ``results.json``: everything, in-sample tables included."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {"csv": os.path.join(out_dir, "results.csv"), "json": os.path.join(out_dir, "results.json")}
    keys = wf.windows[0].fit.keys if wf.windows else []
    metrics = list(dict.fromkeys([wf.objective, *HEADLINE]))

    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["window", "train_start", "test_start", "test_end", *keys,
                        *(f"is_{m}" for m in metrics), *(f"oos_{m}" for m in metrics),
                        "is_runs", "is_failed", "oos_status", "oos_error"])
            for r in wf.windows:
                best, test = r.fit.best, r.test
                ism = best.metrics if best else {}
                oom = test.metrics if test is not None and test.ok else {}
                w.writerow([r.window.index, iso(r.window.train_start), iso(r.window.test_start),
                            iso(r.window.test_end), *((best.params.get(k) if best else "") for k in keys),
                            *(_csv_num(ism.get(m)) for m in metrics), *(_csv_num(oom.get(m)) for m in metrics),
                            len(r.fit.runs), r.fit.failed, "" if test is None else test.status,
                            "" if test is None else test.error])
    write_atomic(paths["csv"], write)
    write_json(paths["json"], {**(meta or {}), **wf.to_json()})
    return paths
