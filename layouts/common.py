"""Shared helpers for layouts: cache-line padding and stable dtype hashes."""
from __future__ import annotations

import hashlib

import numpy as np

#: Cache line size on x86-64 and most aarch64 parts.
CACHE_LINE = 64
#: Hot cursors are spaced two lines apart so the adjacent-line prefetcher does not
#: couple them (Agrona's ``CACHE_LINE_LENGTH * 2``).
HOT_SPACING = 2 * CACHE_LINE


def dtype_hash(dtype: np.dtype) -> int:
    """Return a stable 63-bit hash of a dtype's names, formats, offsets and itemsize.

    Two processes built from different layouts get different hashes, so attach can refuse.
    """
    dtype = np.dtype(dtype)
    text = repr((dtype.descr, dtype.itemsize)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def field_offset(dtype: np.dtype, name: str) -> int:
    """Byte offset of ``name`` in ``dtype``, from the dtype itself."""
    return int(np.dtype(dtype).fields[name][1])


def align_up(n: int, alignment: int = CACHE_LINE) -> int:
    return (n + alignment - 1) // alignment * alignment


def line_groups(groups: list[list[tuple]], spacing: int = HOT_SPACING) -> np.dtype:
    """Build a dtype whose field groups each start on their own ``spacing``-byte boundary.

    Each group holds fields written by one party; spacing them two cache lines apart
    keeps a writer's stores from invalidating the other party's line (false sharing).
    A field is ``(name, format)`` or ``(name, format, shape)``.
    """
    names, formats, offsets = [], [], []
    off = 0
    for fields in groups:
        off = align_up(off, spacing)
        for name, *fmt in fields:
            dt = np.dtype(fmt[0] if len(fmt) == 1 else (fmt[0], fmt[1]))
            off = align_up(off, dt.base.itemsize)
            names.append(name)
            formats.append(dt)
            offsets.append(off)
            off += dt.itemsize
    return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                     "itemsize": align_up(off, spacing)})
