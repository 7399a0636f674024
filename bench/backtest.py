"""Backtest benchmark: events/s through the fused backtest pipeline, bars/s, sweep scaling.

One run (``pyrt bench backtest --json``, or ``PYTHONPATH=. python -m bench.backtest --json``)
measures, with its baselines in the same run:

1. **L2 events/s** (``pipeline``): ``run_backtest`` (``pyrt_shm.research.backtest``: every
   stage fused in one process on the data clock, natively compiled) over ``--events`` L2
   market-data records made once by ``procs.feed:SyntheticFeed`` with ``book_levels`` (book
   snapshots, level deltas, quotes and trades over 4 symbols), replayed from a ``.npy`` with
   ``load_ticks``, through the L2 book, the EmaCross strategy, the 20 pre-trade checks and the
   ``sim`` venue (``config/backtest-ema.toml``; venue latency 0 and limits that do not bind,
   so every signal becomes an order and a fill, as in the baseline). Each record has its own
   data instant (``--spacing-us`` apart). Timed: the replay loop (``BacktestResult.elapsed_s``;
   setup and compilation excluded, reported apart). One process, one thread: events/s is
   events/s per core.
2. **Bars/s** (``bars``): ``run_backtest`` with ``config/backtest-bars.toml`` (ReplayBars ->
   EmaCross on each bar's close -> risk -> sim venue) over ``--bars`` one-minute OHLCV bars.
3. **Baselines**, same data, same logic, same run: a plain-Python event loop (per-symbol L2
   book in dicts with the book stage's rules for quotes, deltas, snapshots and stale levels,
   the same EMA crossover with the same seeding and warm-up, market orders filled at the
   touch with the same fee), written as a tuned loop (columns as lists, ``zip``, locals, no
   attribute lookups, gc off), and for bars the same over bars. Their order counts are
   reported next to the engine's as a check that the logic is the same. Also a **numba
   kernel** of the same logic over the same arrays, with the engine's own book code
   (``procs.l2book.apply_tick``) but no rings, stages, risk or venue: a ceiling, not a peer.
4. **Decomposition** (``pipeline_shared_instants``): the same records with timestamps
   coarsened so ``--instant-ticks`` records share each data instant; the per-event and
   per-instant costs follow from the two runs (``per_event_ns``, ``per_instant_ns``).
5. **Sweep scaling** (``sweep``): ``--sweep-runs`` backtests of a parameter grid (EMA fast x
   slow) over the first ``--sweep-events`` records, through ``pyrt_shm.research.optimize``'s
   evaluator and local process pool (``LocalExecutor``, fork), once per ``--workers`` count;
   runs/s excludes the pool's start (reported as ``startup_s``).

Target: >= 5 M events/s per core through the pipeline (reported as met or missed, never
asserted). Ratios: engine / Python (how many times faster the engine is). Nothing touches
/dev/shm (private memory). Default run: under ~90 s on a 2-vCPU VM.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import replace

import numpy as np
from numba import njit

from layouts.market import (BOOK_FIRST, BOOK_LAST, BOOK_NO_LEVEL, TICK, TICK_BAR, TICK_BOOK_DELTA,
                            TICK_BOOK_SNAPSHOT, TICK_QUOTE, TICK_TRADE)
from procs.l2book import COUNTER_NAMES, EV_BOOK, apply_tick, best, new_book

from .host import host_info

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK_CONFIG = os.path.join(ROOT, "config", "backtest-ema.toml")
BAR_CONFIG = os.path.join(ROOT, "config", "backtest-bars.toml")
SYMBOLS = ("SYM0", "SYM1", "SYM2", "SYM3")
T0_NS = 1_704_205_800_000_000_000          #: 2024-01-02 14:30 UTC: the data's first instant
BAR_NS = 60_000_000_000
TARGET_EVENTS_PER_S = 5_000_000
FAST, SLOW, QTY = 8, 32, 100.0               #: EmaCross defaults (the configs use them)
FEE_PER_SHARE = 0.005
SWEEP_FASTS = (4, 5, 6, 8, 10, 12, 14, 16)
SWEEP_SLOWS = (24, 32, 40, 48, 64, 80, 96, 128)     #: the sweep's grid: up to 64 runs
BAR_SLIPPAGE_BPS = 1.0                       #: config/backtest-bars.toml's exec slippage
#: Limits that never bind: the benchmark measures the full path of every order (and the
#: baseline, which has no limits, makes the same orders). Rate limits would run on data time.
#: Keys at their defaults (P&L method, restricted symbols, stops) are spelled out too, so a
#: change of the shipped defaults cannot make one bind. The live -> backtest parity test
#: (tests/pyrt_shm/test_parity_live_backtest.py) uses these limits for the same reason.
LOOSE_LIMITS = """
[account]
starting_equity = 1000000.0
leverage = 1000.0
pnl_method = "average"

[orders]
max_order_qty = 1e9
max_order_notional = 1e15
max_open_orders = 4096
rate_per_sec = 0
rate_per_min = 0
price_collar_bps = 0.0

[positions]
max_position = 1e12
max_gross_exposure = 1e18
max_net_exposure = 1e18
max_concentration = 1e9
restricted = []

[loss]
daily_loss_limit = 0.0
max_drawdown = 0.0
auto_halt = false
stop_loss_bps = 0.0
trailing_stop_bps = 0.0
"""


# -- data ------------------------------------------------------------------------------------------

def make_ticks(n: int, seed: int = 42, book_levels: int = 10, spacing_ns: int = 1000) -> np.ndarray:
    """``n`` L2 records from ``SyntheticFeed`` (its own generator, run once, unpaced), with
    ``exch_ns = recv_ns = T0 + i * spacing_ns``: every record its own data instant."""
    from procs.feed import SyntheticFeed
    from pyrt_shm.config import load_topology, override_from_dotted
    from pyrt_shm.wiring import EngineMemory

    over = {"stages.feed.params.rate": 0, "stages.feed.params.seed": seed,
            "stages.feed.params.max_ticks": n, "stages.feed.params.book_levels": book_levels,
            "stages.feed.params.batch": 8192, "engine.symbols": list(SYMBOLS)}
    topo = load_topology(None, overrides=override_from_dotted(over), available_cpus={0, 1}, isolated_cpus=())
    mem = EngineMemory(topo, backend="local")
    feed = SyntheticFeed(mem.stage_context("feed"))
    ring = next(r for r in mem.rings.values() if r.dtype == TICK)
    out = np.zeros(n, TICK)
    got = 0
    while got < n:
        feed.do_work(0)
        part = ring.poll(65536)
        out[got:got + len(part)] = part
        got += len(part)
        if len(part) == 0 and feed.counter("finished"):
            break
    out = out[:got]
    out["exch_ns"] = T0_NS + np.arange(got, dtype=np.int64) * spacing_ns
    out["recv_ns"] = out["exch_ns"]
    return out


def make_bars(n_bars: int, seed: int = 7) -> np.ndarray:
    """``n_bars`` one-minute OHLCV bars (TICK_BAR records), the symbols in turn each minute:
    a log random walk of closes, open = the previous close, high/low around both."""
    rng = np.random.default_rng(seed)
    nsym = len(SYMBOLS)
    per = -(-n_bars // nsym)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, (per, nsym)), axis=0))
    prev = np.vstack([np.full((1, nsym), 100.0), close[:-1]])
    wiggle = np.abs(rng.normal(0.0, 5e-4, (per, nsym))) * close
    b = np.zeros((per, nsym), TICK)
    b["kind"] = TICK_BAR
    b["sym"] = np.arange(nsym)
    b["exch_ns"] = T0_NS + (np.arange(per, dtype=np.int64) * BAR_NS)[:, None]
    b["recv_ns"] = b["exch_ns"]
    b["price"] = np.round(close, 2)                          # close
    b["bid"] = np.round(prev, 2)                             # open
    b["ask"] = np.round(np.maximum(close, prev) + wiggle, 2)  # high
    b["bid_size"] = np.round(np.minimum(close, prev) - wiggle, 2)  # low
    b["size"] = np.round(rng.uniform(1e4, 1e5, (per, nsym)))  # volume
    b["ask_size"] = np.round(0.5 * (b["price"] + b["bid"]), 4)      # vwap
    out = b.reshape(-1)[:n_bars].copy()
    out["seq"] = np.arange(len(out))
    return out


def _save(dirname: str, name: str, records: np.ndarray):
    """Save ``records`` as a .npy and load them back through ``load_ticks`` (the public path)."""
    from pyrt_shm.research.data import load_ticks

    path = os.path.join(dirname, name)
    np.save(path, records)
    md = load_ticks(path, symbols=SYMBOLS)
    # load_ticks maps a sorted .npy read-only; numba compiles separately for read-only and
    # writable arrays, so every run here gets the same (writable, in-memory) type: one compile.
    return replace(md, ticks=np.array(md.ticks))


def _kinds(t: np.ndarray) -> dict:
    names = {TICK_TRADE: "trades", TICK_QUOTE: "quotes", TICK_BOOK_DELTA: "book_deltas",
             TICK_BOOK_SNAPSHOT: "book_snapshot_records", TICK_BAR: "bars"}
    k, c = np.unique(t["kind"], return_counts=True)
    return {names.get(int(a), str(int(a))): int(b) for a, b in zip(k, c)}


# -- the engine ------------------------------------------------------------------------------------

def _overrides(limits_path: str, extra: dict | None = None) -> dict:
    over = {"stages.risk.params.limits": limits_path, "stages.exec.params.latency_us": 0,
            "stages.exec.params.slippage_bps": 0.0}
    over.update(extra or {})
    return over


def run_engine(config: str, data, overrides: dict, repeats: int) -> dict:
    """Best of ``repeats`` timed backtests (after one that compiles and warms the caches)."""
    from pyrt_shm.research.backtest import run_backtest

    warm = replace(data, ticks=data.ticks[:min(len(data), 5000)])
    t = time.perf_counter()
    run_backtest(config, warm, overrides=overrides)
    compile_s = time.perf_counter() - t
    best = None
    for _ in range(repeats):
        gc.collect()
        t = time.perf_counter()
        r = run_backtest(config, data, overrides=overrides)
        wall = time.perf_counter() - t
        if best is None or r.elapsed_s < best[0].elapsed_s:
            best = (r, wall)
    r, wall = best
    c = r.counters
    events = int(r.events)
    return {"events": events, "elapsed_s": round(r.elapsed_s, 6), "events_per_s": events / r.elapsed_s,
            "wall_s": round(wall, 4), "setup_s": round(float(r.info.get("setup_s", 0.0)), 4),
            "first_call_s": round(compile_s, 3), "repeats": repeats, "loop": r.info.get("loop"),
            "intents": int(c.get("signal", {}).get("intents_out", 0)), "orders": int(len(r.orders)),
            "fills": int(len(r.fills)), "rejected": int(c.get("risk", {}).get("rejected", 0)),
            "book_events": int(c.get("book", {}).get("events_out", 0))}


# -- baselines -------------------------------------------------------------------------------------
#
# The two plain-Python loops below repeat the EMA crossover and fill lines, each inside its
# own loop, on purpose: a function call per event costs CPython about a third of the bar
# loop's speed (2.5 vs 3.8 M bars/s measured), which would understate the baseline the
# ratios compare against. What they share outside their loops is here.

def _ema_cross_state(nsym: int) -> tuple:
    """Per-symbol lists of the baselines' EMA crossover: fast EMA, slow EMA, count of prices,
    sign of fast - slow, position, cash."""
    return [0.0] * nsym, [0.0] * nsym, [0] * nsym, [0] * nsym, [0.0] * nsym, [0.0] * nsym


class _GcOffTimer:
    """Time a block with the garbage collector off (a tuned loop's habit), restoring it after;
    ``elapsed_s`` is set on exit (the clock is read before gc comes back on)."""

    def __enter__(self):
        self.gc_was = gc.isenabled()
        gc.disable()
        self.elapsed_s = 0.0
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.elapsed_s = time.perf_counter() - self.t0
        if self.gc_was:
            gc.enable()
        return False


def python_l2_ema(ticks: np.ndarray, nsym: int, fast: int = FAST, slow: int = SLOW, qty: float = QTY,
                  fee: float = FEE_PER_SHARE) -> dict:
    """The plain-Python event loop (see module doc): L2 book top + EMA crossover + fills."""
    cols = [ticks[f].tolist() for f in ("kind", "sym", "flags", "price", "size", "bid", "ask",
                                        "bid_size", "ask_size")]
    af, asl = 2.0 / (fast + 1), 2.0 / (slow + 1)
    bids = [dict() for _ in range(nsym)]
    asks = [dict() for _ in range(nsym)]
    bb = [0.0] * nsym                       # best bid / ask price (0: side empty)
    ba = [0.0] * nsym
    sb = [None] * nsym                      # staged snapshot (bids, asks) per symbol
    ef, es, cnt, sign, pos, cash = _ema_cross_state(nsym)
    orders = 0
    QUOTE, DELTA, SNAP = TICK_QUOTE, TICK_BOOK_DELTA, TICK_BOOK_SNAPSHOT
    FIRST, LAST, NOLEV = BOOK_FIRST, BOOK_LAST, BOOK_NO_LEVEL
    with _GcOffTimer() as timer:
        for k, s, fl, p, q, b, a, bq, aq in zip(*cols):
            if k == QUOTE:
                if b >= a:
                    continue
                bd, ad = bids[s], asks[s]
                if bb[s] > b:
                    for x in [x for x in bd if x > b]:
                        del bd[x]
                bd[b] = bq
                bb[s] = b
                if ad and ba[s] < a:
                    for x in [x for x in ad if x < a]:
                        del ad[x]
                ad[a] = aq
                ba[s] = a
            elif k == DELTA:
                if fl & 1 == 0:
                    bd = bids[s]
                    if q == 0.0:
                        if p in bd:
                            del bd[p]
                            if p == bb[s]:
                                bb[s] = max(bd) if bd else 0.0
                    else:
                        bd[p] = q
                        if p > bb[s]:
                            bb[s] = p
                        if ba[s] and ba[s] <= p:             # stale asks at p or better go
                            ad = asks[s]
                            for x in [x for x in ad if x <= p]:
                                del ad[x]
                            ba[s] = min(ad) if ad else 0.0
                else:
                    ad = asks[s]
                    if q == 0.0:
                        if p in ad:
                            del ad[p]
                            if p == ba[s]:
                                ba[s] = min(ad) if ad else 0.0
                    else:
                        ad[p] = q
                        if ba[s] == 0.0 or p < ba[s]:
                            ba[s] = p
                        if bb[s] and bb[s] >= p:
                            bd = bids[s]
                            for x in [x for x in bd if x >= p]:
                                del bd[x]
                            bb[s] = max(bd) if bd else 0.0
            elif k == SNAP:
                if fl & FIRST:
                    sb[s] = ({}, {})
                st = sb[s]
                if st is None:
                    continue
                if not fl & NOLEV:
                    st[fl & 1][p] = q
                if not fl & LAST:
                    continue
                sb[s] = None
                nb, na = st
                hb, la = (max(nb) if nb else 0.0), (min(na) if na else 0.0)
                if nb and na and hb >= la:
                    continue                                 # crossed: refused
                bids[s], asks[s], bb[s], ba[s] = nb, na, hb, la
            else:
                continue                                     # trades: no quote event
            b0, a0 = bb[s], ba[s]
            if b0 == 0.0 or a0 == 0.0:
                continue
            mid = 0.5 * (b0 + a0)
            c = cnt[s]
            if c == 0:
                f_ = mid
                s_ = mid
            else:
                f_ = ef[s] + af * (mid - ef[s])
                s_ = es[s] + asl * (mid - es[s])
            ef[s] = f_
            es[s] = s_
            cnt[s] = c + 1
            d = f_ - s_
            cur = 1 if d > 0.0 else (-1 if d < 0.0 else 0)
            prev = sign[s]
            sign[s] = cur
            if c + 1 <= slow:
                continue
            if prev <= 0 < cur:
                pos[s] += qty
                cash[s] -= qty * a0 + qty * fee
                orders += 1
            elif prev >= 0 > cur:
                pos[s] -= qty
                cash[s] += qty * b0 - qty * fee
                orders += 1
    elapsed = timer.elapsed_s
    return {"impl": "python", "events": len(cols[0]), "elapsed_s": round(elapsed, 6),
            "events_per_s": len(cols[0]) / elapsed, "orders": orders}


def python_bars_ema(bars: np.ndarray, nsym: int, fast: int = FAST, slow: int = SLOW, qty: float = QTY,
                    fee: float = FEE_PER_SHARE, slippage_bps: float = BAR_SLIPPAGE_BPS) -> dict:
    """Plain-Python bar loop: EMA crossover of closes, market orders filled at the close."""
    cols = [bars[f].tolist() for f in ("sym", "price", "size")]
    af, asl = 2.0 / (fast + 1), 2.0 / (slow + 1)
    slip = slippage_bps * 1e-4
    ef, es, cnt, sign, pos, cash = _ema_cross_state(nsym)
    orders = 0
    with _GcOffTimer() as timer:
        for s, c_px, vol in zip(*cols):
            if vol <= 0.0:
                continue
            c = cnt[s]
            if c == 0:
                f_ = c_px
                s_ = c_px
            else:
                f_ = ef[s] + af * (c_px - ef[s])
                s_ = es[s] + asl * (c_px - es[s])
            ef[s] = f_
            es[s] = s_
            cnt[s] = c + 1
            d = f_ - s_
            cur = 1 if d > 0.0 else (-1 if d < 0.0 else 0)
            prev = sign[s]
            sign[s] = cur
            if c + 1 <= slow:
                continue
            if prev <= 0 < cur:
                pos[s] += qty
                cash[s] -= qty * c_px * (1.0 + slip) + qty * fee
                orders += 1
            elif prev >= 0 > cur:
                pos[s] -= qty
                cash[s] += qty * c_px * (1.0 - slip) - qty * fee
                orders += 1
    elapsed = timer.elapsed_s
    return {"impl": "python", "bars": len(cols[0]), "elapsed_s": round(elapsed, 6),
            "bars_per_s": len(cols[0]) / elapsed, "orders": orders}


@njit(cache=True)
def _kernel_l2_ema(ticks, lv, st, counters, nsym, af, asl, warmup, qty, fee):
    """The baseline's logic in one numba loop over the records, with the engine's book code."""
    ef = np.zeros(nsym)
    es = np.zeros(nsym)
    cnt = np.zeros(nsym, np.int64)
    sign = np.zeros(nsym, np.int64)
    pos = np.zeros(nsym)
    cash = np.zeros(nsym)
    orders = 0
    for i in range(ticks.shape[0]):
        t = ticks[i]
        if apply_tick(t, lv, st, counters) != EV_BOOK:
            continue
        s = t.sym
        b0, bs = best(lv, st, s, 0)
        a0, as_ = best(lv, st, s, 1)
        if not (bs > 0.0 and as_ > 0.0):
            continue
        mid = 0.5 * (b0 + a0)
        if cnt[s] == 0:
            ef[s] = mid
            es[s] = mid
        else:
            ef[s] += af * (mid - ef[s])
            es[s] += asl * (mid - es[s])
        cnt[s] += 1
        d = ef[s] - es[s]
        cur = 1 if d > 0.0 else (-1 if d < 0.0 else 0)
        prev = sign[s]
        sign[s] = cur
        if cnt[s] <= warmup:
            continue
        if prev <= 0 and cur > 0:
            pos[s] += qty
            cash[s] -= qty * a0 + qty * fee
            orders += 1
        elif prev >= 0 and cur < 0:
            pos[s] -= qty
            cash[s] += qty * b0 - qty * fee
            orders += 1
    return orders


def numba_kernel(ticks: np.ndarray, nsym: int, capacity: int = 64) -> dict:
    def once(t):
        b = new_book(nsym, capacity)
        counters = np.zeros(len(COUNTER_NAMES), np.uint64)
        t0 = time.perf_counter()
        n = _kernel_l2_ema(t, b["lv"], b["st"], counters, nsym, 2.0 / (FAST + 1), 2.0 / (SLOW + 1), SLOW,
                           QTY, FEE_PER_SHARE)
        return n, time.perf_counter() - t0

    once(ticks[:1000])                                       # compile
    orders, elapsed = min((once(ticks) for _ in range(2)), key=lambda x: x[1])
    return {"impl": "numba kernel (procs.l2book + EMA + fills, no pipeline)", "events": int(len(ticks)),
            "elapsed_s": round(elapsed, 6), "events_per_s": len(ticks) / elapsed, "orders": int(orders)}


# -- what a data instant costs ----------------------------------------------------------------------

def stage_cycle_ns(data, overrides: dict, seconds: float = 0.05) -> dict:
    """ns per duty cycle of each stage alone with nothing to do (its fixed cost per data
    instant), measured in a native duty loop (``pyrt_shm.jit_loop.JitProcessLoop``, busy-spin
    mode, bounded to ``seconds`` per stage; each cycle includes one clock read and one pause)."""
    from types import MappingProxyType

    from pyrt_shm.jit_loop import MODE_BUSY_SPIN, JitProcessLoop
    from pyrt_shm.research.backtest import prepare
    from pyrt_shm.wiring import EngineMemory

    topo, data, src = prepare(TICK_CONFIG, replace(data, ticks=data.ticks[:1]), overrides)
    mem = EngineMemory(topo, "local")
    try:
        stages = []
        for name in topo.processes[0].stages:
            ctx = mem.stage_context(name)
            if name == src:
                ctx.params = MappingProxyType({**ctx.params, "data": data})
            stages.append(mem.classes[name](ctx))
        for st in stages:
            st.warm_up()
        out = {}
        for st in stages:
            loop = JitProcessLoop([st], MODE_BUSY_SPIN, mem.hists, 0)
            loop.run_for(time.monotonic_ns() + 1_000_000)          # compile / warm
            t = time.monotonic_ns()
            cycles, work, _ = loop.run_for(t + int(seconds * 1e9))
            out[st.name] = (time.monotonic_ns() - t) / max(cycles, 1)
        return out
    finally:
        mem.close()


# -- sweep -----------------------------------------------------------------------------------------

def sweep(data, limits_path: str, runs: int, worker_counts: list[int]) -> dict:
    """``runs`` backtests of an EMA grid on the local pool, once per worker count."""
    from pyrt_shm.research.executors import LocalExecutor, Task, usable_cpus
    from pyrt_shm.research.optimize import BacktestEvaluator, run_tasks, start_executor

    combos = [(f, s) for s in SWEEP_SLOWS for f in SWEEP_FASTS][:runs]
    fixed = _overrides(limits_path)
    tasks = [Task(i, {**fixed, "stages.signal.params.fast": f, "stages.signal.params.slow": s,
                      "stages.signal.params.warmup": s}, None) for i, (f, s) in enumerate(combos)]
    ev = BacktestEvaluator(TICK_CONFIG, data, warmup_ticks=2000)
    rows = []
    for w in worker_counts:
        with LocalExecutor(workers=w) as ex:
            startup = start_executor(ex, ev)
            done, wall = run_tasks(ex, ev, tasks)
        ok = sum(r.ok for r in done)
        errors = sorted({r.error for r in done if not r.ok})[:3]
        rows.append({"workers": w, "runs": len(done), "ok": ok, "elapsed_s": round(wall, 4),
                     "runs_per_s": len(done) / wall, "startup_s": round(startup, 3),
                     "events_per_s_total": len(done) * len(data) / wall, **({"errors": errors} if errors else {})})
    base = rows[0]["runs_per_s"]
    for r in rows:
        r["speedup"] = r["runs_per_s"] / base
        r["efficiency"] = r["speedup"] * rows[0]["workers"] / r["workers"]
    return {"executor": "pyrt_shm.research.optimize (BacktestEvaluator + LocalExecutor, fork)",
            "usable_cpus": usable_cpus(), "events_per_run": len(data), "grid": "fast x slow (EmaCross)",
            "results": rows}


# -- main ------------------------------------------------------------------------------------------

def _workers(text: str) -> list[int]:
    from pyrt_shm.research.executors import usable_cpus

    out = []
    for tok in text.split(","):
        tok = tok.strip()
        if tok == "all":
            out.append(usable_cpus())
        elif tok.isdigit() and int(tok) >= 1:
            out.append(int(tok))
        else:
            raise argparse.ArgumentTypeError(f"a list of counts >= 1 or 'all', got {tok!r}")
    return out


def run(args) -> dict:
    t_start = time.time()
    host = host_info()
    out = {"bench": "backtest", "host": host}
    nsym = len(SYMBOLS)
    with tempfile.TemporaryDirectory(prefix="pyrt-bench-backtest-") as tmp:
        limits = os.path.join(tmp, "limits.toml")
        with open(limits, "w") as f:
            f.write(LOOSE_LIMITS)
        t = time.perf_counter()
        ticks = make_ticks(args.events, seed=args.seed, book_levels=args.book_levels,
                           spacing_ns=int(args.spacing_us * 1000))
        data = _save(tmp, "l2.npy", ticks)
        out["data"] = {"events": len(data), "symbols": nsym, "book_levels": args.book_levels,
                       "spacing_ns": int(args.spacing_us * 1000), "kinds": _kinds(data.ticks),
                       "generate_s": round(time.perf_counter() - t, 3), "generator": "procs.feed:SyntheticFeed"}
        over = _overrides(limits)
        pipe = run_engine(TICK_CONFIG, data, over, args.repeats)
        out["pipeline"] = {"config": os.path.relpath(TICK_CONFIG, ROOT), **pipe,
                           "per_core_events_per_s": pipe["events_per_s"]}
        # the same records, ``instant_ticks`` of them per data instant
        coarse = data.ticks.copy()
        step = int(args.spacing_us * 1000) * args.instant_ticks
        coarse["exch_ns"] = T0_NS + (coarse["exch_ns"] - T0_NS) // step * step
        coarse["recv_ns"] = coarse["exch_ns"]
        shared = run_engine(TICK_CONFIG, replace(data, ticks=coarse), over, args.repeats)
        per_event = 1e9 / shared["events_per_s"]
        per_instant = max(1e9 / pipe["events_per_s"] - per_event, 0.0)
        out["pipeline_shared_instants"] = {**shared, "ticks_per_instant": args.instant_ticks,
                                           "per_event_ns": per_event, "per_instant_ns": per_instant}
        out["stage_cycle_ns"] = stage_cycle_ns(data, over)
        base = python_l2_ema(data.ticks, nsym)
        out["baseline"] = {**base, "same_orders_as_engine": base["orders"] == pipe["intents"]}
        out["numba_kernel"] = numba_kernel(np.ascontiguousarray(data.ticks), nsym)

        bars = _save(tmp, "bars.npy", make_bars(args.bars, seed=args.seed))
        eng_b = run_engine(BAR_CONFIG, bars, {"stages.risk.params.limits": limits}, args.repeats)
        py_b = python_bars_ema(bars.ticks, nsym)
        out["bars"] = {"config": os.path.relpath(BAR_CONFIG, ROOT), "bars": eng_b["events"],
                       "bars_per_s": eng_b["events_per_s"], **{k: v for k, v in eng_b.items() if k != "events_per_s"},
                       "baseline": {**py_b, "same_orders_as_engine": py_b["orders"] == eng_b["intents"]},
                       "ratio_vs_python": eng_b["events_per_s"] / py_b["bars_per_s"]}

        sub = replace(data, ticks=data.ticks[:min(len(data), args.sweep_events)])
        out["sweep"] = sweep(sub, limits, args.sweep_runs, args.workers)

    ev = out["pipeline"]["events_per_s"]
    out["ratios"] = {"pipeline_vs_python": ev / out["baseline"]["events_per_s"],
                     "kernel_ceiling_vs_pipeline": out["numba_kernel"]["events_per_s"] / ev,
                     "shared_instants_vs_pipeline": out["pipeline_shared_instants"]["events_per_s"] / ev,
                     "bars_vs_python": out["bars"]["ratio_vs_python"]}
    out["targets"] = [{"name": "backtest events/s per core (L2 pipeline)", "target": TARGET_EVENTS_PER_S,
                       "measured": ev, "met": ev >= TARGET_EVENTS_PER_S}]
    # what limits it: the fixed cost of a data instant (every stage's step runs once however
    # little it has to do; the slowest step's idle cycle) against the cost of an event
    cyc = out["stage_cycle_ns"]
    slowest = max(cyc, key=cyc.get)
    shared = out["pipeline_shared_instants"]
    out["limits"] = {"per_instant_ns": shared["per_instant_ns"], "per_event_ns": shared["per_event_ns"],
                     "slowest_stage": slowest, "slowest_stage_cycle_ns": cyc[slowest],
                     "stage_cycles_ns_total": sum(cyc.values()),
                     "kernel_ceiling_events_per_s": out["numba_kernel"]["events_per_s"]}
    host["loadavg_end"] = round(os.getloadavg()[0], 2)
    out["elapsed_s"] = round(time.time() - t_start, 2)
    return out


def _fmt(v: float) -> str:
    return f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v / 1e3:.0f} k"


def table(r: dict) -> str:
    p, s, b, k, bars = r["pipeline"], r["pipeline_shared_instants"], r["baseline"], r["numba_kernel"], r["bars"]
    lines = [f"data: {r['data']['events']:,} L2 records {r['data']['kinds']}",
             f"{'measure':58s} {'per second':>12s} {'orders':>8s}",
             f"{'engine backtest, L2 pipeline (1 record / instant)':58s} {_fmt(p['events_per_s']):>12s} "
             f"{p['orders']:>8d}",
             f"{'engine backtest, ' + str(s['ticks_per_instant']) + ' records / instant':58s} "
             f"{_fmt(s['events_per_s']):>12s} {s['orders']:>8d}",
             f"{'plain Python loop (same logic)':58s} {_fmt(b['events_per_s']):>12s} {b['orders']:>8d}",
             f"{'numba kernel, no pipeline (ceiling)':58s} {_fmt(k['events_per_s']):>12s} {k['orders']:>8d}",
             f"{'engine backtest, bars (ReplayBars + EmaCross)':58s} {_fmt(bars['bars_per_s']):>12s} "
             f"{bars['orders']:>8d}",
             f"{'plain Python bar loop':58s} {_fmt(bars['baseline']['bars_per_s']):>12s} "
             f"{bars['baseline']['orders']:>8d}",
             f"per event {s['per_event_ns']:.0f} ns + per data instant {s['per_instant_ns']:.0f} ns; "
             f"engine / Python x{r['ratios']['pipeline_vs_python']:.1f} (bars x{r['ratios']['bars_vs_python']:.1f})",
             "idle duty cycle per stage: " + ", ".join(f"{k} {v:.0f} ns" for k, v in r["stage_cycle_ns"].items())]
    for w in r["sweep"]["results"]:
        lines.append(f"sweep {w['workers']} worker(s): {w['runs_per_s']:.2f} runs/s "
                     f"(x{w['speedup']:.2f}, efficiency {w['efficiency']:.2f}; {w['ok']}/{w['runs']} ok)")
    t = r["targets"][0]
    lines.append(f"target >= {_fmt(t['target'])} events/s per core: {'met' if t['met'] else 'MISSED'} "
                 f"({_fmt(t['measured'])})")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="pyrt bench backtest", description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print the JSON document (else a table)")
    ap.add_argument("--events", type=int, default=1_000_000, help="L2 records replayed (default 1000000)")
    ap.add_argument("--bars", type=int, default=200_000, help="bars replayed (default 200000)")
    ap.add_argument("--workers", type=_workers, default=None,
                    help="sweep worker counts, e.g. 1,all (default: 1,all)")
    ap.add_argument("--sweep-runs", type=int, default=8, help="backtests per sweep (default 8)")
    ap.add_argument("--sweep-events", type=int, default=100_000, help="records per sweep backtest (default 100000)")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per measure, best kept (default 2)")
    ap.add_argument("--book-levels", type=int, default=10, help="L2 levels per side in the data (default 10)")
    ap.add_argument("--spacing-us", type=float, default=1.0, help="data time between records, us (default 1)")
    ap.add_argument("--instant-ticks", type=int, default=256, help="records per instant in the decomposition run")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", metavar="FILE", help="also write the JSON document here")
    args = ap.parse_args(argv)
    if args.workers is None:
        args.workers = _workers("1,all")
    for name in ("events", "bars", "sweep_runs", "sweep_events", "repeats", "instant_ticks"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.events < 1000 or args.bars < 200:
        ap.error("--events must be >= 1000 and --bars >= 200 (the EMA needs its warm-up)")
    if not (args.spacing_us >= 0.001 and math.isfinite(args.spacing_us)):
        ap.error("--spacing-us must be >= 0.001 (1 ns)")
    if args.sweep_runs > len(SWEEP_FASTS) * len(SWEEP_SLOWS):
        ap.error(f"--sweep-runs: the grid has {len(SWEEP_FASTS) * len(SWEEP_SLOWS)} combinations")
    if not 0 <= args.book_levels <= 1000:
        ap.error("--book-levels must be between 0 and 1000")
    r = run(args)
    doc = json.dumps(r, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(doc + "\n")
    print(doc if args.json else table(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
