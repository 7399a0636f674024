"""TickWriter: struct layout from the dtype, full-ring policies, max_ticks, the portable path.

The test is the ring's consumer (``ring.poll``); "full" is made by not consuming.
"""
from __future__ import annotations

import struct

import numpy as np
import pytest

from layouts.market import TICK, TICK_BOOK_SNAPSHOT, TICK_QUOTE
from layouts.ring import FULL_DROP
from procs.tick_writer import RECORD_SIZE, TICK_STRUCT, TickWriter, record_struct
from ringbuf.ring import SpscRing, ring_bytes
from test_alpaca_md_support import T0, Rig, book, quote, trade


def test_struct_matches_the_tick_dtype_field_by_field():
    assert TICK_STRUCT.size == TICK.itemsize == RECORD_SIZE
    buf = bytearray(RECORD_SIZE)
    vals = (7, -5, 1 << 62, 4_000_000_000, 65535, 3, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5)
    TICK_STRUCT.pack_into(buf, 0, *vals)
    rec = np.frombuffer(bytes(buf), TICK)[0]
    assert tuple(rec[n].item() for n in TICK.names) == vals


def test_record_struct_pads_gaps_and_refuses_unknown_types():
    dt = np.dtype([("a", "<u2"), ("b", "<f8")], align=True)
    s = record_struct(dt)
    assert s.size == dt.itemsize == 16 and s.format == "<H6xd"
    with pytest.raises(TypeError, match="unsupported"):
        record_struct(np.dtype([("c", "<c16")]))


def test_refuses_a_ring_of_other_records():
    buf = bytearray(ring_bytes(np.dtype([("x", "<u8")]), 8))
    ring = SpscRing.init_in(buf, 0, np.dtype([("x", "<u8")]), 8)
    with pytest.raises(TypeError, match="not TICK"):
        TickWriter(ring)


def test_block_policy_keeps_overflow_pending_in_order_and_loses_nothing():
    r = Rig(capacity=4)
    r.feed(*[quote(t=T0 + i, bp=float(i + 1)) for i in range(6)])      # 6 records, 4 slots
    assert r.ring.statistics().published == 4 and len(r.writer.pending) == 2
    assert r.ring.statistics().times_full >= 1
    r.feed(quote(t=T0 + 6, bp=7.0))                                       # queued behind the pending ones
    assert len(r.writer.pending) == 3
    got = [r.drain()]
    while r.writer.pending:
        assert r.writer.flush_pending() > 0
        got.append(r.drain())
    got = np.concatenate(got)
    assert got["seq"].tolist() == list(range(7))
    assert got["bid"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    assert r.ring.statistics().dropped == 0 and r.writer.dropped == 0


def test_block_policy_next_frame_flushes_pending_first():
    r = Rig(capacity=2)
    r.feed(quote(t=T0 + 1, bp=1.0), quote(t=T0 + 2, bp=2.0), quote(t=T0 + 3, bp=3.0))
    assert r.drain()["bid"].tolist() == [1.0, 2.0]
    r.feed(quote(t=T0 + 4, bp=4.0))              # begin() publishes the pending 3.0, then 4.0 fits
    assert r.drain()["bid"].tolist() == [3.0, 4.0] and not r.writer.pending


def test_drop_policy_counts_in_ring_and_writer_and_seq_stays_gap_free():
    r = Rig(capacity=4, full_policy=FULL_DROP)
    r.feed(*[quote(t=T0 + i, bp=float(i + 1)) for i in range(6)])
    st = r.ring.statistics()
    assert st.published == 4 and st.dropped == 2 and r.writer.dropped == 2 and not r.writer.pending
    assert r.drain()["seq"].tolist() == [0, 1, 2, 3]
    r.feed(quote(t=T0 + 10, bp=9.0))
    assert r.drain()["seq"].tolist() == [4]                    # dropped records took no seq
    assert r.dec.counts[1] == 7                                 # decoded quotes include the dropped


def test_drop_policy_keeps_a_snapshot_whole():
    r = Rig(capacity=4, full_policy=FULL_DROP)
    r.feed(quote("BTC/USD", t=T0), quote("BTC/USD", t=T0 + 1))
    r.feed(book(t=T0 + 2, bids=[(1.0, 1.0), (0.9, 1.0)], asks=[(1.1, 1.0)], reset=True))   # 3 > 2 free
    assert r.ring.statistics().dropped == 3
    got = r.drain()
    assert got["kind"].tolist() == [TICK_QUOTE, TICK_QUOTE]
    r.feed(book(t=T0 + 3, bids=[(1.0, 1.0), (0.9, 1.0)], asks=[(1.1, 1.0)], reset=True))
    assert r.drain()["kind"].tolist() == [TICK_BOOK_SNAPSHOT] * 3


def test_room_is_found_again_after_the_consumer_moves():
    """The cached tail says "full"; the writer re-reads the real one before spilling."""
    r = Rig(capacity=4, full_policy=FULL_DROP)
    r.feed(*[quote(t=T0 + i) for i in range(4)])
    r.drain()                                                   # consumer frees every slot
    r.feed(*[quote(t=T0 + 10 + i) for i in range(4)])
    assert r.ring.statistics().dropped == 0 and len(r.drain()) == 4


def test_max_ticks_publishes_exactly_that_many_then_finishes():
    r = Rig(capacity=64, max_ticks=5)
    r.feed(*[trade(i=i, t=T0 + i) for i in range(1, 4)])
    assert not r.writer.finished
    r.feed(*[trade(i=i, t=T0 + i) for i in range(4, 9)])
    assert r.writer.finished
    r.feed(trade(i=100, t=T0 + 100))
    got = r.drain()
    assert got["seq"].tolist() == [0, 1, 2, 3, 4] and r.ring.statistics().dropped == 0


def test_max_ticks_with_pending_records():
    r = Rig(capacity=2, max_ticks=3)
    r.feed(*[trade(i=i, t=T0 + i) for i in range(1, 6)])
    r.drain()
    r.writer.flush_pending()
    assert r.writer.finished and not r.writer.pending
    assert r.drain()["seq"].tolist() == [2]


def test_wrong_type_in_overflow_is_refused_before_it_is_kept():
    r = Rig(capacity=2)
    r.feed(quote(t=T0), quote(t=T0 + 1), quote(t=T0 + 2, bp="1.5"), quote(t=T0 + 3))
    assert len(r.writer.pending) == 1 and r.counts()["malformed"] == 1
    r.drain()
    r.writer.flush_pending()
    assert r.drain()["exch_ns"].tolist() == [T0 + 3]


def test_portable_path_gives_the_same_records():
    """The jitted load-acquire/store-release path (non-x86) behaves like the TSO path."""
    a, b = Rig(capacity=8), Rig(capacity=8, portable=True)
    for r in (a, b):
        r.feed(*[quote(t=T0 + i, bp=float(i)) for i in range(12)])
        got = [r.drain()]
        while r.writer.pending:
            r.writer.flush_pending()
            got.append(r.drain())
        r.got = np.concatenate(got)
    assert np.array_equal(a.got, b.got) and len(a.got) == 12


def test_writer_resumes_from_the_rings_current_head():
    """A writer attached to a ring that already holds records continues after them."""
    r = Rig(capacity=8)
    r.feed(quote(t=T0), quote(t=T0 + 1))
    w2 = TickWriter(r.ring)
    assert w2.head == 2
    with pytest.raises(struct.error):
        w2.put(0, 0, TICK_QUOTE, 0, "x", 0.0, 0.0, 0.0, 0.0, 0.0)
