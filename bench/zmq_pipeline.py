"""The ZMQ+JSON baseline of ``bench.pipeline``: the source design, run and measured.

Five forked processes (``bench.zmq_stages``: feed, book, signal, risk, exec) connected by
pyzmq PUB/SUB over ``ipc://`` sockets in a private temp dir, each message an orjson dict of
the record's fields; fills go back from exec to risk over another PUB/SUB connection.

The market is the engine's own: the ticks are generated ahead of time by the engine's
``procs.feed:SyntheticFeed`` (same topology parameters and seed, in private memory, rate 0),
so the baseline sees exactly the tick stream the engine's feed produces; the baseline feed
turns record ``i`` into a dict and stamps ``recv_ns`` with its *scheduled* time
``t0 + i * 1e9 / rate`` (the engine's formula), so latency is coordinated-omission corrected
the same way. Exec takes CLOCK_MONOTONIC right after ``recv`` returns an order and stores
``now - feed_ns`` (the engine's ``exec.tick_to_order`` is taken at the same point: exec
receiving the order); book stores ``now - recv_ns`` for every tick (the engine's
``book.latency``). Percentiles use the engine's HDR recorder and conversion, so both
implementations are quantised the same way (3 significant digits).

Loss: a PUB drops messages for a subscriber whose queue is at the high-water mark
(``hwm`` on both sides). Every stage counts what it received and sent; a hop's loss is
sent upstream - received downstream, counted only when the run drained (every stage saw
the end marker); otherwise the difference is reported as lost or in flight.
"""
from __future__ import annotations

import multiprocessing as mp
import shutil
import tempfile
import time

import numpy as np
from numba import njit

from layouts.histogram import HISTOGRAM
from pyrt_shm import hdr_convert
from pyrt_shm.hdr_recorder import hdr_record

from . import zmq_stages as zs

IMPL = "zmq-json"
PLACEMENT = "5-procs-cpus-0/1/0/1/0"
HOPS = ("md", "top", "intent", "order", "fill")
MB = float(1 << 20)


@njit(cache=True)
def _record_all(hists, samples):
    for i in range(samples.shape[0]):
        hdr_record(hists, 0, samples[i])


def hdr_summary(samples: np.ndarray) -> dict:
    """The engine's HDR summary (``pyrt_shm.hdr_convert.summary``) of raw ns samples."""
    row = np.zeros(1, HISTOGRAM)
    s = np.ascontiguousarray(samples, dtype=np.int64)
    if s.size:
        _record_all(row, s)
    return hdr_convert.summary(row[0])


def stage_params(topo) -> dict:
    """Parameters of book/signal/risk/exec from the engine topology, with the engine's defaults."""
    p = {st.name: dict(st.params) for st in topo.stages}
    sig, risk, ex = p.get("signal", {}), p.get("risk", {}), p.get("exec", {})
    slow = int(sig.get("slow", 32))
    return {
        "nsym": len(topo.engine.symbols),
        "signal": {"fast": int(sig.get("fast", 8)), "slow": slow, "qty": float(sig.get("qty", 100.0)),
                   "warmup": int(sig.get("warmup", slow))},
        "risk": {"max_order_qty": float(risk.get("max_order_qty", 1000.0)),
                 "max_position": float(risk.get("max_position", 500.0)),
                 "open_orders": int(risk.get("open_orders", 65536))},
        "exec": {"fee_per_share": float(ex.get("fee_per_share", 0.005))},
    }


def generate_ticks(n: int, config_path=None) -> np.ndarray:
    """The first ``n`` ticks of the engine's synthetic feed (``layouts.market.TICK`` records).

    Built by the engine's own ``SyntheticFeed`` over private memory (``EngineMemory`` local
    backend, nothing in /dev/shm) at rate 0; ``recv_ns`` is overwritten by the baseline feed.
    """
    from pyrt_shm.config import load_topology, override_from_dotted
    from pyrt_shm.wiring import EngineMemory

    topo = load_topology(config_path, overrides=override_from_dotted({
        "engine.name": "bench-gen", "stages.feed.params.rate": 0,
        "stages.feed.params.max_ticks": int(n), "stages.feed.params.batch": 4096}),
        available_cpus={0, 1}, isolated_cpus=())
    mem = EngineMemory(topo, backend="local")
    try:
        feed = mem.build_stage("feed")
        ring = mem.rings["md"]
        out = np.empty(int(n), ring.dtype)
        got_n = 0
        while got_n < n:
            feed.do_work(0)
            got = ring.poll(1 << 16)
            if len(got) == 0:
                break
            out[got_n:got_n + len(got)] = got
            got_n += len(got)
        return out[:got_n]
    finally:
        mem.close()


def _uss_sample(pids: dict, mem: dict) -> None:
    """Max USS and PSS per process (``mem[name] = [uss, pss]``); ``pids`` maps name -> pid."""
    import psutil

    for name, pid in pids.items():
        try:
            m = psutil.Process(pid).memory_full_info()
        except (psutil.Error, OSError):
            continue
        cur = mem.setdefault(name, [0, 0])
        cur[0], cur[1] = max(cur[0], m.uss), max(cur[1], m.pss)


def run(ticks: np.ndarray, rate: int, n: int, params: dict, cpus, hwm: int = 65536,
        spin_ns: int = 50_000, spin_yield: bool = True, max_send_s: float | None = None, drain_s: float = 5.0,
        log=lambda m: None) -> dict:
    """One paced (``rate`` > 0) or as-fast-as-possible (``rate`` = 0) run of ``n`` ticks.

    ``cpus``: five CPU numbers (feed, book, signal, risk, exec). ``max_send_s``: the feed stops
    sending at ``t0 + max_send_s`` even if ticks remain (a bounded run when it falls behind).
    Returns a result row (see ``bench.pipeline``) plus baseline-specific detail.
    """
    n = int(min(n, len(ticks)))
    sched_s = n / rate if rate else None
    if max_send_s is None:
        max_send_s = (1.5 * sched_s + 0.2) if rate else 60.0
    wall0 = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="pyrt-bench-zmq-")
    sh = zs.Shared(n)
    cfg = dict(params)
    cfg.update({"rate": int(rate), "n": n, "hwm": int(hwm), "spin_ns": int(spin_ns), "spin_yield": bool(spin_yield),
                "max_send_s": float(max_send_s), "cpus": list(cpus),
                "addr": {h: f"ipc://{tmp}/{h}" for h in HOPS}})
    ctx = mp.get_context("fork")
    feed_parent, feed_child = ctx.Pipe()
    exec_parent, exec_child = ctx.Pipe()
    procs = []
    notes = []
    uss = {}
    handshake_ok = False
    try:
        for i, name in enumerate(zs.STAGES):
            conn = feed_child if i == zs.FEED else exec_child if i == zs.EXEC else None
            p = ctx.Process(target=zs.run_stage, args=(i, sh, cfg, ticks if i == zs.FEED else None, conn),
                            name=f"zmq-{name}", daemon=True)
            p.start()
            procs.append(p)
        pids = {name: p.pid for name, p in zip(zs.STAGES, procs)}
        # slow joiner: the feed says hello until exec has seen risk's answer to its own hello
        if exec_parent.poll(15.0):
            exec_parent.recv()
            handshake_ok = True
        else:
            notes.append("start handshake timed out after 15 s")
        if handshake_ok:
            feed_parent.send("go")
            t_go = time.monotonic()
            next_uss = t_go + 0.3
            feed_deadline = t_go + max_send_s + 5.0
            drain_deadline = None
            ctl = sh.ctl
            while True:
                now = time.monotonic()
                if now >= next_uss:
                    _uss_sample(pids, uss)
                    next_uss = now + 1.0
                if any(ctl[zs.W_ERROR + i] for i in range(5)):
                    notes.append("a baseline stage raised: " + ", ".join(
                        zs.STAGES[i] for i in range(5) if ctl[zs.W_ERROR + i]))
                    break
                if ctl[zs.W_DONE + zs.RISK] and ctl[zs.W_DONE + zs.EXEC]:
                    break
                if drain_deadline is None and ctl[zs.W_DONE + zs.FEED]:
                    _uss_sample(pids, uss)
                    drain_deadline = now + drain_s
                if drain_deadline is not None and now > drain_deadline:
                    notes.append(f"not drained {drain_s:.0f} s after the feed's last send: abandoned")
                    break
                if drain_deadline is None and now > feed_deadline:
                    notes.append("feed did not finish in time: abandoned")
                    break
                if not all(p.is_alive() for p in procs) and not ctl[zs.W_DONE + zs.FEED]:
                    notes.append("a baseline process died")
                    break
                time.sleep(0.01)
    finally:
        sh.ctl[zs.W_STOP] = 1
        deadline = time.monotonic() + 3.0
        for p in procs:
            p.join(max(deadline - time.monotonic(), 0.05))
        for p in procs:
            if p.is_alive():
                notes.append(f"{p.name} did not exit: killed")
                p.kill()
                p.join(2.0)
        for c in (feed_parent, feed_child, exec_parent, exec_child):
            c.close()
        shutil.rmtree(tmp, ignore_errors=True)

    try:
        row = _row(sh, rate, n, sched_s, uss, handshake_ok, cpus, hwm, spin_ns, notes)
        row["spin_yield"] = bool(spin_yield)
    finally:
        sh.close()
    row["wall_s"] = round(time.monotonic() - wall0, 3)
    return row


def _row(sh, rate, n, sched_s, uss, handshake_ok, cpus, hwm, spin_ns, notes) -> dict:
    ctl, c = sh.ctl, sh.counts
    sent = int(c[zs.FEED, zs.C_SENT])
    hops = {
        "md": (sent, int(c[zs.BOOK, zs.C_RECV])),
        "top": (int(c[zs.BOOK, zs.C_SENT]), int(c[zs.SIGNAL, zs.C_RECV])),
        "intent": (int(c[zs.SIGNAL, zs.C_SENT]), int(c[zs.RISK, zs.C_RECV])),
        "order": (int(c[zs.RISK, zs.C_SENT]), int(c[zs.EXEC, zs.C_RECV])),
        "fill": (int(c[zs.EXEC, zs.C_SENT]), int(c[zs.RISK, zs.C_RECV2])),
    }
    drained = bool(handshake_ok and all(ctl[zs.W_DONE + i] for i in range(5)))
    missing = sum(s - r for s, r in hops.values())
    n_orders = int(c[zs.EXEC, zs.C_RECV])
    t2o = hdr_summary(sh.exec_lat[:min(n_orders, len(sh.exec_lat))])
    n_book = min(int(c[zs.BOOK, zs.C_RECV]), len(sh.book_lat))
    per_tick = hdr_summary(sh.book_lat[:n_book])
    lag = hdr_summary(sh.feed_lag[:sent]) if rate else None
    t0, t_first, t_last = int(ctl[zs.W_T0]), int(ctl[zs.W_T_FIRST]), int(ctl[zs.W_T_LAST])
    window = (t_last - (t0 if rate else t_first)) / 1e9 if sent and t_last else 0.0
    if ctl[zs.W_FEED_TRUNC]:
        notes.append(f"feed fell behind and stopped at its time bound after {sent} of {n} ticks")
    if not drained and handshake_ok:
        notes.append("not drained: 'dropped' counts messages lost or still in flight")
    return {
        "impl": IMPL, "placement": PLACEMENT, "rate": int(rate),
        "duration_s": round(sched_s, 3) if sched_s else None,
        "ticks": sent, "ticks_scheduled": int(n),
        "achieved_rate": round(sent / window, 1) if window > 0 else None,
        "p50_ns": t2o["p50"] if n_orders else None, "p90_ns": t2o["p90"] if n_orders else None,
        "p99_ns": t2o["p99"] if n_orders else None, "p999_ns": t2o["p999"] if n_orders else None,
        "p9999_ns": t2o["p9999"] if n_orders else None, "max_ns": t2o["max"] if n_orders else None,
        "orders": n_orders, "intents": int(c[zs.SIGNAL, zs.C_SENT]),
        "dropped": int(missing), "drained": drained,
        "feed_lag_p99_ns": lag["p99"] if lag and lag["count"] else None,
        "uss_mb": {k: round(v[0] / MB, 2) for k, v in uss.items()},
        "pss_mb": {k: round(v[1] / MB, 2) for k, v in uss.items()},
        "cpus": dict(zip(zs.STAGES, cpus)),
        "per_tick_ns": {k: per_tick[k] for k in ("count", "p50", "p99", "p999", "max")},
        "hops": {h: {"sent": s, "received": r} for h, (s, r) in hops.items()},
        "book_rejected": int(c[zs.BOOK, zs.C_REJ]), "risk_rejected": int(c[zs.RISK, zs.C_REJ]),
        "hwm": int(hwm), "spin_ns": int(spin_ns),
        "t_first_send_ns": t_first, "t_last_send_ns": t_last,
        "signal_t_last_ns": int(ctl[zs.W_SIG_T_LAST]),
        "notes": notes,
    }
