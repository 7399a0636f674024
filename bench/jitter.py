"""``pyrt bench jitter``: a hiccup meter. How long does this host stop a running thread?

What it measures: on each CPU in turn, a pinned child process does nothing but read the clock
(``CLOCK_MONOTONIC`` through the vDSO, ``ringbuf._atomics.monotonic_ns``) in a tight numba
loop and records every gap between two consecutive readings into an HDR histogram. With
nothing else to do, the loop should see a gap of one clock read (~20-30 ns) every time. Every
longer gap is time the *platform* took the CPU away from a thread that wanted it:

* interrupts and softirqs (network, disk, the timer tick every 1/HZ s unless ``nohz_full``);
* other tasks the scheduler runs on that CPU (no ``isolcpus``), kernel threads, RCU callbacks;
* in a VM: hypervisor steal, vCPU preemption and VM exits (a gap of a whole host time slice);
* firmware: SMIs (system management interrupts) on bare metal, invisible to the kernel;
* page faults, TLB shootdowns, CPU frequency and C-state transitions.

An engine stage pinned to that CPU suffers exactly these stalls on top of its own work, so
this is the floor under every latency percentile the engine can show. When the engine's p99.9
looks bad, run this first: if the bare clock loop stalls as long, fix the platform
(``pyrt doctor`` lists the knobs), not the engine. Like jHiccup, but per CPU and without a JVM.

Columns: ``p50_ns`` .. ``max_ns`` percentiles of the gaps; ``gaps_over_threshold`` the number
of gaps longer than ``--threshold-ns`` (default 10 µs) and ``stalled_ns_total`` their summed
length (time lost to hiccups; divide by ``seconds`` for the fraction).

CPUs run one at a time (never two spinning at once); each child spins for ``--seconds``
(default 5) after a 20 ms warm-up and is killed if it overruns. The parent sleeps meanwhile.
It leaves nothing in ``/dev/shm``: the histogram lies in an anonymous shared mapping.
Prints a table, or JSON with ``--json``. Run: ``pyrt bench jitter [--seconds S] [--cpus 0,1]``.
"""
from __future__ import annotations

import argparse
import gc
import json
import mmap
import os
import platform
import signal
import sys
import time
import traceback

import numpy as np
from numba import njit

from layouts.histogram import HISTOGRAM
from pyrt_shm import hdr_convert
from pyrt_shm.hdr_recorder import hdr_record, hdr_reset
from ringbuf._atomics import monotonic_ns

DEFAULT_THRESHOLD_NS = 10_000
WARMUP_NS = 20_000_000
GRACE_S = 30.0           # fork, pin, first clock reads; the loop itself ends on its own clock

# result words of a child
R_SAMPLES, R_OVER, R_STALLED, R_LONGEST, R_ELAPSED, R_STATUS, R_CPU = range(7)
RESULT_WORDS = 8


@njit(cache=True)
def clock_gaps(hists, res, duration_ns, threshold_ns):
    """Read the clock back to back for ``duration_ns``; record each gap into ``hists[0]``.

    ``res``: samples, gaps over threshold, their summed ns, longest gap, elapsed ns.
    """
    start = monotonic_ns()
    end = start + duration_ns
    prev = start
    n = 0
    over = 0
    stalled = 0
    longest = 0
    while prev < end:
        now = monotonic_ns()
        gap = now - prev
        hdr_record(hists, 0, gap)
        n += 1
        if gap > threshold_ns:
            over += 1
            stalled += gap
        if gap > longest:
            longest = gap
        prev = now
    res[R_SAMPLES] = n
    res[R_OVER] = over
    res[R_STALLED] = stalled
    res[R_LONGEST] = longest
    res[R_ELAPSED] = prev - start


def _shared_block():
    """A HISTOGRAM row and result words in one anonymous MAP_SHARED mapping (fork-shared)."""
    nbytes = HISTOGRAM.itemsize + 8 * RESULT_WORDS
    mm = mmap.mmap(-1, (nbytes + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE)
    hists = np.ndarray((1,), HISTOGRAM, buffer=mm)
    res = np.ndarray((RESULT_WORDS,), np.int64, buffer=mm, offset=HISTOGRAM.itemsize)
    return mm, hists, res


def _child(cpu: int, hists, res, duration_ns: int, threshold_ns: int) -> None:
    """In the forked child: pin, touch the pages, warm up, measure. Never returns."""
    code = 1
    try:
        try:
            from pyrt_shm.realtime import die_with_parent

            die_with_parent()
        except Exception:
            pass
        os.sched_setaffinity(0, {cpu})
        gc.disable()
        hists[0]["counts"][:] = 0      # fault every page in now, not inside the loop
        clock_gaps(hists, res, WARMUP_NS, threshold_ns)
        hdr_reset(hists, 0)
        res[:] = 0
        res[R_CPU] = cpu if os.sched_getaffinity(0) == {cpu} else -1
        clock_gaps(hists, res, duration_ns, threshold_ns)
        res[R_STATUS] = 1
        code = 0
    except BaseException:
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
    finally:
        os._exit(code)


def _wait(pid: int, timeout_s: float) -> tuple[bool, int | None]:
    """Wait for ``pid`` by polling (the parent sleeps, never spins); kill it after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False, status
        if time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)
    return True, None


def measure_cpu(cpu: int, seconds: float, threshold_ns: int) -> dict:
    """One pinned child on ``cpu`` for ``seconds``; the result row."""
    mm, hists, res = _shared_block()
    duration_ns = int(seconds * 1e9)
    pid = None
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(cpu, hists, res, duration_ns, threshold_ns)
        killed, status = _wait(pid, seconds + WARMUP_NS / 1e9 + GRACE_S)
        pid = None
        row = _row(cpu, hists, res, threshold_ns)
        row["complete"] = bool(res[R_STATUS] == 1 and not killed)
        if killed:
            row["notes"] = f"killed after {seconds + GRACE_S:.0f} s"
        elif not row["complete"]:
            row["notes"] = f"child failed (status {status}); see stderr"
        return row
    finally:
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        del hists, res


def _row(cpu, hists, res, threshold_ns) -> dict:
    samples = int(res[R_SAMPLES])
    elapsed = int(res[R_ELAPSED])
    row = {"cpu": cpu, "seconds": round(elapsed / 1e9, 4), "samples": samples,
           "p50_ns": None, "p99_ns": None, "p999_ns": None, "p9999_ns": None, "max_ns": None,
           "gaps_over_threshold": int(res[R_OVER]), "threshold_ns": int(threshold_ns),
           "stalled_ns_total": int(res[R_STALLED])}
    if samples:
        p = hdr_convert.percentiles(hists[0], (50, 99, 99.9, 99.99))
        row.update({"p50_ns": p[50], "p99_ns": p[99], "p999_ns": p[99.9], "p9999_ns": p[99.99],
                    "max_ns": int(res[R_LONGEST]), "min_ns": int(hists[0]["min"])})
        row["stalled_fraction"] = round(row["stalled_ns_total"] / elapsed, 6) if elapsed else None
        row["pinned"] = bool(res[R_CPU] == cpu)
    return row


# ---------------------------------------------------------------------------------------

def parse_cpus(text: str) -> list[int]:
    from tools.doctor import parse_cpu_list

    cpus = parse_cpu_list(text)
    if not cpus:
        raise ValueError(f"--cpus {text!r}: expected a list like 0,1 or 0-3")
    return cpus


def host_info() -> dict:
    import numba

    from tools import doctor

    h = doctor.Host("/")
    preempt = doctor.check_kernel_preempt(h)
    clock = doctor.check_clocksource(h)
    model = None
    for line in (h.read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    iso, _ = doctor._isolation(h)
    cmd = h.cmdline() or {}
    return {
        "cpus": os.cpu_count(), "allowed_cpus": sorted(os.sched_getaffinity(0)), "cpu_model": model,
        "kernel": f"{platform.release()} {platform.uname().version}",
        "preempt_rt": preempt.verdict == doctor.OK, "preempt_model": preempt.data.get("model"),
        "isolated_cpus": iso or [], "nohz_full": cmd.get("nohz_full"),
        "clocksource": clock.data.get("current"), "hypervisor": h.hypervisor() or None,
        "python": platform.python_version(), "numba": numba.__version__, "numpy": np.__version__,
        "loadavg_start": round(os.getloadavg()[0], 2),
    }


def _fmt(v) -> str:
    if v is None:
        return "-"
    if v < 10_000:
        return f"{v} ns"
    if v < 1_000_000:
        return f"{v / 1e3:.1f} us"
    return f"{v / 1e6:.2f} ms"


def format_table(report: dict) -> str:
    h = report["host"]
    lines = [f"hiccup meter: {len(report['results'])} CPU(s) one at a time, threshold "
             f"{_fmt(report['threshold_ns'])}; kernel {h['kernel']}"
             + (f"; VM ({h['hypervisor']})" if h.get("hypervisor") else ""),
             f"{'cpu':>3} {'seconds':>7} {'samples':>12} {'p50':>9} {'p99':>9} {'p99.9':>9} {'p99.99':>9} "
             f"{'max':>9} {'>thr':>7} {'stalled':>9} {'lost':>7}"]
    for r in report["results"]:
        frac = r.get("stalled_fraction")
        lines.append(f"{r['cpu']:>3} {r['seconds']:>7.2f} {r['samples']:>12,} {_fmt(r['p50_ns']):>9} "
                     f"{_fmt(r['p99_ns']):>9} {_fmt(r['p999_ns']):>9} {_fmt(r['p9999_ns']):>9} "
                     f"{_fmt(r['max_ns']):>9} {r['gaps_over_threshold']:>7,} "
                     f"{_fmt(r['stalled_ns_total']):>9} {'-' if frac is None else f'{frac:.3%}':>7}"
                     + ("" if r.get("complete") else f"  INCOMPLETE: {r.get('notes', '')}"))
    lines.append("")
    lines.append("Gaps are stalls of a loop that only reads the clock: interrupts, timer ticks, other "
                 "tasks, SMIs, hypervisor steal.")
    lines.append("An engine stage on that CPU suffers them too; if they match its tail, fix the platform "
                 "(pyrt doctor), not the engine.")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pyrt bench jitter", description="Hiccup meter: how long this host "
                                 "stalls a thread that only reads the clock, per CPU.")
    ap.add_argument("--seconds", type=float, default=5.0, help="spin time per CPU (default 5)")
    ap.add_argument("--cpus", help="CPUs to measure, one at a time (default: every CPU this process may use)")
    ap.add_argument("--threshold-ns", type=int, default=DEFAULT_THRESHOLD_NS,
                    help=f"count gaps longer than this (default {DEFAULT_THRESHOLD_NS})")
    ap.add_argument("--json", action="store_true", help="print only JSON to stdout")
    ap.add_argument("--out", help="also write the JSON to this file")
    return ap


def main(argv: list[str] | None = None) -> int:
    argv_list = list(sys.argv[1:] if argv is None else argv)
    ap = _parser()
    args = ap.parse_args(argv_list)
    if not 0 < args.seconds <= 3600:
        ap.error("--seconds must be in (0, 3600]")
    if args.threshold_ns < 1:
        ap.error("--threshold-ns must be >= 1")
    allowed = sorted(os.sched_getaffinity(0))
    if args.cpus:
        try:
            cpus = parse_cpus(args.cpus)
        except ValueError as e:
            ap.error(str(e))
        bad = [c for c in cpus if c not in allowed]
        if bad:
            ap.error(f"CPU(s) {bad} are not available to this process (allowed: {allowed})")
    else:
        cpus = allowed

    # Compile (or load from cache) before forking, so each child starts measuring at once.
    mm, hists, res = _shared_block()
    clock_gaps(hists, res, 1_000_000, args.threshold_ns)
    del hists, res

    report = {"host": host_info(), "command": "pyrt bench jitter " + " ".join(argv_list),
              "threshold_ns": args.threshold_ns, "results": []}
    try:
        for cpu in cpus:
            if not args.json:
                print(f"cpu {cpu}: spinning {args.seconds:g} s ...", file=sys.stderr, flush=True)
            report["results"].append(measure_cpu(cpu, args.seconds, args.threshold_ns))
    except KeyboardInterrupt:
        print("pyrt bench jitter: interrupted", file=sys.stderr)
        return 130
    report["loadavg_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text if args.json else format_table(report))
    return 0 if all(r.get("complete") for r in report["results"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
