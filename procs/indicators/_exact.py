"""Error-free float transforms and the compensated window sum the indicators share.

Why: a window indicator kept as a plain running sum (``s += x_new - x_old``, TA-Lib's SMA,
WMA and STDDEV) drifts. Every update leaves a rounding error behind and nothing ever takes
it out: after a price level change from 1e6 to 1 the stale error of the old level exceeds
1e-9 of the new sum, and the Bollinger variance ``E[x^2] - E[x]^2`` of a quiet window
(std 1 cent on a 100-dollar price) loses eight digits.

The fix costs a few flops and stays O(1):

* ``two_sum(a, b) -> (s, e)``: ``s = fl(a + b)`` and the exact error ``e`` (Knuth, branch-free).
* ``two_prod(a, b) -> (p, e)``: ``p = fl(a * b)`` and the exact error (Dekker's split, no FMA:
  numba emits no FMA contraction without fastmath, so the split stays exact).
* ``acc_add(state, k, x)``: ``state[k] += x`` with the rounding error accumulated into
  ``state[k + 1]``. The pair ``(hi, lo)`` carries the running sum; ``hi + lo`` is correct to
  about ``eps * |sum|`` however many updates went by, because every rounding error of ``hi``
  is captured exactly and only the tiny ``lo`` is ever rounded. Only one add (``hi + x``)
  sits on the loop-carried dependency chain, so the compensation runs in parallel.

A window update adds the new value and removes the old one as one exact difference
(``slide``).

Limits: inputs must be finite (a NaN or inf poisons the sums until ``*_init``, as in
TA-Lib) and magnitudes below ~1e150 (the split overflows near 1e300).
"""
from __future__ import annotations

from numba import njit

_SPLIT = 134217729.0  # 2**27 + 1: Dekker's splitter for 53-bit doubles


@njit(cache=True, inline="always")
def two_sum(a, b):
    """``(fl(a + b), error)`` with ``a + b == s + e`` exactly (Knuth's TwoSum)."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


@njit(cache=True, inline="always")
def _split(a):
    c = _SPLIT * a
    hi = c - (c - a)
    return hi, a - hi


@njit(cache=True, inline="always")
def two_prod(a, b):
    """``(fl(a * b), error)`` with ``a * b == p + e`` exactly (Dekker's TwoProduct)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


@njit(cache=True, inline="always")
def two_sqr(a):
    """``(fl(a * a), error)`` with ``a * a == p + e`` exactly."""
    p = a * a
    ah, al = _split(a)
    e = ((ah * ah - p) + 2.0 * ah * al) + al * al
    return p, e


@njit(cache=True, inline="always")
def acc_add(state, k, x):
    """``state[k] += x``; the exact rounding error goes into ``state[k + 1]``."""
    s, e = two_sum(state[k], x)
    state[k] = s
    state[k + 1] += e


@njit(cache=True, inline="always")
def slide(hi, lo, x_new, x_old):
    """The compensated sum ``(hi, lo)`` with ``x_old`` replaced by ``x_new`` -> ``(hi, lo)``.

    The difference is taken exactly (``two_sum``) and added with its error captured, so
    only ``lo`` ever rounds. Shared by the streaming updates (``acc_slide``) and the batch
    loops that hold the sum in registers: the same operations, so the same bits.
    """
    d, e = two_sum(x_new, -x_old)
    s, e2 = two_sum(hi, d)
    return s, lo + (e + e2)


@njit(cache=True, inline="always")
def acc_slide(state, k, x_new, x_old):
    """``slide`` on the compensated sum stored at ``state[k], state[k + 1]``."""
    state[k], state[k + 1] = slide(state[k], state[k + 1], x_new, x_old)


@njit(cache=True)
def check_state(state, need):
    """Raise ValueError if ``state`` is shorter than ``need`` (called by every ``*_init``)."""
    if state.shape[0] < need:
        raise ValueError("indicator state array too short: use the matching *_state_len()")
