"""Watch a running engine from any process: read-only, consistent snapshots, no numba.

``attach(engine)`` finds the engine through its manifest segment and maps every segment it
lists (rings, tables, stats, histograms, control) **read-only** (``PROT_READ``): every array
it hands out is non-writeable, and even a raw store through a pointer would fault. A reader
never writes shared memory, never takes a lock and never makes a stage wait, so any number
of dashboards, notebooks and exporters can watch a live engine. It imports numpy, posix_ipc,
``layouts``, ``hdrh`` and nothing that loads numba, so it starts fast::

    from pyrt_shm.reader import attach
    with attach("default") as r:
        r.stages()["book"]["work"], r.tops()["SYM0"]["bid"], r.percentiles("exec.tick_to_order")

Layouts are checked on attach. Each segment header must carry this build's magic, header
version, kind and layout hash, where the hash is computed from the ``layouts`` dtypes (and
the manifest's description of each segment must agree); a mismatch raises ``LayoutMismatch``
naming the segment (an engine and a reader built from different layouts never misread).

Consistency model (what one call returns):

* **Tables** (``tops``, ``positions``, ``venue_positions``, any stage's table): one seqlock
  per row. Each row of a snapshot is one the writer actually published (no torn rows; e.g.
  ``qty == bought - sold`` holds in every position row), but two rows may come from different
  moments. The pure-Python seqlock read relies on x86-64 load ordering (see
  ``ringbuf.seqlock_view``).
* **Stage statistics** (pid, cpu, state, heartbeat, cycles, work, counters): single-writer,
  aligned u64/i64 fields, each read whole on its own. Fields of one row are not mutually
  consistent (``work`` may be one cycle ahead of ``cycles``); every counter is monotonic.
* **Rings**: the head and tail cursors are read one after the other, so ``depth`` is exact
  for some instant between the two loads (never negative: clamped at 0).
* **Control block**: single u64 flags, each read whole (kill switch, trading state).
* **Histograms**: each read copies the whole row first (``hdr_convert.snapshot``); the
  percentiles and counts come from that copy, so they agree with each other. The header's
  ``sum`` and ``max`` may be a record ahead of the counts while the writer is active.

Lifetime: after the engine stops, its segments are unlinked but the mappings stay valid, so
a reader keeps returning the last values. ``check()`` tells: it raises ``EngineGone`` when
the engine's segments are gone (or its supervisor died) and ``EngineRestarted`` when a new
run of the same engine name replaced them; ``alive()`` is the boolean form. Attaching when no
engine of that name runs raises ``EngineNotRunning`` (a ``SegmentNotFound``) naming the
engine and suggesting ``pyrt run``.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from layouts.common import dtype_hash
from layouts.control import CONTROL, KILL_CAUSE_NAMES, TRADING_STATE_NAMES
from layouts.histogram import HISTOGRAM
from layouts.market import TOP
from layouts.orders import POSITION
from layouts.registry import RECORDS
from layouts.segment import KIND_BLOB, KIND_HISTOGRAMS, KIND_TABLE
from layouts.stats import STAGE_FAILED, STAGE_RUNNING, STAGE_STATE_NAMES, STAGE_STATS, STAGE_STOPPED

from . import hdr_convert
from .errors import LayoutMismatch, SegmentNotFound, ShmError
from .segment import SHM_DIR, attach_segment, check_engine_name, engine_prefix
from .shm_ring import attach_ring, attach_table

__all__ = ["attach", "running_engines", "EngineReader", "EngineNotRunning", "EngineGone",
           "EngineRestarted", "LayoutMismatch", "TABLE_LAYOUTS"]

#: Row layouts of the tables the shipped stages own. A table not listed here (a user stage's)
#: is checked against the layout the manifest describes.
TABLE_LAYOUTS = {"tops": TOP, "positions": POSITION, "venue_positions": POSITION}
#: A running stage whose heartbeat is older than this is reported ``stalled``.
STALL_AFTER_S = 1.0


class EngineNotRunning(SegmentNotFound):
    """No engine of that name is running (no manifest segment, or its supervisor is dead)."""


class EngineGone(ShmError):
    """The engine this reader attached to has stopped (its segments were removed) or died."""


class EngineRestarted(EngineGone):
    """A new run of the same engine name replaced the one this reader attached to."""


def running_engines() -> list[str]:
    """Names of the engines that have a manifest in /dev/shm (running, or dead and not cleaned)."""
    try:
        entries = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return []
    return sorted(e[len("pyrt-"):-len(".manifest")] for e in entries
                  if e.startswith("pyrt-") and e.endswith(".manifest"))


def attach(engine_name: str, *, wait: float = 0.0) -> "EngineReader":
    """Map every segment of running engine ``engine_name`` read-only and return its reader.

    ``wait`` seconds: keep trying while the engine is not (yet) running. Raises
    ``EngineNotRunning`` if it does not run, ``LayoutMismatch`` if it was built from other
    layouts (the message names the segment).
    """
    check_engine_name(engine_name)
    deadline = time.monotonic() + wait
    while True:
        try:
            return EngineReader(engine_name)
        except EngineNotRunning:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


class EngineReader:
    """Read-only view of one engine's shared memory (see module doc). Use ``attach()``."""

    def __init__(self, engine: str):
        self.engine = check_engine_name(engine)
        self._segments = []
        self._manifest_path = os.path.join(SHM_DIR, engine_prefix(engine) + "manifest")
        try:
            self._attach_all()
        except SegmentNotFound as e:
            self.close()
            if isinstance(e, EngineNotRunning):
                raise
            raise EngineNotRunning(f"engine {engine!r} stopped while attaching ({e})") from None
        except BaseException:
            self.close()
            raise

    # -- attaching --------------------------------------------------------------------------
    def _attach(self, name, kind, layout_hash=None):
        seg = attach_segment(self.engine, name, kind, layout_hash, readonly=True)
        self._segments.append(seg)
        return seg

    def _attach_all(self) -> None:
        engine = self.engine
        try:
            st = os.stat(self._manifest_path)
            man = self._attach("manifest", KIND_BLOB)
        except (FileNotFoundError, SegmentNotFound):
            raise EngineNotRunning(_not_running_message(engine)) from None
        self._manifest_ino = st.st_ino
        self.pid = man.creator_pid
        self.started_mono_ns = man.start_mono_ns
        self.started_unix_ns = int(man.header["start_unix_ns"][0])
        if not _pid_alive(self.pid):
            raise EngineNotRunning(
                f"engine {engine!r} is not running: its supervisor (pid {self.pid}) died and left "
                f"its shared memory behind; remove it with `pyrt clean {engine}`, then start the "
                f"engine with `pyrt run --engine {engine}`")
        deadline = time.monotonic() + 2.0
        while not int(man.header["ready"][0]):          # the supervisor is still writing it
            if time.monotonic() > deadline:
                raise LayoutMismatch(f"{man.posix_name}: manifest never became ready")
            time.sleep(0.01)
        self.manifest = m = _read_manifest(man)
        if m.get("engine") != engine:
            raise LayoutMismatch(f"{man.posix_name}: manifest names engine {m.get('engine')!r}")
        self.symbols = list(m["symbols"])
        self.source = m.get("source", "?")
        self._stages = list(m["stages"])
        self.stage_names = [s["name"] for s in self._stages]
        self.hist_names = list(m["histograms"])
        descrs = m.get("dtypes", {})
        for name, dtype in (("stats", STAGE_STATS), ("hist", HISTOGRAM), ("control", CONTROL)):
            _check_descr(engine, name, descrs.get(name), dtype)

        stats = self._attach("stats", KIND_TABLE, dtype_hash(STAGE_STATS))
        self._stats = _payload_array(stats, STAGE_STATS, len(self._stages))
        hist = self._attach("hist", KIND_HISTOGRAMS, dtype_hash(HISTOGRAM))
        self._hists = _payload_array(hist, HISTOGRAM, max(len(self.hist_names), 1))
        control = self._attach("control", KIND_BLOB, dtype_hash(CONTROL))
        self._control = _payload_array(control, CONTROL, 1)

        self._ring_info = {r["name"]: r for r in m["rings"]}
        self._rings = {}
        for r in m["rings"]:
            record = RECORDS.get(r["record"])
            if record is None:
                raise LayoutMismatch(f"/{engine_prefix(engine)}{r['segment']}: ring {r['name']!r} "
                                     f"carries {r['record']!r} records, unknown to this build")
            seg, ring = attach_ring(engine, r["segment"], record, readonly=True)
            self._segments.append(seg)
            self._rings[r["name"]] = ring
        self._table_info = {t["name"]: t for t in m["tables"]}
        self._tables = {}
        for t in m["tables"]:
            want = TABLE_LAYOUTS.get(t["name"])
            if want is None:
                want = _dtype_from_descr(t["dtype"])
            else:
                _check_descr(engine, t["segment"], t["dtype"], want)
            seg, table = attach_table(engine, t["segment"], want, readonly=True)
            self._segments.append(seg)
            if len(table) != t["rows"]:
                raise LayoutMismatch(f"{seg.posix_name}: {len(table)} rows, the manifest says {t['rows']}")
            table.name = t["name"]
            self._tables[t["name"]] = table
        self._hist_index = {h: i for i, h in enumerate(self.hist_names)}
        self._rejection_tables = [
            (n, t["owner"]) for n, t in self._table_info.items()
            if n.endswith("rejections") and t["rows"] == 1 and t.get("owner") in self.stage_names
            and all(self._tables[n].rows.dtype.fields[f][0].kind == "u"
                    for f in self._tables[n].rows.dtype.names)]

    def close(self) -> None:
        """Drop this process's mappings (never unlinks anything)."""
        for seg in self._segments:
            seg.close()
        self._segments = []
        self._rings, self._tables, self._rejection_tables = {}, {}, []

    def __enter__(self) -> "EngineReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"EngineReader({self.engine!r}, pid={self.pid}, stages={self.stage_names}, "
                f"rings={list(self._rings)}, tables={list(self._tables)})")

    # -- liveness ---------------------------------------------------------------------------
    def check(self) -> None:
        """Raise ``EngineGone`` / ``EngineRestarted`` unless the attached engine still runs."""
        e = self.engine
        try:
            st = os.stat(self._manifest_path)
        except FileNotFoundError:
            raise EngineGone(f"engine {e!r} (supervisor pid {self.pid}) has stopped: its shared "
                             f"memory was removed") from None
        if st.st_ino != self._manifest_ino:
            new = _manifest_pid(e)
            raise EngineRestarted(f"engine {e!r} was restarted (supervisor pid {self.pid} -> "
                                  f"{new if new else '?'}); attach again to watch the new run")
        if not _pid_alive(self.pid):
            raise EngineGone(f"engine {e!r} died: its supervisor (pid {self.pid}) is gone but left "
                             f"its shared memory behind (remove it with `pyrt clean {e}`)")

    def alive(self) -> bool:
        """True while the engine this reader attached to still runs (see ``check``)."""
        try:
            self.check()
            return True
        except EngineGone:
            return False

    def uptime_s(self) -> float:
        return (time.monotonic_ns() - self.started_mono_ns) / 1e9

    # -- raw arrays (read-only views and private copies) -----------------------------------
    def stats_array(self) -> np.ndarray:
        """A private copy of the stage statistics table (``STAGE_STATS``, one row per stage)."""
        return self._stats.copy()

    def table(self, name: str, timeout: float = 1.0) -> np.ndarray:
        """A private copy of table ``name``, every row seqlock-consistent."""
        return self._table(name).snapshot(timeout)

    def ring_names(self) -> list[str]:
        return list(self._rings)

    def table_names(self) -> list[str]:
        return list(self._tables)

    def views(self) -> dict:
        """The live read-only numpy views themselves (for tests and zero-copy tools)."""
        out = {"stats": self._stats, "hist": self._hists, "control": self._control}
        for n, r in self._rings.items():
            out[f"ring-{n}.ctl"], out[f"ring-{n}.records"] = r.ctl, r.recs
        for n, t in self._tables.items():
            out[f"table-{n}.seqs"], out[f"table-{n}.rows"] = t.seqs, t.rows
        return out

    def _table(self, name):
        try:
            return self._tables[name]
        except KeyError:
            raise KeyError(f"engine {self.engine!r} has no table {name!r} "
                           f"(tables: {', '.join(self._tables) or 'none'})") from None

    # -- snapshots as plain dicts -----------------------------------------------------------
    def counters(self) -> dict:
        """``{stage: {counter: value}}``.

        Besides each stage's own counters (stats row), a one-row table whose name ends in
        ``rejections`` (e.g. risk's ``risk_rejections``, one u64 per reason: a stage can have
        more reasons than counters) adds its fields to its owner's counters as
        ``rej_<reason>``.
        """
        return self._counters(self._stats.copy())

    def _counters(self, stats: np.ndarray) -> dict:
        out = {}
        for i, s in enumerate(self._stages):
            vals = stats[i]["counters"]
            out[s["name"]] = {c: int(vals[k]) for k, c in enumerate(s["counters"])}
        for name, owner in self._rejection_tables:
            row = self._tables[name].read(0)
            cs = out.setdefault(owner, {})
            for f in row.dtype.names:
                cs.setdefault(f"rej_{f}", int(row[f]))
        return out

    def records(self, table: str) -> list[dict]:
        """Every row of ``table`` as a plain dict (each row seqlock-consistent)."""
        return [_row_dict(r) for r in self.table(table)]

    def stages(self) -> dict:
        """``{stage: {...}}``: process, status, pid, cpu, state, heartbeat age, cycles, work,
        idle cycles, errors and counters by name.

        ``status`` is ``state`` except ``dead`` (its pid is gone) and ``stalled`` (running,
        but no heartbeat for ``STALL_AFTER_S``).
        """
        stats = self._stats.copy()
        now = time.monotonic_ns()
        counters = self._counters(stats)
        out = {}
        for i, s in enumerate(self._stages):
            r = stats[i]
            hb, pid, state = int(r["heartbeat_ns"]), int(r["pid"]), int(r["state"])
            age = (now - hb) / 1e9 if hb else None
            status = STAGE_STATE_NAMES.get(state, f"?{state}")
            if pid > 0 and not _pid_alive(pid) and state not in (STAGE_STOPPED, STAGE_FAILED):
                status = "dead"
            elif state == STAGE_RUNNING and age is not None and age > STALL_AFTER_S:
                status = "stalled"
            out[s["name"]] = {
                "index": i, "process": s.get("process"), "class": s.get("class"),
                "status": status, "pid": pid, "cpu": int(r["cpu"]),
                "state": STAGE_STATE_NAMES.get(state, f"?{state}"),
                "heartbeat_age_s": age, "cycles": int(r["cycles"]), "work": int(r["work"]),
                "idle_cycles": int(r["idle_cycles"]), "errors": int(r["errors"]),
                "counters": counters[s["name"]],
            }
        return out

    def rings(self) -> dict:
        """``{ring: {...}}``: depth, high water, times full, dropped, published, consumed, ..."""
        out = {}
        for name, ring in self._rings.items():
            d = dict(ring.statistics().__dict__)
            info = self._ring_info[name]
            d.update(record=info["record"], producer=info["producer"], consumer=info["consumer"])
            out[name] = d
        return out

    def tops(self) -> dict:
        """``{symbol: {...}}`` book top per symbol (``tops`` table, each row seqlock-consistent)."""
        if "tops" not in self._tables:
            return {}
        rows = self.table("tops")
        now = time.monotonic_ns()
        out = {}
        for i, r in enumerate(rows):
            d = _row_dict(r)
            d["valid"] = bool(d["valid"])
            d["mid"] = (d["bid"] + d["ask"]) / 2 if d["valid"] else None
            d["spread"] = d["ask"] - d["bid"] if d["valid"] else None
            d["age_s"] = (now - d["updated_ns"]) / 1e9 if d["updated_ns"] else None
            out[self._symbol(i)] = d
        return out

    def positions(self, table: str = "positions") -> dict:
        """``{symbol: {...}}`` from risk's positions table (or ``venue_positions``); adds
        ``pnl`` = realized + unrealized - fees."""
        if table not in self._tables:
            return {}
        out = {}
        for i, r in enumerate(self.table(table)):
            d = _row_dict(r)
            d["pnl"] = d["realized"] + d["unrealized"] - d["fees"]
            out[self._symbol(i)] = d
        return out

    def control(self) -> dict:
        """Kill switch (with cause, stage and age), trading state and pending stop requests."""
        c = self._control[0]
        kill, cause, stage, kill_ns = (int(c["kill_switch"]), int(c["kill_cause"]),
                                       int(c["kill_stage"]), int(c["kill_ns"]))
        state = int(c["trading_state"])
        stop = c["stop"].copy()
        return {
            "kill_switch": bool(kill),
            "kill_cause": KILL_CAUSE_NAMES.get(cause, f"?{cause}"),
            "kill_stage": (self.stage_names[stage] if kill and 0 <= stage < len(self.stage_names)
                           else None),
            "kill_age_s": (time.monotonic_ns() - kill_ns) / 1e9 if kill and kill_ns else None,
            "trading_state": TRADING_STATE_NAMES.get(state, f"?{state}"),
            "trading_state_code": state,
            "stop_requested": [n for i, n in enumerate(self.stage_names) if stop[i]],
        }

    def histogram(self, name: str) -> np.ndarray:
        """A private copy (0-d ``HISTOGRAM`` array) of histogram ``name``."""
        return hdr_convert.snapshot(self._hists[self._hist_row(name)])

    def hdrh(self, name: str):
        """Histogram ``name`` as an ``hdrh.histogram.HdrHistogram`` (for encoding, merging)."""
        return hdr_convert.to_hdrh(self._hists[self._hist_row(name)])

    def percentiles(self, name: str, ps=hdr_convert.DEFAULT_PERCENTILES) -> dict:
        """``{p: value_ns}`` of histogram ``name`` (HdrHistogram's percentile rule)."""
        return hdr_convert.percentiles(self._hists[self._hist_row(name)], ps)

    def histograms(self, include_empty: bool = False) -> dict:
        """``{name: summary}`` in ns: count, min, max, mean, p50, p90, p99, p999, p9999, overflow."""
        out = {}
        for i, name in enumerate(self.hist_names):
            s = hdr_convert.summary(self._hists[i])
            if s["count"] or include_empty:
                out[name] = s
        return out

    def snapshot(self) -> dict:
        """Everything above as one JSON-serialisable dict; ``state`` holds every one-row
        table (a stage's state block, e.g. risk's ``risk_state``) as a dict."""
        stages = self.stages()
        snap = {
            "engine": self.engine, "pid": self.pid, "source": self.source,
            "started_unix_ns": self.started_unix_ns, "uptime_s": self.uptime_s(),
            "time_ns": time.monotonic_ns(), "symbols": list(self.symbols),
            "stages": stages, "counters": {n: s["counters"] for n, s in stages.items()},
            "rings": self.rings(), "control": self.control(), "tops": self.tops(),
            "positions": self.positions(), "latency_ns": self.histograms(),
        }
        if "venue_positions" in self._tables:
            snap["venue_positions"] = self.positions("venue_positions")
        snap["state"] = self.snapshot_state()
        return snap

    def snapshot_state(self) -> dict:
        """``{table: {field: value}}`` of every one-row table (a stage's state block) except
        the rejection tables (already in ``counters()``)."""
        rejections = {n for n, _ in self._rejection_tables}
        return {n: self.records(n)[0] for n, t in self._tables.items()
                if len(t) == 1 and n not in rejections}

    # -- helpers ----------------------------------------------------------------------------
    def _hist_row(self, name: str) -> int:
        try:
            return self._hist_index[name]
        except KeyError:
            raise KeyError(f"engine {self.engine!r} has no histogram {name!r} "
                           f"(histograms: {', '.join(self.hist_names)})") from None

    def _symbol(self, i: int) -> str:
        return self.symbols[i] if i < len(self.symbols) else str(i)


# -- module helpers -------------------------------------------------------------------------

def _not_running_message(engine: str) -> str:
    others = [e for e in running_engines() if e != engine]
    hint = f" (running: {', '.join(others)})" if others else ""
    return (f"engine {engine!r} is not running: no shared memory /dev/shm/{engine_prefix(engine)}"
            f"manifest{hint}; start it with `pyrt run --engine {engine}`")


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live process (a zombie counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] != b"Z"
    except (OSError, ValueError):
        return True


def _manifest_pid(engine: str) -> int:
    """Creator pid of the engine's current manifest, 0 if it cannot be read."""
    try:
        seg = attach_segment(engine, "manifest", KIND_BLOB, readonly=True)
    except ShmError:
        return 0
    try:
        return seg.creator_pid
    finally:
        seg.close()


def _read_manifest(seg) -> dict:
    size = int(seg.header["payload_size"][0])
    n = int(seg.array(np.uint64, (1,))[0])
    if n > size - 8:
        raise LayoutMismatch(f"{seg.posix_name}: manifest length {n} runs past its {size} B payload")
    try:
        return json.loads(seg.array(np.uint8, (n,), offset=8).tobytes())
    except ValueError as e:
        raise LayoutMismatch(f"{seg.posix_name}: manifest is not valid JSON ({e})") from None


def _payload_array(seg, dtype, n: int) -> np.ndarray:
    need = n * np.dtype(dtype).itemsize
    if int(seg.header["payload_size"][0]) < need:
        raise LayoutMismatch(f"{seg.posix_name}: payload of {int(seg.header['payload_size'][0])} B "
                             f"is smaller than {n} x {np.dtype(dtype).itemsize} B")
    return seg.array(dtype, (n,))


def _descr(dtype) -> list:
    """The manifest's JSON form of a dtype (``pyrt_shm.wiring._descr``, after a JSON trip)."""
    return json.loads(json.dumps(
        [list(x) if not isinstance(x[1], list) else [x[0], _descr(np.dtype(x[1]))]
         for x in np.dtype(dtype).descr]))


def _check_descr(engine: str, segment: str, described, dtype) -> None:
    if described is not None and described != _descr(dtype):
        raise LayoutMismatch(f"/{engine_prefix(engine)}{segment}: the engine's manifest describes "
                             f"another layout than this build's {np.dtype(dtype)} (engine and "
                             f"reader built from different layouts)")


def _dtype_from_descr(descr) -> np.dtype:
    from numpy.lib.format import descr_to_dtype

    def back(d):
        out = []
        for x in d:
            if isinstance(x[1], list):
                out.append((x[0], back(x[1])))
            else:
                out.append((x[0], x[1], tuple(x[2])) if len(x) == 3 else (x[0], x[1]))
        return out
    return descr_to_dtype(back(descr))


def _row_dict(r) -> dict:
    out = {}
    for k in r.dtype.names:
        v = r[k]
        if isinstance(v, np.ndarray):
            out[k] = v.tolist()
        elif isinstance(v, np.floating):
            out[k] = float(v)
        elif isinstance(v, np.integer):
            out[k] = int(v)
        else:
            out[k] = v.item() if hasattr(v, "item") else v
    return out
