"""``run_backtest``: history replayed through the live stages, fused in one process, on the data clock.

What runs is the topology's own stages (book, signal, risk, exec with the ``sim`` venue),
built over private memory (``EngineMemory(backend="local")``) and driven in one thread by the
native data-clock loop (``pyrt_shm.jit_loop.DataClockLoop``), so a backtest exercises the same
compiled code as the live engine. What the runner changes in the topology:

* **one process**: every stage runs in one loop, in pipeline order (a topological order of
  the rings; the risk <-> exec cycle is broken in file order);
* **the source** (the one stage without input rings) replays the data with ``clock =
  "data"``: ticks (trades, quotes, L2 records) through ``procs.replay_feed:ReplayFeed`` into
  the book; bars through ``procs.replay_feed:ReplayBars``, straight to the signal: in a
  topology whose source feeds a book (the default, config/backtest-ema.toml) the book is
  taken out for bar data (it takes no bar records; its params do not apply). A replay source
  keeps its ``batch``, ``span``, ``spread_bps``, ``quote_size`` (and ``synthetic_quotes`` /
  ``bar_period_s``); any other feed's params are dropped. The data are the ``MarketData``
  given, or, with ``data=None``, the file(s) the source's ``path`` names;
* **the venue**: the stage that consumes risk's orders becomes the sim venue
  (``procs.exec:ExecStage``, keeping the params it knows): a backtest of a live topology
  (config/alpaca-paper.toml) never reaches a real venue;
* **symbols**: ``engine.symbols`` becomes the data's symbols (ids as in ``MarketData``).

**The data clock.** ``now`` is the time of the data (unix ns), never the machine's: every
stage's step gets it, so the sim venue's latency and queue model, risk's rate limits and
P&L samples, exec's retries all run on data time. One instant settles before time moves:
the loop keeps ``now`` while a cycle did work and a ring still holds records, then jumps to
the earliest of: the next data record, the next order arrival at the venue (so a latency of
50 us is exactly 50 us of data time after the order, even between two ticks an hour apart),
or, while exec holds orders back (rate limit, retry backoff) or risk works an algo or a
stop, ``now + 1 ms`` (risk's algo slices and stop retries and exec's retries are thus late
by at most 1 ms of data time, or until the next record). An order decided on an event at
time t thus meets the book as it stands after every record stamped <= t + latency (at most
``batch`` records of one instant are published per step). ``span`` N > 1 trades this
exactness for speed: the clock then jumps N records at a time, and an order decided on any
of them meets the book as it stands after the N-th. At the end the loop drains: it keeps
stepping the clock until nothing is pending (at most ``drain_s`` of data time past the last
record); positions left open are **marked to the last mid** (the last close for bars), not
closed; resting orders stay open.

**Determinism.** No wall-clock reading reaches orders, fills or equity: the one field the
stages stamp from the machine clock, ``sent_ns``, is replaced in the recorded copies by the
data time at which the record was published. Two runs of the same inputs give identical
``orders``, ``fills`` and ``equity`` arrays, bit for bit. (Latency histograms mix data
stamps with the machine clock in a backtest and mean nothing.)

**Recording.** Every ORDER risk publishes and every FILL exec publishes is copied right after
the producing stage's step, before its consumer releases the slots (a tap in the loop; the
rings are not disturbed). The equity is sampled from risk's ``positions`` table (read under
its seqlock) each time the clock has settled: at every data time (``equity_every="bar"``, the
default for bar data) or once per interval of data time that held data, stamped at the
interval's end (``"1s"``, the default otherwise; ``"250ms"``, ``"1m"``, ``"1d"``, or seconds)::

    equity = starting_equity + sum(realized + unrealized - fees)
    cash   = starting_equity + sum(realized - fees - sign(qty) * cost)
    gross  = sum(|qty| * mark);  net = sum(qty * mark)      (equity == cash + net)

Stages without a native step (a Python strategy) run through the same loop written in Python
(``stage.do_work`` per cycle): the same results, about 100x slower.
"""
from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import numpy as np
from numba import njit

from layouts.orders import FILL, FILL_FULL, FILL_PARTIAL, ORDER, POSITION
from layouts.ring import IDX_HEAD
from ringbuf import spsc
from ringbuf._atomics import load_acquire
from ringbuf.seqlock import read_row

from ..config import ConfigError, load_topology, override_from_dotted
from ..config_model import ProcessConfig, StageConfig, Topology, deep_freeze
from ..jit_loop import NEVER, STATUS_DONE, STATUS_GUARD, DataClockLoop
from ..wiring import EngineMemory, WiringError
from .data import DataError, MarketData, load_ticks, resolve

SIM_EXEC = "procs.exec:ExecStage"
REPLAY_FEED = "procs.replay_feed:ReplayFeed"
REPLAY_BARS = "procs.replay_feed:ReplayBars"
_REPLAYS = {"tick": REPLAY_FEED, "top": REPLAY_BARS}
#: params a replay source keeps in a backtest (``path``/``data``/``clock``/``speed`` are the runner's)
_COMMON = ("batch", "span", "spread_bps", "quote_size")
_REPLAY_PARAMS = {"tick": _COMMON + ("synthetic_quotes",), "top": _COMMON + ("bar_period_s",)}
#: CPUs the topology may name: placement means nothing in a backtest, so none is refused
_ANY_CPU = frozenset(range(4096))
POLL_NS = 1_000_000            #: clock step while exec or risk wait for time to pass
CHUNK_CYCLES = 1 << 18         #: cycles per native call (progress, buffers, stall checks)
# guard statuses: which buffer needs to grow
GROW_ORDERS, GROW_FILLS, GROW_EQUITY = STATUS_GUARD, STATUS_GUARD + 1, STATUS_GUARD + 2
E_COUNT, E_EVERY = 0, 1        #: equity sampler state
READ_TRIES = 1000
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h|d)\s*$")
_UNIT_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9,
            "d": 86400 * 10**9}


class BacktestError(ValueError):
    """The topology, the data or an option cannot make a backtest (the message says which)."""


# -- hooks of the native loop ---------------------------------------------------------------------
# Compiled without reference counting (``_nrt=False``): they allocate nothing, and with it each
# array argument costs an atomic incref/decref pair per call, i.e. per cycle.

@njit(cache=True, _nrt=False)
def tap_ring(now, ctl, raw, log, raw_log, lst):
    """Copy the records published since the last tap into ``log`` (``lst``: count, cursor),
    stamping ``sent_ns`` with the data time. ``raw``/``raw_log`` are the same memory as bytes
    (``uint8[n, itemsize]``): records are copied byte for byte, padding included, so two runs
    give identical bytes. Room is ensured by ``log_room`` before the cycle."""
    head = load_acquire(ctl, IDX_HEAD)
    cur = np.uint64(lst[1])
    n = np.int64(head - cur)
    base = lst[0]
    width = raw.shape[1]
    for k in range(n):
        src = spsc.slot(ctl, cur + np.uint64(k))
        for b in range(width):
            raw_log[base + k, b] = raw[src, b]
        log[base + k].sent_ns = now
    lst[0] = base + n
    lst[1] = np.int64(head)


@njit(cache=True, _nrt=False)
def log_room(log, lst, need, status):
    """0 if ``log`` has room for ``need`` more records, else ``status`` (grow it)."""
    return 0 if log.shape[0] - lst[0] >= need else status


@njit(cache=True, _nrt=False)
def equity_room(eq_t, es, status):
    return 0 if eq_t.shape[0] - es[E_COUNT] >= 1 else status


@njit(cache=True, _nrt=False)
def sample_equity(now, nxt, pos_seqs, pos_rows, buf, start_equity, eq_t, eq_v, es):
    """Observer: one equity sample per settled data time, or per interval that held data."""
    if nxt == now:
        return
    every = es[E_EVERY]
    t = now
    if every > 0:
        t = ((now + every - 1) // every) * every      # the end of now's interval
        if t >= nxt:
            return                                   # the interval goes on at nxt
    realized = unreal = fees = cash_adj = gross = net = 0.0
    for s in range(pos_rows.shape[0]):
        if read_row(pos_seqs, pos_rows, s, buf, READ_TRIES) == 0:
            continue
        p = buf[0]
        realized += p.realized
        unreal += p.unrealized
        fees += p.fees
        if p.qty != 0.0:
            cash_adj += p.cost if p.qty > 0.0 else -p.cost
            gross += abs(p.qty) * p.mark
            net += p.qty * p.mark
    i = es[E_COUNT]
    if i > 0 and eq_t[i - 1] >= t:
        i -= 1                                       # the same instant again (a drain): replace it
    eq_t[i] = t
    eq_v[i, 0] = start_equity + realized + unreal - fees
    eq_v[i, 1] = start_equity + realized - fees - cash_adj
    eq_v[i, 2] = gross
    eq_v[i, 3] = net
    es[E_COUNT] = i + 1


@njit(cache=True, _nrt=False)
def exec_timer(now, vs, rq, est, poll_ns):
    """The sim venue's next request arrival; ``now + poll_ns`` while exec holds orders back."""
    v = vs[0]
    t = NEVER
    if v.rq_head < v.rq_tail:
        t = rq[v.rq_head & (rq.shape[0] - 1)].due
    if est[0].n_pend > 0 and now + poll_ns < t:
        t = now + poll_ns
    return t


@njit(cache=True, _nrt=False)
def risk_timer(now, rs, pv, poll_ns):
    """``now + poll_ns`` while risk works an algo, waits to retry a stop or sweeps cancels."""
    if rs[0].algo_active > 0 or pv[0].stop_wait != 0 or pv[0].cancel_all != 0:
        return now + poll_ns
    return NEVER


# -- the topology ---------------------------------------------------------------------------------

def parse_every(every) -> int:
    """Equity sampling interval in ns: 0 = every data time (``"bar"``), else a duration."""
    if every in (None, "bar", "bars", 0):
        return 0
    if isinstance(every, (int, float)) and not isinstance(every, bool) and math.isfinite(every) and every > 0:
        return int(round(every * 1e9))
    m = _DURATION.match(every) if isinstance(every, str) else None
    if m is None or float(m.group(1)) <= 0:
        raise BacktestError(f"equity_every: 'bar' or a duration like '1s', '250ms', '1m', '1d' (or seconds), "
                            f"got {every!r}")
    return int(round(float(m.group(1)) * _UNIT_NS[m.group(2)]))


def _apply_to_topology(topo: Topology, flat: dict) -> Topology:
    """Dotted overrides on a Topology object: ``stages.<s>.params.<k...>``, ``stages.<s>.class``,
    ``engine.symbols``. (A config path gets the config's own, complete mechanism.)"""
    stages = {s.name: s for s in topo.stages}
    engine = topo.engine
    errors = []
    for key, value in flat.items():
        parts = key.split(".")
        if parts[:1] == ["engine"] and parts[1:] == ["symbols"]:
            engine = replace(engine, symbols=tuple(value))
        elif len(parts) >= 3 and parts[0] == "stages" and parts[1] in stages and (
                parts[2] == "params" and len(parts) > 3 or parts[2:] == ["class"]):
            st = stages[parts[1]]
            if parts[2] == "class":
                stages[parts[1]] = replace(st, class_path=str(value))
                continue
            params = _thaw(st.params)
            node = params
            for p in parts[3:-1]:
                node = node.setdefault(p, {})
                if not isinstance(node, dict):
                    errors.append(f"<overrides>: {key}: {p} is not a table")
                    break
            else:
                node[parts[-1]] = value
                stages[parts[1]] = replace(st, params=deep_freeze(params))
        else:
            errors.append(f"<overrides>: {key}: a Topology object takes overrides of stages.<name>.params.*, "
                          f"stages.<name>.class and engine.symbols; pass the config's path to override others")
    if errors:
        raise BacktestError("\n".join(errors))
    return replace(topo, engine=engine, stages=tuple(stages[s.name] for s in topo.stages))


def _thaw(v):
    if isinstance(v, (dict, MappingProxyType)):
        return {k: _thaw(x) for k, x in v.items()}
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    return v


def pipeline_order(topo: Topology) -> list[str]:
    """Stages in data-flow order: sources first, then each stage once its producers have run;
    a cycle (risk <-> exec) is broken by taking the waiting stage that comes first in the file."""
    names = [s.name for s in topo.stages]
    producers = {n: {r.producer for r in topo.rings_in(n)} - {n} for n in names}
    done, order = set(), []
    while len(order) < len(names):
        ready = [n for n in names if n not in done and producers[n] <= done]
        if not ready:
            waiting = [n for n in names if n not in done]
            ready = [min(waiting, key=lambda n: (len(producers[n] - done), names.index(n)))]
        for n in ready[:1]:
            done.add(n)
            order.append(n)
    return order


def _source_stage(topo: Topology):
    sources = [s for s in topo.stages if not topo.rings_in(s.name)]
    if len(sources) != 1:
        raise BacktestError(f"{topo.source}: a backtest replays data through one source stage (a stage without "
                            f"input rings); this topology has {len(sources)}: {[s.name for s in sources]}")
    src = sources[0]
    outs = [r.record for r in topo.rings_out(src.name)]
    if len(outs) != 1 or outs[0] not in _REPLAYS:
        raise BacktestError(f"{topo.source}: stages.{src.name}: the source must produce one ring of 'tick' records "
                            f"(to the book) or of 'top' records (bars, to the signal); it produces {outs}")
    return src, outs[0]


def _flatten(overrides, prefix: str = "") -> dict:
    """Dotted keys from dotted or nested overrides (``override_from_dotted``'s output)."""
    out = {}
    for k, v in (overrides or {}).items():
        if not isinstance(k, str):
            raise BacktestError(f"overrides: keys are dotted strings like 'stages.signal.params.fast', got {k!r}")
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def _bars_skip_book(topo: Topology, src: StageConfig) -> Topology:
    """Bar data in a topology whose source feeds a book: the book is taken out and ReplayBars
    feeds the book's consumer directly (the book takes no bar records; see procs.replay_feed)."""
    (md,) = topo.rings_out(src.name)
    book = md.consumer
    b_in, b_out = topo.rings_in(book), topo.rings_out(book)
    if len(b_in) != 1 or len(b_out) != 1 or b_out[0].record != "top":
        raise BacktestError(f"{topo.source}: the data are bars, which the book does not take; stage {book!r} "
                            f"cannot be bypassed (it must read only the ticks and write only 'top' events): "
                            f"use a topology whose source is {REPLAY_BARS} (config/backtest-bars.toml)")
    rings = tuple(replace(r, producer=src.name) if r is b_out[0] else r for r in topo.rings if r is not md)
    stages = tuple(s for s in topo.stages if s.name != book)
    procs = tuple(replace(p, stages=tuple(x for x in p.stages if x != book)) for p in topo.processes)
    return replace(topo, stages=stages, rings=rings, processes=tuple(p for p in procs if p.stages))


def _sim_venue(topo: Topology, stages: tuple) -> tuple:
    """The consumer of risk's orders becomes the sim venue's ``procs.exec:ExecStage`` (keeping
    the params it knows): a backtest never reaches a real venue."""
    from ..classpath import import_class

    execs = {r.consumer for r in topo.rings if r.record == "order"}
    known = None
    out = []
    for st in stages:
        if st.name in execs and st.class_path != SIM_EXEC:
            known = known or set(import_class(SIM_EXEC, "sim venue").PARAMS)
            st = replace(st, class_path=SIM_EXEC,
                         params=deep_freeze({k: v for k, v in st.params.items() if k in known}))
        out.append(st)
    return tuple(out)


def prepare(topology_or_path, data: MarketData | None, overrides: dict | None, *, span: int | None = None):
    """``(topology, data, source stage name)``: the backtest's topology (see module doc).
    ``span``: the replay's ``span`` param (records the clock covers a step; None = the config's)."""
    flat = _flatten(overrides)
    path = topology_or_path
    if isinstance(path, Topology):
        topo = _apply_to_topology(path, flat) if flat else path
    else:
        try:
            topo = load_topology(None if path is None else os.fspath(path),
                                 overrides=override_from_dotted(flat) if flat else None,
                                 available_cpus=_ANY_CPU, isolated_cpus=())
        except ConfigError as e:
            raise BacktestError(str(e)) from None
    src, record = _source_stage(topo)
    if data is None:
        p = src.params.get("path")
        if p is None:
            raise BacktestError(f"{topo.source}: no data given and stages.{src.name}.params.path names no file")
        try:
            files = [resolve(x) for x in p] if isinstance(p, tuple) else resolve(p)
            data = load_ticks(files, sort=src.params.get("unsorted", "sort"))
        except DataError as e:
            raise BacktestError(str(e)) from None
    if not isinstance(data, MarketData):
        raise BacktestError(f"data: expected a MarketData (pyrt_shm.research.data.load_ticks), "
                            f"got {type(data).__name__}")
    if len(data) == 0:
        raise BacktestError(f"{data.source}: no data to replay")
    if data.is_bars and record == "tick":
        topo = _bars_skip_book(topo, src)
        record = "top"
    elif record == "top" and not data.is_bars:
        raise BacktestError(f"{topo.source}: stages.{src.name} replays bars to the signal, but the data "
                            f"({data.source}) hold {data.counts()}: replay ticks through a book (a topology "
                            f"whose source produces 'tick' records, e.g. config/backtest-ema.toml)")
    replay = _REPLAYS[record]
    if src.class_path in _REPLAYS.values():
        keep = _REPLAY_PARAMS[record]
        params = {k: v for k, v in src.params.items() if k in keep}
    else:
        params = {}
    params["clock"] = "data"
    if span is not None:
        if isinstance(span, bool) or not isinstance(span, int) or span < 1:
            raise BacktestError(f"span: records per clock step, an integer >= 1, got {span!r}")
        params["span"] = span
    stages = tuple(replace(s, class_path=replay, params=deep_freeze(params)) if s.name == src.name else s
                   for s in topo.stages)
    stages = _sim_venue(topo, stages)
    proc = ProcessConfig(name="backtest", cpu=None, cpu_auto=True, idle="busy-spin",
                         stages=tuple(pipeline_order(replace(topo, stages=stages))))
    engine = replace(topo.engine, symbols=tuple(data.symbols))
    return replace(topo, engine=engine, stages=stages, processes=(proc,), warnings=()), data, src.name


# -- the run ----------------------------------------------------------------------------------------

def _bytes(a: np.ndarray) -> np.ndarray:
    """``a`` (1-D records) as ``uint8[len(a), itemsize]``: the same memory."""
    return a.view(np.uint8).reshape(a.shape[0], a.dtype.itemsize)


def _records(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` with its bytes (numpy's ``copy`` of an aligned record array copies the
    fields only, leaving the padding uninitialized: two runs would differ in bytes)."""
    out = np.zeros(a.shape[0], a.dtype)
    _bytes(out)[:] = _bytes(a)
    return out


def _grow(a: np.ndarray, at_least: int) -> np.ndarray:
    b = np.zeros((max(2 * a.shape[0], at_least),) + a.shape[1:], a.dtype)
    if a.dtype.names is None:
        b[:a.shape[0]] = a
    else:
        _bytes(b)[:a.shape[0]] = _bytes(a)           # bytes, padding included (see _records)
    return b


class _Recorder:
    """The buffers the loop's hooks write: order and fill logs, equity samples."""

    def __init__(self, mem, every_ns: int, n_hint: int):
        self.rings = {}
        for kind in ("order", "fill"):
            r = [x for x in mem.topology.rings if x.record == kind]
            self.rings[kind] = mem.rings[r[0].name] if len(r) == 1 else None
        self.orders = np.zeros(1024, ORDER)
        self.fills = np.zeros(1024, FILL)
        self.o_st = np.zeros(2, np.int64)
        self.f_st = np.zeros(2, np.int64)
        self.eq_t = np.zeros(max(1024, min(n_hint, 1 << 20)), np.int64)
        self.eq_v = np.zeros((self.eq_t.shape[0], 4))
        self.es = np.array([0, every_ns], np.int64)
        pos = mem.tables.get("positions")
        if pos is None or pos.rows.dtype != POSITION:
            raise BacktestError(f"{mem.topology.source}: no stage owns a 'positions' table (procs.risk:RiskStage): "
                                f"there is no P&L to follow")
        self.pos = pos
        rs = mem.tables.get("risk_state")
        self.start_equity = float(rs.rows[0]["start_equity"]) if rs is not None else 0.0
        self.buf = np.zeros(1, POSITION)

    def cap(self, kind: str) -> int:
        ring = self.rings[kind]
        return 0 if ring is None else int(ring.statistics().capacity)

    def tap_args(self, kind: str):
        ring = self.rings[kind]
        log, st = (self.orders, self.o_st) if kind == "order" else (self.fills, self.f_st)
        return ring.ctl, _bytes(ring.recs), log, _bytes(log), st

    def guards(self):
        return [(log_room, (self.orders, self.o_st, self.cap("order"), GROW_ORDERS)),
                (log_room, (self.fills, self.f_st, self.cap("fill"), GROW_FILLS)),
                (equity_room, (self.eq_t, self.es, GROW_EQUITY))]

    def observer(self):
        return sample_equity, (self.pos.seqs, self.pos.rows, self.buf, self.start_equity, self.eq_t, self.eq_v,
                               self.es)

    def grow(self, status: int) -> None:
        if status == GROW_ORDERS:
            self.orders = _grow(self.orders, int(self.o_st[0]) + self.cap("order"))
        elif status == GROW_FILLS:
            self.fills = _grow(self.fills, int(self.f_st[0]) + self.cap("fill"))
        elif status == GROW_EQUITY:
            self.eq_t = _grow(self.eq_t, int(self.es[E_COUNT]) + 1)
            self.eq_v = _grow(self.eq_v, int(self.es[E_COUNT]) + 1)
        else:
            raise RuntimeError(f"data-clock loop returned an unknown status {status}")

    def equity(self) -> np.ndarray:
        from .equity import EQUITY, fill_drawdown

        n = int(self.es[E_COUNT])
        out = np.zeros(n, EQUITY)
        out["t_ns"] = self.eq_t[:n]
        out["equity"], out["cash"] = self.eq_v[:n, 0], self.eq_v[:n, 1]
        out["gross"], out["net"] = self.eq_v[:n, 2], self.eq_v[:n, 3]
        return fill_drawdown(out, self.start_equity)


class _Driver:
    """The loop's hooks for this run, run natively or (a Python stage) by ``_python_loop``."""

    def __init__(self, stages: list, mem, rec: _Recorder, source, native: bool = True):
        self.stages, self.rec = stages, rec
        index = {s.name: i for i, s in enumerate(stages)}
        self.taps = {}
        self.tap_at = {}              #: kind -> (stage index, position in its taps), for ``refresh``
        for kind in ("order", "fill"):
            ring = rec.rings[kind]
            if ring is not None:
                producer = next(r.producer for r in mem.topology.rings if r.record == kind)
                lst = self.taps.setdefault(index[producer], [])
                self.tap_at[kind] = (index[producer], len(lst))
                lst.append((tap_ring, rec.tap_args(kind)))
        self.timers = [source.timer()]
        for s in stages:
            venue = getattr(s, "venue", None)
            if venue is not None and hasattr(venue, "rq") and hasattr(s, "est"):
                self.timers.append((exec_timer, (venue.vs, venue.rq, s.est, POLL_NS)))
            if hasattr(s, "rs") and hasattr(s, "pv") and "algo_active" in (s.rs.dtype.names or ()):
                self.timers.append((risk_timer, (s.rs, s.pv, POLL_NS)))
        self.rings = tuple(r.ctl for r in mem.rings.values())
        self.loop = None
        if native and all(s.kernel() is not None for s in stages):
            self.loop = DataClockLoop(stages, self.rings, taps=self.taps, guards=rec.guards(),
                                      timers=self.timers, observers=[rec.observer()])
            self.loop.run(np.zeros(1, np.int64), 0)      # compile (or load) now: zero cycles touch nothing

    def refresh(self) -> None:
        """Hand the (possibly reallocated) buffers to the loop's hooks."""
        rec = self.rec
        for kind, (i, k) in self.tap_at.items():
            self.taps[i][k] = (tap_ring, rec.tap_args(kind))
            if self.loop is not None:
                self.loop.set_args("taps", (i, k), rec.tap_args(kind))
        if self.loop is not None:
            for j, g in enumerate(rec.guards()):
                self.loop.set_args("guards", j, g[1])
            self.loop.set_args("observers", 0, rec.observer()[1])

    def run(self, clk, max_cycles: int):
        if self.loop is not None:
            return self.loop.run(clk, max_cycles)
        return _python_loop(self, clk, max_cycles)


def _python_loop(d: _Driver, clk, max_cycles: int):
    """The data-clock loop of ``pyrt_shm.jit_loop`` in Python, for stages without a native step."""
    now = int(clk[0])
    cycles = work = 0
    status = 0
    guards, obs = d.rec.guards(), d.rec.observer()
    while cycles < max_cycles:
        g = next((s for fn, a in guards if (s := int(fn(*a))) != 0), 0)
        if g:
            status = g
            break
        w = 0
        for i, s in enumerate(d.stages):
            w += int(s.do_work(now))
            for fn, a in d.taps.get(i, ()):
                fn(now, *a)
        cycles += 1
        work += w
        if w > 0 and any(int(spsc.depth(c)) for c in d.rings):
            continue
        nxt = min(int(fn(now, *a)) for fn, a in d.timers)
        nxt = max(nxt, now)
        obs[0](now, nxt, *obs[1])
        if nxt == NEVER:
            status = STATUS_DONE
            break
        now = nxt
    clk[0] = now
    return cycles, work, status


@dataclass
class BacktestResult:
    """What a backtest produced (see ``run_backtest``). ``trades`` and ``metrics`` are computed
    on first use (``pyrt_shm.research.trades`` / ``metrics``)."""

    orders: np.ndarray
    fills: np.ndarray
    equity: np.ndarray
    events: int
    elapsed_s: float
    symbols: tuple
    initial_equity: float
    marks: np.ndarray
    counters: dict
    positions: np.ndarray
    info: dict
    conventions: object = None
    _trades: np.ndarray | None = field(default=None, repr=False)
    _metrics: dict | None = field(default=None, repr=False)

    @property
    def executions(self) -> np.ndarray:
        """The fills that traded (partial and full), in order."""
        f = self.fills
        return f[((f["status"] == FILL_PARTIAL) | (f["status"] == FILL_FULL)) & (f["qty"] > 0)]

    @property
    def trades(self) -> np.ndarray:
        if self._trades is None:
            from .trades import round_trips

            self._trades = round_trips(self.executions, self.marks)
        return self._trades

    @property
    def metrics(self) -> dict:
        if self._metrics is None:
            from .metrics import Conventions, performance

            conv = self.conventions if self.conventions is not None else Conventions()
            self._metrics = performance(self.equity, self.trades, conv, self.initial_equity)
        return self._metrics

    @property
    def events_per_s(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def summary(self) -> dict:
        """Everything for ``summary.json`` (JSON types only)."""
        pos = {self.symbols[int(p["sym"])]: {"qty": float(p["qty"]), "avg_px": float(p["avg_px"]),
                                             "mark": float(p["mark"]), "realized": float(p["realized"]),
                                             "unrealized": float(p["unrealized"]), "fees": float(p["fees"])}
               for p in self.positions}
        eq = self.equity
        return {
            **self.info,
            "symbols": list(self.symbols),
            "events": int(self.events),
            "elapsed_s": float(self.elapsed_s),
            "events_per_s": float(self.events_per_s),
            "orders": int(len(self.orders)),
            "fills": int(len(self.fills)),
            "executions": int(len(self.executions)),
            "trades": int(len(self.trades)),
            "initial_equity": float(self.initial_equity),
            "final_equity": float(eq["equity"][-1]) if len(eq) else float(self.initial_equity),
            "equity_samples": int(len(eq)),
            "positions": pos,
            "metrics": _jsonable(self.metrics),
            "counters": self.counters,
        }

    def write(self, out_dir) -> dict:
        """Write summary.json, trades.csv, equity.csv and report.html into ``out_dir``
        (``pyrt_shm.research.report_files``); return ``{kind: path}``."""
        from .report_files import write_reports

        return write_reports(out_dir, self.summary, self.trades, self.equity, self.symbols)


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def run_backtest(topology_or_path, data: MarketData | None, overrides: dict | None = None,
                 progress: bool = False, conventions=None, *, equity_every=None, span: int | None = None,
                 drain_s: float = 3600.0, python_loop: bool = False) -> BacktestResult:
    """Replay ``data`` through the topology's stages on the data clock (see module doc).

    ``topology_or_path``: a config path, a ``Topology``, or None (the embedded default).
    ``overrides``: dotted keys -> values (``{"stages.signal.params.fast": 8}``), merged by the
    config's own mechanism and validated with it. ``equity_every``: ``"bar"`` or a duration
    (default: ``"bar"`` for bar data, else ``"1s"``). ``span``: data records the clock covers
    per step (default: the replay's ``span`` param, 1: event by event, exact; N > 1 is faster
    and lets an order decided within a step meet the book as it stands at the step's end).
    ``drain_s``: data time the run may go on after the last record to settle what is pending.
    ``python_loop``: run the Python loop even when every stage has a native step (a
    cross-check; slow). ``progress``: a progress bar on stderr when it is a terminal.
    Raises ``BacktestError`` for a bad topology, data or option (the message names it).
    """
    topo, data, src_name = prepare(topology_or_path, data, overrides, span=span)
    every_ns = parse_every(equity_every if equity_every is not None else ("bar" if data.is_bars else "1s"))
    if not math.isfinite(drain_s) or drain_s < 0:
        raise BacktestError(f"drain_s: must be >= 0, got {drain_s!r}")
    t_setup = time.perf_counter()
    try:
        mem = EngineMemory(topo, "local")
    except (WiringError, ValueError) as e:
        raise BacktestError(str(e)) from None
    try:
        stages = []
        for name in topo.processes[0].stages:
            ctx = mem.stage_context(name)
            if name == src_name:
                ctx.params = MappingProxyType({**ctx.params, "data": data})
            try:
                stages.append(mem.classes[name](ctx))
            except ValueError as e:
                raise BacktestError(str(e)) from None
        for s in stages:
            try:
                s.warm_up()
            except WiringError as e:
                raise BacktestError(str(e)) from None
        rec = _Recorder(mem, every_ns, len(data) if every_ns == 0 else 1024)
        source = stages[[s.name for s in stages].index(src_name)]
        drv = _Driver(stages, mem, rec, source, native=not python_loop)
        setup_s = time.perf_counter() - t_setup
        span = int(getattr(source, "span", 1))      # the first step covers ``span`` records too
        clk = np.array([data.ticks["exch_ns"][min(span, len(data)) - 1]], np.int64)
        bar = None
        if progress:
            from .progress import Progress

            bar = Progress(len(data), label="backtest")
        limit = data.end_ns + int(drain_s * 1e9)
        stalled = False
        started = []
        t0 = time.perf_counter()
        try:
            for s in stages:
                s.on_start()
                started.append(s)
            last = None
            while True:
                c, w, status = drv.run(clk, CHUNK_CYCLES)
                if status == STATUS_DONE:
                    break
                if status >= STATUS_GUARD:
                    rec.grow(status)
                    drv.refresh()
                    continue
                if bar is not None:
                    bar.update(source.cursor)
                if source.cursor >= len(data) and int(clk[0]) > limit:
                    stalled = True                      # pending work past the drain limit: stop here
                    break
                state = (int(clk[0]), source.cursor, w)
                if w == 0 and state == last:
                    raise RuntimeError(f"backtest stalled at data time {int(clk[0])} with "
                                       f"{source.cursor}/{len(data)} records replayed")
                last = state
        finally:
            elapsed = time.perf_counter() - t0
            for s in started:
                s.on_close()
            if bar is not None:
                bar.update(source.cursor)
                bar.close()
        counters = {s.name: s.counter_values() for s in stages}
        positions = rec.pos.snapshot()
        marks = positions["mark"].astype(np.float64)
        tops = mem.tables.get("tops")
        if tops is not None:
            t = tops.snapshot()
            mid = np.where(t["valid"] != 0, 0.5 * (t["bid"] + t["ask"]), t["last"])
            marks = np.where(marks > 0.0, marks, mid)
        info = {
            "config": topo.source,
            "data": data.source,
            "data_counts": data.counts(),
            "start_ns": int(data.start_ns),
            "end_ns": int(data.end_ns),
            "clock_end_ns": int(clk[0]),
            "loop": "python" if drv.loop is None else "native",
            "setup_s": float(setup_s),
            "equity_every_ns": int(every_ns),
            "span": span,
            "drain_incomplete": bool(stalled),
            "overrides": {k: _jsonable(v) for k, v in _flatten(overrides).items()},
        }
        rs = mem.tables.get("risk_state")
        if rs is not None:
            info["open_orders_at_end"] = int(rs.read(0)["open_orders"])     # resting orders stay open
        return BacktestResult(
            orders=_records(rec.orders[:int(rec.o_st[0])]), fills=_records(rec.fills[:int(rec.f_st[0])]),
            equity=rec.equity(), events=source.cursor, elapsed_s=elapsed, symbols=tuple(data.symbols),
            initial_equity=rec.start_equity, marks=marks, counters=counters, positions=positions,
            info=info, conventions=conventions)
    finally:
        mem.close()
