"""Journals: records of a live run appended to files that a backtest can read back.

Why: a backtest over exactly the ticks a live run saw, compared with the orders it made,
is the proof that the offline pipeline is the live one (``tests/pyrt_shm/test_parity*``).
Two journals share this module's helpers:

* ``TickJournal`` (a stage): INPUTS ("tick",) OUTPUTS ("tick",). Place it between the feed
  and the book *in the feed's process* (``config/journaled.toml``): each tick is copied to
  its output ring unchanged (same ``seq``, stamps, everything) and appended to the journal,
  so the hot process does no extra work and the journal holds the book's input exactly, in
  ring order.
* the order journal of ``procs.exec:ExecStage`` (param ``order_journal``): every ORDER record
  exec receives from risk, in ring order, appended as exec first sees it in its input ring.

File format. A journal is written in place as a standard ``.npy`` file (numpy's format 1.0
header, then the records), preallocated to ``capacity`` records with ``np.memmap``: the file
is sparse, so only the pages written take disk space. While the run lasts it is named
``<path>.part`` and its header says ``capacity`` records (the ones after the last written are
zero). ``finish()`` (the stage's ``on_close``, in the process that wrote it) rewrites the header
to the number of records written, truncates the file to them, renames it to ``<path>`` and
writes a JSON sidecar ``<path without .npy>.json``::

    {"format": "pyrt-journal/1", "kind": "tick", "file": "ticks.npy", "records": N,
     "capacity": C, "overflow": K, "complete": K == 0, "engine": ..., "stage": ..., "pid": ...,
     "symbols": [...], "first_seq": ..., "last_seq": ..., "seq_gaps": ..., "dtype": [...]}

(``first_seq``/``last_seq``/``seq_gaps`` are the records' ``seq`` for ticks, ``order_id`` for
orders.) So ``np.load(path)`` and ``pyrt_shm.research.data.load_ticks(path)`` read exactly the
records written. A process killed before ``finish`` leaves ``<path>.part``: a valid ``.npy`` of
``capacity`` records whose tail is zero-filled; nothing else is lost.

Capacity: when a journal is full, records are still forwarded (trading must not stop because
a file is full) but no longer written; each is counted (``journal_overflow`` counter of the
TickJournal, ``overflow`` in the sidecar of both journals) and ``finish`` prints a warning to
stderr. It is never silent.

Paths: a string, relative to the current directory of the process that builds the stage (the
``pyrt run`` process), with two placeholders: ``{engine}`` (the engine's name) and ``{pid}``
(the pid of that process: the same pid that names the run directory,
``runs/<engine>-<date>-<pid>``). Missing directories are created. An existing journal is not
overwritten unless ``overwrite = true``: a recording is evidence.

Memory ordering: the journal's file mapping is written and read only by the process that runs
the stage (the files are not shared memory between stages); records are read from the input
ring after ``spsc.poll``'s load-acquire of the producer's head, as every consumer does.
"""
from __future__ import annotations

import io
import json
import os
import string
import sys
import time

import numpy as np
import numpy.lib.format as npy_format
from numba import njit

from layouts.market import TICK
from pyrt_shm.stage import Stage
from ringbuf import spsc

from . import check_keys, int_param, twin

#: Journal state words (``JournalFile.st``, int64): records written, records that did not fit,
#: and (ring-peeking journals) the next input-ring cursor not yet journaled.
J_COUNT, J_OVERFLOW, J_CURSOR = 0, 1, 2
N_JOURNAL_STATE = 3
FORMAT = "pyrt-journal/1"
PLACEHOLDERS = ("engine", "pid")
DEFAULT_TICK_CAPACITY = 1 << 22       #: 4 M ticks, 320 MB of sparse file at most
DEFAULT_ORDER_CAPACITY = 1 << 20      #: 1 M orders, 80 MB at most

# TickJournal counters and params
C_TICKS, C_JOURNALED, C_OVERFLOW = 0, 1, 2
P_BATCH = 0


# -- jitted helpers ----------------------------------------------------------------------------

# Compiled without numba's reference counting (``_nrt=False``), explicitly: they run inside the
# NRT-free duty loops (exec_step_journaled calls journal_ring), allocate nothing, and numba's
# cache key ignores the flag.
@njit(cache=True, inline="always", _nrt=False)
def journal_append(recs, st, rec):
    """Append ``rec`` (a record of ``recs``' dtype) to the journal; count it if it is full.

    Returns 1 if written, 0 if counted as overflow."""
    n = st[J_COUNT]
    if n < recs.shape[0]:
        recs[n] = rec
        st[J_COUNT] = n + 1
        return 1
    st[J_OVERFLOW] += 1
    return 0


@njit(cache=True, _nrt=False)
def journal_ring(in_ctl, in_recs, recs, st):
    """Consumer side, before the consumer's own step: journal every record readable in the
    input ring that has not been journaled yet (``st[J_CURSOR]`` is the next ring cursor).

    It reads without releasing, so the consumer's step then sees the same records; a record
    the step leaves in the ring for the next cycle is not journaled twice. Return how many
    records were journaled or counted."""
    tail = spsc.tail_of(in_ctl)
    avail = spsc.poll(in_ctl, in_recs.shape[0])
    end = tail + avail
    c = np.uint64(st[J_CURSOR])
    if c < tail:
        c = tail
    n = 0
    while c < end:
        journal_append(recs, st, in_recs[spsc.slot(in_ctl, c)])
        c += np.uint64(1)
        n += 1
    st[J_CURSOR] = np.int64(c)
    return n


@njit(cache=True, _nrt=False)
def tick_journal_step(in_ctl, in_recs, out_ctl, out_recs, jrecs, jst, counters, pi):
    """Copy up to ``batch`` ticks from the input ring to the output ring (as many as it has
    room for: backpressure, nothing dropped) and append each to the journal. Return the count."""
    avail = np.int64(spsc.poll(in_ctl, pi[P_BATCH]))
    if avail == 0:
        return 0
    k = np.int64(spsc.claim(out_ctl, avail))
    if k == 0:
        return 0
    rd = spsc.tail_of(in_ctl)
    wr = spsc.head_of(out_ctl)
    written = 0
    for j in range(k):
        r = in_recs[spsc.slot(in_ctl, rd + np.uint64(j))]
        out_recs[spsc.slot(out_ctl, wr + np.uint64(j))] = r
        written += journal_append(jrecs, jst, r)
    spsc.commit(out_ctl, k)           # the ticks leave unchanged: no stamp of ours
    spsc.release(in_ctl, k)
    counters[C_TICKS] += np.uint64(k)
    counters[C_JOURNALED] += np.uint64(written)
    counters[C_OVERFLOW] += np.uint64(k - written)
    return k


# -- the file ----------------------------------------------------------------------------------

def resolve_path(template: str, engine: str, where: str, pid: int | None = None) -> str:
    """``template`` with ``{engine}`` and ``{pid}`` filled in, as an absolute path.

    ValueError naming ``where`` for an empty path, an unknown placeholder or a malformed one."""
    if not isinstance(template, str) or not template.strip():
        raise ValueError(f"{where}: a journal path must be a non-empty string, got {template!r}")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise ValueError(f"{where}: malformed path {template!r}: {e}") from None
    bad = sorted({f for f in fields if f not in PLACEHOLDERS})
    if bad:
        raise ValueError(f"{where}: unknown placeholder(s) {', '.join('{' + f + '}' for f in bad)} in "
                         f"{template!r} (known: {{engine}}, {{pid}})")
    if "engine" in fields and not engine:
        raise ValueError(f"{where}: {template!r} uses {{engine}} but the engine name is unknown here")
    path = template.format(engine=engine, pid=os.getpid() if pid is None else pid)
    if not path.endswith(".npy"):
        raise ValueError(f"{where}: a journal is a .npy file; {path!r} does not end in .npy")
    return os.path.abspath(path)


def sidecar_path(path: str) -> str:
    """The JSON sidecar of journal ``path`` (``ticks.npy`` -> ``ticks.json``)."""
    return path[:-4] + ".json"


class JournalFile:
    """A journal being written (see module doc): ``recs`` (the records, a file mapping) and
    ``st`` (``int64[N_JOURNAL_STATE]``) are what the jitted writers get.

    Ownership: the process that calls ``finish`` must be the one that wrote the records (the
    stage's process); the process that built it (the supervisor, before forking) must not
    touch ``recs`` after the fork."""

    def __init__(self, path: str, dtype, capacity: int, *, kind: str, where: str,
                 overwrite: bool = False, meta: dict | None = None, seq_field: str | None = None):
        self.path, self.part = path, path + ".part"
        self.dtype, self.capacity, self.kind = np.dtype(dtype), int(capacity), kind
        self.where, self.meta, self.seq_field = where, dict(meta or {}), seq_field
        if capacity < 1:
            raise ValueError(f"{where}: capacity must be >= 1, got {capacity}")
        if not overwrite:
            _refuse_existing(path, where)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            mm = npy_format.open_memmap(self.part, mode="w+", dtype=self.dtype, shape=(self.capacity,))
        except OSError as e:
            raise ValueError(f"{where}: cannot create journal {self.part}: {e.strerror or e}") from None
        self.offset = int(mm.offset)
        self._mm = mm
        self.recs = mm.view(np.ndarray)          # a plain ndarray over the same mapping, for numba
        self.st = np.zeros(N_JOURNAL_STATE, np.int64)
        self.created_unix = time.time()
        self.result: dict | None = None

    @property
    def count(self) -> int:
        return int(self.st[J_COUNT])

    @property
    def overflow(self) -> int:
        return int(self.st[J_OVERFLOW])

    def finish(self, log=None) -> dict:
        """Close the journal: exactly the records written become ``path`` (a ``.npy``), the
        sidecar is written, a warning is logged if records did not fit. Idempotent; returns the
        sidecar's content."""
        if self.result is not None:
            return self.result
        n = min(self.count, self.capacity)
        info = {"format": FORMAT, "kind": self.kind, "file": os.path.basename(self.path),
                "records": n, "capacity": self.capacity, "overflow": self.overflow,
                "complete": self.overflow == 0, **self.meta}
        if self.seq_field is not None:
            seq = np.asarray(self.recs[:n][self.seq_field], np.int64)
            info["first_seq"] = int(seq[0]) if n else None
            info["last_seq"] = int(seq[-1]) if n else None
            info["seq_gaps"] = int(np.count_nonzero(np.diff(seq) != 1)) if n > 1 else 0
        info["dtype"] = [list(d) for d in self.dtype.descr]
        info["created_unix"] = self.created_unix
        info["closed_unix"] = time.time()
        self._mm.flush()
        # The mapping stays (the jitted loop's arguments still reference it) but is never
        # written again: a full count sends any later append to the overflow path, so no page
        # beyond the truncated end (SIGBUS) is ever touched.
        self.st[J_COUNT] = self.capacity
        self._shrink(n)
        os.replace(self.part, self.path)
        tmp = sidecar_path(self.path) + ".tmp"
        with open(tmp, "w") as f:
            json.dump(info, f, indent=1)
        os.replace(tmp, sidecar_path(self.path))
        if self.overflow:
            (log or _stderr)(f"pyrt: warning: {self.where}: journal {self.path} full: {self.overflow} "
                             f"{self.kind} record(s) not journaled (capacity {self.capacity})")
        self.result = info
        return info

    def _shrink(self, n: int) -> None:
        """Rewrite the header to ``n`` records and truncate the file to them (in place: the
        header length does not depend on the count, numpy pads it for growth; checked)."""
        buf = io.BytesIO()
        npy_format.write_array_header_1_0(buf, {"descr": npy_format.dtype_to_descr(self.dtype),
                                                "fortran_order": False, "shape": (n,)})
        header = buf.getvalue()
        if len(header) == self.offset:
            with open(self.part, "r+b") as f:
                f.write(header)
                f.truncate(self.offset + n * self.dtype.itemsize)
            return
        # a numpy whose header length depends on the shape: copy the records out instead
        data = np.fromfile(self.part, dtype=self.dtype, count=n, offset=self.offset)
        np.save(self.part + ".tmp.npy", data)
        os.replace(self.part + ".tmp.npy", self.part)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def engine_name(ctx) -> str:
    """The engine's name for a stage context ("" for a hand-built context without one)."""
    return str(getattr(ctx, "engine", "") or "")


def journal_spec(spec, where: str, default_capacity: int) -> tuple[str, int, bool]:
    """Validate a journal spec ``{"path": str, "capacity": int, "overwrite": bool}``; return
    ``(path template, capacity, overwrite)``. Errors name ``<where>.<field>``."""
    if not hasattr(spec, "keys") or isinstance(spec, str):
        raise ValueError(f"{where}: expected a table {{ path = \"...\", capacity = N }}, got {spec!r}")
    unknown = sorted(set(spec) - {"path", "capacity", "overwrite"})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)} (known: capacity, overwrite, path)")
    if "path" not in spec:
        raise ValueError(f"{where}.path: required (e.g. \"runs/journal-{{engine}}-{{pid}}/ticks.npy\")")
    cap = spec.get("capacity", default_capacity)
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
        raise ValueError(f"{where}.capacity: must be an integer >= 1, got {cap!r}")
    over = spec.get("overwrite", False)
    if not isinstance(over, bool):
        raise ValueError(f"{where}.overwrite: must be true or false, got {over!r}")
    return spec["path"], int(cap), over


class PendingJournal:
    """A validated journal that creates its file on first use (``open()``).

    Why deferred: a stage is built in the supervisor before every other stage is built and
    checked; creating files in the constructor would leave empty journals behind whenever a
    later stage's configuration fails. The path is resolved and checked at construction (so a
    bad path still fails before anything starts); the file is created by ``open()``, which the
    stage calls from ``warm_up`` / ``kernel`` / ``do_work`` (all before the fork in ``pyrt run``)."""

    def __init__(self, ctx, spec, where: str, dtype, *, kind: str, default_capacity: int,
                 seq_field: str | None):
        template, cap, over = journal_spec(spec, where, default_capacity)
        name = engine_name(ctx)
        self.path = resolve_path(template, name, f"{where}.path")
        self.args = dict(dtype=dtype, capacity=cap, kind=kind, where=where, overwrite=over,
                         seq_field=seq_field, meta={"engine": name, "stage": ctx.name,
                                                     "pid": os.getpid(), "symbols": list(ctx.symbols)})
        if not over:
            _refuse_existing(self.path, where)
        self.file: JournalFile | None = None

    def open(self) -> JournalFile:
        if self.file is None:
            self.file = JournalFile(self.path, **self.args)
        return self.file

    def finish(self, log=None) -> dict | None:
        """Finish the file if it was opened; return its sidecar's content (None if never opened)."""
        return None if self.file is None else self.file.finish(log)


def _refuse_existing(path: str, where: str) -> None:
    for p in (path, path + ".part"):
        if os.path.exists(p):
            raise ValueError(f"{where}: journal {p} already exists; refusing to overwrite a recording "
                             f"(remove it, put {{pid}} in the path, or set overwrite = true)")


# -- the tick journal stage --------------------------------------------------------------------

class TickJournal(Stage):
    """Forward ticks unchanged and journal them (see module doc).

    Params: ``path`` (required; ``{engine}``/``{pid}`` placeholders), ``capacity`` (ticks,
    default 4 M), ``overwrite`` (false), ``batch`` (256). Counters: ``ticks`` (forwarded),
    ``journaled``, ``journal_overflow`` (forwarded but not journaled: the file was full).
    """

    INPUTS = ("tick",)
    OUTPUTS = ("tick",)
    COUNTERS = ("ticks", "journaled", "journal_overflow")
    PARAMS = ("path", "capacity", "overwrite", "batch")

    def __init__(self, ctx):
        super().__init__(ctx)
        check_keys(ctx, self.PARAMS)
        self.batch = int_param(ctx, "batch", 256, lo=1)
        spec = {k: ctx.params[k] for k in ("path", "capacity", "overwrite") if k in ctx.params}
        self.pending = PendingJournal(ctx, spec, f"stages.{ctx.name}.params", TICK, kind="tick",
                                      default_capacity=DEFAULT_TICK_CAPACITY, seq_field="seq")
        self.inp, self.out = ctx.input("tick"), ctx.output("tick")
        self.pi = np.array([self.batch], np.int64)

    @property
    def path(self) -> str:
        """Where the finished journal will be (``.part`` appended while it is written)."""
        return self.pending.path

    def _args(self):
        j = self.pending.open()
        return (self.inp.ctl, self.inp.recs, self.out.ctl, self.out.recs, j.recs, j.st,
                self.ctx.counters, self.pi)

    def do_work(self, now_ns: int) -> int:
        k = tick_journal_step(*self._args())
        if k:                       # the step returns the count it committed to the output
            self.wake_consumers()
        return k

    def kernel(self):
        """(step, args, takes_now) for the process's jitted duty loop (see pyrt_shm.jit_loop)."""
        return tick_journal_step, self._args(), False

    def warm_up(self) -> None:
        j = self.pending.open()
        tick_journal_step(twin(self.inp.ctl), twin(self.inp.recs, 2), twin(self.out.ctl),
                          twin(self.out.recs, 2), twin(j.recs, 1), j.st.copy(), twin(self.ctx.counters),
                          self.pi.copy())

    def on_close(self) -> None:
        self.pending.finish()

    def journal_info(self) -> dict | None:
        """The sidecar's content once the journal is finished, else None."""
        f = self.pending.file
        return None if f is None else f.result
