"""Segment header: the first bytes of every shared-memory segment.

::

    0        8        16       24       32       40       48       56       64
    +--------+----+---+--------+--------+--------+--------+--------+--------+
    | magic  |ver |knd| layout_hash     | creator_pid     | start_mono_ns   | ...
    +--------+----+---+--------+--------+--------+--------+--------+--------+
    ... start_unix_ns | payload_offset | payload_size | heartbeat_ns (own line) ...

The header is 256 bytes; the payload starts at ``payload_offset`` (cache-line aligned).
``heartbeat_ns`` sits on its own cache line because its owner writes it every duty cycle
while readers poll it.
"""
from __future__ import annotations

import numpy as np

from .common import CACHE_LINE

#: b"PYRTSHM1" as a little-endian u64.
MAGIC = int.from_bytes(b"PYRTSHM1", "little")
#: Bumped on any incompatible change to this header.
HEADER_VERSION = 1

#: Segment kinds (``kind`` field).
KIND_RING = 1
KIND_TABLE = 2
KIND_HISTOGRAMS = 3
KIND_BLOB = 4
KIND_NAMES = {KIND_RING: "ring", KIND_TABLE: "table", KIND_HISTOGRAMS: "histograms", KIND_BLOB: "blob"}

SEGMENT_HEADER = np.dtype(
    {
        "names": [
            "magic",           #: MAGIC
            "version",         #: HEADER_VERSION
            "kind",            #: KIND_*
            "layout_hash",     #: dtype_hash of the payload layout; checked on attach
            "creator_pid",     #: pid of the process that created the segment
            "start_mono_ns",   #: CLOCK_MONOTONIC at creation (detects restarts)
            "start_unix_ns",   #: wall clock at creation, for humans
            "payload_offset",  #: byte offset of the payload from the segment start
            "payload_size",    #: payload bytes
            "ready",           #: 1 once the creator has initialised the payload
            "heartbeat_ns",    #: owner's last CLOCK_MONOTONIC beat (own cache line)
        ],
        "formats": ["<u8", "<u4", "<u4", "<u8", "<i8", "<i8", "<i8", "<u8", "<u8", "<u8", "<i8"],
        "offsets": [0, 8, 12, 16, 24, 32, 40, 48, 56, 64, 128],
        "itemsize": 4 * CACHE_LINE,
    }
)

HEADER_SIZE = SEGMENT_HEADER.itemsize
