"""Volume: OBV and VWAP. Streaming O(1) and batch.

Same shape as ``ma`` (see its docstring); every batch here is the streaming update
itself in one njit loop (bit-identical by construction).

VWAP variants (TA-Lib has no VWAP; FACTS §13 asks us to name ours):

* **session-reset** (the default): ``sum(p * v) / sum(v)`` since the start of the current
  session. The session boundary is either a flag (``vwap_update(st, p, v, reset)``: the
  caller knows its calendar, DST and half days) or fixed-length sessions on a timestamp
  (``vwap_update_ts(st, p, v, ts_ns)``: a new session whenever
  ``(ts_ns - offset_ns) // session_ns`` changes, e.g. UTC days).
* **cumulative**: session-reset that never resets (``reset=False`` always, or batch
  ``vwap(p, v)`` without ``reset``: the whole array is one session).
* **rolling**: over the last ``period`` updates, ``vwap_rolling_*``.

``price`` is whatever the caller volume-weights: the trade price for ticks; for bars the
bar's own ``vw`` or the typical price ``(h + l + c) / 3``. Before any volume in the session
(or window) the VWAP is NaN. Sums are compensated (``_exact``), so negative prices
(spreads) and long sessions lose nothing.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ._exact import acc_add, acc_slide, check_state, two_prod

NAN = np.nan

# OBV state: [count, prev_close, obv]
_OBV_C, _OBV_PC, _OBV_V = 0, 1, 2
OBV_STATE_LEN = 3


@njit(cache=True)
def obv_state_len():
    """State length of an OBV: 3 (fixed)."""
    return OBV_STATE_LEN


@njit(cache=True)
def obv_lookback():
    """TA-Lib's OBV lookback: 0."""
    return 0


@njit(cache=True)
def obv_init(state):
    """Reset an OBV state."""
    check_state(state, OBV_STATE_LEN)
    state[:OBV_STATE_LEN] = 0.0


@njit(cache=True, inline="always")
def obv_update(state, close, volume):
    """On-balance volume as TA-Lib: starts at the **first bar's volume**; then adds the
    volume when the close rises, subtracts it when it falls, and adds nothing when the close
    is unchanged. A plain running sum like TA-Lib (exact for integer volumes below 2^53).
    """
    if state[_OBV_C] == 0.0:
        state[_OBV_C] = 1.0
        state[_OBV_PC] = close
        state[_OBV_V] = volume
        return volume
    pc = state[_OBV_PC]
    state[_OBV_PC] = close
    v = state[_OBV_V]
    if close > pc:
        v += volume
    elif close < pc:
        v -= volume
    state[_OBV_V] = v
    return v


@njit(cache=True)
def obv(close, volume):
    """Batch OBV: ``obv_update`` over the bars in one njit loop."""
    st = np.empty(OBV_STATE_LEN)
    obv_init(st)
    out = np.empty(close.shape[0])
    for i in range(close.shape[0]):
        out[i] = obv_update(st, close[i], volume[i])
    return out


# Session VWAP state: [pv_hi, pv_lo, v_hi, v_lo, session_ns, offset_ns, session_id, started]
_VW_PV, _VW_V, _VW_LEN, _VW_OFF, _VW_SID, _VW_GO = 0, 2, 4, 5, 6, 7
VWAP_STATE_LEN = 8


@njit(cache=True)
def vwap_state_len():
    """State length of a session VWAP: 8 (fixed)."""
    return VWAP_STATE_LEN


@njit(cache=True)
def vwap_init(state, session_ns=86_400_000_000_000, offset_ns=0):
    """Reset a session VWAP. ``session_ns``/``offset_ns`` are used by ``vwap_update_ts`` only
    (default: UTC days); they are stored as float64, exact below 2^53 ns (104 days)."""
    if session_ns <= 0:
        raise ValueError("vwap: session_ns must be > 0")
    check_state(state, VWAP_STATE_LEN)
    state[:VWAP_STATE_LEN] = 0.0
    state[_VW_LEN], state[_VW_OFF] = session_ns, offset_ns


@njit(cache=True, inline="always")
def vwap_update(state, price, volume, reset):
    """Session VWAP: if ``reset``, this update opens a new session (the sums restart with
    it). Returns ``sum(p * v) / sum(v)`` over the session, NaN while ``sum(v) == 0``.
    ``p * v`` is added exactly (``two_prod``) into compensated sums."""
    if reset:
        state[:4] = 0.0
    p, pe = two_prod(price, volume)
    acc_add(state, _VW_PV, p)
    state[_VW_PV + 1] += pe
    acc_add(state, _VW_V, volume)
    v = state[_VW_V] + state[_VW_V + 1]
    return (state[_VW_PV] + state[_VW_PV + 1]) / v if v != 0.0 else NAN


@njit(cache=True, inline="always")
def vwap_update_ts(state, price, volume, ts_ns):
    """Session VWAP with fixed-length sessions: a new session starts when
    ``(ts_ns - offset_ns) // session_ns`` differs from the previous update's (or on the
    first update). Sessions are numbered, not timestamps, so float64 holds them exactly."""
    sid = (np.int64(ts_ns) - np.int64(state[_VW_OFF])) // np.int64(state[_VW_LEN])
    reset = state[_VW_GO] == 0.0 or sid != state[_VW_SID]
    state[_VW_GO] = 1.0
    state[_VW_SID] = sid
    return vwap_update(state, price, volume, reset)


@njit(cache=True)
def vwap(price, volume, reset=None):
    """Batch session VWAP. ``reset``: optional bool array, True where a session starts;
    without it the array is one session (cumulative VWAP)."""
    st = np.empty(VWAP_STATE_LEN)
    vwap_init(st)
    out = np.empty(price.shape[0])
    for i in range(price.shape[0]):
        r = False if reset is None else reset[i]
        out[i] = vwap_update(st, price[i], volume[i], r)
    return out


@njit(cache=True)
def vwap_ts(price, volume, ts_ns, session_ns=86_400_000_000_000, offset_ns=0):
    """Batch session VWAP with fixed-length sessions on ``ts_ns`` (int64 ns)."""
    st = np.empty(VWAP_STATE_LEN)
    vwap_init(st, session_ns, offset_ns)
    out = np.empty(price.shape[0])
    for i in range(price.shape[0]):
        out[i] = vwap_update_ts(st, price[i], volume[i], ts_ns[i])
    return out


# Rolling VWAP state: [period, count, head, pv_hi, pv_lo, v_hi, v_lo, price_ring[period], volume_ring[period]]
_RV_N, _RV_C, _RV_H, _RV_PV, _RV_V, _RV_RING = 0, 1, 2, 3, 5, 7


@njit(cache=True)
def vwap_rolling_state_len(period):
    """State length of a rolling VWAP: 7 slots + rings of the last ``period`` prices and volumes."""
    return _RV_RING + 2 * period


@njit(cache=True)
def vwap_rolling_lookback(period):
    """Leading NaNs of a rolling VWAP: ``period - 1`` (like an SMA)."""
    return period - 1


@njit(cache=True)
def vwap_rolling_init(state, period):
    """Reset a rolling VWAP over the last ``period`` updates; ``period >= 1``."""
    if period < 1:
        raise ValueError("vwap_rolling: period must be >= 1")
    check_state(state, vwap_rolling_state_len(period))
    state[:vwap_rolling_state_len(period)] = 0.0
    state[_RV_N] = period


@njit(cache=True, inline="always")
def vwap_rolling_update(state, price, volume):
    """``sum(p * v) / sum(v)`` over the last ``period`` updates (NaN before ``period``
    updates, or when the window has no volume). The leaving bar's ``p * v`` is recomputed
    from the ring exactly as it was added (``two_prod``), so it leaves without residue."""
    n = state[_RV_N]
    h = state[_RV_H]
    i_p = _RV_RING + int(h)
    i_v = i_p + int(n)
    p, pe = two_prod(price, volume)
    q, qe = two_prod(state[i_p], state[i_v])
    acc_slide(state, _RV_PV, p, q)
    state[_RV_PV + 1] += pe - qe
    acc_slide(state, _RV_V, volume, state[i_v])
    state[i_p], state[i_v] = price, volume
    h += 1.0
    state[_RV_H] = 0.0 if h == n else h
    c = state[_RV_C]
    if c < n:
        c += 1.0
        state[_RV_C] = c
        if c < n:
            return NAN
    v = state[_RV_V] + state[_RV_V + 1]
    return (state[_RV_PV] + state[_RV_PV + 1]) / v if v != 0.0 else NAN


@njit(cache=True)
def vwap_rolling(price, volume, period):
    """Batch rolling VWAP: ``vwap_rolling_update`` in one njit loop."""
    st = np.empty(vwap_rolling_state_len(period))
    vwap_rolling_init(st, period)
    out = np.empty(price.shape[0])
    for i in range(price.shape[0]):
        out[i] = vwap_rolling_update(st, price[i], volume[i])
    return out
