"""Bars built by the book stage (``procs.bars``): each bar type against hand-computed OHLCV, VWAP
and trade count; the bar clock; bars per symbol; rejected trades make no bars; spec parsing."""
from __future__ import annotations

import math

import numpy as np
import pytest

from layouts.market import TICK, TICK_BAR, TICK_QUOTE, TICK_TRADE
from layouts.orders import BAR_TICK, BAR_TIME, BAR_VOLUME
from procs.bars import parse_bar_specs

S = 1_000_000_000


def _run(engine, drain_ring, rows, bars):
    """rows: (sym, price, size, exch_ns) trades (or dicts); recv_ns = 1000 + index."""
    t = np.zeros(len(rows), TICK)
    for i, r in enumerate(rows):
        t[i]["seq"], t[i]["recv_ns"] = i, 1000 + i
        if isinstance(r, dict):
            for k, v in r.items():
                t[i][k] = v
        else:
            t[i]["sym"], t[i]["price"], t[i]["size"], t[i]["exch_ns"] = r
            t[i]["kind"] = TICK_TRADE
    mem = engine({"stages.book.params.bars": bars, "rings.md.capacity": 1024, "rings.top.capacity": 1024})
    book = mem.build_stage("book")
    mem.rings["md"].put(t)
    ev = []
    while book.do_work(0):
        ev.append(drain_ring(mem.rings["top"]))
    ev = np.concatenate(ev)
    return book, ev, ev[ev["kind"] == TICK_BAR]


def _bar(e):
    return (e["bar_open"], e["bar_high"], e["bar_low"], e["bar_close"], e["bar_volume"], e["bar_vwap"],
            int(e["bar_count"]), int(e["bar_start_ns"]), int(e["bar_end_ns"]))


def test_time_bars_on_the_venue_clock(engine, drain_ring):
    rows = [(0, 100.0, 1.0, 10 * S + S // 5),     # [10 s, 11 s)
            (0, 102.0, 3.0, 10 * S + S // 2),
            (0, 99.0, 2.0, 10 * S + 9 * S // 10),
            (0, 101.0, 1.0, 11 * S + S // 10),     # closes [10, 11); opens [11, 12)
            (0, 103.0, 4.0, 13 * S),               # closes [11, 12); [12, 13) had no trade: no bar
            (0, 104.0, 1.0, 13 * S + 1)]
    book, ev, bars = _run(engine, drain_ring, rows, ["1s"])
    assert [_bar(b) for b in bars] == [
        (100.0, 102.0, 99.0, 99.0, 6.0, (100.0 + 306.0 + 198.0) / 6.0, 3, 10 * S, 11 * S),
        (101.0, 101.0, 101.0, 101.0, 1.0, 101.0, 1, 11 * S, 12 * S)]
    assert bars["tick_seq"].tolist() == [3, 4] and bars["feed_ns"].tolist() == [1003, 1004]
    assert bars["bar_type"].tolist() == [BAR_TIME] * 2 and bars["bar_spec"].tolist() == [0, 0]
    # each bar follows the event of the trade that completed it
    assert ev["kind"].tolist() == [TICK_TRADE] * 4 + [TICK_BAR, TICK_TRADE, TICK_BAR, TICK_TRADE]
    assert book.counter_values()["bars_out"] == 2


def test_time_bars_fall_back_to_the_receive_stamp(engine, drain_ring):
    # exch_ns = 0: the bar clock is recv_ns = 1000 + index; 2 us bars: [0, 2000) then [2000, 4000)
    rows = [(0, 10.0, 1.0, 0)] * 999 + [(0, 11.0, 1.0, 0), (0, 12.0, 2.0, 0)]
    book, ev, bars = _run(engine, drain_ring, rows, ["2us"])
    assert [_bar(b) for b in bars] == [(10.0, 11.0, 10.0, 11.0, 1000.0, (9990.0 + 11.0) / 1000.0, 1000, 0, 2000)]
    assert bars["tick_seq"].tolist() == [1000]


def test_tick_bars(engine, drain_ring):
    rows = [(0, 100.0, 1.0, 5), (0, 101.0, 2.0, 6), (0, 99.0, 1.0, 7), (0, 98.0, 5.0, 8), (0, 97.0, 1.0, 9)]
    _, _, bars = _run(engine, drain_ring, rows, ["2t"])
    assert [_bar(b) for b in bars] == [(100.0, 101.0, 100.0, 101.0, 3.0, 302.0 / 3.0, 2, 5, 6),
                                       (99.0, 99.0, 98.0, 98.0, 6.0, 589.0 / 6.0, 2, 7, 8)]
    assert bars["bar_type"].tolist() == [BAR_TICK] * 2 and bars["tick_seq"].tolist() == [1, 3]


def test_volume_bars_do_not_split_trades(engine, drain_ring):
    rows = [(0, 100.0, 2.0, 0), (0, 101.0, 2.0, 0), (0, 102.0, 3.0, 0),   # 4 < 5, then 7 >= 5
            (0, 99.0, 5.0, 0),                                          # exactly 5: a bar of one
            (0, 98.0, 0.5, 0)]
    _, _, bars = _run(engine, drain_ring, rows, ["5v"])
    assert [_bar(b) for b in bars] == [(100.0, 102.0, 100.0, 102.0, 7.0, 708.0 / 7.0, 3, 1000, 1002),
                                       (99.0, 99.0, 99.0, 99.0, 5.0, 99.0, 1, 1003, 1003)]
    assert bars["bar_type"].tolist() == [BAR_VOLUME] * 2


def test_fractional_volume_bars_and_several_specs_in_spec_order(engine, drain_ring):
    rows = [(0, 10.0, 0.25, 0), (0, 11.0, 0.25, 0), (0, 12.0, 0.125, 0)]
    _, ev, bars = _run(engine, drain_ring, rows, ["0.5v", "1t", "3t"])
    assert [(int(b["tick_seq"]), int(b["bar_spec"])) for b in bars] == [(0, 1), (1, 0), (1, 1), (2, 1), (2, 2)]
    b = bars[4]
    assert _bar(b)[:7] == (10.0, 12.0, 10.0, 12.0, 0.625, (2.5 + 2.75 + 1.5) / 0.625, 3)


def test_bars_are_per_symbol_and_carry_the_top(engine, drain_ring):
    rows = [{"kind": TICK_QUOTE, "sym": 1, "bid": 49.0, "ask": 51.0, "bid_size": 1.0, "ask_size": 3.0},
            (0, 100.0, 1.0, 0), (1, 50.0, 1.0, 0), (0, 101.0, 1.0, 0), (1, 50.5, 3.0, 0)]
    _, _, bars = _run(engine, drain_ring, rows, ["2t"])
    assert bars["sym"].tolist() == [0, 1]
    assert _bar(bars[0])[:7] == (100.0, 101.0, 100.0, 101.0, 2.0, 100.5, 2)
    assert _bar(bars[1])[:7] == (50.0, 50.5, 50.0, 50.5, 4.0, (50.0 + 151.5) / 4.0, 2)
    assert (bars[0]["valid"], bars[1]["valid"]) == (0, 1)
    assert (bars[1]["bid"], bars[1]["ask"], bars[1]["microprice"]) == (49.0, 51.0, (49.0 * 3 + 51.0) / 4)


def test_rejected_trades_make_no_bars(engine, drain_ring):
    rows = [(0, 100.0, 1.0, 0), (0, math.nan, 1.0, 0), (0, 100.0, -1.0, 0), (0, 100.0, 0.0, 0),
            (9, 100.0, 1.0, 0), {"kind": TICK_TRADE, "sym": 0, "price": 1.0, "size": 1.0, "recv_ns": 1},
            (0, 102.0, 1.0, 0)]
    book, _, bars = _run(engine, drain_ring, rows, ["2t"])
    assert [_bar(b)[:7] for b in bars] == [(100.0, 102.0, 100.0, 102.0, 2.0, 101.0, 2)]
    assert book.counter("trades") == 2


def test_no_bars_by_default(engine, drain_ring):
    _, ev, bars = _run(engine, drain_ring, [(0, 100.0, 1.0, 0)] * 10, [])
    assert len(bars) == 0 and len(ev) == 10
    for f in ("bar_open", "bar_volume", "bar_vwap", "bar_count", "bar_type", "bar_start_ns", "bar_end_ns"):
        assert not np.any(ev[f]), f


def test_parse_bar_specs():
    types, ints, vols = parse_bar_specs(["1s", "250ms", "1m", "1h", "5us", "100t", "5000v", "0.5v"])
    assert types.tolist() == [BAR_TIME] * 5 + [BAR_TICK, BAR_VOLUME, BAR_VOLUME]
    assert ints.tolist()[:6] == [S, S // 4, 60 * S, 3600 * S, 5000, 100]
    assert vols.tolist()[6:] == [5000.0, 0.5]
    assert parse_bar_specs(())[0].shape == (0,)
    for bad in (["1d"], ["t"], ["1.5s"], ["0v"], ["60s", "1m"], "1s", [1], ["1s"] * 17):
        with pytest.raises(ValueError, match="bars"):
            parse_bar_specs(bad)
