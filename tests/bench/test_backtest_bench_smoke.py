"""Smoke test of ``bench.backtest``: a tiny run in a subprocess yields the full JSON shape.

Checks the document's structure, that stdout is nothing but the JSON, that ``--out`` writes
the same document, that every rate is a positive finite number, that the plain-Python
baseline made the same orders as the engine (the same logic) and that the run leaves nothing
in /dev/shm (it runs on private memory). It asserts no timing: the numbers of a 2-core shared VM are not a test oracle
(the target is reported, never asserted).
"""
from __future__ import annotations

import json
import math
import os

from bench_proc import json_report, run_module

TIMEOUT_S = 600

HOST_KEYS = {"cpus", "cpu_model", "kernel", "python", "numba", "numpy", "loadavg_start", "loadavg_end"}
ENGINE_KEYS = {"events", "elapsed_s", "events_per_s", "wall_s", "setup_s", "first_call_s", "repeats", "loop",
               "intents", "orders", "fills", "rejected", "book_events"}
STAGES = {"feed", "book", "signal", "risk", "exec"}


def _pyrt_shm() -> set[str]:
    """Entries the bench could have made (its topologies' engine names); other sessions'
    engines come and go meanwhile, and conftest's leak check covers this session's own."""
    return {e for e in os.listdir("/dev/shm") if e.startswith(("pyrt-backtest", "pyrt-bench", "sem.pyrt-backtest"))}


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_backtest_bench_tiny_json(tmp_path):
    before = _pyrt_shm()
    out_file = tmp_path / "backtest.json"
    r = json_report(run_module("bench.backtest", "--json", "--events", "4000", "--bars", "400",
                               "--sweep-runs", "2", "--sweep-events", "2000", "--repeats", "1", "--workers",
                               "1,2", "--instant-ticks", "16", "--out", str(out_file), timeout=TIMEOUT_S))
    assert json.loads(out_file.read_text()) == r

    assert r["bench"] == "backtest" and HOST_KEYS <= set(r["host"])
    assert r["data"]["events"] == 4000 and r["data"]["kinds"]["book_deltas"] > 0
    assert r["data"]["kinds"]["book_snapshot_records"] > 0
    for key in ("pipeline", "pipeline_shared_instants"):
        p = r[key]
        assert ENGINE_KEYS <= set(p), key
        assert p["events"] == 4000 and p["loop"] == "native" and p["rejected"] == 0
        assert _positive(p["events_per_s"]) and _positive(p["elapsed_s"])
    assert _positive(r["pipeline"]["per_core_events_per_s"])
    s = r["pipeline_shared_instants"]
    assert s["ticks_per_instant"] == 16 and _positive(s["per_event_ns"]) and s["per_instant_ns"] >= 0
    assert set(r["stage_cycle_ns"]) == STAGES and all(_positive(v) for v in r["stage_cycle_ns"].values())
    for key in ("baseline", "numba_kernel"):
        assert _positive(r[key]["events_per_s"]) and r[key]["events"] == 4000
    # the same logic: the Python loop and the kernel made the orders the engine made
    assert r["baseline"]["orders"] == r["numba_kernel"]["orders"] == r["pipeline"]["intents"]
    assert r["baseline"]["same_orders_as_engine"] is True
    b = r["bars"]
    assert b["bars"] == 400 and _positive(b["bars_per_s"]) and _positive(b["baseline"]["bars_per_s"])
    assert b["baseline"]["orders"] == b["intents"] and _positive(b["ratio_vs_python"])
    sw = r["sweep"]
    assert sw["events_per_run"] == 2000 and [w["workers"] for w in sw["results"]] == [1, 2]
    for w in sw["results"]:
        assert w["runs"] == w["ok"] == 2 and _positive(w["runs_per_s"]) and _positive(w["speedup"])
    assert set(r["ratios"]) == {"pipeline_vs_python", "kernel_ceiling_vs_pipeline", "shared_instants_vs_pipeline",
                                "bars_vs_python"}
    assert all(_positive(v) for v in r["ratios"].values())
    assert r["limits"]["slowest_stage"] in STAGES and _positive(r["limits"]["stage_cycles_ns_total"])
    (t,) = r["targets"]
    assert t["target"] == 5_000_000 and _positive(t["measured"]) and t["met"] == (t["measured"] >= t["target"])
    assert _pyrt_shm() - before == set()
