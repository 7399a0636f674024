"""The SPSC ring across two processes over /dev/shm.

(a) Stress: a forked producer and a forked consumer pass ``N_RECORDS`` records through a
    shared-memory ring. The producer's jitted loop claims batches of up to 64 slots, writes the
    fields in place and commits; the consumer's jitted loop polls, verifies and releases. Every
    record carries its sequence number, a value and a checksum derived from it, so the consumer
    can count lost, duplicated/reordered and torn records. Acceptable outcome: exactly one
    (zero errors, N received, ring empty at the end).

    Both jitted loops return to Python after ``MAX_EMPTY`` empty polls, where the idle strategy
    decides: ``yield`` (sched_yield) or ``park`` (ParkIdle on a POSIX semaphore, posted by
    the producer's ``Waker``). Nothing busy-spins for long: the machine is shared.

(b) Regression for the hoisted-load hang (FACTS §12): a jitted consumer spinning in one call
    on ``spsc.poll`` (a load-acquire of ``head``) must see a store made by another process.
    A plain load would be hoisted out of the loop and spin forever, so the spinner runs in a
    child that is killed when the timeout passes, and the test then fails.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import re
import time
import traceback

import numpy as np
import posix_ipc
import pytest
from numba import njit

from layouts.ring import CONTROL_WORDS, IDX_CACHED_HEAD, IDX_HEAD, IDX_PARKED, IDX_TAIL
from pyrt_shm.shm_ring import attach_ring, create_ring
from ringbuf import spsc
from ringbuf._atomics import cpu_pause, load_acquire
from ringbuf.idle import ParkIdle, Waker, make_idle

REC = np.dtype([("seq", "<u8"), ("value", "<u8"), ("checksum", "<u8")], align=True)
N_RECORDS = int(os.environ.get("PYRT_STRESS_RECORDS", 100_000_000))
CAPACITY = 4096
BATCH = 64
MAX_EMPTY = 256            # empty polls before a jitted loop returns to Python to idle
TIMEOUT_S = 120.0
PAUSE_AT = N_RECORDS // 2  # the producer stops here for PAUSE_S, so the consumer must idle
PAUSE_S = 0.05

# errs[] slots reported by the consumer
E_TORN, E_GAP, E_BACKWARDS, E_RECEIVED = range(4)


@njit(inline="always")
def mix64(x):
    """splitmix64 finaliser: a 64-bit mix, so a torn record cannot look consistent."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(inline="always")
def value_of(seq):
    return seq * np.uint64(0x2545F4914F6CDD1D)


@njit
def produce(ctl, recs, next_seq, end_seq, batch, max_empty, wake):
    """Publish records ``next_seq..end_seq-1``; return (next_seq, wake_needed).

    Returns to Python after ``max_empty`` claims in a row found the ring full, or, when
    ``wake`` is set, as soon as a commit finds the consumer parked (Python posts the semaphore).
    """
    empty = 0
    while next_seq < end_seq:
        want = end_seq - next_seq
        if want > batch:
            want = batch
        k = spsc.claim(ctl, want)
        if k == 0:
            empty += 1
            if empty >= max_empty:
                return next_seq, False
            cpu_pause()
            continue
        empty = 0
        start = spsc.head_of(ctl)
        for i in range(k):
            s = next_seq + i
            r = recs[spsc.slot(ctl, start + i)]
            r.seq = s
            r.value = value_of(s)
            r.checksum = mix64(s)
        spsc.commit(ctl, k)
        next_seq += k
        if wake:
            if spsc.needs_wake(ctl) != 0:
                return next_seq, True
    return next_seq, False


@njit
def consume(ctl, recs, expect, end_seq, limit, max_empty, errs):
    """Take records until ``end_seq`` is seen or ``max_empty`` polls in a row found nothing.

    Verifies each record against the next expected sequence number; returns that number.
    """
    empty = 0
    one = np.uint64(1)
    while expect < end_seq:
        k = spsc.poll(ctl, limit)
        if k == 0:
            empty += 1
            if empty >= max_empty:
                return expect
            cpu_pause()
            continue
        empty = 0
        start = spsc.tail_of(ctl)
        for i in range(k):
            r = recs[spsc.slot(ctl, start + i)]
            s = r.seq
            v = r.value
            c = r.checksum
            if v != value_of(s) or c != mix64(s):
                errs[E_TORN] += one
            if s != expect:
                if s > expect:
                    errs[E_GAP] += s - expect
                else:
                    errs[E_BACKWARDS] += one
                expect = s
            expect += one
        errs[E_RECEIVED] += k
        spsc.release(ctl, k)
    return expect


def _child(conn, fn, *args):
    """Run ``fn`` in a forked child; send ("ok", result) or ("error", traceback)."""
    try:
        conn.send(("ok", fn(*args)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def producer_main(engine, n, sem_name):
    seg, ring = attach_ring(engine, "stress", REC)
    sem = posix_ipc.Semaphore(sem_name) if sem_name else None
    waker = Waker(ring.ctl, sem) if sem else None
    idle = make_idle("yield", spins=0)
    nxt, wakes, yields = np.uint64(0), 0, 0
    paused = False
    try:
        while nxt < n:
            stop = np.uint64(PAUSE_AT if not paused else n)
            # numba boxes a uint64 result as a Python int: cast back, or the next call is
            # compiled for int64 and mixes int64 with uint64 in float64.
            nxt, need = produce(ring.ctl, ring.recs, nxt, stop, np.uint64(BATCH), MAX_EMPTY, waker is not None)
            nxt = np.uint64(nxt)
            if need:
                wakes += waker.wake_if_parked()
            elif nxt == stop and not paused:
                paused = True                 # a quiet spell: the consumer must idle (park)
                time.sleep(PAUSE_S)
            elif nxt < stop:
                idle.idle(0)                  # ring full: let the consumer run
                yields += 1
        if waker is not None:
            wakes += waker.wake_if_parked()
        return {"published": int(nxt), "wakes": wakes, "full_yields": yields}
    finally:
        if sem is not None:
            sem.close()
        del ring
        seg.close()


def consumer_main(engine, n, sem_name):
    seg, ring = attach_ring(engine, "stress", REC)
    sem = posix_ipc.Semaphore(sem_name) if sem_name else None
    if sem is not None:
        idle = ParkIdle(spins=4, timeout_s=0.02)
        idle.watch(ring.ctl, sem)
    else:
        idle = make_idle("yield", spins=4)
    errs = np.zeros(4, np.uint64)
    expect = np.uint64(0)
    idles = 0
    t_start = time.perf_counter()
    try:
        while expect < n:
            before = expect
            expect = np.uint64(consume(ring.ctl, ring.recs, expect, np.uint64(n), 1024, MAX_EMPTY, errs))
            work = int(expect - before)
            if expect < n:
                idle.idle(work)
                idles += work == 0
        t_end = time.perf_counter()
        s = ring.statistics()
        return {"errs": errs.tolist(), "expect": int(expect), "seconds": t_end - t_start,
                "idles": idles, "high_water": s.high_water,
                "sem_value": sem.value if sem is not None else None}
    finally:
        if sem is not None:
            sem.close()
        del ring
        seg.close()


def _run_children(targets, timeout):
    """Fork one child per (fn, args); return their results; kill everything on overrun."""
    ctx = mp.get_context("fork")
    procs, conns = [], []
    try:
        for fn, args in targets:
            r, w = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_child, args=(w, fn, *args), daemon=True)
            p.start()
            w.close()
            procs.append(p)
            conns.append(r)
        deadline = time.monotonic() + timeout
        results = []
        for p, c in zip(procs, conns):
            left = max(deadline - time.monotonic(), 0.1)
            if not c.poll(left):
                pytest.fail(f"child {p.pid} ({p.name}) did not finish within {timeout} s")
            status, value = c.recv()
            if status != "ok":
                pytest.fail(f"child {p.pid} failed:\n{value}")
            results.append(value)
        for p in procs:
            p.join(10)
            assert p.exitcode == 0, f"child {p.pid} exit code {p.exitcode}"
        return results
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
        for c in conns:
            c.close()


def _warm_up(ring):
    """Compile in the parent so the forked children inherit the machine code."""
    errs = np.zeros(4, np.uint64)
    produce(ring.ctl, ring.recs, np.uint64(0), np.uint64(0), np.uint64(BATCH), MAX_EMPTY, True)
    consume(ring.ctl, ring.recs, np.uint64(0), np.uint64(0), 1024, MAX_EMPTY, errs)
    scratch = np.zeros(CONTROL_WORDS, np.uint64)
    spsc.prepare_park(scratch)
    spsc.unpark(scratch)
    spsc.needs_wake(scratch)


@pytest.mark.timeout(2 * TIMEOUT_S + 60)
@pytest.mark.parametrize("mode", ["yield", "park"])
def test_stress_two_processes_no_loss_no_dup_no_tear(engine_name, mode, capsys):
    seg, ring = create_ring(engine_name, "stress", REC, CAPACITY)
    sem_name = None
    try:
        if mode == "park":
            sem_name = f"/pyrt-{engine_name}.wake"
            posix_ipc.Semaphore(sem_name, posix_ipc.O_CREX, mode=0o600, initial_value=0).close()
        _warm_up(ring)
        t0 = time.perf_counter()
        cons, prod = _run_children([(consumer_main, (engine_name, N_RECORDS, sem_name)),
                                    (producer_main, (engine_name, N_RECORDS, sem_name))], TIMEOUT_S)
        wall = time.perf_counter() - t0
        torn, gap, backwards, received = cons["errs"]
        rate = N_RECORDS / max(cons["seconds"] - PAUSE_S, 1e-9)
        with capsys.disabled():
            print(f"\n[spsc stress {mode}] {N_RECORDS:,} records in {cons['seconds']:.2f} s "
                  f"= {rate / 1e6:.1f} M rec/s not counting the {PAUSE_S * 1e3:.0f} ms pause "
                  f"(wall {wall:.2f} s incl. fork); consumer idles "
                  f"{cons['idles']}, producer full-yields {prod['full_yields']}, wakes posted "
                  f"{prod['wakes']}, high water {cons['high_water']}, "
                  f"semaphore left {cons['sem_value']}")
        assert (torn, gap, backwards) == (0, 0, 0), cons
        assert received == N_RECORDS and cons["expect"] == N_RECORDS
        assert prod["published"] == N_RECORDS
        s = ring.statistics()
        assert (s.published, s.consumed, s.depth, s.dropped) == (N_RECORDS, N_RECORDS, 0, 0)
        assert 0 < s.high_water <= CAPACITY
        assert int(ring.ctl[IDX_PARKED]) == 0
        if mode == "park":
            # The producer's quiet spell outlasts the consumer's spins: it parked, and the
            # producer's Waker had to post it at least once.
            assert prod["wakes"] >= 1
    finally:
        if sem_name:
            try:
                posix_ipc.unlink_semaphore(sem_name)
            except posix_ipc.ExistentialError:
                pass
        del ring
        seg.unlink()
        seg.close()


# ---- (b) the hoisted-load regression ---------------------------------------------------------
# Measured on numba 0.68.1 / x86-64: ``while ctl[IDX_HEAD] == 0: pass`` (a plain load) hangs,
# the same loop over ``load_acquire`` returns at once. A spin on a *plain-load* copy of
# ``spsc.poll`` happens not to hang (poll also stores to ``ctl``, which keeps LLVM from hoisting
# the load), so the IR checks below are what pin the acquire/release in the spsc functions, and
# the cross-process spinners pin that the intrinsic really is re-executed every iteration.

@njit
def spin_on_load_acquire(ctl):
    """The FACTS case: one jitted call spinning on head with no other way out."""
    while load_acquire(ctl, IDX_HEAD) == 0:
        pass
    return 1


@njit
def spin_on_poll(ctl):
    """A consumer spinning on ``spsc.poll`` (load-acquire of head when its cache says empty)."""
    n = 0
    while spsc.poll(ctl, 1) == 0:
        n += 1
    return n + 1


SPINNERS = {"load_acquire": spin_on_load_acquire, "poll": spin_on_poll}


def spinner_main(engine, which, ready_conn):
    seg, ring = attach_ring(engine, "hoist", REC)
    try:
        ready_conn.send("ready")
        spins = SPINNERS[which](ring.ctl)
        return {"spins": int(spins), "head": int(load_head(ring.ctl))}
    finally:
        del ring
        seg.close()


@njit
def load_head(ctl):
    return load_acquire(ctl, IDX_HEAD)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("which", sorted(SPINNERS))
def test_spinning_consumer_sees_a_store_from_another_process(engine_name, which):
    seg, ring = create_ring(engine_name, "hoist", REC, 8)
    spinner = SPINNERS[which]
    ctx = mp.get_context("fork")
    ready_r, ready_w = ctx.Pipe(duplex=False)
    res_r, res_w = ctx.Pipe(duplex=False)
    p = None
    try:
        ring.ctl[IDX_HEAD] = 1                                  # compile before the fork...
        assert spinner(ring.ctl) >= 1
        ring.ctl[IDX_HEAD] = ring.ctl[IDX_TAIL] = ring.ctl[IDX_CACHED_HEAD] = 0   # ...and reset
        load_head(ring.ctl)
        p = ctx.Process(target=_child, args=(res_w, spinner_main, engine_name, which, ready_w),
                        daemon=True)
        p.start()
        res_w.close()
        ready_w.close()
        assert ready_r.poll(30), "spinner did not start"
        assert ready_r.recv() == "ready"
        time.sleep(0.05)                                        # let it enter the jitted loop
        rec = np.zeros(1, REC)
        rec["seq"] = 42
        assert ring.offer(rec) == 1                             # store-release of head
        if not res_r.poll(10.0):
            pytest.fail(f"the consumer spinning on {which} did not see head move within 10 s: "
                        f"the load of head was hoisted out of the loop (not an acquire load?)")
        status, value = res_r.recv()
        assert status == "ok", value
        assert value["head"] == 1 and value["spins"] >= 1
        p.join(10)
        assert p.exitcode == 0
    finally:
        if p is not None and p.is_alive():
            p.kill()
            p.join(5)
        for c in (ready_r, res_r):
            c.close()
        del ring
        seg.unlink()
        seg.close()


@njit
def _use_claim_commit(ctl, n):
    k = spsc.claim(ctl, n)
    spsc.commit(ctl, k)
    return k


@njit
def _use_poll_release(ctl, n):
    k = spsc.poll(ctl, n)
    spsc.release(ctl, k)
    return k


def _llvm(fn, *args):
    fn(*args)
    return "\n".join(fn.inspect_llvm().values())


def test_ring_cursors_compile_to_acquire_loads_and_release_stores():
    """Static half of the regression: the orderings are in the generated IR, not only in the docs."""
    ctl = np.zeros(CONTROL_WORDS, np.uint64)
    ctl[spsc.IDX_CAPACITY], ctl[spsc.IDX_MASK] = 8, 7
    prod = _llvm(_use_claim_commit, ctl, 1)
    cons = _llvm(_use_poll_release, ctl, 1)
    for ir, who in ((prod, "producer"), (cons, "consumer")):
        assert re.search(r"load atomic i64, .* acquire", ir), f"{who}: no acquire load"
        assert re.search(r"store atomic i64 .* release", ir), f"{who}: no release store"
    # These two are cache=True (cached code cannot be inspected): compile their source afresh.
    for fn in (spsc.needs_wake, spsc.prepare_park):
        ir = _llvm(njit(fn.py_func), ctl)
        assert "fence seq_cst" in ir, f"{fn.__name__}: the park/wake handshake needs a StoreLoad barrier"
