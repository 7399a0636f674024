"""Value at risk and expected shortfall over the P&L history (numpy; off the hot path).

Inputs are P&L *changes* per sampling interval (currency; a loss is negative). Results are
losses as positive numbers at confidence ``alpha`` (e.g. 0.99):

* historical VaR: ``-q`` where ``q`` is the ``1 - alpha`` quantile of the changes (numpy's
  default linear interpolation); historical CVaR: minus the mean of the changes at or below
  ``q`` (the expected loss in the tail);
* parametric (normal) VaR: ``z * sigma - mu`` with ``z = Phi^-1(alpha)``, ``mu`` the mean and
  ``sigma`` the sample standard deviation (ddof=1); parametric CVaR:
  ``sigma * phi(z) / (1 - alpha) - mu``.

Historical is the default (FACTS §13); parametric on request. With fewer than two changes
every figure is None.
"""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np


def pnl_changes(samples: np.ndarray) -> np.ndarray:
    """Consecutive net P&L changes from ``pnl_history`` rows (any order; unwritten rows skipped)."""
    s = samples[samples["t_ns"] != 0]
    s = s[np.argsort(s["seq"], kind="stable")]
    return np.diff(s["net_pnl"].astype(np.float64))


def var_historical(changes, alpha: float = 0.99) -> float | None:
    x = np.asarray(changes, dtype=np.float64)
    if len(x) < 2:
        return None
    return float(-np.quantile(x, 1.0 - alpha))


def cvar_historical(changes, alpha: float = 0.99) -> float | None:
    x = np.asarray(changes, dtype=np.float64)
    if len(x) < 2:
        return None
    q = np.quantile(x, 1.0 - alpha)
    return float(-x[x <= q].mean())


def var_parametric(changes, alpha: float = 0.99) -> float | None:
    x = np.asarray(changes, dtype=np.float64)
    if len(x) < 2:
        return None
    z = NormalDist().inv_cdf(alpha)
    return float(z * x.std(ddof=1) - x.mean())


def cvar_parametric(changes, alpha: float = 0.99) -> float | None:
    x = np.asarray(changes, dtype=np.float64)
    if len(x) < 2:
        return None
    z = NormalDist().inv_cdf(alpha)
    pdf = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return float(x.std(ddof=1) * pdf / (1.0 - alpha) - x.mean())


def var_report(samples: np.ndarray, alphas=(0.95, 0.99), interval_s: float | None = None) -> dict:
    """VaR/CVaR (historical and parametric) of the portfolio's net P&L per sampling interval."""
    ch = pnl_changes(samples)
    out = {"samples": int(len(ch) + 1 if len(ch) else (samples["t_ns"] != 0).sum()),
           "interval_s": interval_s}
    for a in alphas:
        k = f"{a * 100:g}"
        out[f"var_hist_{k}"] = var_historical(ch, a)
        out[f"cvar_hist_{k}"] = cvar_historical(ch, a)
        out[f"var_param_{k}"] = var_parametric(ch, a)
        out[f"cvar_param_{k}"] = cvar_parametric(ch, a)
    return out
