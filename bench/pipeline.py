"""Tick-to-order latency and throughput through the whole engine, against a ZMQ+JSON pipeline.

One run (``pyrt bench pipeline --json``, or ``PYTHONPATH=. python -m bench.pipeline --json``)
measures, on this host and in this order:

1. **Cold start** of ``pyrt run`` (embedded default topology), twice: from ``Popen`` of
   ``python -m pyrt_shm.cli run --duration 2 --quiet`` to the moment the feed's
   ``ticks_out`` counter is non-zero, read by attaching read-only to the engine's ``stats``
   segment (polled every ms). The first run may compile (numba cache cold); the second runs
   with the cache warm and is the one compared with the 5 s target.
2. **Paced runs of the engine** for each placement (``auto`` = ``config/default.toml``: a feed
   process and one process running book+signal+risk+exec, both ``cpu = "auto"``;
   ``per-stage`` = ``config/per-stage.toml``, five processes; ``fused`` =
   ``config/fused.toml``, one process) and each rate, driven through ``Supervisor`` for
   ``--duration`` seconds. Tick-to-order is the engine's ``exec.tick_to_order`` HDR
   histogram: CLOCK_MONOTONIC when exec receives the order minus the tick's feed stamp, which
   for a paced feed is the tick's *scheduled* time ``t0 + i / rate`` (coordinated omission
   corrected: when the feed or the pipeline falls behind, the delay is in the latency).
   Orders happen only on EMA crosses (about 3 % of ticks), so ``per_tick_ns`` adds
   ``book.latency`` (scheduled time -> book), recorded for every tick. ``achieved_rate`` is
   ticks published by the feed / time, between the first poll that saw a tick and the end of
   the watch (10 ms polling, over the whole run). Drops are the rings' ``dropped`` counters
   (every ring is ``full = "block"``: backpressure, never loss); ``times_full`` counts how
   often a producer met a full ring. USS and PSS (``psutil`` ``memory_full_info()``) are
   sampled every second and once before the stop, max per process. USS counts the pages
   mapped by that process alone, which includes the pages of a ring whose producer and
   consumer both live in it (fused/hot processes) but not the pages of a ring shared with
   another process (per-stage); PSS splits shared pages between their users, including the
   supervisor's image every stage process inherits over ``fork`` (numba, LLVM: tens of MB).
   ``contention`` says how much of its pinned CPU the engine got (``cpu_share``: CPU time of
   the stage processes / wall time, ~1.0 = the core was ours; ``busy_pct``, ``steal_pct``
   from /proc/stat; the 1-min load average at the start): on a shared host, read the
   latency with it. ``histograms_ns`` has every engine histogram (per-stage hops, feed lag,
   process cycle times) to see where the time goes.
3. **Throughput** per placement: rate 0 (as fast as the rings take them) with ``max_ticks``.
   ``elapsed_s`` runs from the first poll that sees ``ticks_out > 0`` to the first poll that
   sees every tick through the pipeline (book and signal consumed all, every intent became
   an order or a counted rejection, every order answered by exec and its fill consumed by
   risk), polled every 0.5 ms from the supervisor's CPU and confirmed on the next poll;
   ``ticks_per_s = (ticks - ticks already out at the first poll) / elapsed_s``. The
   summary's own ``elapsed_s`` (from just before the fork to after the stop, so it includes
   fork, drain and join) is reported as ``elapsed_s_summary`` / ``ticks_per_s_summary``.
4. **The ZMQ+JSON baseline** (``bench.zmq_pipeline``, ``bench.zmq_stages``): the source
   design, five processes over pyzmq PUB/SUB ``ipc://`` with orjson dicts, the same stage
   logic in plain Python and the engine's exact tick stream, tuned as FACTS §14 says (pinned
   0/1/0/1/0, blocking recv, gc off, sleep then busy-wait the last 50 µs, start handshake)
   and a little better (timer slack 1 ns; the busy-wait yields to the stages sharing its
   core), at ``--baseline-rates``, plus an as-fast-as-possible run. Its loss is counted per
   hop (PUB/SUB drops at the high-water mark).
5. **Calibration**: the one-way wake-up of a process blocked in ``read()`` on a pipe, across
   the two CPUs and on one CPU (paced, 2 kHz): the floor under every hop of the baseline.

Ratios are "times in pyrt-shm's favour" (baseline latency / engine latency; engine
throughput / baseline throughput). Targets are reported with the measured value and never
asserted. Every engine is named ``bench-<pid>-<n>``; the supervisor removes its segments
in ``close()`` (always called), and the JSON lists any ``pyrt-bench-<pid>-*`` entry left in
/dev/shm (``shm_leftovers``, expected empty).

Note: ``Supervisor.start()`` narrows the *calling* process's CPU affinity to the CPUs no stage
uses and ``close()`` does not restore it, so a second engine started from the same process
would see one CPU and place every stage on it. This harness restores the affinity it started
with before and after every run.
"""
from __future__ import annotations

import argparse
import json
import math
import mmap
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from bench import host

ROOT = Path(__file__).resolve().parents[1]
PLACEMENTS = {
    "auto": ROOT / "config" / "default.toml",
    "per-stage": ROOT / "config" / "per-stage.toml",
    "fused": ROOT / "config" / "fused.toml",
}
IMPL = "pyrt-shm"
MB = float(1 << 20)
NS = 1_000_000_000
ORIG_AFFINITY = None


# -- host ------------------------------------------------------------------------------------
_read = host.read


def host_info() -> dict:
    import numba

    info = {
        "cpus": os.cpu_count(), "cpu_model": host.cpu_model(),
        "kernel": f"{platform.release()} {platform.uname().version}",
        "python": platform.python_version(), "numba": numba.__version__, "numpy": np.__version__,
        "preempt_rt": host.preempt_rt(),
        "isolated_cpus": host.isolated_cpus(),
        "allowed_cpus": sorted(ORIG_AFFINITY or os.sched_getaffinity(0)),
        "hypervisor": "hypervisor" in next((ln for ln in (_read("/proc/cpuinfo") or "").splitlines()
                                            if ln.startswith("flags")), ""),
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        import orjson
        import zmq

        info.update({"pyzmq": zmq.__version__, "libzmq": zmq.zmq_version(), "orjson": orjson.__version__})
    except ImportError:
        pass
    return info


def git_state() -> dict:
    """HEAD and the files that differ from it (read-only git; the tree under test may be dirty)."""
    def run(*a):
        try:
            return subprocess.run(["git", "--no-optional-locks", *a], cwd=str(ROOT), capture_output=True,
                                  text=True, timeout=10).stdout.rstrip("\n")
        except (OSError, subprocess.SubprocessError):
            return ""
    dirty = [ln[3:] for ln in run("status", "--porcelain", "--untracked-files=no").splitlines() if ln]
    return {"head": run("rev-parse", "HEAD") or None, "modified": dirty}


def _restore_affinity() -> None:
    if ORIG_AFFINITY:
        try:
            os.sched_setaffinity(0, ORIG_AFFINITY)
        except OSError:
            pass


def _baseline_cpus() -> list:
    allowed = sorted(ORIG_AFFINITY or os.sched_getaffinity(0))
    c0, c1 = allowed[0], allowed[1] if len(allowed) > 1 else allowed[0]
    return [c0, c1, c0, c1, c0]


# -- calibration: blocking wake-up through a pipe --------------------------------------------
def _wakeup_hop(prod_cpu: int, cons_cpu: int, n: int = 600, rate: int = 2000) -> dict:
    """One-way latency of a paced ``write()`` to a process blocked in ``read()`` on a pipe."""
    buf = mmap.mmap(-1, n * 8)
    lat = np.frombuffer(buf, np.int64, n)
    r, w = os.pipe()
    pids = []
    try:
        pid = os.fork()
        if pid == 0:                                            # consumer
            code = 1
            try:
                os.close(w)
                os.sched_setaffinity(0, {cons_cpu})
                clock = time.perf_counter_ns
                for i in range(n):
                    m = os.read(r, 8)
                    lat[i] = clock() - int.from_bytes(m, "little")
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
        pid = os.fork()
        if pid == 0:                                            # producer
            code = 1
            try:
                os.sched_setaffinity(0, {prod_cpu})
                clock = time.perf_counter_ns
                t0 = clock() + 2_000_000
                for i in range(n):
                    due = t0 + i * NS // rate
                    while True:
                        now = clock()
                        if now >= due:
                            break
                        if due - now > 80_000:
                            time.sleep((due - now - 60_000) / 1e9)
                    os.write(w, due.to_bytes(8, "little"))
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
        deadline = time.monotonic() + 10
        for p in list(pids):
            while time.monotonic() < deadline:
                done, _ = os.waitpid(p, os.WNOHANG)
                if done:
                    pids.remove(p)
                    break
                time.sleep(0.01)
        v = np.sort(lat[n // 10:].copy())                        # first 10 %: warm-up
        if pids or not v.size or v[0] <= 0:
            return {"p50_ns": None, "p99_ns": None}
        return {"p50_ns": int(np.percentile(v, 50)), "p99_ns": int(np.percentile(v, 99))}
    finally:
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
                os.waitpid(p, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(r)
        try:
            os.close(w)
        except OSError:
            pass
        del lat
        try:
            buf.close()
        except BufferError:
            pass


def calibrate() -> dict:
    c = _baseline_cpus()
    return {"pipe_wakeup_cross_cpu": _wakeup_hop(c[0], c[1]),
            "pipe_wakeup_same_cpu": _wakeup_hop(c[1], c[1]),
            "method": "one-way latency of a paced (2 kHz) write() to a process blocked in read() "
                      "on a pipe, CLOCK_MONOTONIC in both; 600 messages, first 10 % dropped"}


# -- engine runs -----------------------------------------------------------------------------
class Engines:
    """Starts one engine at a time under a fresh ``bench-<pid>-<n>`` name."""

    def __init__(self, log):
        self.log = log
        self.n = 0
        self.names = []

    def _topology(self, placement, rate, max_ticks, run_dir):
        from pyrt_shm.config import load_topology, override_from_dotted

        name = f"bench-{os.getpid()}-{self.n}"
        self.n += 1
        self.names.append(name)
        ov = {"engine.name": name, "stages.feed.params.rate": int(rate), "engine.run_dir": run_dir}
        if max_ticks:
            ov["stages.feed.params.max_ticks"] = int(max_ticks)
        return load_topology(str(PLACEMENTS[placement]), overrides=override_from_dotted(ov))

    def _run(self, placement, rate, max_ticks, body):
        from pyrt_shm.supervisor import Supervisor

        _restore_affinity()
        tmp = tempfile.mkdtemp(prefix="pyrt-bench-run-")
        msgs = []
        sup = None
        try:
            topo = self._topology(placement, rate, max_ticks, tmp)
            sup = Supervisor(topo, log=msgs.append, status_every_s=1.0)
            load1 = os.getloadavg()[0]
            sup.start()
            pids = {pid: proc.name for pid, proc in sup.children.items()}
            cpus = sorted({c for c in sup.placement.values() if c is not None})
            uss = {}
            share = _CpuShare(list(pids), cpus)
            out = body(sup, pids, uss)
            out["contention"] = dict(share.finish(), loadavg_1m_at_start=round(load1, 2))
            _sample_uss(pids, uss)
            info = sup.stop()
            s = sup.summary()
            return out, info, s, uss, msgs
        finally:
            if sup is not None:
                sup.close()
            _restore_affinity()
            shutil.rmtree(tmp, ignore_errors=True)

    def paced(self, placement, rate, duration_s) -> dict:
        wall0 = time.monotonic()

        def body(sup, pids, uss):
            feed = sup.stages["feed"]
            first = []

            def until():
                if not first:
                    k = feed.counter("ticks_out")
                    if k:
                        first.append((time.monotonic_ns(), k))
                return bool(feed.counter("finished"))

            why = sup.watch(duration_s=duration_s, until=until, status=lambda s: _sample_uss(pids, uss))
            end = (time.monotonic_ns(), feed.counter("ticks_out"))
            return {"why": why, "first": first[0] if first else None, "end": end}

        out, info, s, uss, msgs = self._run(placement, rate, 0, body)
        lat = s["latency_ns"]
        t2o, lag, book = lat.get("exec.tick_to_order"), lat.get("feed.lag"), lat.get("book.latency")
        c = s["counters"]
        first, end = out["first"], out["end"]
        window = (end[0] - first[0]) / 1e9 if first else 0.0
        achieved = (end[1] - first[1]) / window if first and window > 0 else None
        row = {
            "impl": IMPL, "placement": placement, "rate": int(rate),
            "duration_s": round(window, 3), "ticks": c["feed"]["ticks_out"],
            "achieved_rate": round(achieved, 1) if achieved is not None else None,
            **_pcts(t2o),
            "orders": c["exec"]["orders_in"], "intents": c["signal"]["intents_out"],
            "dropped": sum(int(r["dropped"]) for r in s["rings"].values()),
            "times_full": sum(int(r["times_full"]) for r in s["rings"].values()),
            "drained": bool(info["drained"]),
            "feed_lag_p99_ns": lag["p99"] if lag else None,
            "uss_mb": _mem_mb(uss, 0), "pss_mb": _mem_mb(uss, 1),
            "cpus": {p: d["cpu"] for p, d in s["processes"].items()},
            "per_tick_ns": {k: book[k] for k in ("count", "p50", "p99", "p999", "max")} if book else None,
            "risk_rejections": {k: v for k, v in c["risk"].items() if k.startswith("rej") and v},
            "histograms_ns": {k: {q: h[q] for q in ("count", "p50", "p99", "p999")} for k, h in lat.items()},
            "contention": out["contention"],
            "stop_reason": out["why"], "fault": s.get("fault"),
            "notes": msgs,
        }
        row["wall_s"] = round(time.monotonic() - wall0, 3)
        return row

    def throughput(self, placement, n_ticks, timeout_s) -> dict:
        wall0 = time.monotonic()

        def body(sup, pids, uss):
            st = sup.stages
            feed, book, sig, risk, ex = (st[k] for k in ("feed", "book", "signal", "risk", "exec"))

            def through() -> bool:       # read in pipeline order: upstream counts are final first
                return (feed.counter("finished") == 1 and book.counter("ticks_in") == n_ticks
                        and sig.counter("events_in") == book.counter("events_out")
                        and risk.counter("intents_in") == sig.counter("intents_out")
                        and ex.counter("orders_in") == risk.counter("orders_out")
                        and risk.counter("fills_in") == ex.counter("fills_out"))

            deadline = time.monotonic() + timeout_s
            next_uss = time.monotonic() + 1.0
            first = candidate = None
            why = "timeout"
            while time.monotonic() < deadline:
                w = sup.watch(duration_s=0)            # one supervision check (faults, signals)
                if w in ("fault", "signal"):
                    why = w
                    break
                now = time.monotonic_ns()
                if first is None:
                    k = feed.counter("ticks_out")
                    if k:
                        first = (now, k)
                if through():
                    if candidate is not None:          # held on two polls: really done
                        why = "through"
                        break
                    candidate = now
                else:
                    candidate = None
                if time.monotonic() >= next_uss:
                    _sample_uss(pids, uss)
                    next_uss = time.monotonic() + 1.0
                time.sleep(0.0005)
            return {"why": why, "first": first, "done": candidate if why == "through" else None}

        out, info, s, uss, msgs = self._run(placement, 0, n_ticks, body)
        c = s["counters"]
        first, done = out["first"], out["done"]
        elapsed = (done - first[0]) / 1e9 if first and done else None
        tps = (n_ticks - first[1]) / elapsed if elapsed else None
        dropped = sum(int(r["dropped"]) for r in s["rings"].values())
        return {
            "impl": IMPL, "placement": placement, "ticks": c["feed"]["ticks_out"],
            "ticks_through": c["signal"]["events_in"],
            "elapsed_s": round(elapsed, 4) if elapsed else None,
            "ticks_per_s": round(tps, 1) if tps else None,
            "dropped": dropped, "drained": bool(info["drained"]),
            "times_full": sum(int(r["times_full"]) for r in s["rings"].values()),
            "orders": c["exec"]["orders_in"],
            "elapsed_s_summary": s["elapsed_s"],
            "ticks_per_s_summary": round(c["feed"]["ticks_out"] / s["elapsed_s"], 1) if s["elapsed_s"] else None,
            "zero_loss": bool(dropped == 0 and info["drained"] and out["why"] == "through"),
            "uss_mb": _mem_mb(uss, 0), "pss_mb": _mem_mb(uss, 1),
            "contention": out["contention"],
            "stop_reason": out["why"], "fault": s.get("fault"), "notes": msgs,
            "wall_s": round(time.monotonic() - wall0, 3),
        }


def _proc_stat() -> dict:
    """``{cpu: (busy, steal, total)}`` jiffies from /proc/stat (per CPU)."""
    out = {}
    for ln in (_read("/proc/stat") or "").splitlines():
        if ln.startswith("cpu") and ln[3:4].isdigit():
            f = ln.split()
            v = [int(x) for x in f[1:9]]
            total = sum(v)
            out[int(f[0][3:])] = (total - v[3] - v[4], v[7], total)
    return out


class _CpuShare:
    """How much of the CPUs the engine is pinned to its own processes got during a run.

    ``cpu_share`` = CPU time of the stage processes / (wall time x pinned CPUs): ~1.0 when
    yield-looping stages had their core to themselves, ~0.5 when another job shared it.
    ``busy_pct`` / ``steal_pct``: the pinned CPUs' busy and hypervisor-steal time (/proc/stat).
    """

    def __init__(self, pids, cpus):
        import psutil

        self.cpus = cpus
        self.procs = []
        for pid in pids:
            try:
                p = psutil.Process(pid)
                t = p.cpu_times()
                self.procs.append((p, t.user + t.system))
            except psutil.Error:
                pass
        self.t0 = time.monotonic()
        self.stat0 = _proc_stat()

    def finish(self) -> dict:
        import psutil

        wall = time.monotonic() - self.t0
        used = 0.0
        for p, t0 in self.procs:
            try:
                t = p.cpu_times()
                used += t.user + t.system - t0
            except psutil.Error:
                pass
        st = _proc_stat()
        d = [(st[c][0] - self.stat0[c][0], st[c][1] - self.stat0[c][1], st[c][2] - self.stat0[c][2])
             for c in self.cpus if c in st and c in self.stat0]
        total = sum(x[2] for x in d)
        return {"cpus": self.cpus,
                "cpu_share": round(used / (wall * len(self.cpus)), 3) if wall > 0 and self.cpus and self.procs
                else None,
                "busy_pct": round(100.0 * sum(x[0] for x in d) / total, 1) if total else None,
                "steal_pct": round(100.0 * sum(x[1] for x in d) / total, 2) if total else None}


def _pcts(h) -> dict:
    keys = (("p50_ns", "p50"), ("p90_ns", "p90"), ("p99_ns", "p99"), ("p999_ns", "p999"),
            ("p9999_ns", "p9999"), ("max_ns", "max"))
    if not h or not h.get("count"):
        return {k: None for k, _ in keys}
    return {k: int(h[v]) for k, v in keys}


def _sample_uss(pids: dict, mem: dict) -> None:
    """Max USS and PSS per process (``mem[name] = [uss, pss]``); ``pids`` maps pid -> name."""
    import psutil

    for pid, name in list(pids.items()):
        try:
            m = psutil.Process(pid).memory_full_info()
        except (psutil.Error, OSError):
            continue
        cur = mem.setdefault(name, [0, 0])
        cur[0], cur[1] = max(cur[0], m.uss), max(cur[1], m.pss)


def _mem_mb(mem: dict, i: int) -> dict:
    return {k: round(v[i] / MB, 2) for k, v in mem.items()}


# -- cold start ------------------------------------------------------------------------------
def cold_start(name: str, timeout_s: float = 90.0) -> dict:
    """Seconds from ``Popen`` of ``pyrt run`` to the feed's first published tick."""
    from layouts.stats import STAGE_STATS
    from pyrt_shm.errors import ShmError
    from pyrt_shm.segment import attach_segment, list_segments, remove_stale

    _restore_affinity()
    tmp = tempfile.mkdtemp(prefix="pyrt-bench-cold-")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "pyrt_shm.cli", "run", "--duration", "2", "--quiet",
           "--engine", name, "--run-dir", tmp]
    out_f = open(os.path.join(tmp, "stdout"), "w+")
    err_f = open(os.path.join(tmp, "stderr"), "w+")
    res = {"seconds": None, "exit_code": None, "notes": []}
    proc = None
    stats = None
    try:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=out_f, stderr=err_f)
        deadline = t0 + timeout_s
        feed_row = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                res["notes"].append(f"pyrt run exited ({proc.returncode}) before a tick was seen")
                break
            if stats is None:
                try:
                    man = attach_segment(name, "manifest", readonly=True)
                    try:
                        if not int(man.header["ready"][0]):
                            raise ShmError("not ready")
                        n = int(man.array(np.uint64, (1,))[0])
                        manifest = json.loads(bytes(man.array(np.uint8, (n,), offset=8)))
                    finally:
                        man.close()
                    seg = attach_segment(name, "stats", readonly=True)
                    rows = seg.array(STAGE_STATS, (len(manifest["stages"]),))
                    feed_row = next(s["index"] for s in manifest["stages"] if s["name"] == "feed")
                    stats = (seg, rows)
                except (ShmError, ValueError, StopIteration, KeyError):
                    stats = None
                    time.sleep(0.001)
                    continue
            if int(stats[1][feed_row]["counters"][0]) > 0:         # SyntheticFeed ticks_out
                res["seconds"] = round(time.monotonic() - t0, 3)
                break
            time.sleep(0.001)
        else:
            res["notes"].append(f"no tick within {timeout_s:.0f} s")
        if stats is not None:
            stats[0].close()
            stats = None
        try:
            res["exit_code"] = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            res["notes"].append("pyrt run did not exit within 30 s of the first tick")
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)                     # graceful: it unlinks its segments
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None:
            try:
                err_f.seek(0)
                err = err_f.read()
                if proc.returncode not in (0, None) and err:
                    res["notes"].append(err[-1500:])
            except OSError:
                pass
        out_f.close()
        err_f.close()
        try:
            if list_segments(name):
                res["notes"].append(f"removed leftover segments: {remove_stale(name)}")
        except Exception as e:  # noqa: BLE001
            res["notes"].append(f"leftover check failed: {e}")
        shutil.rmtree(tmp, ignore_errors=True)
        _restore_affinity()
    return res


# -- the baseline ----------------------------------------------------------------------------
def baseline_runs(rates, duration_s, max_ticks, tput_ticks, hwm, spin_ns, log):
    from pyrt_shm.config import load_topology

    from . import zmq_pipeline as zp

    _restore_affinity()
    params = zp.stage_params(load_topology(str(PLACEMENTS["auto"])))
    plan = [(r, int(min(r * duration_s, max_ticks))) for r in rates]
    n_max = max([n for _, n in plan] + [tput_ticks])
    t = time.monotonic()
    ticks = zp.generate_ticks(n_max, str(PLACEMENTS["auto"]))
    log(f"baseline: generated {len(ticks):,} ticks with the engine's feed in {time.monotonic() - t:.2f} s")
    import gc

    gc.collect()
    cpus = _baseline_cpus()
    rows, tput = [], []
    for rate, n in plan:
        try:
            load1, share = os.getloadavg()[0], _CpuShare([], sorted(set(cpus)))
            row = zp.run(ticks, rate, n, params, cpus, hwm=hwm, spin_ns=spin_ns)
            row["contention"] = dict(share.finish(), loadavg_1m_at_start=round(load1, 2))
        except Exception as e:  # noqa: BLE001 - one failed run must not sink the report
            traceback.print_exc(file=sys.stderr)
            row = {"impl": zp.IMPL, "placement": zp.PLACEMENT, "rate": rate, "error": repr(e)}
        _restore_affinity()
        rows.append(row)
        log(_fmt_row(row))
    try:
        r = zp.run(ticks, 0, tput_ticks, params, cpus, hwm=hwm, spin_ns=spin_ns, max_send_s=60.0)
        through = r["hops"]["top"]["received"]
        el = (r["signal_t_last_ns"] - r["t_first_send_ns"]) / 1e9 if r["signal_t_last_ns"] else None
        t_row = {"impl": zp.IMPL, "placement": zp.PLACEMENT, "ticks": r["ticks"], "ticks_through": through,
                 "elapsed_s": round(el, 4) if el else None,
                 "ticks_per_s": round(through / el, 1) if el else None,
                 "dropped": r["dropped"], "drained": r["drained"],
                 "zero_loss": bool(r["dropped"] == 0 and r["drained"]), "orders": r["orders"],
                 "feed_send_rate": r["achieved_rate"], "hops": r["hops"], "uss_mb": r["uss_mb"],
                 "pss_mb": r["pss_mb"],
                 "notes": r["notes"] + ["elapsed: feed's first send -> signal done with its last "
                                        "event; ticks_per_s counts ticks signal received"],
                 "wall_s": r["wall_s"]}
    except Exception as e:  # noqa: BLE001
        traceback.print_exc(file=sys.stderr)
        t_row = {"impl": zp.IMPL, "placement": zp.PLACEMENT, "ticks": tput_ticks, "elapsed_s": None,
                 "ticks_per_s": None, "dropped": None, "error": repr(e)}
    _restore_affinity()
    tput.append(t_row)
    log(f"zmq-json throughput: {t_row.get('ticks_per_s')} ticks/s dropped={t_row.get('dropped')}")
    del ticks
    return rows, tput


# -- ratios and targets ----------------------------------------------------------------------
def _find(rows, impl, rate, placement=None):
    for r in rows:
        if r.get("impl") == impl and r.get("rate") == rate and (placement is None or r.get("placement") == placement):
            return r
    return None


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


def ratios_and_targets(results, throughput, cold, uss_limit_mb=60.0) -> tuple[dict, list]:
    z10, z100 = _find(results, "zmq-json", 10_000), _find(results, "zmq-json", 100_000)
    ratios = {"definition": "factor in pyrt-shm's favour: zmq-json latency / pyrt-shm latency at the "
                            "same paced rate; pyrt-shm ticks/s / zmq-json ticks/s"}
    for pl in PLACEMENTS:
        key = pl.replace("-", "_")
        for rate, z, tag in ((10_000, z10, "10k"), (100_000, z100, "100k")):
            e = _find(results, IMPL, rate, pl)
            if e is None or z is None:
                continue
            for p in ("p50", "p99", "p999"):
                ratios[f"{key}_{p}_vs_zmq_{p}_at_{tag}"] = _ratio(z.get(f"{p}_ns"), e.get(f"{p}_ns"))
    zt = next((t for t in throughput if t.get("impl") == "zmq-json"), None)
    for t in throughput:
        if t.get("impl") == IMPL and zt is not None:
            ratios[f"throughput_{t['placement'].replace('-', '_')}_vs_zmq"] = _ratio(
                t.get("ticks_per_s"), zt.get("ticks_per_s"))

    targets = []

    def target(name, text, measured, met, **extra):
        targets.append({"name": name, "target": text, "measured": measured,
                        "met": None if measured is None else bool(met), **extra})

    a100 = _find(results, IMPL, 100_000, "auto")
    for p, limit in (("p50", 5_000), ("p99", 20_000), ("p999", 100_000)):
        v = a100.get(f"{p}_ns") if a100 else None
        target(f"auto_100k_tick_to_order_{p}_ns", f"<= {limit}", v, v is not None and v <= limit)
    r = ratios.get("auto_p99_vs_zmq_p99_at_100k")
    target("auto_100k_p99_vs_zmq_json_p99", ">= 20x lower", r, r is not None and r >= 20)
    for t in throughput:
        if t.get("impl") != IMPL:
            continue
        v = t.get("ticks_per_s")
        target(f"throughput_zero_loss_{t['placement']}_ticks_per_s", ">= 1000000 with zero loss", v,
               v is not None and v >= 1e6 and t.get("zero_loss", False))
    uss = [(v, f"{r['placement']}@{r.get('rate', 'throughput')}:{proc}") for r in results + throughput
           if r.get("impl") == IMPL for proc, v in (r.get("uss_mb") or {}).items()]
    worst = max(uss) if uss else (None, None)
    target("uss_mb_per_stage_process_max", f"<= {uss_limit_mb:g}", worst[0],
           worst[0] is not None and worst[0] <= uss_limit_mb, where=worst[1])
    warm = cold[1] if len(cold) > 1 else None
    target("cold_start_s_numba_cache_warm", "<= 5", warm, warm is not None and warm <= 5.0)
    return ratios, targets


# -- output ----------------------------------------------------------------------------------
def _us(v):
    return "-" if v is None else (f"{v / 1e3:.1f}us" if v < 1e6 else f"{v / 1e6:.2f}ms" if v < 1e9 else f"{v / 1e9:.2f}s")


def _fmt_row(r) -> str:
    if "error" in r:
        return f"{r.get('impl')} {r.get('placement')} {r.get('rate')}: ERROR {r['error']}"
    return (f"{r['impl']:<9} {r['placement']:<22} {r['rate']:>8} achieved {r.get('achieved_rate') or 0:>11,.0f}/s "
            f"p50 {_us(r['p50_ns']):>9} p99 {_us(r['p99_ns']):>9} p99.9 {_us(r['p999_ns']):>9} "
            f"max {_us(r['max_ns']):>9} orders {r['orders']:>6} dropped {r['dropped']} drained {r['drained']} "
            f"lag99 {_us(r['feed_lag_p99_ns'])} uss {r['uss_mb']} "
            f"cpu_share {(r.get('contention') or {}).get('cpu_share')} "
            f"load {(r.get('contention') or {}).get('loadavg_1m_at_start')}")


def table(report) -> str:
    lines = [f"host: {report['host']['cpu_model']} x{report['host']['cpus']}, {report['host']['kernel']}, "
             f"loadavg {report['host']['loadavg_before']} -> {report['host']['loadavg_after']}"]
    lines += [_fmt_row(r) for r in report["results"]]
    for t in report["throughput"]:
        lines.append(f"throughput {t['impl']:<9} {t['placement']:<22} {t.get('ticks_per_s') or 0:>13,.0f} ticks/s "
                     f"elapsed {t.get('elapsed_s')} s dropped {t.get('dropped')}")
    lines.append(f"cold start (s): {report['cold_start_s']}")
    for k, v in report["ratios"].items():
        if k != "definition":
            lines.append(f"ratio {k}: {v}")
    for t in report["targets"]:
        flag = "n/a " if t["met"] is None else ("MET " if t["met"] else "MISS")
        lines.append(f"{flag} {t['name']}: {t['measured']} (target {t['target']})")
    return "\n".join(lines)


def _parser():
    p = argparse.ArgumentParser(prog="pyrt bench pipeline",
                                description="Tick-to-order latency through the engine vs a ZMQ+JSON pipeline.")
    p.add_argument("--json", action="store_true", help="print only the JSON document on stdout")
    p.add_argument("--quick", action="store_true", help="short run for smoke tests (< 60 s)")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="seconds per paced run (default 5; --quick 1.5)")
    p.add_argument("--rates", default="10000,100000,1000000", help="paced rates, ticks/s")
    p.add_argument("--placements", default="auto,per-stage,fused", help=f"subset of {','.join(PLACEMENTS)}")
    p.add_argument("--baseline-rates", default=None,
                   help="paced rates of the ZMQ+JSON baseline (default 10000,100000,1000000; "
                        "'' or 'none' skips the baseline)")
    p.add_argument("--baseline-max-ticks", type=int, default=None,
                   help="ticks per baseline run at most, so a rate it cannot sustain is a short bounded "
                        "run (default 1000000; --quick 300000)")
    p.add_argument("--baseline-tput-ticks", type=int, default=None,
                   help="ticks of the baseline's as-fast-as-possible run (default 300000; --quick 50000)")
    p.add_argument("--max-ticks", type=int, default=None,
                   help="ticks of each engine throughput run (default 5000000; --quick 500000)")
    p.add_argument("--zmq-hwm", type=int, default=65536, help="PUB/SUB high-water mark (both sides)")
    p.add_argument("--no-cold-start", action="store_true", help="skip the two cold-start runs")
    p.add_argument("--out", metavar="FILE", help="also write the JSON here")
    p.add_argument("--verbose", "-v", action="store_true", help="progress on stderr even with --json")
    return p


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt("SIGTERM")     # unwind through every finally: close engines, kill children


def _ints(text) -> list[int]:
    if text is None or text.strip().lower() in ("", "none"):
        return []
    return [int(float(x)) for x in text.split(",") if x.strip()]


def main(argv=None) -> int:
    global ORIG_AFFINITY
    argv_list = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv_list)
    quick = args.quick
    duration = args.duration if args.duration is not None else (1.5 if quick else 5.0)
    rates = _ints(args.rates)
    placements = [p.strip() for p in args.placements.split(",") if p.strip()]
    bad = [p for p in placements if p not in PLACEMENTS]
    if bad or duration <= 0 or any(r < 1 for r in rates):
        print(f"pyrt bench pipeline: bad --placements {bad} / --duration / --rates", file=sys.stderr)
        return 2
    base_rates = _ints(args.baseline_rates if args.baseline_rates is not None else "10000,100000,1000000")
    base_max = args.baseline_max_ticks or (300_000 if quick else 1_000_000)
    base_tput = args.baseline_tput_ticks or (50_000 if quick else 300_000)
    max_ticks = args.max_ticks or (500_000 if quick else 5_000_000)
    verbose = args.verbose or not args.json

    def log(msg):
        if verbose:
            print(msg, file=sys.stderr, flush=True)

    ORIG_AFFINITY = set(os.sched_getaffinity(0))
    prev_term = signal.signal(signal.SIGTERM, _on_sigterm)
    wall0 = time.monotonic()
    host = host_info()
    host["git"] = git_state()
    engines = Engines(log)
    results, throughput, cold = [], [], []
    notes = []
    try:
        if not args.no_cold_start:
            for i in range(2):
                r = cold_start(f"bench-{os.getpid()}-cold{i}")
                cold.append(r["seconds"])
                if r["notes"] or r["exit_code"] not in (0, None):
                    notes.append(f"cold start {i + 1}: exit {r['exit_code']} {' | '.join(r['notes'])}")
                log(f"cold start {i + 1}: {r['seconds']} s (exit {r['exit_code']}) {r['notes']}")
        host["calibration"] = calibrate()
        log(f"calibration: {host['calibration']}")
        for pl in placements:
            for rate in rates:
                try:
                    row = engines.paced(pl, rate, duration)
                except Exception as e:  # noqa: BLE001
                    traceback.print_exc(file=sys.stderr)
                    row = {"impl": IMPL, "placement": pl, "rate": rate, "error": repr(e)}
                results.append(row)
                log(_fmt_row(row))
            try:
                t = engines.throughput(pl, max_ticks, timeout_s=max(30.0, max_ticks / 2e5))
            except Exception as e:  # noqa: BLE001
                traceback.print_exc(file=sys.stderr)
                t = {"impl": IMPL, "placement": pl, "ticks": max_ticks, "elapsed_s": None,
                     "ticks_per_s": None, "dropped": None, "error": repr(e)}
            throughput.append(t)
            log(f"throughput {pl}: {t.get('ticks_per_s')} ticks/s in {t.get('elapsed_s')} s "
                f"(summary: {t.get('ticks_per_s_summary')}) dropped={t.get('dropped')} drained={t.get('drained')}")
        if base_rates:
            b_rows, b_tput = baseline_runs(base_rates, duration, base_max, base_tput, args.zmq_hwm, 50_000, log)
            results += b_rows
            throughput += b_tput
    finally:
        signal.signal(signal.SIGTERM, prev_term)
        _restore_affinity()
    leftovers = sorted(e for e in os.listdir("/dev/shm") if e.startswith(f"pyrt-bench-{os.getpid()}-")
                       or e.startswith(f"sem.pyrt-bench-{os.getpid()}-")) if os.path.isdir("/dev/shm") else []
    host["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    if max(host["loadavg_before"][0], host["loadavg_after"][0]) > 1.5:
        notes.append("host loaded by other jobs (1-min loadavg > 1.5): figures are noisier than usual")
    ratios, targets = ratios_and_targets(results, throughput, cold)
    report = {
        "host": host,
        "command": "pyrt bench pipeline " + " ".join(argv_list),
        "settings": {"duration_s": duration, "rates": rates, "placements": placements,
                     "baseline_rates": base_rates, "baseline_max_ticks": base_max,
                     "baseline_tput_ticks": base_tput, "engine_tput_ticks": max_ticks,
                     "zmq_hwm": args.zmq_hwm, "baseline_cpus": _baseline_cpus(),
                     "baseline_feed_wait": "sleep until 50 us before the send time, then poll the clock "
                                           "calling sched_yield() between polls",
                     "quick": quick},
        "results": results,
        "throughput": throughput,
        "cold_start_s": cold,
        "ratios": ratios,
        "targets": targets,
        "shm_leftovers": leftovers,
        "notes": notes,
        "wall_s": round(time.monotonic() - wall0, 1),
    }
    text = json.dumps(report, indent=2, default=_json_default)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if args.json:
        print(text)
    else:
        print(table(report))
    return 0


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if math.isnan(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


if __name__ == "__main__":
    raise SystemExit(main())
