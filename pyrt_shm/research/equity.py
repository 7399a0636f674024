"""The equity curve of a backtest (``EQUITY`` rows) and its drawdowns.

The backtest runner appends one ``EQUITY`` row per sample (data time, ascending) and calls
``fill_drawdown(eq, initial_equity)`` once at the end, with the same ``initial_equity`` it
gives ``metrics.performance`` (which recomputes drawdowns from the ``equity`` column, so the
two agree); the reports chart the ``drawdown`` column as it is.

Drawdown is a fraction of the running peak: ``equity / max(equity so far) - 1`` (<= 0). With
``initial_equity`` the peak starts there, so a curve that opens below its starting capital is
already under water. A fraction of a peak that is not positive means nothing: such rows get
0 at the peak and -1 (everything lost) below it. ``underwater`` lists each episode: from the
peak row to the first row back at or above the peak (recovery), or to the end.
"""
from __future__ import annotations

import numpy as np

EQUITY = np.dtype([("t_ns", "<i8"),        # sample time (unix ns of the data)
                   ("equity", "<f8"),      # cash + marked value of positions (after fees)
                   ("cash", "<f8"),
                   ("gross", "<f8"),       # sum |position value| at the marks
                   ("net", "<f8"),         # sum signed position value
                   ("drawdown", "<f8")])   # filled by fill_drawdown (equity / running max - 1), <= 0

_VALUES = ("equity", "cash", "gross", "net")


def check_equity(eq, what: str = "equity") -> np.ndarray:
    """Return ``eq`` as a 1-D ``EQUITY`` array or raise ValueError naming the field and row.

    Rules: the ``EQUITY`` fields are present; ``t_ns`` never decreases; ``equity``, ``cash``,
    ``gross`` and ``net`` are finite. Nothing is copied when ``eq`` already has the dtype.
    """
    if not isinstance(eq, np.ndarray) or eq.dtype.names is None:
        raise ValueError(f"{what}: expected a numpy structured array of dtype EQUITY, got {type(eq).__name__}")
    missing = [f for f in EQUITY.names if f not in eq.dtype.names]
    if missing:
        raise ValueError(f"{what}: missing field(s) {', '.join(missing)} (dtype EQUITY has {', '.join(EQUITY.names)})")
    if eq.ndim != 1:
        raise ValueError(f"{what}: expected one dimension, got shape {eq.shape}")
    if eq.dtype != EQUITY:
        out = np.zeros(len(eq), EQUITY)
        for f in EQUITY.names:
            out[f] = eq[f]
        eq = out
    if len(eq) > 1:
        back = np.flatnonzero(np.diff(eq["t_ns"]) < 0)
        if len(back):
            i = int(back[0]) + 1
            raise ValueError(f"{what}['t_ns']: must not decrease, row {i} ({int(eq['t_ns'][i])}) "
                             f"< row {i - 1} ({int(eq['t_ns'][i - 1])})")
    for f in _VALUES:
        bad = np.flatnonzero(~np.isfinite(eq[f]))
        if len(bad):
            i = int(bad[0])
            raise ValueError(f"{what}['{f}']: must be finite, row {i} is {eq[f][i]!r} ({len(bad)} such rows)")
    return eq


def drawdown(values: np.ndarray, initial: float | None = None) -> np.ndarray:
    """``values / running peak - 1`` (<= 0); the peak starts at ``initial`` when given."""
    v = np.asarray(values, dtype=np.float64)
    peak = np.maximum.accumulate(v) if len(v) else v
    if initial is not None and len(v):
        peak = np.maximum(peak, float(initial))
    out = np.zeros(len(v))
    pos = peak > 0.0
    out[pos] = v[pos] / peak[pos] - 1.0
    out[~pos & (v < peak)] = -1.0
    return np.minimum(out, 0.0)      # rounding can leave +1e-16 at a peak


def fill_drawdown(eq: np.ndarray, initial_equity: float | None = None) -> np.ndarray:
    """Write the ``drawdown`` column of ``eq`` in place (see the module doc) and return ``eq``."""
    eq["drawdown"] = drawdown(eq["equity"], initial_equity)
    return eq


def underwater(t_ns: np.ndarray, values: np.ndarray) -> dict:
    """Every drawdown episode of a curve (rows ascending in time), as arrays.

    ``peak``: the row of the peak; ``trough``: the deepest row; ``end``: the recovery row (the
    first back at or above the peak) or, when ``recovered`` is False, the last row;
    ``depth``: drawdown at the trough (< 0); ``duration_ns``: ``t[end] - t[peak]``.
    Row 0 is a peak by definition, so an episode always has a peak row.
    """
    v = np.asarray(values, dtype=np.float64)
    t = np.asarray(t_ns, dtype=np.int64)
    n = len(v)
    empty = np.zeros(0, np.int64)
    if n < 2:
        return {"peak": empty, "trough": empty, "end": empty, "recovered": np.zeros(0, bool),
                "depth": np.zeros(0), "duration_ns": empty}
    dd = drawdown(v)
    uw = dd < 0.0
    edge = np.diff(np.concatenate(([False], uw, [False])).astype(np.int8))
    first = np.flatnonzero(edge == 1)            # first underwater row of each run
    last = np.flatnonzero(edge == -1) - 1        # last underwater row of each run
    peak = first - 1
    recovered = last + 1 < n
    end = np.where(recovered, last + 1, last)
    # deepest row of each run: sort the underwater rows by (run, drawdown), take each run's first
    rows = np.flatnonzero(uw)
    run = np.cumsum(edge[:-1] == 1)[rows] - 1
    order = rows[np.lexsort((dd[rows], run))]
    trough = order[np.searchsorted(run, np.arange(len(first)))]     # run is ascending
    depth = dd[trough]
    return {"peak": peak, "trough": trough, "end": end, "recovered": recovered,
            "depth": depth, "duration_ns": t[end] - t[peak]}
