"""Momentum: RSI, MACD, stochastic oscillator. Streaming O(1) and batch, TA-Lib conventions.

Same shape as ``ma`` (see its docstring): ``xxx_state_len / xxx_init / xxx_update`` on a
float64 state row, a batch ``xxx`` bit-identical to it by construction (the update in an
njit loop, or the update through the warm-up then the same ``_xxx_step`` on register-held
state; each docstring says which), ``xxx_lookback``. Multi-output updates return a tuple;
their batch returns a tuple of arrays.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ._exact import check_state
from .ma import sma_init, sma_state_len, sma_update_at

NAN = np.nan

# RSI state: [period, count, prev, avg_gain, avg_loss]
_RSI_N, _RSI_C, _RSI_PREV, _RSI_G, _RSI_L = 0, 1, 2, 3, 4
RSI_STATE_LEN = 5


@njit(cache=True)
def rsi_state_len(period):
    """State length of an RSI: 5 (fixed)."""
    return RSI_STATE_LEN


@njit(cache=True)
def rsi_lookback(period):
    """TA-Lib's RSI lookback: ``period`` (one price per change)."""
    return period


@njit(cache=True)
def rsi_init(state, period):
    """Reset an RSI(``period``) state; ``period >= 2`` as TA-Lib requires."""
    if period < 2:
        raise ValueError("rsi: period must be >= 2")
    check_state(state, RSI_STATE_LEN)
    state[:RSI_STATE_LEN] = 0.0
    state[_RSI_N] = period


@njit(cache=True, inline="always")
def _rsi_step(g, lo, d, n):
    """Wilder smoothing in TA-Lib's order: ``avg = (avg * (n - 1) + change) / n``.

    Branch-free (price changes are a coin flip for a branch predictor) and bit-identical to
    TA-Lib's ``if d < 0: loss -= d else: gain += d``: ``a - d == a + (-d)`` exactly and
    adding 0.0 to a non-negative average changes no bit.
    """
    up = d if d > 0.0 else 0.0
    dn = -d if d < 0.0 else 0.0
    return (g * (n - 1.0) + up) / n, (lo * (n - 1.0) + dn) / n


@njit(cache=True, inline="always")
def _rsi_out(g, lo):
    t = g + lo
    return 100.0 * (g / t) if t != 0.0 else 0.0


@njit(cache=True, inline="always")
def rsi_update(state, x):
    """Wilder's RSI as TA-Lib computes it (classic, not Metastock).

    NaN for the first ``period`` prices. At price ``period``: average gain and loss are the
    simple averages of the first ``period`` changes. Then Wilder smoothing in TA-Lib's order:
    ``avg = (avg * (period - 1) + change) / period``. Output ``100 * g / (g + l)``.
    A flat window (``g + l == 0``) gives 0.0 as in TA-Lib; TA-Lib 0.4 also zeroes any
    ``g + l < 1e-8`` (scale-dependent: wrong for prices quoted around 1e-6), we do not.
    """
    n = state[_RSI_N]
    c = state[_RSI_C]
    d = x - state[_RSI_PREV]
    state[_RSI_PREV] = x
    if c > n:
        g, lo = _rsi_step(state[_RSI_G], state[_RSI_L], d, n)
    else:
        state[_RSI_C] = c + 1.0
        if c == 0.0:
            return NAN
        g, lo = state[_RSI_G], state[_RSI_L]
        if d < 0.0:
            lo -= d
        else:
            g += d
        if c < n:
            state[_RSI_G], state[_RSI_L] = g, lo
            return NAN
        lo /= n
        g /= n
    state[_RSI_G], state[_RSI_L] = g, lo
    return _rsi_out(g, lo)


@njit(cache=True)
def rsi(x, period=14):
    """Batch RSI (TA-Lib default period 14). ``rsi_update`` through the seed, then the same
    ``_rsi_step`` on register-held averages with ``x[i] - x[i - 1]`` as the change:
    bit-identical to streaming."""
    st = np.empty(RSI_STATE_LEN)
    rsi_init(st, period)
    m = x.shape[0]
    out = np.empty(m)
    w = min(m, period + 1)
    for i in range(w):
        out[i] = rsi_update(st, x[i])
    g, lo, n = st[_RSI_G], st[_RSI_L], st[_RSI_N]
    for i in range(w, m):
        g, lo = _rsi_step(g, lo, x[i] - x[i - 1], n)
        out[i] = _rsi_out(g, lo)
    return out


# MACD state: [fast, slow, signal, count, k_fast, k_slow, k_signal,
#              sum_fast, sum_slow, ema_fast, ema_slow, sum_signal, signal_ema]
_M_F, _M_S, _M_G, _M_C, _M_KF, _M_KS, _M_KG = 0, 1, 2, 3, 4, 5, 6
_M_SUMF, _M_SUMS, _M_EF, _M_ES, _M_SUMG, _M_EG = 7, 8, 9, 10, 11, 12
MACD_STATE_LEN = 13


@njit(cache=True)
def macd_state_len(fast=12, slow=26, signal=9):
    """State length of a MACD: 13 (fixed)."""
    return MACD_STATE_LEN


@njit(cache=True)
def macd_lookback(fast=12, slow=26, signal=9):
    """TA-Lib's MACD lookback: ``(slow - 1) + (signal - 1)`` = 33 for (12, 26, 9)."""
    return slow + signal - 2


@njit(cache=True)
def macd_init(state, fast=12, slow=26, signal=9):
    """Reset a MACD state. ``2 <= fast <= slow``, ``signal >= 1`` (TA-Lib's ranges;
    TA-Lib silently swaps ``fast > slow``, we refuse it)."""
    if fast < 2 or slow < fast or signal < 1:
        raise ValueError("macd: need 2 <= fast <= slow and signal >= 1")
    check_state(state, MACD_STATE_LEN)
    state[:MACD_STATE_LEN] = 0.0
    state[_M_F], state[_M_S], state[_M_G] = fast, slow, signal
    state[_M_KF] = 2.0 / (fast + 1)
    state[_M_KS] = 2.0 / (slow + 1)
    state[_M_KG] = 2.0 / (signal + 1)


@njit(cache=True, inline="always")
def _macd_step(ef, es, eg, x, kf, ks, kg):
    """Advance the three EMAs in lockstep (TA-Lib's ``(x - e) * k + e``) -> (ef, es, eg, macd)."""
    ef = (x - ef) * kf + ef
    es = (x - es) * ks + es
    m = ef - es
    eg = (m - eg) * kg + eg
    return ef, es, eg, m


@njit(cache=True, inline="always")
def macd_update(state, x):
    """One MACD step -> ``(macd, signal, hist)``, NaN for all three before the lookback.

    TA-Lib's default-compatibility MACD exactly: both EMAs are seeded at price
    ``slow - 1``, the slow one with the SMA of the first ``slow`` prices and the **fast one
    with the SMA of the last ``fast`` of them** (not of the first ``fast``: TA-Lib aligns
    the seeds, so MACD's fast EMA differs from a standalone ``ema(x, fast)`` early on).
    The signal EMA is seeded with the SMA of the first ``signal`` MACD values. For
    (12, 26, 9) the first output is at index 33, as TA-Lib's (the MACD line exists from
    index 25 but TA-Lib reports all three from 33). hist = macd - signal.
    """
    i = state[_M_C]
    slow = state[_M_S]
    lb = slow + state[_M_G] - 2.0
    if i > lb:
        ef, es, eg, m = _macd_step(state[_M_EF], state[_M_ES], state[_M_EG], x,
                                   state[_M_KF], state[_M_KS], state[_M_KG])
        state[_M_EF], state[_M_ES], state[_M_EG] = ef, es, eg
        return m, eg, m - eg
    state[_M_C] = i + 1.0
    if i < slow - 1.0:
        state[_M_SUMS] += x
        if i >= slow - state[_M_F]:
            state[_M_SUMF] += x
        return NAN, NAN, NAN
    if i == slow - 1.0:
        state[_M_SUMS] += x
        state[_M_SUMF] += x
        ef = state[_M_SUMF] / state[_M_F]
        es = state[_M_SUMS] / slow
    else:
        ef = (x - state[_M_EF]) * state[_M_KF] + state[_M_EF]
        es = (x - state[_M_ES]) * state[_M_KS] + state[_M_ES]
    state[_M_EF], state[_M_ES] = ef, es
    m = ef - es
    state[_M_SUMG] += m
    if i < lb:
        return NAN, NAN, NAN
    g = state[_M_SUMG] / state[_M_G]
    state[_M_EG] = g
    return m, g, m - g


@njit(cache=True)
def macd(x, fast=12, slow=26, signal=9):
    """Batch MACD -> ``(macd, signal, hist)`` arrays. ``macd_update`` through the first
    output, then the same ``_macd_step`` on register-held EMAs: bit-identical to streaming."""
    st = np.empty(MACD_STATE_LEN)
    macd_init(st, fast, slow, signal)
    n = x.shape[0]
    m, g, h = np.empty(n), np.empty(n), np.empty(n)
    w = min(n, slow + signal - 1)
    for i in range(w):
        m[i], g[i], h[i] = macd_update(st, x[i])
    ef, es, eg = st[_M_EF], st[_M_ES], st[_M_EG]
    kf, ks, kg = st[_M_KF], st[_M_KS], st[_M_KG]
    for i in range(w, n):
        ef, es, eg, mi = _macd_step(ef, es, eg, x[i], kf, ks, kg)
        m[i], g[i], h[i] = mi, eg, mi - eg
    return m, g, h


# Stochastic state: [fastk, slowk, slowd, count, pos, hh_prefix, ll_prefix,
#   high_block[fastk], high_suffix[fastk], low_block[fastk], low_suffix[fastk],
#   sma(slowk) state, sma(slowd) state]
_ST_FK, _ST_SK, _ST_SD, _ST_C, _ST_POS, _ST_HP, _ST_LP, _ST_Q = 0, 1, 2, 3, 4, 5, 6, 7


@njit(cache=True)
def stoch_state_len(fastk=5, slowk=3, slowd=3):
    """State length of a stochastic: 7 + four blocks of ``fastk`` (the window extremes)
    + the two SMA states."""
    return _ST_Q + 4 * fastk + sma_state_len(slowk) + sma_state_len(slowd)


@njit(cache=True)
def stoch_lookback(fastk=5, slowk=3, slowd=3):
    """TA-Lib's STOCH lookback: ``(fastk - 1) + (slowk - 1) + (slowd - 1)`` = 8 by default."""
    return fastk + slowk + slowd - 3


@njit(cache=True)
def stoch_init(state, fastk=5, slowk=3, slowd=3):
    """Reset a stochastic state; TA-Lib STOCH defaults fastk 5, slowk 3, slowd 3, both
    smoothings SMA (matype 0); each period >= 1."""
    if fastk < 1 or slowk < 1 or slowd < 1:
        raise ValueError("stoch: periods must be >= 1")
    need = stoch_state_len(fastk, slowk, slowd)
    check_state(state, need)
    state[:need] = 0.0
    state[_ST_FK], state[_ST_SK], state[_ST_SD] = fastk, slowk, slowd
    q = _ST_Q
    state[q + fastk:q + 2 * fastk] = -np.inf    # suffix maxima of the (empty) previous block
    state[q + 3 * fastk:q + 4 * fastk] = np.inf  # suffix minima
    a = q + 4 * fastk
    b = a + sma_state_len(slowk)
    sma_init(state[a:b], slowk)
    sma_init(state[b:b + sma_state_len(slowd)], slowd)


@njit(cache=True, inline="always")
def _window_extremes(state, w, high, low):
    """Highest high and lowest low of the last ``w`` bars, van Herk/Gil-Werman blocks.

    The stream is cut into blocks of ``w`` bars. The window ending at block position
    ``pos`` is the previous block's bars ``pos+1..w-1`` (their suffix extreme, computed once
    when that block closed) plus the current block's bars ``0..pos`` (a running prefix
    extreme). O(1) per bar plus an O(w) suffix pass once every ``w`` bars (amortised O(1)),
    with no data-dependent branches. Exact: max/min do not round.
    """
    pf = state[_ST_POS]            # kept as a float: no int round trip on the carried chain
    pos = int(pf)
    hb, hs = _ST_Q, _ST_Q + w
    lb, ls = _ST_Q + 2 * w, _ST_Q + 3 * w
    state[hb + pos] = high
    state[lb + pos] = low
    hp, lp = high, low
    if pos > 0:
        hp = max(state[_ST_HP], high)
        lp = min(state[_ST_LP], low)
    state[_ST_HP], state[_ST_LP] = hp, lp
    hh, ll = hp, lp
    if pos + 1 < w:
        hh = max(state[hs + pos + 1], hp)
        ll = min(state[ls + pos + 1], lp)
    pf += 1.0
    if pf == w:
        mh, ml = state[hb + w - 1], state[lb + w - 1]
        state[hs + w - 1], state[ls + w - 1] = mh, ml
        for j in range(w - 2, -1, -1):
            mh = max(mh, state[hb + j])
            ml = min(ml, state[lb + j])
            state[hs + j], state[ls + j] = mh, ml
        pf = 0.0
    state[_ST_POS] = pf
    return hh, ll


@njit(cache=True, inline="always")
def stoch_update(state, high, low, close):
    """One stochastic step -> ``(slowk, slowd)``, TA-Lib STOCH (NaN before the lookback).

    fastK = ``(close - LL) / ((HH - LL) / 100)`` over the last ``fastk`` bars including this
    one (TA-Lib's exact operation order; a flat window gives 0.0 as TA-Lib 0.4), slowK = SMA
    of fastK, slowD = SMA of slowK. As in TA-Lib both outputs start at the full lookback,
    although slowK alone would be ready ``slowd - 1`` bars earlier. HH/LL: amortised O(1)
    blocks (``_window_extremes``); TA-Lib rescans the window when its extreme expires.
    """
    fk = int(state[_ST_FK])
    hh, ll = _window_extremes(state, fk, high, low)
    t = state[_ST_C]
    if t < fk - 1:
        state[_ST_C] = t + 1.0
        return NAN, NAN
    diff = (hh - ll) / 100.0
    k = (close - ll) / diff if diff != 0.0 else 0.0
    a = _ST_Q + 4 * fk
    sk_n = int(state[_ST_SK])
    sk = sma_update_at(state, a, k)
    if t < fk + sk_n - 2:
        state[_ST_C] = t + 1.0
        return NAN, NAN
    sd = sma_update_at(state, a + sma_state_len(sk_n), sk)
    if t < fk + sk_n + state[_ST_SD] - 3.0:
        state[_ST_C] = t + 1.0
        return NAN, NAN
    return sk, sd


@njit(cache=True)
def stoch(high, low, close, fastk=5, slowk=3, slowd=3):
    """Batch STOCH -> ``(slowk, slowd)`` arrays: ``stoch_update`` itself in one njit loop."""
    st = np.empty(stoch_state_len(fastk, slowk, slowd))
    stoch_init(st, fastk, slowk, slowd)
    n = close.shape[0]
    k, d = np.empty(n), np.empty(n)
    for i in range(n):
        k[i], d[i] = stoch_update(st, high[i], low[i], close[i])
    return k, d
