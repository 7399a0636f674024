"""``pyrt top``: one frame against a running engine, the curses view over a pty (q quits), the
message and exit code with no engine, and saying so when the watched engine stops.

Engines run through ``pyrt run`` in a subprocess (tests/pyrt_shm/engine_proc.py), bounded by
--duration and SIGINTed at the end; every top subprocess has a timeout.
"""
from __future__ import annotations

import fcntl
import itertools
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pyrt_shm"))   # engine_proc

from engine_proc import ROOT, finish, shm_entries, start_engine, stop_engine, wait_running  # noqa: E402
from layouts.control import KILL_STAGE_STALLED, TRADING_REDUCING  # noqa: E402
from pyrt_shm.config import load_topology, override_from_dotted  # noqa: E402
from pyrt_shm.reader import attach  # noqa: E402
from pyrt_shm.segment import remove_stale  # noqa: E402
from pyrt_shm.wiring import EngineMemory  # noqa: E402
from tools import top  # noqa: E402

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
STAGES = ("feed", "book", "signal", "risk", "exec")
RINGS = ("md", "top", "intent", "order", "fill")
_names = itertools.count()


def run_top(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyrt_shm.cli", "top", *args], capture_output=True,
                          text=True, env=ENV, cwd=ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """One engine for the tests that only watch it (started before, stopped after them)."""
    name = f"t{os.getpid()}-top{next(_names)}"
    proc = start_engine(name, str(tmp_path_factory.mktemp("top-runs")), "--duration", "60",
                        "--rate", "5000")
    try:
        wait_running(name, proc, min_work=100, timeout=120)
        yield name
    finally:
        stop_engine(proc, name)
    assert proc.returncode == 0
    assert shm_entries(name) == []


def test_top_imports_no_numba():
    r = subprocess.run([sys.executable, "-c", "import sys, tools.top\nbad = [m for m in sys.modules "
                        "if m.split('.')[0] in ('numba', 'llvmlite')]\nassert not bad, bad"],
                       capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr


def test_no_engine_is_a_clear_message_and_exit_1(engine_name):
    r = run_top(engine_name, "--once")
    assert r.returncode == 1 and r.stdout == ""
    assert f"engine {engine_name!r} is not running" in r.stderr
    assert f"pyrt run --engine {engine_name}" in r.stderr


def test_engine_is_found_when_only_one_runs(monkeypatch, capsys):
    monkeypatch.setattr(top, "running_engines", lambda: [])
    assert top._only_engine() is None
    assert "no engine is running" in capsys.readouterr().err and \
        top.main(["--once"]) == 1
    monkeypatch.setattr(top, "running_engines", lambda: ["a", "b"])
    assert top._only_engine() is None and "several engines are running (a, b)" in capsys.readouterr().err
    monkeypatch.setattr(top, "running_engines", lambda: ["solo"])
    assert top._only_engine() == "solo"


def test_bad_interval_is_a_usage_error(engine_name):
    r = run_top(engine_name, "--interval", "0")
    assert r.returncode == 2 and "--interval" in r.stderr


def test_once_prints_every_section(running):
    r = run_top(running, "--once")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for word in ("RISK", "STAGES", "RINGS", "LATENCY", "BOOK", "POSITIONS", "rejections: ",
                 "trading ACTIVE", "kill switch off", f"engine {running}"):
        assert word in out, word
    lines = out.splitlines()
    for stage in STAGES:
        row = next(line for line in lines if line.split()[:1] == [stage])
        assert "running" in row
    feed = next(line for line in lines if line.split()[:1] == ["feed"]).split()
    assert int(feed[6].replace(",", "")) > 0                    # work/s of the feed
    for ring in RINGS:
        assert any(line.split()[:1] == [ring] for line in lines), ring
    for hist in ("feed.lag", "book.latency", "exec.tick_to_order", "process.hot.cycle"):
        row = next(line for line in lines if line.split()[:1] == [hist])
        assert row.split()[-1].endswith(("ns", "us", "ms", "s"))
    for sym in ("SYM0", "SYM1", "SYM2", "SYM3"):
        assert any(line.split()[:1] == [sym] for line in lines), sym


@pytest.mark.parametrize("how", ["q", "ctrl-c"])
def test_curses_view_draws_and_quits_on_q_or_ctrl_c(running, how):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 140, 0, 0))
    env = dict(ENV, TERM="xterm")
    proc = subprocess.Popen([sys.executable, "-m", "pyrt_shm.cli", "top", running, "--interval", "0.2"],
                            stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT,
                            start_new_session=True)
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while b"q quits" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
        assert b"STAGES" in seen and b"POSITIONS" in seen and b"q quits" in seen, seen[-2000:]
        if how == "q":
            os.write(master, b"q")
        else:
            os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=15) == 0
        tail = b""
        while select.select([master], [], [], 0.2)[0]:
            try:
                tail += os.read(master, 65536)
            except OSError:
                break
        assert b"\x1b[?1049l" in tail or b"\x1b[?1049l" in seen + tail   # screen restored
        assert b"Traceback" not in tail
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=15)
        os.close(master)


def test_render_shows_rejections_kill_switch_and_positions(engine_name):
    topo = load_topology(overrides=override_from_dotted({"engine.name": engine_name}))
    mem = EngineMemory(topo, "shm")
    try:
        book = mem.stage_names.index("book")
        expected = []
        rej = [(i, st, k, c) for i, (st, cls) in enumerate(mem.classes.items())
               for k, c in enumerate(cls.COUNTERS) if c.startswith(("rej_", "rejected_"))]
        for n, (i, st, k, c) in enumerate(rej[:2]):
            mem.stats[i:i + 1]["counters"][0, k] = 3 + n
            expected.append(f"{st}.{c}={3 + n}")
        for t in [t for t in mem.tables if t.endswith("rejections")]:
            owner = next(s for s, cls in mem.classes.items() if t in cls.TABLES)
            reason = mem.tables[t].rows.dtype.names[-1]
            mem.tables[t].write(0, **{reason: 9})
            expected.append(f"{owner}.rej_{reason}=9")
        assert expected, "no rejection counter to show"
        c = mem.control[0:1]
        c["kill_switch"], c["kill_cause"], c["kill_stage"] = 1, KILL_STAGE_STALLED, book
        c["trading_state"] = TRADING_REDUCING
        mem.tables["positions"].write(0, qty=100.0, avg_px=10.0, realized=4.0, unrealized=1.0,
                                      fees=0.5, bought=100.0, fills=1)
        with attach(engine_name) as r:
            lines = top.render(r.snapshot())
    finally:
        mem.close()
    text = "\n".join(lines)
    for e in expected:
        assert e in text, e
    assert "trading REDUCING" in text and "kill switch TRIPPED (stage stalled, stage book)" in text
    sym0 = next(line for line in lines if line.split()[:1] == ["SYM0"] and "100" in line).split()
    assert sym0[1:] == ["100", "10.0000", "4.00", "1.00", "0.50", "4.50", "1"]
    assert "(no quote yet)" in text and "(nothing recorded yet)" in text


def test_watching_an_engine_that_stops_says_so_and_exits_0(engine_name, tmp_path):
    proc = start_engine(engine_name, str(tmp_path), "--duration", "60", "--rate", "5000")
    watcher = None
    try:
        wait_running(engine_name, proc, timeout=120)
        watcher = subprocess.Popen([sys.executable, "-m", "pyrt_shm.cli", "top", engine_name,
                                    "--interval", "0.2"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
        ready, _, _ = select.select([watcher.stdout], [], [], 30)      # its first frame
        assert ready, "pyrt top printed nothing"
        proc.send_signal(signal.SIGINT)
        rc, _, err = finish(proc, timeout=60)
        assert rc == 0, err
        out, err = watcher.communicate(timeout=30)
    finally:
        if watcher is not None and watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
        stop_engine(proc, engine_name)
    assert watcher.returncode == 0, err
    assert "STAGES" in out
    assert f"engine {engine_name!r} (supervisor pid {proc.pid}) has stopped" in out.splitlines()[-1]
