"""``pyrt optimize``: sweep topology parameters over backtests (grid, walk-forward, Bayesian).

    pyrt optimize [--config FILE] [--data FILE ...] --grid KEY=VALUES [--grid ...]
                  [--objective sharpe] [--minimize] [--search grid|bayes --trials N --seed N]
                  [--walk-forward rolling|anchored --train 30d --test 10d [--step 10d]]
                  [--executor local|dask --scheduler ADDRESS] [--workers N] [--out DIR]
                  [--set KEY=VALUE ...] [--grid-file FILE] [--periods-per-year N] [--risk-free R]
                  [--period 1d] [--equity-every E] [--no-progress] [--json]

Data and configuration defaults are those of ``pyrt backtest``: the embedded default topology
and the bundled sample series (``pyrt_shm/research/data``).

Every run is a backtest of the topology with one combination of dotted overrides
(``stages.signal.params.fast=8``). Results, best first, are printed and written to
``results.csv`` and ``results.json`` (which carries the wall time, the workers and runs/s:
run the same sweep with ``--workers 1`` and without to see how it scales).

Exit codes: 0 done (at least one run succeeded); 1 every run failed, or the executor could
not run; 2 bad command line, grid, data or configuration (every problem named); 130 Ctrl-C.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

# the same --periods-per-year/--risk-free/--period handling and exit-2 error as ``pyrt backtest``
from .backtest_cmd import UsageError, _conventions, bundled_data


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="pyrt optimize", description="Parameter search over backtests: a grid in parallel, "
        "walk-forward (in-sample fit, out-of-sample test) or Bayesian (optuna TPE).")
    ap.add_argument("--config", metavar="FILE", help="topology TOML (default: the embedded default)")
    ap.add_argument("--data", metavar="FILE", action="append",
                    help="market data file (CSV/.npy/.npz; repeatable; default: the bundled sample data)")
    ap.add_argument("--symbols", metavar="A,B", help="keep only these symbols (ids in this order)")
    ap.add_argument("--kind", default="auto", choices=("auto", "trades", "quotes", "bars"),
                    help="record kind of CSV files (default: detected from the columns)")
    ap.add_argument("--unsorted", default="sort", choices=("sort", "reject"),
                    help="rows out of time order: sort them (stable, default) or reject the file")
    ap.add_argument("--equity-every", metavar="E", default=None,
                    help="equity sampling: bar, or a duration like 1s, 1m "
                         "(default: bar for bar data, else 1s)")
    g = ap.add_argument_group("search space")
    g.add_argument("--grid", metavar="KEY=VALUES", action="append", default=[],
                   help="a swept key: list 5,8,13 or range start:stop[:step] (stop included); repeatable")
    g.add_argument("--grid-file", metavar="FILE", help="TOML with a [grid] table (and optional [set])")
    g.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="fixed",
                   help="a fixed override applied to every run (TOML value: 5, 2.5, true, \"text\", "
                        "[\"1m\"]); repeatable")
    g.add_argument("--max-runs", type=int, default=None, metavar="N",
                   help="refuse grids larger than this (default 100000)")
    o = ap.add_argument_group("objective and search")
    o.add_argument("--objective", default="sharpe", metavar="METRIC",
                   help="metric to rank by: sharpe, sortino, total_return, cagr, calmar, "
                        "profit_factor, ... (default sharpe)")
    o.add_argument("--minimize", action="store_true", help="lower is better (e.g. a loss-like metric)")
    o.add_argument("--search", default="grid", choices=("grid", "bayes"), help="default grid")
    o.add_argument("--trials", type=int, default=50, metavar="N", help="Bayesian trials (default 50)")
    o.add_argument("--seed", type=int, default=0, metavar="N", help="Bayesian sampler seed (default 0)")
    w = ap.add_argument_group("walk-forward")
    w.add_argument("--walk-forward", choices=("rolling", "anchored"), metavar="MODE",
                   help="rolling or anchored in-sample windows")
    w.add_argument("--train", metavar="SPAN", help="in-sample length: 30d, 12h, 15m ... or a bar count (500)")
    w.add_argument("--test", metavar="SPAN", help="out-of-sample length")
    w.add_argument("--step", metavar="SPAN", help="window step (default: --test)")
    m = ap.add_argument_group("metrics conventions")
    m.add_argument("--periods-per-year", type=float, default=None, metavar="N",
                   help="annualisation (default 252; 365 for crypto)")
    m.add_argument("--risk-free", type=float, default=None, metavar="R",
                   help="annual risk-free rate (default 0)")
    m.add_argument("--period", default=None, metavar="P",
                   help="return period: 1d, 1h, 1m, 1s or sample (default 1d)")
    x = ap.add_argument_group("execution")
    x.add_argument("--executor", default="local", choices=("local", "dask", "inline"),
                   help="local process pool (default), a Dask cluster, or inline (one process)")
    x.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler, e.g. tcp://127.0.0.1:8786")
    x.add_argument("--workers", type=int, metavar="N", help="local pool size (default: every usable CPU)")
    x.add_argument("--timeout", type=float, metavar="S", help="give up on runs unfinished after S seconds")
    r = ap.add_argument_group("output")
    r.add_argument("--out", metavar="DIR", help="results directory (default runs/optimize-<date>-<pid>)")
    r.add_argument("--top", type=int, default=20, metavar="N", help="rows to print (default 20)")
    r.add_argument("--no-progress", "--quiet", action="store_true", dest="no_progress",
                   help="no progress bar")
    r.add_argument("--json", action="store_true", help="print results.json to stdout at the end")
    return ap


def _space(args):
    from .optimize import GridError, load_grid_file, parse_grid_arg, parse_set_arg
    dims, fixed, errors = [], {}, []
    if args.grid_file:
        try:
            dims, fixed = load_grid_file(args.grid_file)
        except GridError as exc:
            errors += exc.errors
    for text in args.grid:
        try:
            dims.append(parse_grid_arg(text))
        except GridError as exc:
            errors += exc.errors
    for text in args.fixed:
        try:
            key, value = parse_set_arg(text)
            fixed[key] = value
        except GridError as exc:
            errors += exc.errors
    if not errors and not dims:
        errors.append("nothing to sweep: give --grid KEY=VALUES (e.g. "
                      "--grid stages.signal.params.fast=5,8,13) or --grid-file FILE")
    if errors:
        raise UsageError("\n".join(errors))
    return dims, fixed


def _check_args(args) -> None:
    errors = []
    wf = (args.train, args.test, args.step)
    if args.walk_forward and not (args.train and args.test):
        errors.append("--walk-forward needs --train SPAN and --test SPAN")
    if not args.walk_forward and any(wf):
        errors.append("--train/--test/--step need --walk-forward rolling|anchored")
    if args.executor == "dask" and not args.scheduler:
        errors.append("--executor dask needs --scheduler ADDRESS (e.g. tcp://127.0.0.1:8786)")
    if args.scheduler and args.executor != "dask":
        errors.append("--scheduler is for --executor dask")
    if args.workers is not None and (args.workers < 1 or args.executor != "local"):
        errors.append("--workers: must be >= 1, and applies to --executor local")
    if args.trials < 1:
        errors.append(f"--trials: must be >= 1, got {args.trials}")
    if args.top < 0:
        errors.append(f"--top: must be >= 0, got {args.top}")
    if args.timeout is not None and args.timeout <= 0:
        errors.append(f"--timeout: must be > 0, got {args.timeout}")
    if errors:
        raise UsageError("\n".join(errors))


def _spans(args):
    from .walkforward import parse_span
    errors, out = [], []
    for flag, text in (("--train", args.train), ("--test", args.test), ("--step", args.step)):
        try:
            out.append(parse_span(text, flag) if text else None)
        except ValueError as exc:
            errors.append(str(exc))
    if errors:
        raise UsageError("\n".join(errors))
    return out


def _load(args):
    """The market data, as ``pyrt backtest`` loads it (same defaults, same path resolution)."""
    from .data import DataError, load_ticks, resolve
    paths = [resolve(p) for p in args.data] if args.data else bundled_data()
    if not paths:
        raise UsageError("no --data given and no bundled data found in pyrt_shm/research/data")
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()] if args.symbols else None
    try:
        return load_ticks(paths, symbols=symbols, kind=args.kind, sort=args.unsorted)
    except DataError as exc:
        raise UsageError(f"data: {exc}") from None


def _out_dir(args) -> str:
    if args.out:
        return args.out
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", f"optimize-{stamp}-{os.getpid()}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .backtest import BacktestError, prepare
    from .bayes import MissingDependency
    from .executors import ExecutorError, make_executor
    from .optimize import BacktestEvaluator, GridError, ObjectiveError, check_objective

    try:
        _check_args(args)
        dims, fixed = _space(args)
        train, test, step = _spans(args) if args.walk_forward else (None, None, None)
        conventions = _conventions(args)
        if args.search == "bayes":
            from .bayes import require_optuna
            require_optuna()
        data = _load(args)
        try:  # the topology, the data and the fixed overrides once; each combination per run
            prepare(args.config, data, fixed or None)
        except BacktestError as exc:
            raise UsageError(f"invalid configuration:\n{exc}") from None
        evaluator = BacktestEvaluator(args.config, data, conventions, equity_every=args.equity_every)
        check_objective(args.objective, evaluator.metric_names(), "a backtest")
    except (UsageError, MissingDependency, ValueError) as exc:
        print(f"pyrt optimize: {exc}", file=sys.stderr)
        return 2
    try:
        executor = make_executor(args.executor, args.workers, args.scheduler)
    except ExecutorError as exc:
        print(f"pyrt optimize: {exc}", file=sys.stderr)
        return 1 if args.executor == "dask" else 2
    meta = {"command": "pyrt optimize " + " ".join(argv if argv is not None else sys.argv[1:]),
            "config": args.config or "<embedded default>", "data": data.source,
            "ticks": len(data), "symbols": list(data.symbols), "conventions": conventions.echo(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    progress = not args.no_progress
    out = _out_dir(args)
    print(f"pyrt optimize: {len(data):,} ticks of {', '.join(data.symbols)} ({data.source}); "
          f"{executor.name} executor, {executor.workers} worker(s)", flush=True)
    t0 = time.perf_counter()
    try:
        with executor:
            if args.walk_forward:
                done = _walk_forward(args, evaluator, dims, fixed, executor, train, test, step,
                                     progress, out, meta)
            else:
                done = _sweep(args, evaluator, dims, fixed, executor, progress, out, meta)
    except KeyboardInterrupt:
        print("\npyrt optimize: interrupted", file=sys.stderr)
        return 130
    except (GridError, ObjectiveError, ValueError) as exc:
        print(f"pyrt optimize: {exc}", file=sys.stderr)
        return 2
    print(f"  results: {out}  ({time.perf_counter() - t0:.1f}s)")
    return 0 if done else 1


def _sweep(args, evaluator, dims, fixed, executor, progress, out, meta) -> bool:
    from .optimize import format_table, run_grid, write_results
    if args.search == "bayes":
        from .bayes import run_bayes
        sweep = run_bayes(evaluator, dims, executor, args.objective, args.minimize, args.trials,
                          args.seed, fixed=fixed, progress=progress, timeout_s=args.timeout)
    else:
        kw = {"max_runs": args.max_runs} if args.max_runs else {}
        sweep = run_grid(evaluator, dims, executor, args.objective, args.minimize, fixed=fixed,
                         progress=progress, timeout_s=args.timeout, **kw)
    print(format_table(sweep, args.top))
    paths = write_results(sweep, out, meta)
    if args.json:
        print(open(paths["json"], encoding="utf-8").read())
    return sweep.best is not None


def _walk_forward(args, evaluator, dims, fixed, executor, train, test, step, progress, out, meta) -> bool:
    from .walkforward import format_walk_forward, run_walk_forward, write_walk_forward
    wf = run_walk_forward(evaluator, dims, executor, evaluator.times, args.walk_forward, train, test,
                          step, args.objective, args.minimize, fixed, args.search, args.trials,
                          args.seed, progress, args.timeout, args.max_runs)
    print(format_walk_forward(wf))
    paths = write_walk_forward(wf, out, meta)
    if args.json:
        print(open(paths["json"], encoding="utf-8").read())
    return any(w.test is not None and w.test.ok for w in wf.windows)
