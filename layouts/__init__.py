"""Every record and table that lies in shared memory, as numpy structured dtypes.

This package imports numpy and nothing else of ours: it is the single source of truth
for offsets. Offsets are always read from ``dtype.fields``, never typed by hand.
"""
