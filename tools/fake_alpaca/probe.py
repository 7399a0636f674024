"""A raw market-data client for tests and demos: speaks the wire protocol, hides nothing.

Unlike alpaca-py (msgpack only, retries, swallows errors) this shows every frame as it
came: ``recv()`` returns the decoded array of one frame, ``recv_raw()`` the bytes/str and
whether it was binary. Built on ``websockets`` (an independent implementation of RFC 6455,
so the fake is not only tested against its own library). Every wait is bounded.

    async with Probe(url, use_msgpack=False) as p:
        await p.expect("success")                   # connected
        await p.send({"action": "auth", "key": k, "secret": s})
"""
from __future__ import annotations

import asyncio

import msgpack
import orjson
from websockets.asyncio.client import connect

DEFAULT_TIMEOUT_S = 5.0


class Probe:
    """One connection to a market-data endpoint (or the trading stream)."""

    def __init__(self, url: str, use_msgpack: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S,
                 headers: dict | None = None) -> None:
        self.url, self.use_msgpack, self.timeout_s = url, use_msgpack, timeout_s
        hdrs = dict(headers or {})
        if use_msgpack:
            hdrs["Content-Type"] = "application/msgpack"
        self._headers = hdrs
        self.ws = None

    async def __aenter__(self) -> "Probe":
        self.ws = await asyncio.wait_for(
            connect(self.url, additional_headers=self._headers, compression=None, open_timeout=self.timeout_s,
                    close_timeout=1.0), self.timeout_s)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self.ws is not None:
            await asyncio.wait_for(self.ws.close(), self.timeout_s)

    def encode(self, obj) -> bytes | str:
        return msgpack.packb(obj) if self.use_msgpack else orjson.dumps(obj).decode()

    async def send(self, obj) -> None:
        await self.ws.send(self.encode(obj))

    async def send_fragments(self, obj, n: int) -> None:
        """Send ``obj`` as one message split into ``n`` frames (fin=0 ... CONTINUATION fin=1)."""
        data = self.encode(obj)
        step = max(1, -(-len(data) // n))
        await self.ws.send([data[i:i + step] for i in range(0, len(data), step)])

    async def recv_raw(self, timeout_s: float | None = None):
        """``(payload, is_binary)`` of the next frame."""
        data = await asyncio.wait_for(self.ws.recv(), timeout_s or self.timeout_s)
        return data, isinstance(data, bytes)

    async def recv(self, timeout_s: float | None = None):
        """The next frame decoded (a list for well-formed market data)."""
        data, binary = await self.recv_raw(timeout_s)
        return msgpack.unpackb(data) if binary and self.use_msgpack else orjson.loads(data)

    async def expect(self, T: str, timeout_s: float | None = None) -> dict:
        """The next frame must be one control message of type ``T``; returns it."""
        msgs = await self.recv(timeout_s)
        if not (isinstance(msgs, list) and len(msgs) == 1 and msgs[0].get("T") == T):
            raise AssertionError(f"expected one {T!r} message, got {msgs!r}")
        return msgs[0]

    async def login(self, key: str, secret: str) -> None:
        """connected -> auth -> authenticated, or AssertionError with what came instead."""
        await self.expect("success")
        await self.send({"action": "auth", "key": key, "secret": secret})
        m = await self.expect("success")
        if m.get("msg") != "authenticated":
            raise AssertionError(f"not authenticated: {m!r}")

    async def data(self, n: int, timeout_s: float | None = None) -> list[dict]:
        """At least ``n`` data messages (whole frames, so possibly more), control messages skipped."""
        out: list[dict] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout_s or self.timeout_s)
        while len(out) < n:
            left = deadline - loop.time()
            if left <= 0:
                raise asyncio.TimeoutError(f"got {len(out)} of {n} data messages")
            msgs = await self.recv(left)
            out += [m for m in msgs if m.get("T") not in ("success", "error", "subscription")]
        return out
