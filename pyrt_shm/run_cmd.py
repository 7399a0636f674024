"""``pyrt run [--config FILE] [--duration S] [--rate N] [--metrics-port N]``: run the engine, report, exit.

Exit codes: 0 clean stop (duration, SIGINT/SIGTERM, feed finished); 1 a stage died or
stalled (the message names it) or the engine could not start (a venue account that could
not be reconciled, a fake venue that did not start); 2 bad command line or configuration
(including missing Alpaca credentials: reported before any process starts or any network
is touched).

A topology with a ``[fake_alpaca]`` table (``config/alpaca-fake.toml``) runs against a local
fake Alpaca started for the run: ``pyrt run`` generates throwaway keys, starts
``python -m tools.fake_alpaca.cli --ready-json`` with them in its environment (its own
session, so Ctrl-C reaches only ``pyrt run``, which stops it after the engine; it also dies
with ``pyrt run``), waits for its ready line (``ready_timeout_s``), puts the keys in this
process's environment (memory only: never written, never logged), replaces the
``{fake_alpaca.rest|stream|md}`` placeholders in stage params by its URLs, runs, and stops
it at the end, also on errors and signals.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pyrt run", description="Run the engine (embedded default "
                                 "topology: synthetic market, simulated venue, no network).")
    ap.add_argument("--config", metavar="FILE", help="topology TOML (default: the embedded default)")
    ap.add_argument("--duration", type=float, default=5.0, metavar="S",
                    help="seconds to run before a graceful stop (0 = until SIGINT/SIGTERM); default 5")
    ap.add_argument("--rate", type=int, metavar="N", help="feed rate in ticks/s (0 = as fast as possible)")
    ap.add_argument("--max-ticks", type=int, metavar="N", help="stop the feed after N ticks")
    ap.add_argument("--engine", metavar="NAME", help="engine name (shared-memory prefix)")
    ap.add_argument("--run-dir", metavar="DIR", help="where to write the run directory")
    ap.add_argument("--metrics-port", type=int, metavar="N",
                    help="serve Prometheus metrics on this port (9464 by convention; 0 = off; "
                         "bound to [engine] metrics_addr, 127.0.0.1 by default)")
    ap.add_argument("--quiet", action="store_true", help="no live status line")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON at the end")
    return ap


def _overrides(args, topo_feed: str = "feed") -> dict:
    flat = {}
    if args.rate is not None:
        flat[f"stages.{topo_feed}.params.rate"] = args.rate
    if args.max_ticks is not None:
        flat[f"stages.{topo_feed}.params.max_ticks"] = args.max_ticks
    if args.engine is not None:
        flat["engine.name"] = args.engine
    if args.run_dir is not None:
        flat["engine.run_dir"] = args.run_dir
    if args.metrics_port is not None:
        flat["engine.metrics_port"] = args.metrics_port
    return flat


def status_line(sup) -> None:
    """One line a second: ticks/s, pipeline counts, ring depth, live tick-to-order p99."""
    from . import hdr_convert, report

    mem = sup.mem
    c = report.counters(mem)
    now = time.monotonic_ns()
    prev = getattr(sup, "_prev_status", None)
    ticks = c.get("feed", {}).get("ticks_out", 0)
    since = (sup.started_ns, 0) if prev is None else prev        # first line: since the start
    rate = (ticks - since[1]) / max((now - since[0]) / 1e9, 1e-9)
    sup._prev_status = (now, ticks)
    depth = sum(r.statistics().depth for r in mem.rings.values())
    t2o = ""
    if "exec.tick_to_order" in mem.hist_names:
        row = mem.hists[mem.hist_names.index("exec.tick_to_order")]
        if row["counts"].any():
            p = hdr_convert.percentiles(row, (50, 99))
            t2o = f"  tick->order p50 {p[50] / 1e3:.1f}us p99 {p[99] / 1e3:.1f}us"
    print(f"[{(now - sup.started_ns) / 1e9:6.1f}s] ticks {ticks:,} ({rate:,.0f}/s)  intents "
          f"{c.get('signal', {}).get('intents_out', 0):,}  orders {c.get('risk', {}).get('orders_out', 0):,}  "
          f"fills {c.get('exec', {}).get('fills_out', 0):,}  in-flight {depth}{t2o}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .config import ConfigError, load_topology, override_from_dotted

    try:
        topo = load_topology(args.config, overrides=override_from_dotted(_overrides(args)) or None)
    except ConfigError as e:
        print(f"pyrt run: invalid configuration:\n{e}", file=sys.stderr)
        return 2
    from .fake_alpaca_proc import FakeAlpacaError, FakeAlpacaProcess

    fake = None
    try:
        if topo.fake_alpaca is not None:
            try:
                fake = FakeAlpacaProcess(topo.fake_alpaca)
                topo = fake.start(topo)
            except FakeAlpacaError as e:
                print(f"pyrt run: {e}", file=sys.stderr)
                return 1
        return _run(args, topo)
    finally:
        if fake is not None:
            fake.stop()


def _run(args, topo) -> int:
    from . import report
    from .credentials import MissingCredentials
    from .errors import EngineRunning, ShmError
    from .supervisor import StagePrepareError, Supervisor
    from .wiring import WiringError

    sup = Supervisor(topo)
    sup.install_signal_handlers()
    try:
        try:
            sup.start()
        except (WiringError, ValueError, ImportError) as e:
            # Stage constructors validate their params (ValueError naming stages.X.params.key);
            # class paths that do not import raise ImportError naming stages.X.class.
            print(f"pyrt run: invalid configuration:\n{e}", file=sys.stderr)
            return 2
        except MissingCredentials as e:
            print(f"pyrt run: {e}", file=sys.stderr)
            return 2
        except (EngineRunning, ShmError, StagePrepareError) as e:
            print(f"pyrt run: {e}", file=sys.stderr)
            return 1
        print(f"pyrt: engine {topo.engine.name!r} running: " + ", ".join(
            f"{p.name}@cpu{sup.placement.get(p.name)}" for p in topo.processes)
            + f" ({topo.source})", flush=True)
        topo = sup.topology                      # as the stages' prepare hooks left it
        feed_done = _feed_finished(sup)
        why = sup.watch(duration_s=args.duration or None, until=feed_done,
                        status=None if args.quiet else status_line)
        info = sup.stop()
        summary = sup.summary()
        summary["stop_reason"] = why
        summary["drain"] = info
        run_dir = os.path.join(topo.engine.run_dir, f"{topo.engine.name}-"
                               f"{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        summary["run_dir"] = run_dir
        report.write_run_dir(sup.mem, run_dir, summary)
        print(report.format_report(summary))
        print(f"  run directory: {run_dir}")
        if args.json:
            import json

            print(json.dumps(summary, default=str))
        if sup.fault:
            print(f"pyrt run: {sup.fault}", file=sys.stderr)
            return 1
        return 0
    finally:
        sup.close()


def _feed_finished(sup):
    """``until`` predicate: every source stage set its ``finished`` counter (max_ticks reached)."""
    sources = [s for s in sup.stages.values() if not s.INPUTS and "finished" in s.COUNTERS]
    if not sources:
        return None
    return lambda: all(s.counter("finished") for s in sources)
