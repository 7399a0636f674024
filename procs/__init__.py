"""Stages of the engine (feed, book, signal, risk, exec) and the few helpers they share.

A stage module imports the runtime (``pyrt_shm``, ``ringbuf``, ``layouts``) and this
package's helpers, never another stage. The helpers are here because every stage needs
them and a stage must not import a sibling:

* ``check_keys`` / ``int_param`` / ``float_param``: validate ``[stages.<name>.params]`` in
  the stage's constructor, so a bad value fails before any process starts, with the key
  path in the message (``stages.feed.params.rate: must be >= 0, got -1``).
* ``twin``: a private zero-filled array of the same numba type as a real one, for
  ``warm_up`` (compile the step without touching shared rings, tables or counters).
* ``publish``: stamp ``sent_ns`` on freshly written records and commit them.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ringbuf import spsc
from ringbuf._atomics import monotonic_ns


def _where(ctx, key: str) -> str:
    return f"stages.{ctx.name}.params.{key}"


def check_keys(ctx, known) -> None:
    """Raise ValueError naming every parameter of ``ctx`` the stage does not know."""
    unknown = sorted(set(ctx.params) - set(known))
    if unknown:
        raise ValueError("; ".join(f"{_where(ctx, k)}: unknown parameter (known: {', '.join(sorted(known))})"
                                   for k in unknown))


def int_param(ctx, key: str, default: int, lo: int | None = None, hi: int | None = None,
              power_of_two: bool = False) -> int:
    """An integer parameter in ``[lo, hi]``; ValueError naming ``stages.<name>.params.<key>``."""
    v = ctx.param(key, default, kind=int)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        bounds = f"between {lo} and {hi}" if lo is not None and hi is not None else \
            f">= {lo}" if lo is not None else f"<= {hi}"
        raise ValueError(f"{_where(ctx, key)}: must be {bounds}, got {v}")
    if power_of_two and v & (v - 1):
        raise ValueError(f"{_where(ctx, key)}: must be a power of two, got {v}")
    return int(v)


def float_param(ctx, key: str, default: float, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False) -> float:
    """A finite number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``); ints are accepted."""
    v = ctx.param(key, default, kind=(int, float))
    v = float(v)
    bad = not math.isfinite(v) or (lo is not None and (v <= lo if lo_open else v < lo)) \
        or (hi is not None and v > hi)
    if bad:
        lo_s = "" if lo is None else (f"> {lo}" if lo_open else f">= {lo}")
        hi_s = "" if hi is None else f"<= {hi}"
        rule = " and ".join(s for s in (lo_s, hi_s) if s) or "finite"
        raise ValueError(f"{_where(ctx, key)}: must be finite and {rule}, got {v!r}")
    return v


def twin(a: np.ndarray, n: int | None = None) -> np.ndarray:
    """A private zero-filled, C-contiguous, writable 1-D array with ``a``'s dtype (``n`` rows)."""
    return np.zeros(a.shape[0] if n is None else n, a.dtype)


# Called from the duty cycles of NRT-free steps (risk, exec, ...): compiled without numba's
# reference counting, explicitly (numba's cache key ignores the flag); it allocates nothing.
@njit(cache=True, _nrt=False)
def publish(ctl, recs, n):
    """Stamp ``sent_ns`` (CLOCK_MONOTONIC, now) on the ``n`` records written at ``head`` and commit.

    One clock read per batch: every record of a batch leaves at the same instant, and the
    downstream hop latency measures from the moment it became visible.
    """
    if n <= 0:
        return
    now = monotonic_ns()
    start = spsc.head_of(ctl)
    for i in range(n):
        recs[spsc.slot(ctl, start + np.uint64(i))].sent_ns = now
    spsc.commit(ctl, n)


def _is_risk_stage(cls) -> bool:
    return any(c.__module__ == "procs.risk" and c.__name__ == "RiskStage" for c in getattr(cls, "__mro__", ()))


def check_order_source(stage) -> None:
    """Refuse, with a ``WiringError`` naming the ring, an order ring (``stage.inp``) that the
    risk stage does not produce: no order may reach a venue without the pre-trade checks.
    Every venue stage (``procs.exec``, ``procs.alpaca_exec``) calls it at start."""
    from pyrt_shm.wiring import WiringError

    src = getattr(stage.inp, "order_source", None)
    if src is None or not _is_risk_stage(src[1]):
        who = "no stage that tagged it" if src is None else \
            f"stage {src[0]!r} ({src[1].__module__}.{src[1].__name__})"
        raise WiringError([
            f"rings.{stage.inp.name}: stage {stage.name!r} reads orders only from the risk stage "
            f"(procs.risk:RiskStage), but its order ring {stage.inp.name!r} is produced by {who}: "
            f"no order may reach a venue without the pre-trade checks"])
