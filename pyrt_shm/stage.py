"""The stage contract: what a stage declares and what the engine hands it.

A stage is an ``Agent`` whose class declares, as plain class attributes, everything the
supervisor must create for it *before* any process starts:

* ``INPUTS`` / ``OUTPUTS``: record kinds (``layouts.registry.RECORDS`` names) it consumes
  and produces. The topology's rings connect them; a stage finds its rings by kind.
* ``TABLES``: seqlocked tables it owns (it is their only writer):
  ``{"tops": (TOP, "symbols")}`` -> one row per symbol, or ``(dtype, n_rows)``.
* ``HISTOGRAMS``: latency histograms it records (names local to the stage; exported as
  ``"<stage>.<name>"``). Each has exactly one writer: this stage.
* ``COUNTERS``: names of its counters (at most ``layouts.stats.N_COUNTERS``); the jitted
  step increments ``ctx.counters[i]`` in shared memory.

The constructor receives a ``StageContext`` with everything already mapped. A stage never
imports another stage: it talks to the others only through rings and tables.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

from layouts.stats import N_COUNTERS

from .agent import Agent


@dataclass
class StageContext:
    """What a stage gets from the engine (or from a test / backtest harness)."""

    name: str
    index: int                          #: row in the stats table and stop flags
    params: Mapping = field(default_factory=lambda: MappingProxyType({}))
    symbols: tuple = ()
    inputs: dict = field(default_factory=dict)     #: record kind -> SpscRing it consumes
    outputs: dict = field(default_factory=dict)    #: record kind -> SpscRing it produces
    tables: dict = field(default_factory=dict)     #: table name -> SeqlockTable (all tables)
    hists: np.ndarray | None = None                #: the engine's HISTOGRAM array
    hist_index: dict = field(default_factory=dict)  #: local histogram name -> row
    counters: np.ndarray | None = None             #: uint64[N_COUNTERS] view of this stage's row
    control: np.ndarray | None = None              #: CONTROL record array (1 row)
    wakers: dict = field(default_factory=dict)     #: record kind -> Waker for parked consumers
    engine: str = ""                               #: the engine's name ("" in hand-built contexts)

    def input(self, kind: str):
        try:
            return self.inputs[kind]
        except KeyError:
            raise KeyError(f"stage {self.name!r} has no input ring of records {kind!r}; "
                           f"it has {sorted(self.inputs)}") from None

    def output(self, kind: str):
        try:
            return self.outputs[kind]
        except KeyError:
            raise KeyError(f"stage {self.name!r} has no output ring of records {kind!r}; "
                           f"it has {sorted(self.outputs)}") from None

    def hist(self, name: str) -> int:
        return self.hist_index[name]

    def param(self, key: str, default=None, kind=None):
        """A stage parameter with a default; ``kind`` checks its type with a clear error."""
        v = self.params.get(key, default)
        if kind is not None and v is not None:
            ok = isinstance(v, kind) and not (kind in (int, float, (int, float)) and isinstance(v, bool))
            if not ok:
                raise ValueError(f"stages.{self.name}.params.{key}: expected {getattr(kind, '__name__', kind)}, "
                                 f"got {type(v).__name__} {v!r}")
        return v


class Stage(Agent):
    """Base class of every stage. Subclasses set the class attributes and ``do_work``."""

    INPUTS: tuple = ()
    OUTPUTS: tuple = ()
    TABLES: dict = {}
    HISTOGRAMS: tuple = ()
    COUNTERS: tuple = ()

    def __init__(self, ctx: StageContext):
        if len(self.COUNTERS) > N_COUNTERS:
            raise ValueError(f"{type(self).__name__}: at most {N_COUNTERS} counters")
        self.ctx = ctx
        self.name = ctx.name

    def counter(self, name: str) -> int:
        """Current value of one of this stage's counters."""
        return int(self.ctx.counters[self.COUNTERS.index(name)])

    def counter_values(self) -> dict:
        return {n: int(self.ctx.counters[i]) for i, n in enumerate(self.COUNTERS)}

    def kernel(self):
        """``(step, args, takes_now)`` for the process's jitted loop, or None (Python loop only).

        ``step`` is a module-level ``@njit`` function; the loop calls ``step(now, *args)``
        when ``takes_now`` else ``step(*args)``, and adds its return value to the work count.
        """
        return None

    def warm_up(self) -> None:
        """Compile the jitted step before the process forks (called by the supervisor).

        Must leave every ring, table and counter exactly as it found it.
        """

    def wake_consumers(self) -> None:
        """After publishing: wake parked consumers of this stage's outputs (park strategy)."""
        for w in self.ctx.wakers.values():
            w.wake_if_parked()
