"""Smoke test of ``bench.feed``: a tiny run in a subprocess yields the full JSON shape.

Checks the document's structure, that every measured number is positive, that the pyrt
adapter delivered every record (count, gap-free seq, order, kinds) and that ``--out`` writes
the same document. It asserts no timing: the numbers of a 2-core shared VM are not a test
oracle (targets are reported, never asserted).
"""
from __future__ import annotations

import json

from bench_proc import json_report, run_module

TIMEOUT_S = 240
PCT_KEYS = {"p50_ns", "p90_ns", "p99_ns", "p999_ns", "mean_ns", "max_ns", "n"}


def _positive_pcts(d: dict, n: int | None = None) -> None:
    assert PCT_KEYS <= set(d), sorted(PCT_KEYS - set(d))
    assert 0 < d["p50_ns"] <= d["p99_ns"] <= d["max_ns"], d
    if n is not None:
        assert d["n"] == n, d


def test_feed_bench_tiny_run_json_shape(tmp_path):
    out_file = tmp_path / "feed.json"
    n = 200
    report = json_report(run_module("bench.feed", "--json", "--messages", str(n), "--rate", "2000", "--batch", "5",
                                    "--orders", "10", "--out", str(out_file), timeout=TIMEOUT_S))
    assert json.loads(out_file.read_text()) == report
    assert report["bench"] == "feed" and report["command"].startswith("pyrt bench feed ")
    assert {"cpus", "cpu_model", "kernel", "python", "preempt_rt", "isolated_cpus", "loadavg_start",
            "loadavg_end", "placement"} <= set(report["host"])
    assert report["params"] == {"messages": n, "rate": 2000.0, "batch": 5, "orders": 10}

    p = report["pyrt"]
    for k, batch in (("quotes", 1), ("trades", 1), ("batched_quotes", 5)):
        r = p[k]
        assert r["messages"] == n and r["batch"] == batch and r["frames"] == n // batch
        _positive_pcts(r["decode_per_frame"], n // batch)
        _positive_pcts(r["one_way"], n)
        assert r["checks"] == {"records": n, "seq_gap_free": True, "in_order": True, "kinds_ok": True}, r["checks"]
    assert p["batched_quotes"]["decode_per_message"]["p50_ns"] > 0
    c = p["counters"]
    assert c["malformed"] == 0 and c["duplicates"] == 0 and c["unknown_symbol"] == 0
    assert c["quotes"] >= 2 * n and c["trades"] >= n

    a = report["alpaca_py"]
    for k in ("quotes", "trades"):
        assert a[k]["messages"] == n and a[k]["model"] in ("Quote", "Trade")
        _positive_pcts(a[k]["frame_to_handler"], n)
        _positive_pcts(a[k]["one_way"], n)

    o = report["orders"]
    _positive_pcts(o["alpaca_py_submit_order"], 10)
    _positive_pcts(o["requests_post"], 10)
    assert o["alpaca_py_over_requests_p50"] > 0

    for k, frames in (("quote", n), ("trade", n), ("quote_batched", n // 5), ("quote_paced", n)):
        _positive_pcts(report["offline"][k]["decode_and_publish_per_message"], frames)
        _positive_pcts(report["offline"][k]["orjson_loads_only_per_message"], frames)

    assert set(report["write_methods"]) == {"struct_pack_into_ns", "numpy_tuple_assign_ns", "numpy_field_stores_ns"}
    assert all(v > 0 for v in report["write_methods"].values())
    assert len(report["ratios"]) == 6 and all(v > 0 for v in report["ratios"].values())
    names = {t["name"] for t in report["targets"]}
    assert names == {f"decode_publish_{k}_{m}_ns" for k in ("quotes", "trades") for m in ("p50", "p99")}
    assert all(t["met"] in (True, False) and t["measured"] > 0 for t in report["targets"])
    assert report["elapsed_s"] > 0
