"""procs.indicators: hand-worked values, TA-Lib lookbacks, streaming == batch bit for bit.

Independent numpy references and property tests live in test_indicators_reference.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit

import procs.indicators as ind

NAN = np.nan


def _bars(n, seed=1):
    r = np.random.default_rng(seed)
    c = 100.0 + np.cumsum(r.normal(0.0, 1.0, n))
    h = c + r.random(n)
    lo = c - r.random(n)
    v = r.integers(1, 1000, n).astype(np.float64)
    return h, lo, c, v


def same_bits(a, b) -> bool:
    """NaN in the same places and every other float64 identical bit for bit."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return False
    na, nb = np.isnan(a), np.isnan(b)
    return bool(np.array_equal(na, nb)) and a[~na].tobytes() == b[~nb].tobytes()


# ---------------------------------------------------------------- hand-worked values

def test_sma_hand():
    got = ind.sma(np.array([1.0, 2, 3, 4, 5]), 3)
    np.testing.assert_array_equal(got, [NAN, NAN, 2.0, 3.0, 4.0])


def test_ema_hand_seeded_with_sma():
    # seed (2+4+6)/3 = 4; k = 2/(3+1) = 0.5: (8-4)*.5+4 = 6; (4-6)*.5+6 = 5
    got = ind.ema(np.array([2.0, 4, 6, 8, 4]), 3)
    np.testing.assert_array_equal(got, [NAN, NAN, 4.0, 6.0, 5.0])


def test_wma_hand():
    got = ind.wma(np.array([1.0, 2, 3, 4, 5]), 3)       # (1*1 + 2*2 + 3*3) / 6 ...
    np.testing.assert_allclose(got, [NAN, NAN, 14 / 6, 20 / 6, 26 / 6], rtol=1e-15)


def test_rsi_hand_wilder():
    # changes +1 -1 +2 0 -1; seed g=(1+0+2)/3=1, l=1/3 -> 75; then g=2/3, l=2/9 -> 75;
    # then g=4/9, l=(4/9+1)/3=13/27 -> 100*(12/27)/(25/27) = 48
    got = ind.rsi(np.array([10.0, 11, 10, 12, 12, 11]), 3)
    np.testing.assert_allclose(got, [NAN, NAN, NAN, 75.0, 75.0, 48.0], rtol=1e-14)


def test_rsi_flat_is_zero_and_all_up_is_100():
    assert np.all(ind.rsi(np.full(20, 5.0), 14)[14:] == 0.0)          # TA-Lib: flat -> 0
    assert np.all(ind.rsi(np.arange(20.0), 14)[14:] == 100.0)


def test_macd_hand_small_periods():
    # fast 2, slow 3, signal 2 on [1,2,3,6,5]: seeds at index 2: slow (1+2+3)/3 = 2, fast =
    # mean of the LAST 2 of the first 3 = 2.5 (TA-Lib's aligned seed). kf=2/3, ks=1/2, kg=2/3.
    # idx3: ef=29/6, es=4, m=5/6, signal=(1/2+5/6)/2=2/3; idx4: m=4/9, signal=14/27, hist=-2/27
    m, s, h = ind.macd(np.array([1.0, 2, 3, 6, 5]), 2, 3, 2)
    np.testing.assert_allclose(m, [NAN, NAN, NAN, 5 / 6, 4 / 9], rtol=1e-14)
    np.testing.assert_allclose(s, [NAN, NAN, NAN, 2 / 3, 14 / 27], rtol=1e-14)
    np.testing.assert_allclose(h, [NAN, NAN, NAN, 1 / 6, -2 / 27], rtol=1e-13)


def test_macd_default_first_value_at_33():
    _, _, c, _ = _bars(100)
    for out in ind.macd(c):
        assert np.isnan(out[:33]).all() and np.isfinite(out[33:]).all()
    assert ind.macd_lookback() == 33


def test_bbands_hand_population_std():
    u, m, lo = ind.bbands(np.array([1.0, 2, 3, 5]), 3, 2.0, 1.0)
    sd1, sd2 = np.sqrt(2 / 3), np.std([2.0, 3, 5])
    np.testing.assert_allclose(m, [NAN, NAN, 2.0, 10 / 3], rtol=1e-15)
    np.testing.assert_allclose(u, [NAN, NAN, 2 + 2 * sd1, 10 / 3 + 2 * sd2], rtol=1e-14)
    np.testing.assert_allclose(lo, [NAN, NAN, 2 - sd1, 10 / 3 - sd2], rtol=1e-14)


def test_atr_hand_wilder_first_at_period():
    # TR1 = 2, TR2 = 2, TR3 = max(4, 0, 4) = 4, TR4 = 1, TR5 (gap up) = |8.5 - 15| = 6.5
    h = np.array([10.0, 11, 12, 11, 9, 15])
    lo = np.array([8.0, 9, 10, 7, 8, 14])
    c = np.array([9.0, 10, 11, 8, 8.5, 14.5])
    got = ind.atr(h, lo, c, 3)
    np.testing.assert_allclose(got, [NAN, NAN, NAN, 8 / 3, 19 / 9, 96.5 / 27], rtol=1e-14)
    assert ind.atr_lookback(14) == 14
    hh, ll, cc, _ = _bars(40)
    a = ind.atr(hh, ll, cc)
    assert np.isnan(a[:14]).all() and np.isfinite(a[14:]).all()


def test_stoch_hand():
    # fastK (3 bars): 75, 33.3, 75, 50; slowK (2): 54.17, 54.17, 62.5; slowD (2): 54.17, 58.33
    h = np.array([10.0, 11, 12, 11, 13, 12])
    lo = np.array([8.0, 9, 10, 9, 11, 10])
    c = np.array([9.0, 10, 11, 10, 12, 11])
    k, d = ind.stoch(h, lo, c, 3, 2, 2)
    fk = [75.0, 100 / 3, 75.0, 50.0]
    np.testing.assert_allclose(k, [NAN] * 4 + [(fk[1] + fk[2]) / 2, (fk[2] + fk[3]) / 2], rtol=1e-14)
    sk3 = (fk[0] + fk[1]) / 2
    np.testing.assert_allclose(d, [NAN] * 4 + [(sk3 + k[4]) / 2, (k[4] + k[5]) / 2], rtol=1e-14)


def test_stoch_defaults_and_flat_window():
    assert ind.stoch_lookback() == 8                                  # 5, 3, 3 (TA-Lib)
    h, lo, c, _ = _bars(50)
    k, d = ind.stoch(h, lo, c)
    assert np.isnan(k[:8]).all() and np.isnan(d[:8]).all() and np.isfinite(k[8:]).all()
    k, d = ind.stoch(np.full(12, 3.0), np.full(12, 3.0), np.full(12, 3.0))
    assert np.all(k[8:] == 0.0) and np.all(d[8:] == 0.0)


def test_obv_hand():
    got = ind.obv(np.array([10.0, 11, 11, 10, 12]), np.array([100.0, 200, 300, 400, 500]))
    np.testing.assert_array_equal(got, [100.0, 300.0, 300.0, -100.0, 400.0])


def test_vwap_hand_variants():
    p, v = np.array([10.0, 11, 12, 13]), np.array([1.0, 1, 2, 2])
    np.testing.assert_allclose(ind.vwap(p, v), [10, 10.5, 45 / 4, 71 / 6], rtol=1e-15)
    reset = np.array([False, False, True, False])
    np.testing.assert_allclose(ind.vwap(p, v, reset), [10, 10.5, 12, 12.5], rtol=1e-15)
    day = 86_400_000_000_000
    ts = np.array([0, 10, day + 5, day + 6], np.int64)
    np.testing.assert_allclose(ind.vwap_ts(p, v, ts), [10, 10.5, 12, 12.5], rtol=1e-15)
    # sessions starting at offset 7 ns: ts 0 is in session -1, the rest in session 0
    np.testing.assert_allclose(ind.vwap_ts(p, v, ts, day, 7), [10, 11, 35 / 3, 61 / 5], rtol=1e-15)
    np.testing.assert_allclose(ind.vwap_rolling(p, v, 2), [NAN, 10.5, 35 / 3, 12.5], rtol=1e-15)


def test_vwap_without_volume_is_nan():
    got = ind.vwap(np.array([10.0, 11, 12]), np.array([0.0, 0, 2]), np.array([True, False, True]))
    assert np.isnan(got[0]) and np.isnan(got[1]) and got[2] == 12.0


# ---------------------------------------------------------------- lookbacks, short input

LOOKBACKS = [
    ("sma", lambda c, h, lo, v: ind.sma(c, 7), ind.sma_lookback(7)),
    ("ema", lambda c, h, lo, v: ind.ema(c, 7), ind.ema_lookback(7)),
    ("wma", lambda c, h, lo, v: ind.wma(c, 7), ind.wma_lookback(7)),
    ("rsi", lambda c, h, lo, v: ind.rsi(c, 7), ind.rsi_lookback(7)),
    ("macd", lambda c, h, lo, v: ind.macd(c, 3, 6, 4)[2], ind.macd_lookback(3, 6, 4)),
    ("bbands", lambda c, h, lo, v: ind.bbands(c, 7)[0], ind.bbands_lookback(7)),
    ("atr", lambda c, h, lo, v: ind.atr(h, lo, c, 7), ind.atr_lookback(7)),
    ("stoch", lambda c, h, lo, v: ind.stoch(h, lo, c, 4, 3, 2)[1], ind.stoch_lookback(4, 3, 2)),
    ("obv", lambda c, h, lo, v: ind.obv(c, v), ind.obv_lookback()),
    ("vwap_rolling", lambda c, h, lo, v: ind.vwap_rolling(c, v, 7), ind.vwap_rolling_lookback(7)),
]


@pytest.mark.parametrize("name,fn,lb", LOOKBACKS, ids=[x[0] for x in LOOKBACKS])
def test_leading_nans_equal_lookback(name, fn, lb):
    h, lo, c, v = _bars(60)
    out = fn(c, h, lo, v)
    assert np.isnan(out[:lb]).all(), name
    assert np.isfinite(out[lb:]).all(), name
    for n in (0, max(lb, 1) - 1):                     # shorter than the lookback: all NaN
        short = fn(c[:n], h[:n], lo[:n], v[:n])
        assert short.shape == (n,) and np.isnan(short[:lb]).all()


def test_state_lengths():
    assert ind.sma_state_len(200) == 205 and ind.wma_state_len(10) == 18
    assert ind.bbands_state_len(20) == 29
    for f in (ind.ema_state_len, ind.rsi_state_len, ind.atr_state_len):
        assert f(14) == 5
    assert ind.macd_state_len() == 13 and ind.obv_state_len() == 3 and ind.vwap_state_len() == 8
    assert ind.stoch_state_len(5, 3, 3) == 7 + 20 + 8 + 8
    assert ind.vwap_rolling_state_len(4) == 15


# ---------------------------------------------------------------- streaming == batch, bit for bit

def _stream(init, update, args_init, columns):
    st = np.empty(4096)
    init(st, *args_init)
    rows = [update(st, *vals) for vals in zip(*columns)]
    if rows and isinstance(rows[0], tuple):
        return tuple(np.array(col) for col in zip(*rows))
    return np.array(rows)


def _streaming_cases(n=700, seed=3):
    h, lo, c, v = _bars(n, seed)
    reset = np.zeros(n, np.bool_)
    reset[::97] = True
    ts = (np.arange(n, dtype=np.int64) * 7_000_000_000_000) + 123
    return [
        ("sma", ind.sma_init, ind.sma_update, (20,), (c,), ind.sma(c, 20)),
        ("sma1", ind.sma_init, ind.sma_update, (1,), (c,), ind.sma(c, 1)),
        ("ema", ind.ema_init, ind.ema_update, (12,), (c,), ind.ema(c, 12)),
        ("wma", ind.wma_init, ind.wma_update, (9,), (c,), ind.wma(c, 9)),
        ("rsi", ind.rsi_init, ind.rsi_update, (14,), (c,), ind.rsi(c, 14)),
        ("macd", ind.macd_init, ind.macd_update, (12, 26, 9), (c,), ind.macd(c)),
        ("bbands", ind.bbands_init, ind.bbands_update, (20, 2.0, 1.5), (c,), ind.bbands(c, 20, 2.0, 1.5)),
        ("atr", ind.atr_init, ind.atr_update, (14,), (h, lo, c), ind.atr(h, lo, c, 14)),
        ("stoch", ind.stoch_init, ind.stoch_update, (5, 3, 3), (h, lo, c), ind.stoch(h, lo, c)),
        ("stoch14", ind.stoch_init, ind.stoch_update, (14, 1, 4), (h, lo, c), ind.stoch(h, lo, c, 14, 1, 4)),
        ("obv", ind.obv_init, ind.obv_update, (), (c, v), ind.obv(c, v)),
        ("vwap", ind.vwap_init, ind.vwap_update, (), (c, v, reset), ind.vwap(c, v, reset)),
        ("vwap_ts", ind.vwap_init, ind.vwap_update_ts, (86_400_000_000_000, 0), (c, v, ts),
         ind.vwap_ts(c, v, ts)),
        ("vwap_rolling", ind.vwap_rolling_init, ind.vwap_rolling_update, (30,), (c, v),
         ind.vwap_rolling(c, v, 30)),
    ]


@pytest.mark.parametrize("case", _streaming_cases(), ids=lambda c: c[0])
def test_streaming_equals_batch_bit_for_bit(case):
    name, init, update, params, cols, batch = case
    got = _stream(init, update, params, cols)
    if isinstance(batch, tuple):
        for g, b in zip(got, batch):
            assert same_bits(g, b), name
    else:
        assert same_bits(got, batch), name


def test_bbands_middle_is_the_sma_bit_for_bit():
    _, _, c, _ = _bars(500)
    assert same_bits(ind.bbands(c, 20)[1], ind.sma(c, 20))


@njit(cache=True)
def _interleaved(closes, highs, lows):
    """A stage's pattern: one state row per symbol, updates interleaved across symbols."""
    nsym, n = closes.shape
    s_sma = np.empty((nsym, ind.sma_state_len(10)))
    s_rsi = np.empty((nsym, ind.rsi_state_len(14)))
    s_macd = np.empty((nsym, ind.macd_state_len()))
    s_st = np.empty((nsym, ind.stoch_state_len(5, 3, 3)))
    for s in range(nsym):
        ind.sma_init(s_sma[s], 10)
        ind.rsi_init(s_rsi[s], 14)
        ind.macd_init(s_macd[s], 12, 26, 9)
        ind.stoch_init(s_st[s], 5, 3, 3)
    out = np.empty((5, nsym, n))
    for i in range(n):
        for s in range(nsym):
            out[0, s, i] = ind.sma_update(s_sma[s], closes[s, i])
            out[1, s, i] = ind.rsi_update(s_rsi[s], closes[s, i])
            out[2, s, i] = ind.macd_update(s_macd[s], closes[s, i])[1]
            out[3, s, i], out[4, s, i] = ind.stoch_update(s_st[s], highs[s, i], lows[s, i], closes[s, i])
    return out


def test_njit_multi_symbol_rows_match_batch():
    bars = [_bars(400, seed) for seed in (5, 6, 7)]
    highs = np.array([b[0] for b in bars])
    lows = np.array([b[1] for b in bars])
    closes = np.array([b[2] for b in bars])
    out = _interleaved(closes, highs, lows)
    for s in range(3):
        c, h, lo = closes[s], highs[s], lows[s]
        assert same_bits(out[0, s], ind.sma(c, 10))
        assert same_bits(out[1, s], ind.rsi(c, 14))
        assert same_bits(out[2, s], ind.macd(c)[1])
        k, d = ind.stoch(h, lo, c)
        assert same_bits(out[3, s], k) and same_bits(out[4, s], d)


def test_init_resets_a_used_state():
    _, _, c, _ = _bars(100)
    st = np.empty(ind.sma_state_len(5))
    ind.sma_init(st, 5)
    for x in c[:50]:
        ind.sma_update(st, x)
    ind.sma_init(st, 5)
    assert same_bits(np.array([ind.sma_update(st, x) for x in c]), ind.sma(c, 5))


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("call", [
    lambda: ind.sma_init(np.empty(10), 0),
    lambda: ind.ema_init(np.empty(10), 0),
    lambda: ind.wma_init(np.empty(10), 0),
    lambda: ind.rsi_init(np.empty(10), 1),
    lambda: ind.macd_init(np.empty(20), 26, 12, 9),
    lambda: ind.macd_init(np.empty(20), 12, 26, 0),
    lambda: ind.bbands_init(np.empty(20), 1),
    lambda: ind.atr_init(np.empty(10), 0),
    lambda: ind.stoch_init(np.empty(100), 0, 3, 3),
    lambda: ind.vwap_init(np.empty(10), 0),
    lambda: ind.vwap_rolling_init(np.empty(10), 0),
    lambda: ind.sma_init(np.empty(ind.sma_state_len(20) - 1), 20),
    lambda: ind.macd_init(np.empty(ind.macd_state_len() - 1)),
    lambda: ind.sma(np.ones(5), 0),
], ids=["sma", "ema", "wma", "rsi", "macd-swapped", "macd-signal", "bbands", "atr", "stoch",
        "vwap", "vwap_rolling", "short-state", "short-macd-state", "batch"])
def test_bad_parameters_raise_valueerror(call):
    with pytest.raises(ValueError):
        call()
