"""Round trips: executions matched FIFO into trades (one ``TRADE`` row per matched lot piece).

Matching is the engine's FIFO (``procs.risk_pnl.apply_fill_fifo``), per symbol: an execution
against the open side closes the oldest lots first; what is left after every lot is closed
opens a lot on the other side (a flip closes, then opens). Each ``TRADE`` is one piece of one
lot, closed by one execution: a lot closed by two sells gives two trades, and a sell that
closes two lots gives two trades. Hence, per symbol, the gross P&L of the closed trades is
the risk stage's FIFO ``realized`` and that of the open ones its ``unrealized`` at the marks.

Fees: an execution's fee is split over the quantity it opened or closed, pro rata
(``fee * piece / execution qty``); a trade carries the share of its opening execution and,
once closed, of its closing one. ``pnl = side * (exit_px - entry_px) * qty - fees`` and
``ret = pnl / (entry_px * qty)``.

At the end, open lots are marked to the last price seen (``marks``) and flagged ``open``: a
backtest does not force-close them at a price nobody could trade (FACTS §13). Their
``exit_ns`` is 0 and ``exit_px`` the mark. Win rate, profit factor and expectancy count
closed trades only.

Hence ``sum(pnl)`` over all trades equals the cash flows of the executions (after fees) plus
the marked value of the positions left: the mark-to-market P&L of the run.

Row order: closed trades in the order they closed (by execution, then oldest lot first),
then open lots in the order they opened.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from layouts.orders import BUY, FILL_FULL, FILL_PARTIAL, SELL

#: One matched lot piece (``sym`` indexes the run's symbol names).
TRADE = np.dtype(
    [
        ("sym", "<u4"),
        ("side", "<i1"),        #: +1 long (bought first) / -1 short (sold first)
        ("qty", "<f8"),         #: > 0
        ("entry_ns", "<i8"),    #: venue_ns of the opening execution (data time in a backtest)
        ("exit_ns", "<i8"),     #: venue_ns of the closing execution; 0 while open
        ("entry_px", "<f8"),
        ("exit_px", "<f8"),     #: closing price; the mark while open
        ("pnl", "<f8"),         #: currency, after this piece's share of both executions' fees
        ("fees", "<f8"),
        ("ret", "<f8"),         #: pnl / (entry_px * qty)
        ("open", "<u1"),        #: 1 = still open at the end, marked at exit_px
    ],
    align=True,
)

EPS = 1e-9    #: share quantities in f8: what is left below this is nothing (as procs.risk_pnl)


def _mark_of(marks, sym: int) -> float:
    try:
        m = marks[sym]
    except (KeyError, IndexError):
        raise ValueError(f"marks[{sym}]: no mark for the open position in symbol {sym}") from None
    m = float(m)
    if not np.isfinite(m) or m <= 0.0:
        raise ValueError(f"marks[{sym}]: must be a finite price > 0 to mark the open position, got {m!r}")
    return m


def check_executions(ex, what: str = "executions") -> tuple[np.ndarray, int]:
    """Return (the execution rows of ``ex``, how many other reports were ignored) or raise
    ValueError naming the row and field. ``ex`` is an array with the ``FILL`` fields; rows whose
    status is not FILL_PARTIAL/FILL_FULL carry no quantity and are ignored (counted)."""
    if not isinstance(ex, np.ndarray) or ex.dtype.names is None:
        raise ValueError(f"{what}: expected a numpy structured array of dtype FILL, got {type(ex).__name__}")
    need = ("sym", "side", "status", "qty", "price", "fee", "venue_ns")
    missing = [f for f in need if f not in ex.dtype.names]
    if missing:
        raise ValueError(f"{what}: missing field(s) {', '.join(missing)} (see layouts.orders.FILL)")
    keep = (ex["status"] == FILL_PARTIAL) | (ex["status"] == FILL_FULL)
    rows = np.flatnonzero(keep)
    x = ex[keep]
    checks = (("side", (x["side"] != BUY) & (x["side"] != SELL), "must be +1 (buy) or -1 (sell)"),
              ("qty", ~(np.isfinite(x["qty"]) & (x["qty"] > 0.0)), "must be finite and > 0"),
              ("price", ~(np.isfinite(x["price"]) & (x["price"] > 0.0)), "must be finite and > 0"),
              ("fee", ~np.isfinite(x["fee"]), "must be finite"))
    for field, bad, rule in checks:
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{what}[{int(rows[j])}]['{field}']: {rule}, got {x[field][j]!r} "
                             f"({int(bad.sum())} such rows)")
    return x, int(len(ex) - len(x))


def round_trips(executions: np.ndarray, marks, stats: dict | None = None) -> np.ndarray:
    """Match ``executions`` (``layouts.orders.FILL`` rows, in execution order) FIFO per symbol into ``TRADE`` rows.

    ``marks``: ``{sym: last price}`` or an array indexed by sym; needed (finite, > 0) only for
    symbols left open. ``stats``, when given, receives ``executions`` (used),
    ``ignored_reports`` (non-execution rows skipped) and ``open_lots``.
    Raises ValueError naming the row/field or the missing mark; nothing is returned half-done.
    """
    x, ignored = check_executions(executions)
    n = len(x)
    # Python lists: the matching loop is sequential by nature, and list indexing is several
    # times cheaper than numpy scalar indexing
    sym, side = x["sym"].tolist(), x["side"].tolist()
    qty, px, fee, t = x["qty"].tolist(), x["price"].tolist(), x["fee"].tolist(), x["venue_ns"].tolist()
    lots: dict[int, deque] = {}        # sym -> deque of [remaining qty, exec index, lot side]
    out: list[tuple] = []
    for i in range(n):
        s, sd, rem = sym[i], side[i], qty[i]
        q_i, fee_i, px_i, t_i = qty[i], fee[i], px[i], t[i]
        book = lots.setdefault(s, deque())
        while rem > EPS and book and book[0][2] != sd:      # closes lots of the other side
            lot = book[0]
            take = min(rem, lot[0])
            j = lot[1]
            f = fee[j] * take / qty[j] + fee_i * take / q_i
            gross = lot[2] * (px_i - px[j]) * take
            out.append((s, lot[2], take, t[j], t_i, px[j], px_i, gross - f, f,
                        (gross - f) / (px[j] * take), 0))
            lot[0] -= take
            rem -= take
            if lot[0] <= EPS:
                book.popleft()
        if rem > EPS:
            book.append([rem, i, sd])
    left = sorted((lot[1], s, lot[0], lot[2]) for s, book in lots.items() for lot in book)
    for j, s, q, sd in left:
        m = _mark_of(marks, s)
        f = fee[j] * q / qty[j]
        gross = sd * (m - px[j]) * q
        out.append((s, sd, q, t[j], 0, px[j], m, gross - f, f, (gross - f) / (px[j] * q), 1))
    if stats is not None:
        stats.update(executions=n, ignored_reports=ignored, open_lots=len(left))
    return np.array(out, dtype=TRADE) if out else np.zeros(0, TRADE)


def check_trades(tr, what: str = "trades") -> np.ndarray:
    """Return ``tr`` as a ``TRADE`` array or raise ValueError naming the missing field, or the
    first row whose ``qty``/prices/``pnl``/``fees``/``ret`` is not finite."""
    if not isinstance(tr, np.ndarray) or tr.dtype.names is None:
        raise ValueError(f"{what}: expected a numpy structured array of dtype TRADE, got {type(tr).__name__}")
    missing = [f for f in TRADE.names if f not in tr.dtype.names]
    if missing:
        raise ValueError(f"{what}: missing field(s) {', '.join(missing)} (dtype TRADE has {', '.join(TRADE.names)})")
    if tr.dtype != TRADE:
        out = np.zeros(len(tr), TRADE)
        for f in TRADE.names:
            out[f] = tr[f]
        tr = out
    for f in ("qty", "entry_px", "exit_px", "pnl", "fees", "ret"):
        bad = np.flatnonzero(~np.isfinite(tr[f]))
        if len(bad):
            raise ValueError(f"{what}[{int(bad[0])}]['{f}']: must be finite, got {tr[f][bad[0]]!r} "
                             f"({len(bad)} such rows)")
    return tr
