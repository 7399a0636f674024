"""Rings and seqlocked tables laid over their own shared-memory segments.

A ring segment's payload is ``ringbuf.ring.ring_bytes(dtype, capacity)`` bytes; a table
segment's payload is ``uint64[n_rows]`` sequence words (cache-line padded) then the rows.
The header's layout hash covers the control block *and* the record dtype, so attaching
with another record layout fails before any record is read.
"""
from __future__ import annotations

import numpy as np

from layouts.common import align_up, dtype_hash
from layouts.ring import FULL_BLOCK, RING_CONTROL
from layouts.segment import KIND_RING, KIND_TABLE
from ringbuf.ring import SpscRing, check_capacity, ring_bytes
from ringbuf.seqlock_view import SeqlockTable

from .errors import LayoutMismatch
from .segment import Segment, attach_segment, create_segment, mark_ready


def ring_layout_hash(record_dtype) -> int:
    return dtype_hash(np.dtype([("ctl", RING_CONTROL), ("rec", np.dtype(record_dtype))]))


def table_layout_hash(row_dtype) -> int:
    return dtype_hash(np.dtype([("seq", "<u8"), ("row", np.dtype(row_dtype))]))


def create_ring(engine: str, name: str, record_dtype, capacity: int,
                full_policy: int = FULL_BLOCK) -> tuple[Segment, SpscRing]:
    """Create segment ``name`` holding an empty ring (creator owns and unlinks it)."""
    check_capacity(capacity, f"ring {name!r}")
    seg = create_segment(engine, name, KIND_RING, ring_layout_hash(record_dtype),
                         ring_bytes(record_dtype, capacity))
    try:
        ring = SpscRing.init_in(seg.mm, seg.payload_offset, record_dtype, capacity, full_policy, name)
    except BaseException:
        seg.unlink()
        raise
    mark_ready(seg)
    return seg, ring


def attach_ring(engine: str, name: str, record_dtype, readonly: bool = False) -> tuple[Segment, SpscRing]:
    """Attach ring ``name``; refuse if its record layout differs from ``record_dtype``."""
    seg = attach_segment(engine, name, KIND_RING, readonly=readonly)
    want = ring_layout_hash(record_dtype)
    have = int(seg.header["layout_hash"][0])
    if have != want:
        seg.close()
        raise LayoutMismatch(f"{seg.posix_name}: ring records are not {np.dtype(record_dtype)} "
                             f"(layout hash {have:#x}, expected {want:#x})")
    return seg, SpscRing.attach_in(seg.mm, seg.payload_offset, record_dtype, name)


def _table_views(seg: Segment, row_dtype, n_rows: int) -> SeqlockTable:
    seqs = seg.array(np.uint64, (n_rows,))
    rows = seg.array(row_dtype, (n_rows,), offset=align_up(8 * n_rows))
    return SeqlockTable(seqs, rows, seg.name)


def table_bytes(row_dtype, n_rows: int) -> int:
    return align_up(8 * n_rows) + n_rows * np.dtype(row_dtype).itemsize


def create_table(engine: str, name: str, row_dtype, n_rows: int) -> tuple[Segment, SeqlockTable]:
    """Create segment ``name`` holding a zeroed seqlocked table of ``n_rows`` rows."""
    if n_rows < 1:
        raise ValueError(f"table {name!r}: n_rows must be >= 1, got {n_rows}")
    seg = create_segment(engine, name, KIND_TABLE, table_layout_hash(row_dtype),
                         table_bytes(row_dtype, n_rows))
    table = _table_views(seg, row_dtype, n_rows)
    mark_ready(seg)
    return seg, table


def attach_table(engine: str, name: str, row_dtype, readonly: bool = True) -> tuple[Segment, SeqlockTable]:
    """Attach table ``name`` (read-only by default: readers never write)."""
    seg = attach_segment(engine, name, KIND_TABLE, table_layout_hash(row_dtype), readonly=readonly)
    itemsize = np.dtype(row_dtype).itemsize
    # payload = align(8 n) + n * itemsize: solve for n (monotonic, so search the exact value).
    n_rows = _rows_for(int(seg.header["payload_size"][0]), itemsize)
    if n_rows is None:
        seg.close()
        raise LayoutMismatch(f"{seg.posix_name}: payload size does not fit rows of {itemsize} B")
    return seg, _table_views(seg, row_dtype, n_rows)


def _rows_for(payload_size: int, itemsize: int) -> int | None:
    n = payload_size // (8 + itemsize)
    for cand in range(max(n - 16, 1), n + 2):
        if align_up(8 * cand) + cand * itemsize == payload_size:
            return cand
    return None
