"""Ring control block: capacity, record identity and the four cursors of an SPSC ring.

Segment payload of a ring::

    +-------------------+  payload_offset
    | RING_CONTROL      |  6 groups x 128 bytes, each group on its own two cache lines
    |   config          |  written once by the creator
    |   head            |  producer writes (store-release), consumer reads (load-acquire)
    |   producer-local  |  cached_tail, times_full, dropped: producer only
    |   tail            |  consumer writes (store-release), producer reads (load-acquire)
    |   consumer-local  |  cached_head, high_water, consumer only
    |   parked          |  consumer flags it is parked on the wake-up semaphore
    +-------------------+  payload_offset + RING_CONTROL.itemsize
    | records[capacity] |  the record dtype, cache-line aligned start
    +-------------------+

Cursors are 64-bit counts of records ever published/consumed; they never wrap. A slot
index is ``cursor & mask``. All control fields are u64 so jitted code addresses them as
one ``uint64`` array with the ``IDX_*`` indices below.
"""
from __future__ import annotations

import numpy as np

from .common import line_groups

#: Full-ring policies (``full_policy``).
FULL_BLOCK = 0   #: producer waits (backpressure); nothing is dropped
FULL_DROP = 1    #: producer drops the records that do not fit and counts them
FULL_POLICY_NAMES = {FULL_BLOCK: "block", FULL_DROP: "drop"}

RING_CONTROL = line_groups(
    [
        [("capacity", "<u8"), ("mask", "<u8"), ("record_size", "<u8"),
         ("record_hash", "<u8"), ("full_policy", "<u8")],
        [("head", "<u8")],
        [("cached_tail", "<u8"), ("times_full", "<u8"), ("dropped", "<u8")],
        [("tail", "<u8")],
        [("cached_head", "<u8"), ("high_water", "<u8")],
        [("parked", "<u8")],
    ]
)


def _idx(name: str) -> int:
    return RING_CONTROL.fields[name][1] // 8


IDX_CAPACITY = _idx("capacity")
IDX_MASK = _idx("mask")
IDX_RECORD_SIZE = _idx("record_size")
IDX_RECORD_HASH = _idx("record_hash")
IDX_FULL_POLICY = _idx("full_policy")
IDX_HEAD = _idx("head")
IDX_CACHED_TAIL = _idx("cached_tail")
IDX_TIMES_FULL = _idx("times_full")
IDX_DROPPED = _idx("dropped")
IDX_TAIL = _idx("tail")
IDX_CACHED_HEAD = _idx("cached_head")
IDX_HIGH_WATER = _idx("high_water")
IDX_PARKED = _idx("parked")
CONTROL_WORDS = RING_CONTROL.itemsize // 8
