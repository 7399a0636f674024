"""Book update benchmark: the numba L2 book (``procs.l2book``) against a plain-Python book.

What is measured, on the same seeded stream of TICK records (``make_stream``: per symbol a
random-walk touch; 30 % quotes, 60 % deltas within ten ticks of the touch (a fifth of them
removals), 10 % trades, a 20-level snapshot (40 records) per symbol at the start and then
now and then, and 0.1 % bad records), 1M messages (``--quick``: 200k):

* ``book.numba_per_update``: ``apply_tick`` (validation + book update) on each record inside
  one njit loop, the clock (CLOCK_MONOTONIC through the vDSO) read before and after every
  update: p50/p99/p99.9/max of the differences. ``clock_overhead_ns`` (two back-to-back
  reads, median) is reported beside it and *not* subtracted.
* ``book.numba_updates_per_s``: the same stream through ``apply_tick`` without clocks,
  messages per second (best of 3 passes, each on a fresh book; every message counts,
  trades and rejected ones included).
* ``book.python_reference``: ``ReferenceBook.apply_book`` (dicts of price -> size: the
  oracle the tests compare the numba book with) on the first 200k messages (20k quick);
  ``book.books_agree``: both books hold the same levels afterwards.
* ``stage``: the whole book stage (``procs.book.book_step``: ring in, L2 book, ``tops`` and
  ``depth`` seqlock tables, BOOK_EVENTs and bars out) over private memory, driven from njit,
  ticks per second.

Targets (reported, never asserted): book update p99 <= 1 µs, >= 10 M updates/s.

Run: ``PYTHONPATH=. python -m bench.market_book [--quick] [--json] [--out FILE]``;
``run(quick)`` returns the JSON document as a dict.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import numpy as np
from numba import njit

from layouts.market import (BOOK_FIRST, BOOK_LAST, BOOK_NO_LEVEL, BOOK_SIDE, SIDE_ASK, SIDE_BID, TICK,
                            TICK_BOOK_DELTA, TICK_BOOK_SNAPSHOT, TICK_QUOTE, TICK_TRADE)
from layouts.orders import BAR_TICK, BAR_TIME, BAR_VOLUME

TARGET_P99_NS = 1000
TARGET_UPDATES_PER_S = 10_000_000

COUNTER_NAMES = ("ticks_in", "events_out", "quotes", "trades", "deltas", "snapshot_levels",
                 "snapshots", "snapshots_abandoned", "bars_out", "rejected_bad_price",
                 "rejected_bad_size", "rejected_unknown_symbol", "rejected_crossed",
                 "rejected_unsupported_kind", "rejected_out_of_order", "rejected_bad_snapshot")

EV_NONE, EV_BOOK, EV_TRADE = 0, 1, 2


# ---- the plain-Python reference book ---------------------------------------------------------

def _good_px(x) -> bool:
    return math.isfinite(x) and x > 0.0


def _good_sz(x) -> bool:
    return math.isfinite(x) and x > 0.0


class ReferenceBook:
    """The book stage's semantics (``procs.l2book``, ``procs.bars``) in plain Python.

    Written from the documented rules, not from the numba code: dicts of price -> size per
    side, sorted only when read. ``apply(rec)`` takes a TICK as a tuple in field order
    (``arr.tolist()``) or a numpy record, and returns the BOOK_EVENTs the stage publishes
    for it as dicts (an empty list when nothing is published).
    """

    def __init__(self, n_sym: int, capacity: int = 64, depth: int = 10, bars=()):
        self.n_sym, self.capacity, self.depth = n_sym, capacity, depth
        self.sides = [[{}, {}] for _ in range(n_sym)]          # [bids, asks] price -> size
        self.staged = [None] * n_sym                             # open snapshot: [bids, asks, recv, exch]
        self.recv = [None] * n_sym
        self.exch = [{"trade": 0, "quote": 0, "book": 0} for _ in range(n_sym)]
        self.counters = dict.fromkeys(COUNTER_NAMES, 0)
        self.tops = [dict(bid=0.0, ask=0.0, bid_size=0.0, ask_size=0.0, last=0.0, valid=0, updates=0,
                          updated_ns=0) for _ in range(n_sym)]
        self.depth_updates = [0] * n_sym
        self.bar_specs = [_parse_spec(b) for b in bars]
        self.bar_state = [[None] * len(self.bar_specs) for _ in range(n_sym)]

    # -- levels ------------------------------------------------------------------------------
    def _set(self, d: dict, side: int, p: float, q: float) -> None:
        if p in d or len(d) < self.capacity:
            d[p] = q
            return
        worst = min(d) if side == SIDE_BID else max(d)
        if (p > worst) if side == SIDE_BID else (p < worst):
            del d[worst]
            d[p] = q

    @staticmethod
    def _trim(d: dict, side: int, p: float, inclusive: bool) -> None:
        if side == SIDE_BID:
            drop = [x for x in d if x > p or (inclusive and x == p)]
        else:
            drop = [x for x in d if x < p or (inclusive and x == p)]
        for x in drop:
            del d[x]

    def levels(self, s: int, side: int, n: int | None = None) -> list:
        """[(price, size)] best first."""
        d = self.sides[s][side]
        keys = sorted(d, reverse=(side == SIDE_BID))
        return [(k, d[k]) for k in (keys if n is None else keys[:n])]

    # -- messages ----------------------------------------------------------------------------
    def _in_order(self, s, recv, exch, stream, staged=None) -> bool:
        rf, ef = self.recv[s], self.exch[s]["book" if stream is None else stream]
        if staged is not None:
            rf = staged[2] if rf is None else max(rf, staged[2])
            ef = max(ef, staged[3])
        return (rf is None or recv >= rf) and (exch == 0 or exch >= ef)

    def _reject(self, reason: str) -> int:
        self.counters["rejected_" + reason] += 1
        return EV_NONE

    def _stamp(self, s, recv, exch, stream):
        self.recv[s] = recv
        if exch:
            self.exch[s][stream] = exch

    def apply_book(self, rec) -> int:
        """Validate and apply one tick; count it; return EV_* (no events, no bars)."""
        _seq, recv, exch, s, kind, flags, price, size, bid, ask, bs, as_ = tuple(rec)
        if s >= self.n_sym:
            return self._reject("unknown_symbol")
        c = self.counters
        if kind == TICK_QUOTE:
            if not (_good_px(bid) and _good_px(ask)):
                return self._reject("bad_price")
            if not (_good_sz(bs) and _good_sz(as_)):
                return self._reject("bad_size")
            if not self._in_order(s, recv, exch, "quote"):
                return self._reject("out_of_order")
            if bid >= ask:
                return self._reject("crossed")
            self._stamp(s, recv, exch, "quote")
            bids, asks = self.sides[s]
            self._trim(bids, SIDE_BID, bid, False)
            self._set(bids, SIDE_BID, bid, bs)
            self._trim(asks, SIDE_ASK, ask, False)
            self._set(asks, SIDE_ASK, ask, as_)
            c["quotes"] += 1
            return EV_BOOK
        if kind == TICK_TRADE:
            if not _good_px(price):
                return self._reject("bad_price")
            if not _good_sz(size):
                return self._reject("bad_size")
            if not self._in_order(s, recv, exch, "trade"):
                return self._reject("out_of_order")
            self._stamp(s, recv, exch, "trade")
            c["trades"] += 1
            return EV_TRADE
        if kind == TICK_BOOK_DELTA:
            if not _good_px(price):
                return self._reject("bad_price")
            if not (math.isfinite(size) and size >= 0.0):
                return self._reject("bad_size")
            if not self._in_order(s, recv, exch, "book"):
                return self._reject("out_of_order")
            self._stamp(s, recv, exch, "book")
            side = flags & BOOK_SIDE
            d = self.sides[s][side]
            if size == 0.0:
                d.pop(price, None)
            else:
                self._set(d, side, price, size)
                self._trim(self.sides[s][1 - side], 1 - side, price, True)
            c["deltas"] += 1
            return EV_BOOK
        if kind == TICK_BOOK_SNAPSHOT:
            return self._snapshot(s, recv, exch, flags, price, size)
        return self._reject("unsupported_kind")

    def _snapshot(self, s, recv, exch, flags, price, size) -> int:
        first, last = bool(flags & BOOK_FIRST), bool(flags & BOOK_LAST)
        has_level, side = not (flags & BOOK_NO_LEVEL), flags & BOOK_SIDE
        st = self.staged[s]
        reason = None
        if has_level and not _good_px(price):
            reason = "bad_price"
        elif has_level and not _good_sz(size):
            reason = "bad_size"
        elif not self._in_order(s, recv, exch, None, st if (st is not None and not first) else None):
            reason = "out_of_order"
        elif not first and st is None:
            reason = "bad_snapshot"
        if reason:
            if st is not None:
                self.staged[s] = None
                self.counters["snapshots_abandoned"] += 1
            return self._reject(reason)
        if first:
            if st is not None:
                self.counters["snapshots_abandoned"] += 1
            st = self.staged[s] = [{}, {}, recv, 0]
        st[2] = recv
        if exch:
            st[3] = exch
        if has_level:
            self._set(st[side], side, price, size)
        if not last:
            self.counters["snapshot_levels"] += 1
            return EV_NONE
        self.staged[s] = None
        bids, asks = st[0], st[1]
        if bids and asks and max(bids) >= min(asks):
            return self._reject("crossed")
        self.sides[s] = [bids, asks]
        self.recv[s] = recv
        self.exch[s]["book"] = max(self.exch[s]["book"], st[3])
        self.counters["snapshot_levels"] += 1
        self.counters["snapshots"] += 1
        return EV_BOOK

    # -- the stage around the book --------------------------------------------------------------
    def top(self, s: int) -> tuple:
        """(bid, bid_size, ask, ask_size, valid) of the book."""
        b, a = self.levels(s, SIDE_BID, 1), self.levels(s, SIDE_ASK, 1)
        bid, bs = b[0] if b else (0.0, 0.0)
        ask, as_ = a[0] if a else (0.0, 0.0)
        return bid, bs, ask, as_, int(bool(b) and bool(a))

    def apply(self, rec) -> list:
        """Apply one tick as the stage does; return the BOOK_EVENTs (dicts) it publishes."""
        rec = tuple(rec)
        self.counters["ticks_in"] += 1
        code = self.apply_book(rec)
        if code == EV_NONE:
            return []
        seq, recv, exch, s, kind = rec[:5]
        top = self.tops[s]
        if code == EV_BOOK:
            top["bid"], top["bid_size"], top["ask"], top["ask_size"], top["valid"] = self.top(s)
            self.depth_updates[s] += 1
        else:
            top["last"] = rec[6]
        top["updated_ns"] = recv
        top["updates"] += 1
        micro = imb = 0.0
        if top["valid"]:
            tot = top["bid_size"] + top["ask_size"]
            micro = (top["bid"] * top["ask_size"] + top["ask"] * top["bid_size"]) / tot
            imb = (top["bid_size"] - top["ask_size"]) / tot
        base = dict(tick_seq=seq, feed_ns=recv, sym=s, valid=top["valid"], bid=top["bid"], ask=top["ask"],
                    bid_size=top["bid_size"], ask_size=top["ask_size"], microprice=micro, imbalance=imb)
        ev = dict(base, kind=kind, trade_px=0.0, trade_size=0.0)
        if code == EV_TRADE:
            ev["trade_px"], ev["trade_size"] = rec[6], rec[7]
        events = [ev]
        if code == EV_TRADE:
            for bar in self._bars(s, rec[6], rec[7], exch if exch else recv):
                events.append(dict(base, kind=3, trade_px=0.0, trade_size=0.0, **bar))
            self.counters["bars_out"] += len(events) - 1
        self.counters["events_out"] += len(events)
        return events

    def depth_row(self, s: int) -> dict:
        """What the ``depth`` table's row of ``s`` should hold."""
        b, a = self.levels(s, SIDE_BID), self.levels(s, SIDE_ASK)
        pb, pa = b[:self.depth], a[:self.depth]
        row = dict(n_bid=len(pb), n_ask=len(pa), bid_levels=len(b), ask_levels=len(a), valid=int(bool(b and a)),
                   bid_px=[p for p, _ in pb], bid_size=[q for _, q in pb], ask_px=[p for p, _ in pa],
                   ask_size=[q for _, q in pa], updates=self.depth_updates[s])
        if b and a:
            tot = b[0][1] + a[0][1]
            row.update(mid=0.5 * (b[0][0] + a[0][0]), microprice=(b[0][0] * a[0][1] + a[0][0] * b[0][1]) / tot,
                       imbalance=(b[0][1] - a[0][1]) / tot)
            tb = ta = 0.0
            for _, q in pb:
                tb += q
            for _, q in pa:
                ta += q
            row["depth_imbalance"] = (tb - ta) / (tb + ta)
        else:
            row.update(mid=0.0, microprice=0.0, imbalance=0.0, depth_imbalance=0.0)
        return row

    # -- bars ------------------------------------------------------------------------------------
    def _bars(self, s, p, q, t) -> list:
        out = []
        for j, (typ, n) in enumerate(self.bar_specs):
            b = self.bar_state[s][j]
            if typ == BAR_TIME:
                bucket = t // n
                if b is not None and bucket != b["bucket"]:
                    out.append(self._close(s, j, b["bucket"] * n, b["bucket"] * n + n))
                    b = None
                b = self._add(s, j, p, q, t)
                b["bucket"] = bucket
            else:
                b = self._add(s, j, p, q, t)
                if (typ == BAR_TICK and b["count"] >= n) or (typ == BAR_VOLUME and b["volume"] >= n):
                    out.append(self._close(s, j, b["start"], b["end"]))
        return out

    def _add(self, s, j, p, q, t) -> dict:
        b = self.bar_state[s][j]
        if b is None:
            b = self.bar_state[s][j] = dict(open=p, high=p, low=p, close=p, volume=0.0, pv=0.0, count=0,
                                            start=t, end=t, bucket=None)
        b["high"], b["low"], b["close"] = max(b["high"], p), min(b["low"], p), p
        b["volume"] += q
        b["pv"] += p * q
        b["count"] += 1
        b["end"] = t
        return b

    def _close(self, s, j, start, end) -> dict:
        b = self.bar_state[s][j]
        self.bar_state[s][j] = None
        return dict(bar_open=b["open"], bar_high=b["high"], bar_low=b["low"], bar_close=b["close"],
                    bar_volume=b["volume"], bar_vwap=b["pv"] / b["volume"], bar_start_ns=start, bar_end_ns=end,
                    bar_count=b["count"], bar_type=self.bar_specs[j][0], bar_spec=j)


def _parse_spec(spec: str):
    from procs.bars import parse_bar_specs

    types, ints, vols = parse_bar_specs([spec])
    return (int(types[0]), float(vols[0]) if types[0] == BAR_VOLUME else int(ints[0]))


# ---- a realistic stream --------------------------------------------------------------------------

def make_stream(n: int, n_sym: int = 4, seed: int = 1, bad: float = 0.0, snapshot_every: int = 5000,
                levels: int = 20, tick: float = 0.01, trade_ratio: float = 0.1) -> np.ndarray:
    """``n`` TICK records: quotes, deltas near the touch, trades, snapshots; ``bad`` share of junk.

    Deterministic for a seed. Snapshots are runs of ``2 * levels`` records (FIRST..LAST),
    one per symbol at the start and then every ``snapshot_every`` records on average.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros(n, TICK)
    touch = np.full(n_sym, 10_000)                      # best bid, in ticks
    i = 0
    recv = 1_000_000_000
    pending = list(range(n_sym))                        # symbols due a snapshot
    u = rng.random(n)
    while i < n:
        recv += 50
        if not pending and rng.random() < 1.0 / snapshot_every:
            pending.append(int(rng.integers(n_sym)))
        if pending:
            s = pending.pop()
            spread = int(rng.integers(1, 4))
            recs = []
            for k in range(levels):
                recs.append((SIDE_BID, (touch[s] - k) * tick, 100.0 * rng.integers(1, 50)))
                recs.append((SIDE_ASK, (touch[s] + spread + k) * tick, 100.0 * rng.integers(1, 50)))
            for j, (side, p, q) in enumerate(recs):
                if i >= n:
                    break
                r = out[i]
                r["seq"], r["recv_ns"], r["sym"], r["kind"] = i, recv, s, TICK_BOOK_SNAPSHOT
                r["flags"] = side | (BOOK_FIRST if j == 0 else 0) | (BOOK_LAST if j == len(recs) - 1 else 0)
                r["price"], r["size"] = p, q
                i += 1
            continue
        s = int(rng.integers(n_sym))
        r = out[i]
        r["seq"], r["recv_ns"], r["sym"] = i, recv, s
        x = u[i]
        if x < trade_ratio:
            r["kind"] = TICK_TRADE
            r["price"] = (touch[s] + int(rng.integers(0, 2))) * tick
            r["size"] = 100.0 * rng.integers(1, 10)
        elif x < trade_ratio + 0.3:
            touch[s] += int(rng.integers(-1, 2))
            r["kind"] = TICK_QUOTE
            r["bid"], r["ask"] = touch[s] * tick, (touch[s] + int(rng.integers(1, 4))) * tick
            r["bid_size"], r["ask_size"] = 100.0 * rng.integers(1, 50), 100.0 * rng.integers(1, 50)
        else:
            side = int(rng.integers(2))
            k = int(rng.integers(0, 10))
            r["kind"], r["flags"] = TICK_BOOK_DELTA, side
            r["price"] = ((touch[s] - k) if side == SIDE_BID else (touch[s] + 1 + k)) * tick
            r["size"] = 0.0 if rng.random() < 0.2 else 100.0 * rng.integers(1, 50)
        if bad and rng.random() < bad:
            what = int(rng.integers(5))
            if what == 0:
                r["price"], r["bid"] = math.nan, -1.0
            elif what == 1:
                r["size"], r["bid_size"] = -5.0, math.nan
            elif what == 2:
                r["sym"] = n_sym + 7
            elif what == 3:
                r["recv_ns"] = recv - 10_000
            else:
                r["kind"] = 9
        i += 1
    return out


# ---- the numba side ------------------------------------------------------------------------------

from procs.l2book import BOOK_ARRAYS, apply_tick, levels, new_book  # noqa: E402
from procs.book import book_step  # noqa: E402
from ringbuf import spsc  # noqa: E402
from ringbuf._atomics import monotonic_ns  # noqa: E402


@njit(cache=True, _nrt=False)
def timed_updates(recs, lv, st, counters, lat):
    """Apply every record, reading the clock before and after each; ``lat[i]`` = the difference."""
    for i in range(recs.shape[0]):
        t0 = monotonic_ns()
        apply_tick(recs[i], lv, st, counters)
        lat[i] = monotonic_ns() - t0


@njit(cache=True, _nrt=False)
def untimed_updates(recs, lv, st, counters):
    """Apply every record; return the sum of the results (keeps the work observable)."""
    acc = 0
    for i in range(recs.shape[0]):
        acc += apply_tick(recs[i], lv, st, counters)
    return acc


@njit(cache=True)
def clock_pairs(out):
    for i in range(out.shape[0]):
        t0 = monotonic_ns()
        out[i] = monotonic_ns() - t0


def _pcts(lat: np.ndarray) -> dict:
    q = np.percentile(lat, [50, 99, 99.9], method="inverted_cdf")
    return {"p50_ns": int(q[0]), "p99_ns": int(q[1]), "p999_ns": int(q[2]), "max_ns": int(lat.max()),
            "mean_ns": round(float(lat.mean()), 1)}


def _fresh(n_sym: int, capacity: int):
    b = new_book(n_sym, capacity)
    return b, tuple(b[k] for k in BOOK_ARRAYS), np.zeros(16, np.uint64)


def bench_book_updates(n: int = 1_000_000, quick: bool = False, n_sym: int = 4, capacity: int = 64,
                       seed: int = 1) -> dict:
    """Per-update latency and throughput of the numba book, and the Python reference's throughput."""
    recs = make_stream(n, n_sym=n_sym, seed=seed, bad=0.001)
    book_msgs = int(np.isin(recs["kind"], (TICK_QUOTE, TICK_BOOK_DELTA, TICK_BOOK_SNAPSHOT)).sum())
    # compile (or load from the cache) on a small prefix first
    book, arrs, c = _fresh(n_sym, capacity)
    timed_updates(recs[:100], *arrs, c, np.zeros(100, np.int64))
    untimed_updates(recs[:100], *arrs, c)
    clock = np.zeros(100_000, np.int64)
    clock_pairs(clock)

    book, arrs, c = _fresh(n_sym, capacity)
    lat = np.zeros(n, np.int64)
    timed_updates(recs, *arrs, c, lat)
    per_update = _pcts(lat)
    counts = {k: int(v) for k, v in zip(COUNTER_NAMES, c) if k not in ("ticks_in", "events_out", "bars_out")}

    best = None
    for _ in range(1 if quick else 3):
        book, arrs, c = _fresh(n_sym, capacity)
        t0 = time.perf_counter_ns()
        untimed_updates(recs, *arrs, c)
        dt = time.perf_counter_ns() - t0
        best = dt if best is None else min(best, dt)
    numba_ups = n / (best / 1e9)

    n_ref = min(n, 20_000 if quick else 200_000)
    ref = ReferenceBook(n_sym, capacity=capacity)
    rows = recs[:n_ref].tolist()
    t0 = time.perf_counter_ns()
    for r in rows:
        ref.apply_book(r)
    ref_ns = time.perf_counter_ns() - t0
    ref_ups = n_ref / (ref_ns / 1e9)
    # the two books agree on the prefix the reference ran
    book, arrs, c = _fresh(n_sym, capacity)
    untimed_updates(recs[:n_ref], *arrs, c)
    agree = all(levels(book, s, side) == ref.levels(s, side) for s in range(n_sym) for side in (0, 1))
    return {
        "messages": n, "book_messages": book_msgs, "symbols": n_sym, "capacity": capacity,
        "counts": counts,
        "numba_per_update": dict(per_update, clock_overhead_ns=int(np.median(clock))),
        "numba_updates_per_s": round(numba_ups),
        "numba_ns_per_update": round(best / n, 2),
        "python_reference": {"messages": n_ref, "updates_per_s": round(ref_ups),
                             "ns_per_update": round(ref_ns / n_ref, 1)},
        "speedup_vs_python": round(numba_ups / ref_ups, 1),
        "books_agree": agree,
    }


@njit(cache=True)
def _drive_stage(recs, chunk, md_ctl, md_recs, top_ctl, step_args):
    """Feed ``recs`` into the stage's input ring ``chunk`` at a time and run the book step until
    each chunk is consumed, releasing its output as the signal would (without reading it)."""
    n = recs.shape[0]
    i = 0
    events = 0
    while i < n:
        k = np.int64(spsc.claim(md_ctl, min(chunk, n - i)))
        h = spsc.head_of(md_ctl)
        for j in range(k):
            md_recs[spsc.slot(md_ctl, h + np.uint64(j))] = recs[i + j]
        spsc.commit(md_ctl, k)
        i += k
        while True:
            w = book_step(*step_args)
            d = np.int64(spsc.poll(top_ctl, 1 << 30))
            if d > 0:
                spsc.release(top_ctl, d)
                events += d
            if w == 0:
                break
    return events


def bench_stage(n: int = 1_000_000, quick: bool = False, bars=("1ms", "100t", "5000v")) -> dict:
    """Ticks/s through the whole book stage (``book_step``: ring in, L2 book, ``tops`` and
    ``depth`` seqlock tables, BOOK_EVENTs and bars out) over private memory, driven from njit
    (the feed's part, copying each record into the input ring, is included)."""
    from pyrt_shm.config import load_topology, override_from_dotted
    from pyrt_shm.wiring import EngineMemory

    over = {"stages.signal.class": "procs.signal:EmaCrossSignal", "stages.book.params.bars": list(bars),
            "rings.md.capacity": 65536, "rings.top.capacity": 65536}
    topo = load_topology(None, overrides=override_from_dotted(over), available_cpus={0, 1}, isolated_cpus=())
    recs = make_stream(n, n_sym=len(topo.engine.symbols), seed=2, bad=0.001)
    best = None
    for _ in range(1 if quick else 3):
        mem = EngineMemory(topo, backend="local")
        book = mem.build_stage("book")
        book.warm_up()
        _step, args, _ = book.kernel()
        md, top = mem.rings["md"], mem.rings["top"]
        _drive_stage(recs[:10], 8192, md.ctl, md.recs, top.ctl, args)        # compile, small
        mem = EngineMemory(topo, backend="local")
        book = mem.build_stage("book")
        _step, args, _ = book.kernel()
        md, top = mem.rings["md"], mem.rings["top"]
        t0 = time.perf_counter_ns()
        events = _drive_stage(recs, 8192, md.ctl, md.recs, top.ctl, args)
        dt = time.perf_counter_ns() - t0
        best = dt if best is None else min(best, dt)
    return {"messages": n, "events": int(events), "bars": list(bars), "ticks_per_s": round(n / (best / 1e9)),
            "ns_per_tick": round(best / n, 1), "counters": book.counter_values()}


def host_info() -> dict:
    from bench.host import host_info as _host_info

    return _host_info()


def run(quick: bool = False, n: int | None = None) -> dict:
    """The whole benchmark as one JSON-able dict (``quick``: 200k messages and one pass instead
    of 1M and the best of 3; ``n`` overrides the stream length)."""
    n = n or (200_000 if quick else 1_000_000)
    book = bench_book_updates(n, quick)
    stage = bench_stage(n, quick)
    p99 = book["numba_per_update"]["p99_ns"]
    return {
        "benchmark": "market_book", "quick": quick, "host": host_info(),
        "book": book, "stage": stage,
        "targets": {"book_update_p99_ns": {"target": TARGET_P99_NS, "value": p99, "met": p99 <= TARGET_P99_NS},
                    "book_updates_per_s": {"target": TARGET_UPDATES_PER_S, "value": book["numba_updates_per_s"],
                                           "met": book["numba_updates_per_s"] >= TARGET_UPDATES_PER_S}},
        "ratios": {"numba_vs_python_updates_per_s": book["speedup_vs_python"]},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="pyrt bench market", description="L2 book update cost: numba vs plain Python")
    ap.add_argument("--quick", action="store_true", help="200k messages, one pass (default 1M, best of 3)")
    ap.add_argument("--json", action="store_true", help="print only JSON")
    ap.add_argument("--out", help="also write the JSON to this file")
    args = ap.parse_args(argv)
    report = run(args.quick)
    text = json.dumps(report, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if args.json:
        print(text)
    else:
        b, s = report["book"], report["stage"]
        pu = b["numba_per_update"]
        print(f"book update (numba, clock around each): p50 {pu['p50_ns']} ns  p99 {pu['p99_ns']} ns  "
              f"p99.9 {pu['p999_ns']} ns  max {pu['max_ns']} ns  (clock pair {pu['clock_overhead_ns']} ns, "
              f"included)")
        print(f"book throughput: numba {b['numba_updates_per_s'] / 1e6:.1f} M updates/s, python reference "
              f"{b['python_reference']['updates_per_s'] / 1e6:.2f} M/s ({b['speedup_vs_python']}x)")
        print(f"book stage (ring + tables + events, bars {s['bars']}): {s['ticks_per_s'] / 1e6:.1f} M ticks/s")
        for k, v in report["targets"].items():
            print(f"target {k}: {v['value']} vs {v['target']}: {'met' if v['met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
