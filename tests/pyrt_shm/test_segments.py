"""POSIX shared-memory segments, rings and tables over them: lifetime, modes, refusals.

Every test creates its segments under its own engine name (fixture ``engine_name``) and unlinks
them in ``finally``; the autouse leak check in ``conftest.py`` fails any test that leaves one.
"""
from __future__ import annotations

import ctypes
import mmap
import multiprocessing as mp
import os
import signal
import stat
import time

import numpy as np
import posix_ipc
import pytest
from numba import njit
from numba.core.errors import TypingError

from layouts.market import TICK, TOP
from layouts.ring import FULL_DROP, IDX_CAPACITY
from layouts.segment import HEADER_SIZE, HEADER_VERSION, KIND_BLOB, KIND_RING, KIND_TABLE, MAGIC
from pyrt_shm.errors import EngineRunning, LayoutMismatch, SegmentExists, SegmentNotFound, ShmError
from pyrt_shm.segment import (
    SHM_DIR,
    attach_segment,
    create_segment,
    engine_prefix,
    list_segments,
    mark_ready,
    remove_stale,
    segment_name,
    unlink_segment,
)
from pyrt_shm.shm_ring import attach_ring, attach_table, create_ring, create_table, ring_layout_hash
from ringbuf._atomics import load_acquire, store_release
from ringbuf.errors import RingError

HASH = 0x1234_5678_9ABC


def shm_path(posix_name: str) -> str:
    return os.path.join(SHM_DIR, posix_name.lstrip("/"))


@pytest.fixture
def blob(engine_name):
    seg = create_segment(engine_name, "blob", KIND_BLOB, HASH, 1000)
    try:
        yield seg
    finally:
        seg.unlink()
        seg.close()


def _in_child(fn, *args, timeout=30):
    """Run ``fn`` in a forked child; return its exit code (killed on overrun)."""
    p = mp.get_context("fork").Process(target=fn, args=args, daemon=True)
    p.start()
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join(5)
        pytest.fail(f"child {p.pid} did not finish within {timeout} s")
    return p.exitcode


# ---- names -----------------------------------------------------------------------------------

def test_names_carry_the_engine_prefix():
    assert engine_prefix("prod-1") == "pyrt-prod-1."
    assert segment_name("prod-1", "md_ring") == "/pyrt-prod-1.md_ring"
    for bad in ("", "Upper", "has.dot", "has/slash", "x" * 33, "sp ace"):
        with pytest.raises(ValueError):
            engine_prefix(bad)
    for bad in ("", "a.b", "a/b", "UP", "y" * 65):
        with pytest.raises(ValueError):
            segment_name("prod", bad)


# ---- create / attach / unlink ----------------------------------------------------------------

def test_create_writes_the_header(engine_name, blob):
    h = blob.header[0]
    assert int(h["magic"]) == MAGIC and int(h["version"]) == HEADER_VERSION
    assert blob.kind == KIND_BLOB and int(h["layout_hash"]) == HASH
    assert blob.creator_pid == os.getpid() and blob.start_mono_ns > 0
    assert blob.payload_offset == HEADER_SIZE and blob.payload_offset % 64 == 0
    assert int(h["payload_size"]) == 1000
    assert blob.size % mmap.PAGESIZE == 0 and blob.size >= HEADER_SIZE + 1000
    assert blob.name == "blob" and blob.owner and not blob.readonly
    assert blob.posix_name == f"/pyrt-{engine_name}.blob"
    assert "blob" in repr(blob) and "rw" in repr(blob)
    del h


def test_attach_sees_the_creators_writes_and_unlink_removes_the_name(engine_name):
    seg = create_segment(engine_name, "shared", KIND_BLOB, HASH, 64)
    try:
        mine = seg.array(np.int64, (8,))
        mine[:] = np.arange(8)
        other = attach_segment(engine_name, "shared", KIND_BLOB, HASH)
        theirs = other.array(np.int64, (8,))
        assert theirs.tolist() == list(range(8))
        theirs[3] = -3                                   # a second mapping of the same pages
        assert mine[3] == -3
        assert not other.owner
        seg.beat(123)
        assert int(other.header["heartbeat_ns"][0]) == 123
        assert os.path.exists(shm_path(seg.posix_name))
    finally:
        seg.unlink()
    assert not os.path.exists(shm_path(seg.posix_name))
    mine[0] = 42                                         # mappings outlive the name
    assert theirs[0] == 42
    with pytest.raises(SegmentNotFound):
        attach_segment(engine_name, "shared")
    assert unlink_segment(seg.posix_name) is False       # already gone: not an error
    del mine, theirs
    other.close()
    seg.close()


def _close_then_use_views(seg, ring):
    import faulthandler
    faulthandler.disable()
    view = seg.array(np.uint8, (16,), offset=2048)       # past the ring: spare payload bytes
    seg.close()                          # must not unmap what the views still use
    view[0] = 1
    ring.ctl[0] = ring.ctl[0]
    os._exit(0 if view[0] == 1 and ring.statistics().capacity == 8 else 3)


def test_close_keeps_the_mapping_while_views_live(engine_name):
    """``close()`` drops the mapping only when no view uses it. Views made with an offset keep no
    buffer export on the mmap, so an eager ``mmap.close()`` would unmap them: run the access in
    a child so that a regression is a failed test (SIGSEGV exit), not a crashed session."""
    seg, ring = create_ring(engine_name, "md", TICK, 8)
    try:
        aseg, attached = attach_ring(engine_name, "md", TICK)
        assert _in_child(_close_then_use_views, aseg, attached) == 0
        del attached
        aseg.close()
        blob_view = seg.array(np.uint8, (4,), offset=2048)
    finally:
        seg.unlink()
    seg.close()
    blob_view[0] = 7                     # still mapped in this process too
    assert blob_view[0] == 7 and ring.statistics().capacity == 8
    del blob_view, ring


def test_create_is_exclusive(engine_name, blob):
    with pytest.raises(SegmentExists) as e:
        create_segment(engine_name, "blob", KIND_BLOB, HASH, 10)
    assert blob.posix_name in str(e.value) and engine_name in str(e.value)
    assert isinstance(e.value, ShmError)


def test_segment_mode_is_0600(blob):
    st = os.stat(shm_path(blob.posix_name))
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.getuid()


def test_attach_missing_names_the_segment(engine_name):
    with pytest.raises(SegmentNotFound) as e:
        attach_segment(engine_name, "nothing_here")
    msg = str(e.value)
    assert f"/pyrt-{engine_name}.nothing_here" in msg and "nothing_here" in msg


# ---- read-only attach ------------------------------------------------------------------------

def test_readonly_attach_refuses_numpy_writes(engine_name, blob):
    ro = attach_segment(engine_name, "blob", KIND_BLOB, HASH, readonly=True)
    try:
        assert ro.readonly and "ro" in repr(ro)
        words = ro.array(np.uint64, (4,))
        assert not words.flags.writeable and not ro.header.flags.writeable
        with pytest.raises(ValueError):
            words[0] = 1
        with pytest.raises(ValueError):
            ro.header["heartbeat_ns"] = 1
        with pytest.raises(ValueError):
            ro.beat()
        blob.array(np.uint64, (4,))[0] = 77               # the owner still writes; reader sees it
        assert words[0] == 77
        del words
    finally:
        ro.close()


@njit
def _publish(arr, value):
    store_release(arr, 0, value)


@njit
def _peek(arr):
    return load_acquire(arr, 0)


def test_readonly_attach_refuses_a_jitted_release_store_at_compile_time(engine_name, blob):
    ro = attach_segment(engine_name, "blob", KIND_BLOB, HASH, readonly=True)
    try:
        words = ro.array(np.uint64, (4,))
        blob.array(np.uint64, (4,))[0] = 5
        assert _peek(words) == 5                          # loads are fine on a read-only map
        with pytest.raises((TypeError, TypingError), match="read-only"):
            _publish(words, np.uint64(1))
        del words
    finally:
        ro.close()


def _raw_store(addr):
    import faulthandler
    faulthandler.disable()
    ctypes.memset(addr, 0xFF, 8)                          # must fault: the pages are PROT_READ
    os._exit(0)


def test_readonly_attach_maps_pages_prot_read(engine_name, blob):
    """Not just a numpy flag: a raw store through the mapping kills the process (SIGSEGV)."""
    ro = attach_segment(engine_name, "blob", KIND_BLOB, HASH, readonly=True)
    try:
        words = ro.array(np.uint64, (4,))
        code = _in_child(_raw_store, words.ctypes.data)
        assert code == -signal.SIGSEGV
        assert words[0] == 0
        del words
    finally:
        ro.close()


# ---- refusing other layouts ------------------------------------------------------------------

def test_attach_refuses_the_wrong_kind(engine_name, blob):
    with pytest.raises(LayoutMismatch, match=r"is a blob, expected a ring") as e:
        attach_segment(engine_name, "blob", KIND_RING)
    assert blob.posix_name in str(e.value)


def test_attach_refuses_another_layout_hash(engine_name, blob):
    with pytest.raises(LayoutMismatch, match="different layouts") as e:
        attach_segment(engine_name, "blob", KIND_BLOB, HASH + 1)
    assert f"{HASH:#x}" in str(e.value) and f"{HASH + 1:#x}" in str(e.value)


def test_attach_refuses_a_corrupt_magic(engine_name, blob):
    blob.header["magic"] = 0xDEADBEEF
    with pytest.raises(LayoutMismatch, match="not a pyrt-shm segment") as e:
        attach_segment(engine_name, "blob")
    assert "0xdeadbeef" in str(e.value)


def test_attach_refuses_another_header_version(engine_name, blob):
    blob.header["version"] = HEADER_VERSION + 1
    with pytest.raises(LayoutMismatch, match=rf"header version {HEADER_VERSION + 1}.*version {HEADER_VERSION}"):
        attach_segment(engine_name, "blob")


def test_attach_refuses_a_payload_past_the_end(engine_name, blob):
    blob.header["payload_size"] = blob.size
    with pytest.raises(LayoutMismatch, match="past the end"):
        attach_segment(engine_name, "blob")


def test_attach_refuses_a_segment_too_small_for_a_header(engine_name):
    name = segment_name(engine_name, "tiny")
    shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o600, size=100)
    shm.close_fd()
    try:
        with pytest.raises(LayoutMismatch, match="too small"):
            attach_segment(engine_name, "tiny")
    finally:
        shm.unlink()


# ---- rings and tables over segments ----------------------------------------------------------

def test_ring_round_trip_between_creator_and_attacher(engine_name):
    seg, ring = create_ring(engine_name, "md", TICK, 64, FULL_DROP)
    try:
        assert int(seg.header["ready"][0]) == 1 and seg.kind == KIND_RING
        assert int(seg.header["layout_hash"][0]) == ring_layout_hash(TICK)
        aseg, consumer = attach_ring(engine_name, "md", TICK)
        ticks = np.zeros(3, TICK)
        ticks["seq"] = [1, 2, 3]
        ticks["price"] = [10.5, 11.0, 9.75]
        assert ring.offer(ticks) == 3
        got = consumer.poll(10)
        assert got["seq"].tolist() == [1, 2, 3] and got["price"].tolist() == [10.5, 11.0, 9.75]
        s = consumer.statistics()
        assert (s.capacity, s.published, s.consumed, s.full_policy) == (64, 3, 3, "drop")
        del consumer, got
        aseg.close()
    finally:
        del ring
        seg.unlink()
        seg.close()


def test_readonly_ring_attach_gives_readonly_views(engine_name):
    seg, ring = create_ring(engine_name, "md", TICK, 8)
    try:
        rseg, watcher = attach_ring(engine_name, "md", TICK, readonly=True)
        assert not watcher.ctl.flags.writeable and not watcher.recs.flags.writeable
        assert watcher.statistics().capacity == 8          # observers work read-only
        del watcher
        rseg.close()
    finally:
        del ring
        seg.unlink()
        seg.close()


def test_attach_ring_with_another_record_dtype_is_refused(engine_name):
    seg, ring = create_ring(engine_name, "md", TICK, 8)
    try:
        with pytest.raises((LayoutMismatch, RingError)) as e:
            attach_ring(engine_name, "md", TOP)
        assert f"/pyrt-{engine_name}.md" in str(e.value)
        # same itemsize, one field retyped: still refused
        twin = np.dtype([(n, "<i8" if n == "seq" else TICK.fields[n][0]) for n in TICK.names], align=True)
        assert twin.itemsize == TICK.itemsize
        with pytest.raises((LayoutMismatch, RingError)):
            attach_ring(engine_name, "md", twin)
        with pytest.raises(LayoutMismatch, match="expected a table"):
            attach_table(engine_name, "md", TICK)
    finally:
        del ring
        seg.unlink()
        seg.close()


@pytest.mark.parametrize("capacity", [0, 1, 3, 100, 1000, 4095])
def test_ring_capacity_must_be_a_power_of_two(engine_name, capacity):
    with pytest.raises(RingError) as e:
        create_ring(engine_name, "orders", TICK, capacity)
    assert "orders" in str(e.value) and repr(capacity) in str(e.value)
    assert list_segments(engine_name) == []


def test_attach_ring_with_a_corrupt_capacity_is_refused(engine_name):
    seg, ring = create_ring(engine_name, "md", TICK, 8)
    try:
        ring.ctl[IDX_CAPACITY] = 6
        with pytest.raises(RingError, match="md"):
            attach_ring(engine_name, "md", TICK)
    finally:
        del ring
        seg.unlink()
        seg.close()


def test_offer_with_the_wrong_dtype_is_refused(engine_name):
    seg, ring = create_ring(engine_name, "md", TICK, 8)
    try:
        with pytest.raises(RingError, match="md") as e:
            ring.offer(np.zeros(2, TOP))
        assert "dtype" in str(e.value)
        with pytest.raises(RingError):
            ring.offer(np.zeros(2, np.float64))
        assert ring.statistics().published == 0
    finally:
        del ring
        seg.unlink()
        seg.close()


def test_table_round_trip_and_readonly_default(engine_name):
    seg, table = create_table(engine_name, "tops", TOP, 5)
    try:
        assert seg.kind == KIND_TABLE and len(table) == 5
        table.write(3, sym=3, bid=99.5, ask=100.0, valid=1)
        rseg, reader = attach_table(engine_name, "tops", TOP)
        assert len(reader) == 5 and rseg.readonly
        assert not reader.rows.flags.writeable
        row = reader.read(3)
        assert (int(row["sym"]), float(row["bid"]), float(row["ask"])) == (3, 99.5, 100.0)
        assert reader.version(3) == 1 and reader.version(0) == 0
        with pytest.raises(LayoutMismatch):
            attach_table(engine_name, "tops", TICK)
        del reader, row
        rseg.close()
    finally:
        del table
        seg.unlink()
        seg.close()


@pytest.mark.parametrize("n_rows", [1, 2, 7, 8, 9, 100, 1000])
def test_attach_table_recovers_the_row_count(engine_name, n_rows):
    seg, table = create_table(engine_name, "t", TOP, n_rows)
    try:
        rseg, reader = attach_table(engine_name, "t", TOP)
        assert len(reader) == n_rows
        del reader
        rseg.close()
    finally:
        del table
        seg.unlink()
        seg.close()


def test_create_table_needs_a_row(engine_name):
    with pytest.raises(ValueError, match="n_rows"):
        create_table(engine_name, "t", TOP, 0)
    assert list_segments(engine_name) == []


# ---- listing and stale segments --------------------------------------------------------------

def test_list_segments_lists_one_engine_only(engine_name):
    other = engine_name + "-x"                           # shares a string prefix, not the engine
    made = []
    try:
        for eng, name in ((engine_name, "b"), (engine_name, "a"), (other, "a")):
            made.append(create_segment(eng, name, KIND_BLOB, HASH, 8))
        assert list_segments(engine_name) == [f"/pyrt-{engine_name}.a", f"/pyrt-{engine_name}.b"]
        assert list_segments(other) == [f"/pyrt-{other}.a"]
    finally:
        for seg in made:
            seg.unlink()
            seg.close()
    assert list_segments(engine_name) == [] and list_segments(other) == []


def _create_and_die(engine):
    """A 'crashed engine': creates a segment and a semaphore, exits without cleaning up."""
    seg = create_segment(engine, "orphan", KIND_BLOB, HASH, 64)
    mark_ready(seg)
    sem = posix_ipc.Semaphore(f"/pyrt-{engine}.wake", posix_ipc.O_CREX, mode=0o600)
    sem.close()
    os._exit(0)


def test_remove_stale_removes_what_a_dead_creator_left(engine_name):
    sem_name = f"/pyrt-{engine_name}.wake"
    try:
        assert _in_child(_create_and_die, engine_name) == 0      # joined: the creator is reaped
        seg_name = f"/pyrt-{engine_name}.orphan"
        assert list_segments(engine_name) == [seg_name]
        assert os.path.exists(os.path.join(SHM_DIR, "sem." + sem_name[1:]))
        removed = remove_stale(engine_name)
        assert sorted(removed) == sorted([seg_name, "/sem." + sem_name[1:]])
        assert list_segments(engine_name) == []
        assert not os.path.exists(os.path.join(SHM_DIR, "sem." + sem_name[1:]))
        assert remove_stale(engine_name) == []                   # idempotent
    finally:
        unlink_segment(f"/pyrt-{engine_name}.orphan")
        try:
            posix_ipc.unlink_semaphore(sem_name)
        except posix_ipc.ExistentialError:
            pass


def test_remove_stale_treats_an_unreaped_creator_as_dead(engine_name):
    """A creator that exited but was not yet reaped (a zombie) is dead: its segments are stale."""
    import psutil

    p = mp.get_context("fork").Process(target=_create_and_die, args=(engine_name,), daemon=True)
    p.start()
    try:
        deadline = time.monotonic() + 30
        while psutil.Process(p.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "child did not exit"
            time.sleep(0.01)
        removed = remove_stale(engine_name)
        assert f"/pyrt-{engine_name}.orphan" in removed
        assert list_segments(engine_name) == []
    finally:
        p.join(10)
        unlink_segment(f"/pyrt-{engine_name}.orphan")
        try:
            posix_ipc.unlink_semaphore(f"/pyrt-{engine_name}.wake")
        except posix_ipc.ExistentialError:
            pass


def test_remove_stale_refuses_while_the_creator_lives(engine_name, blob):
    with pytest.raises(EngineRunning) as e:
        remove_stale(engine_name)
    assert str(os.getpid()) in str(e.value) and engine_name in str(e.value)
    assert list_segments(engine_name) == [blob.posix_name]       # nothing was removed


def test_an_exception_inside_try_finally_leaves_nothing(engine_name):
    with pytest.raises(RuntimeError, match="stage crashed"):
        seg, ring = create_ring(engine_name, "md", TICK, 16)
        tseg, table = create_table(engine_name, "tops", TOP, 4)
        try:
            ring.offer(np.zeros(4, TICK))
            raise RuntimeError("stage crashed")
        finally:
            seg.unlink()
            tseg.unlink()
    assert list_segments(engine_name) == []
    assert not [e for e in os.listdir(SHM_DIR) if e.startswith(engine_prefix(engine_name))]
