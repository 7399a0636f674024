"""Streaming features over book events, computed with the indicator library.

One engine serves both sides of a model: the ONNX strategy computes features tick by tick
in the signal stage, and ``tools/model_export.py`` trains on features computed by the
*same* jitted code over a recorded or synthetic event stream, so training and serving
cannot drift apart.

Features (name: definition; parameters are fixed so a model's inputs mean one thing):

* ``imbalance``: ``(bid_size - ask_size) / (bid_size + ask_size)`` at the touch, in [-1, 1]
  (computed from the sizes, equal to ``BOOK_EVENT.imbalance``).
* ``spread_bps``: ``(ask - bid) / mid * 1e4``.
* ``ret_bps``: ``(mid / previous mid - 1) * 1e4``, the last quote-to-quote return.
* ``ema_gap_bps``: ``(EMA8(mid) - EMA32(mid)) / mid * 1e4``.
* ``imb_ema``: ``EMA8(imbalance)``.
* ``trade_flow``: ``EMA16`` of the aggressor side of each trade (+1 at or above the ask,
  -1 at or below the bid, 0 inside); updated on trades only.
* ``mid_sma_bps``: ``(mid - SMA20(mid)) / mid * 1e4``.
* ``rsi``: ``(RSI14(mid) - 50) / 50``, in [-1, 1].
* ``bb_pos``: ``(mid - middle) / (upper - middle)`` of Bollinger(20, 2) on the mid (0 when
  the band has no width): about -1 at the lower band, +1 at the upper.

The indicators are ``procs.indicators`` (TA-Lib conventions: the EMA is seeded with the SMA
of its first ``n`` values, so ``ema_gap_bps`` exists from the 32nd quote of a symbol on;
Wilder's RSI; population std for Bollinger).
A feature vector is *ready* when every selected feature is finite; the mid-based features
update on quote events with a valid book (kind quote, book delta or snapshot), the trade
flow on trades.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from layouts.market import TICK_BOOK_DELTA, TICK_BOOK_SNAPSHOT, TICK_QUOTE, TICK_TRADE
from procs.indicators import (bbands_init, bbands_state_len, bbands_update, ema_init, ema_state_len, ema_update,
                              rsi_init, rsi_state_len, rsi_update, sma_init, sma_state_len, sma_update)

FEATURES = ("imbalance", "spread_bps", "ret_bps", "ema_gap_bps", "imb_ema", "trade_flow", "mid_sma_bps",
            "rsi", "bb_pos")
(F_IMBALANCE, F_SPREAD_BPS, F_RET_BPS, F_EMA_GAP_BPS, F_IMB_EMA, F_TRADE_FLOW,
 F_MID_SMA_BPS, F_RSI, F_BB_POS) = range(len(FEATURES))
N_FEATURES = len(FEATURES)
EMA_FAST, EMA_SLOW, IMB_EMA, FLOW_EMA, SMA_N, RSI_N, BB_N, BB_DEV = 8, 32, 8, 16, 20, 14, 20, 2.0

# Per-symbol state row: [last_mid, ema_fast, ema_slow, imb_ema, flow_ema, sma, rsi, bbands]
O_LAST = 0
O_EF = 1
O_ES = O_EF + int(ema_state_len(EMA_FAST))
O_IE = O_ES + int(ema_state_len(EMA_SLOW))
O_FE = O_IE + int(ema_state_len(IMB_EMA))
O_SMA = O_FE + int(ema_state_len(FLOW_EMA))
O_RSI = O_SMA + int(sma_state_len(SMA_N))
O_BB = O_RSI + int(rsi_state_len(RSI_N))
STATE_LEN = O_BB + int(bbands_state_len(BB_N))


def feature_index(names, where: str = "features") -> np.ndarray:
    """Indices of ``names`` in ``FEATURES``; ValueError naming ``where`` and the unknown ones."""
    names = list(names)
    unknown = [n for n in names if n not in FEATURES]
    if unknown or not names:
        raise ValueError(f"{where}: unknown feature(s) {unknown} (known: {', '.join(FEATURES)})" if unknown
                         else f"{where}: at least one feature is needed (known: {', '.join(FEATURES)})")
    return np.array([FEATURES.index(n) for n in names], np.int64)


@njit(cache=True)
def features_init(fs, cur):
    """Reset the state ``fs[n_symbols, STATE_LEN]`` and current values ``cur[n_symbols, N_FEATURES]``."""
    for s in range(fs.shape[0]):
        row = fs[s]
        row[:] = 0.0
        row[O_LAST] = np.nan
        ema_init(row[O_EF:O_ES], EMA_FAST)
        ema_init(row[O_ES:O_IE], EMA_SLOW)
        ema_init(row[O_IE:O_FE], IMB_EMA)
        ema_init(row[O_FE:O_SMA], FLOW_EMA)
        sma_init(row[O_SMA:O_RSI], SMA_N)
        rsi_init(row[O_RSI:O_BB], RSI_N)
        bbands_init(row[O_BB:], BB_N, BB_DEV, BB_DEV)
        cur[s, :] = np.nan


@njit(cache=True, inline="always")
def _is_quote(kind):
    return kind == TICK_QUOTE or kind == TICK_BOOK_DELTA or kind == TICK_BOOK_SNAPSHOT


@njit(cache=True)
def features_event(fs, cur, e):
    """Update symbol ``e.sym``'s features with one BOOK_EVENT; True if it was a quote event
    (a point where a model is asked). Unknown symbols and other kinds change nothing."""
    s = e.sym
    if s >= fs.shape[0]:
        return False
    row = fs[s]
    c = cur[s]
    if e.kind == TICK_TRADE:
        if e.valid != 0 and e.trade_px > 0.0:
            side = 1.0 if e.trade_px >= e.ask else (-1.0 if e.trade_px <= e.bid else 0.0)
            c[F_TRADE_FLOW] = ema_update(row[O_FE:O_SMA], side)
        return False
    if not (_is_quote(e.kind) and e.valid != 0):
        return False
    bid, ask = e.bid, e.ask
    mid = 0.5 * (bid + ask)
    tot = e.bid_size + e.ask_size
    imb = (e.bid_size - e.ask_size) / tot if tot > 0.0 else 0.0
    c[F_IMBALANCE] = imb
    c[F_SPREAD_BPS] = (ask - bid) / mid * 1e4
    prev = row[O_LAST]
    c[F_RET_BPS] = (mid / prev - 1.0) * 1e4 if prev > 0.0 else np.nan
    row[O_LAST] = mid
    ef = ema_update(row[O_EF:O_ES], mid)
    es = ema_update(row[O_ES:O_IE], mid)
    c[F_EMA_GAP_BPS] = (ef - es) / mid * 1e4
    c[F_IMB_EMA] = ema_update(row[O_IE:O_FE], imb)
    c[F_MID_SMA_BPS] = (mid - sma_update(row[O_SMA:O_RSI], mid)) / mid * 1e4
    c[F_RSI] = (rsi_update(row[O_RSI:O_BB], mid) - 50.0) / 50.0
    upper, middle, lower = bbands_update(row[O_BB:], mid)
    w = upper - middle
    c[F_BB_POS] = (mid - middle) / w if w > 0.0 else (0.0 if np.isfinite(w) else np.nan)
    return True


@njit(cache=True)
def features_batch(fs, cur, events, sel, X, ready):
    """Run ``features_event`` over ``events``; for each quote event ``j`` write the selected
    features into ``X[j]`` (float32) and ``ready[j]`` = all finite. Returns the ready count."""
    n_ready = 0
    nf = sel.shape[0]
    for j in range(events.shape[0]):
        ready[j] = False
        if not features_event(fs, cur, events[j]):
            continue
        c = cur[events[j].sym]
        ok = True
        for i in range(nf):
            v = c[sel[i]]
            X[j, i] = v
            if not np.isfinite(v):
                ok = False
        ready[j] = ok
        if ok:
            n_ready += 1
    return n_ready


class FeatureEngine:
    """Per-symbol streaming features (``features_batch`` over batches of events)."""

    def __init__(self, n_symbols: int, names, where: str = "features", capacity: int = 256):
        self.names = list(names)
        self.sel = feature_index(self.names, where)
        self.fs = np.zeros((n_symbols, STATE_LEN))
        self.cur = np.zeros((n_symbols, N_FEATURES))
        features_init(self.fs, self.cur)
        self.X = np.zeros((capacity, len(self.names)), np.float32)
        self.ready = np.zeros(capacity, np.bool_)

    def batch(self, events: np.ndarray) -> int:
        """Features of a batch: rows of ``self.X`` / ``self.ready`` by event index."""
        if events.shape[0] > self.X.shape[0]:
            self.X = np.zeros((events.shape[0], len(self.names)), np.float32)
            self.ready = np.zeros(events.shape[0], np.bool_)
        return int(features_batch(self.fs, self.cur, events, self.sel, self.X, self.ready))


def compute(events: np.ndarray, n_symbols: int, names) -> tuple[np.ndarray, np.ndarray]:
    """Features of a whole event stream from a fresh state: ``(X float32[n, F], ready bool[n])``."""
    eng = FeatureEngine(n_symbols, names, capacity=max(len(events), 1))
    eng.batch(events)
    return eng.X[:len(events)].copy(), eng.ready[:len(events)].copy()
