"""Record latencies from numba into HDR histogram rows (``layouts.histogram.HISTOGRAM``).

Why not ``hdrh``: its ``record_value`` is pure Python (~1 µs a call) and its counts live in a
private ctypes array. Here the hot path does HdrHistogram's bucket maths inline (a few ns) into
an int64 counts array that can live in shared memory; ``pyrt_shm.hdr_convert`` turns a row into
an ``hdrh.HdrHistogram`` off the hot path.

Value policy (ns, converted to int64 first):

* ``value <= 0`` is recorded as ``LOWEST`` (1 ns). Such values are clock artefacts (two reads in
  one tick, or timestamps from different clocks); dropping them would hide that work happened.
* ``value > HIGHEST`` (60 s) is recorded as ``HIGHEST`` and also counted in ``overflow``, so
  the count stays right and the clamping stays visible.
* ``min``/``max``/``sum`` describe the values as recorded (after clamping); ``min == 0``
  means "nothing recorded yet", which makes a zero-filled row a valid empty histogram.

Concurrency: each row has exactly one writer, so plain loads and stores suffice; no atomics.
Every field is 8-byte aligned (rows are multiples of 64 bytes in page-aligned mappings), and
aligned 8-byte stores are not torn on x86-64, so a reader sees each word either before or after
a store. A reader copies a snapshot of the row and may catch a record in flight (a count already
incremented but ``total`` not yet, or the reverse); conversion therefore recomputes the total
from the copied counts and never trusts ``total`` for percentiles. Nothing may poll these fields
in a jitted loop (plain loads can be hoisted out of it); they are read by copying, off the hot path.

Row indices are not bounds-checked (numba does not check them): pass a valid row.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from layouts.histogram import (
    HIGHEST,
    LOWEST,
    SUB_BUCKET_HALF_COUNT,
    SUB_BUCKET_HALF_COUNT_MAGNITUDE,
    SUB_BUCKET_MASK,
    UNIT_MAGNITUDE,
)

_SHCM = SUB_BUCKET_HALF_COUNT_MAGNITUDE
_HALF = SUB_BUCKET_HALF_COUNT
_MASK = np.uint64(SUB_BUCKET_MASK)


@intrinsic
def _clz64(typingctx, x):
    """Leading zeros of a uint64 (``llvm.ctlz.i64``: one ``lzcnt``/``bsr``). ``x == 0`` gives 64."""
    if x != types.uint64:
        raise TypeError("_clz64 expects uint64, got %s" % (x,))

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        fnty = ir.FunctionType(i64, [i64, ir.IntType(1)])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.ctlz.i64")
        return builder.call(fn, [args[0], ir.Constant(ir.IntType(1), 0)])

    return types.uint64(types.uint64), codegen


@njit(cache=True, inline="always")
def hdr_index(value):
    """Counts index of ``value`` (0 <= value <= HIGHEST), exactly HdrHistogram's ``counts_index``.

    ``bucket`` is the power-of-two range of ``value`` above the linear first bucket (from the
    bit length of ``value | sub_bucket_mask``); ``sub`` is the top bits of ``value`` inside it.
    """
    bit_length = 64 - np.int64(_clz64(np.uint64(value) | _MASK))
    bucket = bit_length - UNIT_MAGNITUDE - (_SHCM + 1)
    sub = np.int64(value) >> (bucket + UNIT_MAGNITUDE)
    return ((bucket + 1) << _SHCM) + (sub - _HALF)


@njit(cache=True, inline="always")
def _value_range(index):
    """Lowest value of counts ``index`` and the width of its range (HdrHistogram's inverse)."""
    bucket = (index >> _SHCM) - 1
    sub = (index & (_HALF - 1)) + _HALF
    if bucket < 0:
        sub -= _HALF
        bucket = 0
    return sub << (bucket + UNIT_MAGNITUDE), np.int64(1) << (bucket + UNIT_MAGNITUDE)


@njit(cache=True, inline="always")
def _record(h, value, count):
    """Record ``value`` ``count`` times into row view ``h`` under the value policy.

    Returns the value as recorded (clamped). Counts are stored before the header, though a
    reader must not rely on that order (see the module docstring).
    """
    v = np.int64(value)
    if v < LOWEST:
        v = np.int64(LOWEST)
    elif v > HIGHEST:
        v = np.int64(HIGHEST)
        h.overflow += count
    h.counts[hdr_index(v)] += count
    h.total += count
    h.sum += np.float64(v) * count
    if h.min == 0 or v < h.min:
        h.min = v
    if v > h.max:
        h.max = v
    return v


# The recorders are called from every stage's duty cycle (and from the generated loops): compiled
# without numba's reference counting (``_nrt=False``), explicitly, because numba's cache key
# ignores the flag, so otherwise the first caller to compile them would decide it. They
# allocate nothing.
@njit(cache=True, _nrt=False)
def hdr_record(hists, i, value_ns):
    """Record one latency ``value_ns`` into row ``i`` of ``hists`` (an array of HISTOGRAM)."""
    _record(hists[i], value_ns, 1)


@njit(cache=True, _nrt=False)
def hdr_record_n(hists, i, value, count):
    """Record ``value`` ``count`` times (like ``hdrh`` ``record_value(value, count)``).

    ``count < 1`` records nothing. An overflowing value adds ``count`` to ``overflow``.
    """
    if count >= 1:
        _record(hists[i], value, np.int64(count))


@njit(cache=True, _nrt=False)
def hdr_record_corrected(hists, i, value, expected_interval):
    """Record ``value`` and back-fill the samples a stall of ``value`` hid (coordinated omission).

    Same values as ``hdrh`` ``record_corrected_value``: ``value``, then ``value - k*interval``
    for every k >= 1 while the previous value exceeded ``interval``; that is, k = 1 ..
    ``(value - 1) // interval``. (Java and C HdrHistogram back-fill only values >= interval;
    ``hdrh`` also records the last step when it falls in ``(0, interval)``.) ``interval <= 0``
    records ``value`` alone. The back-fill starts from the clamped value, and when it has more
    steps than the counts it touches, it adds each count's share arithmetically, so a 60 s
    stall with a 1 ns interval costs ~27k additions, not 6e10.
    """
    h = hists[i]
    v = _record(h, value, 1)
    e = np.int64(expected_interval)
    if e <= 0 or v <= e:
        return
    n = (v - 1) // e  # back-filled values: v - e, v - 2e, ..., v - n*e (all >= 1)
    top = v - e
    bottom = v - n * e
    i_top = hdr_index(top)
    i_bottom = hdr_index(bottom)
    if n <= i_top - i_bottom + 1:
        for k in range(1, n + 1):
            h.counts[hdr_index(v - k * e)] += 1
    else:
        for j in range(i_bottom, i_top + 1):
            lo, width = _value_range(j)
            k_lo = max((v - (lo + width - 1) + e - 1) // e, 1)  # smallest k with v - k*e <= hi
            k_hi = min((v - lo) // e, n)                        # largest k with v - k*e >= lo
            if k_hi >= k_lo:
                h.counts[j] += k_hi - k_lo + 1
    h.total += n
    h.sum += np.float64(n) * v - np.float64(e) * (np.float64(n) * (n + 1) / 2.0)
    if bottom < h.min:
        h.min = bottom  # max is already >= v > top


@njit(cache=True)
def hdr_reset(hists, i):
    """Zero row ``i`` (only its writer may do this; readers then see an empty histogram)."""
    h = hists[i]
    h.counts[:] = 0
    h.total = 0
    h.min = 0
    h.max = 0
    h.sum = 0.0
    h.overflow = 0
