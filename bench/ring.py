"""Ring hop benchmark: the numba SPSC ring over /dev/shm against Python IPC baselines.

One run measures, side by side and on the same 80-byte ``layouts.market.TICK`` record:

* ``numba-ring``: ``ringbuf.spsc`` driven from njit producer/consumer loops in two forked,
  pinned processes, the ring laid over a ``/dev/shm`` segment (``pyrt_shm.shm_ring``).
* ``mp-pipe``: ``multiprocessing.Pipe`` ``send_bytes``/``recv_bytes`` of the raw record bytes.
* ``mp-queue``: ``multiprocessing.Queue`` of the record as a 12-field tuple (pickled by the
  queue's feeder thread); the producer waits with GIL-releasing calls so the feeder runs.
* ``zmq-ipc``: pyzmq PUSH/PULL over ``ipc://`` (socket in a temp dir), blocking ``recv``.
* ``posix-mq``: ``posix_ipc.MessageQueue`` ``send``/``receive`` (blocking) of the raw bytes.

Modes (one row each per implementation and placement):

``latency``
    Paced at ``--rate`` msgs/s, coordinated omission corrected: message ``i`` is due at
    ``t0 + i / rate``; the producer waits for that instant (spinning on CLOCK_MONOTONIC, or
    sleeping when far), stamps the *scheduled* time into ``recv_ns`` and sends. It never
    skips: when it falls behind, the queueing delay is part of the latency. The consumer
    stores ``now - scheduled`` per message into a preallocated int64 array (raw samples,
    exact percentiles with numpy); the first 5 % (warm-up) are sent on top of ``--messages``
    and discarded.
``throughput-unbatched`` / ``throughput-batched-64``
    As fast as possible for a fixed time: one record per publish (ring ``claim(1)`` /
    ``commit(1)``, one message per send), or 64 records per claim/commit (ring) and 64
    records concatenated into one message (baselines). Reported in records per second,
    from the producer's first send to the consumer's receipt of the end marker.

Placements: the ring runs ``separate-cores-busy-spin`` (producer pinned to the first
allowed CPU, consumer to the second, both spin with ``pause`` while idle; kept short) and
``one-core-yield`` (both on the first CPU, ``sched_yield()`` called from njit after a few
empty polls). The baselines run ``one-core`` and ``two-cores`` with their natural blocking
receive; their paced producer waits with ``os.sched_yield()`` (GIL released).

Processes are forked (``multiprocessing`` 'fork'); every njit function is compiled in the
parent first (a warm-up run on a tiny ring), so the children never compile. Each child is
joined with a timeout and killed on overrun; every ring segment and message queue is
unlinked in ``finally`` (nothing is left in /dev/shm). Results come back through anonymous
shared mappings inherited across ``fork``.

Run: ``PYTHONPATH=. python -m bench.ring --json`` (or ``pyrt bench ring --json``).
"""
from __future__ import annotations

import argparse
import gc
import json
import mmap
import multiprocessing as mp
import os
import platform
import shutil
import struct
import sys
import tempfile
import time
import traceback

import numpy as np
from numba import njit

from bench import host
from layouts.market import TICK, TICK_QUOTE
from ringbuf._atomics import cpu_pause, load_acquire, monotonic_ns, store_release
from ringbuf.spsc import claim, commit, head_of, poll, release, slot, tail_of

# The ring consumer also records each measured latency into an HDR row with the engine's own
# recorder (pyrt_shm.hdr_recorder); reported next to the exact percentiles as a cross-check.
try:
    from layouts.histogram import HISTOGRAM
    from pyrt_shm.hdr_recorder import hdr_record
    HDR_ERROR = None
except Exception as _e:  # pragma: no cover - only while the recorder is missing or broken
    HDR_ERROR = f"{type(_e).__name__}: {_e}"
    HISTOGRAM = np.dtype([("total", "<i8")])

    @njit(cache=True)
    def hdr_record(hists, i, value_ns):
        pass

# ---------------------------------------------------------------------------------------
# sched_yield() from njit: the engine's own intrinsic.
from ringbuf._atomics import sched_yield  # noqa: E402


IDLE_SPIN = 0    #: idle = x86 ``pause`` (busy-spin)
IDLE_YIELD = 1   #: idle = ``pause`` for ``yield_after`` empty polls, then ``sched_yield()``

# flags words of a throughput run (int64, anonymous shared mapping)
F_DONE = 0       #: producer store-releases 1 after its last commit
F_TOTAL = 8      #: records published (written before F_DONE); own cache line

_NS = 1_000_000_000


@njit(cache=True, inline="always")
def _fill(r, seq, stamp):
    r.seq = seq
    r.recv_ns = stamp
    r.exch_ns = 0
    r.sym = 7
    r.kind = TICK_QUOTE
    r.flags = 0
    r.price = 100.25
    r.size = 100.0
    r.bid = 100.25
    r.ask = 100.26
    r.bid_size = 300.0
    r.ask_size = 200.0


@njit(cache=True, inline="always")
def _idle(mode, empty, yield_after):
    if mode == IDLE_YIELD and empty >= yield_after:
        sched_yield()
    else:
        cpu_pause()


@njit(cache=True)
def ring_latency_producer(ctl, recs, n, t0, rate, mode, yield_after, deadline):
    """Publish ``n`` records, record ``i`` due at ``t0 + i/rate``; stamp the due time.

    Never skips a message: if it is late it sends at once (the lateness is then measured).
    Returns the number published (< n only if ``deadline`` passed with the ring full).
    """
    for i in range(n):
        due = t0 + (i * _NS) // rate
        while monotonic_ns() < due:
            if mode == IDLE_YIELD:
                sched_yield()
            else:
                cpu_pause()
        empty = 0
        while np.int64(claim(ctl, 1)) < 1:
            empty += 1
            _idle(mode, empty, yield_after)
            if (empty & 1023) == 0 and monotonic_ns() > deadline:
                return i
        _fill(recs[slot(ctl, head_of(ctl))], i, due)
        commit(ctl, 1)
    return n


@njit(cache=True)
def ring_latency_consumer(ctl, recs, n, samples, hists, warm, mode, yield_after, deadline):
    """Take ``n`` records; ``samples[seq] = now - due`` (ns), and record it into HDR row
    ``hists[0]`` once ``seq >= warm``. Returns (taken, order errors)."""
    got = 0
    errors = 0
    empty = 0
    while got < n:
        k = np.int64(poll(ctl, 64))
        if k == 0:
            empty += 1
            _idle(mode, empty, yield_after)
            if (empty & 255) == 0 and monotonic_ns() > deadline:
                break
            continue
        empty = 0
        start = tail_of(ctl)
        for j in range(k):
            r = recs[slot(ctl, start + np.uint64(j))]
            now = monotonic_ns()
            seq = np.int64(r.seq)
            lat = now - r.recv_ns
            if seq != got + j:
                errors += 1
            if seq < n:
                samples[seq] = lat
            if seq >= warm:
                hdr_record(hists, 0, lat)
        got += k
        release(ctl, k)
    return got, errors


@njit(cache=True)
def ring_tput_producer(ctl, recs, batch, duration_ns, mode, yield_after, flags):
    """Publish records, up to ``batch`` per claim/commit, for ``duration_ns``.

    Returns (records, commits, t_start). Stores the total in ``flags[F_TOTAL]`` and then
    store-releases ``flags[F_DONE] = 1``.
    """
    t_start = monotonic_ns()
    t_end = t_start + duration_ns
    seq = 0
    commits = 0
    it = 0
    empty = 0
    while True:
        if (it & 255) == 0 and monotonic_ns() >= t_end:
            break
        it += 1
        k = np.int64(claim(ctl, batch))
        if k == 0:
            empty += 1
            _idle(mode, empty, yield_after)
            continue
        empty = 0
        start = head_of(ctl)
        for j in range(k):
            _fill(recs[slot(ctl, start + np.uint64(j))], seq + j, t_start)
        commit(ctl, k)
        seq += k
        commits += 1
    flags[F_TOTAL] = seq
    store_release(flags, F_DONE, 1)
    return seq, commits, t_start


@njit(cache=True)
def ring_tput_consumer(ctl, recs, batch, mode, yield_after, flags, deadline):
    """Take records, up to ``batch`` per poll/release, until the producer is done and all
    its records are taken. Returns (records, order errors, t_end)."""
    got = 0
    errors = 0
    empty = 0
    while True:
        k = np.int64(poll(ctl, batch))
        if k == 0:
            if load_acquire(flags, F_DONE) == 1 and got == flags[F_TOTAL]:
                break
            empty += 1
            _idle(mode, empty, yield_after)
            if (empty & 255) == 0 and monotonic_ns() > deadline:
                break
            continue
        empty = 0
        start = tail_of(ctl)
        for j in range(k):
            if np.int64(recs[slot(ctl, start + np.uint64(j))].seq) != got + j:
                errors += 1
        got += k
        release(ctl, k)
    return got, errors, monotonic_ns()


@njit(cache=True)
def hand_off(flag, me, n, mode, deadline):
    """Calibration ping-pong: party ``me`` (0/1) waits for ``flag == 2i + me`` and writes
    ``2i + me + 1``, ``n`` times. Returns elapsed ns (-1 on deadline): one-way hand-off =
    elapsed / (2n). No ring, no records: the floor under any hop on this host/placement."""
    t = monotonic_ns()
    for i in range(n):
        want = 2 * i + me
        spins = 0
        while load_acquire(flag, 0) != want:
            spins += 1
            if mode == IDLE_YIELD:
                sched_yield()
            else:
                cpu_pause()
            if (spins & 1023) == 0 and monotonic_ns() > deadline:
                return -1
        store_release(flag, 0, want + 1)
    return monotonic_ns() - t


@njit(cache=True)
def yield_loop(n):
    """Mean cost of ``sched_yield()`` with nothing else runnable (the syscall floor), ns."""
    t = monotonic_ns()
    for _ in range(n):
        sched_yield()
    return (monotonic_ns() - t) // n


# ---------------------------------------------------------------------------------------
# plumbing: shared result words, pinned children, timeouts

RING_IMPL = "numba-ring"
BASELINES = ("mp-pipe", "mp-queue", "zmq-ipc", "posix-mq")
IMPLS = (RING_IMPL,) + BASELINES
RING_PLACEMENTS = ("separate-cores-busy-spin", "one-core-yield")
BASE_PLACEMENTS = ("two-cores", "one-core")
MODES = ("latency", "throughput-unbatched", "throughput-batched-64")
BATCH = 64
REC = TICK.itemsize
SEQ_OFF = TICK.fields["seq"][1]
RECV_OFF = TICK.fields["recv_ns"][1]
assert (SEQ_OFF, RECV_OFF) == (0, 8), "baselines pack seq and recv_ns as '<Qq' at offset 0"

# info words (int64) of one run
I_PSTAT, I_CSTAT = 0, 1          # child status: 0 not finished, 1 ok, 2 raised
I_SENT, I_COMMITS, I_T0 = 2, 3, 4   # producer: records sent, commits/messages, first due / start
I_GOT, I_ERR, I_TEND = 8, 9, 10     # consumer: records taken, order errors, end time
INFO_WORDS = 16


def _shared(n_words: int, fill: int = 0) -> np.ndarray:
    """An int64 array in an anonymous MAP_SHARED mapping: forked children write, parent reads."""
    mm = mmap.mmap(-1, max(8 * n_words, mmap.PAGESIZE))
    arr = np.frombuffer(mm, np.int64, count=n_words)
    if fill:
        arr[:] = fill
    return arr


def _child(cpu, info, stat_idx, fn, args):
    try:
        os.sched_setaffinity(0, {cpu})
        gc.disable()
        fn(info, *args)
        info[stat_idx] = 1
    except BaseException:
        info[stat_idx] = 2
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()


def _run_pair(producer, consumer, cpus, timeout_s):
    """Fork consumer then producer (``(fn, args)`` each, called as ``fn(info, *args)``),
    pinned to ``cpus`` = (producer cpu, consumer cpu). Join within ``timeout_s``; kill
    whatever overran. Returns (info array, list of killed roles)."""
    ctx = mp.get_context("fork")
    info = _shared(INFO_WORDS)
    procs = [
        ("consumer", ctx.Process(target=_child, args=(cpus[1], info, I_CSTAT) + consumer,
                                 name="bench-consumer", daemon=True)),
        ("producer", ctx.Process(target=_child, args=(cpus[0], info, I_PSTAT) + producer,
                                 name="bench-producer", daemon=True)),
    ]
    killed = []
    try:
        for _, p in procs:
            p.start()
        end = time.monotonic() + timeout_s
        for _, p in reversed(procs):
            p.join(max(0.05, end - time.monotonic()))
    finally:
        for role, p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
                killed.append(role)
    return info, killed


def _cpus():
    allowed = sorted(os.sched_getaffinity(0))
    c0 = allowed[0]
    c1 = allowed[1] if len(allowed) > 1 else allowed[0]
    return c0, c1


def _placement_cpus(placement):
    c0, c1 = _cpus()
    return (c0, c0) if placement.startswith("one-core") else (c0, c1)


def _percentiles(samples: np.ndarray):
    """Exact order statistics (``inverted_cdf``: the smallest sample with F >= p)."""
    if samples.size == 0:
        return None, None, None, None, None
    p50, p99, p999 = np.percentile(samples, [50, 99, 99.9], method="inverted_cdf")
    return int(p50), int(p99), int(p999), int(samples.max()), float(samples.mean())


# ---------------------------------------------------------------------------------------
# numba ring

RING_PAYLOAD = ("TICK record (80 B) written field by field in place into the shared ring slot; "
                "consumer reads seq and recv_ns in place (no copy, no serialization)")


def _ring_idle(placement):
    return IDLE_SPIN if placement == "separate-cores-busy-spin" else IDLE_YIELD


def _ring_lat_producer(info, ctl, recs, n, rate, mode, yield_after, deadline, ready):
    if not ready.wait(10):
        raise RuntimeError("consumer never became ready")
    t0 = time.monotonic_ns() + 2_000_000
    info[I_T0] = t0
    info[I_SENT] = ring_latency_producer(ctl, recs, n, t0, rate, mode, yield_after, deadline)


def _ring_lat_consumer(info, ctl, recs, n, samples, hists, warm, mode, yield_after, deadline, ready):
    ready.set()
    got, errors = ring_latency_consumer(ctl, recs, n, samples, hists, warm, mode, yield_after, deadline)
    info[I_TEND] = time.monotonic_ns()
    info[I_GOT], info[I_ERR] = got, errors


def _ring_tput_producer(info, ctl, recs, batch, duration_ns, mode, yield_after, flags, ready):
    if not ready.wait(10):
        raise RuntimeError("consumer never became ready")
    sent, commits, t_start = ring_tput_producer(ctl, recs, batch, duration_ns, mode, yield_after, flags)
    info[I_SENT], info[I_COMMITS], info[I_T0] = sent, commits, t_start


def _ring_tput_consumer(info, ctl, recs, batch, mode, yield_after, flags, deadline, ready):
    ready.set()
    got, errors, t_end = ring_tput_consumer(ctl, recs, batch, mode, yield_after, flags, deadline)
    info[I_GOT], info[I_ERR], info[I_TEND] = got, errors, t_end


class RingBench:
    """Creates one fresh ring segment per measurement and always unlinks it."""

    def __init__(self, engine: str, yield_after: int, lat_capacity: int, tput_capacity: int):
        self.engine = engine
        self.yield_after = yield_after
        self.lat_capacity = lat_capacity
        self.tput_capacity = tput_capacity
        self._n = 0

    def _ring(self, capacity):
        from pyrt_shm.shm_ring import create_ring

        self._n += 1
        return create_ring(self.engine, f"hop{self._n}", TICK, capacity)

    def warm_jit(self):
        """Compile every njit function here, before any fork (children must not compile)."""
        seg, ring = self._ring(64)
        try:
            samples = _shared(16, -1)
            hists = _hist_row()
            now = time.monotonic_ns()
            for mode in (IDLE_SPIN, IDLE_YIELD):
                ring_latency_producer(ring.ctl, ring.recs, 16, now, 10**9, mode, 4, now + _NS)
                ring_latency_consumer(ring.ctl, ring.recs, 16, samples, hists, 1, mode, 4, now + _NS)
            for batch in (1, BATCH):
                flags = _shared(16)
                ring_tput_producer(ring.ctl, ring.recs, batch, 0, IDLE_SPIN, 4, flags)
                ring_tput_consumer(ring.ctl, ring.recs, batch, IDLE_SPIN, 4, flags, now + _NS)
            flag = _shared(16)
            hand_off(flag, 0, 1, IDLE_SPIN, now + _NS)
            hand_off(flag, 1, 1, IDLE_SPIN, now + _NS)
            yield_loop(1)
        finally:
            del ring
            seg.close()
            seg.unlink()

    def latency(self, placement, n_measured, warm, rate, timeout_s):
        n = n_measured + warm
        mode = _ring_idle(placement)
        cpus = _placement_cpus(placement)
        seg, ring = self._ring(self.lat_capacity)
        try:
            samples = _shared(n, -1)
            hists = _hist_row()
            ready = mp.get_context("fork").Event()
            deadline = time.monotonic_ns() + int(timeout_s * _NS)
            t = time.monotonic()
            info, killed = _run_pair(
                (_ring_lat_producer, (ring.ctl, ring.recs, n, rate, mode, self.yield_after, deadline, ready)),
                (_ring_lat_consumer, (ring.ctl, ring.recs, n, samples, hists, warm, mode, self.yield_after,
                                      deadline, ready)),
                cpus, timeout_s + 5)
            wall = time.monotonic() - t
            stats = ring.statistics()
            row = _latency_row(RING_IMPL, placement, rate, n_measured, warm, samples, info, killed, wall,
                               RING_PAYLOAD)
            row.update(cpus=list(cpus), idle=_idle_name(mode, self.yield_after), capacity=self.lat_capacity,
                       ring_high_water=stats.high_water, ring_times_full=stats.times_full,
                       hdr=_hdr_summary(hists, row))
            return row
        finally:
            del ring
            seg.close()
            seg.unlink()

    def throughput(self, placement, batch, duration_s, timeout_s):
        mode = _ring_idle(placement)
        cpus = _placement_cpus(placement)
        seg, ring = self._ring(self.tput_capacity)
        try:
            flags = _shared(16)
            ready = mp.get_context("fork").Event()
            deadline = time.monotonic_ns() + int(timeout_s * _NS)
            t = time.monotonic()
            info, killed = _run_pair(
                (_ring_tput_producer, (ring.ctl, ring.recs, batch, int(duration_s * _NS), mode,
                                       self.yield_after, flags, ready)),
                (_ring_tput_consumer, (ring.ctl, ring.recs, batch, mode, self.yield_after, flags,
                                       deadline, ready)),
                cpus, timeout_s + 5)
            wall = time.monotonic() - t
            payload = RING_PAYLOAD if batch == 1 else (
                f"{batch} TICK records per claim/commit (claim up to {batch} free slots, one "
                f"store-release of the head per batch); consumer polls/releases up to {batch} at a time")
            row = _tput_row(RING_IMPL, placement, batch, info, killed, wall, payload)
            commits = int(info[I_COMMITS])
            row.update(cpus=list(cpus), idle=_idle_name(mode, self.yield_after), capacity=self.tput_capacity,
                       avg_records_per_commit=round(int(info[I_SENT]) / commits, 2) if commits else None)
            return row
        finally:
            del ring
            seg.close()
            seg.unlink()


def _hist_row() -> np.ndarray:
    """One zeroed HISTOGRAM row (an empty histogram) in an anonymous shared mapping."""
    mm = mmap.mmap(-1, HISTOGRAM.itemsize)
    return np.ndarray((1,), HISTOGRAM, buffer=mm)


def _hdr_summary(hists, row) -> dict:
    """The ring consumer's HDR row, read with ``pyrt_shm.hdr_convert``, next to the exact values."""
    if HDR_ERROR is not None:
        return {"error": HDR_ERROR}
    from pyrt_shm import hdr_convert

    s = hdr_convert.summary(hists[0])
    out = {"source": "pyrt_shm.hdr_recorder.hdr_record in the njit consumer (3 significant digits), "
                     "read with pyrt_shm.hdr_convert.summary",
           "count": s["count"], "p50_ns": s["p50"], "p99_ns": s["p99"], "p999_ns": s["p999"],
           "max_ns": s["max"]}
    diffs = [abs(out[k] - row[k]) / row[k] for k in ("p50_ns", "p99_ns", "p999_ns", "max_ns") if row.get(k)]
    out["max_rel_diff_vs_exact"] = round(max(diffs), 5) if diffs else None
    return out


def _hand_off_child(info, flag, me, n, mode, deadline):
    info[I_T0 if me == 0 else I_TEND] = hand_off(flag, me, n, mode, deadline)


def calibrate(n_spin: int, n_yield: int) -> dict:
    """Floors of this host, measured with the same intrinsics as the ring (no ring): the
    one-way busy-spin hand-off between the two CPUs, the one-way ``sched_yield`` hand-off
    between two processes on one CPU, and one ``sched_yield`` syscall alone."""
    out = {}
    for key, placement, mode, n in (
            ("spin_handoff_two_cores_ns", "separate-cores-busy-spin", IDLE_SPIN, n_spin),
            ("yield_handoff_one_core_ns", "one-core-yield", IDLE_YIELD, n_yield)):
        flag = _shared(16)
        deadline = time.monotonic_ns() + 5 * _NS
        info, killed = _run_pair((_hand_off_child, (flag, 0, n, mode, deadline)),
                                 (_hand_off_child, (flag, 1, n, mode, deadline)),
                                 _placement_cpus(placement), 10)
        el = int(info[I_T0])
        out[key] = round(el / (2 * n), 1) if el > 0 and not killed and info[I_PSTAT] == 1 else None
    cpu = _cpus()[0]
    old = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {cpu})
        out["sched_yield_syscall_ns"] = int(yield_loop(max(n_yield, 1000)))
    finally:
        os.sched_setaffinity(0, old)
    out["method"] = ("two pinned processes ping-pong a flag word (load_acquire/store_release), "
                     "one-way = elapsed / (2 x round trips); sched_yield alone on one CPU")
    return out


def _idle_name(mode, yield_after):
    return "busy-spin (pause)" if mode == IDLE_SPIN else f"pause x{yield_after} then sched_yield() from njit"


# ---------------------------------------------------------------------------------------
# baselines: each is a transport with a send side and a receive side, built per run.

def _template_bytes(n: int) -> np.ndarray:
    recs = np.zeros(n, TICK)
    recs["sym"], recs["kind"], recs["price"], recs["size"] = 7, TICK_QUOTE, 100.25, 100.0
    recs["bid"], recs["ask"], recs["bid_size"], recs["ask_size"] = 100.25, 100.26, 300.0, 200.0
    return recs


def _tuple_rest():
    r = _template_bytes(1)[0]
    return tuple(r[f].item() for f in TICK.names[2:])   # every field after seq, recv_ns


class Transport:
    """A baseline channel. ``open_*`` run in the children after fork."""

    name = ""
    payload = ""
    payload_batched = ""
    kind = "bytes"   # "bytes" (raw records) or "tuple" (pickled tuples)

    def __init__(self, tag: str):
        self.tag = tag

    def setup(self, throughput: bool):  # parent, before fork
        pass

    def open_consumer(self):            # -> recv()
        raise NotImplementedError

    def open_producer(self):            # -> (send(obj), close())
        raise NotImplementedError

    def close_consumer(self):
        pass

    def cleanup(self):                  # parent, finally
        pass

    def extra(self) -> dict:
        return {}


class PipeTransport(Transport):
    name = "mp-pipe"
    payload = "80-byte TICK record as raw bytes (rec.tobytes() layout; seq and recv_ns packed per message), " \
              "Connection.send_bytes / blocking recv_bytes"
    payload_batched = f"{BATCH} TICK records concatenated ({BATCH * REC} B) in one send_bytes message"

    def setup(self, throughput):
        self.r, self.w = mp.get_context("fork").Pipe(duplex=False)

    def open_consumer(self):
        self.w.close()
        return self.r.recv_bytes

    def open_producer(self):
        self.r.close()
        return self.w.send_bytes, self.w.close

    def cleanup(self):
        for c in (getattr(self, "r", None), getattr(self, "w", None)):
            if c is not None:
                c.close()


class QueueTransport(Transport):
    name = "mp-queue"
    kind = "tuple"
    payload = "the TICK record as a 12-field tuple, pickled by the queue's feeder thread; put / blocking get " \
              "(latency: the paced producer waits with os.sched_yield(), releasing the GIL, so the feeder is " \
              "not starved)"
    payload_batched = f"a list of {BATCH} such 12-field tuples per put"
    TPUT_MAXSIZE = 8192

    def setup(self, throughput):
        # Bounded for throughput so a fast producer cannot pile records up in the feeder's deque.
        self.maxsize = self.TPUT_MAXSIZE if throughput else 0
        self.q = mp.get_context("fork").Queue(self.maxsize)

    def open_consumer(self):
        return self.q.get

    def open_producer(self):
        def close():
            self.q.close()
            self.q.join_thread()
        return self.q.put, close

    def cleanup(self):
        self.q.close()

    def extra(self):
        return {"queue_maxsize": self.maxsize}


class ZmqTransport(Transport):
    name = "zmq-ipc"
    payload = "80-byte TICK record as raw bytes, pyzmq PUSH/PULL over ipc:// (temp dir), blocking recv"
    payload_batched = f"{BATCH} TICK records concatenated ({BATCH * REC} B) in one zmq message"
    HWM = 10000

    def setup(self, throughput):
        import zmq  # noqa: F401  (fail early in the parent if pyzmq is missing)

        self.dir = tempfile.mkdtemp(prefix="pyrt-bench-zmq-")
        self.addr = f"ipc://{self.dir}/hop.ipc"

    def open_consumer(self):
        import zmq

        self.ctx = zmq.Context(1)
        self.sock = self.ctx.socket(zmq.PULL)
        self.sock.setsockopt(zmq.RCVHWM, self.HWM)
        self.sock.bind(self.addr)
        return self.sock.recv

    def close_consumer(self):
        self.sock.close(linger=0)
        self.ctx.term()

    def open_producer(self):
        import zmq

        ctx = zmq.Context(1)
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, self.HWM)
        # Linger forever: close() must not drop undelivered messages (a finite linger would
        # silently lose the tail and the end marker if the consumer is descheduled for that
        # long); the parent's join timeout bounds the wait.
        sock.setsockopt(zmq.LINGER, -1)
        sock.connect(self.addr)

        def close():
            sock.close()
            ctx.term()
        return sock.send, close

    def cleanup(self):
        shutil.rmtree(getattr(self, "dir", ""), ignore_errors=True)

    def extra(self):
        return {"hwm": self.HWM}


class MqTransport(Transport):
    name = "posix-mq"
    payload = "80-byte TICK record as raw bytes, posix_ipc.MessageQueue send / blocking receive"
    payload_batched = f"{BATCH} TICK records concatenated ({BATCH * REC} B) in one mq message"

    def setup(self, throughput):
        import posix_ipc

        self.qname = f"/pyrt-bench-{os.getpid()}-{self.tag}"
        self.mq = None
        # max_messages above /proc/sys/fs/mqueue/msg_max needs CAP_SYS_RESOURCE: try big, then default.
        for depth in (1024, 256, posix_ipc.QUEUE_MESSAGES_MAX_DEFAULT):
            try:
                self.mq = posix_ipc.MessageQueue(self.qname, posix_ipc.O_CREX, max_messages=depth,
                                                 max_message_size=max(8192, BATCH * REC))
                break
            except ValueError:
                continue
        if self.mq is None:
            raise RuntimeError("could not create a posix message queue")

    def open_consumer(self):
        mq = self.mq
        recv = mq.receive
        return lambda: recv()[0]

    def open_producer(self):
        return self.mq.send, lambda: None

    def cleanup(self):
        import posix_ipc

        if getattr(self, "mq", None) is not None:
            try:
                self.mq.close()
            finally:
                try:
                    posix_ipc.unlink_message_queue(self.qname)
                except posix_ipc.ExistentialError:
                    pass

    def extra(self):
        return {"mq_max_messages": self.mq.max_messages}


TRANSPORTS = {t.name: t for t in (PipeTransport, QueueTransport, ZmqTransport, MqTransport)}

HELLO = b"hello"


def _handshake_consumer(recv, ready, hello_ok):
    ready.set()
    msg = recv()
    if msg != HELLO and msg != "hello":
        raise RuntimeError(f"expected hello, got {msg!r}")
    hello_ok.set()


def _handshake_producer(t: Transport, ready, hello_ok):
    if not ready.wait(10):
        raise RuntimeError("consumer never became ready")
    send, close = t.open_producer()
    send("hello" if t.kind == "tuple" else HELLO)
    if not hello_ok.wait(10):
        raise RuntimeError("consumer never received the hello message")
    return send, close


def _base_lat_producer(info, t: Transport, n, rate, ready, hello_ok):
    send, close = _handshake_producer(t, ready, hello_ok)
    mono, yield_, sleep = time.monotonic_ns, os.sched_yield, time.sleep
    t0 = mono() + 2_000_000
    info[I_T0] = t0
    if t.kind == "tuple":
        rest = _tuple_rest()
        for i in range(n):
            due = t0 + (i * _NS) // rate
            now = mono()
            while now < due:
                if due - now > 2_000_000:
                    sleep((due - now - 1_000_000) / 1e9)
                else:
                    yield_()
                now = mono()
            send((i, due) + rest)
    else:
        buf = bytearray(_template_bytes(1).tobytes())
        pack = struct.Struct("<Qq").pack_into
        for i in range(n):
            due = t0 + (i * _NS) // rate
            now = mono()
            while now < due:
                if due - now > 2_000_000:
                    sleep((due - now - 1_000_000) / 1e9)
                else:
                    yield_()
                now = mono()
            pack(buf, 0, i, due)
            send(buf)
    info[I_SENT] = n
    close()


def _base_lat_consumer(info, t: Transport, n, samples_mm, ready, hello_ok):
    recv = t.open_consumer()
    _handshake_consumer(recv, ready, hello_ok)
    out = memoryview(samples_mm).cast("q")     # preallocated int64 samples, shared with the parent
    mono = time.monotonic_ns
    errors = 0
    if t.kind == "tuple":
        for i in range(n):
            m = recv()
            now = mono()
            seq = m[0]
            out[seq] = now - m[1]
            if seq != i:
                errors += 1
    else:
        unpack = struct.Struct("<Qq").unpack_from
        for i in range(n):
            data = recv()
            now = mono()
            seq, due = unpack(data)
            out[seq] = now - due
            if seq != i:
                errors += 1
    info[I_TEND] = mono()
    info[I_GOT], info[I_ERR] = n, errors
    t.close_consumer()


def _base_tput_producer(info, t: Transport, batch, duration_ns, ready, hello_ok):
    send, close = _handshake_producer(t, ready, hello_ok)
    mono = time.monotonic_ns
    seq = 0
    msgs = 0
    t_start = mono()
    t_end = t_start + duration_ns
    if t.kind == "tuple":
        rest = _tuple_rest()
        if batch == 1:
            while mono() < t_end:
                for _ in range(64):
                    send((seq, t_start) + rest)
                    seq += 1
                msgs += 64
        else:
            offs = range(batch)
            while mono() < t_end:
                send([(seq + j, t_start) + rest for j in offs])
                seq += batch
                msgs += 1
        send(None)
    else:
        if batch == 1:
            buf = bytearray(_template_bytes(1).tobytes())
            pack = struct.Struct("<Q").pack_into
            while mono() < t_end:
                for _ in range(64):
                    pack(buf, 0, seq)
                    send(buf)
                    seq += 1
                msgs += 64
        else:
            recs = _template_bytes(batch)
            recs["recv_ns"] = t_start
            raw = recs.view(np.uint8)
            offs = np.arange(batch, dtype=np.uint64)
            seqs = recs["seq"]
            while mono() < t_end:
                np.add(offs, seq, out=seqs)
                send(raw)
                seq += batch
                msgs += 1
        send(b"")
    info[I_SENT], info[I_COMMITS], info[I_T0] = seq, msgs, t_start
    close()


def _base_tput_consumer(info, t: Transport, ready, hello_ok):
    recv = t.open_consumer()
    _handshake_consumer(recv, ready, hello_ok)
    got = 0
    errors = 0
    if t.kind == "tuple":
        while True:
            m = recv()
            if m is None:
                break
            if type(m) is list:
                if m[0][0] != got:
                    errors += 1
                got += len(m)
            else:
                if m[0] != got:
                    errors += 1
                got += 1
    else:
        unpack = struct.Struct("<Q").unpack_from
        while True:
            data = recv()
            if not data:
                break
            if unpack(data)[0] != got:
                errors += 1
            got += len(data) // REC
    info[I_TEND] = time.monotonic_ns()
    info[I_GOT], info[I_ERR] = got, errors
    t.close_consumer()


def _baseline_run(name, placement, mode, n_measured, warm, rate, duration_s, timeout_s, tag):
    t = TRANSPORTS[name](tag)
    cpus = _placement_cpus(placement)
    ctx = mp.get_context("fork")
    ready, hello_ok = ctx.Event(), ctx.Event()
    try:
        t.setup(throughput=mode != "latency")
        start = time.monotonic()
        if mode == "latency":
            n = n_measured + warm
            mm = mmap.mmap(-1, 8 * n)
            samples = np.frombuffer(mm, np.int64, count=n)
            samples[:] = -1
            info, killed = _run_pair((_base_lat_producer, (t, n, rate, ready, hello_ok)),
                                     (_base_lat_consumer, (t, n, mm, ready, hello_ok)), cpus, timeout_s)
            row = _latency_row(name, placement, rate, n_measured, warm, samples, info, killed,
                               time.monotonic() - start, t.payload)
        else:
            batch = 1 if mode == "throughput-unbatched" else BATCH
            info, killed = _run_pair((_base_tput_producer, (t, batch, int(duration_s * _NS), ready, hello_ok)),
                                     (_base_tput_consumer, (t, ready, hello_ok)), cpus, timeout_s)
            row = _tput_row(name, placement, batch, info, killed, time.monotonic() - start,
                            t.payload if batch == 1 else t.payload_batched)
        row.update(cpus=list(cpus), idle="blocking receive; paced producer waits with os.sched_yield()"
                   if mode == "latency" else "blocking receive / blocking send", **t.extra())
        return row
    finally:
        t.cleanup()


# ---------------------------------------------------------------------------------------
# rows

def _status(info, killed):
    notes = []
    if killed:
        notes.append("killed on timeout: " + ", ".join(killed))
    for idx, role in ((I_PSTAT, "producer"), (I_CSTAT, "consumer")):
        if info[idx] == 2:
            notes.append(f"{role} raised (traceback on stderr)")
        elif info[idx] == 0 and role not in killed:
            notes.append(f"{role} did not finish")
    return notes


def _latency_row(impl, placement, rate, n_measured, warm, samples, info, killed, wall, payload):
    measured = samples[warm:warm + n_measured]
    valid = measured[measured >= 0]
    p50, p99, p999, mx, mean = _percentiles(valid)
    notes = _status(info, killed)
    complete = valid.size == n_measured and not notes
    if valid.size != n_measured:
        notes.append(f"only {valid.size} of {n_measured} measured messages arrived")
    t0, tend = int(info[I_T0]), int(info[I_TEND])
    delivered = (n_measured + warm) / ((tend - t0) / _NS) if tend > t0 and complete else None
    return {
        "impl": impl, "placement": placement, "mode": "latency", "rate": rate,
        "messages": int(valid.size), "p50_ns": p50, "p99_ns": p99, "p999_ns": p999, "max_ns": mx,
        "msgs_per_s": None, "payload": payload,
        "mean_ns": None if mean is None else round(mean, 1),
        "warmup_discarded": warm, "complete": complete, "order_errors": int(info[I_ERR]),
        "delivered_rate": None if delivered is None else round(delivered, 1),
        "wall_s": round(wall, 3), "notes": notes,
    }


def _tput_row(impl, placement, batch, info, killed, wall, payload):
    notes = _status(info, killed)
    sent, got = int(info[I_SENT]), int(info[I_GOT])
    t0, tend = int(info[I_T0]), int(info[I_TEND])
    complete = not notes and got == sent and got > 0
    if got != sent:
        notes.append(f"sent {sent} records, received {got}")
    rate = got / ((tend - t0) / _NS) if complete and tend > t0 else None
    return {
        "impl": impl, "placement": placement,
        "mode": "throughput-unbatched" if batch == 1 else f"throughput-batched-{batch}",
        "rate": None, "messages": got, "p50_ns": None, "p99_ns": None, "p999_ns": None, "max_ns": None,
        "msgs_per_s": None if rate is None else round(rate, 1), "payload": payload,
        "records_per_message": batch, "duration_s": round((tend - t0) / _NS, 4) if tend > t0 else None,
        "complete": complete, "order_errors": int(info[I_ERR]), "wall_s": round(wall, 3), "notes": notes,
    }


# ---------------------------------------------------------------------------------------
# host, ratios, targets

_read = host.read


def host_info() -> dict:
    import numba

    cmdline = _read("/proc/cmdline") or ""
    return {
        "cpus": os.cpu_count(), "cpu_model": host.cpu_model(),
        "kernel": f"{platform.release()} {platform.uname().version}",
        "python": platform.python_version(), "numba": numba.__version__, "numpy": np.__version__,
        "preempt_rt": host.preempt_rt(), "isolated_cpus": host.isolated_cpus(),
        "allowed_cpus": sorted(os.sched_getaffinity(0)),
        "nohz_full": (_read("/sys/devices/system/cpu/nohz_full") or "").strip() or None,
        "cmdline_isolation": [w for w in cmdline.split() if w.split("=")[0] in ("isolcpus", "nohz_full", "rcu_nocbs")],
        "hypervisor": "hypervisor" in (_read("/proc/cpuinfo") or ""),
        "loadavg_start": os.getloadavg()[0],
    }


def _best(rows, pred, key, lowest):
    cands = [r for r in rows if pred(r) and r.get(key) is not None and r.get("complete")]
    if not cands:
        return None
    return (min if lowest else max)(cands, key=lambda r: r[key])


def _ref(r):
    return None if r is None else f"{r['impl']}/{r['placement']}/{r['mode']}"


def ratios_and_targets(rows):
    ring = lambda m: (lambda r: r["impl"] == RING_IMPL and r["mode"] == m)            # noqa: E731
    base = lambda m: (lambda r: r["impl"] != RING_IMPL and r["mode"] == m)            # noqa: E731
    ring_lat = _best(rows, ring("latency"), "p50_ns", True)
    base_lat = _best(rows, base("latency"), "p50_ns", True)
    ring_ub = _best(rows, ring("throughput-unbatched"), "msgs_per_s", False)
    base_ub = _best(rows, base("throughput-unbatched"), "msgs_per_s", False)
    ring_b = _best(rows, ring("throughput-batched-64"), "msgs_per_s", False)
    base_b = _best(rows, base("throughput-batched-64"), "msgs_per_s", False)

    def div(a, b):
        return None if a is None or b is None or b == 0 else round(a / b, 2)

    def val(r, k):
        return None if r is None else r[k]

    lat_ratio = div(val(base_lat, "p50_ns"), val(ring_lat, "p50_ns"))
    ub_ratio = div(val(ring_ub, "msgs_per_s"), val(base_ub, "msgs_per_s"))
    b_ratio = div(val(ring_b, "msgs_per_s"), val(base_b, "msgs_per_s"))
    by_placement = {}
    for pl in RING_PLACEMENTS:
        r = _best(rows, lambda r, pl=pl: ring("latency")(r) and r["placement"] == pl, "p50_ns", True)
        by_placement[pl] = div(val(base_lat, "p50_ns"), val(r, "p50_ns"))
    ratios = {
        "ring_p50_vs_best_baseline_p50": lat_ratio,
        "ring_unbatched_tput_vs_best_baseline": ub_ratio,
        "ring_batched_tput": b_ratio,
        "definitions": {
            "ring_p50_vs_best_baseline_p50": "best baseline latency p50 / best ring latency p50 (x lower)",
            "ring_unbatched_tput_vs_best_baseline": "best ring unbatched msgs/s / best baseline unbatched msgs/s",
            "ring_batched_tput": "best ring batched-64 records/s / best baseline batched-64 records/s",
        },
        "ring_batched_tput_msgs_per_s": val(ring_b, "msgs_per_s"),
        "ring_p50_vs_best_baseline_p50_by_placement": by_placement,
        "rows": {"ring_latency": _ref(ring_lat), "baseline_latency": _ref(base_lat),
                 "ring_unbatched": _ref(ring_ub), "baseline_unbatched": _ref(base_ub),
                 "ring_batched": _ref(ring_b), "baseline_batched": _ref(base_b)},
    }

    def row_of(pl):
        return _best(rows, lambda r: ring("latency")(r) and r["placement"] == pl, "p50_ns", True)

    spin, yld = row_of("separate-cores-busy-spin"), row_of("one-core-yield")

    def target(desc, measured, ok, row):
        return {"target": desc, "measured": measured, "met": bool(measured is not None and ok(measured)),
                "row": row}

    targets = {
        "ring_p50_20x_lower_than_best_baseline": target(">= 20x", lat_ratio, lambda v: v >= 20,
                                                        _ref(ring_lat)),
        "ring_unbatched_tput_20x_best_baseline": target(">= 20x", ub_ratio, lambda v: v >= 20, _ref(ring_ub)),
        "hop_p50_busy_spin_separate_cores_ns": target("<= 400 ns", val(spin, "p50_ns"), lambda v: v <= 400,
                                                      _ref(spin)),
        "hop_p50_yield_one_core_ns": target("<= 800 ns", val(yld, "p50_ns"), lambda v: v <= 800, _ref(yld)),
        "ring_batched_tput_msgs_per_s": target(">= 100000000 records/s", val(ring_b, "msgs_per_s"),
                                               lambda v: v >= 100e6, _ref(ring_b)),
    }
    return ratios, targets


# ---------------------------------------------------------------------------------------
# main

def _parser():
    p = argparse.ArgumentParser(prog="pyrt bench ring",
                                description="Ring hop latency/throughput vs Pipe, Queue, zmq ipc, posix mq.")
    p.add_argument("--json", action="store_true", help="print only JSON to stdout")
    p.add_argument("--quick", action="store_true", help="short run for smoke tests (< 30 s)")
    p.add_argument("--rate", type=int, default=100_000, help="paced rate for latency, msgs/s (default 100000)")
    p.add_argument("--messages", type=int, default=None,
                   help="measured messages per latency run (default 200000; --quick 20000); 5%% more are "
                        "sent first as warm-up and discarded")
    p.add_argument("--out", help="also write the JSON to this file")
    p.add_argument("--tput-seconds", type=float, default=None,
                   help="duration of a throughput run (default 1.0; --quick 0.15); the ring's busy-spin "
                        "runs use half of it")
    p.add_argument("--impls", default=",".join(IMPLS), help=f"comma-separated subset of {','.join(IMPLS)}")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    p.add_argument("--yield-after", type=int, default=10, help="empty polls before sched_yield (one-core-yield)")
    p.add_argument("--capacity", type=int, default=16384, help="ring capacity for latency runs")
    p.add_argument("--tput-capacity", type=int, default=65536, help="ring capacity for throughput runs")
    p.add_argument("--verbose", "-v", action="store_true", help="progress on stderr")
    return p


def _fmt(v, unit=""):
    if v is None:
        return "-"
    if unit == "ns":
        return f"{v / 1000:.2f} µs" if v >= 10_000 else f"{v} ns"
    return f"{v / 1e6:.2f} M/s"


def _table(report) -> str:
    lines = [f"{'impl':<11} {'placement':<25} {'mode':<22} {'p50':>10} {'p99':>10} {'p99.9':>10} "
             f"{'max':>10} {'msgs/s':>11}"]
    for r in report["results"]:
        lines.append(f"{r['impl']:<11} {r['placement']:<25} {r['mode']:<22} {_fmt(r['p50_ns'], 'ns'):>10} "
                     f"{_fmt(r['p99_ns'], 'ns'):>10} {_fmt(r['p999_ns'], 'ns'):>10} {_fmt(r['max_ns'], 'ns'):>10} "
                     f"{_fmt(r['msgs_per_s']):>11}" + ("  INCOMPLETE" if not r.get("complete") else ""))
    lines.append("")
    for k, t in report["targets"].items():
        lines.append(f"{'MET ' if t['met'] else 'MISS'} {k}: {t['measured']} (target {t['target']})")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    quick = args.quick
    n_measured = args.messages if args.messages is not None else (20_000 if quick else 200_000)
    tput_s = args.tput_seconds if args.tput_seconds is not None else (0.15 if quick else 1.0)
    if n_measured < 20 or args.rate < 1 or tput_s <= 0:
        raise SystemExit("--messages must be >= 20, --rate >= 1, --tput-seconds > 0")
    warm = max(n_measured // 20, 1)
    impls = [i.strip() for i in args.impls.split(",") if i.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [i for i in impls if i not in IMPLS] + [m for m in modes if m not in MODES]
    if bad:
        raise SystemExit(f"unknown impl/mode: {bad}")
    verbose = args.verbose or not args.json

    def log(msg):
        if verbose:
            print(msg, file=sys.stderr, flush=True)

    wall0 = time.monotonic()
    engine = f"bench-{os.getpid()}"
    host = host_info()
    lat_timeout = (n_measured + warm) / args.rate * 3 + 5
    tput_timeout = tput_s * 3 + 10
    rows = []

    ring = RingBench(engine, args.yield_after, args.capacity, args.tput_capacity)
    if RING_IMPL in impls:
        t = time.monotonic()
        ring.warm_jit()
        log(f"jit warm-up {time.monotonic() - t:.2f} s")

    calib = None
    if RING_IMPL in impls:
        calib = calibrate(20_000 if not quick else 5_000, 20_000 if not quick else 5_000)
        host["calibration"] = calib
        log(f"calibration {calib}")

    def add(row):
        rows.append(row)
        log(f"{row['impl']:<11} {row['placement']:<25} {row['mode']:<22} p50={row['p50_ns']} "
            f"p99={row['p99_ns']} p999={row['p999_ns']} max={row['max_ns']} msgs/s={row['msgs_per_s']} "
            f"wall={row['wall_s']}s {' '.join(row['notes'])}")

    try:
        if RING_IMPL in impls:
            for placement in RING_PLACEMENTS:
                # busy-spin occupies both cores: keep those runs short
                dur = tput_s / 2 if placement == "separate-cores-busy-spin" else tput_s
                for mode in modes:
                    if mode == "latency":
                        add(ring.latency(placement, n_measured, warm, args.rate, lat_timeout))
                    else:
                        batch = 1 if mode == "throughput-unbatched" else BATCH
                        add(ring.throughput(placement, batch, dur, tput_timeout))
        for k, name in enumerate(i for i in BASELINES if i in impls):
            for placement in BASE_PLACEMENTS:
                for mode in modes:
                    try:
                        add(_baseline_run(name, placement, mode, n_measured, warm, args.rate, tput_s,
                                          lat_timeout if mode == "latency" else tput_timeout,
                                          f"{k}{placement[0]}{mode[0]}{len(rows)}"))
                    except Exception as e:  # a missing optional transport must not sink the run
                        traceback.print_exc(file=sys.stderr)
                        add({"impl": name, "placement": placement, "mode": mode,
                             "rate": args.rate if mode == "latency" else None, "messages": 0,
                             "p50_ns": None, "p99_ns": None, "p999_ns": None, "max_ns": None,
                             "msgs_per_s": None, "payload": TRANSPORTS[name].payload, "complete": False,
                             "wall_s": 0.0, "notes": [f"{type(e).__name__}: {e}"]})
    finally:
        from pyrt_shm.segment import list_segments, unlink_segment

        for leftover in list_segments(engine):   # belt and braces: every run unlinks its own
            unlink_segment(leftover)

    ratios, targets = ratios_and_targets(rows)
    if calib:
        targets["hop_p50_busy_spin_separate_cores_ns"]["host_floor_ns"] = calib.get("spin_handoff_two_cores_ns")
        targets["hop_p50_yield_one_core_ns"]["host_floor_ns"] = calib.get("yield_handoff_one_core_ns")
    host["loadavg_end"] = os.getloadavg()[0]
    report = {
        "host": host,
        "command": " ".join(["pyrt", "bench", "ring"] + argv_list),
        "method": {
            "latency": "coordinated-omission corrected: now - scheduled send time (t0 + i/rate), producer "
                       "never skips; first 5% of messages discarded as warm-up",
            "percentiles": "exact, numpy inverted_cdf over raw int64 samples (one per message), every impl; "
                           "the ring consumer also records into an HDR row (pyrt_shm.hdr_recorder), "
                           "reported as results[].hdr for comparison",
            "clock": "CLOCK_MONOTONIC (vDSO) in both processes",
            "throughput": "records / (consumer end - producer start), fixed duration, end marker",
            "processes": "multiprocessing fork; producer and consumer pinned with os.sched_setaffinity; "
                         "gc disabled in children; njit compiled in the parent before forking",
        },
        "params": {"rate": args.rate, "messages": n_measured, "warmup": warm, "tput_seconds": tput_s,
                   "ring_busy_spin_tput_seconds": tput_s / 2, "quick": quick, "yield_after": args.yield_after,
                   "ring_capacity_latency": args.capacity, "ring_capacity_throughput": args.tput_capacity,
                   "record_bytes": REC},
        "results": rows,
        "ratios": ratios,
        "targets": targets,
        "wall_s": round(time.monotonic() - wall0, 2),
    }
    text = json.dumps(report, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if args.json:
        print(text)
    else:
        print(_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
