"""Property tests of the SPSC ring in one process: any interleaving of publishes and drains.

Two ways in, checked against the same reference (a deque of sequence numbers):

* the façade ``SpscRing`` (``offer`` / ``poll`` / ``statistics``), and
* the jitted algorithm ``ringbuf.spsc`` called from our own njit producer/consumer
  (``claim`` -> write fields in place -> ``commit``; ``poll`` -> read -> ``release``),
  which is how the stages use it.

Properties: FIFO with no loss or duplicate; ``block`` drops nothing and ``offer`` returns exactly
``min(n, free)``; ``drop`` keeps ``published + dropped == offered``; statistics agree with the
reference; cursors may start anywhere, including just below 2**53 (where float64 stops being
exact) and 2**63 (the cursors are 64-bit and never wrap; a slot is ``cursor & mask``).
"""
from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from numba import njit

from layouts.ring import (
    CONTROL_WORDS,
    FULL_BLOCK,
    FULL_DROP,
    IDX_CACHED_HEAD,
    IDX_CACHED_TAIL,
    IDX_DROPPED,
    IDX_HEAD,
    IDX_HIGH_WATER,
    IDX_TAIL,
    IDX_TIMES_FULL,
)
from ringbuf import spsc
from ringbuf.errors import RingError
from ringbuf.ring import SpscRing, ring_bytes

REC = np.dtype([("seq", "<u8"), ("tag", "<u4")], align=True)   # 16 bytes, 4 of them padding


def tag_of(seq):
    return (np.asarray(seq, np.uint64) * np.uint64(2654435761) >> np.uint64(7)).astype(np.uint32)


# ---- the jitted way in -----------------------------------------------------------------------

@njit
def j_offer(ctl, recs, first_seq, n, drop):
    """Producer: claim up to n slots, write the fields in place, commit; return how many."""
    k = spsc.claim(ctl, n)
    start = spsc.head_of(ctl)
    for i in range(k):
        r = recs[spsc.slot(ctl, start + i)]
        s = np.uint64(first_seq + i)
        r.seq = s
        r.tag = np.uint32((s * np.uint64(2654435761)) >> np.uint64(7))
    if k > 0:
        spsc.commit(ctl, k)
    if drop and k < n:
        spsc.count_dropped(ctl, n - k)
    return k


@njit
def j_drain(ctl, recs, out_seq, out_tag, limit):
    """Consumer: take up to ``limit`` records, copy two fields out, release; return how many."""
    k = spsc.poll(ctl, limit)
    start = spsc.tail_of(ctl)
    for i in range(k):
        r = recs[spsc.slot(ctl, start + i)]
        out_seq[i] = r.seq
        out_tag[i] = r.tag
    if k > 0:
        spsc.release(ctl, k)
    return k


class Driver:
    """One ring and its reference model; ``publish``/``drain`` go through the chosen way in."""

    def __init__(self, capacity, policy, start, via):
        self.capacity, self.policy, self.via = capacity, policy, via
        self.buf = bytearray(ring_bytes(REC, capacity))
        self.ring = SpscRing.init_in(self.buf, 0, REC, capacity, policy, name="prop")
        for idx in (IDX_HEAD, IDX_TAIL, IDX_CACHED_HEAD, IDX_CACHED_TAIL):
            self.ring.ctl[idx] = start
        self.start = start
        self.next_seq = 0            # next sequence number to generate
        self.backlog = deque()       # generated, not yet accepted (block policy retries them)
        self.in_ring = deque()       # accepted, not yet drained (the reference)
        self.drained = []
        self.offered = self.accepted = self.dropped = 0
        self.partial_claims = 0      # offers that got fewer slots than asked for
        self.max_depth = 0
        self.max_batch_seen = 0

    def depth(self):
        return len(self.in_ring)

    def publish(self, size):
        new = range(self.next_seq, self.next_seq + size)
        self.next_seq += size
        if self.policy == FULL_DROP:
            todo = list(new)                       # drop: every record is offered once
        else:
            self.backlog.extend(new)               # block: the caller keeps and retries
            todo = list(self.backlog)
        free = self.capacity - self.depth()
        k = self._offer(todo)
        assert k == min(len(todo), free), "offer must publish exactly as many as fit"
        if k < len(todo):
            self.partial_claims += 1
        accepted = todo[:k]
        self.in_ring.extend(accepted)
        self.offered += len(todo) if self.policy == FULL_DROP else 0
        self.accepted += k
        if self.policy == FULL_DROP:
            self.dropped += len(todo) - k
        else:
            for _ in range(k):
                self.backlog.popleft()
        self.max_depth = max(self.max_depth, self.depth())
        return k

    def _offer(self, seqs):
        n = len(seqs)
        if self.via == "facade":
            recs = np.zeros(n, REC)
            recs["seq"] = seqs
            recs["tag"] = tag_of(recs["seq"])
            return self.ring.offer(recs)
        first = seqs[0] if n else 0
        assert list(seqs) == list(range(first, first + n))
        return int(j_offer(self.ring.ctl, self.ring.recs, np.uint64(first), n,
                           self.policy == FULL_DROP))

    def drain(self, limit):
        if self.via == "facade":
            got = self.ring.poll(limit)
            seqs, tags = got["seq"], got["tag"]
        else:
            seqs = np.zeros(limit, np.uint64)
            tags = np.zeros(limit, np.uint32)
            k = int(j_drain(self.ring.ctl, self.ring.recs, seqs, tags, limit))
            seqs, tags = seqs[:k], tags[:k]
        k = len(seqs)
        # The consumer re-reads head only when its cached copy says "empty", so a drain may
        # take fewer than are there, but never more, and never nothing when there is something.
        assert k <= min(limit, self.depth()), "a drain takes at most min(limit, depth)"
        assert (k > 0) == (limit > 0 and self.depth() > 0), "a drain makes progress"
        expect = [self.in_ring.popleft() for _ in range(k)]
        assert seqs.tolist() == expect, "FIFO order, no loss, no duplicate"
        assert np.array_equal(tags, tag_of(seqs)), "payload travels with its sequence number"
        self.drained.extend(expect)
        self.max_batch_seen = max(self.max_batch_seen, k)
        return k

    def check_statistics(self):
        s = self.ring.statistics()
        assert s.capacity == self.capacity
        assert s.published == self.start + self.accepted
        assert s.consumed == self.start + len(self.drained)
        assert s.depth == self.depth()
        assert s.dropped == self.dropped
        assert s.times_full == self.partial_claims
        # "largest depth the consumer has seen": at least every batch it took, at most the
        # largest depth the ring ever had, never more than the capacity.
        assert self.max_batch_seen <= s.high_water <= self.max_depth <= self.capacity
        assert s.full_policy == {FULL_BLOCK: "block", FULL_DROP: "drop"}[self.policy]

    def flush(self):
        """Drain everything, re-offering the block backlog until it is empty."""
        for _ in range(4 * (len(self.backlog) + self.capacity) + 4):
            if not self.backlog and not self.in_ring:
                return
            if self.backlog:
                self.publish(0)
            self.drain(self.capacity)
        raise AssertionError("flush did not finish")


CAPACITIES = st.sampled_from([2, 4, 8, 16, 64])
#: Where the cursors start, relative to the capacity: 0, and just below 2**53 and 2**63, so
#: a run crosses those values.
BASES = st.sampled_from([0, 2 ** 53, 2 ** 63])


@st.composite
def scenarios(draw):
    cap = draw(CAPACITIES)
    base = draw(BASES)
    start = max(base - draw(st.integers(0, 3 * cap)), 0)
    ops = draw(st.lists(
        st.tuples(st.sampled_from(["pub", "drain"]), st.integers(0, 2 * cap)), max_size=60))
    return cap, start, ops


def run_scenario(cap, start, ops, policy, via):
    d = Driver(cap, policy, start, via)
    for op, size in ops:
        if op == "pub":
            d.publish(size)
        else:
            d.drain(size)
        d.check_statistics()
    d.flush()
    d.check_statistics()
    if policy == FULL_BLOCK:
        assert d.dropped == 0 and int(d.ring.ctl[IDX_DROPPED]) == 0
        assert d.drained == list(range(d.next_seq)), "block: every generated record came out once"
    else:
        assert d.accepted + d.dropped == d.offered == d.next_seq
        assert len(d.drained) == d.accepted
        assert d.drained == sorted(set(d.drained))
    return d


PROPERTY = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("via", ["facade", "jit"])
@pytest.mark.parametrize("policy", [FULL_BLOCK, FULL_DROP], ids=["block", "drop"])
@PROPERTY
@given(scenario=scenarios())
@example(scenario=(2, 0, [("pub", 2), ("pub", 1), ("drain", 1), ("pub", 4), ("drain", 4)]))
@example(scenario=(8, 0, [("pub", 8), ("pub", 1), ("drain", 16), ("pub", 8), ("drain", 0)]))
@example(scenario=(4, 2 ** 63 - 3, [("pub", 4), ("drain", 4), ("pub", 4), ("drain", 2)]))
@example(scenario=(2, 2 ** 53 - 1, [("pub", 2), ("drain", 2), ("pub", 2), ("drain", 1)]))
def test_any_interleaving_keeps_fifo(scenario, policy, via):
    run_scenario(*scenario, policy, via)


# ---- edge cases, spelled out ---------------------------------------------------------------

@pytest.mark.parametrize("via", ["facade", "jit"])
def test_capacity_two(via):
    d = Driver(2, FULL_BLOCK, 0, via)
    assert d.publish(3) == 2            # 2 fit, 1 kept in the backlog
    assert d.drain(1) == 1
    assert d.publish(0) == 1            # the backlog record takes the freed slot
    assert d.publish(1) == 0            # full: nothing fits
    assert d.drain(5) + d.drain(5) == 2
    d.flush()
    d.check_statistics()
    assert d.drained == [0, 1, 2, 3]
    assert d.ring.statistics().times_full == 2


@pytest.mark.parametrize("via", ["facade", "jit"])
@pytest.mark.parametrize("start", [0, 2 ** 63 - 5, 2 ** 63])
def test_batch_exactly_filling_the_ring(via, start):
    cap = 16
    d = Driver(cap, FULL_DROP, start, via)
    assert d.publish(cap) == cap
    s = d.ring.statistics()
    assert (s.depth, s.times_full, s.dropped) == (cap, 0, 0)
    assert d.publish(1) == 0
    s = d.ring.statistics()
    assert (s.depth, s.times_full, s.dropped) == (cap, 1, 1)
    assert d.drain(cap) == cap
    assert d.ring.statistics().high_water == cap
    assert d.publish(cap) == cap        # wrapped around the array: slots are reused in order
    assert d.drain(2 * cap) == cap
    d.check_statistics()
    assert d.drained == list(range(cap)) + list(range(cap + 1, 2 * cap + 1))


@pytest.mark.parametrize("via", ["facade", "jit"])
@pytest.mark.parametrize("start", [2 ** 53 - 2, 2 ** 63 - 2, 2 ** 63 + 7])
def test_cursors_near_the_top_mask_without_wrapping(via, start):
    """Set every cursor to a large equal value: slots come from ``cursor & mask`` alone."""
    cap = 4
    d = Driver(cap, FULL_BLOCK, start, via)
    for _ in range(5):
        assert d.publish(3) == 3
        assert d.drain(3) == 3
    d.check_statistics()
    ctl = d.ring.ctl
    assert int(ctl[IDX_HEAD]) == int(ctl[IDX_TAIL]) == start + 15
    # The records went into consecutive slots starting at start & mask.
    last = [int(x) for x in d.ring.recs["seq"]]
    slots = [(start + i) % cap for i in range(12, 15)]
    assert [last[s] for s in slots] == [12, 13, 14]


def test_statistics_track_depth_high_water_times_full():
    d = Driver(8, FULL_BLOCK, 0, "facade")
    s = d.ring.statistics()
    assert (s.depth, s.high_water, s.times_full, s.dropped, s.published, s.consumed) == (0, 0, 0, 0, 0, 0)
    d.publish(5)
    assert d.ring.statistics().depth == 5
    d.drain(2)
    s = d.ring.statistics()
    assert (s.depth, s.high_water) == (3, 5)
    d.publish(10)                        # 5 of 10 fit: one times-full event
    s = d.ring.statistics()
    assert (s.depth, s.times_full, s.published, s.consumed) == (8, 1, 10, 2)
    d.drain(100)
    d.drain(100)
    d.check_statistics()
    # A consumer that has caught up sees the whole depth on its next poll.
    d.flush()
    d.publish(8)
    d.drain(1)
    s = d.ring.statistics()
    assert (s.depth, s.high_water, s.times_full) == (7, 8, 1)
    d.check_statistics()
    assert "prop" in repr(d.ring) and "block" in repr(d.ring)


def test_poll_returns_a_copy_not_a_view_of_the_slots():
    ring = SpscRing.init_in(bytearray(ring_bytes(REC, 2)), 0, REC, 2)
    recs = np.zeros(2, REC)
    recs["seq"] = [0, 1]
    assert ring.offer(recs) == 2
    first = ring.poll(2)
    recs["seq"] = [7, 8]
    assert ring.offer(recs) == 2        # overwrites both slots
    assert first["seq"].tolist() == [0, 1]
    assert ring.poll(2)["seq"].tolist() == [7, 8]


def test_offer_rejects_a_wrong_dtype_and_accepts_2d():
    d = Driver(8, FULL_BLOCK, 0, "facade")
    with pytest.raises(RingError, match="prop"):
        d.ring.offer(np.zeros(2, np.dtype([("seq", "<u8"), ("tag", "<u4")])))  # unaligned twin
    with pytest.raises(RingError):
        d.ring.offer([1, 2, 3])
    recs = np.zeros((2, 2), REC)
    recs["seq"] = [[0, 1], [2, 3]]
    assert d.ring.offer(recs) == 4
    assert d.ring.poll(8)["seq"].tolist() == [0, 1, 2, 3]


def test_put_waits_for_room_and_times_out_naming_the_ring():
    d = Driver(4, FULL_BLOCK, 0, "facade")
    recs = np.zeros(4, REC)
    recs["seq"] = range(4)
    assert d.ring.put(recs, timeout=1.0) == 4
    with pytest.raises(TimeoutError, match="prop"):
        d.ring.put(recs[:1], timeout=0.05)
    assert d.ring.statistics().depth == 4


def test_init_in_rejects_bad_capacity_policy_and_small_buffer():
    buf = bytearray(ring_bytes(REC, 8))
    for cap in (0, 1, 3, 6, 1000):
        with pytest.raises(RingError, match="myring"):
            SpscRing.init_in(buf, 0, REC, cap, name="myring")
    with pytest.raises(RingError, match="policy"):
        SpscRing.init_in(buf, 0, REC, 8, full_policy=7, name="myring")
    with pytest.raises(RingError, match="too small"):
        SpscRing.init_in(buf, 0, REC, 16)


def test_attach_in_checks_the_record_dtype():
    buf = bytearray(ring_bytes(REC, 8))
    SpscRing.init_in(buf, 0, REC, 8)
    assert SpscRing.attach_in(buf, 0, REC).statistics().capacity == 8
    other = np.dtype([("seq", "<u8"), ("tag", "<i4")], align=True)   # same size, other type
    with pytest.raises(RingError, match="record dtype mismatch"):
        SpscRing.attach_in(buf, 0, other, name="r")


def test_control_block_is_zeroed_by_init():
    buf = bytearray(b"\xff" * ring_bytes(REC, 4))
    r = SpscRing.init_in(buf, 0, REC, 4)
    assert r.ctl.shape == (CONTROL_WORDS,)
    for idx in (IDX_HEAD, IDX_TAIL, IDX_CACHED_HEAD, IDX_CACHED_TAIL, IDX_HIGH_WATER,
                IDX_TIMES_FULL, IDX_DROPPED):
        assert int(r.ctl[idx]) == 0


@pytest.mark.parametrize("word", [np.uint8, np.uint64])
def test_init_in_over_a_typed_numpy_buffer(word):
    """The size check counts bytes, not items: an 8-byte-word buffer of exactly the size fits."""
    nbytes = ring_bytes(REC, 8)
    buf = np.zeros(nbytes // np.dtype(word).itemsize, word)
    ring = SpscRing.init_in(buf, 0, REC, 8)
    recs = np.zeros(3, REC)
    recs["seq"] = [4, 5, 6]
    assert ring.offer(recs) == 3
    assert SpscRing.attach_in(buf, 0, REC).poll(8)["seq"].tolist() == [4, 5, 6]
    with pytest.raises(RingError, match="too small"):
        SpscRing.init_in(buf[:-1], 0, REC, 8)
