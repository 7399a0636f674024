"""Smoke test of ``bench.ring``: a tiny run in a subprocess yields the full JSON shape.

Checks the structure (every impl x placement x mode row, the host/ratios/targets keys), that
stdout is nothing but the JSON, that ``--out`` writes the same document, and that the run
leaves nothing named ``pyrt-bench-*`` in /dev/shm. It asserts no timing: the numbers of a
2-core shared VM are not a test oracle (targets are reported, never asserted).
"""
from __future__ import annotations

import json
import os

from bench_proc import json_report, run_module

SHM = "/dev/shm"

IMPL_PLACEMENTS = {
    "numba-ring": ("separate-cores-busy-spin", "one-core-yield"),
    "mp-pipe": ("two-cores", "one-core"),
    "mp-queue": ("two-cores", "one-core"),
    "zmq-ipc": ("two-cores", "one-core"),
    "posix-mq": ("two-cores", "one-core"),
}
MODES = ("latency", "throughput-unbatched", "throughput-batched-64")
ROW_KEYS = {"impl", "placement", "mode", "rate", "messages", "p50_ns", "p99_ns", "p999_ns", "max_ns",
            "msgs_per_s", "payload"}
HOST_KEYS = {"cpus", "cpu_model", "kernel", "python", "numba", "numpy", "preempt_rt", "isolated_cpus"}
RATIO_KEYS = {"ring_p50_vs_best_baseline_p50", "ring_unbatched_tput_vs_best_baseline", "ring_batched_tput"}
TARGET_KEYS = {"ring_p50_20x_lower_than_best_baseline", "ring_unbatched_tput_20x_best_baseline",
               "hop_p50_busy_spin_separate_cores_ns", "hop_p50_yield_one_core_ns",
               "ring_batched_tput_msgs_per_s"}


def _bench_entries() -> set[str]:
    try:
        return {e for e in os.listdir(SHM) if e.startswith("pyrt-bench-")}
    except FileNotFoundError:
        return set()


def test_ring_bench_quick_json(tmp_path):
    before = _bench_entries()
    out_file = tmp_path / "ring.json"
    proc = run_module("bench.ring", "--quick", "--json", "--messages", "2000", "--tput-seconds", "0.05",
                      "--out", str(out_file), timeout=240)
    report = json_report(proc)
    assert json.loads(out_file.read_text()) == report

    assert HOST_KEYS <= set(report["host"])
    assert isinstance(report["host"]["preempt_rt"], bool)
    assert isinstance(report["host"]["isolated_cpus"], list)
    assert report["command"].startswith("pyrt bench ring ") and "--json" in report["command"]
    assert RATIO_KEYS <= set(report["ratios"])
    assert TARGET_KEYS <= set(report["targets"])
    for t in report["targets"].values():
        assert {"measured", "met"} <= set(t) and isinstance(t["met"], bool)

    rows = {(r["impl"], r["placement"], r["mode"]): r for r in report["results"]}
    expected = {(i, p, m) for i, pls in IMPL_PLACEMENTS.items() for p in pls for m in MODES}
    assert set(rows) == expected, sorted(set(rows) ^ expected)
    assert len(report["results"]) == len(expected)
    for key, r in rows.items():
        assert ROW_KEYS <= set(r), key
        assert r["complete"], (key, r.get("notes"), proc.stderr[-2000:])
        assert r["payload"], key
        if r["mode"] == "latency":
            assert r["rate"] == 100_000 and r["messages"] == 2000, key
            assert 0 <= r["p50_ns"] <= r["p99_ns"] <= r["p999_ns"] <= r["max_ns"], key
            assert r["msgs_per_s"] is None, key
        else:
            assert r["rate"] is None and r["messages"] > 0 and r["msgs_per_s"] > 0, key
            assert r["p50_ns"] is r["p99_ns"] is r["p999_ns"] is r["max_ns"] is None, key

    leftovers = _bench_entries() - before
    assert not {e for e in leftovers if e.startswith(f"pyrt-bench-{proc.pid}.")}, leftovers
    assert not leftovers, f"bench left entries in {SHM}: {sorted(leftovers)}"
