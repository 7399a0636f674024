"""Golden layouts: the byte offsets of everything that lies in shared memory are pinned here.

Two processes built from different layouts must never share memory silently. The numbers below
are typed by hand on purpose: reordering, retyping, inserting or removing a field fails this
test. If a change is intended, bump the layout (``HEADER_VERSION`` for the header) and update
the numbers in the same commit.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from layouts import ring as ring_layout
from layouts.common import CACHE_LINE, HOT_SPACING, dtype_hash
from layouts.market import TICK, TOP
from layouts.ring import RING_CONTROL
from layouts.segment import HEADER_SIZE, HEADER_VERSION, MAGIC, SEGMENT_HEADER
from layouts.stats import N_COUNTERS, STAGE_STATS

REPO = Path(__file__).resolve().parents[2]


def layout_of(dtype: np.dtype) -> list[tuple[str, int, str, tuple]]:
    """(name, offset, format, subarray shape) of every field, in declaration order."""
    out = []
    for name in dtype.names:
        ftype, offset = dtype.fields[name][:2]
        out.append((name, offset, ftype.base.str, ftype.shape))
    return out


GOLDEN = {
    "SEGMENT_HEADER": (SEGMENT_HEADER, 256, [
        ("magic", 0, "<u8", ()),
        ("version", 8, "<u4", ()),
        ("kind", 12, "<u4", ()),
        ("layout_hash", 16, "<u8", ()),
        ("creator_pid", 24, "<i8", ()),
        ("start_mono_ns", 32, "<i8", ()),
        ("start_unix_ns", 40, "<i8", ()),
        ("payload_offset", 48, "<u8", ()),
        ("payload_size", 56, "<u8", ()),
        ("ready", 64, "<u8", ()),
        ("heartbeat_ns", 128, "<i8", ()),
    ]),
    "RING_CONTROL": (RING_CONTROL, 768, [
        ("capacity", 0, "<u8", ()),
        ("mask", 8, "<u8", ()),
        ("record_size", 16, "<u8", ()),
        ("record_hash", 24, "<u8", ()),
        ("full_policy", 32, "<u8", ()),
        ("head", 128, "<u8", ()),
        ("cached_tail", 256, "<u8", ()),
        ("times_full", 264, "<u8", ()),
        ("dropped", 272, "<u8", ()),
        ("tail", 384, "<u8", ()),
        ("cached_head", 512, "<u8", ()),
        ("high_water", 520, "<u8", ()),
        ("parked", 640, "<u8", ()),
    ]),
    "TICK": (TICK, 80, [
        ("seq", 0, "<u8", ()),
        ("recv_ns", 8, "<i8", ()),
        ("exch_ns", 16, "<i8", ()),
        ("sym", 24, "<u4", ()),
        ("kind", 28, "<u2", ()),
        ("flags", 30, "<u2", ()),
        ("price", 32, "<f8", ()),
        ("size", 40, "<f8", ()),
        ("bid", 48, "<f8", ()),
        ("ask", 56, "<f8", ()),
        ("bid_size", 64, "<f8", ()),
        ("ask_size", 72, "<f8", ()),
    ]),
    "TOP": (TOP, 64, [
        ("sym", 0, "<u4", ()),
        ("valid", 4, "<u4", ()),
        ("bid", 8, "<f8", ()),
        ("ask", 16, "<f8", ()),
        ("bid_size", 24, "<f8", ()),
        ("ask_size", 32, "<f8", ()),
        ("last", 40, "<f8", ()),
        ("updated_ns", 48, "<i8", ()),
        ("updates", 56, "<u8", ()),
    ]),
    "STAGE_STATS": (STAGE_STATS, 184, [
        ("pid", 0, "<i8", ()),
        ("cpu", 8, "<i4", ()),
        ("state", 12, "<i4", ()),
        ("heartbeat_ns", 16, "<i8", ()),
        ("cycles", 24, "<u8", ()),
        ("work", 32, "<u8", ()),
        ("idle_cycles", 40, "<u8", ()),
        ("errors", 48, "<u8", ()),
        ("counters", 56, "<u8", (16,)),
    ]),
}

#: dtype_hash of each layout. A change here means processes of the old and the new build refuse
#: to attach to each other's segments: intended only together with a layout change.
GOLDEN_HASH = {
    "SEGMENT_HEADER": 0x6CB6545A07DC7A4C,
    "RING_CONTROL": 0x6A2ACA362E1F925D,
    "TICK": 0x1723560E57442668,
    "TOP": 0x15319827BAB9AA77,
    "STAGE_STATS": 0x4F4585BC88A24543,
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_offsets_and_itemsize_are_pinned(name):
    dtype, itemsize, fields = GOLDEN[name]
    assert dtype.itemsize == itemsize, f"{name}.itemsize"
    assert layout_of(dtype) == fields, f"{name} fields (name, offset, format, shape)"


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_every_field_is_naturally_aligned_and_inside_the_record(name):
    dtype, _, _ = GOLDEN[name]
    for fname in dtype.names:
        ftype, offset = dtype.fields[fname][:2]
        assert offset % ftype.base.itemsize == 0, f"{name}.{fname} misaligned at {offset}"
        assert offset + ftype.itemsize <= dtype.itemsize, f"{name}.{fname} overflows the record"


def test_segment_header_constants():
    assert MAGIC == int.from_bytes(b"PYRTSHM1", "little") == 0x314D485354525950
    assert HEADER_VERSION == 1
    assert HEADER_SIZE == SEGMENT_HEADER.itemsize == 4 * CACHE_LINE
    # The heartbeat is written every duty cycle: it must not share a line with the rest.
    hb = SEGMENT_HEADER.fields["heartbeat_ns"][1]
    others = {SEGMENT_HEADER.fields[n][1] // CACHE_LINE for n in SEGMENT_HEADER.names if n != "heartbeat_ns"}
    assert hb // CACHE_LINE not in others


def test_ring_hot_cursors_each_own_a_128_byte_group():
    assert HOT_SPACING == 128
    hot = ["head", "tail", "cached_tail", "cached_head", "parked"]
    groups = [RING_CONTROL.fields[n][1] // 128 for n in hot]
    assert groups == [1, 3, 2, 4, 5]
    assert len(set(groups)) == len(hot)
    # The config words (written once) are in group 0, away from every hot word.
    config = ["capacity", "mask", "record_size", "record_hash", "full_policy"]
    assert {RING_CONTROL.fields[n][1] // 128 for n in config} == {0}


def test_ring_control_word_indices():
    """Jitted code addresses the control block as uint64[CONTROL_WORDS] with these indices."""
    assert all(RING_CONTROL.fields[n][0] == np.dtype("<u8") for n in RING_CONTROL.names)
    expected = {
        "IDX_CAPACITY": 0, "IDX_MASK": 1, "IDX_RECORD_SIZE": 2, "IDX_RECORD_HASH": 3,
        "IDX_FULL_POLICY": 4, "IDX_HEAD": 16, "IDX_CACHED_TAIL": 32, "IDX_TIMES_FULL": 33,
        "IDX_DROPPED": 34, "IDX_TAIL": 48, "IDX_CACHED_HEAD": 64, "IDX_HIGH_WATER": 65,
        "IDX_PARKED": 80, "CONTROL_WORDS": 96,
    }
    assert {k: getattr(ring_layout, k) for k in expected} == expected


def test_stage_stats_counters():
    assert N_COUNTERS == 16
    assert STAGE_STATS.fields["counters"][0].shape == (N_COUNTERS,)


@pytest.mark.parametrize("name", sorted(GOLDEN_HASH))
def test_dtype_hash_is_pinned(name):
    assert dtype_hash(GOLDEN[name][0]) == GOLDEN_HASH[name]


def test_dtype_hash_same_dtype_same_hash():
    for dtype, _, _ in GOLDEN.values():
        # An equal dtype built independently (from its names, formats and offsets) hashes equal.
        rebuilt = np.dtype({"names": list(dtype.names),
                            "formats": [dtype.fields[n][0] for n in dtype.names],
                            "offsets": [dtype.fields[n][1] for n in dtype.names],
                            "itemsize": dtype.itemsize})
        assert rebuilt == dtype
        assert dtype_hash(dtype) == dtype_hash(dtype)
        assert dtype_hash(rebuilt) == dtype_hash(dtype)
        assert 0 <= dtype_hash(dtype) < 2 ** 63
    a = np.dtype([("x", "<u8"), ("y", "<f8")], align=True)
    b = np.dtype([("x", "<u8"), ("y", "<f8")], align=True)
    assert dtype_hash(a) == dtype_hash(b)
    assert dtype_hash("<u8") == dtype_hash(np.uint64)


def test_dtype_hash_different_dtype_different_hash():
    base = [("x", "<u8"), ("y", "<u4"), ("z", "<f8")]
    variants = [
        np.dtype(base, align=True),
        np.dtype(base, align=False),                                   # packing / padding
        np.dtype([("y", "<u4"), ("x", "<u8"), ("z", "<f8")], align=True),  # order
        np.dtype([("x", "<u8"), ("w", "<u4"), ("z", "<f8")], align=True),  # a name
        np.dtype([("x", "<u8"), ("y", "<i4"), ("z", "<f8")], align=True),  # a type
        np.dtype([("x", ">u8"), ("y", "<u4"), ("z", "<f8")], align=True),  # byte order
        np.dtype([("x", "<u8"), ("y", "<u4"), ("z", "<f8", (2,))], align=True),  # a shape
        np.dtype({"names": ["x", "y", "z"], "formats": ["<u8", "<u4", "<f8"],
                  "offsets": [0, 8, 16], "itemsize": 32}),              # trailing padding
    ]
    hashes = [dtype_hash(v) for v in variants] + [dtype_hash(d) for d, _, _ in GOLDEN.values()]
    assert len(set(hashes)) == len(hashes)


def test_dtype_hash_is_stable_across_processes():
    """Not Python's salted ``hash()``: another interpreter with another seed agrees."""
    code = textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        from layouts.common import dtype_hash
        from layouts.ring import RING_CONTROL
        from layouts.market import TICK
        print(dtype_hash(RING_CONTROL), dtype_hash(TICK))
    """)
    out = subprocess.run([sys.executable, "-c", code, str(REPO)], capture_output=True, text=True,
                         timeout=60, env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"},
                         check=True).stdout.split()
    assert [int(x) for x in out] == [dtype_hash(RING_CONTROL), dtype_hash(TICK)]
