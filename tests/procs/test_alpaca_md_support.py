"""Test helpers (no tests here): Alpaca market-data messages as the wire has them, a decoder over a ring.

Imported by the test_alpaca_md_* / test_alpaca_feed_* files (``tests/procs`` is on sys.path
when pytest runs them: rootdir-relative test modules without packages).
"""
from __future__ import annotations

import calendar

import numpy as np
import orjson

from layouts.market import TICK
from layouts.ring import FULL_BLOCK
from procs.alpaca_md import MdDecoder
from procs.alpaca_md_time import format_ns as ts      # unix ns -> Alpaca's text, 9 fraction digits
from procs.tick_writer import TickWriter
from pyrt_shm.stage import Stage
from ringbuf.ring import SpscRing, ring_bytes

SYMBOLS = ("AAPL", "MSFT", "BTC/USD", "ETH/USD")
T0 = calendar.timegm((2021, 2, 22, 15, 51, 45)) * 1_000_000_000


def quote(sym="AAPL", t=T0, bp=126.55, bs=1, ap=126.56, az=2, **extra):
    m = {"T": "q", "S": sym, "bx": "U", "bp": bp, "bs": bs, "ax": "Q", "ap": ap, "as": az, "t": ts(t),
         "c": ["R"], "z": "C"}
    m.update(extra)
    return m


def trade(sym="AAPL", i=1, t=T0, p=126.55, s=100, **extra):
    m = {"T": "t", "i": i, "S": sym, "x": "D", "p": p, "s": s, "t": ts(t), "c": ["@", "I"], "z": "C"}
    m.update(extra)
    return m


def bar(kind="b", sym="AAPL", t=T0, o=1.0, h=4.0, lo=0.5, c=2.0, v=1000, vw=2.1, n=12):
    return {"T": kind, "S": sym, "o": o, "h": h, "l": lo, "c": c, "v": v, "t": ts(t), "n": n, "vw": vw}


def book(sym="BTC/USD", t=T0, bids=(), asks=(), reset=False):
    return {"T": "o", "S": sym, "t": ts(t), "b": [{"p": p, "s": s} for p, s in bids],
            "a": [{"p": p, "s": s} for p, s in asks], "r": reset}


def frame(*msgs) -> bytes:
    return orjson.dumps(list(msgs))


class Rig:
    """A decoder writing into a real SPSC ring in private memory; the test is the consumer."""

    def __init__(self, symbols=SYMBOLS, capacity=1024, full_policy=FULL_BLOCK, max_ticks=0, portable=None):
        self.buf = bytearray(ring_bytes(TICK, capacity))
        self.ring = SpscRing.init_in(self.buf, 0, TICK, capacity, full_policy, "md")
        self.writer = TickWriter(self.ring, max_ticks=max_ticks, portable=portable)
        self.dec = MdDecoder(symbols, self.writer)
        self.recv = 1_000

    def feed(self, *msgs, raw: bytes | None = None) -> int:
        self.recv += 1_000
        payload = raw if raw is not None else frame(*msgs)
        return self.dec.decode(memoryview(payload), self.recv)

    def drain(self) -> np.ndarray:
        out = []
        while True:
            got = self.ring.poll(4096)
            if not len(got):
                break
            out.append(got)
        return np.concatenate(out) if out else np.zeros(0, TICK)

    def counts(self) -> dict:
        from procs.alpaca_md import COUNT_NAMES

        return {k: v for k, v in zip(COUNT_NAMES, self.dec.counts) if v}


# -- the stage over a local engine -------------------------------------------------------------

TOPOLOGY = """
[engine]
name = "alpacafeedtest"
symbols = {symbols}

[processes.feed]
cpu = "auto"
idle = "backoff"
stages = ["feed"]

[processes.sink]
cpu = "auto"
idle = "backoff"
stages = ["sink"]

[stages.feed]
class = "procs.alpaca_feed:AlpacaFeed"

[stages.sink]
class = "test_alpaca_md_support:TickSink"

[rings.md]
producer = "feed"
consumer = "sink"
record = "tick"
capacity = {capacity}
full = "{full}"
"""

class TickSink(Stage):
    """The tick ring's consumer in these tests (the test drains the ring itself)."""

    INPUTS = ("tick",)


def alpaca_engine(tmp_path, symbols=("AAPL", "MSFT"), capacity=1024, full="block", **params):
    """EngineMemory (local backend) of feed -> sink with ``AlpacaFeed`` params ``params``."""
    from procs.alpaca_feed import AlpacaFeed
    from pyrt_shm.config import load_topology, override_from_dotted
    from pyrt_shm.wiring import EngineMemory

    path = tmp_path / "alpaca-feed.toml"
    path.write_text(TOPOLOGY.format(symbols=orjson.dumps(list(symbols)).decode(), capacity=capacity, full=full))
    over = override_from_dotted({f"stages.feed.params.{k}": v for k, v in params.items()}) if params else None
    topo = load_topology(path, overrides=over, available_cpus={0, 1}, isolated_cpus=())
    return EngineMemory(topo, backend="local", classes={"feed": AlpacaFeed, "sink": TickSink})


def wait_for(cond, timeout=10.0, step=0.005, work=None):
    """Poll ``cond()`` (calling ``work()`` first each time) until true or ``timeout`` s; return it."""
    import time

    end = time.monotonic() + timeout
    while True:
        if work is not None:
            work()
        v = cond()
        if v or time.monotonic() > end:
            return v
        time.sleep(step)
