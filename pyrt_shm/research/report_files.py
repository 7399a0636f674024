"""A backtest's report files: ``summary.json``, ``trades.csv``, ``equity.csv`` (and ``report.html``).

* ``summary.json``: the summary dict, keys sorted, indented. Numpy scalars and arrays become
  JSON numbers and lists; keys become strings; a NaN or inf (which JSON cannot hold) becomes
  null and its key path is listed under ``"non_finite_fields"``, so nothing is lost silently.
* ``trades.csv``: one row per ``TRADE``, symbol by name, side ``long``/``short``, times as
  ISO-8601 UTC with ns (``2024-01-02T14:30:00.000000000Z``) beside the integer ns; an open
  trade has an empty ``exit_time`` and ``exit_ns`` 0 (its ``exit_px`` is the mark).
* ``equity.csv``: one row per ``EQUITY`` sample, the same time columns.

Floats are written with ``repr`` (shortest text that reads back to the same double).
Everything is checked before anything is written, and each file is written to a temporary
name and renamed, so a failure leaves no half-written report.
"""
from __future__ import annotations

import csv
import math
import os

import numpy as np
import orjson

from .equity import EQUITY, check_equity
from .trades import check_trades

TRADE_COLUMNS = ("trade", "symbol", "side", "qty", "entry_time", "entry_ns", "exit_time", "exit_ns",
                 "entry_px", "exit_px", "pnl", "fees", "ret", "open")
EQUITY_COLUMNS = ("time",) + EQUITY.names


def iso_utc(t_ns: np.ndarray) -> list[str]:
    """ISO-8601 UTC strings with nanoseconds for unix-ns times (vectorised)."""
    t = np.asarray(t_ns, dtype=np.int64).astype("datetime64[ns]")
    return [s + "Z" for s in np.datetime_as_string(t, unit="ns")]


def json_safe(obj, path: str = "", bad: list | None = None):
    """``obj`` with numpy types made plain, keys made strings and NaN/inf made None (their key
    paths appended to ``bad``)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v, f"{path}.{k}" if path else str(k), bad) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        items = obj.tolist() if isinstance(obj, np.ndarray) else obj
        return [json_safe(v, f"{path}[{i}]", bad) for i, v in enumerate(items)]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        if math.isfinite(x):
            return x
        if bad is not None:
            bad.append(path)
        return None
    if obj is None or isinstance(obj, (str, int)):
        return obj
    return str(obj)                       # paths, enums, dataclasses: their text


def _names(syms: np.ndarray, symbols, what: str) -> list[str]:
    names = list(symbols)
    if len(syms) and int(syms.max()) >= len(names):
        i = int(np.flatnonzero(syms >= len(names))[0])
        raise ValueError(f"{what}[{i}]['sym']: {int(syms[i])} is not a symbol id (symbols has {len(names)} names)")
    return [names[s] for s in syms.tolist()]


def write_atomic(path: str, write) -> str:
    """``write(tmp)`` then rename ``tmp`` to ``path``: a reader never sees half a file, and a
    failed write leaves no temporary file behind. Returns ``path``."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _write_csv(path: str, header, rows) -> str:
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
    return write_atomic(path, write)


def trade_rows(tr: np.ndarray, symbols) -> list[list]:
    """The ``trades.csv`` rows (without the header) of ``TRADE`` rows ``tr``."""
    names = _names(tr["sym"], symbols, "trades")
    ent, ext = iso_utc(tr["entry_ns"]), iso_utc(tr["exit_ns"])
    cols = {f: tr[f].tolist() for f in tr.dtype.names}
    return [[i, names[i], "long" if cols["side"][i] > 0 else "short", repr(cols["qty"][i]), ent[i],
             cols["entry_ns"][i], "" if cols["open"][i] else ext[i], cols["exit_ns"][i],
             repr(cols["entry_px"][i]), repr(cols["exit_px"][i]), repr(cols["pnl"][i]),
             repr(cols["fees"][i]), repr(cols["ret"][i]), cols["open"][i]] for i in range(len(tr))]


def equity_rows(eq: np.ndarray) -> list[list]:
    """The ``equity.csv`` rows (without the header) of ``EQUITY`` rows ``eq``."""
    times = iso_utc(eq["t_ns"])
    cols = [eq[f].tolist() for f in EQUITY.names]
    return [[times[i], cols[0][i]] + [repr(c[i]) for c in cols[1:]] for i in range(len(eq))]


def write_reports(out_dir, summary: dict, trades, equity, symbols, html: bool = True,
                  max_html_trades: int = 200) -> dict[str, str]:
    """Write the report files into ``out_dir`` (created) and return ``{kind: path}`` for
    ``summary``, ``trades``, ``equity`` and, with ``html``, ``html`` (``report.html``, see
    ``report_html``). Raises ValueError naming the bad argument before writing anything."""
    if not isinstance(summary, dict):
        raise ValueError(f"summary: expected a dict, got {type(summary).__name__}")
    tr = check_trades(trades)
    eq = check_equity(equity)
    bad: list[str] = []
    doc = json_safe(summary, "", bad)
    if bad:
        doc["non_finite_fields"] = bad
    text = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
    t_rows, e_rows = trade_rows(tr, symbols), equity_rows(eq)
    page = None
    if html:
        from .report_html import render_html

        page = render_html(doc, tr, eq, symbols, max_trades=max_html_trades)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    p = lambda name: os.path.join(out_dir, name)  # noqa: E731

    def write_bytes(data):
        def write(tmp):
            with open(tmp, "wb") as f:
                f.write(data)
        return write
    out = {"summary": write_atomic(p("summary.json"), write_bytes(text + b"\n")),
           "trades": _write_csv(p("trades.csv"), TRADE_COLUMNS, t_rows),
           "equity": _write_csv(p("equity.csv"), EQUITY_COLUMNS, e_rows)}
    if page is not None:
        out["html"] = write_atomic(p("report.html"), write_bytes(page.encode("utf-8")))
    return out
