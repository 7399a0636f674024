"""Streaming technical indicators for stages and strategies (a library, not a stage).

Conventions follow TA-Lib (FACTS §13): the same lookbacks (outputs before them are NaN),
EMA seeded with the SMA of the first N values, Wilder smoothing for RSI and ATR seeded with
simple averages, MACD's aligned seeds (first value at index 33 for 12/26/9), population
std for Bollinger, OBV starting at the first volume. Each docstring names its convention
and any deliberate deviation (no TA-Lib 1e-8 "zero" thresholds; compensated window sums).

Every indicator ``xxx`` offers, all ``@njit(cache=True)``:

=========================  ===========================================================
``xxx_state_len(params)``  floats in one instance's state (a row of a 2-D array per symbol)
``xxx_init(state, params)`` validate (ValueError) and reset the row
``xxx_update(state, ...)``  one O(1) step -> output, or a tuple for multi-output indicators
``xxx(arrays, params)``     batch: the same update in an njit loop (bit-identical to streaming)
``xxx_lookback(params)``    TA-Lib lookback = number of leading NaNs
=========================  ===========================================================

Updates are ``inline="always"``: call them as globals from the jitted step and numba
inlines them (no call, no refcount of the row view). ``sma_update_at(state, k, x)`` runs an
SMA embedded at ``state[k:]``, for composite indicators.

Use in a stage::

    st = np.empty((n_symbols, sma_state_len(20)))
    for s in range(n_symbols):
        sma_init(st[s], 20)
    ...                      # inside the jitted step
    m = sma_update(st[sym], mid)

Modules: ``ma`` (SMA, EMA, WMA), ``momentum`` (RSI, MACD, STOCH), ``volatility``
(Bollinger, ATR, true range), ``volume`` (OBV, VWAP: session-reset, cumulative, rolling),
``_exact`` (the error-free sums that keep window sums from drifting).
"""
from __future__ import annotations

from .ma import (ema, ema_init, ema_lookback, ema_state_len, ema_update, sma, sma_init,
                 sma_lookback, sma_state_len, sma_update, sma_update_at, wma, wma_init,
                 wma_lookback, wma_state_len, wma_update)
from .momentum import (macd, macd_init, macd_lookback, macd_state_len, macd_update, rsi,
                       rsi_init, rsi_lookback, rsi_state_len, rsi_update, stoch, stoch_init,
                       stoch_lookback, stoch_state_len, stoch_update)
from .volatility import (atr, atr_init, atr_lookback, atr_state_len, atr_update, bbands,
                         bbands_init, bbands_lookback, bbands_state_len, bbands_update,
                         true_range)
from .volume import (obv, obv_init, obv_lookback, obv_state_len, obv_update, vwap, vwap_init,
                     vwap_rolling, vwap_rolling_init, vwap_rolling_lookback,
                     vwap_rolling_state_len, vwap_rolling_update, vwap_state_len, vwap_ts,
                     vwap_update, vwap_update_ts)

__all__ = [
    "sma", "sma_init", "sma_lookback", "sma_state_len", "sma_update", "sma_update_at",
    "ema", "ema_init", "ema_lookback", "ema_state_len", "ema_update",
    "wma", "wma_init", "wma_lookback", "wma_state_len", "wma_update",
    "rsi", "rsi_init", "rsi_lookback", "rsi_state_len", "rsi_update",
    "macd", "macd_init", "macd_lookback", "macd_state_len", "macd_update",
    "stoch", "stoch_init", "stoch_lookback", "stoch_state_len", "stoch_update",
    "bbands", "bbands_init", "bbands_lookback", "bbands_state_len", "bbands_update",
    "atr", "atr_init", "atr_lookback", "atr_state_len", "atr_update", "true_range",
    "obv", "obv_init", "obv_lookback", "obv_state_len", "obv_update",
    "vwap", "vwap_ts", "vwap_init", "vwap_state_len", "vwap_update", "vwap_update_ts",
    "vwap_rolling", "vwap_rolling_init", "vwap_rolling_lookback", "vwap_rolling_state_len",
    "vwap_rolling_update",
]
