"""MdDecoder on hand-built frames: every message type, batching, symbols, duplicates, control."""
from __future__ import annotations

import numpy as np
import orjson
import pytest

from layouts.market import (BOOK_FIRST, BOOK_LAST, BOOK_NO_LEVEL, BOOK_SIDE, SIDE_ASK, SIDE_BID, TICK_BAR,
                            TICK_BOOK_DELTA, TICK_BOOK_SNAPSHOT, TICK_QUOTE, TICK_TRADE)
from procs.alpaca_md import BAR_DAILY, BAR_MINUTE, BAR_UPDATED, MdDecoder
from procs.tick_writer import TickWriter
from test_alpaca_md_support import SYMBOLS, T0, Rig, bar, book, frame, quote, trade


def test_quote_record_fields():
    r = Rig()
    assert r.feed(quote("MSFT", t=T0 + 335_689_322, bp=10.5, bs=3, ap=10.75, az=7)) == 1
    (q,) = r.drain()
    assert (q["seq"], q["recv_ns"], q["exch_ns"], q["sym"], q["kind"], q["flags"]) == \
        (0, r.recv, T0 + 335_689_322, 1, TICK_QUOTE, 0)
    assert (q["bid"], q["ask"], q["bid_size"], q["ask_size"], q["price"], q["size"]) == (10.5, 10.75, 3, 7, 0, 0)
    assert r.counts() == {"frames": 1, "quotes": 1}


def test_trade_record_fields():
    r = Rig()
    r.feed(trade("AAPL", i=96921, t=T0 + 208_000_000, p=126.55, s=42))
    (t,) = r.drain()
    assert (t["kind"], t["sym"], t["exch_ns"], t["price"], t["size"]) == (TICK_TRADE, 0, T0 + 208_000_000, 126.55, 42)
    assert (t["bid"], t["ask"], t["bid_size"], t["ask_size"], t["flags"]) == (0, 0, 0, 0, 0)


@pytest.mark.parametrize("kind, flag", [("b", BAR_MINUTE), ("u", BAR_UPDATED), ("d", BAR_DAILY)])
def test_bar_record_fields(kind, flag):
    r = Rig()
    r.feed(bar(kind, "MSFT", o=10.0, h=12.0, lo=9.5, c=11.0, v=12345, vw=10.9))
    (b,) = r.drain()
    assert (b["kind"], b["flags"], b["sym"]) == (TICK_BAR, flag, 1)
    # price = close, size = volume, bid = open, ask = high, bid_size = low, ask_size = vwap
    assert (b["price"], b["size"], b["bid"], b["ask"], b["bid_size"], b["ask_size"]) == \
        (11.0, 12345, 10.0, 12.0, 9.5, 10.9)
    assert r.counts() == {"frames": 1, "bars": 1}


def test_bar_without_vwap_has_zero_vwap():
    m = bar()
    del m["vw"]
    r = Rig()
    r.feed(m)
    assert r.drain()["ask_size"].tolist() == [0.0]


def test_batched_frame_is_one_commit_in_order_with_gap_free_seq():
    heads = []

    class SpyWriter(TickWriter):
        def commit(self, n=None):
            got = super().commit(n)
            heads.append(int(self.ring.statistics().published))
            return got

    r = Rig()
    r.writer = SpyWriter(r.ring)
    r.dec = MdDecoder(SYMBOLS, r.writer)
    msgs = [quote("AAPL", t=T0 + 1), trade("MSFT", i=5, t=T0 + 2), quote("MSFT", t=T0 + 3),
            trade("AAPL", i=7, t=T0 + 4), bar("b", "AAPL", t=T0)]
    assert r.feed(*msgs) == 5
    assert heads == [5]                         # the head cursor moved once for the frame
    assert r.feed(quote("AAPL", t=T0 + 10)) == 1
    got = r.drain()
    assert got["seq"].tolist() == list(range(6))
    assert got["kind"].tolist() == [TICK_QUOTE, TICK_TRADE, TICK_QUOTE, TICK_TRADE, TICK_BAR, TICK_QUOTE]
    assert got["exch_ns"].tolist() == [T0 + 1, T0 + 2, T0 + 3, T0 + 4, T0, T0 + 10]
    assert len(set(got["recv_ns"][:5].tolist())) == 1 and got["recv_ns"][5] > got["recv_ns"][0]


def test_crypto_quote_trade_with_float_sizes_and_slash_symbols():
    r = Rig()
    r.feed({"T": "q", "S": "BTC/USD", "bp": 64000.5, "bs": 0.25, "ap": 64001.0, "as": 1.5,
            "t": "2024-03-01T00:00:00.5Z"},
           {"T": "t", "S": "ETH/USD", "p": 3400.25, "s": 0.0042, "t": "2024-03-01T00:00:00.6Z", "i": 77, "tks": "B"})
    q, t = r.drain()
    assert (q["sym"], q["bid_size"], q["ask_size"]) == (2, 0.25, 1.5)
    assert (t["sym"], t["price"], t["size"]) == (3, 3400.25, 0.0042)


def test_orderbook_snapshot_run():
    r = Rig()
    r.feed(book(bids=[(100.0, 1.5), (99.5, 2.0)], asks=[(100.5, 0.5), (101.0, 3.0)], reset=True))
    got = r.drain()
    assert got["kind"].tolist() == [TICK_BOOK_SNAPSHOT] * 4 and set(got["sym"].tolist()) == {2}
    fl = got["flags"].tolist()
    assert [f & BOOK_SIDE for f in fl] == [SIDE_BID, SIDE_BID, SIDE_ASK, SIDE_ASK]
    assert fl[0] & BOOK_FIRST and not fl[0] & BOOK_LAST
    assert not any(f & (BOOK_FIRST | BOOK_LAST) for f in fl[1:3])
    assert fl[3] & BOOK_LAST and not fl[3] & BOOK_FIRST
    assert got["price"].tolist() == [100.0, 99.5, 100.5, 101.0] and got["size"].tolist() == [1.5, 2.0, 0.5, 3.0]
    assert r.counts() == {"frames": 1, "book": 4}


def test_orderbook_snapshot_edge_cases():
    r = Rig()
    r.feed(book(reset=True))                                         # empty book
    r.feed(book(t=T0 + 1, bids=[(100.0, 1.0)], reset=True))          # one level: FIRST | LAST
    r.feed(book(t=T0 + 2, bids=[(100.0, 0)], asks=[(101.0, 2.0), (102.0, 0)], reset=True))  # zero sizes are no level
    got = r.drain()
    assert got["flags"][0] == BOOK_FIRST | BOOK_LAST | BOOK_NO_LEVEL
    assert got["flags"][1] == SIDE_BID | BOOK_FIRST | BOOK_LAST and got["price"][1] == 100.0
    assert got["flags"][2] == SIDE_ASK | BOOK_FIRST | BOOK_LAST and got["price"][2] == 101.0
    assert len(got) == 3


def test_orderbook_deltas_one_record_per_entry_size_zero_removes():
    r = Rig()
    r.feed(book(bids=[(100.0, 0), (99.0, 4.0)], asks=[(101.0, 1.25)]))
    got = r.drain()
    assert got["kind"].tolist() == [TICK_BOOK_DELTA] * 3
    assert (got["flags"] & BOOK_SIDE).tolist() == [SIDE_BID, SIDE_BID, SIDE_ASK]
    assert got["size"].tolist() == [0.0, 4.0, 1.25] and got["exch_ns"].tolist() == [T0] * 3


def test_unknown_fields_ignored_unknown_types_counted_known_others_ignored():
    r = Rig()
    r.feed(quote(extra_field={"nested": [1, 2]}, r="2021-02-22T15:51:45.9Z"),
           {"T": "zz", "S": "AAPL"}, {"T": 5},
           {"T": "s", "S": "AAPL", "sc": "H", "sm": "Halt", "rc": "T1", "rm": "News", "t": "2021-02-22T15:51:45Z",
            "z": "C"},
           {"T": "c", "S": "AAPL"}, {"T": "x", "S": "AAPL"}, {"T": "l", "S": "AAPL"}, {"T": "i", "S": "AAPL"})
    assert len(r.drain()) == 1
    assert r.counts() == {"frames": 1, "quotes": 1, "unknown_type": 2, "ignored": 5}


def test_unknown_symbol_counted_and_dropped():
    r = Rig()
    r.feed(quote("TSLA"), trade("TSLA"), bar("b", "TSLA"), book("SOL/USD", bids=[(1.0, 1.0)]), quote("AAPL"))
    got = r.drain()
    assert got["sym"].tolist() == [0] and got["seq"].tolist() == [0]
    assert r.counts() == {"frames": 1, "quotes": 1, "unknown_symbol": 4}


def test_control_messages_are_collected_not_written():
    r = Rig()
    r.feed(raw=b'[{"T":"success","msg":"connected"}]')
    r.feed(raw=b'[{"T":"error","code":402,"msg":"auth failed"}]')
    r.feed(raw=b'[{"T":"subscription","trades":["AAPL"],"quotes":[],"bars":[]}]')
    assert [m["T"] for m in r.dec.control] == ["success", "error", "subscription"]
    assert len(r.drain()) == 0 and r.counts() == {"frames": 3}


# -- duplicates ------------------------------------------------------------------------------------

def test_trade_duplicates_by_id_high_water_per_symbol():
    r = Rig()
    r.feed(trade("AAPL", i=10, t=T0 + 10), trade("AAPL", i=11, t=T0 + 11), trade("MSFT", i=3, t=T0 + 1))
    # a replay after a reconnect: AAPL 10 and 11 again, then new ones; MSFT ids are its own
    r.feed(trade("AAPL", i=10, t=T0 + 10), trade("AAPL", i=11, t=T0 + 11), trade("AAPL", i=12, t=T0 + 12),
           trade("MSFT", i=4, t=T0 + 2), trade("MSFT", i=2, t=T0 + 50))
    got = r.drain()
    assert [(int(s), int(e) - T0) for s, e in zip(got["sym"], got["exch_ns"])] == \
        [(0, 10), (0, 11), (1, 1), (0, 12), (1, 2)]
    assert r.counts()["duplicates"] == 3 and r.counts()["trades"] == 5


def test_quote_duplicates_older_or_equal_identical_content():
    r = Rig()
    r.feed(quote(t=T0 + 5, bp=1.0), quote("MSFT", t=T0 + 5))
    r.feed(quote(t=T0 + 4, bp=2.0),                    # older: duplicate
           quote(t=T0 + 5, bp=1.0),                    # same t, same content: duplicate
           quote(t=T0 + 5, bp=1.5),                    # same t, new content: accepted
           quote(t=T0 + 5, bp=1.5, c=["X"], z="A"),    # same t, same record content: duplicate
           quote("MSFT", t=T0 + 6),                    # other symbol: its own mark
           quote(t=T0 + 7, bp=1.0))                    # newer: accepted
    got = r.drain()
    assert got["bid"].tolist() == [1.0, 126.55, 1.5, 126.55, 1.0]
    assert r.counts()["duplicates"] == 3


def test_bar_duplicates_per_kind():
    r = Rig()
    r.feed(bar("b", t=T0, c=2.0), bar("u", t=T0, c=2.0), bar("d", t=T0, c=2.0))   # three kinds: all new
    r.feed(bar("b", t=T0, c=2.0),              # replayed minute bar: duplicate
           bar("u", t=T0, c=2.5),              # corrected bar, same t, new content: accepted
           bar("b", t=T0 - 60 * 10**9),        # older minute bar: duplicate
           bar("d", t=T0 + 86_400 * 10**9))     # next day
    got = r.drain()
    assert got["flags"].tolist() == [BAR_MINUTE, BAR_UPDATED, BAR_DAILY, BAR_UPDATED, BAR_DAILY]
    assert got["price"].tolist() == [2.0, 2.0, 2.0, 2.5, 2.0]
    assert r.counts()["duplicates"] == 2


def test_book_duplicates():
    r = Rig()
    snap = book(t=T0 + 5, bids=[(100.0, 1.0)], asks=[(101.0, 1.0)], reset=True)
    r.feed(snap)
    r.feed(snap, book(t=T0 + 4, bids=[(99.0, 1.0)]), book(t=T0 + 5, bids=[(99.0, 1.0)]))
    got = r.drain()
    assert got["kind"].tolist() == [TICK_BOOK_SNAPSHOT, TICK_BOOK_SNAPSHOT, TICK_BOOK_DELTA]
    assert r.counts()["duplicates"] == 2


def test_state_survives_batches_and_unknown_symbols_do_not_touch_it():
    r = Rig(symbols=("AAPL",))
    r.feed(trade("AAPL", i=5), trade("MSFT", i=100))
    r.feed(trade("AAPL", i=6))
    assert r.drain()["seq"].tolist() == [0, 1]


def test_duplicate_symbols_in_table_refused():
    with pytest.raises(ValueError, match="duplicates"):
        MdDecoder(("AAPL", "AAPL"), Rig().writer)


def test_payload_types_bytes_str_memoryview():
    r = Rig()
    f = frame(quote(t=T0 + 1))
    r.dec.decode(f, 1)
    r.dec.decode(frame(quote(t=T0 + 2)).decode(), 2)
    r.dec.decode(memoryview(bytearray(frame(quote(t=T0 + 3)))), 3)
    assert r.drain()["exch_ns"].tolist() == [T0 + 1, T0 + 2, T0 + 3]


def test_records_match_a_reference_decoding_of_a_long_mixed_stream():
    """500 frames of random batches against a straightforward reference of the same rules."""
    rng = np.random.default_rng(7)
    r = Rig(capacity=4096)
    syms = ("AAPL", "MSFT")
    expect = []
    tid = {s: 0 for s in syms}
    t = T0
    for _ in range(500):
        msgs = []
        for _ in range(int(rng.integers(1, 6))):
            s = syms[int(rng.integers(0, 2))]
            t += int(rng.integers(1, 10**6))
            if rng.random() < 0.5:
                bp = round(100 + rng.normal(), 2)
                msgs.append(quote(s, t=t, bp=bp, ap=bp + 0.01, bs=int(rng.integers(1, 9)), az=int(rng.integers(1, 9))))
                expect.append((TICK_QUOTE, syms.index(s), t, 0.0, bp))
            else:
                tid[s] += 1
                p = round(100 + rng.normal(), 2)
                msgs.append(trade(s, i=tid[s], t=t, p=p, s=int(rng.integers(1, 500))))
                expect.append((TICK_TRADE, syms.index(s), t, p, 0.0))
        r.feed(*msgs)
    got = r.drain()
    assert np.array_equal(got["seq"], np.arange(len(expect)))
    assert [(int(k), int(s), int(e), float(p), float(b)) for k, s, e, p, b in
            zip(got["kind"], got["sym"], got["exch_ns"], got["price"], got["bid"])] == expect


def test_decoder_output_is_exact_json_numbers():
    """Prices are the JSON doubles as written (no float formatting round trip)."""
    r = Rig()
    r.feed(raw=b'[{"T":"q","S":"AAPL","bp":0.1,"bs":1e3,"ap":123456789.123456789,"as":3,'
               b'"t":"2021-02-22T15:51:45.000000001Z"}]')
    q = r.drain()[0]
    assert q["bid"] == 0.1 and q["bid_size"] == 1000.0 and q["ask"] == orjson.loads(b"123456789.123456789")


def test_a_stale_and_broken_message_counts_as_malformed():
    r = Rig()
    r.feed(quote(t=T0 + 5), trade(i=9, t=T0 + 5), bar("b", t=T0 + 5))
    r.feed(quote(t=T0, bp="abc"), trade(i=3, p=None), {**trade(i=4), "t": "yesterday"}, bar("b", t=T0, c=[1]))
    assert r.counts()["malformed"] == 4 and "duplicates" not in r.counts()
    r.feed(quote(t=T0), trade(i=3), bar("b", t=T0))
    assert r.counts()["duplicates"] == 3
