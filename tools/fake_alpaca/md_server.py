"""Market-data WebSocket of the fake (picows server): Alpaca's stream v2 protocol, FACTS §1.

Endpoints: ``/v2/{iex,sip,test,delayed_sip}`` (stocks) and ``/v1beta3/crypto/us``; any other
path gets HTTP 404 at the upgrade. All stock endpoints carry the same market.

Session flow, as Alpaca's:

* on connect ``[{"T":"success","msg":"connected"}]``; ``{"action":"auth","key","secret"}``
  within ``auth_timeout_s`` (else 404 ``auth timeout`` and close) -> ``authenticated``, or
  402 (bad keys, then close), 403 (already authenticated), 406 (another authenticated
  connection is open on this endpoint, then close), 409 (feed not in the plan, then close).
  Keys in the upgrade headers ``APCA-API-KEY-ID``/``APCA-API-SECRET-KEY`` authenticate too.
* ``subscribe``/``unsubscribe`` are incremental; the reply is the FULL subscription set;
  ``corrections``/``cancelErrors`` follow ``trades`` automatically (stocks); ``"*"`` = all
  symbols. 401 before auth, 405 if trades+quotes(+orderbooks) would exceed ``symbol_limit``
  distinct symbols (subscription unchanged), 410 for a channel of the other asset class,
  400 for anything not per spec (bad JSON, unknown action or key, wrong types).
  A new ``orderbooks`` subscriber first gets a snapshot (``r: true``) of each book.
* encoding: JSON text frames by default; msgpack binary frames (``t`` as msgpack
  Timestamp) when the upgrade request has ``Content-Type: application/msgpack``.
  Client messages may be fragmented (TEXT/BINARY fin=0 + CONTINUATION): reassembled.
* data points due at the same time (one :meth:`MdServer.emit` call) leave as ONE array
  frame per connection, holding only what that connection subscribed to.
* a connection whose socket buffer is full (the client does not read) gets no data
  (``md_dropped_slow``) and, after ``SLOW_CLIENT_S`` of it, 407 ``slow client`` and a drop.

Threading: everything here runs in the fake's asyncio loop thread (picows requires it);
other threads reach it through ``loop.call_soon_threadsafe``.
"""
from __future__ import annotations

import collections
import itertools
import time

from picows import WSCloseCode, WSMsgType, WSUpgradeRequest

from . import wire
from .ws_messages import Assembler, MessageListener
from .ws_server import WsServer

STOCK_FEEDS = ("iex", "sip", "test", "delayed_sip")
CRYPTO_PATH = "/v1beta3/crypto/us"
STOCK_CHANNELS = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds",
                  "corrections", "cancelErrors")
CRYPTO_CHANNELS = ("trades", "quotes", "orderbooks", "bars", "updatedBars", "dailyBars")
AUTO_WITH_TRADES = ("corrections", "cancelErrors")
LIMITED_CHANNELS = ("trades", "quotes", "orderbooks")   # count toward symbol_limit
CHANNEL_OF = {"t": "trades", "q": "quotes", "o": "orderbooks", "b": "bars", "u": "updatedBars",
              "d": "dailyBars", "s": "statuses", "l": "lulds", "c": "corrections", "x": "cancelErrors"}
ERRORS = {400: "invalid syntax", 401: "not authenticated", 402: "auth failed", 403: "already authenticated",
          404: "auth timeout", 405: "symbol limit exceeded", 406: "connection limit exceeded",
          407: "slow client", 409: "insufficient subscription", 410: "invalid subscribe action for this feed",
          500: "internal error"}
HISTORY = 10_000             # data points kept per asset class for replay_on_reconnect
SLOW_CLIENT_S = 2.0


class Endpoint:
    """One stream path: its asset class, channels and whether the plan includes it."""

    def __init__(self, path: str, crypto: bool, allowed: bool) -> None:
        self.path, self.crypto, self.allowed = path, crypto, allowed
        self.channels = CRYPTO_CHANNELS if crypto else STOCK_CHANNELS
        self.kind = "crypto" if crypto else "stocks"


def endpoints(plan_feeds) -> dict[str, Endpoint]:
    """Every served path. ``delayed_sip`` is in every plan (Alpaca's free plan includes it)."""
    out = {f"/v2/{f}": Endpoint(f"/v2/{f}", False, f in plan_feeds or f == "delayed_sip") for f in STOCK_FEEDS}
    out[CRYPTO_PATH] = Endpoint(CRYPTO_PATH, True, True)
    return out


class MdServer(WsServer):
    """The market-data server; ``emit`` fans data points out to subscribed sessions."""

    PREFIX = "md"

    def __init__(self, key_id: str, secret_key: str, plan_feeds, symbol_limit: int, auth_timeout_s: float,
                 market, faults, stats) -> None:
        super().__init__(key_id, secret_key, stats)
        self.endpoints = endpoints(plan_feeds)
        self.symbol_limit, self.auth_timeout_s = symbol_limit, auth_timeout_s
        self.market, self.faults = market, faults
        self.authed: dict[str, MdSession] = {}       # path -> its one authenticated session
        self.seen: set[str] = set()                  # paths that had an authenticated session
        self.history = {"stocks": collections.deque(maxlen=HISTORY), "crypto": collections.deque(maxlen=HISTORY)}
        self._malformed_kind = itertools.cycle(range(4))

    def _route(self, request: WSUpgradeRequest):
        path = request.path.decode("latin-1").split("?", 1)[0]
        ep = self.endpoints.get(path)
        if ep is None:
            self.stats.inc("md_upgrade_404")
            return None                                   # picows answers HTTP 404
        use_mp = "application/msgpack" in request.headers.get("Content-Type", "").lower()
        hdr_auth = (request.headers.get("APCA-API-KEY-ID"), request.headers.get("APCA-API-SECRET-KEY"))
        return MdSession(self, ep, use_mp, hdr_auth if hdr_auth[0] is not None else None)

    # -- data ---------------------------------------------------------------------------------
    def emit(self, crypto: bool, points: list[dict]) -> None:
        """Send ``points`` (all due now, one asset class) to every subscribed session, one frame each."""
        if not points:
            return
        kind = "crypto" if crypto else "stocks"
        self.history[kind].extend(points)
        stalled = self.faults.md_stalled()
        for s in list(self.sessions):
            if s.authed and s.endpoint.crypto == crypto:
                mine = [p for p in points if s.wants(p)]
                if not mine:
                    continue
                if stalled:
                    self.stats.inc("md_dropped_stall", len(mine))
                    continue
                s.send_data(mine)

    def malformed_payload(self, use_mp: bool, sym: str) -> bytes:
        """The next kind of malformed frame: not a document, not an array, no ``T``, wrong types."""
        kind = next(self._malformed_kind)
        self.stats.inc(f"md_malformed_sent_kind{kind}")
        if kind == 0:
            return b"\xc1\xc1\xc1" if use_mp else b'[{"T":"q","S":"' + sym.encode() + b'","bp":'
        if kind == 1:
            obj = {"T": "q", "S": sym}
        elif kind == 2:
            obj = [{"S": sym, "bp": 1.0, "ap": 1.01}]
        else:
            t = wire.md_msgpack({"t": 0})["t"] if use_mp else wire.rfc3339_ns(0)
            obj = [{"T": "q", "S": sym, "bp": "abc", "bs": "x", "ap": None, "as": [], "t": t}]
        return wire.encode(obj, use_mp)


class MdSession(MessageListener):
    """One market-data connection: auth, subscriptions, reassembly, encoding."""

    def __init__(self, server: MdServer, endpoint: Endpoint, use_mp: bool, header_auth) -> None:
        self.server, self.endpoint, self.use_mp = server, endpoint, use_mp
        self._header_auth = header_auth
        self.transport = None
        self.authed = False
        self.is_reconnect = False
        self.replayed = False
        self.subs: dict[str, dict[str, None]] = {ch: {} for ch in endpoint.channels}   # ordered sets
        self._assembler = Assembler(server.stats, "md")
        self._timer = None
        self._paused_since: float | None = None
        self._closing = False

    # -- picows callbacks ---------------------------------------------------------------------
    def on_ws_connected(self, transport) -> None:
        self.transport = transport
        self.server.sessions.add(self)
        self.server.stats.inc("md_connections")
        self.server.stats.inc(f"md_connections_{'msgpack' if self.use_mp else 'json'}")
        self._send_ctl({"T": "success", "msg": "connected"})
        if self._header_auth is not None:
            self._auth(*self._header_auth)
        if not self.authed and not self._closing:
            self._timer = self.server.loop.call_later(self.server.auth_timeout_s, self._auth_timeout)

    def on_ws_disconnected(self, transport) -> None:
        self.release()
        self.server.sessions.discard(self)

    def pause_writing(self) -> None:
        if self._paused_since is None:
            self._paused_since = self.server.loop.time()

    def resume_writing(self) -> None:
        self._paused_since = None

    # -- protocol -----------------------------------------------------------------------------
    def release(self) -> None:
        """Free this session's endpoint slot and timers (disconnect, drop, shutdown)."""
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.server.authed.get(self.endpoint.path) is self:
            del self.server.authed[self.endpoint.path]
        self.authed = False

    def _message(self, data: bytes, msg_type) -> None:
        self.server.stats.inc("md_messages_in")
        try:
            msg = wire.decode(data, self.use_mp and msg_type == WSMsgType.BINARY)
        except ValueError:
            self._bad("undecodable message")
            return
        try:
            action = msg.get("action") if isinstance(msg, dict) else None
            if action == "auth":
                self._auth(msg.get("key"), msg.get("secret"))
            elif action in ("subscribe", "unsubscribe"):
                self._subscribe(msg, action == "subscribe")
            else:
                self._bad(f"unknown action {action!r}")
        except Exception:        # a bug here must answer 500 like the real server, not kill the loop
            self.server.stats.inc("md_internal_errors")
            self._error(500)

    def _bad(self, why: str) -> None:
        self.server.stats.inc("md_bad_messages_in")
        self._error(400)

    def _auth(self, key, secret) -> None:
        srv = self.server
        if self.authed:
            self._error(403)
            return
        if not srv.check_keys(key, secret):
            srv.stats.inc("md_auth_failures")
            self._error(402, close=True)
            return
        if not self.endpoint.allowed:
            self._error(409, close=True)
            return
        if self.endpoint.path in srv.authed:
            self._error(406, close=True)
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.authed = True
        srv.authed[self.endpoint.path] = self
        self.is_reconnect = self.endpoint.path in srv.seen
        srv.seen.add(self.endpoint.path)
        self._send_ctl({"T": "success", "msg": "authenticated"})

    def _auth_timeout(self) -> None:
        self._timer = None
        if not self.authed and not self._closing:
            self._error(404, close=True)

    def _subscribe(self, msg: dict, add: bool) -> None:
        if not self.authed:
            self._error(401)
            return
        ep, changes = self.endpoint, {}
        for k, v in msg.items():
            if k == "action":
                continue
            if k in AUTO_WITH_TRADES and not ep.crypto:
                continue                             # implied by trades; clients need not send them
            if k not in ep.channels:
                other = STOCK_CHANNELS if ep.crypto else CRYPTO_CHANNELS
                self._error(410 if k in other else 400)
                return
            if not isinstance(v, list) or not all(isinstance(s, str) and s for s in v):
                self._error(400)
                return
            changes[k] = v
        new = {ch: dict(syms) for ch, syms in self.subs.items()}
        for ch, syms in changes.items():
            for s in syms:
                if add:
                    new[ch][s] = None
                else:
                    new[ch].pop(s, None)
        if not ep.crypto:
            for ch in AUTO_WITH_TRADES:
                new[ch] = dict(new["trades"])
        limited = set()
        for ch in LIMITED_CHANNELS:
            limited.update(s for s in new.get(ch, ()) if s != "*")
        if add and len(limited) > self.server.symbol_limit:
            self._error(405)
            return
        added_books = [s for s in new.get("orderbooks", ()) if s not in self.subs.get("orderbooks", {})]
        self.subs = new
        self._send_ctl({"T": "subscription", **{ch: list(syms) for ch, syms in new.items()}})
        if self.is_reconnect and not self.replayed:
            self.replayed = True
            self._replay()
        if added_books:
            self._send_snapshots(added_books)

    def _replay(self) -> None:
        n = self.server.faults.replay_count()
        if n <= 0:
            return
        old = [p for p in self.server.history[self.endpoint.kind] if self.wants(p)][-n:]
        if old:
            self.server.stats.inc("md_replayed", len(old))
            self.send_data(old, faults=False)

    def _send_snapshots(self, syms: list[str]) -> None:
        market = self.server.market
        with market.lock:
            names = market.symbols(crypto=True) if "*" in syms else syms
            now = time.time_ns()
            snaps = [sn for sn in (market.book_snapshot(s, now) for s in names) if sn is not None]
        if snaps:
            self.send_data(snaps, faults=False)

    def wants(self, point: dict) -> bool:
        subs = self.subs.get(CHANNEL_OF.get(point["T"], ""))
        return bool(subs) and (point["S"] in subs or "*" in subs)

    # -- sending ------------------------------------------------------------------------------
    def _send(self, payload: bytes) -> None:
        self.transport.send(WSMsgType.BINARY if self.use_mp else WSMsgType.TEXT, payload)

    def _send_ctl(self, obj: dict) -> None:
        self._send(wire.encode([obj], self.use_mp))

    def _error(self, code: int, close: bool = False) -> None:
        self.server.stats.inc(f"md_error_{code}")
        self._send_ctl({"T": "error", "code": code, "msg": ERRORS[code]})
        if close:
            self.release()
            self.transport.send_close(WSCloseCode.POLICY_VIOLATION)
            self.transport.disconnect()

    def send_data(self, points: list[dict], faults: bool = True) -> None:
        """One data frame of ``points`` (a malformed frame first when one is armed)."""
        srv, stats = self.server, self.server.stats
        if self._paused_since is not None:
            stats.inc("md_dropped_slow", len(points))
            if srv.loop.time() - self._paused_since > SLOW_CLIENT_S:
                self._error(407)
                self.release()
                self.transport.disconnect(graceful=False)
            return
        if faults and srv.faults.take("malformed_md"):
            self._send(srv.malformed_payload(self.use_mp, points[0]["S"]))
            stats.inc("md_malformed_sent")
            stats.inc("md_frames_sent")
        conv = wire.md_msgpack if self.use_mp else wire.md_json
        self._send(wire.encode([conv(p) for p in points], self.use_mp))
        counts = collections.Counter(f"md_sent_{p['T']}" for p in points)
        counts["md_frames_sent"] += 1
        counts["md_messages_sent"] += len(points)
        stats.add(counts)
