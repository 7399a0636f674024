"""Jitted batch copies used by the Python façade (one dispatch per batch, not per record)."""
from __future__ import annotations

from numba import njit

from . import spsc


@njit(cache=True)
def offer_batch(ctl, recs, src, drop):
    """Copy as many records of ``src`` as fit; return the number published.

    With ``drop`` set, records that do not fit are counted in ``dropped``.
    """
    n = src.shape[0]
    k = spsc.claim(ctl, n)
    start = spsc.head_of(ctl)
    for i in range(k):
        recs[spsc.slot(ctl, start + i)] = src[i]
    if k:
        spsc.commit(ctl, k)
    if drop and k < n:
        spsc.count_dropped(ctl, n - k)
    return k


@njit(cache=True)
def poll_batch(ctl, recs, out):
    """Copy up to ``len(out)`` records into ``out`` and release them; return the count."""
    k = spsc.poll(ctl, out.shape[0])
    start = spsc.tail_of(ctl)
    for i in range(k):
        out[i] = recs[spsc.slot(ctl, start + i)]
    if k:
        spsc.release(ctl, k)
    return k
