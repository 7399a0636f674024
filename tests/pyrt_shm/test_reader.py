"""The read-only reader API (``pyrt_shm.reader``).

Two kinds of engine:

* ``shm_engine``: the default topology's shared memory built in this process
  (``EngineMemory(..., "shm")``) with no stage running; the test writes values as the owner
  would and checks what the reader returns. Deterministic and fast.
* a real ``pyrt run`` in a subprocess (engine_proc helpers) for attaching from another
  process under load, and for stop detection. Every run is bounded and SIGINTed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from engine_proc import ROOT, finish, shm_entries, start_engine, stop_engine, wait_running
from layouts.control import KILL_OPERATOR, TRADING_HALTED
from layouts.histogram import HIGHEST, LOWEST, SIGFIGS
from layouts.stats import STAGE_RUNNING
from pyrt_shm.config import load_topology, override_from_dotted
from pyrt_shm.errors import LayoutMismatch, SegmentNotFound
from pyrt_shm.reader import EngineGone, EngineNotRunning, EngineRestarted, attach, running_engines
from pyrt_shm.segment import remove_stale
from pyrt_shm.wiring import EngineMemory
from ringbuf.seqlock_view import SeqlockTable

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))


def build_memory(engine: str) -> EngineMemory:
    topo = load_topology(overrides=override_from_dotted({"engine.name": engine}))
    return EngineMemory(topo, "shm")


@pytest.fixture
def shm_engine(engine_name):
    mem = build_memory(engine_name)
    try:
        yield mem
    finally:
        mem.close()


def run_py(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                          cwd=ROOT, timeout=timeout)


# --- imports ---------------------------------------------------------------------------------

def test_reader_imports_no_numba():
    r = run_py("import sys\nimport pyrt_shm.reader, ringbuf.seqlock_view, pyrt_shm.shm_ring\n"
               "bad = [m for m in sys.modules if m.split('.')[0] in ('numba', 'llvmlite')]\n"
               "assert not bad, bad\nprint('ok')")
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_seqlock_module_re_exports_the_numba_free_facade():
    from ringbuf import seqlock

    assert seqlock.SeqlockTable is SeqlockTable


# --- attaching -------------------------------------------------------------------------------

def test_attaching_to_no_engine_is_a_clear_error(engine_name):
    with pytest.raises(EngineNotRunning) as info:
        attach(engine_name)
    assert isinstance(info.value, SegmentNotFound)
    msg = str(info.value)
    assert repr(engine_name) in msg and "not running" in msg and f"pyrt run --engine {engine_name}" in msg
    t0 = time.monotonic()
    with pytest.raises(EngineNotRunning):
        attach(engine_name, wait=0.3)
    assert 0.25 < time.monotonic() - t0 < 5


def test_bad_engine_name_is_rejected():
    with pytest.raises(ValueError, match="must match"):
        attach("No/Such")


def test_attach_lists_everything_from_the_manifest(shm_engine):
    eng = shm_engine.engine
    assert eng in running_engines()
    with attach(eng) as r:
        assert r.pid == os.getpid()
        assert r.stage_names == shm_engine.stage_names == ["feed", "book", "signal", "risk", "exec"]
        assert r.ring_names() == list(shm_engine.rings)
        assert {"tops", "positions", "venue_positions"} <= set(r.table_names())
        assert r.table_names() == list(shm_engine.tables)
        assert r.hist_names == shm_engine.hist_names
        assert r.symbols == ["SYM0", "SYM1", "SYM2", "SYM3"]
        assert r.alive()
        r.check()


def test_every_mapping_is_read_only(shm_engine):
    with attach(shm_engine.engine) as r:
        views = r.views()
        assert {"stats", "hist", "control", "ring-md.ctl", "table-tops.rows"} <= set(views)
        for name, v in views.items():
            assert not v.flags.writeable, name
            with pytest.raises(ValueError):
                v.setflags(write=True)          # the buffer itself is read-only
        with pytest.raises(ValueError):
            views["stats"]["pid"][0] = 1
        with pytest.raises(ValueError):
            views["table-tops.rows"]["bid"][0] = 1.0
        with pytest.raises(ValueError):
            views["control"]["kill_switch"] = 1
        with pytest.raises(ValueError):
            views["ring-md.ctl"][0] = 0
        with pytest.raises(ValueError):
            views["hist"]["counts"][0, 0] = 1


def test_a_raw_store_through_the_reader_faults(shm_engine):
    """Not only numpy's flag: the pages are mapped PROT_READ, so a raw store kills the writer."""
    code = (f"import ctypes\nfrom pyrt_shm.reader import attach\nr = attach({shm_engine.engine!r})\n"
            "a = r.views()['control']\nprint('attached', flush=True)\n"
            "ctypes.memset(a.ctypes.data, 0xff, 8)\nprint('wrote')")
    res = run_py(code)
    assert "attached" in res.stdout and "wrote" not in res.stdout
    assert res.returncode == -signal.SIGSEGV, (res.returncode, res.stderr[-2000:])
    assert int(shm_engine.control[0]["kill_switch"]) == 0


@pytest.mark.parametrize("segment", ["stats", "hist", "control", "ring-md", "table-tops",
                                     "table-positions"])
def test_layout_mismatch_names_the_segment(shm_engine, segment):
    seg = next(s for s in shm_engine.segments if s.name == segment)
    good = int(seg.header["layout_hash"][0])
    seg.header["layout_hash"] = good ^ 1
    try:
        with pytest.raises(LayoutMismatch) as info:
            attach(shm_engine.engine)
    finally:
        seg.header["layout_hash"] = good
    assert f"pyrt-{shm_engine.engine}.{segment}" in str(info.value)
    assert "layout" in str(info.value)
    attach(shm_engine.engine).close()


def test_header_version_mismatch_is_refused(shm_engine):
    seg = next(s for s in shm_engine.segments if s.name == "stats")
    seg.header["version"] = 99
    try:
        with pytest.raises(LayoutMismatch, match=r"stats: header version 99"):
            attach(shm_engine.engine)
    finally:
        seg.header["version"] = 1


# --- values ----------------------------------------------------------------------------------

def _fill(mem) -> HdrHistogram:
    """Write what the stages would: stats, counters, tables, control, one histogram."""
    now = time.monotonic_ns()
    for i in range(len(mem.stage_names)):
        row = mem.stats[i:i + 1]
        row["pid"], row["cpu"], row["state"] = os.getpid(), 1, STAGE_RUNNING
        row["cycles"], row["work"] = 1000 + i, 10 * i
    risk = mem.stage_names.index("risk")
    counters = mem.stats[risk:risk + 1]["counters"].reshape(-1)
    counters[0], counters[1] = 7, 5
    tops = mem.tables["tops"]
    tops.write(1, sym=1, valid=1, bid=100.0, ask=100.5, bid_size=300.0, ask_size=200.0, last=100.25,
               updated_ns=now, updates=3)
    pos = mem.tables["positions"]
    pos.write(2, sym=2, fills=4, qty=-100.0, avg_px=50.0, realized=12.5, unrealized=-3.0, fees=2.0,
              bought=200.0, sold=300.0, mark=50.03)
    c = mem.control[0:1]
    c["kill_switch"], c["kill_cause"], c["kill_stage"], c["kill_ns"] = 1, KILL_OPERATOR, risk, now
    c["trading_state"] = TRADING_HALTED
    h = HdrHistogram(LOWEST, HIGHEST, SIGFIGS)
    for v in (150, 900, 1_500, 3_000, 12_000, 250_000, 7_000_000) * 3:
        h.record_value(v)
    row = mem.hists[mem.hist_names.index("exec.tick_to_order"):][:1]
    counts = np.ctypeslib.as_array(h.counts)[:h.counts_len]
    row["counts"][0, :] = counts
    row["total"], row["min"], row["max"] = h.get_total_count(), h.get_min_value(), h.get_max_value()
    row["sum"] = float(sum((150, 900, 1_500, 3_000, 12_000, 250_000, 7_000_000)) * 3)
    mem.stats["heartbeat_ns"] = time.monotonic_ns()      # last: the test reads right after
    return h


def test_snapshots_return_what_the_owner_wrote(shm_engine):
    h = _fill(shm_engine)
    with attach(shm_engine.engine) as r:
        st = r.stages()
        assert list(st) == r.stage_names
        assert st["risk"]["status"] == "running" and st["risk"]["pid"] == os.getpid()
        assert st["risk"]["process"] == "hot" and st["feed"]["process"] == "feed"
        assert st["risk"]["cycles"] == 1003 and st["risk"]["work"] == 30 and st["risk"]["cpu"] == 1
        assert 0 <= st["risk"]["heartbeat_age_s"] < 60
        names = shm_engine.classes["risk"].COUNTERS
        assert st["risk"]["counters"][names[0]] == 7
        assert r.counters()["risk"][names[1]] == 5
        assert r.counters()["feed"] == dict.fromkeys(shm_engine.classes["feed"].COUNTERS, 0)

        rings = r.rings()
        assert rings["md"]["capacity"] == 65536 and rings["md"]["depth"] == 0
        assert rings["fill"]["producer"] == "exec" and rings["fill"]["consumer"] == "risk"
        assert {"high_water", "times_full", "dropped", "published", "consumed"} <= set(rings["order"])

        tops = r.tops()
        assert list(tops) == ["SYM0", "SYM1", "SYM2", "SYM3"]
        assert tops["SYM0"]["valid"] is False and tops["SYM0"]["mid"] is None
        t = tops["SYM1"]
        assert (t["bid"], t["ask"], t["bid_size"], t["last"]) == (100.0, 100.5, 300.0, 100.25)
        assert t["mid"] == 100.25 and t["spread"] == 0.5 and t["updates"] == 3

        p = r.positions()["SYM2"]
        assert p["qty"] == -100.0 and p["fills"] == 4 and p["pnl"] == pytest.approx(12.5 - 3.0 - 2.0)
        assert r.positions("venue_positions")["SYM2"]["qty"] == 0.0
        assert r.positions("no-such-table") == {}

        c = r.control()
        assert c["kill_switch"] is True and c["kill_cause"] == "operator" and c["kill_stage"] == "risk"
        assert c["trading_state"] == "HALTED" and c["stop_requested"] == []

        ps = (50, 90, 99, 99.9, 100)
        got = r.percentiles("exec.tick_to_order", ps)
        assert got == {p: h.get_value_at_percentile(p) for p in ps}
        assert r.hdrh("exec.tick_to_order").equals(h)
        hs = r.histograms()
        assert list(hs) == ["exec.tick_to_order"] and hs["exec.tick_to_order"]["count"] == 21
        assert len(r.histograms(include_empty=True)) == len(r.hist_names)
        with pytest.raises(KeyError, match="no histogram 'nope'"):
            r.percentiles("nope")
        with pytest.raises(KeyError, match="no table 'nope'"):
            r.table("nope")

        snap = r.snapshot()
        json.dumps(snap)                                        # plain data only
        assert snap["counters"]["risk"][names[1]] == 5
        assert snap["venue_positions"]["SYM2"]["qty"] == 0.0
        assert {"stages", "rings", "control", "tops", "positions", "latency_ns", "uptime_s"} <= set(snap)

        arr = r.table("positions")                 # a private, writable copy
        assert arr.flags.writeable and arr["qty"][2] == -100.0
        arr["qty"][2] = 0
        assert r.positions()["SYM2"]["qty"] == -100.0


def test_rejection_tables_become_rej_counters_of_their_owner(shm_engine):
    tables = [t for t in shm_engine.tables if t.endswith("rejections")]
    if not tables:
        pytest.skip("no stage of the default topology owns a *rejections table")
    name = tables[0]
    owner = next(s for s, c in shm_engine.classes.items() if name in c.TABLES)
    reason = shm_engine.tables[name].rows.dtype.names[0]
    shm_engine.tables[name].write(0, **{reason: 4})
    with attach(shm_engine.engine) as r:
        assert r.counters()[owner][f"rej_{reason}"] == 4
        assert r.stages()[owner]["counters"][f"rej_{reason}"] == 4
        assert name not in r.snapshot()["state"]


def test_dead_stage_pid_is_reported(shm_engine):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    row = shm_engine.stats[0:1]
    row["pid"], row["state"], row["heartbeat_ns"] = child.pid, STAGE_RUNNING, time.monotonic_ns()
    with attach(shm_engine.engine) as r:
        assert r.stages()["feed"]["status"] == "dead"
        row["pid"] = os.getpid()
        row["heartbeat_ns"] = time.monotonic_ns() - 5_000_000_000
        assert r.stages()["feed"]["status"] == "stalled"


# --- lifetime --------------------------------------------------------------------------------

def test_stopped_and_restarted_engines_are_detected(engine_name):
    first = build_memory(engine_name)
    second = None
    try:
        r = attach(engine_name)
        first.stats[0:1]["cycles"] = 42
        first.close()                                  # the supervisor unlinks at exit
        assert not r.alive()
        with pytest.raises(EngineGone, match=rf"engine '{engine_name}' .*has stopped") as info:
            r.check()
        assert not isinstance(info.value, EngineRestarted)
        assert r.stages()["feed"]["cycles"] == 42      # the last values stay readable
        second = build_memory(engine_name)
        with pytest.raises(EngineRestarted, match="restarted"):
            r.check()
        r.close()
        with attach(engine_name) as r2:
            assert r2.alive() and r2.stages()["feed"]["cycles"] == 0
    finally:
        first.close()
        if second is not None:
            second.close()


def test_dead_supervisor_that_left_segments_is_not_running(engine_name):
    code = ("import os\nfrom pyrt_shm.config import load_topology, override_from_dotted\n"
            "from pyrt_shm.wiring import EngineMemory\n"
            f"EngineMemory(load_topology(overrides=override_from_dotted({{'engine.name': {engine_name!r}}})), 'shm')\n"
            "os._exit(0)\n")
    res = run_py(code)
    try:
        assert res.returncode == 0, res.stderr
        assert shm_entries(engine_name)
        with pytest.raises(EngineNotRunning, match=rf"pyrt clean {engine_name}"):
            attach(engine_name)
    finally:
        remove_stale(engine_name)
    assert shm_entries(engine_name) == []


# --- seqlock view ----------------------------------------------------------------------------

def test_seqlock_view_waits_out_a_busy_row_then_times_out():
    rows = np.zeros(3, [("a", "<i8"), ("b", "<i8")])
    seqs = np.zeros(3, np.uint64)
    t = SeqlockTable(seqs, rows, "demo")
    rows[1] = (5, 5)
    seqs[1] = 4
    assert tuple(t.read(1)) == (5, 5) and t.version(1) == 2
    seqs[2] = 7                                        # a writer stopped mid-write
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="demo: row 2 stayed busy"):
        t.read(2, timeout=0.1)
    assert time.monotonic() - t0 < 2
    with pytest.raises(TimeoutError):
        t.snapshot(timeout=0.05)
    seqs[2] = 8
    snap = t.snapshot()
    assert snap.tolist() == [(0, 0), (5, 5), (0, 0)]


def test_seqlock_view_write_goes_through_the_jitted_seqlock():
    rows = np.zeros(2, [("a", "<i8")])
    seqs = np.zeros(2, np.uint64)
    t = SeqlockTable(seqs, rows, "demo")
    t.write(1, a=9)
    assert int(seqs[1]) == 2 and int(rows[1]["a"]) == 9


# --- a real engine in another process --------------------------------------------------------

def _check_tops(tops: np.ndarray) -> int:
    valid = tops[tops["valid"] == 1]
    assert (valid["sym"] == np.flatnonzero(tops["valid"] == 1)).all()
    assert (valid["bid"] > 0).all() and (valid["bid"] < valid["ask"]).all(), valid
    assert (valid["bid_size"] > 0).all() and (valid["ask_size"] > 0).all(), valid
    assert (valid["updated_ns"] > 0).all() and (valid["updates"] > 0).all()
    return len(valid)


def _check_positions(pos: np.ndarray) -> None:
    np.testing.assert_allclose(pos["qty"], pos["bought"] - pos["sold"], rtol=0, atol=1e-6)
    assert (pos["fees"] >= 0).all()
    flat = pos["qty"] == 0
    assert (pos["unrealized"][flat] == 0).all()


def test_snapshots_from_another_process_are_consistent_under_load(engine_name, tmp_path):
    proc = start_engine(engine_name, str(tmp_path), "--duration", "30", "--rate", "0")
    try:
        pids = wait_running(engine_name, proc, min_work=100, timeout=120)
        r = attach(engine_name)
        assert r.pid == proc.pid
        snaps, valid_rows = 0, 0
        prev_counters, prev_updates = r.counters(), r.table("tops")["updates"]
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            tops, pos = r.table("tops"), r.table("positions")
            valid_rows += _check_tops(tops)
            _check_positions(pos)
            _check_positions(r.table("venue_positions"))
            counters = r.counters()
            for st, cs in counters.items():                 # counters never go backwards
                assert all(v >= prev_counters[st][k] for k, v in cs.items()), (st, cs)
            assert (tops["updates"] >= prev_updates).all()
            prev_counters, prev_updates = counters, tops["updates"]
            snaps += 1
        assert snaps > 100 and valid_rows > 100
        assert prev_counters["feed"]["ticks_out"] > 10_000
        assert prev_counters["risk"]["fills_in"] > 0, "positions should have changed under load"
        st = r.stages()
        assert {n: s["pid"] for n, s in st.items()} == pids
        assert all(s["status"] == "running" for s in st.values()), st
        assert r.control()["kill_switch"] is False and r.control()["trading_state"] == "ACTIVE"
        assert r.percentiles("book.latency", (50,))[50] > 0
        full = r.snapshot()
        json.dumps(full)
        assert r.alive()
        proc.send_signal(signal.SIGINT)
        rc, out, err = finish(proc, timeout=60)
        assert rc == 0, err
        with pytest.raises(EngineGone):
            r.check()
        r.close()
    finally:
        stop_engine(proc, engine_name)
    assert shm_entries(engine_name) == []
