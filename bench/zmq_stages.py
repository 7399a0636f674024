"""The five processes of the ZMQ+JSON baseline pipeline, in plain Python per message.

This is the source design the engine replaces: feed -> book -> signal -> risk -> exec as
five processes connected by pyzmq PUB/SUB over ``ipc://``, every message one orjson-encoded
dict of the record's fields (the same field names as the engine's ``layouts`` records), and
the fill going back from exec to risk over another PUB/SUB connection. The stage logic is
the engine's, ported line by line to Python (``procs/*.py`` is the reference):

* **book**: top of book per symbol; quotes set bid/ask/sizes, trades set ``last``; the same
  rejections (unknown symbol, bad price/size, crossed quote, unsupported kind); one event per
  accepted tick.
* **signal**: EMA crossover of the mid, fast 8 / slow 32 (``alpha = 2 / (n + 1)``), both
  EMAs seeded with the first mid, ``warmup`` quote events per symbol, BUY on an up-cross,
  SELL on a down-cross, qty 100, market/DAY. The intent also carries the touch (bid/ask of
  the event) because exec has no shared top-of-book table to read it from.
* **risk**: bad-intent checks, max order qty (1000), max position (500) counting open
  orders, open-orders table (65536); average-cost positions from fills.
* **exec**: the ``sim`` venue: an order fills in full at the touch it carries (BUY at the
  ask, SELL at the bid), fee 0.005/share; duplicate ids and bad orders are rejected.

Tuning (FACTS §14, "a baseline at least as well tuned as the peer"): each process pins
itself (the orchestrator passes cores 0/1/0/1/0), disables the garbage collector, receives
with a blocking ``recv`` (``RCVTIMEO`` only so an abandoned run can end), and the feed
sleeps until each scheduled send time, then busy-waits the last ``spin_ns`` (timer slack
set to 1 ns with ``prctl`` so the sleep wakes when asked). With ``spin_yield`` (the
default of ``bench.pipeline``) the busy-wait calls ``sched_yield()`` between clock polls:
on the core the feed shares with signal and exec it then gives way to them instead of
burning its time slice (measured here: at 100k ticks/s it keeps the schedule and the p50
drops from ~50 ms to ~7 ms; at 10k it changes nothing). The latency samples go into
preallocated arrays in shared memory, read by the orchestrator after the run.

Control frames are one byte and never start with ``{`` (a data frame always does):
``H`` hello (forwarded down the chain), ``F`` exec's hello on the fill path, ``R`` risk's
answer (exec reports "ready" when it sees it: every connection has delivered a message, so
no subscriber joins late), ``E`` end of data (forwarded), ``e`` end of the fill path.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import math
import os
import time

import numpy as np

from layouts.market import TICK_QUOTE, TICK_TRADE
from layouts.orders import (
    BUY, FILL_CANCELED, FILL_EXPIRED, FILL_FULL, FILL_PARTIAL, FILL_REJECTED, ORDER_LIMIT,
    ORDER_MARKET, SELL, TIF_DAY, TIF_FOK,
)

HELLO, FILL_HELLO, READY, END, FILL_END = b"H", b"F", b"R", b"E", b"e"
LBRACE = 0x7B
NS = 1_000_000_000
RCV_TIMEOUT_MS = 100
RESEND_S = 0.02

STAGES = ("feed", "book", "signal", "risk", "exec")
FEED, BOOK, SIGNAL, RISK, EXEC = range(5)

# Shared control words (int64), see ``Shared``.
W_STOP = 0            #: orchestrator: abandon the run (set after the drain deadline)
W_DONE = 1            #: 1..5: stage i finished by the end marker (W_DONE + stage)
W_T0 = 8              #: feed: scheduled time of tick 0 (or first send when rate = 0)
W_T_FIRST = 9         #: feed: first send
W_T_LAST = 10         #: feed: last send
W_SIG_T_LAST = 11     #: signal: clock when it finished its last data message
W_ABANDONED = 12      #: 12..16: stage i left because of W_STOP, not the end marker
W_FEED_TRUNC = 18     #: feed: stopped before sending every tick (hard time bound)
W_ERROR = 19          #: 19..23: stage i raised
# Counter columns per stage: COUNTS[stage, col]
C_RECV, C_SENT, C_RECV2, C_REJ, C_INTENTS = range(5)


class Shared:
    """Anonymous shared mappings inherited across ``fork``: control words, counters, samples."""

    def __init__(self, n_ticks: int):
        import mmap

        def arr(n, dtype):
            nbytes = max(int(n) * np.dtype(dtype).itemsize, 8)
            mm = mmap.mmap(-1, nbytes)                    # MAP_SHARED | MAP_ANONYMOUS
            self._maps.append(mm)
            return np.frombuffer(mm, dtype=dtype, count=max(int(n), 1))

        self._maps = []
        self.ctl = arr(64, np.int64)
        self.counts = arr(len(STAGES) * 8, np.int64).reshape(len(STAGES), 8)
        self.feed_lag = arr(n_ticks, np.int64)        #: feed: actual send start - scheduled
        self.book_lat = arr(n_ticks, np.int64)        #: book: receipt - scheduled (every tick)
        self.exec_lat = arr(n_ticks, np.int64)        #: exec: receipt of the order - scheduled

    def close(self):
        self.ctl = self.counts = self.feed_lag = self.book_lat = self.exec_lat = None
        for mm in self._maps:
            try:
                mm.close()
            except BufferError:       # a view is still alive somewhere; the GC will unmap it
                pass
        self._maps = []


# ---------------------------------------------------------------------------------------------
def _setup(cpu, timer_slack_ns=None):
    from pyrt_shm.realtime import die_with_parent

    die_with_parent()        # never outlive the orchestrator (SIGKILL when it dies)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    gc.freeze()              # what the parent built stays out of any collection (fewer COW pages)
    gc.disable()
    if timer_slack_ns is not None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(29, ctypes.c_ulong(timer_slack_ns), 0, 0, 0)   # PR_SET_TIMERSLACK
        except OSError:
            pass


def _pub(zmq, ctx, addr, hwm):
    s = ctx.socket(zmq.PUB)
    s.setsockopt(zmq.SNDHWM, hwm)
    s.setsockopt(zmq.LINGER, 1000)
    s.bind(addr)
    return s


def _sub(zmq, ctx, addrs, hwm):
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.RCVHWM, hwm)
    s.setsockopt(zmq.RCVTIMEO, RCV_TIMEOUT_MS)
    s.setsockopt(zmq.RECONNECT_IVL, 10)
    s.setsockopt(zmq.SUBSCRIBE, b"")
    for a in addrs:
        s.connect(a)
    return s


def _finish_forward(sh, me, downstream, pub, marker):
    """Forward the end marker until the downstream stage says it got it (PUB may drop at HWM)."""
    ctl = sh.ctl
    while not ctl[W_DONE + downstream] and not ctl[W_STOP]:
        pub.send(marker)
        time.sleep(RESEND_S)


def run_stage(which: int, sh: Shared, cfg: dict, ticks=None, conn=None) -> None:
    """Body of one baseline process (forked); never returns normally (``os._exit``)."""
    code = 0
    try:
        _STAGE_MAIN[which](sh, cfg, ticks, conn)
    except BaseException:  # noqa: BLE001 - report and exit non-zero
        import traceback

        traceback.print_exc()
        sh.ctl[W_ERROR + which] = 1
        code = 1
    finally:
        os._exit(code)


# ---------------------------------------------------------------------------------------------
def feed_main(sh, cfg, ticks, conn):
    import orjson
    import zmq

    _setup(cfg["cpus"][FEED], timer_slack_ns=1)
    ctx = zmq.Context()
    pub = _pub(zmq, ctx, cfg["addr"]["md"], cfg["hwm"])
    # Start handshake: hello every ms until the orchestrator says go (exec has seen the
    # chain answer, so every subscription is in place), then a short pause for stray hellos.
    while not conn.poll(0.001):
        pub.send(HELLO)
    conn.recv()
    time.sleep(0.01)

    names = ticks.dtype.names
    item = ticks.item
    dumps = orjson.dumps
    send = pub.send
    clock = time.perf_counter_ns
    sleep = time.sleep
    lag = sh.feed_lag
    rate, n, spin = int(cfg["rate"]), int(cfg["n"]), int(cfg["spin_ns"])
    spin_yield = bool(cfg.get("spin_yield", False))
    sched_yield = os.sched_yield
    t0 = clock() + 2_000_000
    hard_stop = t0 + int(cfg["max_send_s"] * NS)
    ctl = sh.ctl
    ctl[W_T0] = t0
    sent = 0
    t_first = 0
    for i in range(n):
        if rate:
            due = t0 + (i // rate) * NS + ((i % rate) * NS) // rate
            now = clock()
            if now < due:
                if due - now > spin:
                    sleep((due - now - spin) * 1e-9)
                if spin_yield:
                    while clock() < due:
                        sched_yield()        # a busy-wait that lets a runnable neighbour in
                else:
                    while clock() < due:
                        pass
            now = clock()
            lag[i] = now - due
            stamp = due
        else:
            stamp = now = clock()
        d = dict(zip(names, item(i)))
        d["recv_ns"] = stamp
        send(dumps(d))
        sent += 1
        if t_first == 0:
            t_first = now
        if now > hard_stop:
            ctl[W_FEED_TRUNC] = 1
            break
    ctl[W_T_FIRST] = t_first
    ctl[W_T_LAST] = clock()
    sh.counts[FEED, C_SENT] = sent
    ctl[W_DONE + FEED] = 1
    _finish_forward(sh, FEED, BOOK, pub, END)
    pub.close()
    ctx.term()


def book_main(sh, cfg, ticks, conn):
    import orjson
    import zmq

    _setup(cfg["cpus"][BOOK])
    ctx = zmq.Context()
    sub = _sub(zmq, ctx, [cfg["addr"]["md"]], cfg["hwm"])
    pub = _pub(zmq, ctx, cfg["addr"]["top"], cfg["hwm"])
    nsym = int(cfg["nsym"])
    bid, ask, bsz, asz = [0.0] * nsym, [0.0] * nsym, [0.0] * nsym, [0.0] * nsym
    last, valid = [0.0] * nsym, [0] * nsym
    loads, dumps = orjson.loads, orjson.dumps
    recv, send = sub.recv, pub.send
    clock = time.perf_counter_ns
    isfinite = math.isfinite
    lat = sh.book_lat
    n_lat = len(lat)
    ctl = sh.ctl
    Again = zmq.Again
    n_in = n_out = rej = 0
    ended = False
    while True:
        try:
            msg = recv()
        except Again:
            if ctl[W_STOP]:
                break
            continue
        now = clock()
        if msg[0] != LBRACE:
            if msg == HELLO:
                send(HELLO)
            elif msg == END:
                ended = True
                break
            continue
        t = loads(msg)
        if n_in < n_lat:
            lat[n_in] = now - t["recv_ns"]
        n_in += 1
        s = t["sym"]
        if s >= nsym:
            rej += 1
            continue
        kind = t["kind"]
        if kind == TICK_QUOTE:
            b, a, bs, az = t["bid"], t["ask"], t["bid_size"], t["ask_size"]
            if not (isfinite(b) and b > 0.0 and isfinite(a) and a > 0.0):
                rej += 1
                continue
            if not (isfinite(bs) and bs >= 0.0 and isfinite(az) and az >= 0.0):
                rej += 1
                continue
            if b >= a:
                rej += 1
                continue
            bid[s], ask[s], bsz[s], asz[s], valid[s] = b, a, bs, az, 1
            tpx = tsz = 0.0
        elif kind == TICK_TRADE:
            tpx, tsz = t["price"], t["size"]
            if not (isfinite(tpx) and tpx > 0.0 and isfinite(tsz) and tsz >= 0.0):
                rej += 1
                continue
            last[s] = tpx
        else:
            rej += 1
            continue
        send(dumps({"tick_seq": t["seq"], "feed_ns": t["recv_ns"], "sent_ns": clock(), "sym": s,
                    "kind": kind, "valid": valid[s], "bid": bid[s], "ask": ask[s],
                    "bid_size": bsz[s], "ask_size": asz[s], "trade_px": tpx, "trade_size": tsz}))
        n_out += 1
    c = sh.counts[BOOK]
    c[C_RECV], c[C_SENT], c[C_REJ] = n_in, n_out, rej
    if ended:
        ctl[W_DONE + BOOK] = 1
        _finish_forward(sh, BOOK, SIGNAL, pub, END)
    else:
        ctl[W_ABANDONED + BOOK] = 1
    sub.close()
    pub.close()
    ctx.term()


def signal_main(sh, cfg, ticks, conn):
    import orjson
    import zmq

    _setup(cfg["cpus"][SIGNAL])
    ctx = zmq.Context()
    sub = _sub(zmq, ctx, [cfg["addr"]["top"]], cfg["hwm"])
    pub = _pub(zmq, ctx, cfg["addr"]["intent"], cfg["hwm"])
    nsym = int(cfg["nsym"])
    sp = cfg["signal"]
    af, aslow = 2.0 / (sp["fast"] + 1), 2.0 / (sp["slow"] + 1)
    qty, warmup = float(sp["qty"]), int(sp["warmup"])
    fast, slow = [0.0] * nsym, [0.0] * nsym
    count, sign = [0] * nsym, [0] * nsym
    loads, dumps = orjson.loads, orjson.dumps
    recv, send = sub.recv, pub.send
    clock = time.perf_counter_ns
    ctl = sh.ctl
    Again = zmq.Again
    n_in = n_out = 0
    seq = 0
    t_last = 0
    ended = False
    while True:
        try:
            msg = recv()
        except Again:
            if ctl[W_STOP]:
                break
            continue
        if msg[0] != LBRACE:
            if msg == HELLO:
                send(HELLO)
            elif msg == END:
                ended = True
                break
            continue
        e = loads(msg)
        n_in += 1
        s = e["sym"]
        if e["kind"] != TICK_QUOTE or e["valid"] == 0 or s >= nsym:
            t_last = clock()
            continue
        b, a = e["bid"], e["ask"]
        mid = 0.5 * (b + a)
        if count[s] == 0:
            fast[s] = mid
            slow[s] = mid
        else:
            fast[s] = fast[s] + af * (mid - fast[s])
            slow[s] = slow[s] + aslow * (mid - slow[s])
        count[s] += 1
        d = fast[s] - slow[s]
        cur = 1 if d > 0.0 else (-1 if d < 0.0 else 0)
        prev = sign[s]
        sign[s] = cur
        if count[s] <= warmup:
            t_last = clock()
            continue
        if prev <= 0 and cur > 0:
            side = BUY
        elif prev >= 0 and cur < 0:
            side = SELL
        else:
            t_last = clock()
            continue
        send(dumps({"seq": seq, "feed_ns": e["feed_ns"], "sent_ns": clock(), "sym": s, "side": side,
                    "order_type": ORDER_MARKET, "tif": TIF_DAY, "qty": qty, "limit_px": 0.0,
                    "ref_px": mid, "tag": 0, "bid": b, "ask": a}))
        seq += 1
        n_out += 1
        t_last = clock()
    c = sh.counts[SIGNAL]
    c[C_RECV], c[C_SENT] = n_in, n_out
    ctl[W_SIG_T_LAST] = t_last
    if ended:
        ctl[W_DONE + SIGNAL] = 1
        _finish_forward(sh, SIGNAL, RISK, pub, END)
    else:
        ctl[W_ABANDONED + SIGNAL] = 1
    sub.close()
    pub.close()
    ctx.term()


def risk_main(sh, cfg, ticks, conn):
    import orjson
    import zmq

    _setup(cfg["cpus"][RISK])
    ctx = zmq.Context()
    # One SUB connected to both publishers (signal's intents and exec's fills), fair-queued:
    # one blocking recv serves both; a fill is told apart by its "fill_id" key.
    sub = _sub(zmq, ctx, [cfg["addr"]["intent"], cfg["addr"]["fill"]], cfg["hwm"])
    pub = _pub(zmq, ctx, cfg["addr"]["order"], cfg["hwm"])
    nsym = int(cfg["nsym"])
    rp = cfg["risk"]
    max_qty, max_pos = float(rp["max_order_qty"]), float(rp["max_position"])
    cap = int(rp["open_orders"])
    mask = cap - 1
    eps = 1e-9
    qty_, avg, realized, fees = [0.0] * nsym, [0.0] * nsym, [0.0] * nsym, [0.0] * nsym
    bought, sold, open_buy, open_sell = [0.0] * nsym, [0.0] * nsym, [0.0] * nsym, [0.0] * nsym
    nfills = [0] * nsym
    o_id, o_sym, o_side = [0] * cap, [0] * cap, [0] * cap
    o_qty, o_filled = [0.0] * cap, [0.0] * cap
    next_id = 1
    kill_switch = False
    loads, dumps = orjson.loads, orjson.dumps
    recv, send = sub.recv, pub.send
    clock = time.perf_counter_ns
    isfinite = math.isfinite
    ctl = sh.ctl
    Again = zmq.Again
    n_int = n_fill = n_out = rej = fill_bad = 0
    intents_ended = fills_ended = False

    def release_open(s, side, q):
        if side == BUY:
            open_buy[s] = max(open_buy[s] - q, 0.0)
        else:
            open_sell[s] = max(open_sell[s] - q, 0.0)

    def apply_fill(s, side, q, px, fee):
        pq = qty_[s]
        sq = q if side == BUY else -q
        if pq == 0.0 or (pq > 0.0) == (side == BUY):
            nq = pq + sq
            avg[s] = (abs(pq) * avg[s] + q * px) / abs(nq) if nq != 0.0 else 0.0
        else:
            closed = min(q, abs(pq))
            realized[s] += closed * (px - avg[s]) * (1.0 if pq > 0.0 else -1.0)
            nq = pq + sq
            if abs(nq) < eps:
                nq = 0.0
                avg[s] = 0.0
            elif (nq > 0.0) != (pq > 0.0):
                avg[s] = px
        qty_[s] = nq
        fees[s] += fee
        if side == BUY:
            bought[s] += q
        else:
            sold[s] += q
        nfills[s] += 1

    while True:
        try:
            msg = recv()
        except Again:
            if ctl[W_STOP]:
                break
            if intents_ended and not fills_ended:
                send(END)                     # exec may not have got it (PUB drops at HWM)
            continue
        if msg[0] != LBRACE:
            if msg == HELLO:
                send(HELLO)
            elif msg == FILL_HELLO:
                send(READY)
            elif msg == END:
                if not intents_ended:
                    intents_ended = True
                    send(END)
            elif msg == FILL_END:
                fills_ended = True
                break
            continue
        d = loads(msg)
        if "fill_id" in d:                       # a fill report from exec
            n_fill += 1
            oid = d["order_id"]
            i = oid & mask
            if oid == 0 or o_id[i] != oid:
                continue
            s, side = o_sym[i], o_side[i]
            status = d["status"]
            if status == FILL_PARTIAL or status == FILL_FULL:
                q, px, fee = d["qty"], d["price"], d["fee"]
                if not (isfinite(q) and q >= 0.0 and isfinite(px) and px > 0.0 and isfinite(fee)):
                    fill_bad += 1
                    continue
                rem = o_qty[i] - o_filled[i]
                take = min(q, rem)
                o_filled[i] += take
                release_open(s, side, take)
                apply_fill(s, side, q, px, fee)
                done = status == FILL_FULL or o_qty[i] - o_filled[i] <= eps
            elif status == FILL_REJECTED or status == FILL_CANCELED or status == FILL_EXPIRED:
                done = True
            else:
                fill_bad += 1
                continue
            if done:
                release_open(s, side, o_qty[i] - o_filled[i])
                o_id[i] = 0
            continue
        n_int += 1                                # an intent from signal
        s, side, q, ot = d["sym"], d["side"], d["qty"], d["order_type"]
        if s >= nsym or (side != BUY and side != SELL) or not (isfinite(q) and q > 0.0) \
                or (ot != ORDER_MARKET and ot != ORDER_LIMIT) or d["tif"] > TIF_FOK \
                or (ot == ORDER_LIMIT and not (isfinite(d["limit_px"]) and d["limit_px"] > 0.0)):
            rej += 1
            continue
        if kill_switch or q > max_qty:
            rej += 1
            continue
        if (side == BUY and qty_[s] + open_buy[s] + q > max_pos + eps) or \
                (side == SELL and qty_[s] - open_sell[s] - q < -max_pos - eps):
            rej += 1
            continue
        i = next_id & mask
        if o_id[i] != 0:
            rej += 1
            continue
        oid = next_id
        next_id += 1
        o_id[i], o_sym[i], o_side[i], o_qty[i], o_filled[i] = oid, s, side, q, 0.0
        if side == BUY:
            open_buy[s] += q
        else:
            open_sell[s] += q
        send(dumps({"order_id": oid, "intent_seq": d["seq"], "feed_ns": d["feed_ns"],
                    "sent_ns": clock(), "sym": s, "side": side, "order_type": ot, "tif": d["tif"],
                    "qty": q, "limit_px": d["limit_px"], "tag": d["tag"], "bid": d["bid"],
                    "ask": d["ask"]}))
        n_out += 1
    c = sh.counts[RISK]
    c[C_RECV], c[C_RECV2], c[C_SENT], c[C_REJ] = n_int, n_fill, n_out, rej
    if fills_ended:
        ctl[W_DONE + RISK] = 1
    else:
        ctl[W_ABANDONED + RISK] = 1
    sub.close()
    pub.close()
    ctx.term()


def exec_main(sh, cfg, ticks, conn):
    import orjson
    import zmq

    _setup(cfg["cpus"][EXEC])
    ctx = zmq.Context()
    sub = _sub(zmq, ctx, [cfg["addr"]["order"]], cfg["hwm"])
    pub = _pub(zmq, ctx, cfg["addr"]["fill"], cfg["hwm"])
    nsym = int(cfg["nsym"])
    fee_ps = float(cfg["exec"]["fee_per_share"])
    v_qty, v_fees = [0.0] * nsym, [0.0] * nsym
    loads, dumps = orjson.loads, orjson.dumps
    recv, send = sub.recv, pub.send
    clock = time.perf_counter_ns
    isfinite = math.isfinite
    lat = sh.exec_lat
    n_lat = len(lat)
    ctl = sh.ctl
    Again = zmq.Again
    n_in = n_out = rej = 0
    last_id = 0
    fill_id = 1
    ready_sent = False
    ended = False
    while True:
        try:
            msg = recv()
        except Again:
            if ctl[W_STOP]:
                break
            continue
        now = clock()
        if msg[0] != LBRACE:
            if msg == HELLO:
                send(FILL_HELLO)
            elif msg == READY:
                if not ready_sent:
                    conn.send("ready")
                    ready_sent = True
            elif msg == END:
                ended = True
                break
            continue
        o = loads(msg)
        if n_in < n_lat:
            lat[n_in] = now - o["feed_ns"]
        n_in += 1
        oid, s, side, q, ot, lp = o["order_id"], o["sym"], o["side"], o["qty"], o["order_type"], \
            o["limit_px"]
        reason, px = 0, 0.0
        if oid <= last_id:
            reason = 3                                      # duplicate id
        elif s >= nsym or (side != BUY and side != SELL) or not (isfinite(q) and q > 0.0) \
                or (ot != ORDER_MARKET and ot != ORDER_LIMIT) \
                or (ot == ORDER_LIMIT and not (isfinite(lp) and lp > 0.0)):
            reason = 4                                      # bad order
        else:
            b, a = o["bid"], o["ask"]
            if not (b > 0.0 and a > 0.0):
                reason = 1                                  # no book
            else:
                px = a if side == BUY else b
                if ot == ORDER_LIMIT and ((side == BUY and lp < px) or (side == SELL and lp > px)):
                    reason = 2                              # not marketable
        if reason == 0:
            last_id = oid
            fee = fee_ps * q
            v_qty[s] += q if side == BUY else -q
            v_fees[s] += fee
            f = {"order_id": oid, "fill_id": fill_id, "feed_ns": o["feed_ns"], "sent_ns": clock(),
                 "sym": s, "side": side, "status": FILL_FULL, "qty": q, "price": px, "fee": fee,
                 "leaves_qty": 0.0, "reason": 0}
        else:
            if reason != 3:
                last_id = oid
            rej += 1
            f = {"order_id": oid, "fill_id": fill_id, "feed_ns": o["feed_ns"], "sent_ns": clock(),
                 "sym": s, "side": side, "status": FILL_REJECTED, "qty": 0.0, "price": 0.0,
                 "fee": 0.0, "leaves_qty": 0.0, "reason": reason}
        fill_id += 1
        send(dumps(f))
        n_out += 1
    c = sh.counts[EXEC]
    c[C_RECV], c[C_SENT], c[C_REJ] = n_in, n_out, rej
    if ended:
        ctl[W_DONE + EXEC] = 1
        _finish_forward(sh, EXEC, RISK, pub, FILL_END)
    else:
        ctl[W_ABANDONED + EXEC] = 1
    sub.close()
    pub.close()
    ctx.term()


_STAGE_MAIN = (feed_main, book_main, signal_main, risk_main, exec_main)
