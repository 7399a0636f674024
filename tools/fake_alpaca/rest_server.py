"""Trading REST v2 of the fake: stdlib ThreadingHTTPServer with TCP_NODELAY, FACTS §2-§3.

Routes (under ``/v2``): ``POST/GET/DELETE /orders``, ``GET /orders:by_client_order_id``,
``GET/PATCH/DELETE /orders/{id}``, ``GET /account``, ``GET/DELETE /positions``,
``GET/DELETE /positions/{symbol}`` (crypto as Alpaca names positions: ``BTCUSD``; ``BTC/USD``
in the path is 404, as on Alpaca), ``GET /clock`` (always open). Others: 404 / 405.

Every call, in this order:

1. injected faults (``faults.http_429`` then ``faults.http_500``) answer before anything is
   processed;
2. ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` checked: 401 ``{"code":40110000,
   "message":"request is not authorized"}``;
3. a sliding window of ``rate_limit`` calls per ``window_s`` per key: over it, 429;
4. the route. Errors are ``{"code", "message"}`` with the field at fault in the message.

Every response carries ``X-Ratelimit-Limit``, ``X-Ratelimit-Remaining`` and
``X-Ratelimit-Reset`` (epoch seconds when the oldest call leaves the window). Responses go
out in one ``send`` with TCP_NODELAY (Nagle + delayed ACK otherwise cost ~40 ms a call).
HTTP/1.1 keep-alive; an idle connection is closed after ``IDLE_TIMEOUT_S``.

Threads: one serving thread plus one per connection (daemon, tracked); ``close`` shuts the
listening socket, then every open connection, then joins the threads (bounded).
"""
from __future__ import annotations

import collections
import hmac
import http.server
import math
import socket
import threading
import time
from datetime import datetime, timezone
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from .orders import BrokerError
from .wire import parse_number, rfc3339_us

MAX_BODY = 1 << 20
IDLE_TIMEOUT_S = 30.0
JOIN_TIMEOUT_S = 2.0
REASONS = {200: "OK", 204: "No Content", 207: "Multi-Status", 400: "Bad Request", 401: "Unauthorized",
           403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
           422: "Unprocessable Entity", 429: "Too Many Requests", 500: "Internal Server Error"}


class Response:
    __slots__ = ("status", "body", "drop")

    def __init__(self, status: int, body=None, drop: bool = False) -> None:
        self.status, self.body, self.drop = status, body, drop


def _err(status: int, code: int, message: str) -> Response:
    return Response(status, {"code": code, "message": message})


class RateLimiter:
    """Sliding window: at most ``limit`` calls per ``window_s`` seconds per key (thread-safe)."""

    def __init__(self, limit: int, window_s: float = 60.0, clock=time.time) -> None:
        self.limit, self.window_s, self._clock = limit, window_s, clock
        self._lock = threading.Lock()
        self._calls: dict[str, collections.deque] = {}

    def hit(self, key: str, consume: bool = True) -> tuple[bool, int, int]:
        """``(allowed, remaining, reset_epoch_s)``; an allowed call is recorded if ``consume``."""
        now = self._clock()
        with self._lock:
            q = self._calls.setdefault(key, collections.deque())
            while q and q[0] <= now - self.window_s:
                q.popleft()
            allowed = len(q) < self.limit
            if allowed and consume:
                q.append(now)
            reset = math.ceil((q[0] if q else now) + self.window_s)
            return allowed, max(0, self.limit - len(q)), reset


class RestApp:
    """Routing and checks, independent of the HTTP plumbing: ``handle`` -> (Response, headers)."""

    def __init__(self, key_id: str, secret_key: str, broker, faults, stats, rate_limit: int = 200,
                 window_s: float = 60.0) -> None:
        self._key, self._secret = key_id, secret_key
        self.broker, self.faults, self.stats = broker, faults, stats
        self.limiter = RateLimiter(rate_limit, window_s)

    def handle(self, method: str, target: str, headers, body: bytes) -> tuple[Response, dict]:
        st = self.stats
        st.inc("rest_requests")
        now = time.time()
        if self.faults.take("http_429"):
            st.inc("rest_429")
            st.inc("rest_429_injected")
            reset = math.ceil(now + self.faults.http_429_reset_s)
            return (_err(429, 42910000, "rate limit exceeded"),
                    self._rate_headers(0, reset))
        if self.faults.take("http_500"):
            st.inc("rest_500")
            _, remaining, reset = self.limiter.hit(self._key, consume=False)
            return _err(500, 50010000, "internal server error"), self._rate_headers(remaining, reset)
        key, secret = headers.get("APCA-API-KEY-ID"), headers.get("APCA-API-SECRET-KEY")
        if not (isinstance(key, str) and isinstance(secret, str) and hmac.compare_digest(key, self._key)
                & hmac.compare_digest(secret, self._secret)):
            st.inc("rest_401")
            _, remaining, reset = self.limiter.hit(self._key, consume=False)
            return _err(401, 40110000, "request is not authorized"), self._rate_headers(remaining, reset)
        allowed, remaining, reset = self.limiter.hit(self._key)
        rate = self._rate_headers(remaining, reset)
        if not allowed:
            st.inc("rest_429")
            return _err(429, 42910000, "rate limit exceeded"), rate
        try:
            resp = self._route(method, target, body)
        except BrokerError as e:
            resp = _err(e.status, e.code, e.message)
        except Exception:        # a bug in the fake answers 500 like a venue would, never kills the server
            st.inc("rest_internal_errors")
            st.inc("rest_500")
            resp = _err(500, 50010000, "internal server error")
        st.inc(f"rest_status_{resp.status}")
        return resp, rate

    def _rate_headers(self, remaining: int, reset: int) -> dict:
        return {"X-Ratelimit-Limit": str(self.limiter.limit), "X-Ratelimit-Remaining": str(remaining),
                "X-Ratelimit-Reset": str(reset)}

    # -- routes ---------------------------------------------------------------------------------
    def _route(self, method: str, target: str, body: bytes) -> Response:
        parts = urlsplit(target)
        path = parts.path
        q = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if not path.startswith("/v2/"):
            return _err(404, 40410000, "endpoint not found")
        path = path[3:]
        b = self.broker
        if path == "/orders":
            if method == "POST":
                return self._submit(body)
            if method == "GET":
                return Response(200, self._list_orders(q))
            if method == "DELETE":
                return Response(207, b.cancel_all())
        elif path == "/orders:by_client_order_id":
            if method == "GET":
                cid = q.get("client_order_id")
                if not cid:
                    return _err(422, 40010001, "client_order_id: required query parameter")
                return Response(200, b.get_by_client_id(cid))
        elif path.startswith("/orders/"):
            oid = unquote(path[len("/orders/"):])
            if method == "GET":
                return Response(200, b.get(oid))
            if method == "PATCH":
                return Response(200, b.replace(oid, self._json(body)))
            if method == "DELETE":
                b.cancel(oid)
                return Response(204)
        elif path == "/account":
            if method == "GET":
                return Response(200, b.account())
        elif path == "/positions":
            if method == "GET":
                return Response(200, b.position_entities())
            if method == "DELETE":
                out = []
                for p in b.position_entities():
                    out.append({"symbol": p["symbol"], "status": 200, "body": b.close_position(p["symbol"])})
                return Response(207, out)
        elif path.startswith("/positions/"):
            sym = unquote(path[len("/positions/"):])
            if method == "GET":
                return Response(200, b.position_entity(sym))
            if method == "DELETE":
                return Response(200, b.close_position(sym, self._close_qty(sym, q)))
        elif path == "/clock":
            if method == "GET":
                now = time.time_ns()
                return Response(200, {"timestamp": rfc3339_us(now), "is_open": True,
                                      "next_open": rfc3339_us(now + 86_400 * 10**9),
                                      "next_close": rfc3339_us(now + 3_600 * 10**9)})
        else:
            return _err(404, 40410000, "endpoint not found")
        return _err(405, 40510000, f"method {method} not allowed on /v2{path}")

    def _json(self, body: bytes):
        try:
            return orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            raise BrokerError(400, 40010000, "request body format is invalid") from None

    def _submit(self, body: bytes) -> Response:
        self.stats.inc("rest_orders_received")
        order = self.broker.submit(self._json(body))
        self.stats.inc("rest_orders_accepted")
        if self.faults.take("drop_after_accept"):
            self.stats.inc("rest_dropped_after_accept")
            return Response(200, order, drop=True)
        return Response(200, order)

    def _close_qty(self, sym: str, q: dict):
        if "qty" in q and "percentage" in q:
            raise BrokerError(422, 40010001, "qty: give qty or percentage, not both")
        if "qty" in q:
            try:
                return parse_number(q["qty"], "qty")
            except ValueError as e:
                raise BrokerError(422, 40010001, str(e)) from None
        if "percentage" in q:
            try:
                pct = parse_number(q["percentage"], "percentage")
            except ValueError as e:
                raise BrokerError(422, 40010001, str(e)) from None
            if not 0 < pct <= 100:
                raise BrokerError(422, 40010001, f"percentage: must be in (0, 100], got {q['percentage']!r}")
            held = abs(float(self.broker.position_entity(sym)["qty"]))
            return round(held * pct / 100.0, 9)
        return None

    def _list_orders(self, q: dict) -> list:
        def choice(name, allowed, default):
            v = q.get(name, default)
            if v not in allowed:
                raise BrokerError(422, 40010001, f"{name}: must be one of {', '.join(allowed)}, got {v!r}")
            return v

        def when(name):
            v = q.get(name)
            if v is None:
                return None
            try:
                dt = datetime.fromisoformat(v.replace(" ", "T"))
            except ValueError:
                raise BrokerError(422, 40010001, f"{name}: not an RFC-3339 timestamp: {v!r}") from None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            return int(dt.timestamp() * 1e9)

        status = choice("status", ("open", "closed", "all"), "open")
        direction = choice("direction", ("asc", "desc"), "desc")
        side = q.get("side")
        if side is not None:
            choice("side", ("buy", "sell"), None)
        try:
            limit = int(q.get("limit", "50"))
        except ValueError:
            raise BrokerError(422, 40010001, f"limit: not an integer: {q.get('limit')!r}") from None
        if not 1 <= limit <= 500:
            raise BrokerError(422, 40010001, f"limit: must be between 1 and 500, got {limit}")
        symbols = [s for s in q.get("symbols", "").split(",") if s] or None
        return self.broker.list_orders(status=status, limit=limit, symbols=symbols, side=side,
                                       after_ns=when("after"), until_ns=when("until"), direction=direction)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True          # TCP_NODELAY: see the module doc
    timeout = IDLE_TIMEOUT_S
    server_version = "fake-alpaca"

    def log_message(self, format, *args) -> None:     # noqa: A002 - quiet: tests and demos own stderr
        pass

    def _serve(self) -> None:
        app: RestApp = self.server.app
        n = self.headers.get("Content-Length")
        try:
            length = int(n) if n is not None else 0
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self._write(_err(413 if length > MAX_BODY else 400, 40010000, "Content-Length: invalid or too large"),
                        {}, close=True)
            return
        body = self.rfile.read(length) if length else b""
        resp, headers = app.handle(self.command, self.path, self.headers, body)
        if resp.drop:
            self.close_connection = True               # order created, no response: the fault
            return
        self._write(resp, headers)

    def _write(self, resp: Response, headers: dict, close: bool = False) -> None:
        body = b"" if resp.body is None else orjson.dumps(resp.body)
        lines = [f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'Status')}",
                 "Content-Type: application/json; charset=UTF-8", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if close:
            lines.append("Connection: close")
            self.close_connection = True
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, app: RestApp) -> None:
        self.app = app
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def process_request(self, request, client_address) -> None:
        t = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                             name="fake-alpaca-rest-conn", daemon=True)
        with self._conns_lock:
            self._conns[request] = t
        t.start()

    def shutdown_request(self, request) -> None:
        with self._conns_lock:
            self._conns.pop(request, None)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._conns_lock:
            items = list(self._conns.items())
        for sock, _ in items:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for _, t in items:
            t.join(JOIN_TIMEOUT_S)


class RestServer:
    """The HTTP server around a :class:`RestApp`; binds in the constructor (errors surface there)."""

    def __init__(self, host: str, port: int, app: RestApp) -> None:
        self.app = app
        self.httpd = _Server((host, port), app)
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-alpaca-rest", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(JOIN_TIMEOUT_S)
            self._thread = None
        self.httpd.server_close()
        self.httpd.close_connections()
