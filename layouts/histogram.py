"""HDR latency histogram row: HdrHistogram's counts array plus a small header, one writer each.

The counts array uses HdrHistogram's exact bucket layout for ``HdrHistogram(LOWEST, HIGHEST,
SIGFIGS)`` so a reader can copy it straight into an ``hdrh`` object (``ctypes.memmove``) and
get the same percentiles, encoding and merging as if ``hdrh`` had recorded the values itself.
The derived constants below use HdrHistogram's own formulas (``hdrh/histogram.py``
``__init__`` and ``get_bucket_count``); a test checks them against ``hdrh``.

One row (``HISTOGRAM.itemsize`` = 221,248 bytes, a multiple of 64)::

    +------------------------+  0
    | total     i8           |  values recorded (clamped ones included)
    | min       i8           |  smallest value recorded, 0 while the row is empty
    | max       i8           |  largest value recorded (<= HIGHEST)
    | sum       f8           |  sum of recorded values, for an exact mean; f8 cannot overflow
    | overflow  i8           |  values above HIGHEST, recorded as HIGHEST
    | (pad to 64)            |
    +------------------------+  64
    | counts    i8[27,648]   |  HdrHistogram counts, index = counts_index(value)
    +------------------------+  221,248

A segment holds ``np.ndarray((n,), HISTOGRAM, buffer=...)``; each row has exactly one writer,
so no field needs padding against false sharing beyond starting each row on a cache line.
A zero-filled row is a valid empty histogram.
"""
from __future__ import annotations

import math
import sys

import numpy as np

from .common import CACHE_LINE, align_up

#: Lowest discernible value: 1 ns.
LOWEST = 1
#: Highest trackable value: 60 s in ns. Larger values are clamped and counted in ``overflow``.
HIGHEST = 60_000_000_000
#: Significant decimal digits kept at every magnitude (0.1 % resolution).
SIGFIGS = 3


def _bucket_count(value: int, sub_bucket_count: int, unit_magnitude: int) -> int:
    """Buckets needed to cover ``value`` (HdrHistogram's ``get_bucket_count``)."""
    smallest_untrackable_value = sub_bucket_count << unit_magnitude
    buckets_needed = 1
    while smallest_untrackable_value <= value:
        if smallest_untrackable_value > sys.maxsize // 2:
            return buckets_needed + 1
        smallest_untrackable_value <<= 1
        buckets_needed += 1
    return buckets_needed


UNIT_MAGNITUDE = int(math.floor(math.log(LOWEST) / math.log(2)))
_SUB_BUCKET_COUNT_MAGNITUDE = int(math.ceil(math.log(2 * math.pow(10, SIGFIGS)) / math.log(2)))
SUB_BUCKET_HALF_COUNT_MAGNITUDE = max(_SUB_BUCKET_COUNT_MAGNITUDE - 1, 0)
SUB_BUCKET_COUNT = int(math.pow(2, SUB_BUCKET_HALF_COUNT_MAGNITUDE + 1))
SUB_BUCKET_HALF_COUNT = SUB_BUCKET_COUNT // 2
SUB_BUCKET_MASK = (SUB_BUCKET_COUNT - 1) << UNIT_MAGNITUDE
BUCKET_COUNT = _bucket_count(HIGHEST, SUB_BUCKET_COUNT, UNIT_MAGNITUDE)
COUNTS_LEN = (BUCKET_COUNT + 1) * (SUB_BUCKET_COUNT // 2)

#: Header fields in the row's first cache line; counts start on the next one.
_HEADER = [("total", "<i8"), ("min", "<i8"), ("max", "<i8"), ("sum", "<f8"), ("overflow", "<i8")]
_COUNTS_OFFSET = CACHE_LINE

HISTOGRAM = np.dtype(
    {
        "names": [name for name, _ in _HEADER] + ["counts"],
        "formats": [fmt for _, fmt in _HEADER] + [("<i8", (COUNTS_LEN,))],
        "offsets": [8 * k for k in range(len(_HEADER))] + [_COUNTS_OFFSET],
        "itemsize": align_up(_COUNTS_OFFSET + 8 * COUNTS_LEN, CACHE_LINE),
    },
    align=True,
)
