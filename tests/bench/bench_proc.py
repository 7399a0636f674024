"""Run a benchmark in a subprocess, bounded in time, for the bench smoke tests (not a test file).

A bench runs as ``python -m <module> <args>`` from the repository root with the root on
``PYTHONPATH``, as a user runs it. On timeout it first gets SIGTERM, so a bench that owns
engines unwinds and closes them (nothing left in /dev/shm), then SIGKILL if it has not
exited 20 s later; either way the test fails with an AssertionError naming the command.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TERM_GRACE_S = 20


def run_module(module: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    """``python -m module *args`` in ROOT: its return code, stdout and stderr (text), and its
    ``pid`` (a bench names its shared memory after it)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", module, *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=TERM_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        raise AssertionError(f"{module} {' '.join(args)} did not finish within {timeout} s") from None
    done = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    done.pid = proc.pid
    return done


def json_report(p: subprocess.CompletedProcess) -> dict:
    """The JSON document a successful bench printed: its whole stdout must be that document."""
    assert p.returncode == 0, p.stderr[-4000:]
    return json.loads(p.stdout)
