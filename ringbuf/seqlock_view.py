"""``SeqlockTable``: the plain-Python façade of a seqlocked table, without numba.

Tools, dashboards and the reader API (``pyrt_shm.reader``) import this module; it imports
numpy only, so they start without loading numba. The jitted primitives (``write_begin``,
``write_end``, ``read_row``) and the ordering contract live in ``ringbuf.seqlock``, which
re-exports this class.

Reading here is pure Python: ``s0 = seqs[i]``; copy the row; ``s1 = seqs[i]``; keep the copy
if ``s0 == s1`` and ``s0`` is even. That is correct on x86-64 (TSO: loads are not reordered
with other loads, and every numpy element load is a real memory access from CPython). It
is **not** guaranteed on weakly ordered CPUs (aarch64), where readers should use the jitted
``read_row``. Readers never store, so the table may be mapped read-only.

Writing (``write``) is for tests and cold paths only; it imports the jitted begin/end lazily.
"""
from __future__ import annotations

import os
import time

import numpy as np

#: Failed tries before a reader starts yielding the CPU between tries. A writer holds a row
#: for tens of nanoseconds; more failures than this mean it was preempted mid-write.
SPIN_TRIES = 64


class SeqlockTable:
    """Python façade: ``read(i)`` / ``snapshot()`` for readers, ``write(i, **fields)`` for tests."""

    def __init__(self, seqs: np.ndarray, rows: np.ndarray, name: str = "table"):
        if seqs.dtype != np.uint64 or seqs.shape != (rows.shape[0],):
            raise ValueError(f"{name}: seqs must be uint64[{rows.shape[0]}]")
        self.seqs, self.rows, self.name = seqs, rows, name

    def __len__(self) -> int:
        return self.rows.shape[0]

    def write(self, i: int, **fields) -> None:
        """Update fields of row ``i`` under the row's seqlock (writer only; loads numba)."""
        from .seqlock import _write_fields

        _write_fields(self.seqs, self.rows, i, fields)

    def read(self, i: int, timeout: float = 1.0) -> np.void:
        """Return a consistent copy of row ``i`` (pure Python, no numba; see module doc).

        Raises ``TimeoutError`` naming the table if the row stayed busy for ``timeout`` s
        (its writer died or was stopped in the middle of a write).
        """
        seqs, rows = self.seqs, self.rows
        deadline = None
        tries = 0
        while True:
            s0 = int(seqs[i])
            if not s0 & 1:
                snap = rows[i].copy()
                if int(seqs[i]) == s0:
                    return snap
            tries += 1
            if tries < SPIN_TRIES:
                continue
            if deadline is None:
                deadline = time.monotonic() + timeout
            elif time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: row {i} stayed busy for {timeout} s")
            os.sched_yield()        # the writer is off-CPU: let it finish its row

    def snapshot(self, timeout: float = 1.0) -> np.ndarray:
        """Consistent copy of every row (each row consistent on its own, not across rows).

        One pass copies all sequence words, all rows, then the sequence words again; only the
        rows whose word changed or was odd are read again one by one.
        """
        s0 = self.seqs.copy()
        out = self.rows.copy()
        s1 = self.seqs.copy()
        for i in np.flatnonzero((s0 != s1) | (s0 & np.uint64(1)).astype(bool)):
            out[i] = self.read(int(i), timeout)
        return out

    def version(self, i: int) -> int:
        """Number of completed writes to row ``i``."""
        return int(self.seqs[i]) // 2
