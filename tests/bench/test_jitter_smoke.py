"""Smoke test of ``pyrt bench jitter``: a 0.3 s run on CPU 0 yields the full JSON shape.

No timing assertions: the gaps of a shared 2-core VM are not a test oracle. Only structure,
sample counts and that percentiles are monotone. One CPU spins at a time, for 0.3 s.
"""
from __future__ import annotations

import subprocess

from bench_proc import json_report, run_module

ROW_KEYS = {"cpu", "seconds", "samples", "p50_ns", "p99_ns", "p999_ns", "p9999_ns", "max_ns",
            "gaps_over_threshold", "threshold_ns", "stalled_ns_total"}
HOST_KEYS = {"cpus", "kernel", "preempt_rt", "isolated_cpus", "clocksource", "python", "numba"}


def _jitter(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return run_module("pyrt_shm.cli", "bench", "jitter", *args, timeout=timeout)


def test_jitter_json_one_cpu():
    report = json_report(_jitter("--seconds", "0.3", "--cpus", "0", "--json"))
    assert HOST_KEYS <= set(report["host"])
    assert isinstance(report["host"]["preempt_rt"], bool)
    assert report["command"].startswith("pyrt bench jitter ") and "--json" in report["command"]
    assert len(report["results"]) == 1
    r = report["results"][0]
    assert ROW_KEYS <= set(r), sorted(ROW_KEYS - set(r))
    assert r["cpu"] == 0 and r["complete"] and r["pinned"]
    assert r["threshold_ns"] == 10_000
    assert r["samples"] > 0
    assert 0 < r["seconds"] < 5
    assert 0 < r["p50_ns"] <= r["p99_ns"] <= r["p999_ns"] <= r["p9999_ns"]
    # max is exact, percentiles are bucket tops (0.1 % resolution)
    assert r["p9999_ns"] <= r["max_ns"] * 1.001 + 1
    assert 0 <= r["gaps_over_threshold"] <= r["samples"]
    assert r["stalled_ns_total"] >= r["gaps_over_threshold"] * r["threshold_ns"]
    assert (r["gaps_over_threshold"] > 0) == (r["max_ns"] > r["threshold_ns"])


def test_jitter_table_and_bad_cpus():
    p = _jitter("--seconds", "0.1", "--cpus", "0", "--threshold-ns", "5000")
    assert p.returncode == 0, p.stderr[-4000:]
    assert "p99.9" in p.stdout and "hypervisor steal" in p.stdout
    p = _jitter("--cpus", "9999", "--json", timeout=60)
    assert p.returncode == 2 and "9999" in p.stderr
    assert p.stdout == ""
