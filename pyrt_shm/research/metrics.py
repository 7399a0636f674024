"""Performance metrics of a backtest from its equity curve and its trades (numpy, vectorised).

Conventions (FACTS §13; every one is echoed under ``"conventions"`` in the result):

* **Period returns.** The curve is resampled to the last equity of each period (``period``:
  UTC-aligned buckets of 1d/1h/1m/1s, or ``"sample"``: every row closes a period; a US equity
  session fits inside one UTC day). The opening value is ``initial_equity`` when given, else
  the first row (which then opens the first period, not closes it). Returns are simple:
  ``close / previous close - 1``. A period whose previous close is <= 0 has no return: it is
  dropped and counted (``periods_dropped``).
* **Risk-free rate** is annual; per period it is ``(1 + rf) ** (1 / periods_per_year) - 1``.
* **Volatility** = ``std(r, ddof=1) * sqrt(ppy)``. **Sharpe** = ``mean(r - rf_p) /
  std(r, ddof=1) * sqrt(ppy)`` (arithmetic mean over the sample std). **Sortino** =
  ``mean(r - rf_p) / DD * sqrt(ppy)`` with the downside deviation ``DD = sqrt(mean(min(0,
  r - rf_p) ** 2))`` over *all* periods (the common form; target = the per-period rf).
  Both are None with fewer than two returns or a deviation below ``STD_EPS`` (flat curve).
* **CAGR** over the actual span ``(t_last - t_first) / 365.25 days``: ``(final / opening) **
  (1 / years) - 1``; -1 when everything is lost; None for a zero span or when the figure
  overflows a float (a span of seconds cannot be annualised).
* **Drawdown** on the full curve (not resampled), a fraction of the running peak, the peak
  starting at ``initial_equity`` when given. ``max_drawdown`` <= 0. The longest episode, peak
  to recovery (or to the end), is ``max_drawdown_duration_ns`` and, in periods, the number of
  period closes after the peak's period up to the recovery's (rows for ``"sample"``).
  **Calmar** = ``cagr / |max_drawdown|`` (None without a drawdown).
* **Trades** (closed only, currency P&L after fees): ``win_rate`` = share with pnl > 0 (a zero
  P&L is not a win); ``profit_factor`` = gross profit / |gross loss|, **None when there is no
  losing trade** (it would be +inf, which JSON cannot hold; ``gross_loss`` = 0 tells that
  case apart from "no trades"); ``expectancy`` = mean pnl per closed trade.
* **Exposure**: time-weighted share of the span with a position: the interval after each
  sample counts when that sample's ``gross`` is non-zero (a position opened and closed between
  two samples is not seen).
* **Turnover** = traded notional (every execution: entries, and exits of closed trades) /
  mean equity of the samples; ``turnover_annual`` = that / years.
* **VaR / CVaR** on period returns at ``var_level``, as positive loss fractions (negative when
  even the tail is a gain), by ``procs.risk_var`` (the risk stage's estimators): historical by
  default (numpy linear quantile; CVaR = mean of the returns at or below it), parametric
  (normal, ddof=1) on request; ``var``/``cvar`` follow ``var_method``, and both methods are
  given. None with fewer than two returns.

Undefined figures are None, never NaN or inf: the result is valid JSON as it is.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from procs.risk_var import cvar_historical, cvar_parametric, var_historical, var_parametric

from .equity import check_equity, underwater
from .trades import TRADE, check_trades

NS_PER_DAY = 86_400 * 1_000_000_000
NS_PER_YEAR = 365.25 * NS_PER_DAY
PERIOD_NS = {"1d": NS_PER_DAY, "1h": 3_600 * 10**9, "1m": 60 * 10**9, "1s": 10**9, "sample": 0}
VAR_METHODS = ("historical", "parametric")
STD_EPS = 1e-12   #: a per-period deviation below this is a flat curve (float dust, not risk)


def _is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


@dataclass(frozen=True)
class Conventions:
    """How returns are sampled and annualised (see the module doc). Invalid values raise
    ValueError naming every bad field at once (``Conventions.period: ...``)."""

    periods_per_year: float = 252.0   #: 252 for daily equities, 365 for crypto
    risk_free_rate: float = 0.0       #: annual; per period (1 + rf) ** (1 / ppy) - 1
    period: str = "1d"                #: "1d", "1h", "1m", "1s" or "sample"
    var_level: float = 0.95           #: VaR/CVaR confidence, in (0, 1)
    var_method: str = "historical"    #: "historical" or "parametric" (normal)

    def __post_init__(self):
        errors = []
        for name, lo, rule in (("periods_per_year", 0.0, "> 0"), ("risk_free_rate", -1.0, "> -1")):
            v = getattr(self, name)
            if not _is_real(v) or not math.isfinite(v) or v <= lo:
                errors.append(f"Conventions.{name}: must be a finite number {rule}, got {v!r}")
            else:
                object.__setattr__(self, name, float(v))
        v = self.var_level
        if not _is_real(v) or not 0.0 < v < 1.0:
            errors.append(f"Conventions.var_level: must be a number in (0, 1), got {v!r}")
        else:
            object.__setattr__(self, "var_level", float(v))
        if self.period not in PERIOD_NS:
            errors.append(f"Conventions.period: must be one of {', '.join(PERIOD_NS)}, got {self.period!r}")
        if self.var_method not in VAR_METHODS:
            errors.append(f"Conventions.var_method: must be one of {', '.join(VAR_METHODS)}, "
                          f"got {self.var_method!r}")
        if errors:
            raise ValueError("; ".join(errors))

    @classmethod
    def from_dict(cls, d: dict, where: str = "Conventions") -> "Conventions":
        """Build from a config table; unknown keys raise ValueError naming ``where.key``."""
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected a table of conventions, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError("; ".join(f"{where}.{k}: unknown key (known: {', '.join(sorted(known))})"
                                       for k in unknown))
        return cls(**d)

    @property
    def rf_per_period(self) -> float:
        return (1.0 + self.risk_free_rate) ** (1.0 / self.periods_per_year) - 1.0

    def echo(self) -> dict:
        """The conventions as a JSON-ready dict, with the derived and fixed ones spelled out."""
        d = asdict(self)
        d.update(risk_free_per_period=self.rf_per_period, period_ns=PERIOD_NS[self.period],
                 returns="simple: period close / previous close - 1", std_ddof=1,
                 sortino_downside="sqrt(mean(min(0, r - rf_per_period)^2)) over all periods",
                 year_days=365.25, drawdown="full curve, fraction of the running peak",
                 profit_factor_without_losses=None, trades="closed only, currency pnl after fees",
                 var_sign="positive = loss fraction", var_quantile="numpy linear")
        return d


def _f(x) -> float | None:
    """A JSON-safe float: None for None, NaN and inf."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def ordinals(t_ns: np.ndarray, period: str) -> np.ndarray:
    """Dense rank of each row's period (0, 1, ...); the row index for ``"sample"``."""
    if period == "sample" or len(t_ns) == 0:
        return np.arange(len(t_ns), dtype=np.int64)
    b = t_ns // PERIOD_NS[period]
    return np.concatenate(([0], np.cumsum(b[1:] != b[:-1]))).astype(np.int64)


def period_returns(eq: np.ndarray, conv: Conventions, initial_equity: float | None = None):
    """(returns, their close times, dropped): simple returns of the period closes (module doc)."""
    v, t = eq["equity"], eq["t_ns"]
    if len(v) == 0:
        return np.zeros(0), np.zeros(0, np.int64), 0
    o = ordinals(t, conv.period)
    idx = np.flatnonzero(np.append(o[1:] != o[:-1], True))      # last row of each period
    if initial_equity is None:
        opening = v[0]
        if idx[0] == 0:                  # row 0 alone in its period: the opening, not a close
            idx = idx[1:]
    else:
        opening = float(initial_equity)
    vals = np.concatenate(([opening], v[idx]))
    prev = vals[:-1]
    ok = prev > 0.0
    r = vals[1:][ok] / prev[ok] - 1.0
    return r, t[idx][ok], int((~ok).sum())


def _drawdowns(eq, conv, initial_equity) -> dict:
    t, v = eq["t_ns"], eq["equity"]
    o = ordinals(t, conv.period)
    if initial_equity is not None:       # the starting capital is the first peak, a period before
        t = np.concatenate(([t[0]], t))
        v = np.concatenate(([float(initial_equity)], v))
        o = np.concatenate(([-1], o))
    ep = underwater(t, v)
    if len(ep["peak"]) == 0:
        return {"max_drawdown": 0.0, "max_drawdown_peak_ns": None, "max_drawdown_trough_ns": None,
                "max_drawdown_recovery_ns": None, "max_drawdown_duration_ns": 0,
                "max_drawdown_duration_periods": 0, "max_drawdown_duration_recovered": True,
                "drawdown_episodes": 0}
    d = int(np.argmin(ep["depth"]))
    k = int(np.argmax(ep["duration_ns"]))
    return {"max_drawdown": _f(ep["depth"][d]),
            "max_drawdown_peak_ns": int(t[ep["peak"][d]]),
            "max_drawdown_trough_ns": int(t[ep["trough"][d]]),
            "max_drawdown_recovery_ns": int(t[ep["end"][d]]) if ep["recovered"][d] else None,
            "max_drawdown_duration_ns": int(ep["duration_ns"][k]),
            "max_drawdown_duration_periods": int(o[ep["end"][k]] - o[ep["peak"][k]]),
            "max_drawdown_duration_recovered": bool(ep["recovered"][k]),
            "drawdown_episodes": int(len(ep["peak"]))}


def _return_stats(r: np.ndarray, conv: Conventions) -> dict:
    ppy, rf = conv.periods_per_year, conv.rf_per_period
    n = len(r)
    out = dict.fromkeys(("mean_period_return", "annual_volatility", "sharpe", "sortino"))
    if n >= 1:
        out["mean_period_return"] = _f(r.mean())
    if n >= 2:
        sd = float(r.std(ddof=1))
        excess = float(r.mean()) - rf
        out["annual_volatility"] = _f(sd * math.sqrt(ppy))
        if sd > STD_EPS:
            out["sharpe"] = _f(excess / sd * math.sqrt(ppy))
        down = math.sqrt(float(np.mean(np.minimum(0.0, r - rf) ** 2)))
        if down > STD_EPS:
            out["sortino"] = _f(excess / down * math.sqrt(ppy))
    a = conv.var_level
    out.update(var_historical=_f(var_historical(r, a)), cvar_historical=_f(cvar_historical(r, a)),
               var_parametric=_f(var_parametric(r, a)), cvar_parametric=_f(cvar_parametric(r, a)))
    out["var"] = out[f"var_{conv.var_method}"]
    out["cvar"] = out[f"cvar_{conv.var_method}"]
    return out


def trade_stats(trades: np.ndarray) -> dict:
    """Per closed trade: counts, win rate, profit factor, expectancy (module doc); open P&L."""
    tr = check_trades(trades)
    closed = tr[tr["open"] == 0]
    pnl = closed["pnl"]
    n = len(closed)
    gp, gl = float(pnl[pnl > 0].sum()), float(pnl[pnl < 0].sum())
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    return {"n_trades": int(n), "n_open_trades": int(len(tr) - n),
            "n_wins": int(len(wins)), "n_losses": int(len(losses)),
            "win_rate": _f(len(wins) / n) if n else None,
            "gross_profit": _f(gp), "gross_loss": _f(gl),
            "profit_factor": _f(gp / -gl) if gl < 0.0 else None,
            "expectancy": _f(pnl.mean()) if n else None,
            "avg_win": _f(wins.mean()) if len(wins) else None,
            "avg_loss": _f(losses.mean()) if len(losses) else None,
            "avg_trade_return": _f(closed["ret"].mean()) if n else None,
            "closed_pnl": _f(pnl.sum()), "open_pnl": _f(tr["pnl"][tr["open"] == 1].sum()),
            "fees": _f(tr["fees"].sum()),
            "traded_notional": _f((tr["qty"] * tr["entry_px"]).sum() + (closed["qty"] * closed["exit_px"]).sum())}


def _cagr(ratio: float, years: float) -> float | None:
    if years <= 0.0:
        return None
    if ratio <= 0.0:
        return -1.0
    g = math.log(ratio) / years
    return math.expm1(g) if g < 700.0 else None        # exp(>709) overflows a float


def performance(equity: np.ndarray, trades: np.ndarray | None, conv: Conventions | None = None,
                initial_equity: float | None = None) -> dict:
    """Every metric of the module doc for one run, as a JSON-ready dict (None = undefined).

    ``equity``: ``EQUITY`` rows, time ascending; ``trades``: ``TRADE`` rows (None = none);
    ``initial_equity``: the capital at the first sample's time (default: its equity).
    Bad input raises ValueError naming the array, field and row.
    """
    conv = Conventions() if conv is None else conv
    if not isinstance(conv, Conventions):
        raise ValueError(f"conv: expected a Conventions, got {type(conv).__name__}")
    if initial_equity is not None and (not _is_real(initial_equity) or not math.isfinite(initial_equity)):
        raise ValueError(f"initial_equity: must be a finite number or None, got {initial_equity!r}")
    eq = check_equity(equity)
    tr = np.zeros(0, TRADE) if trades is None else check_trades(trades)
    r, _, dropped = period_returns(eq, conv, initial_equity)
    out = {"n_samples": int(len(eq)), "n_periods": int(len(r)), "periods_dropped": dropped}
    if len(eq):
        t0, t1 = int(eq["t_ns"][0]), int(eq["t_ns"][-1])
        opening = float(eq["equity"][0]) if initial_equity is None else float(initial_equity)
        final = float(eq["equity"][-1])
        years = (t1 - t0) / NS_PER_YEAR
        span = t1 - t0
        out.update(start_ns=t0, end_ns=t1, span_ns=span, years=_f(years), initial_equity=_f(opening),
                   final_equity=_f(final),
                   total_return=_f(final / opening - 1.0) if opening > 0.0 else None,
                   cagr=_f(_cagr(final / opening, years)) if opening > 0.0 else None)
        out.update(_drawdowns(eq, conv, initial_equity))
        dt = np.diff(eq["t_ns"])
        out["exposure"] = _f(dt[eq["gross"][:-1] != 0.0].sum() / span) if span > 0 else None
        mean_eq = float(eq["equity"].mean())
    else:
        out.update(dict.fromkeys(("start_ns", "end_ns", "span_ns", "years", "final_equity", "total_return",
                                  "cagr", "max_drawdown", "exposure")), initial_equity=_f(initial_equity))
        years, mean_eq = 0.0, 0.0
    md = out.get("max_drawdown")
    out["calmar"] = _f(out["cagr"] / -md) if out["cagr"] is not None and md is not None and md < 0.0 else None
    out.update(_return_stats(r, conv))
    ts = trade_stats(tr)
    out.update(ts)
    turnover = ts["traded_notional"] / mean_eq if mean_eq > 0.0 else None
    out["turnover"] = _f(turnover)
    out["turnover_annual"] = _f(turnover / years) if turnover is not None and years > 0.0 else None
    out["conventions"] = conv.echo()
    return out
