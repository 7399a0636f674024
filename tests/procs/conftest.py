"""Stage tests run over the embedded default topology in private memory (no /dev/shm, no processes).

A test builds the engine's memory with ``EngineMemory(..., backend="local")``, builds the one
stage it tests, and plays the neighbours itself through the rings' Python façade: it ``put``s
records into the stage's input ring (as the upstream producer) and ``poll``s its output ring
(as the downstream consumer).
"""
from __future__ import annotations

import numpy as np
import pytest

from pyrt_shm.config import load_topology, override_from_dotted
from pyrt_shm.wiring import EngineMemory

#: The embedded default names the signal stage ``procs.signal:SignalStage``; the class is
#: ``procs.signal:EmaCrossSignal``. Overriding it here keeps the tests independent of that.
SIGNAL_CLASS = {"stages.signal.class": "procs.signal:EmaCrossSignal"}


def _build(flat: dict | None = None) -> EngineMemory:
    over = dict(SIGNAL_CLASS)
    over.update(flat or {})
    topo = load_topology(None, overrides=override_from_dotted(over),
                         available_cpus={0, 1}, isolated_cpus=())
    return EngineMemory(topo, backend="local")


@pytest.fixture(scope="session")
def engine():
    """``engine(flat_overrides=None) -> EngineMemory`` over the embedded default (local backend).

    Session-scoped so hypothesis tests may use it; each call builds fresh memory.
    """
    return _build


def drain(ring) -> np.ndarray:
    """Everything readable in ``ring`` (as its consumer)."""
    out = []
    while True:
        got = ring.poll(4096)
        if len(got) == 0:
            break
        out.append(got)
    return np.concatenate(out) if out else np.zeros(0, ring.dtype)


@pytest.fixture(scope="session")
def drain_ring():
    """``drain_ring(ring) -> records``: consume everything readable in ``ring``."""
    return drain


def run_until_idle(stage, now: int = 0, max_cycles: int = 100_000) -> int:
    total = 0
    for _ in range(max_cycles):
        w = stage.do_work(now)
        if not w:
            return total
        total += w
    raise AssertionError(f"{stage.name} still busy after {max_cycles} cycles")


@pytest.fixture(scope="session")
def run_idle():
    """``run_idle(stage, now=0) -> work``: call ``do_work`` until it does nothing."""
    return run_until_idle
