"""``SpscRing``: the plain-Python façade over a ring's control block and records.

For tools, tests and cold paths. Hot paths call ``ringbuf.spsc`` from jitted code with
``ring.ctl`` and ``ring.recs`` directly; each façade call costs one numba dispatch
(~0.3 µs), so batch.

Ownership: whoever lays a ring into memory (``init_in``) owns its lifetime; the façade
never frees or unlinks anything. Exactly one process may call the producer methods
(``offer``, ``put``) and exactly one the consumer methods (``poll``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from layouts.common import align_up, dtype_hash
from layouts.ring import (
    CONTROL_WORDS,
    FULL_BLOCK,
    FULL_DROP,
    FULL_POLICY_NAMES,
    IDX_CAPACITY,
    IDX_DROPPED,
    IDX_FULL_POLICY,
    IDX_HEAD,
    IDX_HIGH_WATER,
    IDX_MASK,
    IDX_RECORD_HASH,
    IDX_RECORD_SIZE,
    IDX_TAIL,
    IDX_TIMES_FULL,
    RING_CONTROL,
)

from .errors import RingError

MAX_CAPACITY = 1 << 26


@dataclass(frozen=True)
class RingStatistics:
    capacity: int
    depth: int          #: published - consumed, at the moment of reading
    high_water: int     #: largest depth the consumer has seen
    times_full: int     #: producer claims that found no free slot
    dropped: int        #: records dropped under the ``drop`` policy
    published: int      #: head cursor
    consumed: int       #: tail cursor
    full_policy: str


def ring_bytes(record_dtype: np.dtype, capacity: int) -> int:
    """Bytes a ring of ``capacity`` records of ``record_dtype`` needs (control + records)."""
    return align_up(RING_CONTROL.itemsize) + capacity * np.dtype(record_dtype).itemsize


def check_capacity(capacity: int, where: str = "ring") -> None:
    if not isinstance(capacity, (int, np.integer)) or capacity < 2 or capacity & (capacity - 1) \
            or capacity > MAX_CAPACITY:
        raise RingError(f"{where}: capacity {capacity!r} must be a power of two in 2..{MAX_CAPACITY}")


class SpscRing:
    """A view of one SPSC ring laid over a buffer (usually a shared-memory mapping)."""

    def __init__(self, ctl: np.ndarray, recs: np.ndarray, name: str = "ring"):
        self.ctl = ctl
        self.recs = recs
        self.name = name
        self.dtype = recs.dtype
        self._drop = bool(ctl[IDX_FULL_POLICY] == FULL_DROP)

    # -- laying out / attaching ---------------------------------------------------------
    @classmethod
    def init_in(cls, buf, offset: int, record_dtype: np.dtype, capacity: int,
                full_policy: int = FULL_BLOCK, name: str = "ring") -> "SpscRing":
        """Lay a new, empty ring into ``buf`` at ``offset`` (creator only)."""
        check_capacity(capacity, name)
        if full_policy not in FULL_POLICY_NAMES:
            raise RingError(f"{name}: unknown full policy {full_policy!r}")
        record_dtype = np.dtype(record_dtype)
        ctl, recs = cls._views(buf, offset, record_dtype, capacity)
        ctl[:] = 0
        ctl[IDX_CAPACITY] = capacity
        ctl[IDX_MASK] = capacity - 1
        ctl[IDX_RECORD_SIZE] = record_dtype.itemsize
        ctl[IDX_RECORD_HASH] = dtype_hash(record_dtype)
        ctl[IDX_FULL_POLICY] = full_policy
        return cls(ctl, recs, name)

    @classmethod
    def attach_in(cls, buf, offset: int, record_dtype: np.dtype, name: str = "ring") -> "SpscRing":
        """View an existing ring; refuse if its records are not ``record_dtype``."""
        record_dtype = np.dtype(record_dtype)
        probe = np.ndarray((CONTROL_WORDS,), np.uint64, buffer=buf, offset=offset)
        capacity = int(probe[IDX_CAPACITY])
        check_capacity(capacity, name)
        want = dtype_hash(record_dtype)
        have = int(probe[IDX_RECORD_HASH])
        if have != want or int(probe[IDX_RECORD_SIZE]) != record_dtype.itemsize:
            raise RingError(
                f"{name}: record dtype mismatch: the ring holds records of hash {have:#x} and "
                f"itemsize {int(probe[IDX_RECORD_SIZE])}, the caller expects hash {want:#x} and "
                f"itemsize {record_dtype.itemsize}")
        ctl, recs = cls._views(buf, offset, record_dtype, capacity)
        return cls(ctl, recs, name)

    @staticmethod
    def _views(buf, offset, record_dtype, capacity):
        size = ring_bytes(record_dtype, capacity)
        if memoryview(buf).nbytes < offset + size:      # bytes, whatever the item type
            raise RingError(f"buffer too small for a ring of {capacity} x {record_dtype.itemsize} B")
        ctl = np.ndarray((CONTROL_WORDS,), np.uint64, buffer=buf, offset=offset)
        recs = np.ndarray((capacity,), record_dtype, buffer=buf,
                          offset=offset + align_up(RING_CONTROL.itemsize))
        return ctl, recs

    # -- producer -------------------------------------------------------------------------
    def offer(self, records: np.ndarray) -> int:
        """Publish as many of ``records`` as fit, without waiting; return how many.

        Under the ``drop`` policy the rest are counted as dropped; under ``block`` the caller
        keeps them and retries (see ``put``).
        """
        records = self._check(records)
        from ._ring_batch import offer_batch
        return int(offer_batch(self.ctl, self.recs, records, self._drop))

    def put(self, records: np.ndarray, timeout: float | None = None, idle=None) -> int:
        """Publish all of ``records``, waiting while the ring is full (``block`` policy).

        Raises ``TimeoutError`` naming the ring if not done within ``timeout`` seconds.
        """
        records = self._check(records)
        from ._ring_batch import offer_batch
        from .idle import YieldIdle
        idle = idle or YieldIdle()
        deadline = None if timeout is None else time.monotonic() + timeout
        done = 0
        while done < len(records):
            k = int(offer_batch(self.ctl, self.recs, records[done:], False))
            done += k
            if k == 0:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name}: ring full for {timeout} s "
                                       f"({done}/{len(records)} records published)")
                idle.idle(0)
            else:
                idle.reset()
        return done

    # -- consumer -------------------------------------------------------------------------
    def poll(self, max_records: int = 1024) -> np.ndarray:
        """Take up to ``max_records`` records; return them as a new array (may be empty)."""
        from ._ring_batch import poll_batch
        out = np.empty(max_records, self.dtype)
        k = int(poll_batch(self.ctl, self.recs, out))
        return out[:k]

    # -- observers ------------------------------------------------------------------------
    def statistics(self) -> RingStatistics:
        c = self.ctl
        head, tail = int(c[IDX_HEAD]), int(c[IDX_TAIL])
        return RingStatistics(
            capacity=int(c[IDX_CAPACITY]), depth=max(head - tail, 0),
            high_water=int(c[IDX_HIGH_WATER]), times_full=int(c[IDX_TIMES_FULL]),
            dropped=int(c[IDX_DROPPED]), published=head, consumed=tail,
            full_policy=FULL_POLICY_NAMES.get(int(c[IDX_FULL_POLICY]), "?"))

    def _check(self, records) -> np.ndarray:
        if not isinstance(records, np.ndarray) or records.dtype != self.dtype:
            got = getattr(records, "dtype", type(records).__name__)
            raise RingError(f"{self.name}: records must be an array of dtype {self.dtype}, got {got}")
        return records.reshape(-1) if records.ndim != 1 else records

    def __repr__(self):
        s = self.statistics()
        return f"SpscRing({self.name!r}, capacity={s.capacity}, depth={s.depth}, policy={s.full_policy})"
