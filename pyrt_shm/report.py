"""Turn an engine's shared state into a report: counters, rings, positions, latency.

Works on any object with the ``EngineMemory`` attributes (``stats``, ``hists``,
``hist_names``, ``rings``, ``tables``, ``stage_names``, ``classes``), so the supervisor,
tests and backtests share it.
"""
from __future__ import annotations

import json
import os

import numpy as np

from layouts.control import KILL_CAUSE_NAMES, KILL_OPERATOR, TRADING_STATE_NAMES
from layouts.stats import STAGE_STATE_NAMES

from . import hdr_convert

LATENCY_PERCENTILES = (50, 90, 99, 99.9, 99.99, 100)


def counters(mem) -> dict:
    """``{stage: {counter: value}}`` from the stats table."""
    out = {}
    for i, name in enumerate(mem.stage_names):
        row = mem.stats[i]
        cls = mem.classes[name]
        out[name] = {c: int(row["counters"][k]) for k, c in enumerate(cls.COUNTERS)}
        extra = getattr(cls, "table_counters", None)     # counters a stage keeps in a table
        if extra is not None:
            out[name].update(extra(mem.tables))
    return out


def stage_reports(mem) -> dict:
    """``{stage: dict}`` from each stage class that has a ``summarize(tables)`` classmethod."""
    out = {}
    for name in mem.stage_names:
        fn = getattr(mem.classes[name], "summarize", None)
        if fn is not None:
            out[name] = fn(mem.tables)
    return out


def stages(mem, now_ns: int | None = None) -> dict:
    out = {}
    for i, name in enumerate(mem.stage_names):
        r = mem.stats[i]
        hb = int(r["heartbeat_ns"])
        out[name] = {"pid": int(r["pid"]), "cpu": int(r["cpu"]),
                     "state": STAGE_STATE_NAMES.get(int(r["state"]), "?"),
                     "cycles": int(r["cycles"]), "work": int(r["work"]),
                     "idle_cycles": int(r["idle_cycles"]), "errors": int(r["errors"]),
                     "heartbeat_age_ms": None if not hb or now_ns is None else (now_ns - hb) / 1e6}
    return out


def rings(mem) -> dict:
    return {name: r.statistics().__dict__ for name, r in mem.rings.items()}


def latency(mem) -> dict:
    """Percentiles (ns) of every histogram that recorded something."""
    out = {}
    for i, name in enumerate(mem.hist_names):
        row = mem.hists[i]
        if int(row["total"]) == 0 and not row["counts"].any():
            continue
        out[name] = hdr_convert.summary(row)
    return out


def positions(mem, table: str = "positions") -> list[dict]:
    t = mem.tables.get(table)
    if t is None:
        return []
    syms = mem.topology.engine.symbols
    out = []
    for i in range(len(t)):
        r = t.read(i)
        if r["fills"] == 0 and r["qty"] == 0:
            continue
        d = {k: (float(r[k]) if isinstance(r[k], np.floating) else int(r[k])) for k in r.dtype.names}
        d["symbol"] = syms[i] if i < len(syms) else str(i)
        out.append(d)
    return out


def control(mem) -> dict:
    c = mem.control[0]
    out = {"kill_switch": bool(c["kill_switch"]),
           "kill_cause": KILL_CAUSE_NAMES.get(int(c["kill_cause"]), "?"),
           "trading_state": TRADING_STATE_NAMES.get(int(c["trading_state"]), "?")}
    if int(c["kill_cause"]) == KILL_OPERATOR:          # `pyrt kill`: its audit line, if found
        from .kill_cmd import find_audit

        out["kill_audit"] = find_audit(mem.engine, int(c["kill_ns"]))
    return out


def summary(mem, elapsed_s: float, extra: dict | None = None) -> dict:
    s = {
        "engine": mem.engine,
        "elapsed_s": round(elapsed_s, 3),
        "stages": stages(mem),
        "counters": counters(mem),
        "rings": rings(mem),
        "positions": positions(mem),
        "venue_positions": positions(mem, "venue_positions"),
        "control": control(mem),
        "latency_ns": latency(mem),
        "stage_reports": stage_reports(mem),
    }
    if extra:
        s.update(extra)
    return s


def write_run_dir(mem, path: str, summary_dict: dict) -> list[str]:
    """Write ``summary.json``, one ``<histogram>.hgrm`` per recorded histogram, and
    ``histograms.json``: every histogram (empty ones too) as ``{name: hdrh encode() string}``.

    ``.hgrm`` is a percentile table for people and plotters; it cannot be decoded back.
    ``histograms.json`` is the lossless copy that ``pyrt hist`` reads and merges.
    """
    os.makedirs(path, exist_ok=True)
    written = []
    with open(os.path.join(path, "summary.json"), "w") as f:
        json.dump(summary_dict, f, indent=2, default=str)
    written.append("summary.json")
    encoded = {}
    for i, name in enumerate(mem.hist_names):
        row = mem.hists[i]
        encoded[name] = hdr_convert.encode(row).decode("ascii")
        if not row["counts"].any():
            continue
        fn = f"{name}.hgrm"
        hdr_convert.write_hgrm(row, os.path.join(path, fn))
        written.append(fn)
    with open(os.path.join(path, "histograms.json"), "w") as f:
        json.dump(encoded, f, indent=1)
    written.append("histograms.json")
    return written


def fmt_ns(v) -> str:
    """A duration in ns for people: 850ns, 12.3us, 4.56ms, 1.20s ("-" for None)."""
    if v is None:
        return "-"
    v = float(v)
    if v < 1e3:
        return f"{v:.0f}ns"
    if v < 1e6:
        return f"{v / 1e3:.1f}us"
    if v < 1e9:
        return f"{v / 1e6:.2f}ms"
    return f"{v / 1e9:.2f}s"


def format_report(s: dict) -> str:
    """Human-readable end-of-run report."""
    lines = [f"engine {s['engine']}: ran {s['elapsed_s']:.2f} s"]
    c = s["counters"]
    get = lambda st, k: c.get(st, {}).get(k, 0)  # noqa: E731
    ticks = get("feed", "ticks_out")
    lines.append(f"  ticks {ticks}  intents {get('signal', 'intents_out')}  orders {get('risk', 'orders_out')}"
                 f"  fills {get('exec', 'fills_out')}  ({ticks / max(s['elapsed_s'], 1e-9):,.0f} ticks/s)")
    rej = {f"{st}.{k}": v for st, cs in c.items() for k, v in cs.items()
           if k.startswith("rej") and k != "rejected" and v}   # "rejected" is the total
    lines.append(f"  rejections ({sum(rej.values())}): "
                 + (", ".join(f"{k}={v}" for k, v in rej.items()) or "none"))
    lines.append(f"  control: {s['control']}")
    for st, rep in s.get("stage_reports", {}).items():
        if "equity" in rep:                                   # a portfolio (the risk stage)
            var = rep.get("var") or {}
            v99 = var.get("var_hist_99")
            lines.append(f"  {st}: {rep['trading_state']} (halt: {rep['halt_reason']})  equity "
                         f"{rep['equity']:,.2f}  net P&L {rep['net_pnl']:,.2f}  drawdown "
                         f"{rep['drawdown']:,.2f}  gross {rep['gross_exposure']:,.0f}  VaR99 "
                         + ("-" if v99 is None else f"{v99:,.2f}"))
    for p in s["positions"]:
        lines.append(f"  position {p['symbol']}: qty {p['qty']:g} avg {p['avg_px']:.4f} "
                     f"realized {p['realized']:.2f} unrealized {p['unrealized']:.2f} fees {p['fees']:.2f}")
    lines.append(f"  {'latency':32s} {'count':>10s} {'p50':>9s} {'p99':>9s} {'p99.9':>9s} {'max':>9s}")
    for name, h in s["latency_ns"].items():
        lines.append(f"  {name:32s} {h['count']:>10d} {fmt_ns(h['p50']):>9s} {fmt_ns(h['p99']):>9s} "
                     f"{fmt_ns(h['p999']):>9s} {fmt_ns(h['max']):>9s}")
    for name, r in s["rings"].items():
        if r["dropped"] or r["times_full"]:
            lines.append(f"  ring {name}: times_full {r['times_full']} dropped {r['dropped']} "
                         f"high_water {r['high_water']}")
    return "\n".join(lines)
