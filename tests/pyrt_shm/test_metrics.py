"""Prometheus export (``pyrt_shm.metrics``): bucket and quantile maths against hdrh, the
collector over shared memory built in this process, the Grafana dashboard's metric names,
and a real ``pyrt run --metrics-port`` scraped over HTTP (127.0.0.1, bounded timeouts)."""
from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from engine_proc import ROOT, finish, shm_entries, start_engine, stop_engine, wait_running
from layouts.histogram import COUNTS_LEN, HIGHEST, LOWEST, SIGFIGS
from pyrt_shm.config import load_topology, override_from_dotted
from pyrt_shm.metrics import (
    BUCKETS_S, QUANTILES, EngineCollector, latency_buckets, latency_quantiles, start_exporter,
)
from pyrt_shm.segment import remove_stale
from pyrt_shm.wiring import EngineMemory

DASHBOARD = os.path.join(ROOT, "tools", "grafana-dashboard.json")
VALUES = (150, 900, 1_500, 3_000, 12_000, 250_000, 7_000_000, 700_000_000, 5_000_000_000)
FAMILIES = {
    "pyrt_engine_up": "gauge", "pyrt_engine_info": "gauge", "pyrt_engine_uptime_seconds": "gauge",
    "pyrt_stage_counter": "counter", "pyrt_stage_cycles": "counter", "pyrt_stage_work": "counter",
    "pyrt_stage_idle_cycles": "counter", "pyrt_stage_errors": "counter",
    "pyrt_stage_heartbeat_age_seconds": "gauge", "pyrt_stage_state": "gauge",
    "pyrt_ring_depth": "gauge", "pyrt_ring_high_water": "gauge", "pyrt_ring_capacity": "gauge",
    "pyrt_ring_times_full": "counter", "pyrt_ring_dropped": "counter",
    "pyrt_ring_published": "counter", "pyrt_ring_consumed": "counter",
    "pyrt_book_bid": "gauge", "pyrt_book_ask": "gauge", "pyrt_book_last": "gauge",
    "pyrt_position_qty": "gauge", "pyrt_position_avg_price": "gauge",
    "pyrt_position_realized": "gauge", "pyrt_position_unrealized": "gauge",
    "pyrt_position_fees": "gauge", "pyrt_position_fills": "counter",
    "pyrt_kill_switch": "gauge", "pyrt_trading_state": "gauge",
    "pyrt_latency_histogram_seconds": "histogram", "pyrt_latency_seconds": "summary",
    "pyrt_scrape_seconds": "gauge",
}


def hdr_of(values) -> tuple[HdrHistogram, np.ndarray]:
    h = HdrHistogram(LOWEST, HIGHEST, SIGFIGS)
    for v in values:
        h.record_value(v)
    return h, np.ctypeslib.as_array(h.counts)[:h.counts_len].astype(np.int64)


def parse(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def check_histograms(fams: dict) -> dict:
    """Every histogram: buckets cumulative, bounds as configured, +Inf == _count; return counts."""
    fam = fams["pyrt_latency_histogram_seconds"]
    by_name: dict = {}
    for s in fam.samples:
        by_name.setdefault(s.labels["name"], []).append(s)
    counts = {}
    for name, samples in by_name.items():
        buckets = [s for s in samples if s.name.endswith("_bucket")]
        les = [s.labels["le"] for s in buckets]
        assert les[-1] == "+Inf" and [float(x) for x in les[:-1]] == pytest.approx(list(BUCKETS_S))
        vals = [s.value for s in buckets]
        assert all(a <= b for a, b in zip(vals, vals[1:])), (name, vals)
        count = next(s.value for s in samples if s.name.endswith("_count"))
        assert vals[-1] == count, name
        assert next(s.value for s in samples if s.name.endswith("_sum")) >= 0
        counts[name] = count
    return counts


# --- maths -----------------------------------------------------------------------------------

def test_buckets_are_cumulative_and_match_the_raw_values():
    values = VALUES * 3 + (59_999_000_000, 2)
    _, counts = hdr_of(values)
    at, total = latency_buckets(counts)
    assert total == len(values)
    assert np.all(np.diff(at) >= 0)
    for bound, got in zip(BUCKETS_S, at):
        assert got == sum(v <= bound * 1e9 for v in values), bound   # no value near a bound


def test_empty_histogram_has_zero_buckets_and_nan_quantiles():
    empty = np.zeros(COUNTS_LEN, np.int64)
    at, total = latency_buckets(empty)
    assert total == 0 and not at.any() and len(at) == len(BUCKETS_S)
    assert all(math.isnan(q) for q in latency_quantiles(empty))


def test_quantiles_equal_hdrh_percentiles():
    rng = np.random.default_rng(3)
    values = [int(v) for v in rng.lognormal(9, 2, 5000).clip(1, 50e9)]
    h, counts = hdr_of(values)
    got = latency_quantiles(counts)
    assert got == [float(h.get_value_at_percentile(q * 100)) for q in QUANTILES]


# --- the collector over in-process shared memory ---------------------------------------------

@pytest.fixture
def shm_engine(engine_name):
    topo = load_topology(overrides=override_from_dotted({"engine.name": engine_name}))
    mem = EngineMemory(topo, "shm")
    try:
        yield mem
    finally:
        mem.close()


def _scrape_collector(engine) -> dict:
    reg = CollectorRegistry()
    reg.register(EngineCollector(engine))
    return parse(generate_latest(reg).decode())


def test_collector_exports_every_family(shm_engine):
    _, counts = hdr_of(VALUES)
    row = shm_engine.hist_names.index("risk.latency")
    shm_engine.hists[row:row + 1]["counts"][0, :] = counts
    shm_engine.hists[row:row + 1]["sum"] = float(sum(VALUES))
    risk = shm_engine.stage_names.index("risk")
    shm_engine.stats[risk:risk + 1]["counters"][0, 0] = 11
    shm_engine.tables["positions"].write(1, sym=1, qty=200.0, avg_px=10.0, realized=5.0,
                                         unrealized=1.5, fees=0.25, bought=200.0, fills=2)
    shm_engine.control[0:1]["trading_state"] = 1
    fams = _scrape_collector(shm_engine.engine)
    for name, kind in FAMILIES.items():
        assert name in fams, name
        assert fams[name].type == kind, (name, fams[name].type)
    assert fams["pyrt_engine_up"].samples[0].value == 1
    counter = {(s.labels["stage"], s.labels["counter"]): s.value
               for s in fams["pyrt_stage_counter"].samples if s.name.endswith("_total")}
    assert counter[("risk", shm_engine.classes["risk"].COUNTERS[0])] == 11
    assert counter[("feed", "ticks_out")] == 0
    assert {(st, c) for st, cls in shm_engine.classes.items() for c in cls.COUNTERS} <= set(counter)
    qty = {s.labels["symbol"]: s.value for s in fams["pyrt_position_qty"].samples}
    assert qty == {"SYM0": 0, "SYM1": 200, "SYM2": 0, "SYM3": 0}
    fees = {s.labels["symbol"]: s.value for s in fams["pyrt_position_fees"].samples}
    assert fees["SYM1"] == 0.25
    assert fams["pyrt_trading_state"].samples[0].value == 1
    assert fams["pyrt_kill_switch"].samples[0].value == 0
    assert math.isnan(fams["pyrt_book_bid"].samples[0].value)          # no quote yet
    counts_by_name = check_histograms(fams)
    assert set(counts_by_name) == set(shm_engine.hist_names)
    assert counts_by_name["risk.latency"] == len(VALUES)
    q = {(s.labels["name"], s.labels.get("quantile")): s.value
         for s in fams["pyrt_latency_seconds"].samples}
    h, _ = hdr_of(VALUES)
    assert q[("risk.latency", "0.5")] == pytest.approx(h.get_value_at_percentile(50) / 1e9)
    assert q[("risk.latency", "1")] == pytest.approx(h.get_value_at_percentile(100) / 1e9)
    assert math.isnan(q[("exec.tick_to_order", "0.99")])
    summ_count = {s.labels["name"]: s.value for s in fams["pyrt_latency_seconds"].samples
                  if s.name == "pyrt_latency_seconds_count"}
    assert summ_count["risk.latency"] == len(VALUES)
    ring = {s.labels["ring"]: s.value for s in fams["pyrt_ring_capacity"].samples}
    assert ring == {r.name: r.capacity for r in shm_engine.topology.rings}
    assert "pyrt_scrape_error" not in fams or not fams["pyrt_scrape_error"].samples
    state = [t for t, tab in shm_engine.tables.items() if len(tab) == 1 and not t.endswith("rejections")]
    assert {s.labels["table"] for s in fams["pyrt_state_value"].samples} == set(state)


def test_a_stuck_table_row_is_reported_not_fatal(shm_engine):
    seqs = shm_engine.tables["tops"].seqs
    seqs[0] = 1                                   # a writer stopped in the middle of row 0
    try:
        t0 = time.monotonic()
        fams = _scrape_collector(shm_engine.engine)
        assert time.monotonic() - t0 < 10
    finally:
        seqs[0] = 2
    assert fams["pyrt_engine_up"].samples[0].value == 1
    assert fams["pyrt_stage_counter"].samples                    # read before the stuck table
    (err,) = fams["pyrt_scrape_error"].samples
    assert err.value == 1 and "TimeoutError" in err.labels["error"] and "tops" in err.labels["error"]


def test_collector_without_an_engine_reports_down(engine_name):
    fams = _scrape_collector(engine_name)
    assert set(fams) == {"pyrt_engine_up"} and fams["pyrt_engine_up"].samples[0].value == 0


def test_collector_follows_stop_and_restart(engine_name):
    topo = load_topology(overrides=override_from_dotted({"engine.name": engine_name}))
    reg = CollectorRegistry()
    reg.register(EngineCollector(engine_name))
    mem = EngineMemory(topo, "shm")
    try:
        assert parse(generate_latest(reg).decode())["pyrt_engine_up"].samples[0].value == 1
        mem.close()
        fams = parse(generate_latest(reg).decode())
        assert set(fams) == {"pyrt_engine_up"} and fams["pyrt_engine_up"].samples[0].value == 0
        mem = EngineMemory(topo, "shm")
        mem.stats[0:1]["cycles"] = 77
        fams = parse(generate_latest(reg).decode())
        cycles = {s.labels["stage"]: s.value for s in fams["pyrt_stage_cycles"].samples
                  if s.name.endswith("_total")}
        assert cycles["feed"] == 77
    finally:
        mem.close()


def test_exporter_serves_and_closes(shm_engine):
    exp = start_exporter(shm_engine.engine, 0, "127.0.0.1")
    try:
        assert exp.port > 0 and exp.url == f"http://127.0.0.1:{exp.port}/metrics"
        body = urllib.request.urlopen(exp.url, timeout=10).read().decode()
        assert "pyrt_engine_up 1.0" in body
    finally:
        exp.close()
    exp.close()                                                         # idempotent
    with pytest.raises(OSError):
        urllib.request.urlopen(exp.url, timeout=2)


def test_dashboard_uses_only_exported_metric_names(shm_engine):
    with open(DASHBOARD) as f:
        dash = json.load(f)
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for word in ("tick-to-order", "per-stage latency", "ring depth", "counters rate", "p&l", "position"):
        assert word in titles, word
    used = {m for e in exprs for m in re.findall(r"\bpyrt_[a-z_]+\b", e)}
    fams = _scrape_collector(shm_engine.engine)
    exported = {s.name for f in fams.values() for s in f.samples}
    assert used and used <= exported, used - exported
    assert any("exec.tick_to_order" in e and "0.99" in e for e in exprs)


# --- a real engine, scraped over HTTP --------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                assert resp.status == 200
                return resp.read().decode()
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_pyrt_run_metrics_port_serves_the_engine(engine_name, tmp_path):
    port = free_port()
    proc = start_engine(engine_name, str(tmp_path), "--duration", "30", "--rate", "5000",
                        "--metrics-port", str(port))
    try:
        wait_running(engine_name, proc, min_work=100, timeout=120)
        time.sleep(0.5)
        first = parse(scrape(port))
        time.sleep(0.3)
        text = scrape(port)
        fams = parse(text)
        for name, kind in FAMILIES.items():
            assert fams[name].type == kind, name
        assert fams["pyrt_engine_up"].samples[0].value == 1
        info = fams["pyrt_engine_info"].samples[0].labels
        assert info["engine"] == engine_name and info["pid"] == str(proc.pid)
        counts = check_histograms(fams)
        assert counts["book.latency"] > 0 and counts["exec.tick_to_order"] >= 0

        def counter(f, stage, name):
            return next(s.value for s in f["pyrt_stage_counter"].samples
                        if s.labels == {"stage": stage, "counter": name} and s.name.endswith("_total"))
        assert counter(fams, "feed", "ticks_out") > counter(first, "feed", "ticks_out") > 0
        hb = {s.labels["stage"]: s.value for s in fams["pyrt_stage_heartbeat_age_seconds"].samples}
        assert set(hb) == {"feed", "book", "signal", "risk", "exec"} and max(hb.values()) < 5
        q = {s.labels["quantile"] for s in fams["pyrt_latency_seconds"].samples if "quantile" in s.labels}
        assert q == {"0.5", "0.9", "0.99", "0.999", "1"}
        assert fams["pyrt_scrape_seconds"].samples[0].value < 1.0
        proc.send_signal(signal.SIGINT)
        rc, out, err = finish(proc, timeout=60)
    finally:
        stop_engine(proc, engine_name)
    assert rc == 0, err
    assert f"pyrt: metrics at http://127.0.0.1:{port}/metrics" in err
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
    assert shm_entries(engine_name) == []


def test_port_in_use_is_a_warning_not_a_failure(engine_name, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = start_engine(engine_name, str(tmp_path), "--duration", "1.5", "--rate", "2000",
                            "--metrics-port", str(port))
        rc, out, err = finish(proc, timeout=60)
    assert rc == 0, err
    assert f"metrics exporter not started on 127.0.0.1:{port}" in err
    assert shm_entries(engine_name) == []


def test_no_port_is_opened_by_default(engine_name, tmp_path):
    proc = start_engine(engine_name, str(tmp_path), "--duration", "1", "--rate", "2000")
    rc, out, err = finish(proc, timeout=60)
    assert rc == 0, err
    assert "metrics at" not in err
