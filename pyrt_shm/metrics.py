"""Prometheus export: one custom collector that reads the engine's shared memory at scrape time.

Why a collector and not ``prometheus_client`` metrics: the stages count and record latency
in shared memory from numba (~1-3 ns each); calling ``Counter.inc`` or ``Histogram.observe``
from a hot path would cost 0.3-1.3 µs and take a lock. Here nothing runs until Prometheus
scrapes: then ``EngineCollector.collect()`` reads a read-only ``pyrt_shm.reader`` view (the
same consistency model: seqlocked table rows, single-writer u64 fields, histogram copies)
in the exporter's HTTP thread. A scrape takes no lock a stage could wait on and writes
nothing; it costs the stages only the memory bandwidth of copying the histogram rows.

Started by the supervisor when ``[engine] metrics_port`` is set (``pyrt run --metrics-port
9464``; 9464 is the conventional port, 0 = off) on ``metrics_addr`` (default 127.0.0.1), or
standalone beside any running engine: ``python -m pyrt_shm.metrics ENGINE --port 9464``.

Metric families (``tools/grafana-dashboard.json`` plots them)::

    pyrt_engine_info{engine,source,pid}                  1
    pyrt_engine_up                                       1 while the engine runs, else 0
    pyrt_engine_uptime_seconds
    pyrt_stage_counter_total{stage,counter}              every stage-defined counter
    pyrt_stage_{cycles,work,idle_cycles,errors}_total{stage}
    pyrt_stage_heartbeat_age_seconds{stage}
    pyrt_stage_state{stage}                              layouts.stats STAGE_* code
    pyrt_ring_{depth,high_water,capacity}{ring}
    pyrt_ring_{times_full,dropped,published,consumed}_total{ring}
    pyrt_book_{bid,ask,last}{symbol}
    pyrt_position_{qty,avg_price,realized,unrealized,fees}{symbol}    (risk's positions)
    pyrt_position_fills_total{symbol}
    pyrt_state_value{table,field}                        one-row state tables (risk_state, ...)
    pyrt_kill_switch                                     1 = tripped
    pyrt_trading_state                                   0 active, 1 reducing, 2 halted
    pyrt_latency_histogram_seconds{name}                 histogram, buckets BUCKETS_S
    pyrt_latency_seconds{name,quantile}                  summary: 0.5 0.9 0.99 0.999 1
    pyrt_scrape_seconds                                  time this collect() took
    pyrt_scrape_error{error}                             1 if part of the scrape failed

Histogram buckets: fixed bounds from 100 ns to 1 s (1-2-5 per decade) so ``rate()`` and
``histogram_quantile()`` work across scrapes and engines. An HDR count sits in a bucket
when the *highest* value its HDR bucket may hold is <= the bound (HDR buckets are 0.1 %
wide, so a value within 0.1 % below a bound may count in the next bucket up). The quantile
family gives the exact HDR percentiles of the engine's whole run (HdrHistogram's rule; a
histogram with no values reports NaN).
"""
from __future__ import annotations

import argparse
import math
import sys
import threading
import time

import numpy as np
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample

from layouts.histogram import COUNTS_LEN

from . import hdr_convert
from .reader import EngineGone, EngineNotRunning, EngineReader, EngineRestarted, attach

#: Conventional port of this exporter (``[engine] metrics_port = 9464``); any free port works.
DEFAULT_PORT = 9464
#: Upper bounds (seconds) of the latency histogram buckets: 100 ns .. 1 s, 1-2-5 per decade.
BUCKETS_S = tuple(m * 10.0 ** e for e in range(-7, 0) for m in (1, 2, 5)) + (1.0,)
#: Quantiles of the summary family (1 = max).
QUANTILES = (0.5, 0.9, 0.99, 0.999, 1.0)

# Highest value (ns) of every HDR counts index, ascending; bucket bound -> how many indices.
_LO, _WIDTH = hdr_convert._value_range(np.arange(COUNTS_LEN))
_HI = _LO + _WIDTH - 1
_BOUND_POS = np.searchsorted(_HI, np.round(np.array(BUCKETS_S) * 1e9).astype(np.int64), side="right")
_BUCKET_LABELS = [f"{b:.9g}" for b in BUCKETS_S]


def latency_buckets(counts: np.ndarray) -> tuple[np.ndarray, int]:
    """Cumulative counts per ``BUCKETS_S`` bound and the total (the ``+Inf`` bucket)."""
    cum = np.cumsum(counts, dtype=np.int64)
    total = int(cum[-1])
    at = np.where(_BOUND_POS > 0, cum[np.maximum(_BOUND_POS - 1, 0)], 0)
    return at, total


def latency_quantiles(counts: np.ndarray, qs=QUANTILES) -> list[float]:
    """Values (ns) at quantiles ``qs`` (HdrHistogram's ``get_value_at_percentile``); NaN if empty."""
    cum = np.cumsum(counts, dtype=np.int64)
    total = int(cum[-1])
    if total == 0:
        return [math.nan] * len(qs)
    out = []
    for q in qs:
        p = min(round(q * 100, 9), 100.0)                  # the percentile hdrh would be asked
        i = int(np.searchsorted(cum, max(int(p * total / 100 + 0.5), 1), side="left"))
        out.append(float(_HI[i]) if q else float(_LO[i]))
    return out


class EngineCollector(Collector):
    """Collect one engine's metrics from shared memory on every scrape.

    Attaches lazily and again after the engine restarts; while no engine runs, a scrape
    returns only ``pyrt_engine_up 0``.
    """

    def __init__(self, engine: str | EngineReader):
        if isinstance(engine, EngineReader):
            self.engine, self.reader = engine.engine, engine
        else:
            self.engine, self.reader = engine, None
        self._lock = threading.Lock()      # the exporter's own threads only; stages never see it

    def _reader(self) -> EngineReader | None:
        with self._lock:
            if self.reader is not None:
                try:
                    self.reader.check()
                    return self.reader
                except EngineRestarted:
                    self.reader.close()
                    self.reader = None
                except EngineGone:
                    return None
            try:
                self.reader = attach(self.engine)
            except EngineNotRunning:
                return None
            return self.reader

    def collect(self):
        t0 = time.perf_counter()
        r = self._reader()
        up = GaugeMetricFamily("pyrt_engine_up", "1 while the engine runs, 0 when it does not")
        up.add_metric([], 0 if r is None else 1)
        if r is None:
            yield up
            return
        err = GaugeMetricFamily("pyrt_scrape_error", "1 when this scrape could not read "
                                "everything (the families it did read are still exported)",
                                labels=["error"])
        families = []
        try:
            for fam in self._collect(r):
                families.append(fam)
        except Exception as e:  # noqa: BLE001 - a scrape reports, it never crashes the server
            err.add_metric([f"{type(e).__name__}: {e}"[:200]], 1)
        yield up
        yield from families
        yield err
        g = GaugeMetricFamily("pyrt_scrape_seconds", "Time this scrape took to read shared memory")
        g.add_metric([], time.perf_counter() - t0)
        yield g

    def _collect(self, r: EngineReader):
        info = InfoMetricFamily("pyrt_engine", "Engine identity")
        info.add_metric([], {"engine": r.engine, "source": str(r.source), "pid": str(r.pid)})
        yield info
        yield GaugeMetricFamily("pyrt_engine_uptime_seconds", "Seconds since the engine's memory "
                                "was created", value=r.uptime_s())

        stages = r.stages()
        c = CounterMetricFamily("pyrt_stage_counter", "Stage-defined counters (rejections by "
                                "reason, records in and out, ...)", labels=["stage", "counter"])
        for name, s in stages.items():
            for cname, v in s["counters"].items():
                c.add_metric([name, cname], v)
        yield c
        for field, doc in (("cycles", "Duty cycles run"), ("work", "Work items handled"),
                           ("idle_cycles", "Duty cycles that found no work"),
                           ("errors", "Exceptions caught by the runner")):
            f = CounterMetricFamily(f"pyrt_stage_{field}", doc + " (per process for fused stages)",
                                    labels=["stage"])
            for name, s in stages.items():
                f.add_metric([name], s[field])
            yield f
        hb = GaugeMetricFamily("pyrt_stage_heartbeat_age_seconds", "Seconds since the stage's "
                               "last duty-cycle heartbeat (NaN before the first)", labels=["stage"])
        st = GaugeMetricFamily("pyrt_stage_state", "Stage state: 0 new, 1 starting, 2 running, "
                               "3 draining, 4 stopped, 5 failed", labels=["stage"])
        stats = r.stats_array()
        for name, s in stages.items():
            age = s["heartbeat_age_s"]
            hb.add_metric([name], math.nan if age is None else age)
            st.add_metric([name], int(stats[s["index"]]["state"]))
        yield hb
        yield st

        rings = r.rings()
        for field, kind, doc in (("depth", "gauge", "Records published and not yet consumed"),
                                 ("high_water", "gauge", "Largest depth the consumer has seen"),
                                 ("capacity", "gauge", "Ring capacity in records"),
                                 ("times_full", "counter", "Producer claims that found the ring full"),
                                 ("dropped", "counter", "Records dropped (drop policy)"),
                                 ("published", "counter", "Records published (head cursor)"),
                                 ("consumed", "counter", "Records consumed (tail cursor)")):
            cls = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
            f = cls(f"pyrt_ring_{field}", doc, labels=["ring"])
            for name, d in rings.items():
                f.add_metric([name], d[field])
            yield f

        tops = r.tops()
        for field in ("bid", "ask", "last"):
            f = GaugeMetricFamily(f"pyrt_book_{field}", f"Top of book: {field} price (NaN until "
                                  "known)", labels=["symbol"])
            for sym, t in tops.items():
                known = t["valid"] if field != "last" else t["last"] > 0
                f.add_metric([sym], t[field] if known else math.nan)
            yield f

        pos = r.positions()
        for field, name, doc in (("qty", "qty", "Signed position"),
                                 ("avg_px", "avg_price", "Average cost of the open position"),
                                 ("realized", "realized", "Realized P&L before fees"),
                                 ("unrealized", "unrealized", "Unrealized P&L marked to mid"),
                                 ("fees", "fees", "Fees paid")):
            f = GaugeMetricFamily(f"pyrt_position_{name}", doc + " (risk's positions table)",
                                  labels=["symbol"])
            for sym, p in pos.items():
                f.add_metric([sym], p[field])
            yield f
        f = CounterMetricFamily("pyrt_position_fills", "Fills applied to the position", labels=["symbol"])
        for sym, p in pos.items():
            f.add_metric([sym], p["fills"])
        yield f

        state = GaugeMetricFamily("pyrt_state_value", "Numeric fields of every one-row state "
                                  "table a stage publishes (e.g. risk's risk_state)",
                                  labels=["table", "field"])
        for table, row in r.snapshot_state().items():
            for field, v in row.items():
                if isinstance(v, (int, float)) and not field.endswith("_ns"):   # not clock stamps
                    state.add_metric([table, field], v)
        yield state

        ctl = r.control()
        yield GaugeMetricFamily("pyrt_kill_switch", "1 once the kill switch has tripped (no new "
                                "orders)", value=int(ctl["kill_switch"]))
        yield GaugeMetricFamily("pyrt_trading_state", "Trading state: 0 active, 1 reducing only, "
                                "2 halted", value=ctl["trading_state_code"])

        hist = HistogramMetricFamily("pyrt_latency_histogram_seconds", "Latency histograms "
                                     "recorded by the stages (HDR counts, fixed buckets)",
                                     labels=["name"])
        summ = SummaryMetricFamily("pyrt_latency_seconds", "Latency percentiles of the whole run "
                                   "from the HDR histograms (quantile 1 = max)", labels=["name"])
        for name in r.hist_names:
            snap = r.histogram(name)
            counts = snap["counts"]
            at, total = latency_buckets(counts)
            sum_s = float(snap["sum"]) / 1e9
            buckets = [(lab, int(v)) for lab, v in zip(_BUCKET_LABELS, at)]
            buckets.append(("+Inf", total))
            hist.add_metric([name], buckets, sum_s)
            for q, v in zip(QUANTILES, latency_quantiles(counts)):
                summ.samples.append(Sample("pyrt_latency_seconds", {"name": name, "quantile": f"{q:g}"},
                                           v / 1e9, None))
            summ.add_metric([name], total, sum_s)
        yield hist
        yield summ


class MetricsExporter:
    """An HTTP ``/metrics`` endpoint for one engine, served from a daemon thread."""

    def __init__(self, engine: str | EngineReader, port: int = DEFAULT_PORT, addr: str = "127.0.0.1"):
        from prometheus_client import start_http_server

        self.registry = CollectorRegistry()
        self.collector = EngineCollector(engine)
        self.registry.register(self.collector)
        self.server, self.thread = start_http_server(port, addr=addr, registry=self.registry)
        self.addr, self.port = addr, self.server.server_port

    @property
    def url(self) -> str:
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and join the thread (idempotent)."""
        if self.server is None:
            return
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        self.server = None
        if self.collector.reader is not None:
            self.collector.reader.close()


def start_exporter(engine: str | EngineReader, port: int = DEFAULT_PORT,
                   addr: str = "127.0.0.1") -> MetricsExporter:
    """Serve ``engine``'s metrics on ``addr:port`` (port 0 picks a free port); ``close()`` stops it.

    Raises ``OSError`` if the address cannot be bound.
    """
    return MetricsExporter(engine, port, addr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pyrt_shm.metrics",
                                 description="Serve a running engine's metrics for Prometheus.")
    ap.add_argument("engine", help="engine name")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    ap.add_argument("--addr", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    args = ap.parse_args(argv)
    try:
        exp = start_exporter(args.engine, args.port, args.addr)
    except OSError as e:
        print(f"pyrt metrics: cannot listen on {args.addr}:{args.port}: {e}", file=sys.stderr)
        return 1
    print(f"pyrt metrics: engine {args.engine!r} at {exp.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        exp.close()


if __name__ == "__main__":
    raise SystemExit(main())
