"""Lamport single-producer/single-consumer ring: the algorithm, as jitted functions.

A ring is two arrays laid over one shared-memory segment: ``ctl``, the control block viewed
as ``uint64[CONTROL_WORDS]`` (see ``layouts.ring``), and ``recs``, a structured array of
``capacity`` records. Cursors count records ever published (``head``) and consumed
(``tail``); they never wrap, and a slot is ``cursor & mask``.

Memory ordering (see ``ringbuf._atomics`` for the rule):

* producer: ``claim`` -> write fields of ``recs[(start + i) & mask]`` in place ->
  ``commit`` (store-release ``head``). The release store publishes the record stores.
* consumer: ``poll`` (load-acquire ``head``) -> read the records -> ``release``
  (store-release ``tail``), which hands the slots back to the producer.
* Each side keeps a cached copy of the other's cursor in its own line group and re-reads
  the shared cursor only when the cached one says "full" / "empty", so the steady state
  touches no line the other core writes.

Ownership: only the producer writes ``head``, ``cached_tail``, ``times_full``, ``dropped``;
only the consumer writes ``tail``, ``cached_head``, ``high_water``, ``parked``. Stats are
plain loads/stores by their single writer; readers load them relaxed.

The hot functions return counts, never raise (a status code is cheaper than an exception
in numba and cannot unwind through a duty cycle).

Integer types: cursors and counts are ``uint64`` throughout (``claim`` and ``poll`` return
``uint64``). Numba types ``uint64 op int64`` as ``float64``, which is exact only below 2**53,
so every count that meets a cursor is cast to ``np.uint64`` first.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from layouts.ring import (
    IDX_CACHED_HEAD,
    IDX_CACHED_TAIL,
    IDX_CAPACITY,
    IDX_DROPPED,
    IDX_HEAD,
    IDX_HIGH_WATER,
    IDX_MASK,
    IDX_PARKED,
    IDX_TAIL,
    IDX_TIMES_FULL,
)

from ._atomics import fence_seq_cst, load_acquire, load_relaxed, store_release


@njit(cache=True, inline="always")
def claim(ctl, n):
    """Producer: return how many of ``n`` slots starting at ``head`` are free (0..n).

    Counts a "times full" event when fewer than ``n`` slots are free. Does not publish: write the
    records at ``slot(ctl, head(ctl) + i)`` then call ``commit``.
    """
    want = np.uint64(n)
    head = ctl[IDX_HEAD]                      # own cursor: a plain load is fine
    cap = ctl[IDX_CAPACITY]
    free = cap - (head - ctl[IDX_CACHED_TAIL])
    if free < want:
        ctl[IDX_CACHED_TAIL] = load_acquire(ctl, IDX_TAIL)
        free = cap - (head - ctl[IDX_CACHED_TAIL])
        if free < want:
            ctl[IDX_TIMES_FULL] += np.uint64(1)
            return free
    return want


@njit(cache=True, inline="always")
def head_of(ctl):
    """Producer: the next cursor to write (own cursor, plain load)."""
    return ctl[IDX_HEAD]


@njit(cache=True, inline="always")
def commit(ctl, n):
    """Producer: publish ``n`` claimed records (store-release of the head cursor)."""
    store_release(ctl, IDX_HEAD, ctl[IDX_HEAD] + np.uint64(n))


@njit(cache=True, inline="always")
def count_dropped(ctl, n):
    """Producer, ``drop`` policy: count ``n`` records that did not fit."""
    ctl[IDX_DROPPED] += np.uint64(n)


@njit(cache=True, inline="always")
def poll(ctl, limit):
    """Consumer: return how many records (0..limit) are readable starting at ``tail``.

    Read them at ``slot(ctl, tail_of(ctl) + i)``, then call ``release``.
    """
    lim = np.uint64(limit)
    tail = ctl[IDX_TAIL]                      # own cursor
    avail = ctl[IDX_CACHED_HEAD] - tail
    if avail == 0:
        ctl[IDX_CACHED_HEAD] = load_acquire(ctl, IDX_HEAD)
        avail = ctl[IDX_CACHED_HEAD] - tail
        if avail > ctl[IDX_HIGH_WATER]:
            ctl[IDX_HIGH_WATER] = avail
        if avail == 0:
            return avail                      # uint64 zero: keeps the return type uint64
    return avail if avail <= lim else lim


@njit(cache=True, inline="always")
def tail_of(ctl):
    """Consumer: the next cursor to read (own cursor, plain load)."""
    return ctl[IDX_TAIL]


@njit(cache=True, inline="always")
def release(ctl, n):
    """Consumer: hand ``n`` read slots back to the producer (store-release of the tail)."""
    store_release(ctl, IDX_TAIL, ctl[IDX_TAIL] + np.uint64(n))


@njit(cache=True, inline="always")
def slot(ctl, cursor):
    """Index into ``recs`` of the record at ``cursor``."""
    return cursor & ctl[IDX_MASK]


@njit(cache=True, inline="always")
def depth(ctl):
    """Records published and not yet released (exact only when read by one of the parties)."""
    return load_acquire(ctl, IDX_HEAD) - load_acquire(ctl, IDX_TAIL)


# ---- park / wake handshake ------------------------------------------------------------
# A parked consumer sleeps on a POSIX semaphore. Lost wake-ups are prevented by a
# Dekker-style handshake, which needs a StoreLoad barrier on both sides:
#   consumer: parked = 1; fence_seq_cst; if poll() > 0: parked = 0, don't sleep
#   producer: commit (head); fence_seq_cst; if parked: post the semaphore
# Either the consumer sees the new head, or the producer sees parked == 1.
# Compiled without numba's reference counting (``_nrt=False``), explicitly: they allocate
# nothing, and numba's cache key ignores the flag (the first caller would decide it).

@njit(cache=True, _nrt=False)
def prepare_park(ctl):
    """Consumer: announce the intent to park; return records available (0 = safe to sleep)."""
    store_release(ctl, IDX_PARKED, 1)
    fence_seq_cst()
    n = poll(ctl, 1)
    if n:
        store_release(ctl, IDX_PARKED, 0)
    return n


@njit(cache=True, _nrt=False)
def unpark(ctl):
    """Consumer: clear the parked flag after waking."""
    store_release(ctl, IDX_PARKED, 0)


@njit(cache=True, _nrt=False)
def needs_wake(ctl):
    """Producer, after ``commit``: 1 if the consumer is parked and must be woken."""
    fence_seq_cst()
    return load_relaxed(ctl, IDX_PARKED)
