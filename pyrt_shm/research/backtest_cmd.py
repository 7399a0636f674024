"""``pyrt backtest``: replay history through the live stages fused in one process, on the data clock.

    pyrt backtest [--config FILE] [--data PATH ...] [--set KEY=VALUE ...] [--out DIR]
                  [--symbols A,B] [--kind auto|trades|quotes|bars] [--unsorted sort|reject]
                  [--span N] [--equity-every bar|1s|1m|...] [--periods-per-year N] [--risk-free R]
                  [--period 1d] [--no-progress] [--json]

Prints the run's metrics and writes ``summary.json``, ``trades.csv``, ``equity.csv`` and
``report.html`` to ``--out`` (default ``runs/backtest-<config>-<date>-<pid>/``). ``--config``
defaults to the embedded default topology, ``--data`` to the bundled sample series
(``pyrt_shm/research/data``). ``--set stages.signal.params.fast=5`` overrides one key of the
topology (values are TOML: ``5``, ``2.5``, ``true``, ``"text"``, ``["1m"]``; anything else is
text). With ``--json`` the summary goes to stdout as JSON instead of the table.

Exit codes: 0 done; 2 bad command line, configuration or data (the message names the file,
line, column or key); 130 interrupted.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import tomllib

#: metrics printed in the table, in this order, with their format
TABLE = (("final_equity", "money"), ("total_return", "pct"), ("cagr", "pct"), ("annual_volatility", "pct"),
         ("sharpe", "num"), ("sortino", "num"), ("max_drawdown", "pct"), ("calmar", "num"),
         ("n_trades", "int"), ("n_open_trades", "int"), ("win_rate", "pct"), ("profit_factor", "num"),
         ("expectancy", "money"), ("fees", "money"), ("exposure", "pct"), ("turnover", "num"),
         ("var", "pct"), ("cvar", "pct"))


class UsageError(Exception):
    """A command-line, configuration or data problem: printed as is, exit 2."""


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pyrt backtest",
                                 description="Replay market data through the engine's stages (one process, "
                                             "data clock, sim venue); print metrics, write reports.")
    ap.add_argument("--config", metavar="FILE", help="topology TOML (default: the embedded default)")
    ap.add_argument("--data", metavar="PATH", action="append",
                    help="market data: CSV (Alpaca bars/trades/quotes layouts), .npy or .npz; repeatable "
                         "(default: the bundled sample series)")
    ap.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="sets",
                    help="override a topology key, e.g. stages.signal.params.fast=5; repeatable")
    ap.add_argument("--out", metavar="DIR", help="report directory (default runs/backtest-<config>-<date>-<pid>)")
    ap.add_argument("--symbols", metavar="A,B", help="keep only these symbols (ids in this order)")
    ap.add_argument("--kind", default="auto", choices=("auto", "trades", "quotes", "bars"),
                    help="record kind of CSV files (default: detected from the columns)")
    ap.add_argument("--unsorted", default="sort", choices=("sort", "reject"),
                    help="rows out of time order: sort them (stable, default) or reject the file")
    ap.add_argument("--span", type=int, default=None, metavar="N",
                    help="data records the clock covers per step (default 1: event by event, exact; "
                         "N > 1: faster, an order decided within a step meets the book at the step's end)")
    ap.add_argument("--equity-every", metavar="E", default=None,
                    help="equity sampling: 'bar' (every data time) or a duration like 1s, 1m, 1d "
                         "(default: bar for bar data, else 1s)")
    m = ap.add_argument_group("metrics conventions")
    m.add_argument("--periods-per-year", type=float, default=None, metavar="N",
                   help="annualisation (default 252; 365 for crypto)")
    m.add_argument("--risk-free", type=float, default=None, metavar="R", help="annual risk-free rate (default 0)")
    m.add_argument("--period", default=None, metavar="P", help="return period: 1d, 1h, 1m, 1s or sample (default 1d)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON instead of the table")
    return ap


def parse_value(text: str):
    """A ``--set`` value: TOML (number, boolean, "string", array, inline table), else bare text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_sets(items) -> dict:
    out, errors = {}, []
    for text in items:
        key, eq, value = text.partition("=")
        key = key.strip()
        if not eq or not key or any(not p for p in key.split(".")):
            errors.append(f"--set {text}: expected KEY=VALUE with a dotted KEY, e.g. stages.signal.params.fast=5")
            continue
        out[key] = parse_value(value.strip())
    if errors:
        raise UsageError("\n".join(errors))
    return out


def bundled_data() -> list[str]:
    """The sample series shipped in ``pyrt_shm/research/data``."""
    from importlib import resources

    root = resources.files("pyrt_shm.research").joinpath("data")
    try:
        return sorted(str(p) for p in root.iterdir() if p.name.endswith(".csv"))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _conventions(args):
    from .metrics import Conventions

    given = {k: v for k, v in (("periods_per_year", args.periods_per_year), ("risk_free_rate", args.risk_free),
                               ("period", args.period)) if v is not None}
    try:
        return Conventions(**given)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _out_dir(args) -> str:
    if args.out:
        return args.out
    name = os.path.splitext(os.path.basename(args.config))[0] if args.config else "default"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", f"backtest-{name}-{stamp}-{os.getpid()}")


def _fmt(v, kind: str) -> str:
    if v is None:
        return "-"
    if kind == "pct":
        return f"{100.0 * v:,.2f}%"
    if kind == "money":
        return f"{v:,.2f}"
    if kind == "int":
        return f"{int(v):,}"
    return f"{v:,.3f}"


def format_table(res) -> str:
    m = res.metrics
    lines = [f"backtest: {res.events:,} events of {', '.join(res.symbols)} in {res.elapsed_s:.3f}s "
             f"({res.events_per_s / 1e6:.2f} M events/s, {res.info['loop']} loop); "
             f"{len(res.orders):,} orders, {len(res.executions):,} executions",
             f"  {'initial_equity':<18} {_fmt(res.initial_equity, 'money'):>16}"]
    for key, kind in TABLE:
        if key in m:
            lines.append(f"  {key:<18} {_fmt(m[key], kind):>16}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .backtest import BacktestError, run_backtest
    from .data import DataError, load_ticks, resolve

    try:
        overrides = parse_sets(args.sets)
        conventions = _conventions(args)
        paths = [resolve(p) for p in args.data] if args.data else bundled_data()
        if not paths:
            raise UsageError("no --data given and no bundled data found in pyrt_shm/research/data")
        symbols = [s.strip() for s in args.symbols.split(",") if s.strip()] if args.symbols else None
        data = load_ticks(paths, symbols=symbols, kind=args.kind, sort=args.unsorted)
        res = run_backtest(args.config, data, overrides=overrides or None, progress=not args.no_progress,
                           conventions=conventions, equity_every=args.equity_every, span=args.span)
        metrics = res.metrics
    except (UsageError, BacktestError, DataError) as e:
        print(f"pyrt backtest: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\npyrt backtest: interrupted", file=sys.stderr)
        return 130
    out = _out_dir(args)
    written = res.write(out)
    if args.json:
        import orjson

        from .report_files import json_safe

        sys.stdout.write(orjson.dumps(json_safe({**res.summary, "metrics": metrics, "out": out}),
                                      option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(format_table(res))
        print(f"  reports: {out} ({', '.join(os.path.basename(p) for p in written.values())})")
    return 0
