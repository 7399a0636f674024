"""Seqlocked table: one writer, any number of readers, consistent row snapshots, no blocking.

A table is ``rows`` (a structured array, one row per key, e.g. per symbol) and ``seqs``
(``uint64[n_rows]``, one sequence word per row). Each row is its own seqlock, so a writer
updating symbol 3 never makes a reader of symbol 5 retry.

Ordering contract:

* writer: ``s = seqs[i]``; ``store_release(seqs[i], s + 1)`` (odd: write in progress);
  ``fence_release`` so the payload stores stay after it; write the row;
  ``store_release(seqs[i], s + 2)`` (even: stable) publishes the payload stores.
* reader: ``s0 = load_acquire(seqs[i])``; copy the row; ``fence_acquire`` so the copy
  completes before the re-read; ``s1 = load_relaxed(seqs[i])``; retry while
  ``s0 != s1`` or ``s0`` is odd.

The pure-Python reader (``SeqlockTable.read``) relies on x86-64 TSO (loads are not
reordered with other loads) and on CPython performing each numpy element load as a real
memory access; it exists for tools and dashboards that must not import numba, so it lives in
``ringbuf.seqlock_view`` (numpy only) and is re-exported here. Jitted code uses ``read_row``.

Only one process may write a table (its owner stage). Readers never write anything, so a
reader can map the table read-only.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ._atomics import fence_acquire, fence_release, load_acquire, load_relaxed, store_release
from .seqlock_view import SeqlockTable  # noqa: F401  (re-exported: the numba-free façade)


# The jitted side is compiled without numba's reference counting (``_nrt=False``), explicitly:
# the stages' duty cycles call it without NRT, nothing here allocates, and numba's cache key
# ignores the flag (otherwise whichever caller compiled first would decide it).
@njit(cache=True, inline="always", _nrt=False)
def write_begin(seqs, i):
    """Writer: mark row ``i`` as being written."""
    store_release(seqs, i, seqs[i] + np.uint64(1))
    fence_release()


@njit(cache=True, inline="always", _nrt=False)
def write_end(seqs, i):
    """Writer: publish row ``i``."""
    store_release(seqs, i, seqs[i] + np.uint64(1))


@njit(cache=True, _nrt=False)
def read_row(seqs, rows, i, out, max_tries):
    """Reader: copy a consistent snapshot of row ``i`` into ``out[0]``; return the tries used, or 0.

    Returns 0 if no consistent snapshot was obtained within ``max_tries`` (the writer kept
    the row busy); ``out`` is then unspecified.
    """
    for t in range(max_tries):
        s0 = load_acquire(seqs, i)
        if s0 & 1:
            continue
        out[0] = rows[i]
        fence_acquire()
        if load_relaxed(seqs, i) == s0:
            return t + 1
    return 0


def _write_fields(seqs, rows, i, fields):
    # Python-level writer: the seqlock words go through the jitted begin/end so their
    # ordering is enforced; the field stores in between are plain numpy stores.
    _begin(seqs, i)
    row = rows[i:i + 1]
    for k, v in fields.items():
        row[k] = v
    _end(seqs, i)


@njit(cache=True, _nrt=False)
def _begin(seqs, i):
    write_begin(seqs, i)


@njit(cache=True, _nrt=False)
def _end(seqs, i):
    write_end(seqs, i)
