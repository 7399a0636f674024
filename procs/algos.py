"""Execution algorithms: TWAP, VWAP and iceberg parents sliced into child orders (numba).

Where slicing lives: **in the risk stage, before the pre-trade checks.** A parent intent
(``INTENT.algo`` != ALGO_NONE) is accepted into risk's parent table; on each duty cycle
risk asks ``next_child`` whether a child is due, and every child goes through the same
``risk_checks.pretrade`` as any intent before it becomes an ORDER on risk's ring. Exec
therefore still reads orders only from risk's ring, no order reaches a venue without the
checks, and exec stays a plain order router (state machine, rate limit, retries, venue).
Market and limit "algos" are single orders (ALGO_NONE with ORDER_MARKET / ORDER_LIMIT).

Schedules (children are whole shares except possibly the last; the cumulative target after
slice ``i`` is ``floor(qty * F(i))`` and the last slice's target is ``qty``):

* **TWAP**: ``slices`` children at ``start + i * duration // slices`` for i = 0 .. slices-1,
  ``F(i) = (i + 1) / slices``. 1000 in 3 slices -> 333, 333, 334.
* **VWAP**: one child per bucket of the volume profile ``w`` (risk param ``vwap_profile``),
  at ``start + i * duration // n``, ``F(i) = (w_0 + .. + w_i) / sum(w)``.
* **Iceberg**: limit children of ``min(display_qty, qty - filled)`` at the parent's limit;
  the next child goes out when the previous one is done (filled, canceled or rejected).

Catch-up: a TWAP/VWAP child is ``target(i) - sent``, where ``sent`` is the quantity of the
children accepted by the checks less what the venue left unfilled; a child rejected by the
checks (or unfilled at the venue) is made up by the next slice. Several slices due at once
(the stage was late) go out as one child. A parent ends when its last slice is due and no
child is open (TWAP/VWAP; it may end short of ``qty`` if the last children fail), when it is
filled, or when the kill switch or HALTED cancels it. After a rejected iceberg child the next
try waits ``algo_retry_ms``.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from layouts.orders import ALGO_ICEBERG, ALGO_TWAP, ALGO_VWAP

EPS = 1e-9

#: Default VWAP volume profile: a U-shaped session in 10 buckets (open and close heavy).
DEFAULT_VWAP_PROFILE = (0.16, 0.11, 0.09, 0.08, 0.07, 0.07, 0.08, 0.09, 0.11, 0.14)

#: Parent orders (private to the risk stage).
ALGO_PARENT = np.dtype(
    [
        ("id", "<u8"),            #: parent id (engine-unique, from 1; 0 = free slot)
        ("active", "<i8"),
        ("algo", "<i8"),
        ("sym", "<i8"),
        ("side", "<i8"),
        ("order_type", "<i8"),    #: children's order type (ICEBERG: limit)
        ("tif", "<i8"),
        ("qty", "<f8"),
        ("limit_px", "<f8"),
        ("ref_px", "<f8"),
        ("display", "<f8"),
        ("tag", "<i8"),
        ("seq", "<u8"),           #: the parent intent's seq (children carry it)
        ("feed_ns", "<i8"),
        ("start_ns", "<i8"),
        ("duration_ns", "<i8"),
        ("slices", "<i8"),
        ("next_slice", "<i8"),
        ("sent", "<f8"),          #: accepted child qty, less what the venue left unfilled
        ("filled", "<f8"),
        ("open_child", "<u8"),    #: iceberg: the child order working now (0 = none)
        ("open_qty", "<f8"),      #: qty of children not yet done
        ("retry_ns", "<i8"),
        ("children", "<i8"),      #: children accepted
        ("rejected", "<i8"),      #: children rejected by the checks
    ],
    align=True,
)


# Called from risk's duty cycle: compiled without numba's reference counting (``_nrt=False``)
# like their callers; nothing here allocates.
@njit(cache=True, _nrt=False)
def slice_time(start_ns, duration_ns, i, n):
    """When slice ``i`` of ``n`` is due."""
    return start_ns + (duration_ns * i) // n


@njit(cache=True, _nrt=False)
def cum_target(algo, qty, i, n, prof_cum):
    """Cumulative quantity the parent should have sent after slice ``i`` (0-based) of ``n``."""
    if i >= n - 1:
        return qty
    if algo == ALGO_VWAP:
        frac = prof_cum[i] / prof_cum[prof_cum.shape[0] - 1]
    else:
        frac = (i + 1) / n
    return math.floor(qty * frac + EPS)


@njit(cache=True, _nrt=False)
def next_child(a, now, prof_cum):
    """Quantity of the child parent ``a`` should send now (0 = none). Advances the schedule."""
    if a.algo == ALGO_ICEBERG:
        if a.open_child != 0 or now < a.retry_ns:
            return 0.0
        left = a.qty - a.filled
        return min(a.display, left) if left > EPS else 0.0
    n = a.slices
    due = -1
    while a.next_slice < n and now >= slice_time(a.start_ns, a.duration_ns, a.next_slice, n):
        due = a.next_slice
        a.next_slice += 1
    if due < 0:
        return 0.0
    q = cum_target(a.algo, a.qty, due, n, prof_cum) - a.sent
    return q if q > EPS else 0.0


@njit(cache=True, _nrt=False)
def finished(a):
    """True when parent ``a`` has nothing more to do."""
    if a.filled >= a.qty - EPS:
        return True
    if a.algo == ALGO_ICEBERG:
        return False
    return a.next_slice >= a.slices and a.open_qty <= EPS


def profile_cum(profile) -> np.ndarray:
    """Cumulative weights of a VWAP profile (validated: positive finite numbers)."""
    w = np.asarray(profile, dtype=np.float64)
    if w.ndim != 1 or len(w) == 0 or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError(f"a VWAP profile must be a non-empty list of positive numbers, got {profile!r}")
    return np.cumsum(w)


# -- plain-Python schedules (documentation, tests, pre-trade planning) ------------------------

def twap_schedule(qty: float, slices: int, start_ns: int, duration_ns: int) -> list[tuple[int, float]]:
    """[(due_ns, child_qty)] of a TWAP parent whose children all fill."""
    out, sent = [], 0.0
    for i in range(slices):
        target = qty if i == slices - 1 else math.floor(qty * (i + 1) / slices + EPS)
        out.append((start_ns + duration_ns * i // slices, target - sent))
        sent = target
    return out


def vwap_schedule(qty: float, profile, start_ns: int, duration_ns: int) -> list[tuple[int, float]]:
    """[(due_ns, child_qty)] of a VWAP parent whose children all fill."""
    cum = profile_cum(profile)
    n = len(cum)
    out, sent = [], 0.0
    for i in range(n):
        target = qty if i == n - 1 else math.floor(qty * cum[i] / cum[-1] + EPS)
        out.append((start_ns + duration_ns * i // n, target - sent))
        sent = target
    return out


def iceberg_children(qty: float, display: float) -> list[float]:
    """Child quantities of an iceberg whose children all fill."""
    out, left = [], qty
    while left > EPS:
        out.append(min(display, left))
        left -= out[-1]
    return out


ALGO_NAMES = {"twap": ALGO_TWAP, "vwap": ALGO_VWAP, "iceberg": ALGO_ICEBERG}
