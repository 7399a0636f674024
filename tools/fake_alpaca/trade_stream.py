"""Trading stream of the fake (picows server, path ``/stream``): ``trade_updates``, FACTS §1.

Flow, as Alpaca's paper stream:

* ``{"action":"authenticate","data":{"key_id","secret_key"}}`` ->
  ``{"stream":"authorization","data":{"status":"authorized","action":"authenticate"}}``; bad
  keys -> ``status: unauthorized`` with ``message: access key verification failed``, then close.
* ``{"action":"listen","data":{"streams":[...]}}`` -> ``{"stream":"listening","data":{"streams":[...]}}``;
  listen *replaces* the set (``[]`` stops); unknown stream names are left out of the reply.
  Listen before auth -> ``authorization`` / ``unauthorized`` with ``action: listen``.
* updates ``{"stream":"trade_updates","data":{"event", "timestamp", "order", ...}}`` go to
  every authenticated connection listening to ``trade_updates`` (the fake has one key).
* JSON in BINARY frames (what paper sends); msgpack binary frames when the upgrade request
  has ``Content-Type: application/msgpack``. Client messages may be TEXT or BINARY, and
  fragmented. A message that is not per spec gets ``{"stream":"error","data":{"message":...}}``
  (the fake's choice: Alpaca's answer to malformed input is not documented) and is counted.

Threading: runs in the fake's asyncio loop thread; :meth:`TradeStreamServer.emit` is called
there (the broker hands updates over with ``loop.call_soon_threadsafe``).
"""
from __future__ import annotations

import msgpack
import orjson
from picows import WSCloseCode, WSMsgType

from . import wire
from .ws_messages import Assembler, MessageListener
from .ws_server import WsServer

PATH = "/stream"
STREAMS = ("trade_updates",)


class TradeStreamServer(WsServer):
    """The trading-stream server; ``emit`` sends one trade update to every listener."""

    PREFIX = "stream"

    def _route(self, request):
        if request.path.decode("latin-1").split("?", 1)[0] != PATH:
            self.stats.inc("stream_upgrade_404")
            return None
        use_mp = "application/msgpack" in request.headers.get("Content-Type", "").lower()
        return StreamSession(self, use_mp)

    def emit(self, update: dict) -> None:
        msg = {"stream": "trade_updates", "data": update}
        js = mp = None
        for s in list(self.sessions):
            if not (s.authed and "trade_updates" in s.streams):
                continue
            if s.use_mp:
                mp = mp or msgpack.packb(msg)
                s.transport.send(WSMsgType.BINARY, mp)
            else:
                js = js or orjson.dumps(msg)
                s.transport.send(WSMsgType.BINARY, js)
            self.stats.inc("trade_updates_sent")
            self.stats.inc(f"trade_updates_sent_{update['event']}")
            if update["event"] in ("fill", "partial_fill"):
                self.stats.inc("fills_sent")


class StreamSession(MessageListener):
    """One trading-stream connection."""

    def __init__(self, server: TradeStreamServer, use_mp: bool) -> None:
        self.server, self.use_mp = server, use_mp
        self.transport = None
        self.authed = False
        self.streams: list[str] = []
        self._assembler = Assembler(server.stats, "stream")

    def on_ws_connected(self, transport) -> None:
        self.transport = transport
        self.server.sessions.add(self)
        self.server.stats.inc("stream_connections")

    def on_ws_disconnected(self, transport) -> None:
        self.release()
        self.server.sessions.discard(self)

    def release(self) -> None:
        """Stop sending updates here (disconnect, drop, shutdown)."""
        self.authed = False

    def _send(self, obj: dict) -> None:
        self.transport.send(WSMsgType.BINARY, msgpack.packb(obj) if self.use_mp else orjson.dumps(obj))

    def _bad(self, why: str) -> None:
        self.server.stats.inc("stream_bad_messages_in")
        self._send({"stream": "error", "data": {"message": why}})

    def _message(self, data: bytes, msg_type) -> None:
        try:
            msg = wire.decode(data, self.use_mp and msg_type == WSMsgType.BINARY)
        except ValueError as e:
            self._bad(str(e))
            return
        action = msg.get("action") if isinstance(msg, dict) else None
        body = msg.get("data") if isinstance(msg, dict) else None
        if action not in ("authenticate", "listen") or not isinstance(body, dict):
            self._bad(f"unknown action {action!r} or no data object")
            return
        if action == "authenticate":
            self._authenticate(body)
        else:
            self._listen(body)

    def _authenticate(self, body: dict) -> None:
        if not self.server.check_keys(body.get("key_id"), body.get("secret_key")):
            self.server.stats.inc("stream_auth_failures")
            self._send({"stream": "authorization", "data": {"action": "authenticate", "status": "unauthorized",
                                                            "message": "access key verification failed"}})
            self.transport.send_close(WSCloseCode.POLICY_VIOLATION)
            self.transport.disconnect()
            return
        self.authed = True
        self._send({"stream": "authorization", "data": {"status": "authorized", "action": "authenticate"}})

    def _listen(self, body: dict) -> None:
        if not self.authed:
            self._send({"stream": "authorization", "data": {"status": "unauthorized", "action": "listen"}})
            return
        streams = body.get("streams")
        if not isinstance(streams, list) or not all(isinstance(s, str) for s in streams):
            self._bad("listen: data.streams must be a list of strings")
            return
        self.streams = [s for s in streams if s in STREAMS]
        self.server.stats.inc("stream_listens")
        self._send({"stream": "listening", "data": {"streams": list(self.streams)}})
