"""Frozen, typed topology objects: what the supervisor builds an engine from.

Why frozen: the topology is validated once (``pyrt_shm.config.load_topology``) and then
shared by the supervisor and every forked stage process. An object that cannot change after
validation cannot drift from what was validated, so no later code re-checks it. Stage
``params`` are deep-frozen (tables become ``MappingProxyType``, arrays become tuples) for the
same reason.

The name tuples below are the one list of valid names. The modules that implement idle
strategies (``ringbuf``) and record layouts (``layouts``) map these names to code; the config
only checks that a name is one of them.

Limitation: ``MappingProxyType`` cannot be pickled, so a ``Topology`` travels to stage
processes by ``fork``, not through a pipe.
"""
from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Idle strategies a process may use when a duty cycle did no work (see ``ringbuf``).
#: busy-spin: dedicated isolated core only; yield: shared core; park: block on a wake-up;
#: backoff: spin, then yield, then sleep with growing pauses.
IDLE_STRATEGIES: tuple[str, ...] = ("busy-spin", "yield", "park", "backoff")
#: Record kinds a ring may carry; each names one record dtype in ``layouts``.
RECORD_KINDS: tuple[str, ...] = ("tick", "top", "intent", "order", "fill")
#: What a producer does when its ring is full (``layouts.ring.FULL_POLICY_NAMES``).
FULL_POLICIES: tuple[str, ...] = ("block", "drop")
#: ``Topology.source`` of the topology shipped inside the package.
DEFAULT_SOURCE = "<embedded default>"


def deep_freeze(value: Any) -> Any:
    """Return ``value`` with every table made a read-only mapping and every array a tuple."""
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: deep_freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(deep_freeze(v) for v in value)
    return value


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Engine-wide settings (the ``[engine]`` table)."""

    name: str                   #: [a-z0-9-]{1,32}; shared-memory names start with ``shm_prefix``
    run_dir: str                #: where run directories are written (relative to the cwd)
    heartbeat_timeout_ms: int   #: a stage whose heartbeat is older than this is stalled
    sched_fifo: bool            #: apply SCHED_FIFO to pinned stage processes when permitted
    fifo_priority: int          #: SCHED_FIFO priority, 1..99
    mlockall: bool              #: lock stage process memory (no page faults on hot paths)
    symbols: tuple[str, ...]    #: the symbol table: a symbol's id is its index
    metrics_port: int = 0       #: Prometheus exporter port (conventionally 9464); 0 = no exporter
    metrics_addr: str = "127.0.0.1"  #: address the exporter binds (loopback unless asked)

    @property
    def shm_prefix(self) -> str:
        """Prefix of every shared-memory segment name of this engine."""
        return f"pyrt-{self.name}."


@dataclass(frozen=True, slots=True)
class ProcessConfig:
    """One OS process: its CPU, idle strategy and the stages its loop runs, in order."""

    name: str
    cpu: int | None             #: explicit CPU, or None when ``cpu = "auto"``
    cpu_auto: bool              #: placed by ``pyrt_shm.config.resolve_auto_cpus``
    idle: str                   #: one of IDLE_STRATEGIES
    stages: tuple[str, ...]     #: more than one makes a composite agent (one loop, no threads)


@dataclass(frozen=True, slots=True)
class StageConfig:
    """One stage: the class the supervisor imports and the parameters it is built with."""

    name: str
    class_path: str             #: "package.module:ClassName"
    params: Mapping[str, Any]   #: deep-frozen free-form table


@dataclass(frozen=True, slots=True)
class RingConfig:
    """One SPSC ring: exactly one producer stage and one consumer stage."""

    name: str
    producer: str
    consumer: str
    record: str                 #: one of RECORD_KINDS
    capacity: int               #: records; a power of two
    full: str                   #: one of FULL_POLICIES


@dataclass(frozen=True, slots=True)
class FakeAlpacaConfig:
    """The ``[fake_alpaca]`` table: ``pyrt run`` starts a local fake Alpaca for this run
    (``tools.fake_alpaca``), with throwaway keys, and stage params may name its URLs as
    ``{fake_alpaca.rest}``, ``{fake_alpaca.stream}`` and ``{fake_alpaca.md}``."""

    symbols: tuple[str, ...]    #: symbols the fake quotes and trades (default: engine.symbols)
    rate: float                 #: quotes per second the fake publishes (its ``--rate``)
    seed: int                   #: the fake market's random seed
    md_port: int                #: 0 = any free port
    rest_port: int
    stream_port: int
    ready_timeout_s: float      #: how long to wait for the fake's ready line


#: Placeholders a stage param may hold when the topology has a ``[fake_alpaca]`` table.
FAKE_ALPACA_URLS: tuple[str, ...] = ("md", "rest", "stream")


@dataclass(frozen=True, slots=True)
class Topology:
    """A validated engine: settings, processes, stages and rings, in file order.

    ``warnings`` holds non-fatal findings (e.g. busy-spin on a shared core), each as
    ``"<source>: <key.path>: <message>"``, for the supervisor to log at start.
    """

    engine: EngineConfig
    processes: tuple[ProcessConfig, ...]
    stages: tuple[StageConfig, ...]
    rings: tuple[RingConfig, ...]
    source: str                 #: file path, or DEFAULT_SOURCE
    warnings: tuple[str, ...] = ()
    fake_alpaca: FakeAlpacaConfig | None = None   #: ``[fake_alpaca]``: run a local fake venue

    def stage(self, name: str) -> StageConfig:
        """Return the stage called ``name``; raise KeyError if there is none."""
        return _named(self.stages, name, "stage")

    def process(self, name: str) -> ProcessConfig:
        """Return the process called ``name``; raise KeyError if there is none."""
        return _named(self.processes, name, "process")

    def ring(self, name: str) -> RingConfig:
        """Return the ring called ``name``; raise KeyError if there is none."""
        return _named(self.rings, name, "ring")

    def process_of(self, stage_name: str) -> ProcessConfig:
        """Return the process whose loop runs ``stage_name``; raise KeyError if none does."""
        for process in self.processes:
            if stage_name in process.stages:
                return process
        raise KeyError(f"no process runs stage {stage_name!r}")

    def rings_out(self, stage: str) -> tuple[RingConfig, ...]:
        """Return the rings ``stage`` produces into, in file order."""
        return tuple(r for r in self.rings if r.producer == stage)

    def rings_in(self, stage: str) -> tuple[RingConfig, ...]:
        """Return the rings ``stage`` consumes from, in file order."""
        return tuple(r for r in self.rings if r.consumer == stage)


def _named(items: tuple, name: str, kind: str):
    for item in items:
        if item.name == name:
            return item
    raise KeyError(f"no {kind} {name!r}")
