"""``pyrt top [ENGINE]``: a live terminal view of a running engine, read-only.

Shows, refreshed every ``--interval`` seconds (default 1): stages (process, status, pid, CPU,
heartbeat age, work and cycles per second), rings (depth, high-water mark, times full,
dropped, throughput), latency percentiles of every histogram (p50, p99, p99.9, max), book
tops, positions and P&L, the risk state (trading state, kill switch, and every one-row state
table a stage publishes, e.g. risk's portfolio) and every rejection counter (``rej_*`` /
``rejected_*``, including a ``*rejections`` table's reasons) that is not zero.

On a terminal it draws with curses (works over SSH; ``q`` or Ctrl-C quits). ``--once`` prints
one plain-text frame and exits; when stdout is not a terminal it prints a plain frame every
interval (like ``top -b``). Exit codes: 0 on quit, or when the engine stops while watched
(the message says so); 1 when no engine is running; 2 on a bad command line.

It attaches through ``pyrt_shm.reader`` (read-only mappings, no numba) and never slows the
engine: every number comes from shared memory the stages already maintain.
"""
from __future__ import annotations

import argparse
import sys
import time

from pyrt_shm import report
from pyrt_shm.reader import EngineGone, EngineNotRunning, EngineRestarted, attach, running_engines

#: Seconds between the two samples ``--once`` takes to compute rates.
ONCE_WINDOW_S = 0.5


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pyrt top", description="Live view of a running engine "
                                 "(read-only; q or Ctrl-C quits).")
    ap.add_argument("engine", nargs="?", help="engine name (default: the only running engine)")
    ap.add_argument("--once", action="store_true", help="print one plain-text frame and exit")
    ap.add_argument("--interval", type=float, default=1.0, metavar="S",
                    help="seconds between refreshes (default 1)")
    ap.add_argument("--plain", action="store_true", help="plain-text frames even on a terminal")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if not 0.05 <= args.interval <= 60:
        ap.error("--interval must be between 0.05 and 60 seconds")
    engine = args.engine or _only_engine()
    if engine is None:
        return 1
    try:
        reader = attach(engine)
    except EngineNotRunning as e:
        print(f"pyrt top: {e}", file=sys.stderr)
        return 1
    except ValueError as e:          # a malformed engine name
        print(f"pyrt top: {e}", file=sys.stderr)
        return 2
    try:
        if args.once:
            return _once(reader, args.interval)
        if args.plain or not (sys.stdout.isatty() and sys.stdin.isatty()):
            return _stream(reader, args.interval)
        return _curses(reader, args.interval)
    except KeyboardInterrupt:
        return 0
    finally:
        reader.close()


def _only_engine() -> str | None:
    engines = running_engines()
    if len(engines) == 1:
        return engines[0]
    if not engines:
        print("pyrt top: no engine is running (nothing in /dev/shm); start one with `pyrt run`",
              file=sys.stderr)
    else:
        print(f"pyrt top: several engines are running ({', '.join(engines)}); name one: "
              f"pyrt top ENGINE", file=sys.stderr)
    return None


# -- sampling -------------------------------------------------------------------------------

class _Sampler:
    """Snapshots of one engine, re-attaching if a new run of it replaces the old one."""

    def __init__(self, reader):
        self.reader = reader
        self.prev = None
        self.note = ""

    def sample(self) -> dict:
        """The next snapshot; raises EngineGone once the engine has stopped."""
        try:
            self.reader.check()
        except EngineRestarted as e:
            self.reader.close()
            self.reader = attach(self.reader.engine, wait=2.0)
            self.prev = None
            self.note = str(e)
        snap = self.reader.snapshot()
        snap["_prev"], self.prev = self.prev, {k: snap[k] for k in ("time_ns", "stages", "rings")}
        return snap


def _stopped(e: Exception) -> int:
    print(f"pyrt top: {e}", file=sys.stderr if isinstance(e, EngineNotRunning) else sys.stdout,
          flush=True)
    return 0


def _once(reader, interval: float) -> int:
    s = _Sampler(reader)
    try:
        s.sample()
        time.sleep(min(interval, ONCE_WINDOW_S))
        snap = s.sample()
    except EngineGone as e:
        return _stopped(e)
    print("\n".join(render(snap)), flush=True)
    return 0


def _stream(reader, interval: float) -> int:
    s = _Sampler(reader)
    while True:
        try:
            snap = s.sample()
        except (EngineGone, EngineNotRunning) as e:
            return _stopped(e)
        print("\n".join(render(snap)) + "\n", flush=True)
        time.sleep(interval)


def _curses(reader, interval: float) -> int:
    import curses

    s = _Sampler(reader)
    gone: list[Exception] = []

    def loop(scr) -> None:
        try:
            curses.curs_set(0)
        except curses.error:
            pass
        scr.timeout(int(interval * 1000))
        while True:
            try:
                snap = s.sample()
            except (EngineGone, EngineNotRunning) as e:
                gone.append(e)
                return
            rows, cols = scr.getmaxyx()
            lines = render(snap)
            lines.append("")
            lines.append("q quits" + (f"   ({s.note})" if s.note else ""))
            scr.erase()
            for y, line in enumerate(lines[:max(rows - 1, 0)]):
                try:
                    scr.addnstr(y, 0, line, max(cols - 1, 0),
                                curses.A_BOLD if line and not line.startswith(" ") else 0)
                except curses.error:
                    pass
            scr.refresh()
            deadline = time.monotonic() + interval
            while True:                      # keys, until the next refresh is due
                key = scr.getch()
                if key in (ord("q"), ord("Q"), 27):
                    return
                if key == -1 or time.monotonic() >= deadline:
                    break
                scr.timeout(max(int((deadline - time.monotonic()) * 1000), 0))
            scr.timeout(int(interval * 1000))

    curses.wrapper(loop)
    if gone:
        return _stopped(gone[0])
    return 0


# -- rendering ------------------------------------------------------------------------------

def render(snap: dict) -> list[str]:
    """One frame of text lines from a ``EngineReader.snapshot()`` (plus ``_prev`` for rates)."""
    prev = snap.get("_prev")
    dt = (snap["time_ns"] - prev["time_ns"]) / 1e9 if prev else 0.0
    ctl = snap["control"]
    kill = "TRIPPED" if ctl["kill_switch"] else "off"
    out = [f"pyrt top - engine {snap['engine']} (supervisor pid {snap['pid']}, {snap['source']})"
           f"  up {_dur(snap['uptime_s'])}  {time.strftime('%H:%M:%S')}",
           f"RISK  trading {ctl['trading_state']}  kill switch {kill}"
           + (f" ({ctl['kill_cause']}, stage {ctl['kill_stage']})" if ctl["kill_switch"] else "")]
    rej = [f"{st}.{k}={v:,}" for st, cs in snap["counters"].items() for k, v in cs.items()
           if (k.startswith("rej_") or k.startswith("rejected_")) and v]
    out.append("  rejections: " + (", ".join(rej) if rej else "none"))
    for table, row in snap.get("state", {}).items():
        out += _wrap(f"  {table}: ", [f"{k}={_num(v)}" for k, v in row.items()
                                      if not k.endswith("_ns")])          # timestamps: noise here

    sw = max([len(n) for n in snap["stages"]] + [6]) + 2
    out.append("")
    out.append(f"{'STAGES':<{sw + 2}}{'process':<10}{'status':<10}{'pid':>8}{'cpu':>5}{'hb age':>10}"
               f"{'work/s':>12}{'cycles/s':>12}{'errors':>8}")
    for name, st in snap["stages"].items():
        p = prev["stages"].get(name) if prev else None
        work = _rate(st["work"], p and p["work"], dt)
        cyc = _rate(st["cycles"], p and p["cycles"], dt)
        out.append(f"  {name:<{sw}}{str(st['process']):<10}{st['status']:<10}{st['pid']:>8}"
                   f"{st['cpu'] if st['cpu'] >= 0 else '-':>5}{_age(st['heartbeat_age_s']):>10}"
                   f"{work:>12}{cyc:>12}{st['errors']:>8}")

    rw = max([len(n) for n in snap["rings"]] + [6]) + 2
    out.append("")
    out.append(f"{'RINGS':<{rw + 2}}{'producer->consumer':<20}{'depth':>8}{'capacity':>10}{'high water':>12}"
               f"{'times full':>12}{'dropped':>10}{'recs/s':>12}")
    for name, r in snap["rings"].items():
        p = prev["rings"].get(name) if prev else None
        rate = _rate(r["published"], p and p["published"], dt)
        out.append(f"  {name:<{rw}}{r['producer'] + '->' + r['consumer']:<20}{r['depth']:>8,}"
                   f"{r['capacity']:>10,}{r['high_water']:>12,}{r['times_full']:>12,}"
                   f"{r['dropped']:>10,}{rate:>12}")

    out.append("")
    hw = max([len(n) for n in snap["latency_ns"]] + [20]) + 2
    out.append(f"{'LATENCY':<{hw + 2}}{'count':>12}{'p50':>10}{'p99':>10}{'p99.9':>10}{'max':>10}")
    for name, h in snap["latency_ns"].items():
        out.append(f"  {name:<{hw}}{h['count']:>12,}{_ns(h['p50']):>10}{_ns(h['p99']):>10}"
                   f"{_ns(h['p999']):>10}{_ns(h['max']):>10}")
    if not snap["latency_ns"]:
        out.append("  (nothing recorded yet)")

    yw = max([len(n) for n in snap["symbols"]] + [6]) + 2
    if snap["tops"]:
        out.append("")
        out.append(f"{'BOOK':<{yw + 2}}{'bid':>12}{'ask':>12}{'bid size':>10}{'ask size':>10}{'last':>12}"
                   f"{'spread':>10}{'age':>10}")
        for sym, t in snap["tops"].items():
            if not t["valid"]:
                out.append(f"  {sym:<{yw}}{'(no quote yet)':>24}")
                continue
            out.append(f"  {sym:<{yw}}{t['bid']:>12.4f}{t['ask']:>12.4f}{t['bid_size']:>10g}"
                       f"{t['ask_size']:>10g}{t['last']:>12.4f}{t['spread']:>10.4f}"
                       f"{_age(t['age_s']):>10}")

    pos = {s: p for s, p in snap["positions"].items() if p["fills"] or p["qty"]}
    out.append("")
    out.append(f"{'POSITIONS':<{yw + 2}}{'qty':>10}{'avg px':>12}{'realized':>12}{'unrealized':>12}{'fees':>10}"
               f"{'P&L':>12}{'fills':>8}")
    for sym, p in pos.items():
        out.append(f"  {sym:<{yw}}{p['qty']:>10g}{p['avg_px']:>12.4f}{p['realized']:>12.2f}"
                   f"{p['unrealized']:>12.2f}{p['fees']:>10.2f}{p['pnl']:>12.2f}{p['fills']:>8,}")
    if pos:
        tot = {k: sum(p[k] for p in pos.values()) for k in ("realized", "unrealized", "fees", "pnl")}
        out.append(f"  {'total':<{yw}}{'':>10}{'':>12}{tot['realized']:>12.2f}{tot['unrealized']:>12.2f}"
                   f"{tot['fees']:>10.2f}{tot['pnl']:>12.2f}")
    else:
        out.append("  (flat, no fills)")
    return out


def _wrap(head: str, items: list[str], width: int = 110) -> list[str]:
    lines, line = [], head
    for it in items:
        if len(line) + len(it) + 2 > width and line.strip() != head.strip():
            lines.append(line.rstrip(", "))
            line = " " * len(head)
        line += it + ", "
    lines.append(line.rstrip(", "))
    return lines


def _num(v) -> str:
    return f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)


def _rate(now, before, dt) -> str:
    if before is None or dt <= 0:
        return "-"
    return f"{(now - before) / dt:,.0f}"


_ns = report.fmt_ns


def _age(s) -> str:
    return "-" if s is None else _ns(max(s, 0.0) * 1e9)


def _dur(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else \
        f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
