"""Shared-memory primitives: atomics and clock intrinsics, SPSC ring, seqlock table, idle strategies."""
