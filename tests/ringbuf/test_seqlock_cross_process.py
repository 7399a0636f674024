"""Seqlocked table across processes: one writer hammering rows, readers checking every snapshot.

Each row holds ``a``, ``b``, ``c`` on three different cache lines, all derived from one counter
``x``: ``a == b == x`` and ``c == -x``. The writer (a forked child) updates the rows round-robin
with ever-growing ``x`` through ``write_begin``/``write_end``. Two readers in other processes,
one jitted (``read_row``) and one pure Python (``SeqlockTable.read``), take snapshots the whole
time. Acceptable outcome, per snapshot: the invariant holds and ``x`` never goes backwards for a
row. Anything else is a torn snapshot. The readers must also see progress (``x`` grows).

For scale, the jitted reader also counts what a naive copy (no seqlock) would have returned
torn; that number is printed, not asserted (it depends on scheduling).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback

import numpy as np
import pytest
from numba import njit

from pyrt_shm.shm_ring import attach_table, create_table
from ringbuf.seqlock import SeqlockTable, read_row, write_begin, write_end

ROW = np.dtype({"names": ["a", "b", "c"], "formats": ["<i8", "<i8", "<i8"],
                "offsets": [0, 64, 128], "itemsize": 192})
N_ROWS = 4
READ_SECONDS = 1.5
TIMEOUT_S = 60.0

# stats[] slots
S_SNAPS, S_TORN, S_GAVE_UP, S_BACKWARDS, S_NAIVE_TORN = range(5)


@njit
def write_rows(seqs, rows, x, n_updates, n_rows):
    """Writer: ``n_updates`` updates round-robin over the rows; return the next counter."""
    for _ in range(n_updates):
        i = x % n_rows
        write_begin(seqs, i)
        r = rows[i]
        r.a = x
        r.b = x
        r.c = -x
        write_end(seqs, i)
        x += 1
    return x


@njit
def read_rows(seqs, rows, out, n_reads, n_rows, last, stats):
    """Reader: ``n_reads`` snapshots round-robin; count torn, gave-up and backwards ones."""
    for j in range(n_reads):
        i = j % n_rows
        # naive copy for comparison: no sequence check at all
        naive = rows[i]
        na, nb, nc = naive.a, naive.b, naive.c
        if not (na == nb and nb == -nc):
            stats[S_NAIVE_TORN] += 1
        if read_row(seqs, rows, i, out, 10_000) == 0:
            stats[S_GAVE_UP] += 1
            continue
        a, b, c = out[0].a, out[0].b, out[0].c
        if not (a == b and b == -c):
            stats[S_TORN] += 1
        if a < last[i]:
            stats[S_BACKWARDS] += 1
        last[i] = a
        stats[S_SNAPS] += 1


def _child(conn, fn, *args):
    try:
        conn.send(("ok", fn(*args)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def writer_main(engine, stop):
    seg, table = attach_table(engine, "tops", ROW, readonly=False)
    x, batches = 1, 0
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            x = write_rows(table.seqs, table.rows, x, 20_000, N_ROWS)
            batches += 1
            os.sched_yield()
        return {"updates": x - 1, "batches": batches}
    finally:
        del table
        seg.close()


def jit_reader_main(engine):
    seg, table = attach_table(engine, "tops", ROW)          # read-only
    out = np.empty(1, ROW)
    last = np.zeros(N_ROWS, np.int64)
    stats = np.zeros(5, np.int64)
    first = None
    try:
        t_end = time.monotonic() + READ_SECONDS
        while time.monotonic() < t_end:
            read_rows(table.seqs, table.rows, out, 5_000, N_ROWS, last, stats)
            if first is None:
                first = last.copy()
            os.sched_yield()
        return {"stats": stats.tolist(), "first": first.tolist(), "last": last.tolist()}
    finally:
        del table
        seg.close()


def py_reader_main(engine):
    seg, table = attach_table(engine, "tops", ROW)          # read-only, no numba involved
    assert not table.rows.flags.writeable
    snaps = torn = backwards = 0
    last = [0] * N_ROWS
    first = None
    try:
        t_end = time.monotonic() + READ_SECONDS
        while time.monotonic() < t_end:
            for _ in range(200):
                i = snaps % N_ROWS
                r = table.read(i, timeout=5.0)
                a, b, c = int(r["a"]), int(r["b"]), int(r["c"])
                if not (a == b == -c):
                    torn += 1
                if a < last[i]:
                    backwards += 1
                last[i] = a
                snaps += 1
            if first is None:
                first = list(last)
            os.sched_yield()
        versions = [table.version(i) for i in range(N_ROWS)]
        return {"snaps": snaps, "torn": torn, "backwards": backwards, "first": first,
                "last": last, "versions": versions}
    finally:
        del table
        seg.close()


@pytest.mark.timeout(TIMEOUT_S + 30)
def test_readers_in_other_processes_never_see_a_torn_row(engine_name, capsys):
    seg, table = create_table(engine_name, "tops", ROW, N_ROWS)
    ctx = mp.get_context("fork")
    procs, conns = {}, {}
    stop = ctx.Event()
    try:
        # Compile in the parent, for the exact (read-only / writable) array types of the children.
        write_rows(table.seqs, table.rows, 0, 0, N_ROWS)
        rseg, rtable = attach_table(engine_name, "tops", ROW)
        read_rows(rtable.seqs, rtable.rows, np.empty(1, ROW), 0, N_ROWS,
                  np.zeros(N_ROWS, np.int64), np.zeros(5, np.int64))
        del rtable
        rseg.close()

        for name, fn, args in (("writer", writer_main, (engine_name, stop)),
                               ("jit", jit_reader_main, (engine_name,)),
                               ("py", py_reader_main, (engine_name,))):
            r, w = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_child, args=(w, fn, *args), name=name, daemon=True)
            p.start()
            w.close()
            procs[name], conns[name] = p, r
        results = {}
        deadline = time.monotonic() + TIMEOUT_S
        for name in ("jit", "py", "writer"):
            if name == "writer":
                stop.set()
            if not conns[name].poll(max(deadline - time.monotonic(), 0.1)):
                pytest.fail(f"{name} process did not finish within {TIMEOUT_S} s")
            status, value = conns[name].recv()
            assert status == "ok", f"{name} failed:\n{value}"
            results[name] = value
        for p in procs.values():
            p.join(10)
            assert p.exitcode == 0, f"{p.name} exit code {p.exitcode}"

        w, j, py = results["writer"], results["jit"], results["py"]
        snaps, torn, gave_up, backwards, naive_torn = j["stats"]
        with capsys.disabled():
            print(f"\n[seqlock] writer {w['updates']:,} updates; jitted reader {snaps:,} snapshots "
                  f"({gave_up} gave up), naive copies torn {naive_torn:,}; python reader "
                  f"{py['snaps']:,} snapshots")
        assert (torn, backwards) == (0, 0), j
        assert (py["torn"], py["backwards"]) == (0, 0), py
        assert snaps > 1000 and py["snaps"] > 100
        assert gave_up < snaps, "the jitted reader almost never got a consistent snapshot"
        # progress: both readers saw the counters move while they read
        assert sum(j["last"]) > sum(j["first"]), j
        assert sum(py["last"]) > sum(py["first"]), py
        assert w["updates"] > 0
        # after the writer stopped, the table is quiet and consistent, versions = writes per row
        final = table.snapshot()
        assert np.array_equal(final["a"], final["b"]) and np.array_equal(final["a"], -final["c"])
        assert sum(table.version(i) for i in range(N_ROWS)) == w["updates"]
        assert all(int(s) % 2 == 0 for s in table.seqs)
    finally:
        stop.set()
        for p in procs.values():
            if p.is_alive():
                p.kill()
                p.join(5)
        for c in conns.values():
            c.close()
        del table
        seg.unlink()
        seg.close()


# ---- in one process: the façade ---------------------------------------------------------------

def test_facade_write_read_version_snapshot():
    seqs = np.zeros(3, np.uint64)
    rows = np.zeros(3, ROW)
    t = SeqlockTable(seqs, rows, "t")
    assert len(t) == 3 and t.version(1) == 0
    t.write(1, a=5, b=5, c=-5)
    t.write(1, a=6)
    assert t.version(1) == 2 and int(seqs[1]) == 4
    r = t.read(1)
    assert (int(r["a"]), int(r["b"]), int(r["c"])) == (6, 5, -5)
    rows[1]["a"] = 99                    # read() returned a copy, not a view
    assert int(r["a"]) == 6
    snap = t.snapshot()
    assert snap["a"].tolist() == [0, 99, 0]
    out = np.empty(1, ROW)
    assert read_row(seqs, rows, 1, out, 10) == 1 and int(out[0]["a"]) == 99


def test_reader_gives_up_on_a_row_left_mid_write():
    seqs = np.zeros(2, np.uint64)
    rows = np.zeros(2, ROW)
    t = SeqlockTable(seqs, rows, "stuck")
    seqs[0] = 7                          # odd: a writer died between begin and end
    with pytest.raises(TimeoutError, match="stuck"):
        t.read(0, timeout=0.05)
    assert read_row(seqs, rows, 0, np.empty(1, ROW), 100) == 0
    assert t.read(1, timeout=0.05)["a"] == 0     # other rows are unaffected


def test_table_rejects_mismatched_seqs():
    with pytest.raises(ValueError, match="bad"):
        SeqlockTable(np.zeros(2, np.uint64), np.zeros(3, ROW), "bad")
    with pytest.raises(ValueError):
        SeqlockTable(np.zeros(3, np.int64), np.zeros(3, ROW), "bad")
