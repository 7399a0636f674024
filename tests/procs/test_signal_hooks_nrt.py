"""Strategy hooks that need numba's reference counting run under the NRT-free signal step.

The generated signal step and the process's native loop are compiled with ``_nrt=False``;
a hook that allocates (``np.zeros``) or returns a view would not compile under them if it
were compiled there first. ``procs.signal.compile_hooks`` compiles the hooks from Python
first (with NRT), so such a strategy must still run: through ``SignalStage.do_work`` and
through the generated NRT-free duty loop (``pyrt_shm.jit_loop.JitProcessLoop``).

The hooks are ``cache=False`` and the generated step and loop are written to a fresh cache
directory (``PYRT_CACHE_DIR``), so each session compiles them afresh: a step loaded from an
on-disk cache never compiles its hooks, and would pass even without ``compile_hooks``.
"""
from __future__ import annotations

import time
from types import MappingProxyType

import numpy as np
import pytest
from numba import njit

from layouts.market import TICK_QUOTE
from layouts.orders import BOOK_EVENT, BUY, SELL
from procs import twin
from procs.strategy import NumbaStrategy, emit
from pyrt_shm.jit_loop import MODE_YIELD, JitProcessLoop

HERE = __name__


@njit(cache=False)
def _row(state, s):
    return state[s]                     # a view: NRT callers take a reference to it


@njit(cache=False)
def alloc_on_quote(ev, state, out):
    """Every 3rd quote of a symbol: BUY when its mid rose over those 3, else SELL; the
    quantity is the count so far (scratch array allocated per call)."""
    tmp = np.zeros(3)                   # allocates: needs NRT
    tmp[0] = 0.5 * (ev.bid + ev.ask)
    r = _row(state, ev.sym)
    r[0] += 1.0
    if r[0] == 1.0:
        r[1] = tmp[0]
    if r[0] % 3.0 != 0.0:
        return 0
    side = BUY if tmp[0] > r[1] else SELL
    r[1] = tmp[0]
    return emit(out, 0, ev.sym, side, r[0] + tmp[2])


class AllocatingHooks(NumbaStrategy):
    on_quote = alloc_on_quote

    def make_state(self):
        return np.zeros((len(self.ctx.symbols), 2))


@pytest.fixture(autouse=True)
def _cold_generated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRT_CACHE_DIR", str(tmp_path))


def _quotes(mids):
    """BOOK_EVENTs for (sym, mid) pairs; spread 0.02."""
    e = np.zeros(len(mids), BOOK_EVENT)
    for i, (sym, mid) in enumerate(mids):
        e[i]["tick_seq"], e[i]["feed_ns"], e[i]["sent_ns"] = i, 1000 + i, 2000 + i
        e[i]["sym"], e[i]["kind"], e[i]["valid"] = sym, TICK_QUOTE, 1
        e[i]["bid"], e[i]["ask"] = mid - 0.01, mid + 0.01
    return e


#: sym 0 rises over its 3 quotes, sym 1 falls; then sym 0 falls.
MIDS = [(0, 10.0), (1, 20.0), (0, 10.5), (1, 19.0), (0, 11.0), (1, 18.0), (0, 10.0), (0, 9.0), (0, 8.0)]
EXPECTED = [(0, BUY, 3.0), (1, SELL, 3.0), (0, SELL, 6.0)]


def _stage(engine):
    mem = engine({"stages.signal.class": "procs.signal:SignalStage"})
    ctx = mem.stage_context("signal")
    ctx.params = MappingProxyType({"strategy": f"{HERE}:AllocatingHooks"})
    return mem, mem.classes["signal"](ctx)


def _got(intents):
    return [(int(o["sym"]), int(o["side"]), float(o["qty"])) for o in intents]


def test_allocating_hooks_run_through_the_step(engine, drain_ring):
    mem, sig = _stage(engine)
    assert sig.flavour == "numba" and sig.step is not None
    mem.rings["top"].put(_quotes(MIDS))
    out = []
    for _ in range(100):                # bounded: 9 events take one or two cycles
        if not sig.do_work(0):
            break
        out.append(drain_ring(mem.rings["intent"]))
    out.append(drain_ring(mem.rings["intent"]))
    got = np.concatenate(out)
    assert _got(got) == EXPECTED
    assert sig.counter("events_in") == len(MIDS) and sig.counter("intents_out") == len(EXPECTED)
    assert sig.state[:, 0].tolist()[:2] == [6.0, 3.0]


def test_allocating_hooks_run_in_the_nrt_free_process_loop(engine, drain_ring):
    mem, sig = _stage(engine)
    hists = twin(mem.hists, 1)          # the loop's own cycle-time row: private
    loop = JitProcessLoop([sig], MODE_YIELD, hists, 0)
    loop.warm_up()
    mem.rings["top"].put(_quotes(MIDS))
    got, work = [], 0
    deadline = time.monotonic() + 30.0
    while len(got) < len(EXPECTED) and time.monotonic() < deadline:
        _, w, _ = loop.run_for(time.monotonic_ns() + 2_000_000)    # 2 ms of cycles, yielding
        work += w
        got.extend(_got(drain_ring(mem.rings["intent"])))
    assert got == EXPECTED
    assert work == len(MIDS)            # the signal step counts the events it consumed
    assert sig.counter("events_in") == len(MIDS)
    assert hists[0]["total"] >= 1                 # cycles that did work were timed
