"""What the fake's two picows servers (``md_server``: market data; ``trade_stream``: trade
updates) share: the session set, the key check, start, dropping every connection, shutdown.

A subclass sets ``PREFIX`` (its stats' prefix and logger name) and defines ``_route`` (picows'
upgrade callback: a session, or None for HTTP 404). Its sessions have ``transport`` (once
connected) and ``release()`` (forget the session's authentication and whatever it holds,
before its connection goes). Everything runs in the fake's asyncio loop thread.
"""
from __future__ import annotations

import asyncio
import hmac

from picows import ws_create_server


class WsServer:
    """Base of the fake's WebSocket servers (see module doc)."""

    PREFIX = ""

    def __init__(self, key_id: str, secret_key: str, stats) -> None:
        self._key, self._secret = key_id, secret_key
        self.stats = stats
        self.sessions: set = set()
        self.server: asyncio.AbstractServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port); return the port."""
        self.loop = asyncio.get_running_loop()
        self.server = await ws_create_server(self._route, host, port, websocket_handshake_timeout=5,
                                             logger_name=f"fake_alpaca.{self.PREFIX}")
        return self.server.sockets[0].getsockname()[1]

    def _route(self, request):
        raise NotImplementedError

    def check_keys(self, key, secret) -> bool:
        """Whether ``key``/``secret`` are the fake's (compared in constant time)."""
        if not isinstance(key, str) or not isinstance(secret, str):
            return False
        return hmac.compare_digest(key, self._key) & hmac.compare_digest(secret, self._secret)

    def drop_all(self) -> int:
        """Abort every connection (TCP reset, no CLOSE frame); returns how many."""
        n = 0
        for s in list(self.sessions):
            s.release()
            s.transport.disconnect(graceful=False)
            n += 1
        self.stats.inc(f"{self.PREFIX}_connections_dropped", n)
        return n

    async def close(self) -> None:
        """Stop listening, abort every connection, wait (2 s at most) for the server to close."""
        if self.server is not None:
            self.server.close()
        for s in list(self.sessions):
            s.release()
            s.transport.disconnect(graceful=False)
        if self.server is not None:
            try:
                await asyncio.wait_for(self.server.wait_closed(), 2.0)
            except asyncio.TimeoutError:
                pass
