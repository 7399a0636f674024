"""The loaders (``pyrt_shm.research.data``) and the bundled price series.

The bundled series ``pyrt_shm/research/data/DEMO_1min.csv`` is made by ``demo_bars_csv``
below (seeded, the project's own xoshiro PRNG, so it does not depend on numpy's stream
versions); ``test_bundled_series_is_the_seeded_script`` regenerates it and compares.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

from layouts.market import TICK, TICK_BAR, TICK_QUOTE, TICK_TRADE
from pyrt_shm.research.data import DataError, load_ticks, parse_rfc3339, unix_unit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(ROOT, "pyrt_shm", "research", "data", "DEMO_1min.csv")
DAYS = ("2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08")


def demo_bars_csv(seed: int = 20240102) -> str:
    """Five regular sessions (14:30-21:00 UTC) of one-minute bars of a made-up symbol, in
    Alpaca's REST layout ``t,o,h,l,c,v,n,vw``: 1,950 bars.

    Each minute is 20 steps of a log random walk whose drift switches regime with
    probability 1/100 a minute (so moving averages cross now and then); OHLC are the
    path's open, max, min and last, rounded to cents; volume ~ lognormal around 3,000
    shares (whole lots of 100 plus an odd lot); VWAP the size-weighted mean of the path.
    """
    from procs.prng import new_state, normal, uniform

    rng = new_state(seed)
    price, drift = 100.0, 0.0
    lines = ["t,o,h,l,c,v,n,vw"]
    for day in DAYS:
        t0 = parse_rfc3339(f"{day}T14:30:00Z") // 1_000_000_000
        for m in range(390):
            if uniform(rng) < 0.01:
                drift = 0.0004 * normal(rng)
            path = []
            p = price
            for _ in range(20):
                p *= math.exp(drift / 20 + 0.0006 * normal(rng) / math.sqrt(20))
                path.append(p)
            o, c = round(price, 2), round(path[-1], 2)
            h, lo = round(max(price, *path), 2), round(min(price, *path), 2)
            sizes = [1.0 + 9.0 * uniform(rng) for _ in path]
            vw = sum(x * s for x, s in zip(path, sizes)) / sum(sizes)
            v = int(100 * round(math.exp(math.log(30.0) + 0.5 * normal(rng)))) + int(100 * uniform(rng))
            n = 5 + int(v / 150)
            ts = t0 + 60 * m
            hh, mm = divmod(ts % 86400 // 60, 60)
            lines.append(f"{day}T{hh:02d}:{mm:02d}:00Z,{o:.2f},{h:.2f},{lo:.2f},{c:.2f},{max(v, 1)},{n},{vw:.4f}")
            price = c
    return "\n".join(lines) + "\n"


def test_bundled_series_is_the_seeded_script():
    with open(DEMO) as f:
        assert f.read() == demo_bars_csv()


T0 = 1_704_205_800_000_000_000          # 2024-01-02T14:30:00Z
S = 1_000_000_000


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


# -- timestamps ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, ns", [
    ("2024-01-02T14:30:00Z", T0),
    ("2024-01-02T14:30:00.5Z", T0 + S // 2),
    ("2024-01-02T14:30:00.123456789Z", T0 + 123_456_789),
    ("2024-01-02T14:30:00.000001z", T0 + 1_000),
    ("2024-01-02 09:30:00-05:00", T0),                  # pandas' to_csv of a tz-aware index
    ("2024-01-02T16:00:00+0130", T0),
    ("2024-01-02T14:30:00", T0),                        # no zone: UTC
    ("2024-01-02", T0 - (14 * 3600 + 1800) * S),        # a date: its UTC midnight
    ("1970-01-01T00:00:00Z", 0),
    ("2000-02-29T00:00:00Z", 951_782_400 * S),
])
def test_rfc3339(text, ns):
    assert parse_rfc3339(text) == ns


@pytest.mark.parametrize("text", ["2023-02-29", "2024-13-01T00:00:00Z", "2024-01-02T24:00:00Z",
                                  "2024-01-02T14:30:00.1234567891Z", "2024-01-02T14:30:00+25:00", "yesterday", ""])
def test_not_rfc3339(text):
    assert parse_rfc3339(text) is None


def test_integer_times_take_their_unit_from_the_first_row(tmp_path):
    for unit, mult in (("s", S), ("ms", 10**6), ("us", 10**3), ("ns", 1)):
        p = write(tmp_path, f"X_{unit}.csv", f"t,p,s\n{T0 // mult},10,1\n{T0 // mult + 1},11,1\n")
        t = load_ticks(p).ticks["exch_ns"]
        assert t.tolist() == [T0, T0 + mult], unit
    assert unix_unit(1_700_000_000) == S and unix_unit(1_700_000_000_000_000_000) == 1
    p = write(tmp_path, "X_dec.csv", "t,p,s\n1704205800.25,10,1\n")
    assert load_ticks(p).ticks["exch_ns"].tolist() == [T0 + S // 4]


# -- CSV layouts ---------------------------------------------------------------------------------

def test_alpaca_rest_bars_symbol_from_the_file_name(tmp_path):
    p = write(tmp_path, "AAPL_1min.csv", "t,o,h,l,c,v,n,vw\n"
              "2024-01-02T14:30:00Z,187.15,188.44,186.9,188.2,1203921,13140,187.77\n"
              "2024-01-02T14:31:00Z,188.2,188.3,187.5,187.6,402117,5123,187.9\n")
    m = load_ticks(p)
    assert m.symbols == ("AAPL",) and m.is_bars and m.counts() == {"bars": 2}
    t = m.ticks[0]
    assert (t["kind"], t["price"], t["size"], t["bid"], t["ask"], t["bid_size"], t["ask_size"]) == \
        (TICK_BAR, 188.2, 1203921.0, 187.15, 188.44, 186.9, 187.77)     # close, volume, open, high, low, vwap
    assert m.ticks["exch_ns"].tolist() == m.ticks["recv_ns"].tolist() == [T0, T0 + 60 * S]
    assert m.ticks["seq"].tolist() == [0, 1]
    assert load_ticks(p, symbols=["XYZ"]).symbols == ("XYZ",)          # the caller names it


def test_alpaca_py_dataframe_bars_with_a_symbol_column(tmp_path):
    p = write(tmp_path, "bars.csv", "symbol,timestamp,open,high,low,close,volume,trade_count,vwap\n"
              "SPY,2024-01-02 14:30:00+00:00,472.16,472.8,471.9,472.5,100,10,472.3\n"
              "AAPL,2024-01-02 14:30:00+00:00,187.15,188.44,186.9,188.2,200,20,187.77\n"
              "SPY,2024-01-02 14:31:00+00:00,472.5,473.0,472.4,472.9,300,30,472.7\n")
    m = load_ticks(p)
    assert m.symbols == ("SPY", "AAPL") and m.ticks["sym"].tolist() == [0, 1, 0]
    assert m.ticks["price"].tolist() == [472.5, 188.2, 472.9]
    only = load_ticks(p, symbols=("AAPL", "SPY"))
    assert only.symbols == ("AAPL", "SPY") and only.ticks["sym"].tolist() == [1, 0, 1]
    assert load_ticks(p, symbols=["SPY"]).ticks["price"].tolist() == [472.5, 472.9]


def test_bars_without_vwap(tmp_path):
    p = write(tmp_path, "X.csv", "Date,Open,High,Low,Close,Volume\n2024-01-02,10,12,9,11,500\n")
    t = load_ticks(p).ticks[0]
    assert t["kind"] == TICK_BAR and t["price"] == 11.0 and t["ask_size"] == 0.0   # vwap unknown: 0


def test_alpaca_trades_both_layouts(tmp_path):
    rest = write(tmp_path, "t1.csv", 't,x,p,s,c,i,z,S\n'
                 '2024-01-02T14:30:00.000000001Z,V,187.15,100,"[\'@\', \'I\']",52983525029461,C,AAPL\n'
                 '2024-01-02T14:30:00.000000002Z,V,187.16,5,"@,I",52983525029462,C,AAPL\n')
    py = write(tmp_path, "t2.csv", "symbol,timestamp,exchange,price,size,id,conditions,tape\n"
               "AAPL,2024-01-02 14:30:00.000000001+00:00,V,187.15,100,52983525029461,\"['@', 'I']\",C\n"
               "AAPL,2024-01-02 14:30:00.000000002+00:00,V,187.16,5,52983525029462,\"['@']\",C\n")
    a, b = load_ticks(rest), load_ticks(py)
    for m in (a, b):
        assert m.symbols == ("AAPL",) and m.counts() == {"trades": 2}
        assert m.ticks["price"].tolist() == [187.15, 187.16] and m.ticks["size"].tolist() == [100.0, 5.0]
        assert m.ticks["exch_ns"].tolist() == [T0 + 1, T0 + 2] and (m.ticks["kind"] == TICK_TRADE).all()


def test_alpaca_quotes_both_layouts(tmp_path):
    rest = write(tmp_path, "AAPL.csv", "t,ax,ap,as,bx,bp,bs,c,z\n2024-01-02T14:30:00Z,V,187.2,3,V,187.1,4,R,C\n")
    py = write(tmp_path, "q.csv", "symbol,timestamp,ask_exchange,ask_price,ask_size,bid_exchange,bid_price,"
               "bid_size,conditions,tape\nAAPL,2024-01-02 14:30:00+00:00,V,187.2,3,V,187.1,4,['R'],C\n")
    for m in (load_ticks(rest), load_ticks(py)):
        t = m.ticks[0]
        assert m.symbols == ("AAPL",) and t["kind"] == TICK_QUOTE
        assert (t["bid"], t["bid_size"], t["ask"], t["ask_size"]) == (187.1, 4.0, 187.2, 3.0)
    empty_side = write(tmp_path, "Q.csv", "t,bp,bs,ap,as\n2024-01-02T14:30:00Z,0,0,187.2,3\n")
    assert load_ticks(empty_side).ticks["bid"].tolist() == [0.0]         # a quote side may be empty


def test_files_merge_in_time_order_stably(tmp_path):
    q = write(tmp_path, "AAPL_q.csv", "t,bp,bs,ap,as\n2024-01-02T14:30:00Z,1,1,2,1\n2024-01-02T14:30:02Z,1,1,2,1\n")
    t = write(tmp_path, "AAPL_t.csv", "t,p,s\n2024-01-02T14:30:00Z,1.5,1\n2024-01-02T14:30:01Z,1.5,1\n")
    m = load_ticks([q, t])
    assert m.symbols == ("AAPL",) and m.source == f"{q}, {t}"
    assert m.ticks["kind"].tolist() == [TICK_QUOTE, TICK_TRADE, TICK_TRADE, TICK_QUOTE]   # tie: file order
    assert m.ticks["seq"].tolist() == [0, 1, 2, 3]


def test_kind_can_be_forced(tmp_path):
    p = write(tmp_path, "X.csv", "t,price,size,bid,ask\n2024-01-02T14:30:00Z,10,1,9,11\n")
    assert load_ticks(p).ticks["kind"][0] == TICK_QUOTE                  # bid and ask: quotes
    assert load_ticks(p, kind="trades").ticks["kind"][0] == TICK_TRADE


def test_unsorted_rows_are_sorted_stably_or_rejected(tmp_path):
    p = write(tmp_path, "X.csv", "t,p,s\n"
              "2024-01-02T14:30:02Z,1,1\n2024-01-02T14:30:01Z,2,1\n2024-01-02T14:30:01Z,3,1\n"
              "2024-01-02T14:30:03Z,4,1\n")
    assert load_ticks(p).ticks["price"].tolist() == [2.0, 3.0, 1.0, 4.0]
    with pytest.raises(DataError, match=rf"^{p}:3: out of order: its time is earlier than line 2's"):
        load_ticks(p, sort="reject")


# -- NumPy ---------------------------------------------------------------------------------------

def _ticks(n, sym=0):
    t = np.zeros(n, TICK)
    t["exch_ns"] = T0 + np.arange(n)
    t["recv_ns"] = 5 + np.arange(n)
    t["kind"] = TICK_TRADE
    t["price"] = 10.0
    t["size"] = 1.0
    t["sym"] = sym
    return t


def test_npy_of_tick_records_is_memory_mapped(tmp_path):
    p = str(tmp_path / "SPY.npy")
    np.save(p, _ticks(5))
    m = load_ticks(p)
    assert isinstance(m.ticks, np.memmap) and m.symbols == ("SPY",)
    assert m.ticks["exch_ns"].tolist() == (T0 + np.arange(5)).tolist()
    t = _ticks(3)
    t["exch_ns"][1] = 0                        # no venue time: the receive stamp is the time
    np.save(p, t)
    m = load_ticks(p)
    assert not isinstance(m.ticks, np.memmap) and m.ticks["exch_ns"].tolist() == [6, T0, T0 + 2]


def test_tick_journal_with_its_sidecar_and_a_part_file(tmp_path):
    import json

    t = np.concatenate([_ticks(2, sym=1), _ticks(1, sym=0), np.zeros(3, TICK)])     # zero-filled tail
    t["exch_ns"][:3] = 0                       # a synthetic feed's journal: no venue time
    np.save(str(tmp_path / "ticks.npy"), t[:3])
    (tmp_path / "ticks.json").write_text(json.dumps({"format": "pyrt-journal/1", "kind": "tick",
                                                     "symbols": ["SYM0", "SYM1"]}))
    m = load_ticks(str(tmp_path / "ticks.npy"))
    # recv_ns 5, 6 (SYM1) and 5 (SYM0) become the data times, sorted stably
    assert m.symbols == ("SYM0", "SYM1") and m.ticks["sym"].tolist() == [1, 0, 1]
    assert m.ticks["exch_ns"].tolist() == [5, 5, 6]
    with open(tmp_path / "ticks.npy.part", "wb") as f:
        np.save(f, t)
    part = load_ticks(str(tmp_path / "ticks.npy.part"))
    assert len(part) == 3 and part.symbols == ("SYM0", "SYM1")


def test_npz_of_tick_records_with_names(tmp_path):
    p = str(tmp_path / "d.npz")
    t = np.concatenate([_ticks(2, sym=1), _ticks(1, sym=0)])
    np.savez(p, ticks=t, symbols=np.array(["A", "B"]))
    m = load_ticks(p)
    assert m.symbols == ("A", "B") and m.ticks["sym"].tolist() == [1, 0, 1]      # the file's ids, sorted by time
    assert m.ticks["exch_ns"].tolist() == [T0, T0, T0 + 1]
    with pytest.raises(DataError, match="symbol ids and no names"):
        np.save(str(tmp_path / "two.npy"), t)
        load_ticks(str(tmp_path / "two.npy"))


def test_save_and_reload(tmp_path):
    from pyrt_shm.research.data import save_ticks

    m = load_ticks(DEMO)
    back = load_ticks(save_ticks(tmp_path / "demo.npz", m))
    assert back.symbols == m.symbols and back.ticks.tobytes() == m.ticks.tobytes()


def test_npz_columns(tmp_path):
    p = str(tmp_path / "QQQ.npz")
    np.savez(p, timestamp=np.array(["2024-01-02T14:30:00", "2024-01-02T14:30:01"], dtype="datetime64[ns]"),
             open=np.array([1.0, 2.0]), high=np.array([3.0, 3.0]), low=np.array([0.5, 1.0]),
             close=np.array([2.0, 2.5]), volume=np.array([10, 20]))
    m = load_ticks(p)
    assert m.symbols == ("QQQ",) and m.is_bars and m.ticks["exch_ns"].tolist() == [T0, T0 + S]
    assert m.ticks["price"].tolist() == [2.0, 2.5] and m.ticks["size"].tolist() == [10.0, 20.0]


# -- errors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, message", [
    ("t,p,s\n" + "2024-01-02T14:30:00Z,1,1\n" * 15 + "2024-01-02T14:30:00Z,abc,1\n",
     "{p}:17: column 'p': not a number: 'abc'"),
    ("t,p,s\n2024-01-02T14:30:00Z,1,nan\n", "{p}:2: column 's': not a finite number: 'nan'"),
    ("t,p,s\n2024-01-02T14:30:00Z,-1,1\n", "{p}:2: column 'p': a price must be > 0, got '-1'"),
    ("t,p,s\n2024-01-02T14:30:00Z,1,-5\n", "{p}:2: column 's': must be >= 0, got '-5'"),
    ("t,p,s\nnoon,1,1\n", "{p}:2: column 't': not a timestamp (RFC 3339"),
    ("t,p,s\n2024-01-02T14:30:00Z,,1\n", "{p}:2: column 'p': empty"),
    ("t,p,s\n2024-01-02T14:30:00Z,1\n", "{p}:2: 2 columns, the header has 3"),
    ("t,x,s\n2024-01-02T14:30:00Z,1,1\n", "{p}:1: cannot tell bars, trades or quotes from the columns"),
    ("time,o,h,l,c\n2024-01-02,1,2,0.5,3\n", "{p}:2: bar out of range: low 0.5 <= open 1.0, close 3.0 <= high 2.0"),
    ("p,s\n1,1\n", "{p}:1: missing the time column"),
    ("", "{p}: empty file"),
    ("t,p,s\n", "{p}: no data rows"),
])
def test_malformed_csv_names_file_line_and_column(tmp_path, body, message):
    p = write(tmp_path, "data.csv", body)
    with pytest.raises(DataError) as e:
        load_ticks(p)
    assert str(e.value).startswith(message.format(p=p))


def test_other_errors(tmp_path):
    p = write(tmp_path, "X.csv", "t,o,h,l\n2024-01-02,1,2,0.5\n")
    with pytest.raises(DataError, match=r"X.csv:1: bars: missing column 'c' \(close"):
        load_ticks(p, kind="bars")
    with pytest.raises(DataError, match="no such file"):
        load_ticks(str(tmp_path / "missing.csv"))
    with pytest.raises(DataError, match=r"no rows for the symbols \['ZZZ'\]"):
        load_ticks(write(tmp_path, "Y.csv", "S,t,p,s\nA,2024-01-02,1,1\n"), symbols=["A", "ZZZ"])
    with pytest.raises(DataError, match="no symbol column.*2 were asked for"):
        load_ticks(write(tmp_path, "Z.csv", "t,p,s\n2024-01-02,1,1\n"), symbols=["A", "B"])
    bad = _ticks(2)
    bad["kind"][1] = 9
    np.save(str(tmp_path / "k.npy"), bad)
    with pytest.raises(DataError, match=r"k.npy: record 1: column 'kind': unknown tick kind 9"):
        load_ticks(str(tmp_path / "k.npy"))
    with pytest.raises(DataError, match="sort .* must be 'sort' or 'reject'"):
        load_ticks(p, sort="maybe")


if __name__ == "__main__":                   # regenerate the bundled file
    with open(DEMO, "w") as f:
        f.write(demo_bars_csv())
