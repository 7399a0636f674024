"""Order-side benchmark: pre-trade checks, exec's order hand-off, sim venue matching.

One run (``pyrt bench orders --json``, or ``PYTHONPATH=. python -m bench.orders --json``)
measures, each next to a plain-Python baseline of the same logic in the same run:

1. **Pre-trade check per order** (``pretrade``): the risk stage's checks for one intent,
   exactly as risk runs them (a seqlock read of the symbol's top of book, then
   ``procs.risk_checks.pretrade``: every limit, the trading state, both rate buckets),
   timed one call at a time from a jitted loop with CLOCK_MONOTONIC (each sample includes
   one clock read, ``clock_ns`` below). Every intent passes (the longest path: all 20
   checks run). Baseline: the same checks over Python objects (dicts and attributes), timed
   with ``time.perf_counter_ns``. Also ``risk_decision``: check + book the open order + write
   the ORDER record (``procs.risk._new_order``), per order. Target: p99 <= 1 µs.
2. **Order decision to venue hand-off inside exec** (``handoff``): one ORDER record at a time
   through ``exec_step`` (intake: validation, order table, state machine NEW; hand-off: rate
   limiter, NEW -> SUBMITTED, ``sim_venue.submit``), from exec reading the record to the
   request entering the venue link: exec's own ``handoff`` HDR histogram. ``exec_step`` is
   the whole cycle per order (intake, hand-off, venue match at zero latency, state machine,
   FILL report). Baseline: a Python router doing the same steps on dicts.
3. **Sim venue matching throughput** (``matching``): orders/s through ``venue_step`` for a mix
   of market, marketable-limit and resting-limit orders over 4 symbols (arrival matching:
   displayed size, slippage, fees, queue position), and resting-order re-evaluations/s
   (1000 resting orders, the book moving under them). Baseline: the same rules in Python.

Ratios are baseline / numba (how many times faster the engine's code is). Nothing touches
/dev/shm (private memory, ``EngineMemory(backend="local")``).
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import sys
import time
from collections import deque

import numba
import numpy as np
from numba import njit

from layouts.market import TOP
from layouts.orders import BUY, ORDER_LIMIT, ORDER_MARKET, SELL, TIF_DAY, TIF_GTC
from procs.exec import exec_step
from procs.risk import _new_order
from procs.risk_checks import pretrade, read_top
from procs.sim_venue import DEPTH, submit, venue_step
from ringbuf import spsc
from ringbuf._atomics import monotonic_ns
from ringbuf.seqlock import write_begin, write_end

NSYM = 4
PCTS = (50, 90, 99, 99.9)
#: The matching benchmark uses the top of book only (the rules the Python baseline has).
_NODEP = (np.zeros(0, np.uint64), np.zeros(0, DEPTH), np.zeros(1, DEPTH))


# -- helpers ------------------------------------------------------------------------------------

def _pct(samples) -> dict:
    a = np.asarray(samples, dtype=np.float64)
    out = {f"p{p:g}_ns".replace(".", ""): float(np.percentile(a, p)) for p in PCTS}
    out.update(mean_ns=float(a.mean()), max_ns=float(a.max()), n=int(len(a)))
    return out


@njit(cache=True)
def _clock_pairs(n, out):
    for i in range(n):
        t0 = monotonic_ns()
        out[i] = monotonic_ns() - t0


def _py_clock_pairs(n):
    pc = time.perf_counter_ns
    out = [0] * n
    for i in range(n):
        t0 = pc()
        out[i] = pc() - t0
    return out


def _engine(exec_params=None, risk_params=None):
    """Private-memory engine over the embedded default topology with risk and exec built."""
    from pyrt_shm.config import load_topology, override_from_dotted
    from pyrt_shm.wiring import EngineMemory

    over = {"stages.signal.class": "procs.signal:EmaCrossSignal"}
    over.update({f"stages.exec.params.{k}": v for k, v in (exec_params or {}).items()})
    over.update({f"stages.risk.params.{k}": v for k, v in (risk_params or {}).items()})
    topo = load_topology(None, overrides=override_from_dotted(over), available_cpus={0, 1}, isolated_cpus=())
    mem = EngineMemory(topo, backend="local")
    for s in range(NSYM):
        mem.tables["tops"].write(s, sym=s, valid=1, bid=99.99 + s, ask=100.01 + s, bid_size=5000.0,
                                 ask_size=5000.0)
    return mem


def _intents(n, seed=1):
    rng = np.random.default_rng(seed)
    syms = rng.integers(0, NSYM, n).astype(np.uint32)
    sides = np.where(rng.random(n) < 0.5, BUY, SELL).astype(np.int8)
    qtys = (rng.integers(1, 10, n) * 10).astype(np.float64)
    ots = np.where(rng.random(n) < 0.5, ORDER_MARKET, ORDER_LIMIT).astype(np.uint8)
    lps = np.where(ots == ORDER_LIMIT, 100.0 + syms + np.where(sides == BUY, -0.05, 0.05), 0.0)
    refs = 100.0 + syms.astype(np.float64)
    return syms, sides, qtys, ots, lps, refs


# -- 1. pre-trade checks ------------------------------------------------------------------------

@njit(cache=True)
def _time_pretrade(n, syms, sides, qtys, ots, lps, refs, pos, rs, lim, lim_qty, lim_pos, restricted,
                   control, top_seqs, top_rows, top_buf, pv, out):
    acc = 0
    for i in range(n):
        t0 = monotonic_ns()
        valid, bid, ask = read_top(top_seqs, top_rows, syms[i], top_buf)
        r, px = pretrade(syms[i], sides[i], qtys[i], ots[i], TIF_DAY, lps[i], refs[i], pos, rs, lim,
                         lim_qty, lim_pos, restricted, control, valid, bid, ask, t0, pv, False)
        out[i] = monotonic_ns() - t0
        acc += r
    return acc


class PyRisk:
    """The pre-trade checks of procs.risk_checks in plain Python (same order, same rules)."""

    def __init__(self, lim: dict, tops: list, nsym: int):
        self.lim = lim
        self.tops = tops
        self.pos = [dict(qty=0.0, open_buy=0.0, open_sell=0.0) for _ in range(nsym)]
        self.restricted = [False] * nsym
        self.lim_qty = [lim["max_order_qty"]] * nsym
        self.lim_pos = [lim["max_position"]] * nsym
        self.control = {"kill_switch": 0, "trading_state": 0}
        self.rs = dict(day_pnl=0.0, drawdown=0.0, gross_exposure=0.0, net_exposure=0.0,
                       equity=lim["starting_equity"], open_orders=0)
        self.tok_s = self.tok_m = None
        self.tok_ns = 0

    def check(self, sym, side, q, ot, tif, lp, ref_px, now):
        L = self.lim
        nsym = len(self.pos)
        if not (sym < nsym and side in (BUY, SELL) and math.isfinite(q) and q > 0 and ot in (ORDER_MARKET, ORDER_LIMIT)
                and tif <= 3 and (ot != ORDER_LIMIT or (math.isfinite(lp) and lp > 0))):
            return "bad_intent", 0.0
        if self.control["kill_switch"]:
            return "kill_switch", 0.0
        state = self.control["trading_state"]
        if state == 2:
            return "halted", 0.0
        if self.restricted[sym]:
            return "restricted", 0.0
        p = self.pos[sym]
        if side == SELL:
            red = p["qty"] > 0 and q + p["open_sell"] <= p["qty"] + 1e-9
        else:
            red = p["qty"] < 0 and q + p["open_buy"] <= -p["qty"] + 1e-9
        if state == 1 and not red:
            return "reduce_only", 0.0
        if q > self.lim_qty[sym]:
            return "max_order_qty", 0.0
        t = self.tops[sym]
        valid = t["valid"] and t["bid"] > 0 and t["ask"] > 0
        bid, ask = t["bid"], t["ask"]
        collar = L["price_collar_bps"] * 1e-4
        if collar > 0 and not valid:
            return "no_market_data", 0.0
        px = lp if ot == ORDER_LIMIT else ((ask if side == BUY else bid) if valid else ref_px)
        if not px > 0:
            return "no_market_data", 0.0
        if collar > 0:
            if ot == ORDER_LIMIT:
                if (side == BUY and lp > ask * (1 + collar)) or (side == SELL and lp < bid * (1 - collar)):
                    return "price_collar", px
            elif ref_px > 0:
                if (side == BUY and ask > ref_px * (1 + collar)) or (side == SELL and bid < ref_px * (1 - collar)):
                    return "price_collar", px
        notional = q * px
        if notional > L["max_order_notional"]:
            return "max_order_notional", px
        r = self.rs
        if not red:
            if L["daily_loss_limit"] > 0 and r["day_pnl"] <= -L["daily_loss_limit"]:
                return "daily_loss", px
            if L["max_drawdown"] > 0 and r["drawdown"] >= L["max_drawdown"]:
                return "drawdown", px
            if side == BUY:
                after = p["qty"] + p["open_buy"] + q
                worst = max(abs(after), abs(p["qty"] - p["open_sell"]))
            else:
                after = p["qty"] - p["open_sell"] - q
                worst = max(abs(after), abs(p["qty"] + p["open_buy"]))
            if abs(after) > self.lim_pos[sym] + 1e-9:
                return "max_position", px
            if r["gross_exposure"] + notional > L["max_gross_exposure"]:
                return "gross_exposure", px
            if abs(r["net_exposure"] + (notional if side == BUY else -notional)) > L["max_net_exposure"]:
                return "net_exposure", px
            eq = r["equity"]
            if eq <= 0:
                return "buying_power", px
            if worst * px > L["max_concentration"] * eq:
                return "concentration", px
            if notional > eq * L["leverage"] - r["gross_exposure"]:
                return "buying_power", px
        if r["open_orders"] >= L["max_open_orders"]:
            return "max_open_orders", px
        rate_s, rate_m = L["rate_per_sec"], L["rate_per_min"]
        if rate_s > 0 or rate_m > 0:
            if self.tok_s is None:
                self.tok_s, self.tok_m, self.tok_ns = float(rate_s), float(rate_m), now
            elif now > self.tok_ns:
                dt = now - self.tok_ns
                self.tok_s = min(rate_s, self.tok_s + dt * rate_s / 1e9)
                self.tok_m = min(rate_m, self.tok_m + dt * rate_m / 60e9)
                self.tok_ns = now
            if rate_s > 0 and self.tok_s < 1:
                return "rate_per_sec", px
            if rate_m > 0 and self.tok_m < 1:
                return "rate_per_min", px
            self.tok_s -= 1
            self.tok_m -= 1
        return None, px


def bench_pretrade(n: int) -> dict:
    from procs.risk_limits import load_limits

    mem = _engine(risk_params={})
    risk = mem.build_stage("risk")
    lim = risk.lim.copy()
    lim["rate_per_sec"] = 1e12                                  # buckets on, never empty
    lim["rate_per_min"] = 1e12
    syms, sides, qtys, ots, lps, refs = _intents(n)
    tops = mem.tables["tops"]
    # a little state so the checks have something to look at
    pos = risk.pos.copy()
    pos["qty"] = [100.0, -50.0, 0.0, 20.0]
    pos["open_buy"] = [10.0, 0.0, 0.0, 0.0]
    pos["mark"] = 100.0 + np.arange(NSYM)
    rs = risk.rs.copy()
    rs["gross_exposure"] = 20_000.0
    pv = risk.pv.copy()
    out = np.zeros(n, np.int64)
    args = (syms, sides, qtys, ots, lps, refs, pos, rs, lim, risk.lim_qty, risk.lim_pos, risk.restricted,
            risk.control, tops.seqs, tops.rows, risk.top_buf, pv, out)
    _time_pretrade(min(n, 1000), *args)                         # compile + warm
    gc.disable()
    try:
        acc = _time_pretrade(n, *args)
    finally:
        gc.enable()
    assert acc == -n, f"{n + acc} of {n} benchmark intents were rejected"
    nb = _pct(out)
    clock = np.zeros(n, np.int64)
    _clock_pairs(n, clock)

    L = load_limits(None).values
    pylim = {**L["account"], **L["orders"], **L["positions"], **L["loss"]}
    pylim.update(rate_per_sec=1e12, rate_per_min=1e12)
    pyr = PyRisk(pylim, [{k: float(tops.read(s)[k]) for k in ("valid", "bid", "ask")} for s in range(NSYM)],
                 NSYM)
    for s, (q, ob) in enumerate(zip([100.0, -50.0, 0.0, 20.0], [10.0, 0.0, 0.0, 0.0])):
        pyr.pos[s].update(qty=q, open_buy=ob)
    pyr.rs["gross_exposure"] = 20_000.0
    m = min(n, 200_000)
    items = list(zip(syms[:m].tolist(), sides[:m].tolist(), qtys[:m].tolist(), ots[:m].tolist(),
                     lps[:m].tolist(), refs[:m].tolist()))
    pc = time.perf_counter_ns
    samples = [0] * m
    gc.disable()
    try:
        rejected = 0
        for i, (s, sd, q, ot, lp, ref) in enumerate(items):
            t0 = pc()
            t = pyr.tops[s]                       # the seqlock read's Python counterpart
            _ = (t["valid"], t["bid"], t["ask"])
            reason, _px = pyr.check(s, sd, q, ot, TIF_DAY, lp, ref, t0)
            samples[i] = pc() - t0
            rejected += reason is not None
    finally:
        gc.enable()
    assert rejected == 0, f"python baseline rejected {rejected}"
    py = _pct(samples)
    return {"numba": nb, "python": py, "clock_ns": _pct(clock), "py_clock_ns": _pct(_py_clock_pairs(m)),
            "ratio_p50": py["p50_ns"] / nb["p50_ns"], "ratio_p99": py["p99_ns"] / nb["p99_ns"],
            "target_p99_ns": 1000, "target_met": nb["p99_ns"] <= 1000}


@njit(cache=True)
def _time_decision(n, syms, sides, qtys, ots, lps, refs, out_ctl, out_recs, pos_seqs, pos_rows, pos, rs,
                   top_seqs, top_rows, top_buf, control, oo, lim, lim_qty, lim_pos, restricted, pv, mask,
                   counters, samples):
    for i in range(n):
        t0 = monotonic_ns()
        wr = spsc.head_of(out_ctl)
        r, oid = _new_order(t0, syms[i], sides[i], ots[i], TIF_DAY, qtys[i], lps[i], refs[i], 0,
                            np.uint64(i), 0, 0, 0, out_ctl, out_recs, wr, 0, pos_seqs, pos_rows, pos, rs,
                            top_seqs, top_rows, top_buf, control, oo, lim, lim_qty, lim_pos, restricted,
                            pv, mask, counters)
        samples[i] = monotonic_ns() - t0
        # undo the booking so every order sees the same state (not timed)
        o = oo[np.int64(np.uint64(oid) & np.uint64(mask))]
        o.id = np.uint64(0)
        p = pos[np.int64(syms[i])]
        if sides[i] == BUY:
            p.open_buy -= qtys[i]
        else:
            p.open_sell -= qtys[i]
        p.open_orders -= np.uint32(1)
        rs[0].open_orders -= np.uint64(1)
        rs[0].gross_exposure = 0.0
        rs[0].net_exposure = 0.0


def bench_decision(n: int) -> dict:
    mem = _engine()
    risk = mem.build_stage("risk")
    lim = risk.lim.copy()
    lim["rate_per_sec"] = lim["rate_per_min"] = 1e12
    syms, sides, qtys, ots, lps, refs = _intents(n, seed=2)
    t = mem.tables["positions"]
    tops = mem.tables["tops"]
    samples = np.zeros(n, np.int64)
    ring = mem.rings["order"]
    counters = np.zeros(16, np.uint64)
    args = (syms, sides, qtys, ots, lps, refs, ring.ctl, ring.recs, t.seqs, t.rows, risk.pos, risk.rs,
            tops.seqs, tops.rows, risk.top_buf, risk.control, risk.oo, lim, risk.lim_qty, risk.lim_pos,
            risk.restricted, risk.pv, np.int64(len(risk.oo) - 1), counters, samples)
    _time_decision(100, *args)
    gc.disable()
    try:
        _time_decision(n, *args)
    finally:
        gc.enable()
    return _pct(samples)


# -- 2. exec: order -> venue hand-off ----------------------------------------------------------

class PyRouter:
    """Exec's intake and hand-off in plain Python: validate, order table, state table, limiter,
    submit into the venue's link (a deque)."""

    NEW, SUBMITTED = 0, 1
    TABLE = {(0, "submit"): 1, (0, "cancel"): 5, (1, "accept"): 2}

    def __init__(self, nsym):
        self.nsym = nsym
        self.orders = {}
        self.pending = deque()
        self.link = deque()
        self.last_id = 0
        self.tok, self.tok_ns, self.rate = 0.0, 0, 0.0
        self.handoff = []

    def on_order(self, o, t_recv):
        oid = o["order_id"]
        if oid <= self.last_id:
            return "duplicate"
        self.last_id = oid
        if not (o["sym"] < self.nsym and o["side"] in (BUY, SELL) and math.isfinite(o["qty"]) and o["qty"] > 0
                and o["order_type"] in (ORDER_MARKET, ORDER_LIMIT)
                and (o["order_type"] != ORDER_LIMIT or (math.isfinite(o["limit_px"]) and o["limit_px"] > 0))):
            return "bad_order"
        self.orders[oid] = {"o": o, "state": self.NEW, "attempts": 0, "recv": t_recv}
        self.pending.append(oid)
        self.hand_off()
        return None

    def hand_off(self):
        pc = time.perf_counter_ns
        while self.pending:
            oid = self.pending.popleft()
            e = self.orders[oid]
            if self.rate > 0 and self.tok < 1:
                self.pending.appendleft(oid)
                return
            e["state"] = self.TABLE[(e["state"], "submit")]
            e["attempts"] += 1
            o = e["o"]
            self.link.append(("new", oid, o["sym"], o["side"], o["order_type"], o["qty"], o["limit_px"]))
            self.handoff.append(pc() - e["recv"])


def bench_handoff(n: int) -> dict:
    from pyrt_shm import hdr_convert

    mem = _engine()
    mem.build_stage("risk")
    ex = mem.build_stage("exec")
    syms, sides, qtys, ots, lps, _ = _intents(n, seed=3)
    lps = np.where(ots == ORDER_LIMIT, np.where(sides == BUY, 100.02, 99.98) + syms, 0.0)  # marketable
    args = ex.kernel()[1]
    step_ns = np.zeros(n, np.int64)
    oring, fring = mem.rings["order"], mem.rings["fill"]
    warm = min(n, 2000)
    _drive_exec_from(0, warm, syms, sides, qtys, ots, lps, step_ns, oring.ctl, oring.recs, fring.ctl,
                     fring.recs, args)
    row = mem.hists[ex.h_hand]
    row["counts"][:] = 0
    row["total"] = 0
    gc.disable()
    try:
        _drive_exec_from(warm, n, syms, sides, qtys, ots, lps, step_ns, oring.ctl, oring.recs, fring.ctl,
                         fring.recs, args)
    finally:
        gc.enable()
    hand = hdr_convert.percentiles(row, PCTS)
    nb_hand = {f"p{p:g}_ns".replace(".", ""): float(v) for p, v in hand.items()}
    nb_hand["n"] = int(row["total"])
    assert ex.counter("executions") == warm + n, ex.counter_values()

    r = PyRouter(NSYM)
    pc = time.perf_counter_ns
    m = min(n, 200_000)
    items = [{"order_id": i + 1, "sym": int(syms[i]), "side": int(sides[i]), "qty": float(qtys[i]),
              "order_type": int(ots[i]), "limit_px": float(lps[i])} for i in range(m)]
    gc.disable()
    try:
        for o in items:
            r.on_order(o, pc())
    finally:
        gc.enable()
    py = _pct(r.handoff)
    return {"numba": nb_hand, "exec_step_per_order": _pct(step_ns), "python": py,
            "ratio_p50": py["p50_ns"] / max(nb_hand["p50_ns"], 1.0),
            "ratio_p99": py["p99_ns"] / max(nb_hand["p99_ns"], 1.0)}


@njit(cache=True)
def _drive_exec_from(first, n, syms, sides, qtys, ots, lps, step_ns, in_ctl, in_recs, out_ctl, out_recs, args):
    for i in range(n):
        w = spsc.head_of(in_ctl)
        o = in_recs[spsc.slot(in_ctl, w)]
        o.order_id = np.uint64(first + i + 1)
        o.sym, o.side, o.order_type, o.tif = syms[i], sides[i], ots[i], TIF_DAY
        o.qty, o.limit_px, o.action = qtys[i], lps[i], 0
        t0 = monotonic_ns()
        o.sent_ns = t0
        o.feed_ns = t0
        spsc.commit(in_ctl, 1)
        exec_step(t0, *args)
        step_ns[i] = monotonic_ns() - t0
        k = spsc.poll(out_ctl, 64)
        spsc.release(out_ctl, k)


# -- 3. sim matching throughput ------------------------------------------------------------------

@njit(cache=True)
def _arrivals(n, syms, sides, qtys, ots, lps, tifs, vs, vp, rq, vo, rest, ev, rng, top_seqs, top_rows,
              top_buf, dep_seqs, dep_rows, dep_buf, chunk):
    events = 0
    i = 0
    while i < n:
        m = min(chunk, n - i)
        for j in range(m):
            submit(vs, rq, vp, rng, 0, 1, np.uint64(i + j + 1), np.uint64(0), np.int64(syms[i + j]),
                   np.int64(sides[i + j]), np.int64(ots[i + j]), np.int64(tifs[i + j]), qtys[i + j],
                   lps[i + j])
        events += venue_step(0, vs, vp, rq, vo, rest, ev, rng, top_seqs, top_rows, top_buf, dep_seqs,
                             dep_rows, dep_buf, ev.shape[0])
        i += m
    return events


@njit(cache=True)
def _rest_moves(rounds, vs, vp, rq, vo, rest, ev, rng, top_seqs, top_rows, top_buf, dep_seqs, dep_rows,
                dep_buf, sizes):
    events = 0
    for k in range(rounds):
        for s in range(top_rows.shape[0]):
            write_begin(top_seqs, s)
            top_rows[s].bid_size = sizes[(k + s) % sizes.shape[0]]
            write_end(top_seqs, s)
        events += venue_step(0, vs, vp, rq, vo, rest, ev, rng, top_seqs, top_rows, top_buf, dep_seqs,
                             dep_rows, dep_buf, ev.shape[0])
    return events


class PyVenue:
    """The sim venue's arrival rules and resting-order rule in plain Python."""

    def __init__(self, tops, fee=0.005, slip_bps=0.0):
        self.tops, self.fee, self.slip = tops, fee, slip_bps * 1e-4
        self.rest = {}
        self.events = []

    def arrive(self, oid, sym, side, ot, tif, qty, px):
        t = self.tops[sym]
        if not t["valid"]:
            self.events.append(("reject", oid))
            return
        buy = side == BUY
        touch = t["ask"] if buy else t["bid"]
        if ot == ORDER_MARKET or (buy and px >= t["ask"]) or (not buy and px <= t["bid"]):
            avail = t["ask_size"] if buy else t["bid_size"]
            take = min(qty, avail)
            fpx = touch * (1 + self.slip) if buy else touch * (1 - self.slip)
            self.events.append(("fill", oid, take, fpx, self.fee * take))
            if take < qty:
                if ot == ORDER_MARKET or tif in (2, 3):
                    self.events.append(("canceled", oid))
                else:
                    self.rest[oid] = dict(sym=sym, side=side, px=px, qty=qty, filled=take, queue=0.0, last=0.0)
        else:
            same = t["bid"] if buy else t["ask"]
            size = t["bid_size"] if buy else t["ask_size"]
            self.events.append(("ack", oid))
            q = size if px == same else 0.0
            self.rest[oid] = dict(sym=sym, side=side, px=px, qty=qty, filled=0.0, queue=q, last=q)

    def evaluate(self):
        done = []
        for oid, o in self.rest.items():
            t = self.tops[o["sym"]]
            buy = o["side"] == BUY
            near, far = (t["bid"], t["ask"]) if buy else (t["ask"], t["bid"])
            size = t["bid_size"] if buy else t["ask_size"]
            if (buy and far <= o["px"]) or (not buy and far >= o["px"]):
                self.events.append(("fill", oid, o["qty"] - o["filled"], o["px"]))
                done.append(oid)
            elif near == o["px"]:
                if size < o["last"]:
                    d = o["last"] - size
                    dq = min(o["queue"], d)
                    o["queue"] -= dq
                    r = d - dq
                    if r > 0:
                        f = min(r, o["qty"] - o["filled"])
                        o["filled"] += f
                        self.events.append(("fill", oid, f, o["px"]))
                        if o["filled"] >= o["qty"]:
                            done.append(oid)
                o["last"] = size
        for oid in done:
            del self.rest[oid]


def bench_matching(n: int) -> dict:
    from procs.sim_venue import SimVenue, venue_params

    mem = _engine()
    tops = mem.tables["tops"]
    syms, sides, qtys, ots, lps, _ = _intents(n, seed=4)
    # a third market, a third marketable limits, a third resting limits at the touch
    kind = np.arange(n) % 3
    ots = np.where(kind == 0, ORDER_MARKET, ORDER_LIMIT).astype(np.uint8)
    touch = np.where(sides == BUY, 100.01, 99.99) + syms
    near = np.where(sides == BUY, 99.99, 100.01) + syms
    lps = np.where(kind == 0, 0.0, np.where(kind == 1, touch, near))
    tifs = np.full(n, TIF_GTC, np.uint8)
    v = SimVenue(venue_params(), orders=1 << int(math.ceil(math.log2(n + 1))), link=4096, events=4096)
    _arrivals(100, syms, sides, qtys, ots, lps, tifs, *v.arrays(), tops.seqs, tops.rows, np.zeros(1, TOP),
              *_NODEP, 256)
    v = SimVenue(venue_params(), orders=1 << int(math.ceil(math.log2(n + 1))), link=4096, events=4096)
    top_buf = np.zeros(1, TOP)
    t0 = time.perf_counter_ns()
    ev = _arrivals(n, syms, sides, qtys, ots, lps, tifs, *v.arrays(), tops.seqs, tops.rows, top_buf, *_NODEP,
                   1024)
    nb_s = (time.perf_counter_ns() - t0) / 1e9
    resting = int(v.vs[0]["n_rest"])

    py_tops = [{k: float(tops.read(s)[k]) for k in ("valid", "bid", "ask", "bid_size", "ask_size")}
               for s in range(NSYM)]
    pv = PyVenue(py_tops)
    m = min(n, 200_000)
    items = list(zip(syms[:m].tolist(), sides[:m].tolist(), ots[:m].tolist(), tifs[:m].tolist(),
                     qtys[:m].tolist(), lps[:m].tolist()))
    t0 = time.perf_counter_ns()
    for i, (s, sd, ot, tif, q, px) in enumerate(items):
        pv.arrive(i + 1, s, sd, ot, tif, q, px)
    py_s = (time.perf_counter_ns() - t0) / 1e9

    # resting re-evaluation: 1000 resting orders, the displayed size moving under them
    nrest = 1000
    v2 = SimVenue(venue_params(), orders=4096, link=4096, events=8192)
    rs_syms = (np.arange(nrest) % NSYM).astype(np.uint32)
    rs_sides = np.full(nrest, BUY, np.int8)
    rs_px = 99.99 + rs_syms
    _arrivals(nrest, rs_syms, rs_sides, np.full(nrest, 1e9), np.full(nrest, ORDER_LIMIT, np.uint8), rs_px,
              np.full(nrest, TIF_GTC, np.uint8), *v2.arrays(), tops.seqs, tops.rows, top_buf, *_NODEP, 1024)
    sizes = np.array([5000.0, 5000.0])                # unchanged sizes: every order evaluated, none filled
    rounds = 200
    _rest_moves(2, *v2.arrays(), tops.seqs, tops.rows, top_buf, *_NODEP, sizes)
    t0 = time.perf_counter_ns()
    _rest_moves(rounds, *v2.arrays(), tops.seqs, tops.rows, top_buf, *_NODEP, sizes)
    nb_r = (time.perf_counter_ns() - t0) / 1e9
    pv2 = PyVenue(py_tops)
    for i in range(nrest):
        pv2.arrive(i + 1, int(rs_syms[i]), BUY, ORDER_LIMIT, TIF_GTC, 1e9, float(rs_px[i]))
    py_rounds = 20
    t0 = time.perf_counter_ns()
    for _ in range(py_rounds):
        pv2.evaluate()
    py_r = (time.perf_counter_ns() - t0) / 1e9
    nb_rate, py_rate = n / nb_s, m / py_s
    nb_eval, py_eval = rounds * nrest / nb_r, py_rounds * nrest / py_r
    return {"arrivals": {"numba_orders_per_s": nb_rate, "python_orders_per_s": py_rate,
                         "ratio": nb_rate / py_rate, "orders": n, "events": int(ev), "left_resting": resting},
            "resting_evaluations": {"numba_per_s": nb_eval, "python_per_s": py_eval, "ratio": nb_eval / py_eval,
                                    "resting_orders": nrest}}


# -- main ------------------------------------------------------------------------------------

def host() -> dict:
    model = None
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "python": platform.python_version(), "numba": numba.__version__, "numpy": np.__version__}


def run(n: int) -> dict:
    t0 = time.time()
    out = {"bench": "orders", "host": host(), "orders": n}
    out["pretrade"] = bench_pretrade(n)
    out["risk_decision"] = {"numba": bench_decision(min(n, 200_000))}
    out["handoff"] = bench_handoff(min(n, 200_000))
    out["matching"] = bench_matching(min(n, 500_000))
    out["elapsed_s"] = round(time.time() - t0, 2)
    return out


def _table(r: dict) -> str:
    p, h, m = r["pretrade"], r["handoff"], r["matching"]
    rows = [
        ("pre-trade check / order (numba)", p["numba"]["p50_ns"], p["numba"]["p99_ns"]),
        ("pre-trade check / order (python)", p["python"]["p50_ns"], p["python"]["p99_ns"]),
        ("risk decision: check+book+emit (numba)", r["risk_decision"]["numba"]["p50_ns"],
         r["risk_decision"]["numba"]["p99_ns"]),
        ("exec order -> venue hand-off (numba)", h["numba"]["p50_ns"], h["numba"]["p99_ns"]),
        ("exec order -> venue hand-off (python)", h["python"]["p50_ns"], h["python"]["p99_ns"]),
        ("exec step / order incl. match+report", h["exec_step_per_order"]["p50_ns"],
         h["exec_step_per_order"]["p99_ns"]),
    ]
    lines = [f"{'measure':42s} {'p50':>9s} {'p99':>9s}"]
    lines += [f"{name:42s} {a:>8.0f}n {b:>8.0f}n" for name, a, b in rows]
    lines.append(f"pre-trade p99 target <= 1000 ns: {'met' if p['target_met'] else 'MISSED'}; "
                 f"python/numba p99 x{p['ratio_p99']:.1f}; clock read ~{p['clock_ns']['p50_ns']:.0f} ns")
    a, e = m["arrivals"], m["resting_evaluations"]
    lines.append(f"sim arrivals: numba {a['numba_orders_per_s']:,.0f}/s, python {a['python_orders_per_s']:,.0f}/s "
                 f"(x{a['ratio']:.1f}); resting evaluations: numba {e['numba_per_s']:,.0f}/s, "
                 f"python {e['python_per_s']:,.0f}/s (x{e['ratio']:.1f})")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="pyrt bench orders", description=__doc__.split("\n")[0])
    ap.add_argument("--orders", type=int, default=200_000, help="orders per measurement (default 200000)")
    ap.add_argument("--json", action="store_true", help="print the JSON document")
    args = ap.parse_args(argv)
    if args.orders < 1000:
        ap.error("--orders must be >= 1000")
    r = run(args.orders)
    if args.json:
        print(json.dumps(r, indent=1))
    else:
        print(_table(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
