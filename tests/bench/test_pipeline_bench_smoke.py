"""Smoke test of ``bench.pipeline``: a quick run in a subprocess yields the full JSON shape.

One placement (fused) at one paced rate (10 000 ticks/s), the ZMQ+JSON baseline at the same
rate, the throughput runs and both cold starts. Checks the document's structure, that stdout
is nothing but the JSON, that ``--out`` writes the same document, that the engine's rings
dropped nothing (they are ``full = "block"``) and that the run leaves nothing named
``pyrt-bench-*`` in /dev/shm. It asserts no timing: the numbers of a 2-core shared VM are
not a test oracle (targets are reported, never asserted).
"""
from __future__ import annotations

import json
import os

from bench_proc import json_report, run_module

SHM = "/dev/shm"
TIMEOUT_S = 180

HOST_KEYS = {"cpus", "cpu_model", "kernel", "python", "numba", "preempt_rt", "isolated_cpus",
             "loadavg_before", "loadavg_after"}
ROW_KEYS = {"impl", "placement", "rate", "duration_s", "ticks", "achieved_rate", "p50_ns", "p99_ns",
            "p999_ns", "max_ns", "orders", "dropped", "drained", "feed_lag_p99_ns", "uss_mb"}
TPUT_KEYS = {"impl", "placement", "ticks", "elapsed_s", "ticks_per_s", "dropped"}
TARGET_KEYS = {"name", "target", "measured", "met"}


def _bench_entries() -> set[str]:
    try:
        return {e for e in os.listdir(SHM) if e.startswith("pyrt-bench-") or e.startswith("sem.pyrt-bench-")}
    except FileNotFoundError:
        return set()


def test_pipeline_bench_quick_json(tmp_path):
    before = _bench_entries()
    out_file = tmp_path / "pipeline.json"
    report = json_report(run_module("bench.pipeline", "--quick", "--json", "--rates", "10000", "--placements",
                                    "fused", "--baseline-rates", "10000", "--out", str(out_file),
                                    timeout=TIMEOUT_S))
    assert json.loads(out_file.read_text()) == report

    assert HOST_KEYS <= set(report["host"])
    assert isinstance(report["host"]["preempt_rt"], bool)
    assert isinstance(report["host"]["isolated_cpus"], list)
    assert report["command"].startswith("pyrt bench pipeline ") and "--json" in report["command"]

    rows = {(r["impl"], r["placement"], r["rate"]): r for r in report["results"]}
    assert len(rows) == len(report["results"]) == 2, sorted(rows)
    engine = rows[("pyrt-shm", "fused", 10_000)]
    base = next(r for (impl, _, rate), r in rows.items() if impl == "zmq-json" and rate == 10_000)
    for r in (engine, base):
        assert ROW_KEYS <= set(r), (r["impl"], sorted(ROW_KEYS - set(r)))
        assert "error" not in r, r.get("error")
        assert r["ticks"] > 0 and r["orders"] > 0, r
        assert 0 < r["p50_ns"] <= r["p99_ns"] <= r["p999_ns"] <= r["max_ns"], r
        assert r["drained"] is True, (r["impl"], r.get("notes"))
        assert r["uss_mb"] and all(v > 0 for v in r["uss_mb"].values()), r["uss_mb"]
        assert r["feed_lag_p99_ns"] is not None
    assert engine["dropped"] == 0                      # rings block: never loss
    assert set(engine["uss_mb"]) == {"all"}            # fused: one process
    assert set(base["uss_mb"]) == {"feed", "book", "signal", "risk", "exec"}

    tputs = {(t["impl"], t["placement"]): t for t in report["throughput"]}
    assert ("pyrt-shm", "fused") in tputs and any(i == "zmq-json" for i, _ in tputs)
    for t in tputs.values():
        assert TPUT_KEYS <= set(t), sorted(TPUT_KEYS - set(t))
        assert "error" not in t, t.get("error")
    eng_t = tputs[("pyrt-shm", "fused")]
    assert eng_t["ticks"] == 500_000 and eng_t["dropped"] == 0 and eng_t["ticks_per_s"] > 0

    assert len(report["cold_start_s"]) == 2
    assert all(v is None or v > 0 for v in report["cold_start_s"])
    assert "fused_p99_vs_zmq_p99_at_10k" in report["ratios"]
    names = {t["name"] for t in report["targets"]}
    assert {"auto_100k_tick_to_order_p99_ns", "auto_100k_p99_vs_zmq_json_p99",
            "uss_mb_per_stage_process_max", "cold_start_s_numba_cache_warm"} <= names
    for t in report["targets"]:
        assert TARGET_KEYS <= set(t) and t["met"] in (True, False, None), t

    assert report["shm_leftovers"] == []
    leftovers = _bench_entries() - before
    assert not leftovers, f"bench left entries in {SHM}: {sorted(leftovers)}"
