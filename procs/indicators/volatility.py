"""Volatility: Bollinger bands and ATR. Streaming O(1) and batch, TA-Lib conventions.

Same shape as ``ma`` (see its docstring): batch is bit-identical to streaming by
construction; each batch docstring says how.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._exact import check_state, slide, two_prod, two_sqr, two_sum

NAN = np.nan

# Bollinger state: [period, nbdevup, nbdevdn, count, head, s1_hi, s1_lo, s2_hi, s2_lo, ring[period]]
_BB_N, _BB_UP, _BB_DN, _BB_C, _BB_H, _BB_S1, _BB_S2, _BB_RING = 0, 1, 2, 3, 4, 5, 7, 9


@njit(cache=True)
def bbands_state_len(period=5):
    """State length of Bollinger(``period``): 9 slots + a ring of the last ``period`` values."""
    return _BB_RING + period


@njit(cache=True)
def bbands_lookback(period=5):
    """TA-Lib's BBANDS lookback (SMA middle band): ``period - 1``."""
    return period - 1


@njit(cache=True)
def bbands_init(state, period=5, nbdevup=2.0, nbdevdn=2.0):
    """Reset a Bollinger state. TA-Lib BBANDS defaults: period 5, 2.0 deviations up and
    down, SMA middle band (matype 0); ``period >= 2``. (20 is the usual chart setting.)"""
    if period < 2:
        raise ValueError("bbands: period must be >= 2")
    check_state(state, bbands_state_len(period))
    state[:bbands_state_len(period)] = 0.0
    state[_BB_N], state[_BB_UP], state[_BB_DN] = period, nbdevup, nbdevdn


@njit(cache=True, inline="always")
def _bb_step(s1h, s1l, s2h, s2l, x, old):
    """Slide ``x`` in and ``old`` out of the exact sums of x and x^2."""
    s1h, s1l = slide(s1h, s1l, x, old)
    p1, e1 = two_sqr(x)
    p2, e2 = two_sqr(old)
    s2h, s2l = slide(s2h, s2l, p1, p2)
    return s1h, s1l, s2h, s2l + (e1 - e2)


@njit(cache=True, inline="always")
def _bb_out(s1h, s1l, s2h, s2l, n, up, dn):
    """(upper, middle, lower) from the window sums; std from ``n*S2 - S1^2`` in double-double."""
    mid = (s1h + s1l) / n
    a, al = two_sum(s1h, s1l)                      # normalise S1 = a + al
    q, qe = two_prod(n, s2h)                       # n * S2
    qe += n * s2l
    p, pe = two_sqr(a)                             # S1^2
    pe += al * (2.0 * a + al)
    r, re = two_sum(q, -p)
    num = r + (re + (qe - pe))                     # n * S2 - S1^2 = n^2 * var
    sd = math.sqrt(num) / n if num > 0.0 else 0.0
    return mid + up * sd, mid, mid - dn * sd


@njit(cache=True, inline="always")
def bbands_update(state, x):
    """One Bollinger step -> ``(upper, middle, lower)``; NaN for the first ``period - 1``.

    middle = SMA (bit-identical to ``sma_update``: the same compensated window sum);
    ``upper/lower = middle +/- nbdev * std`` with the **population** std (ddof=0) of the
    window, as TA-Lib. TA-Lib computes ``E[x^2] - E[x]^2`` from plain running sums and
    zeroes variances below 1e-8; that loses about ``eps * price^2 / var`` (8 digits for a
    1-cent std on a 100-dollar price). Here ``sum(x)`` and ``sum(x^2)`` are kept exactly
    (squares by ``two_sqr``, compensated sums) and ``n * S2 - S1^2`` is formed in
    double-double: the std's error is about ``eps * price`` (as numpy's two-pass
    ``np.std``) whatever the history, so a constant window gives ~1e-16 * price, not 1e-6.
    """
    n = state[_BB_N]
    h = state[_BB_H]
    r = _BB_RING + int(h)
    old = state[r]
    state[r] = x
    h += 1.0
    state[_BB_H] = 0.0 if h == n else h
    s1h, s1l, s2h, s2l = _bb_step(state[_BB_S1], state[_BB_S1 + 1], state[_BB_S2],
                                  state[_BB_S2 + 1], x, old)
    state[_BB_S1], state[_BB_S1 + 1], state[_BB_S2], state[_BB_S2 + 1] = s1h, s1l, s2h, s2l
    c = state[_BB_C]
    if c < n:
        c += 1.0
        state[_BB_C] = c
        if c < n:
            return NAN, NAN, NAN
    return _bb_out(s1h, s1l, s2h, s2l, n, state[_BB_UP], state[_BB_DN])


@njit(cache=True)
def bbands(x, period=5, nbdevup=2.0, nbdevdn=2.0):
    """Batch Bollinger -> ``(upper, middle, lower)``. ``bbands_update`` for the first
    ``period`` values, then the same ``_bb_step``/``_bb_out`` on register-held sums with
    ``x[i - period]`` as the value out: bit-identical to streaming."""
    st = np.empty(bbands_state_len(period))
    bbands_init(st, period, nbdevup, nbdevdn)
    n = x.shape[0]
    u, m, lo = np.empty(n), np.empty(n), np.empty(n)
    w = min(n, period)
    for i in range(w):
        u[i], m[i], lo[i] = bbands_update(st, x[i])
    s1h, s1l, s2h, s2l = st[_BB_S1], st[_BB_S1 + 1], st[_BB_S2], st[_BB_S2 + 1]
    up, dn, nf = st[_BB_UP], st[_BB_DN], st[_BB_N]
    for i in range(w, n):
        s1h, s1l, s2h, s2l = _bb_step(s1h, s1l, s2h, s2l, x[i], x[i - period])
        u[i], m[i], lo[i] = _bb_out(s1h, s1l, s2h, s2l, nf, up, dn)
    return u, m, lo


# ATR state: [period, count, prev_close, tr_sum, atr]
_ATR_N, _ATR_C, _ATR_PC, _ATR_SUM, _ATR_V = 0, 1, 2, 3, 4
ATR_STATE_LEN = 5


@njit(cache=True, inline="always")
def true_range(high, low, prev_close):
    """TA-Lib TRANGE: ``max(high - low, |prev_close - high|, |prev_close - low|)``."""
    tr = high - low
    v = abs(prev_close - high)
    if v > tr:
        tr = v
    v = abs(prev_close - low)
    if v > tr:
        tr = v
    return tr


@njit(cache=True)
def atr_state_len(period=14):
    """State length of an ATR: 5 (fixed)."""
    return ATR_STATE_LEN


@njit(cache=True)
def atr_lookback(period=14):
    """TA-Lib's ATR lookback: ``period`` (the first bar has no true range)."""
    return period


@njit(cache=True)
def atr_init(state, period=14):
    """Reset an ATR(``period``) state; ``period >= 1`` (ATR(1) is the true range)."""
    if period < 1:
        raise ValueError("atr: period must be >= 1")
    check_state(state, ATR_STATE_LEN)
    state[:ATR_STATE_LEN] = 0.0
    state[_ATR_N] = period


@njit(cache=True, inline="always")
def _atr_step(v, tr, n):
    """Wilder smoothing in TA-Lib's order: ``(atr * (n - 1) + tr) / n``."""
    return (v * (n - 1.0) + tr) / n


@njit(cache=True, inline="always")
def atr_update(state, high, low, close):
    """Wilder's average true range as TA-Lib: NaN on bars 0..period-1 (bar 0 has no previous
    close, so the first true range is at bar 1), at bar ``period`` the SMA of the true ranges
    of bars 1..period (plain sequential sum), then ``atr = (atr * (period - 1) + tr) / period``
    in TA-Lib's order. ATR(14) first output at index 14.
    """
    n = state[_ATR_N]
    c = state[_ATR_C]
    pc = state[_ATR_PC]
    state[_ATR_PC] = close
    if c > n:
        v = _atr_step(state[_ATR_V], true_range(high, low, pc), n)
        state[_ATR_V] = v
        return v
    state[_ATR_C] = c + 1.0
    if c == 0.0:
        return NAN
    s = state[_ATR_SUM] + true_range(high, low, pc)
    state[_ATR_SUM] = s
    if c < n:
        return NAN
    v = s / n
    state[_ATR_V] = v
    return v


@njit(cache=True)
def atr(high, low, close, period=14):
    """Batch ATR (TA-Lib default period 14). ``atr_update`` through the seed, then the same
    ``_atr_step`` on a register-held value with ``close[i - 1]`` as the previous close:
    bit-identical to streaming."""
    st = np.empty(ATR_STATE_LEN)
    atr_init(st, period)
    m = close.shape[0]
    out = np.empty(m)
    w = min(m, period + 1)
    for i in range(w):
        out[i] = atr_update(st, high[i], low[i], close[i])
    v, n = st[_ATR_V], st[_ATR_N]
    for i in range(w, m):
        v = _atr_step(v, true_range(high[i], low[i], close[i - 1]), n)
        out[i] = v
    return out
