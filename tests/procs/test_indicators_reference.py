"""procs.indicators against independent plain-numpy references (rtol 1e-9), and drift.

The references are written from the TA-Lib definitions with numpy (np.convolve, sliding
windows, np.std) or explicit loops, sharing no code with the package. The drift tests show
why the package compensates its window sums: the plain running sum TA-Lib uses fails the
same tolerance on the same data.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view as windows

import procs.indicators as ind

RTOL = 1e-9


def close(got, want, atol=0.0):
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=atol, equal_nan=True)


def pad(lead, values):
    return np.concatenate([np.full(lead, np.nan), values])


# ---------------------------------------------------------------- references

def ref_sma(x, n):
    if len(x) < n:
        return np.full(len(x), np.nan)
    return pad(n - 1, np.convolve(x, np.ones(n), "valid") / n)


def ref_wma(x, n):
    if len(x) < n:
        return np.full(len(x), np.nan)
    w = np.arange(1.0, n + 1)
    return pad(n - 1, np.convolve(x, w[::-1], "valid") / w.sum())


def ref_ema_from(x, n, seed_at, seed):
    """EMA with k = 2/(n+1) starting from ``seed`` at index ``seed_at``; NaN before."""
    out = np.full(len(x), np.nan)
    if len(x) <= seed_at:
        return out
    k = 2.0 / (n + 1)
    out[seed_at] = e = seed
    for i in range(seed_at + 1, len(x)):
        e = e + k * (x[i] - e)
        out[i] = e
    return out


def ref_ema(x, n):
    return ref_ema_from(x, n, n - 1, np.mean(x[:n]) if len(x) >= n else 0.0)


def ref_rsi(x, n):
    out = np.full(len(x), np.nan)
    if len(x) <= n:
        return out
    d = np.diff(x)
    up, dn = np.maximum(d, 0.0), np.maximum(-d, 0.0)
    g, lo = up[:n].mean(), dn[:n].mean()
    for i in range(n, len(x)):
        if i > n:
            g = g + (up[i - 1] - g) / n
            lo = lo + (dn[i - 1] - lo) / n
        out[i] = 0.0 if g + lo == 0 else 100.0 - 100.0 / (1.0 + g / lo) if lo else 100.0
    return out


def ref_macd(x, fast, slow, signal):
    nan = np.full(len(x), np.nan)
    if len(x) < slow:
        return nan, nan.copy(), nan.copy()
    ef = ref_ema_from(x, fast, slow - 1, np.mean(x[slow - fast:slow]))   # TA-Lib's aligned seed
    es = ref_ema_from(x, slow, slow - 1, np.mean(x[:slow]))
    line = ef - es
    first = slow + signal - 2
    sig = ref_ema_from(line, signal, first, np.mean(line[slow - 1:first + 1])
                       if len(x) > first else 0.0)
    line[:first] = np.nan
    return line, sig, line - sig


def ref_bbands(x, n, up, dn):
    if len(x) < n:
        nan = np.full(len(x), np.nan)
        return nan, nan, nan
    w = windows(x, n)
    m, sd = pad(n - 1, w.mean(axis=1)), pad(n - 1, w.std(axis=1))
    return m + up * sd, m, m - dn * sd


def ref_atr(h, lo, c, n):
    out = np.full(len(c), np.nan)
    if len(c) <= n:
        return out
    pc = c[:-1]
    tr = np.maximum(h[1:], pc) - np.minimum(lo[1:], pc)
    a = tr[:n].mean()
    out[n] = a
    for i in range(n + 1, len(c)):
        a = (a * (n - 1) + tr[i - 1]) / n
        out[i] = a
    return out


def ref_stoch(h, lo, c, fk, sk, sd):
    n, lb = len(c), fk + sk + sd - 3
    nan = np.full(n, np.nan)
    if n < fk:
        return nan, nan.copy()
    hh, ll = windows(h, fk).max(axis=1), windows(lo, fk).min(axis=1)
    rng = hh - ll
    fast = np.where(rng != 0, 100.0 * (c[fk - 1:] - ll) / np.where(rng != 0, rng, 1.0), 0.0)
    slow_k = ref_sma(fast, sk)                        # aligned on fast's index
    slow_d = pad(sk - 1, ref_sma(slow_k[sk - 1:], sd))
    slow_k, slow_d = pad(fk - 1, slow_k)[:n], pad(fk - 1, slow_d)[:n]
    slow_k[:lb] = np.nan
    slow_d[:lb] = np.nan
    return slow_k, slow_d


def ref_obv(c, v):
    if len(c) == 0:
        return np.zeros(0)
    sign = np.sign(np.diff(c))
    return v[0] + np.concatenate([[0.0], np.cumsum(sign * v[1:])])


def ref_vwap(p, v, reset):
    out = np.empty(len(p))
    starts = np.flatnonzero(reset).tolist()
    bounds = sorted(set([0] + starts + [len(p)]))
    for a, b in zip(bounds[:-1], bounds[1:]):
        cv = np.cumsum(v[a:b])
        with np.errstate(invalid="ignore", divide="ignore"):
            out[a:b] = np.where(cv > 0, np.cumsum(p[a:b] * v[a:b]) / np.where(cv > 0, cv, 1), np.nan)
    return out


def ref_vwap_rolling(p, v, n):
    if len(p) < n:
        return np.full(len(p), np.nan)
    return pad(n - 1, windows(p * v, n).sum(axis=1) / windows(v, n).sum(axis=1))


# ---------------------------------------------------------------- fixed data

def bars(n, seed=11, level=100.0, vol=1.0):
    r = np.random.default_rng(seed)
    c = level + np.cumsum(r.normal(0.0, vol, n))
    h = c + r.random(n) * vol
    lo = c - r.random(n) * vol
    v = r.integers(1, 5000, n).astype(np.float64)
    return h, lo, c, v


@pytest.fixture(scope="module")
def data():
    return bars(20_000)


def test_moving_averages_vs_reference(data):
    _, _, c, _ = data
    for n in (1, 2, 5, 30, 200):
        close(ind.sma(c, n), ref_sma(c, n))
        close(ind.wma(c, n), ref_wma(c, n))
        close(ind.ema(c, n), ref_ema(c, n))


def test_rsi_vs_reference(data):
    _, _, c, _ = data
    for n in (2, 14, 50):
        close(ind.rsi(c, n), ref_rsi(c, n))


def test_macd_vs_reference(data):
    _, _, c, _ = data
    for p in ((12, 26, 9), (5, 35, 5), (3, 3, 1)):
        for got, want in zip(ind.macd(c, *p), ref_macd(c, *p)):
            close(got, want, atol=1e-9 * np.abs(c).max())


def test_macd_fast_ema_is_seeded_on_the_last_fast_values():
    """TA-Lib's quirk: MACD's fast EMA is not a standalone EMA(12) (seeded on x[0:12])."""
    _, _, c, _ = bars(100, seed=2)
    m = ind.macd(c)[0]
    standalone = ind.ema(c, 12) - ind.ema(c, 26)
    assert abs(m[33] - standalone[33]) > 1e-6


def test_bbands_vs_reference(data):
    _, _, c, _ = data
    for n, up, dn in ((5, 2.0, 2.0), (20, 2.0, 2.0), (50, 1.5, 3.0)):
        for got, want in zip(ind.bbands(c, n, up, dn), ref_bbands(c, n, up, dn)):
            close(got, want)


def test_atr_vs_reference(data):
    h, lo, c, _ = data
    for n in (1, 14, 30):
        close(ind.atr(h, lo, c, n), ref_atr(h, lo, c, n))


def test_stoch_vs_reference(data):
    h, lo, c, _ = data
    for p in ((5, 3, 3), (14, 3, 3), (1, 1, 1), (9, 1, 5)):
        for got, want in zip(ind.stoch(h, lo, c, *p), ref_stoch(h, lo, c, *p)):
            close(got, want, atol=1e-9)


def test_volume_vs_reference(data):
    _, _, c, v = data
    np.testing.assert_array_equal(ind.obv(c, v), ref_obv(c, v))     # integer volumes: exact
    reset = np.zeros(len(c), np.bool_)
    reset[::390] = True
    close(ind.vwap(c, v, reset), ref_vwap(c, v, reset))
    close(ind.vwap(c, v), ref_vwap(c, v, np.zeros(len(c), np.bool_)))
    close(ind.vwap_rolling(c, v, 20), ref_vwap_rolling(c, v, 20))


# ---------------------------------------------------------------- drift: why the sums are compensated

def level_shift(n=4000):
    """Prices near 1e6 (a thousand-bar history) then near 1.0: stale rounding shows up."""
    r = np.random.default_rng(4)
    x = np.empty(n)
    x[:1000] = 1e6 + np.cumsum(r.normal(0, 50.0, 1000))
    x[1000:] = 1.0 + np.cumsum(r.normal(0, 1e-3, n - 1000))
    return x


def plain_running_sma(x, n):
    """TA-Lib's SMA: ``total += x[i]; out = total / n; total -= x[i - n + 1]``."""
    out = np.full(len(x), np.nan)
    total = float(np.sum(x[:n - 1]))
    for i in range(n - 1, len(x)):
        total += x[i]
        out[i] = total / n
        total -= x[i - n + 1]
    return out


def test_sma_and_wma_do_not_drift_after_a_level_shift():
    x = level_shift()
    for n in (20, 200):
        close(ind.sma(x, n), ref_sma(x, n))
        close(ind.wma(x, n), ref_wma(x, n))
    with pytest.raises(AssertionError):              # the tolerance has teeth
        close(plain_running_sma(x, 20), ref_sma(x, 20))


def test_bbands_quiet_window_keeps_its_digits():
    """1-cent noise on a 100-dollar price: E[x^2] - E[x]^2 in doubles (TA-Lib) loses ~8 digits."""
    r = np.random.default_rng(9)
    x = 100.0 + r.normal(0, 0.01, 5000)
    u, m, _ = ind.bbands(x, 20, 1.0, 1.0)
    want = ref_bbands(x, 20, 1.0, 1.0)
    close(u - m, want[0] - want[1])
    w = windows(x, 20)
    textbook = np.sqrt(np.maximum((w * w).mean(axis=1) - w.mean(axis=1) ** 2, 0.0))
    with pytest.raises(AssertionError):
        close(textbook, w.std(axis=1))


def test_bbands_after_level_shift_and_constant_window():
    x = level_shift()
    for got, want in zip(ind.bbands(x, 20), ref_bbands(x, 20, 2.0, 2.0)):
        close(got, want)
    flat = np.concatenate([x[:500], np.full(100, 123.456789)])
    u, m, lo = ind.bbands(flat, 20)
    assert np.all(np.abs(u[-50:] - 123.456789) < 1e-12)        # std ~ eps * price, not 1e-6


# ---------------------------------------------------------------- properties

prices = st.lists(st.floats(1.0, 1e4, allow_nan=False, allow_infinity=False), min_size=0,
                  max_size=120).map(lambda xs: np.array(xs, np.float64))
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(x=prices, n=st.integers(1, 40))
def test_prop_window_averages(x, n):
    scale = 1e-9 * (np.abs(x).max() if len(x) else 1.0)
    close(ind.sma(x, n), ref_sma(x, n), atol=scale)
    close(ind.wma(x, n), ref_wma(x, n), atol=scale)
    close(ind.ema(x, n), ref_ema(x, n), atol=scale)
    if n >= 2:
        for got, want in zip(ind.bbands(x, n), ref_bbands(x, n, 2.0, 2.0)):
            close(got, want, atol=scale)


@SETTINGS
@given(x=prices, n=st.integers(2, 30), sig=st.integers(1, 9), fast=st.integers(2, 12),
       extra=st.integers(0, 15))
def test_prop_rsi_macd(x, n, sig, fast, extra):
    close(ind.rsi(x, n), ref_rsi(x, n), atol=1e-9)
    scale = 1e-9 * (np.abs(x).max() if len(x) else 1.0)
    for got, want in zip(ind.macd(x, fast, fast + extra, sig), ref_macd(x, fast, fast + extra, sig)):
        close(got, want, atol=scale)


@SETTINGS
@given(x=prices, seed=st.integers(0, 2**32 - 1), n=st.integers(1, 20), sk=st.integers(1, 5),
       sd=st.integers(1, 5))
def test_prop_bar_indicators(x, seed, n, sk, sd):
    r = np.random.default_rng(seed)
    h = x + r.random(len(x)) * x * 0.01
    lo = x - r.random(len(x)) * x * 0.01
    v = np.round(r.random(len(x)) * 1000)
    scale = 1e-9 * (np.abs(x).max() if len(x) else 1.0)
    close(ind.atr(h, lo, x, n), ref_atr(h, lo, x, n), atol=scale)
    for got, want in zip(ind.stoch(h, lo, x, n, sk, sd), ref_stoch(h, lo, x, n, sk, sd)):
        close(got, want, atol=1e-9)
    np.testing.assert_array_equal(ind.obv(x, v), ref_obv(x, v))
    reset = r.random(len(x)) < 0.05
    close(ind.vwap(x, v, reset), ref_vwap(x, v, reset))
    close(ind.vwap_rolling(x, v, n), ref_vwap_rolling(x, v, n))
