"""``pyrt bench feed``: Alpaca WebSocket frame -> tick record, against alpaca-py; order round trips.

One run (``pyrt bench feed --json``, or ``PYTHONPATH=. python -m bench.feed --json``) starts the
fake Alpaca (``tools.fake_alpaca``) in a separate process (a child python, pinned to the first CPU
on a multi-core host; this process goes on the last) that publishes paced market data, and
measures in this process:

1. **pyrt adapter** (``procs.alpaca_md_client.MdClient``: picows, JSON mode, orjson, the
   ``TickWriter`` into an SPSC ring), the production code path of ``AlpacaFeed``:

   * ``decode``: per frame, from the clock read first thing in ``on_ws_frame`` to the frame's
     records committed to the ring (the stage's own ``decode`` HDR histogram; percentiles
     through ``hdrh``). With one message per frame (``quotes``, ``trades``) that is the
     decode-and-publish time per message; ``batched`` frames of ``--batch`` messages report
     it per frame and per message (frame time / batch).
   * ``one_way``: from the fake's publish stamp (``t``, the wall clock when
     ``publish_quote``/``publish_trade`` ran in the other process) to ``on_ws_frame``'s
     receipt stamp (``recv_ns`` + the wall-monotonic offset): fake's encode and send,
     loopback, the client's wake-up. Both clocks are this host's, so the difference means
     what it says (to ~1 µs of clock-read jitter). Exact percentiles over every record.
   * every record is checked: count, gap-free seq, prices in publication order.

2. **Baseline: alpaca-py's ``StockDataStream``** on the same fake and the same paced stream
   (msgpack mode: alpaca-py always asks for it; handlers are ``async def``; default
   ``raw_data=False``, i.e. pydantic models as users get them):

   * ``frame_to_handler``: from ``ws.recv()`` returning the frame to alpaca-py's code (we wrap
     the connection's ``recv``) to our handler being called, per message: ``msgpack`` unpack,
     dispatch, model construction. With one message per frame this matches ``decode`` above:
     both start when the library's code gets the complete frame payload and end when the
     application has the data (websockets reads and assembles frames in its own task before
     ``recv`` returns, so that cost is outside the baseline's figure; picows' framing is
     Cython and equally outside ours).
   * ``one_way``: from the publish stamp to the handler call (``t`` arrives as a msgpack
     Timestamp; alpaca-py converts it to a ``datetime``, µs precision).

3. **Order round trip** to the fake's REST (``POST /v2/orders``, market orders of 1 share,
   alternating buy/sell so buying power never runs out): through alpaca-py's
   ``TradingClient.submit_order`` and through a raw ``requests.Session.post`` (the floor:
   alpaca-py uses requests underneath). Exact percentiles.

4. **Offline decode** (no network, no threads): the same JSON frames through
   ``MdDecoder.decode`` into a ring, next to ``orjson.loads`` alone of the same bytes: what
   the adapter adds to the parser, independent of the event loop; once back to back, once
   with a sleep of ``1 / rate`` before each frame (what waiting for the next frame costs the
   next decode on this host). ``write_methods``: one record written from Python by
   ``struct.pack_into`` (the adapter's choice) vs numpy record assignment.

Targets (reported, never asserted): decode-and-publish per message p50 <= 2 µs and p99 <=
10 µs for quotes and trades. Ratios are baseline / pyrt. Nothing touches /dev/shm.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

KEY, SECRET = "bench-key-id", "bench-secret-key"
SYMBOLS = ("AAPL", "MSFT")
PCTS = (50, 90, 99, 99.9)
TARGET_P50_NS, TARGET_P99_NS = 2_000, 10_000
READY_TIMEOUT_S = 60.0
WARMUP = 1000                    # messages of each kind streamed and discarded before measuring
PACED_FRAMES = 2000              # frames of the offline paced run (they take PACED_FRAMES / rate s)
STEP_TIMEOUT_S = 120.0


# -- the fake, in its own process ---------------------------------------------------------------

def serve_stdio() -> None:
    """Child process: the fake Alpaca; publishes paced streams on request, JSON lines on stdin/out.

    First line out: ``{"md": base ws URL, "rest": REST URL}``. Commands (one JSON array a line):
    ``["stream", kind, n, rate, batch]`` (kind "quote"/"trade": ``n`` messages in frames of
    ``batch``, frame ``i`` due at ``t0 + i * batch / rate``; answers ``["done", late_frames]``),
    ``["quote", sym, bid, ask]`` (answers ``["done", 0]``), ``["stop"]``. EOF on stdin stops.
    """
    from tools.fake_alpaca import FakeAlpaca

    def say(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    with FakeAlpaca(key_id=KEY, secret_key=SECRET, symbols=SYMBOLS, crypto_symbols=("BTC/USD",), quote_rate=0,
                    seed=1, rest_rate_limit=10**9, cash=1e9) as fake:
        say({"md": fake.md_base_url, "rest": fake.rest_url})
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd[0] == "stop":
                return
            if cmd[0] == "quote":
                fake.publish_quote(cmd[1], cmd[2], cmd[3], 100, 100)
                say(["done", 0])
                continue
            _, kind, n, rate, batch = cmd
            late, t0 = 0, time.monotonic()
            for f in range(0, n // batch):
                wait = t0 + f * batch / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                else:
                    late += 1
                with fake.batch():
                    for j in range(batch):
                        i = f * batch + j
                        if kind == "quote":
                            px = 100.0 + (i % 1000) * 0.01
                            fake.publish_quote(SYMBOLS[i & 1], px, px + 0.01, 100 + i % 7, 200 + i % 5)
                        else:
                            fake.publish_trade(SYMBOLS[i & 1], 100.0 + (i % 1000) * 0.01, 1 + i % 50)
            say(["done", late])


class FakeProcess:
    """The fake in a child process (``python -c ... serve_stdio()``), pinned to ``cpu``:
    ``urls``, ``call(*cmd)``, ``close()`` (waits; kills on overrun)."""

    def __init__(self, cpu):
        import subprocess

        code = "import bench.feed as f; f.serve_stdio()"
        pre = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, preexec_fn=pre)
        try:
            self.urls = self._read(READY_TIMEOUT_S, "start")
        except BaseException:
            self.close()
            raise

    def _read(self, timeout, what):
        import select

        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"the fake Alpaca process did not {what} within {timeout} s "
                               f"(exit status {self.proc.poll()})")
        return json.loads(line)

    def call(self, *cmd, timeout=STEP_TIMEOUT_S):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read(timeout, f"finish {cmd[0]!r}")

    def close(self) -> None:
        try:
            self.proc.stdin.write(json.dumps(["stop"]) + "\n")
            self.proc.stdin.close()
        except (OSError, ValueError):
            pass
        try:
            self.proc.wait(10)
        except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: it is stuck
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# -- helpers --------------------------------------------------------------------------------------

def _pct(samples) -> dict:
    import numpy as np

    a = np.asarray(samples, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    out = {f"p{p:g}_ns".replace(".", ""): float(np.percentile(a, p, method="inverted_cdf")) for p in PCTS}
    out.update(mean_ns=float(a.mean()), max_ns=float(a.max()), n=int(a.size))
    return out


def _hdr_pct(row) -> dict:
    from pyrt_shm.hdr_convert import percentiles

    p = percentiles(row, PCTS + (100,))
    out = {f"p{k:g}_ns".replace(".", ""): float(v) for k, v in p.items() if k != 100}
    out.update(max_ns=float(p[100]), mean_ns=float(row["sum"]) / max(int(row["total"]), 1), n=int(row["total"]))
    return out


def _wait(cond, timeout, what):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


# -- 1. the pyrt adapter --------------------------------------------------------------------------

def bench_pyrt(fake: FakeProcess, n: int, rate: float, batch: int) -> dict:
    import numpy as np

    from layouts.histogram import HISTOGRAM
    from layouts.market import TICK, TICK_QUOTE, TICK_TRADE
    from procs.alpaca_md import COUNT_NAMES, MdDecoder
    from procs.alpaca_md_client import MdClient
    from procs.alpaca_md_session import MdSession
    from procs.tick_writer import TickWriter
    from ringbuf.ring import SpscRing, ring_bytes

    warm = min(n, WARMUP)
    runs = [("warmup", "quote", 1, warm), ("warmup", "trade", 1, warm), ("quotes", "quote", 1, n),
            ("trades", "trade", 1, n), ("batched_quotes", "quote", batch, n)]
    cap = 1 << max(10, (sum(r[3] for r in runs) + 1).bit_length())
    ring = SpscRing.init_in(bytearray(ring_bytes(TICK, cap)), 0, TICK, cap, name="md")
    writer = TickWriter(ring)
    url = f"{fake.urls['md']}/v2/iex"
    session = MdSession(url, KEY, SECRET, {"quotes": SYMBOLS, "trades": SYMBOLS})
    decoder = MdDecoder(SYMBOLS, writer)
    hists = np.zeros(2 * len(runs), HISTOGRAM)
    log = []
    client = MdClient(url, session, decoder, writer, hists=hists, decode_row=0, age_row=1,
                      log=log.append, reconnect_min_s=0.05, reconnect_max_s=0.5)
    out = {}
    client.start()
    try:
        _wait(lambda: client.live, 30.0, "the pyrt client to subscribe")
        for k, (name, kind, b, count) in enumerate(runs):
            client.decode_row, client.age_row = 2 * k, 2 * k + 1
            frames, start = count // b, writer.seq
            late = fake.call("stream", kind, frames * b, rate, b)[1]
            _wait(lambda: writer.seq - start >= frames * b, 60.0, f"{name}: {frames * b} records")
            _wait(lambda: int(hists[2 * k]["total"]) >= frames, 10.0, f"{name}: decode samples")
            recs = ring.poll(frames * b + 16)           # consumed even for the warm-up: the next run starts after it
            if name == "warmup":
                continue
            offset = client._rt_offset
            exp_kind = TICK_QUOTE if kind == "quote" else TICK_TRADE
            px = recs["bid"] if kind == "quote" else recs["price"]
            want = 100.0 + (np.arange(frames * b) % 1000) * 0.01
            checks = {"records": int(len(recs)), "seq_gap_free": bool(np.array_equal(
                recs["seq"], np.arange(start, start + len(recs)))), "in_order": bool(np.allclose(px, want)),
                "kinds_ok": bool(np.all(recs["kind"] == exp_kind))}
            dec = _hdr_pct(hists[2 * k])
            r = {"messages": frames * b, "frames": frames, "batch": b, "rate_msgs_per_s": rate, "late_frames": late,
                 "decode_per_frame": dec,
                 "one_way": _pct(recs["recv_ns"] + offset - recs["exch_ns"]), "checks": checks}
            if b > 1:
                r["decode_per_message"] = {key: v / b for key, v in dec.items() if key.endswith("_ns")}
            out[name] = r
        out["counters"] = dict(zip(COUNT_NAMES, decoder.counts))
    finally:
        client.stop()
    out["log"] = log[-10:]
    return out


# -- 2. alpaca-py's StockDataStream ---------------------------------------------------------------

def bench_alpaca_py(fake: FakeProcess, n: int, rate: float) -> dict:
    import asyncio
    import calendar
    import threading

    from alpaca.data.enums import DataFeed
    from alpaca.data.live import StockDataStream

    class TimedStream(StockDataStream):
        """Stamps when ``ws.recv()`` hands a frame to alpaca-py's code."""

        frame_ns = 0

        async def _connect(self):
            await super()._connect()
            ws, orig = self._ws, self._ws.recv

            async def recv():
                r = await orig()
                self.frame_ns = time.monotonic_ns()
                return r

            ws.recv = recv

    stream = TimedStream(KEY, SECRET, feed=DataFeed.IEX, url_override=f"{fake.urls['md']}/v2/iex")
    f2h, one_way, kinds = [], [], []
    got = [0]

    async def on_data(m):
        now, wall = time.monotonic_ns(), time.time_ns()
        f2h.append(now - stream.frame_ns)
        ts = m.timestamp
        one_way.append(wall - (calendar.timegm(ts.utctimetuple()) * 1_000_000_000 + ts.microsecond * 1000))
        kinds.append(type(m).__name__)
        got[0] += 1

    stream.subscribe_quotes(on_data, *SYMBOLS)
    stream.subscribe_trades(on_data, *SYMBOLS)
    th = threading.Thread(target=stream.run, name="alpaca-py-stream", daemon=True)
    th.start()
    out = {}
    try:
        # subscribed once the fake answers our probe quote
        _wait(lambda: stream._loop is not None and stream._running, 30.0, "alpaca-py to connect")
        probe_deadline = time.monotonic() + 30.0
        while got[0] == 0:
            fake.call("quote", "AAPL", 99.0, 99.01)
            if time.monotonic() > probe_deadline:
                raise RuntimeError("alpaca-py received nothing within 30 s")
            time.sleep(0.1)
        warm = min(n, WARMUP)
        for name, kind, count in (("warmup", "quote", warm), ("warmup", "trade", warm), ("quotes", "quote", n),
                                  ("trades", "trade", n)):
            f2h.clear()
            one_way.clear()
            kinds.clear()
            got[0] = 0
            late = fake.call("stream", kind, count, rate, 1)[1]
            _wait(lambda: got[0] >= count, 60.0, f"alpaca-py {name}: {count} messages")
            if name == "warmup":
                continue
            out[name] = {"messages": n, "rate_msgs_per_s": rate, "late_frames": late,
                         "model": kinds[0] if kinds else None,
                         "frame_to_handler": _pct(f2h), "one_way": _pct(one_way)}
    finally:
        if stream._loop is not None:
            try:
                asyncio.run_coroutine_threadsafe(stream.stop_ws(), stream._loop).result(5)
            except Exception:  # noqa: BLE001 - best effort; the thread is a daemon and joined below
                pass
        th.join(10)
    return out


# -- 3. order round trips -------------------------------------------------------------------------

def bench_orders(fake: FakeProcess, n: int) -> dict:
    import requests
    from alpaca.trading.client import TradingClient
    from alpaca.trading.enums import OrderSide, TimeInForce
    from alpaca.trading.requests import MarketOrderRequest

    fake.call("quote", "AAPL", 100.0, 100.02)
    rest = fake.urls["rest"]
    client = TradingClient(KEY, SECRET, paper=True, url_override=rest)
    s = requests.Session()
    s.headers.update({"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET})
    sides = (OrderSide.BUY, OrderSide.SELL)
    apy, raw = [], []
    # Interleaved, one of each per step: both clients meet the same server state (the fake's
    # order book grows with every order, so running one after the other would favour the first).
    for i in range(n + 5):                                # the first 5 of each are warm-up
        req = MarketOrderRequest(symbol="AAPL", qty=1, side=sides[i & 1], time_in_force=TimeInForce.DAY)
        t0 = time.perf_counter_ns()
        client.submit_order(req)
        t1 = time.perf_counter_ns()
        body = {"symbol": "AAPL", "qty": "1", "side": ("sell", "buy")[i & 1], "type": "market", "time_in_force": "day"}
        r = s.post(f"{rest}/v2/orders", json=body, timeout=10)
        t2 = time.perf_counter_ns()
        if r.status_code != 200:
            raise RuntimeError(f"raw order {i} got HTTP {r.status_code}: {r.text[:200]}")
        if i >= 5:
            apy.append(t1 - t0)
            raw.append(t2 - t1)
    s.close()
    a, b = _pct(apy), _pct(raw)
    return {"orders": n, "alpaca_py_submit_order": a, "requests_post": b,
            "alpaca_py_over_requests_p50": a["p50_ns"] / b["p50_ns"]}


# -- 4. offline decode ----------------------------------------------------------------------------

def bench_offline(n: int, batch: int, rate: float) -> dict:
    """The same frames as the fake sends, decoded in a loop (no network, no threads); each
    frame's ``orjson.loads`` alone is timed right before its decode. ``quote_paced`` sleeps
    ``1 / rate`` before each frame, as the live client waits for the next one: the difference
    to ``quote`` is what an idle wait costs the next decode on this host (cold caches and
    branch predictors, a halted vCPU waking up), with no network involved."""
    import numpy as np
    import orjson

    from layouts.market import TICK
    from procs.alpaca_md import MdDecoder
    from procs.tick_writer import TickWriter
    from ringbuf.ring import SpscRing, ring_bytes
    from tools.fake_alpaca.wire import md_json

    t0 = time.time_ns()

    def quote(i):
        px = 100.0 + i % 1000 * 0.01
        return {"T": "q", "S": SYMBOLS[i & 1], "bx": "V", "bp": px, "bs": 100, "ax": "V", "ap": px + 0.01,
                "as": 200, "t": t0 + i * 1000, "c": ["R"], "z": "C"}

    def trade(i):
        return {"T": "t", "S": SYMBOLS[i & 1], "i": i + 1, "x": "V", "p": 100.0 + i % 1000 * 0.01, "s": 1 + i % 50,
                "t": t0 + i * 1000, "c": ["@"], "z": "C"}

    out = {}
    paced = min(n, PACED_FRAMES)
    for name, make, b, count, gap in (("quote", quote, 1, n, 0.0), ("trade", trade, 1, n, 0.0),
                                      ("quote_batched", quote, batch, n, 0.0), ("quote_paced", quote, 1, paced, 1 / rate)):
        frames = [memoryview(orjson.dumps([md_json(make(f * b + j)) for j in range(b)])) for f in range(count // b)]
        ring = SpscRing.init_in(bytearray(ring_bytes(TICK, 1 << 16)), 0, TICK, 1 << 16)
        ring.poll(1)                                     # compile/load the consumer before timing
        dec = MdDecoder(SYMBOLS, TickWriter(ring))
        d_ns, l_ns = np.empty(len(frames), np.int64), np.empty(len(frames), np.int64)
        mono, loads, decode = time.monotonic_ns, orjson.loads, dec.decode
        for i, f in enumerate(frames):
            if gap:
                time.sleep(gap)
            a = mono()
            loads(f)
            c = mono()
            decode(f, c)
            d_ns[i] = mono() - c
            l_ns[i] = c - a
            if i & 1023 == 1023:
                ring.poll(1 << 16)
        pd, pl = _pct(d_ns / b), _pct(l_ns / b)
        out[name] = {"messages_per_frame": b, "sleep_before_frame_s": gap, "decode_and_publish_per_message": pd,
                     "orjson_loads_only_per_message": pl, "adapter_share_of_p50": 1.0 - pl["p50_ns"] / pd["p50_ns"]}
    return out


def bench_write_methods(n: int) -> dict:
    """Writing one TICK record into ring memory from Python, three ways (mean ns per record,
    loop included): ``struct.pack_into`` (what ``TickWriter`` does), a tuple assigned to a numpy
    record, and numpy field-by-field stores."""
    import numpy as np

    from layouts.market import TICK
    from procs.tick_writer import RECORD_SIZE, TICK_STRUCT

    cap = 1024
    recs = np.zeros(cap, TICK)
    buf = memoryview(recs.view(np.uint8))
    pack, mask = TICK_STRUCT.pack_into, cap - 1
    vals = (1, 2, 3, 4, 2, 0, 0.0, 0.0, 100.0, 100.01, 100.0, 200.0)
    out = {}
    t0 = time.perf_counter_ns()
    for i in range(n):
        pack(buf, (i & mask) * RECORD_SIZE, i, *vals[1:])
    out["struct_pack_into_ns"] = (time.perf_counter_ns() - t0) / n
    t0 = time.perf_counter_ns()
    for i in range(n):
        recs[i & mask] = (i,) + vals[1:]
    out["numpy_tuple_assign_ns"] = (time.perf_counter_ns() - t0) / n
    names = TICK.names
    t0 = time.perf_counter_ns()
    for i in range(n):
        r = recs[i & mask]
        for k, v in zip(names, vals):
            r[k] = v
    out["numpy_field_stores_ns"] = (time.perf_counter_ns() - t0) / n
    return out


# -- main ------------------------------------------------------------------------------------------

def _target(name, measured, limit) -> dict:
    return {"name": name, "target": f"<= {limit} ns", "measured": measured,
            "met": None if measured is None else bool(measured <= limit)}


def run(n: int, rate: float, batch: int, orders: int, argv) -> dict:
    import gc

    from bench.host import host_info, isolated_cpus, preempt_rt

    cpus = sorted(os.sched_getaffinity(0))
    fake_cpu, my_cpu = (cpus[0], cpus[-1]) if len(cpus) >= 2 else (None, None)
    t_start = time.monotonic()
    out = {"bench": "feed", "command": "pyrt bench feed " + " ".join(argv),
           "host": host_info(preempt_rt=preempt_rt(), isolated_cpus=isolated_cpus(),
                             placement={"fake": fake_cpu, "client": my_cpu}),
           "params": {"messages": n, "rate": rate, "batch": batch, "orders": orders}}
    fake = FakeProcess(fake_cpu)
    try:
        if my_cpu is not None:
            os.sched_setaffinity(0, {my_cpu})
        gc.disable()                                      # both sides equally: no collector pauses
        try:
            out["pyrt"] = bench_pyrt(fake, n, rate, batch)
            out["alpaca_py"] = bench_alpaca_py(fake, n, rate)
            out["orders"] = bench_orders(fake, orders)
        finally:
            gc.enable()
            os.sched_setaffinity(0, cpus)
    finally:
        fake.close()
    if my_cpu is not None:
        os.sched_setaffinity(0, {my_cpu})                # where the client ran
    gc.disable()
    try:
        out["offline"] = bench_offline(n, batch, rate)
        out["write_methods"] = bench_write_methods(min(n, 20_000))
    finally:
        gc.enable()
        os.sched_setaffinity(0, cpus)
    p, a = out["pyrt"], out["alpaca_py"]
    out["ratios"] = {
        f"{k}_{m}_alpaca_py_over_pyrt": a[k]["frame_to_handler"][f"{m}_ns"] / p[k]["decode_per_frame"][f"{m}_ns"]
        for k in ("quotes", "trades") for m in ("p50", "p99")}
    out["ratios"].update({f"{k}_one_way_p50_alpaca_py_over_pyrt": a[k]["one_way"]["p50_ns"] / p[k]["one_way"]["p50_ns"]
                          for k in ("quotes", "trades")})
    out["targets"] = [_target(f"decode_publish_{k}_{m}_ns", p[k]["decode_per_frame"][f"{m}_ns"], lim)
                      for k in ("quotes", "trades") for m, lim in (("p50", TARGET_P50_NS), ("p99", TARGET_P99_NS))]
    out["notes"] = [
        "pyrt decode_per_frame: on_ws_frame entry (recv_ns) -> records committed, the AlpacaFeed 'decode' histogram; "
        "one message per frame for quotes/trades",
        "alpaca_py frame_to_handler: ws.recv() returns the frame -> handler called (msgpack unpack, dispatch, "
        "pydantic model)",
        "one_way: the fake's publish wall-clock stamp -> pyrt on_ws_frame receipt / alpaca-py handler call",
        "offline: the same frames decoded in a loop without network; orjson_loads_only is the parser alone; "
        "quote_paced sleeps 1/rate before each frame like the live client (the host's idle wake-up penalty)",
    ]
    out["host"]["loadavg_end"] = round(os.getloadavg()[0], 2)
    out["elapsed_s"] = round(time.monotonic() - t_start, 2)
    return out


def _table(r: dict) -> str:
    p, a, o = r["pyrt"], r["alpaca_py"], r["orders"]
    us = lambda ns: f"{ns / 1e3:8.2f}"  # noqa: E731
    lines = [f"{'measure':58s} {'p50 us':>8s} {'p99 us':>8s}"]
    for k in ("quotes", "trades"):
        lines.append(f"{'pyrt decode+publish per ' + k[:-1] + ' (frame of 1)':58s} "
                     f"{us(p[k]['decode_per_frame']['p50_ns'])} {us(p[k]['decode_per_frame']['p99_ns'])}")
        lines.append(f"{'alpaca-py frame -> handler per ' + k[:-1]:58s} "
                     f"{us(a[k]['frame_to_handler']['p50_ns'])} {us(a[k]['frame_to_handler']['p99_ns'])}")
        lines.append(f"{'one-way publish -> pyrt receipt (' + k + ')':58s} "
                     f"{us(p[k]['one_way']['p50_ns'])} {us(p[k]['one_way']['p99_ns'])}")
        lines.append(f"{'one-way publish -> alpaca-py handler (' + k + ')':58s} "
                     f"{us(a[k]['one_way']['p50_ns'])} {us(a[k]['one_way']['p99_ns'])}")
    b = p["batched_quotes"]
    lines.append(f"{'pyrt per message in frames of ' + str(b['batch']) + ' quotes':58s} "
                 f"{us(b['decode_per_message']['p50_ns'])} {us(b['decode_per_message']['p99_ns'])}")
    for k in ("quote", "trade", "quote_batched", "quote_paced"):
        o_ = r["offline"][k]
        lines.append(f"{'offline decode+publish per ' + k + ' msg (orjson alone)':58s} "
                     f"{us(o_['decode_and_publish_per_message']['p50_ns'])} "
                     f"{us(o_['decode_and_publish_per_message']['p99_ns'])}  "
                     f"({o_['orjson_loads_only_per_message']['p50_ns'] / 1e3:.2f})")
    wm = r["write_methods"]
    lines.append(f"record write from Python: struct.pack_into {wm['struct_pack_into_ns']:.0f} ns, numpy tuple "
                 f"{wm['numpy_tuple_assign_ns']:.0f} ns, numpy fields {wm['numpy_field_stores_ns']:.0f} ns")
    lines.append(f"{'order round trip alpaca-py submit_order':58s} {us(o['alpaca_py_submit_order']['p50_ns'])} "
                 f"{us(o['alpaca_py_submit_order']['p99_ns'])}")
    lines.append(f"{'order round trip requests.Session.post':58s} {us(o['requests_post']['p50_ns'])} "
                 f"{us(o['requests_post']['p99_ns'])}")
    for t in r["targets"]:
        lines.append(f"target {t['name']} {t['target']}: {t['measured']:.0f} ns -> {'met' if t['met'] else 'MISSED'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="pyrt bench feed", description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print the JSON document only")
    ap.add_argument("--messages", type=int, default=10_000, help="messages per measured stream (default 10000)")
    ap.add_argument("--rate", type=float, default=2_000.0, help="messages per second the fake publishes (default 2000)")
    ap.add_argument("--batch", type=int, default=10, help="messages per frame in the batched run (default 10)")
    ap.add_argument("--orders", type=int, default=500, help="orders per round-trip measurement (default 500)")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args(argv)
    if args.messages < 10 or args.rate <= 0 or args.batch < 1 or args.orders < 1 or args.messages < args.batch:
        ap.error("need --messages >= 10 and >= --batch, --rate > 0, --batch >= 1, --orders >= 1")
    try:
        r = run(args.messages, args.rate, args.batch, args.orders, argv)
    except RuntimeError as e:
        print(f"pyrt bench feed: {e}", file=sys.stderr)
        return 1
    text = json.dumps(r, indent=1, default=str)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text if args.json else _table(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
