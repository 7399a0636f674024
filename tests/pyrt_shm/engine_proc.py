"""Helpers to run ``pyrt run`` in a subprocess and look at it from outside (tests only)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start_engine(engine: str, run_dir: str, *args: str, env_extra: dict | None = None) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, "tests", "support"),
                                         env.get("PYTHONPATH", "")])
    env.update(env_extra or {})
    cmd = [sys.executable, "-m", "pyrt_shm.cli", "run", "--engine", engine, "--run-dir", run_dir,
           "--quiet", "--json", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"engine did not finish in {timeout} s\nstdout:\n{out}\nstderr:\n{err}")
    return proc.returncode, out, err


def summary_of(out: str) -> dict:
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no JSON summary in output:\n{out}")


def wait_running(engine: str, proc: subprocess.Popen, min_work: int = 1, timeout: float = 60):
    """Wait until every stage has beaten and done work; return {stage: pid}."""
    from layouts.stats import STAGE_RUNNING, STAGE_STATS
    from pyrt_shm.errors import ShmError
    from pyrt_shm.segment import attach_segment

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"engine exited early ({proc.returncode}):\n{out}\n{err}")
        try:
            man = attach_segment(engine, "manifest", readonly=True)
            stats = attach_segment(engine, "stats", readonly=True)
        except ShmError:
            time.sleep(0.05)
            continue
        try:
            n = int(man.array(np.uint64, (1,))[0])
            manifest = json.loads(bytes(man.array(np.uint8, (n,), offset=8)))
            rows = stats.array(STAGE_STATS, (len(manifest["stages"]),)).copy()
        finally:
            man.close()
            stats.close()
        if all(r["state"] == STAGE_RUNNING and r["heartbeat_ns"] > 0 for r in rows) and \
                rows["work"].min() >= min_work:
            return {s["name"]: int(rows[s["index"]]["pid"]) for s in manifest["stages"]}
        time.sleep(0.05)
    raise AssertionError(f"engine {engine} did not reach running state in {timeout} s")


def shm_entries(engine: str) -> list[str]:
    return sorted(e for e in os.listdir("/dev/shm") if f"pyrt-{engine}." in e)


def stop_engine(proc: subprocess.Popen, engine: str) -> None:
    """SIGINT a still-running ``pyrt run`` (it cleans up), SIGKILL only if it hangs."""
    import signal

    from pyrt_shm.segment import remove_stale

    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    if shm_entries(engine):
        remove_stale(engine)
