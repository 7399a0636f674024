"""Moving averages: SMA, EMA, WMA. Streaming (O(1) per update) and batch, TA-Lib conventions.

Every indicator in this package has the same shape:

* ``xxx_state_len(params) -> int``: the length of one instance's float64 state; many
  symbols are a 2-D array ``np.empty((n_symbols, xxx_state_len(...)))``, one row each.
* ``xxx_init(state, params)``: validate the parameters (ValueError) and reset the row.
* ``xxx_update(state, value) -> output``: one step, O(1), no allocation; NaN until the
  TA-Lib lookback has passed.
* ``xxx(values, params) -> ndarray``: the batch function, bit-identical to the streaming
  update by construction. Either it is the update in an njit loop, or (where the state's
  round trip through memory would dominate) it runs the update itself through the warm-up
  and then the **same step function** the update calls (``_xxx_step``) on the state held
  in registers; each batch docstring says which. Same operations on the same values in
  the same order give the same bits; the tests check it on every indicator.
* ``xxx_lookback(params) -> int``: TA-Lib's lookback, the number of leading NaNs.

All are ``@njit(cache=True)``: callable from a stage's jitted step and from Python
(a Python call pays numba's ~0.3 us dispatch; batch inside njit). Inputs must be finite.
The updates and their helpers are also ``inline="always"``: numba inlines them into the
caller's IR, so updating ``states[sym]`` costs no call and no refcounting of the row view
(a non-inlined call adds two NRT incref/decref pairs, about doubling a small update). Call
them as globals (``ind.sma_update(...)``); an update passed as a function argument is
not inlined.

State slots holding counts and ring positions are floats (exact below 2**53); ring
positions advance in float arithmetic, so no int round trip lies on the loop-carried chain.

Windowed sums (SMA, WMA) are compensated (``_exact``): TA-Lib keeps plain running sums,
which drift; ours stay within an ulp or two of the exact window sum forever. Outputs agree
with TA-Lib's to rounding (about 1e-15 relative), not bit for bit.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ._exact import check_state, slide, two_prod

NAN = np.nan

# SMA state: [period, count, head, sum_hi, sum_lo, ring[period]]
_SMA_N, _SMA_C, _SMA_H, _SMA_S, _SMA_RING = 0, 1, 2, 3, 5


@njit(cache=True)
def sma_state_len(period):
    """State length of an SMA(``period``): 5 slots + a ring of the last ``period`` values."""
    return _SMA_RING + period


@njit(cache=True)
def sma_lookback(period):
    """TA-Lib's SMA lookback: ``period - 1``."""
    return period - 1


@njit(cache=True)
def sma_init(state, period):
    """Reset an SMA(``period``) state; ``period >= 1`` (TA-Lib: >= 2; 1 is the identity)."""
    if period < 1:
        raise ValueError("sma: period must be >= 1")
    check_state(state, sma_state_len(period))
    state[:sma_state_len(period)] = 0.0
    state[_SMA_N] = period


@njit(cache=True, inline="always")
def sma_update_at(state, k, x):
    """``sma_update`` on an SMA state embedded at ``state[k:]`` (no slice: composite
    indicators such as the stochastic keep their SMAs inside their own row)."""
    n = state[k + _SMA_N]
    h = state[k + _SMA_H]          # kept as a float: no int round trip on the carried chain
    r = k + _SMA_RING + int(h)
    old = state[r]
    state[r] = x
    h += 1.0
    state[k + _SMA_H] = 0.0 if h == n else h
    hi, lo = slide(state[k + _SMA_S], state[k + _SMA_S + 1], x, old)
    state[k + _SMA_S], state[k + _SMA_S + 1] = hi, lo
    c = state[k + _SMA_C]
    if c < n:
        c += 1.0
        state[k + _SMA_C] = c
        if c < n:
            return NAN
    return (hi + lo) / n


@njit(cache=True, inline="always")
def sma_update(state, x):
    """Simple moving average of the last ``period`` values; NaN for the first ``period - 1``.

    The ring starts zero-filled, so warm-up and steady state are one code path: the window
    sum slides ``x`` in and the value ``period`` updates old (0.0 during warm-up) out,
    compensated (``_exact.slide``). Output ``sum / period`` as TA-Lib divides.
    """
    return sma_update_at(state, 0, x)


@njit(cache=True)
def sma(x, period=30):
    """Batch SMA (TA-Lib default period 30). ``sma_update`` for the first ``period`` values,
    then the same ``slide`` on a register-held sum with ``x[i - period]`` as the value out
    (what the ring would hold): bit-identical to streaming."""
    st = np.empty(sma_state_len(period))
    sma_init(st, period)
    m = x.shape[0]
    out = np.empty(m)
    w = min(m, period)
    for i in range(w):
        out[i] = sma_update(st, x[i])
    hi, lo, n = st[_SMA_S], st[_SMA_S + 1], st[_SMA_N]
    for i in range(w, m):
        hi, lo = slide(hi, lo, x[i], x[i - period])
        out[i] = (hi + lo) / n
    return out


# EMA state: [period, count, k, seed_sum, value]
_EMA_N, _EMA_C, _EMA_K, _EMA_SUM, _EMA_V = 0, 1, 2, 3, 4
EMA_STATE_LEN = 5


@njit(cache=True)
def ema_state_len(period):
    """State length of an EMA: 5 (fixed)."""
    return EMA_STATE_LEN


@njit(cache=True)
def ema_lookback(period):
    """TA-Lib's EMA lookback: ``period - 1`` (unstable period 0)."""
    return period - 1


@njit(cache=True)
def ema_init(state, period):
    """Reset an EMA(``period``) state, ``k = 2 / (period + 1)`` (TA-Lib's PER_TO_K)."""
    if period < 1:
        raise ValueError("ema: period must be >= 1")
    check_state(state, EMA_STATE_LEN)
    state[:EMA_STATE_LEN] = 0.0
    state[_EMA_N] = period
    state[_EMA_K] = 2.0 / (period + 1)


@njit(cache=True, inline="always")
def _ema_step(v, x, k):
    """TA-Lib's EMA step: ``(x - v) * k + v``."""
    return (x - v) * k + v


@njit(cache=True, inline="always")
def ema_update(state, x):
    """Exponential moving average, TA-Lib seeding: NaN for ``period - 1`` values, then the
    SMA of the first ``period`` values (a plain sequential sum, as TA-Lib), then
    ``ema = (x - ema) * k + ema`` (TA-Lib's operation order, so results match it exactly).
    Not pandas ``adjust=True`` and not seeded with the first price.
    """
    n = state[_EMA_N]
    c = state[_EMA_C]
    if c >= n:
        v = _ema_step(state[_EMA_V], x, state[_EMA_K])
        state[_EMA_V] = v
        return v
    s = state[_EMA_SUM] + x
    state[_EMA_SUM] = s
    c += 1.0
    state[_EMA_C] = c
    if c < n:
        return NAN
    v = s / n
    state[_EMA_V] = v
    return v


@njit(cache=True)
def ema(x, period=30):
    """Batch EMA (TA-Lib default period 30). ``ema_update`` through the seed, then the same
    ``_ema_step`` on a register-held value: bit-identical to streaming."""
    st = np.empty(EMA_STATE_LEN)
    ema_init(st, period)
    m = x.shape[0]
    out = np.empty(m)
    w = min(m, period)
    for i in range(w):
        out[i] = ema_update(st, x[i])
    v, k = st[_EMA_V], st[_EMA_K]
    for i in range(w, m):
        v = _ema_step(v, x[i], k)
        out[i] = v
    return out


# WMA state: [period, count, head, divider, sum_hi, sum_lo, wsum_hi, wsum_lo, ring[period]]
_WMA_N, _WMA_C, _WMA_H, _WMA_DIV, _WMA_S, _WMA_T, _WMA_RING = 0, 1, 2, 3, 4, 6, 8


@njit(cache=True)
def wma_state_len(period):
    """State length of a WMA(``period``): 8 slots + a ring of the last ``period`` values."""
    return _WMA_RING + period


@njit(cache=True)
def wma_lookback(period):
    """TA-Lib's WMA lookback: ``period - 1``."""
    return period - 1


@njit(cache=True)
def wma_init(state, period):
    """Reset a WMA(``period``) state; divider ``period * (period + 1) / 2`` as TA-Lib."""
    if period < 1:
        raise ValueError("wma: period must be >= 1")
    check_state(state, wma_state_len(period))
    state[:wma_state_len(period)] = 0.0
    state[_WMA_N] = period
    state[_WMA_DIV] = (period * (period + 1)) // 2


@njit(cache=True, inline="always")
def _wma_step(t_hi, t_lo, s_hi, s_lo, x, old, n):
    """TA-Lib's WMA recurrence, compensated: ``T' = T - S + n * x``, ``S' = S - old + x``."""
    p, pe = two_prod(n, x)
    t_hi, t_lo = slide(t_hi, t_lo, p, s_hi)
    t_lo += pe - s_lo
    s_hi, s_lo = slide(s_hi, s_lo, x, old)
    return t_hi, t_lo, s_hi, s_lo


@njit(cache=True, inline="always")
def wma_update(state, x):
    """Linearly weighted moving average (TA-Lib WMA): weights 1..period, newest heaviest.

    O(1) with TA-Lib's recurrence on the weighted sum ``T`` and plain sum ``S``:
    ``T' = T - S + period * x``, ``S' = S - x_old + x``; both compensated, the product
    ``period * x`` exact (``two_prod``). With a zero-filled ring the warm-up is the same
    recurrence (missing values weigh as 0), so there is one code path.
    """
    n = state[_WMA_N]
    h = state[_WMA_H]
    r = _WMA_RING + int(h)
    old = state[r]
    state[r] = x
    h += 1.0
    state[_WMA_H] = 0.0 if h == n else h
    t_hi, t_lo, s_hi, s_lo = _wma_step(state[_WMA_T], state[_WMA_T + 1], state[_WMA_S],
                                       state[_WMA_S + 1], x, old, n)
    state[_WMA_T], state[_WMA_T + 1] = t_hi, t_lo
    state[_WMA_S], state[_WMA_S + 1] = s_hi, s_lo
    c = state[_WMA_C]
    if c < n:
        c += 1.0
        state[_WMA_C] = c
        if c < n:
            return NAN
    return (t_hi + t_lo) / state[_WMA_DIV]


@njit(cache=True)
def wma(x, period=30):
    """Batch WMA (TA-Lib default period 30). ``wma_update`` for the first ``period`` values,
    then the same ``_wma_step`` on register-held sums with ``x[i - period]`` as the value
    out: bit-identical to streaming."""
    st = np.empty(wma_state_len(period))
    wma_init(st, period)
    m = x.shape[0]
    out = np.empty(m)
    w = min(m, period)
    for i in range(w):
        out[i] = wma_update(st, x[i])
    t_hi, t_lo, s_hi, s_lo = st[_WMA_T], st[_WMA_T + 1], st[_WMA_S], st[_WMA_S + 1]
    div, n = st[_WMA_DIV], st[_WMA_N]
    for i in range(w, m):
        t_hi, t_lo, s_hi, s_lo = _wma_step(t_hi, t_lo, s_hi, s_lo, x[i], x[i - period], n)
        out[i] = (t_hi + t_lo) / div
    return out
