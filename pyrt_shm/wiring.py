"""Build an engine's shared state from a topology, and the stages over it.

``EngineMemory`` holds every ring, table, the stats table, the histograms and the control
block of one engine. Two backends share all code:

* ``"shm"``: each object in its own POSIX segment (``/pyrt-<engine>.<name>``), created
  by the supervisor before any process starts and unlinked by it at exit; a manifest
  segment describes them all for readers (``pyrt_shm.reader``).
* ``"local"``: the same layouts over private memory, for tests and backtests that fuse
  every stage in one process.

Segment names: ``ring-<ring>``, ``table-<table>``, ``stats``, ``hist``, ``control``,
``manifest``.
"""
from __future__ import annotations

import json
import os

import numpy as np

from layouts.common import align_up, dtype_hash
from layouts.control import CONTROL, MAX_STAGES
from layouts.histogram import HISTOGRAM
from layouts.registry import RECORDS
from layouts.ring import FULL_BLOCK, FULL_DROP
from layouts.segment import KIND_BLOB, KIND_HISTOGRAMS, KIND_TABLE
from layouts.stats import STAGE_STATS
from ringbuf.ring import SpscRing, ring_bytes
from ringbuf.seqlock import SeqlockTable

from .classpath import import_class
from .segment import create_segment, mark_ready
from .shm_ring import create_ring, create_table, table_bytes

MANIFEST_BYTES = 256 * 1024
_FULL = {"block": FULL_BLOCK, "drop": FULL_DROP}


class WiringError(ValueError):
    """Stages and topology disagree (names the stage, ring or table at fault)."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("\n".join(errors))


def stage_classes(topology) -> dict:
    """Import every stage class and check its declared inputs/outputs against the rings."""
    classes, errors = {}, []
    for st in topology.stages:
        try:
            classes[st.name] = import_class(st.class_path, f"stages.{st.name}.class")
        except ImportError as e:
            errors.append(str(e))
    for st in topology.stages:
        cls = classes.get(st.name)
        if cls is None:
            continue
        ins = [r.record for r in topology.rings_in(st.name)]
        outs = [r.record for r in topology.rings_out(st.name)]
        for kind in ins:
            if kind not in cls.INPUTS:
                errors.append(f"rings: stage {st.name!r} ({st.class_path}) does not consume "
                              f"{kind!r} records (it consumes {list(cls.INPUTS)})")
        for kind in outs:
            if kind not in cls.OUTPUTS:
                errors.append(f"rings: stage {st.name!r} ({st.class_path}) does not produce "
                              f"{kind!r} records (it produces {list(cls.OUTPUTS)})")
        for kind in cls.INPUTS:
            if ins.count(kind) != 1:
                errors.append(f"rings: stage {st.name!r} needs exactly one input ring of {kind!r} "
                              f"records, the topology gives it {ins.count(kind)}")
        for kind in cls.OUTPUTS:
            if outs.count(kind) != 1:
                errors.append(f"rings: stage {st.name!r} needs exactly one output ring of {kind!r} "
                              f"records, the topology gives it {outs.count(kind)}")
    if len(topology.stages) > MAX_STAGES:
        errors.append(f"stages: at most {MAX_STAGES} stages")
    owners = {}
    for name, cls in classes.items():
        for t in getattr(cls, "TABLES", {}):
            if t in owners:
                errors.append(f"stages.{name}: table {t!r} is already owned by stage {owners[t]!r}")
            owners[t] = name
    if errors:
        raise WiringError(errors)
    return classes


class EngineMemory:
    """All shared state of one engine (see module doc). ``close()`` unlinks what it created."""

    def __init__(self, topology, backend: str = "shm", classes: dict | None = None):
        if backend not in ("shm", "local"):
            raise ValueError(f"backend must be 'shm' or 'local', got {backend!r}")
        self.topology, self.backend = topology, backend
        self.engine = topology.engine.name
        self.classes = classes if classes is not None else stage_classes(topology)
        self.segments = []
        self.rings: dict[str, SpscRing] = {}
        self.tables: dict[str, SeqlockTable] = {}
        self.stage_names = [s.name for s in topology.stages]
        self.hist_names = self._hist_names()
        self.hist_writers = {}
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    # -- construction ----------------------------------------------------------------------
    def _hist_names(self) -> list[str]:
        names = []
        for st in self.topology.stages:
            names += [f"{st.name}.{h}" for h in self.classes[st.name].HISTOGRAMS]
        names += [f"process.{p.name}.cycle" for p in self.topology.processes]
        return names

    def _array(self, name: str, kind: int, dtype, shape) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        if self.backend == "local":
            return np.zeros(shape, dtype)
        seg = create_segment(self.engine, name, kind, dtype_hash(dtype), nbytes)
        self.segments.append(seg)
        arr = seg.array(dtype, shape)
        mark_ready(seg)
        return arr

    def _build(self) -> None:
        topo, n_sym = self.topology, len(self.topology.engine.symbols)
        for r in topo.rings:
            dtype = RECORDS[r.record]
            if self.backend == "local":
                buf = bytearray(ring_bytes(dtype, r.capacity))
                self.rings[r.name] = SpscRing.init_in(buf, 0, dtype, r.capacity, _FULL[r.full], r.name)
            else:
                seg, ring = create_ring(self.engine, f"ring-{r.name}", dtype, r.capacity, _FULL[r.full])
                ring.name = r.name
                self.segments.append(seg)
                self.rings[r.name] = ring
        for st in topo.stages:
            for tname, (dtype, rows) in self.classes[st.name].TABLES.items():
                n = n_sym if rows == "symbols" else int(rows)
                if self.backend == "local":
                    buf = bytearray(table_bytes(dtype, n))
                    seqs = np.ndarray((n,), np.uint64, buffer=buf)
                    rws = np.ndarray((n,), dtype, buffer=buf, offset=align_up(8 * n))
                    self.tables[tname] = SeqlockTable(seqs, rws, tname)
                else:
                    seg, table = create_table(self.engine, f"table-{tname}", dtype, n)
                    self.segments.append(seg)
                    self.tables[tname] = table
        self.stats = self._array("stats", KIND_TABLE, STAGE_STATS, (len(topo.stages),))
        self.stats["cpu"] = -1
        self.hists = self._array("hist", KIND_HISTOGRAMS, HISTOGRAM, (max(len(self.hist_names), 1),))
        self.control = self._array("control", KIND_BLOB, CONTROL, (1,))
        if self.backend == "shm":
            self._write_manifest()

    def manifest(self) -> dict:
        """Everything a reader needs to find and decode this engine's segments."""
        topo = self.topology
        return {
            "engine": self.engine,
            "pid": os.getpid(),
            "source": topo.source,
            "symbols": list(topo.engine.symbols),
            "stages": [{"name": s.name, "index": i, "class": s.class_path,
                        "process": topo.process_of(s.name).name,
                        "counters": list(self.classes[s.name].COUNTERS)}
                       for i, s in enumerate(topo.stages)],
            "processes": [{"name": p.name, "idle": p.idle, "stages": list(p.stages)} for p in topo.processes],
            "rings": [{"name": r.name, "segment": f"ring-{r.name}", "record": r.record,
                       "producer": r.producer, "consumer": r.consumer, "capacity": r.capacity,
                       "full": r.full} for r in topo.rings],
            "tables": [{"name": t, "segment": f"table-{t}",
                        "owner": next(s for s, c in self.classes.items() if t in c.TABLES),
                        "dtype": _descr(self.tables[t].rows.dtype), "rows": len(self.tables[t])}
                       for t in self.tables],
            "histograms": self.hist_names,
            "dtypes": {"stats": _descr(STAGE_STATS), "hist": _descr(HISTOGRAM), "control": _descr(CONTROL)},
        }

    def _write_manifest(self) -> None:
        blob = json.dumps(self.manifest()).encode()
        if len(blob) > MANIFEST_BYTES - 8:
            raise ValueError(f"manifest is {len(blob)} B, more than {MANIFEST_BYTES - 8}")
        seg = create_segment(self.engine, "manifest", KIND_BLOB, 0, MANIFEST_BYTES)
        self.segments.append(seg)
        seg.array(np.uint64, (1,))[0] = len(blob)
        seg.array(np.uint8, (len(blob),), offset=8)[:] = np.frombuffer(blob, np.uint8)
        mark_ready(seg)

    # -- stages ----------------------------------------------------------------------------
    def stage_context(self, stage_name: str):
        """The ``StageContext`` of one stage over this memory."""
        from .stage import StageContext

        topo = self.topology
        idx = self.stage_names.index(stage_name)
        cls = self.classes[stage_name]
        st = topo.stage(stage_name)
        return StageContext(
            name=stage_name, index=idx, params=st.params, symbols=topo.engine.symbols,
            inputs={r.record: self.rings[r.name] for r in topo.rings_in(stage_name)},
            outputs={r.record: self.rings[r.name] for r in topo.rings_out(stage_name)},
            tables=self.tables, hists=self.hists,
            hist_index={h: self.hist_names.index(f"{stage_name}.{h}") for h in cls.HISTOGRAMS},
            counters=self.stats[idx:idx + 1]["counters"].reshape(-1),
            control=self.control, engine=topo.engine.name)

    def build_stage(self, stage_name: str):
        return self.classes[stage_name](self.stage_context(stage_name))

    def close(self) -> None:
        """Unlink every segment this object created (idempotent)."""
        for seg in self.segments:
            seg.unlink()
        self.segments = []


def _descr(dtype) -> list:
    return [list(x) if not isinstance(x[1], list) else [x[0], _descr(np.dtype(x[1]))]
            for x in np.dtype(dtype).descr]
