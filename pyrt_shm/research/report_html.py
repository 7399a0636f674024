"""One self-contained ``report.html`` for a backtest: metrics, charts, trades (no dependency).

The page has a key-metrics table, the equity curve with trade markers (entries ▲ long /
▼ short, exits ●; each at the equity at that time, since the report has no prices), the
drawdown curve, every other scalar of the summary, and the first ``max_trades`` trades.
Charts are inline SVG drawn here: a curve of more than ``MAX_POINTS`` samples is reduced by
min/max decimation (each bucket keeps its lowest and highest sample, in time order), so the
extremes, and so the max drawdown, stay visible. At most ``MAX_MARKERS`` markers are drawn
(evenly spaced over the trades); the page says when it shows fewer than there are. No
script, no external file: the page opens anywhere, offline.
"""
from __future__ import annotations

import html
import math

import numpy as np

from .equity import check_equity
from .report_files import iso_utc
from .trades import check_trades

MAX_POINTS = 2000
MAX_MARKERS = 400
W, H, PAD_L, PAD_R, PAD_T, PAD_B = 960, 300, 80, 20, 14, 34

#: (key, label, format) of the key-metrics table, in this order; absent keys are skipped.
KEY_METRICS = (("total_return", "Total return", "pct"), ("cagr", "CAGR", "pct"),
               ("annual_volatility", "Annual volatility", "pct"), ("sharpe", "Sharpe", "num"),
               ("sortino", "Sortino", "num"), ("max_drawdown", "Max drawdown", "pct"),
               ("max_drawdown_duration_ns", "Max drawdown duration", "dur"),
               ("max_drawdown_duration_periods", "Max drawdown duration (periods)", "int"),
               ("calmar", "Calmar", "num"), ("var", "VaR", "pct"), ("cvar", "CVaR", "pct"),
               ("n_trades", "Closed trades", "int"), ("win_rate", "Win rate", "pct"),
               ("profit_factor", "Profit factor", "num"), ("expectancy", "Expectancy", "money"),
               ("exposure", "Exposure", "pct"), ("turnover_annual", "Turnover (annual)", "num"),
               ("initial_equity", "Initial equity", "money"), ("final_equity", "Final equity", "money"))


def _dur(ns) -> str:
    s = float(ns) / 1e9
    if s < 60:
        return f"{s:.3g}s"
    d, rem = divmod(int(s), 86_400)
    h, rem = divmod(rem, 3_600)
    return (f"{d}d {h}h" if d else f"{h}h {rem // 60}m") if s >= 3_600 else f"{rem // 60}m {rem % 60}s"


def fmt(v, kind: str = "num") -> str:
    """A metric for people; "-" when undefined (None)."""
    if v is None:
        return "-"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if kind == "pct":
        return f"{v * 100:.2f}%"
    if kind == "int":
        return f"{int(v):,d}"
    if kind == "money":
        return f"{v:,.2f}"
    if kind == "dur":
        return _dur(v)
    return f"{v:,.4g}" if isinstance(v, float) else f"{v:,d}"


def metrics_of(summary: dict) -> dict:
    """The metrics dict inside a summary: its ``performance`` or ``metrics`` table, else itself."""
    for k in ("performance", "metrics"):
        if isinstance(summary.get(k), dict):
            return summary[k]
    return summary


def flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, value) of every scalar leaf of ``d`` (lists shown when short)."""
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.extend(flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out.append((key, v if len(v) <= 8 else f"[{len(v)} items]"))
        else:
            out.append((key, v))
    return out


def downsample(t: np.ndarray, v: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` samples of (t, v): min/max decimation, each bucket's low and high
    in time order (the first and last sample always kept)."""
    n = len(v)
    if n <= max_points:
        return t, v
    nb = (max_points - 2) // 2
    k = math.ceil((n - 2) / nb)
    pad = nb * k - (n - 2)
    body = np.concatenate((v[1:-1], np.full(pad, v[-2])))       # pad repeats a real sample
    idx = np.arange(1, n - 1)
    idx = np.concatenate((idx, np.full(pad, n - 2)))
    blk, ib = body.reshape(nb, k), idx.reshape(nb, k)
    lo = ib[np.arange(nb), blk.argmin(axis=1)]
    hi = ib[np.arange(nb), blk.argmax(axis=1)]
    keep = np.unique(np.concatenate(([0, n - 1], lo, hi)))      # sorted = time order
    return t[keep], v[keep]


class _Axes:
    """Maps (t_ns, value) to SVG pixels of the plot area."""

    def __init__(self, t0, t1, lo, hi):
        if hi <= lo:
            span = abs(hi) * 0.01 or 1.0
            lo, hi = lo - span, hi + span
        self.t0, self.t1, self.lo, self.hi = int(t0), int(t1), float(lo), float(hi)

    def x(self, t):
        t = np.asarray(t, dtype=np.float64)
        if self.t1 <= self.t0:
            return np.full(t.shape, PAD_L + (W - PAD_L - PAD_R) / 2)
        return PAD_L + (t - self.t0) / (self.t1 - self.t0) * (W - PAD_L - PAD_R)

    def y(self, v):
        return PAD_T + (self.hi - np.asarray(v, dtype=np.float64)) / (self.hi - self.lo) * (H - PAD_T - PAD_B)


def _frame(ax: _Axes, title: str, kind: str) -> list[str]:
    x0, x1, y0, y1 = PAD_L, W - PAD_R, PAD_T, H - PAD_B
    t0, t1 = iso_utc(np.array([ax.t0, ax.t1]))
    parts = [f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" class="plot"/>',
             f'<text x="{x0}" y="{H - 8}" class="lbl">{t0[:19]}</text>',
             f'<text x="{x1}" y="{H - 8}" class="lbl" text-anchor="end">{t1[:19]}</text>',
             f'<text x="{x0 + (x1 - x0) / 2}" y="{H - 8}" class="ttl" text-anchor="middle">'
             f'{html.escape(title)}</text>']
    for v in np.linspace(ax.lo, ax.hi, 5):
        y = float(ax.y(v))
        parts.append(f'<line x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{x0 - 6}" y="{y + 4:.1f}" class="lbl" text-anchor="end">{fmt(float(v), kind)}</text>')
    return parts


def _points(xs, ys) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs.tolist(), ys.tolist()))


def _svg(parts: list[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
            f'role="img" aria-label="{html.escape(label)}">' + "".join(parts) + "</svg>")


def equity_svg(eq: np.ndarray, trades: np.ndarray) -> tuple[str, str]:
    """(SVG of the equity curve with trade markers, a note on what was left out)."""
    t, v = downsample(eq["t_ns"], eq["equity"])
    ax = _Axes(t[0], t[-1], float(v.min()), float(v.max()))
    parts = _frame(ax, "equity", "money")
    parts.append(f'<polyline class="eq" points="{_points(ax.x(t), ax.y(v))}"/>')
    n = len(trades)
    sel = trades if n <= MAX_MARKERS // 2 else trades[np.linspace(0, n - 1, MAX_MARKERS // 2).astype(np.int64)]
    at = lambda ts: np.interp(ts, eq["t_ns"], eq["equity"])  # noqa: E731  equity at those times
    ex, ey = ax.x(sel["entry_ns"]), ax.y(at(sel["entry_ns"]))
    for x, y, side in zip(ex.tolist(), ey.tolist(), sel["side"].tolist()):
        pts = (f"{x:.1f},{y - 6:.1f} {x - 5:.1f},{y + 3:.1f} {x + 5:.1f},{y + 3:.1f}" if side > 0 else
               f"{x:.1f},{y + 6:.1f} {x - 5:.1f},{y - 3:.1f} {x + 5:.1f},{y - 3:.1f}")
        parts.append(f'<polygon class="{"long" if side > 0 else "short"}" points="{pts}"/>')
    closed = sel[sel["open"] == 0]
    xx, xy = ax.x(closed["exit_ns"]), ax.y(at(closed["exit_ns"]))
    parts.extend(f'<circle class="exit" cx="{x:.1f}" cy="{y:.1f}" r="3"/>' for x, y in zip(xx.tolist(), xy.tolist()))
    note = f"{len(t)} of {len(eq)} samples drawn; markers for {len(sel)} of {n} trades"
    return _svg(parts, "equity curve"), note


def drawdown_svg(eq: np.ndarray) -> str:
    t, d = downsample(eq["t_ns"], eq["drawdown"])
    ax = _Axes(t[0], t[-1], min(float(d.min()), 0.0), 0.0)
    parts = _frame(ax, "drawdown", "pct")
    xs, ys = ax.x(t), ax.y(d)
    y0 = float(ax.y(0.0))
    area = f"{xs[0]:.1f},{y0:.1f} " + _points(xs, ys) + f" {xs[-1]:.1f},{y0:.1f}"
    parts.append(f'<polygon class="dd" points="{area}"/>')
    return _svg(parts, "drawdown")


def _table(rows, header=None, cls="") -> str:
    esc = lambda c: html.escape(str(c))  # noqa: E731
    head = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}">{head}{body}</table>'


def trades_table(tr: np.ndarray, symbols, max_trades: int) -> str:
    names = list(symbols)
    rows = []
    ent, ext = iso_utc(tr["entry_ns"][:max_trades]), iso_utc(tr["exit_ns"][:max_trades])
    for i, r in enumerate(tr[:max_trades]):
        s = int(r["sym"])
        rows.append([i, names[s] if s < len(names) else f"#{s}", "long" if r["side"] > 0 else "short",
                     f"{r['qty']:g}", ent[i][:23], f"{r['entry_px']:.4f}",
                     "open" if r["open"] else ext[i][:23], f"{r['exit_px']:.4f}",
                     fmt(float(r["pnl"]), "money"), fmt(float(r["ret"]), "pct")])
    cap = f"<p>first {len(rows)} of {len(tr)} trades (all in trades.csv)</p>" if len(tr) > len(rows) else ""
    return cap + _table(rows, ("#", "symbol", "side", "qty", "entry (UTC)", "entry px", "exit (UTC)",
                              "exit px (mark if open)", "pnl", "return"), "trades")


CSS = """body{font:14px system-ui,sans-serif;margin:24px;color:#222}h1{font-size:20px}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}table.kv td:first-child{text-align:left}.note{color:#777;font-size:12px}
svg{display:block;margin:8px 0}.plot{fill:#fcfcfc;stroke:#ccc}.grid{stroke:#eee}
.lbl{font-size:11px;fill:#666}.ttl{font-size:12px;fill:#333}.eq{fill:none;stroke:#1f5fbf;stroke-width:1.2}
.dd{fill:#e06060;fill-opacity:.45;stroke:#c03030;stroke-width:1}.long{fill:#2a9d3a}.short{fill:#c0392b}
.exit{fill:#fff;stroke:#333;stroke-width:1}"""


def render_html(summary: dict, trades: np.ndarray, equity: np.ndarray, symbols, max_trades: int = 200,
                title: str = "Backtest report") -> str:
    """The report page as a string (inputs as ``report_files.write_reports`` checks them)."""
    trades, equity = check_trades(trades), check_equity(equity)
    m = metrics_of(summary)
    key = [(label, fmt(m[k], kind)) for k, label, kind in KEY_METRICS if k in m]
    if m.get("profit_factor", 0) is None and m.get("gross_loss") == 0 and (m.get("gross_profit") or 0) > 0:
        key = [(lbl, "no losing trade" if lbl == "Profit factor" else v) for lbl, v in key]
    body = [f"<h1>{html.escape(title)}</h1>", "<h2>Key metrics</h2>", _table(key, None, "kv")]
    if len(equity):
        svg, note = equity_svg(equity, trades)
        body += ["<h2>Equity</h2>", svg, f'<p class="note">{html.escape(note)}; ▲ long entry, '
                 "▼ short entry, ● exit</p>", "<h2>Drawdown</h2>", drawdown_svg(equity)]
    else:
        body.append("<p>No equity samples: nothing to chart.</p>")
    body += ["<h2>Trades</h2>", trades_table(trades, symbols, max_trades),
             "<h2>All figures</h2>", _table([(k, fmt(v)) for k, v in flatten(summary)], ("key", "value"), "kv")]
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + html.escape(title)
            + f"</title><style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
