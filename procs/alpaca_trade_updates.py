"""The Alpaca trading stream (``trade_updates``): a picows client in its own thread.

Protocol (FACTS §1 "Trading stream"): connect to ``wss://paper-api.alpaca.markets/stream``
(paper) or ``wss://api.alpaca.markets/stream`` (live); send
``{"action":"authenticate","data":{"key_id":..,"secret_key":..}}``, wait for
``{"stream":"authorization","data":{"status":"authorized"}}``; send
``{"action":"listen","data":{"streams":["trade_updates"]}}``, wait for ``listening``; then
every order event arrives as ``{"stream":"trade_updates","data":{"event":..,
"execution_id":..,"order":{..},"price":..,"qty":..}}``. Paper sends JSON in BINARY frames;
TEXT is accepted too, and fragmented messages are reassembled (picows delivers frames).

What this module does and does not do: it parses each update into a
``procs.alpaca_rest.VenueUpdate`` and appends it to ``results``; it keeps no order state.
Deduplication (by ``execution_id`` and by each order's cumulative ``filled_qty``) and the
mapping to FILL reports live in the exec stage, the one owner of order state, so a REST
snapshot and a stream event of the same execution can never both be counted.

**Reconnects and resync.** A dropped connection (or a failed connect, authentication or
listen) is retried after a backoff that doubles from ``reconnect_min_s`` to
``reconnect_max_s`` and resets after a successful ``listen``. After *every* successful
listen, the first included (orders may have been sent before the stream was up), the
client appends ``Listening(n)``; the stage answers with a REST resync that reads the orders
and emits whatever the stream missed. Authentication refusals are logged without the keys.

**Thread contract.** ``start()`` runs an asyncio loop in a daemon thread (call it in the
stage's ``on_start``, i.e. in the forked process: never before the fork). The listener's
callbacks run on that loop; they only parse and ``results.append`` (atomic under the GIL;
each object is complete before it is appended). ``stop()`` is thread-safe and bounded.
``stats`` is written only by the loop thread.
"""
from __future__ import annotations

import asyncio
import dataclasses
import sys
import threading

import orjson
from picows import WSListener, WSMsgType, ws_connect

from .alpaca_rest import VenueUpdate, parse_order

PAPER_STREAM = "wss://paper-api.alpaca.markets/stream"
LIVE_STREAM = "wss://api.alpaca.markets/stream"
STATS = ("connects", "reconnects", "updates", "bad_messages", "auth_failures")


@dataclasses.dataclass(slots=True)
class Listening:
    """The stream is (again) listening: the ``n``-th time since start (1 = first)."""

    n: int


def parse_trade_update(data: dict) -> VenueUpdate:
    """The ``data`` of a ``trade_updates`` message as a ``VenueUpdate``; ValueError if malformed."""
    if not isinstance(data, dict):
        raise ValueError(f"trade_updates data: expected an object, got {type(data).__name__}")
    event = data.get("event")
    if not isinstance(event, str) or not event:
        raise ValueError(f"trade_updates data: missing event, got {event!r}")
    order = parse_order(data.get("order"))
    try:
        price = float(data.get("price") or 0.0)
        qty = float(data.get("qty") or 0.0)
    except (TypeError, ValueError):
        raise ValueError(f"trade_updates {event} of {order.cid!r}: bad price/qty "
                         f"{data.get('price')!r}/{data.get('qty')!r}") from None
    return VenueUpdate(order, event, str(data.get("execution_id") or ""), price, qty, "stream")


class TradeUpdatesClient:
    """See the module doc."""

    def __init__(self, url: str, key_id: str, secret_key: str, results, *,
                 reconnect_min_s: float = 0.5, reconnect_max_s: float = 30.0,
                 reply_timeout_s: float = 10.0, log=None):
        self.url = url
        self._key, self._secret = key_id, secret_key
        self.results = results
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self.reply_timeout_s = reply_timeout_s
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.stats = {k: 0 for k in STATS}
        self.listening = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._transport = None
        self._reply: asyncio.Future | None = None
        self._ready = threading.Event()

    # -- lifecycle (any thread) -----------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="alpaca-trade-updates", daemon=True)
        self._thread.start()
        self._ready.wait(5.0)

    def stop(self, timeout: float = 5.0) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._request_stop)
            except RuntimeError:          # the loop closed in between
                pass
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the loop thread ------------------------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    def _request_stop(self) -> None:
        self._stopping.set()
        if self._transport is not None:
            self._transport.disconnect()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        self._ready.set()
        delay = self.reconnect_min_s
        while not self._stopping.is_set():
            ok = await self._session()
            if self._stopping.is_set():
                break
            if ok:
                delay = self.reconnect_min_s
            self.stats["reconnects"] += 1
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2.0, self.reconnect_max_s)

    async def _session(self) -> bool:
        """One connection: connect, authenticate, listen, run until it drops. True if it got
        as far as listening."""
        try:
            transport, _ = await ws_connect(lambda: _Listener(self), self.url,
                                            websocket_handshake_timeout=5, enable_auto_ping=True,
                                            auto_ping_idle_timeout=15, auto_ping_reply_timeout=10)
        except Exception as e:  # noqa: BLE001 - any connect failure means: back off, retry
            self.log(f"pyrt: alpaca trade_updates: cannot connect to {self.url}: {type(e).__name__}: {e}")
            return False
        self._transport = transport
        self.stats["connects"] += 1
        try:
            reply = await self._ask(transport, {"action": "authenticate",
                                                "data": {"key_id": self._key, "secret_key": self._secret}})
            if reply is None or reply.get("status") != "authorized":
                self.stats["auth_failures"] += 1
                self.log(f"pyrt: alpaca trade_updates: authentication refused by {self.url} "
                         f"({'no reply' if reply is None else reply.get('status')})")
                return False
            reply = await self._ask(transport, {"action": "listen", "data": {"streams": ["trade_updates"]}})
            if reply is None or "trade_updates" not in (reply.get("streams") or ()):
                self.log(f"pyrt: alpaca trade_updates: listen not confirmed by {self.url}")
                return False
            self.listening = True
            self.results.append(Listening(self.stats["connects"]))
            await transport.wait_disconnected()
            if not self._stopping.is_set():
                self.log(f"pyrt: alpaca trade_updates: connection to {self.url} lost; reconnecting")
            return True
        finally:
            self.listening = False
            self._transport = None
            transport.disconnect()

    async def _ask(self, transport, msg: dict):
        """Send ``msg`` and wait for the next authorization/listening reply (its ``data``)."""
        self._reply = asyncio.get_running_loop().create_future()
        transport.send(WSMsgType.TEXT, orjson.dumps(msg))
        gone = asyncio.ensure_future(transport.wait_disconnected())
        try:
            done, _ = await asyncio.wait({self._reply, gone}, timeout=self.reply_timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        fut, self._reply = self._reply, None
        return fut.result() if fut in done else None

    # -- called by the listener (loop thread) ---------------------------------------------
    def _message(self, payload: bytes) -> None:
        try:
            msg = orjson.loads(payload)
            stream = msg.get("stream")
            data = msg.get("data")
        except (orjson.JSONDecodeError, AttributeError):
            self.stats["bad_messages"] += 1
            return
        if stream == "trade_updates":
            try:
                upd = parse_trade_update(data)
            except ValueError as e:
                self.stats["bad_messages"] += 1
                self.log(f"pyrt: alpaca trade_updates: ignored a malformed update: {e}")
                return
            self.stats["updates"] += 1
            self.results.append(upd)
        elif stream in ("authorization", "listening"):
            if self._reply is not None and not self._reply.done():
                self._reply.set_result(data if isinstance(data, dict) else {})
        else:
            self.stats["bad_messages"] += 1


class _Listener(WSListener):
    """Frames -> messages (reassembling fragments) -> ``TradeUpdatesClient._message``."""

    def __init__(self, client: TradeUpdatesClient):
        super().__init__()
        self.client = client
        self.buf: bytearray | None = None

    def on_ws_frame(self, transport, frame) -> None:
        t = frame.msg_type
        if t == WSMsgType.TEXT or t == WSMsgType.BINARY:
            if frame.fin:
                self.client._message(frame.get_payload_as_bytes())
            else:
                self.buf = bytearray(frame.get_payload_as_bytes())
        elif t == WSMsgType.CONTINUATION and self.buf is not None:
            self.buf += frame.get_payload_as_bytes()
            if frame.fin:
                payload, self.buf = bytes(self.buf), None
                self.client._message(payload)
        elif t == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
