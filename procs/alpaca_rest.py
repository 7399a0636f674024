"""The Alpaca REST worker: one thread that owns an alpaca-py ``TradingClient``, off the hot loop.

The exec stage (``procs.alpaca_exec``) never waits on HTTP. It hands requests to this
worker (``submit``, ``cancel``, ``replace``, ``lookup``, ``refresh``, ``resync``: each only
puts an object on a queue) and drains the worker's results from a deque on its next duty
cycle. The worker runs the requests one at a time; cancels jump the queue.

**Thread contract.** The stage thread calls the request methods; the worker thread is the
only one that touches the client, the rate limiter and its own ``stats``. Results go to
``results`` (a ``collections.deque``: ``append``/``popleft`` are atomic under the GIL, and a
result object is complete before it is appended, so the reader sees it whole). ``stats`` is
a dict of ints written only by the worker; the stage copies it into shared-memory counters
(a reader may see a value one request old, never a torn one).

**Rate limit.** Alpaca allows 200 requests a minute per account. ``RateLimiter`` enforces
``per_min`` over a sliding 60 s window *before* every call (every REST call counts:
submits, cancels, lookups, resyncs, the start-up reconciliation); a call that has to wait
is counted once in ``rate_limited``. An HTTP 429 blocks every call until the response's
``X-Ratelimit-Reset`` (epoch seconds; 1 s when absent, at most 60 s) and is counted in
``http_429``; alpaca-py's own 429 retry (3 s x 3, FACTS §3) is switched off
(``client._retry = 0``) so that the reset header is what decides.

**Idempotency: an order is never sent twice.** Every submit of engine order ``n`` carries the
same ``client_order_id``, and Alpaca refuses a second order with an id it has seen (HTTP
422). After any failure that leaves it unknown whether the venue took the order (a timeout,
a dropped connection, a 5xx), the worker asks ``GET /v2/orders:by_client_order_id`` *before*
sending again (``lookups``); it resends only on a 404 (the venue does not have it *yet*: a
resend is safe anyway, since a request still in flight with the same id makes the venue
refuse the resend with a 422, which is looked up again). A found order is adopted as the
answer (``duplicates_avoided``). A 422 on submit is resolved the same way: found -> already
there; not found -> a real refusal. A 429 is not ambiguous (the venue did not process the
request) and is retried after the reset without a lookup. 5xx and ambiguous failures are
retried with ``min(cap, base * 2**(k-1)) * (1 - jitter * u)`` backoff (also the wait before
each lookup) up to ``max_retries`` resends; when the lookups themselves keep failing, the
worker reports ``Unresolved`` and the stage asks again later; it never guesses.

**Known gap: a late acceptance after the final 404.** When the last resend also fails
ambiguously and the lookup after it (``backoff`` plus ``settle_s`` later: 3-4 s with the
defaults, at least the backoff cap whatever the retry settings) answers 404, the submit ends ``SubmitResult(ok=False, code=<last failure's code>)`` and the stage
reports the order REJECTED. If the venue accepts one of those requests later anyway, the
order lives at the venue while the engine has closed it: exec logs an ERROR for any fill of
it, counts the update in ``ignored_updates`` and forwards nothing, so risk (which had the
terminal report) never books it. The positions then differ from the venue's (the report's
``alpaca_positions`` shows it) until the next start's reconciliation.

**Errors.** Venue refusals (other 4xx) become ``SubmitResult(ok=False, code=<the venue's
numeric code, e.g. 40310000>)``; the message is logged, never the keys (alpaca-py puts
them only in request headers, which no message here includes).
"""
from __future__ import annotations

import collections
import dataclasses
import heapq
import itertools
import json
import math
import random
import sys
import threading
import time

#: Local reason codes of FILL reports (venue codes are HTTP statuses or 8-digit Alpaca codes).
#: The numbers are the simulated venue's REASON_* codes, so reports read alike.
REASON_BAD_ORDER = 4
REASON_RETRIES_EXHAUSTED = 7
REASON_UNKNOWN_ORDER = 8
REASON_CANCELED = 14

STATS = ("submitted", "rejected", "rate_limited", "http_429", "venue_errors", "retries", "lookups",
         "duplicates_avoided", "calls")
TIF_NAMES = ("day", "gtc", "ioc", "fok")         #: layouts.orders TIF_DAY .. TIF_FOK
PRIO_CANCEL, PRIO_ORDER, PRIO_QUERY = 0, 1, 2


# -- what the venue says about an order ---------------------------------------------------------

@dataclasses.dataclass(slots=True)
class VenueOrder:
    """The fields of an Alpaca Order entity the engine uses (decimals parsed to float)."""

    venue_id: str
    cid: str
    symbol: str
    side: int                  #: +1 buy, -1 sell (layouts.orders BUY / SELL)
    qty: float
    filled_qty: float
    filled_avg_price: float
    status: str
    order_type: str = "market"
    limit_price: float = 0.0
    replaced_by: str = ""      #: venue id of the order that replaced this one
    replaces: str = ""         #: venue id of the order this one replaced


@dataclasses.dataclass(slots=True)
class VenueUpdate:
    """One piece of news about an order: a trade update or a REST snapshot.

    ``event`` is the trade_updates event (``new``, ``fill``, ...) or ``"snapshot"`` for an
    order read by REST. ``price``/``qty`` are the execution's (fill events only)."""

    order: VenueOrder
    event: str
    execution_id: str = ""
    price: float = 0.0
    qty: float = 0.0
    source: str = "rest"       #: "rest" | "stream" | "resync"


def _num(d: dict, key: str, default: float = 0.0) -> float:
    v = d.get(key)
    if v is None or v == "":
        return default
    return float(v)


def parse_order(d: dict) -> VenueOrder:
    """A ``VenueOrder`` from an Order entity dict; ValueError naming the field if malformed."""
    if not isinstance(d, dict):
        raise ValueError(f"order: expected a JSON object, got {type(d).__name__}")
    try:
        side = d.get("side")
        if side not in ("buy", "sell"):
            raise ValueError(f"side: expected 'buy' or 'sell', got {side!r}")
        return VenueOrder(
            venue_id=str(d["id"]), cid=str(d.get("client_order_id") or ""), symbol=str(d["symbol"]),
            side=1 if side == "buy" else -1, qty=_num(d, "qty"), filled_qty=_num(d, "filled_qty"),
            filled_avg_price=_num(d, "filled_avg_price"), status=str(d["status"]),
            order_type=str(d.get("type") or d.get("order_type") or "market"),
            limit_price=_num(d, "limit_price"), replaced_by=str(d.get("replaced_by") or ""),
            replaces=str(d.get("replaces") or ""))
    except KeyError as e:
        raise ValueError(f"order: missing field {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise ValueError(f"order {d.get('client_order_id', '?')!r}: {e}") from None


def parse_position(d: dict) -> tuple[str, float, float]:
    """``(symbol, qty, avg_entry_price)`` of a Position entity dict, qty negative when short;
    ValueError naming the position if malformed."""
    try:
        q = float(d["qty"])
        if d.get("side") == "short" and q > 0:
            q = -q
        return str(d["symbol"]), q, float(d.get("avg_entry_price") or 0.0)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"malformed position {d!r}: {e}") from None


# -- results handed back to the stage -----------------------------------------------------------

@dataclasses.dataclass(slots=True)
class SubmitResult:
    """Final answer to a submit: ``order`` when the venue has it, else the refusal's code."""

    oid: int
    ok: bool
    order: VenueOrder | None = None
    code: int = 0
    message: str = ""
    attempts: int = 1
    recovered: bool = False    #: found by a lookup after an ambiguous failure / 422
    sent_ns: int = 0           #: CLOCK_MONOTONIC when the request left the queue
    done_ns: int = 0


@dataclasses.dataclass(slots=True)
class CancelResult:
    oid: int
    ok: bool                   #: the venue accepted the cancel request (the order ends later)
    code: int = 0
    message: str = ""


@dataclasses.dataclass(slots=True)
class ReplaceResult:
    oid: int                   #: the original engine order
    new_oid: int               #: the replacement's engine order id
    ok: bool
    order: VenueOrder | None = None   #: the new order, when ok
    code: int = 0
    message: str = ""


@dataclasses.dataclass(slots=True)
class Snapshot:
    """An order read by REST (refresh, lookup, resync): fed to the same logic as trade updates."""

    oid: int                   #: the engine order asked about (0 = from a resync listing)
    update: VenueUpdate | None #: None: the venue does not have it (404)


@dataclasses.dataclass(slots=True)
class Unresolved:
    """Lookups failed too often to tell whether the venue has order ``oid``: ask again later."""

    oid: int


@dataclasses.dataclass(slots=True)
class ResyncDone:
    orders: int
    ok: bool


# -- failures ---------------------------------------------------------------------------------

RATE, RETRY, AMBIGUOUS, REFUSED, NOT_FOUND = "rate", "retry", "ambiguous", "refused", "not_found"


class Failure(Exception):
    """A REST call that did not succeed, classified (see ``classify``)."""

    def __init__(self, kind: str, status: int = 0, code: int = 0, message: str = "",
                 reset: float | None = None):
        super().__init__(f"{kind}: HTTP {status} code {code}: {message}")
        self.kind = kind            #: RATE | RETRY | AMBIGUOUS | REFUSED | NOT_FOUND
        self.status = status        #: HTTP status (0: no response)
        self.code = code            #: the venue's numeric code, else the HTTP status
        self.message = message
        self.reset = reset          #: X-Ratelimit-Reset (epoch seconds)


def classify(exc: BaseException) -> Failure:
    """Map an exception of a REST call to a ``Failure``; re-raise anything that is not one."""
    import requests
    from alpaca.common.exceptions import APIError

    if isinstance(exc, APIError):
        status = int(exc.status_code or 0)
        code, message = status, str(exc)[:300]
        try:
            body = json.loads(str(exc))
            if isinstance(body, dict):
                code = int(body.get("code", status))
                message = str(body.get("message", message))[:300]
        except (ValueError, TypeError):
            pass
        reset = None
        resp = exc.response
        if resp is not None:
            try:
                reset = float(resp.headers.get("X-Ratelimit-Reset"))
            except (TypeError, ValueError):
                reset = None
        if code < 0 or code > 0xFFFFFFFF:
            code = status
        if status == 429:
            return Failure(RATE, status, code, message, reset)
        if status in (500, 502, 503, 504):
            return Failure(RETRY, status, code, message)
        if status == 404:
            return Failure(NOT_FOUND, status, code, message)
        return Failure(REFUSED, status, code, message)
    if isinstance(exc, requests.RequestException):
        # timeouts, dropped connections, truncated bodies: the request may or may not have
        # been processed
        return Failure(AMBIGUOUS, 0, 0, f"{type(exc).__name__}: {exc}"[:300])
    raise exc


# -- the rate limiter -------------------------------------------------------------------------

class RateLimiter:
    """At most ``per_min`` calls in any 60 s window, plus a block until a 429's reset.

    ``reserve(now)`` takes a slot and returns 0, or returns how long to wait (nothing taken).
    ``now`` is CLOCK_MONOTONIC seconds; ``block_until`` takes a monotonic deadline. The lock
    makes it safe to share (the start-up reconciliation and, after fork, the worker use one
    per REST URL: see ``limiter_for``)."""

    def __init__(self, per_min: int = 200, window_s: float = 60.0):
        if per_min < 1:
            raise ValueError(f"rate limit must be >= 1 request a minute, got {per_min}")
        self.per_min, self.window_s = per_min, window_s
        self._calls: collections.deque = collections.deque()
        self._blocked_until = 0.0
        self._lock = threading.Lock()

    def reserve(self, now: float) -> float:
        with self._lock:
            if now < self._blocked_until:
                return self._blocked_until - now
            calls = self._calls
            while calls and calls[0] <= now - self.window_s:
                calls.popleft()
            if len(calls) >= self.per_min:
                return calls[0] + self.window_s - now
            calls.append(now)
            return 0.0

    def block_until(self, t: float) -> None:
        with self._lock:
            self._blocked_until = max(self._blocked_until, t)

    def used(self, now: float) -> int:
        """Calls made in the window ending at ``now``."""
        with self._lock:
            return sum(1 for c in self._calls if c > now - self.window_s)


_LIMITERS: dict = {}


def limiter_for(url: str, per_min: int) -> RateLimiter:
    """One limiter per REST URL in this process. The supervisor's start-up reconciliation and
    the stage built after it share it, so the calls made at start count against the worker's
    window too (a forked child inherits the parent's timestamps: the clock is system-wide)."""
    lim = _LIMITERS.get(url)
    if lim is None or lim.per_min != per_min:
        lim = _LIMITERS[url] = RateLimiter(per_min)
    return lim


# -- the client -------------------------------------------------------------------------------

def make_client(key_id: str, secret_key: str, paper: bool, url: str, timeout_s: float):
    """An alpaca-py ``TradingClient`` returning raw dicts, with a request timeout and without
    alpaca-py's own 429/504 retry (this module decides retries)."""
    import requests
    from alpaca.trading.client import TradingClient

    class _TimeoutSession(requests.Session):
        def request(self, method, url, **kw):  # noqa: D102 - requests' signature
            kw.setdefault("timeout", timeout_s)
            return super().request(method, url, **kw)

    client = TradingClient(api_key=key_id, secret_key=secret_key, paper=paper, raw_data=True,
                           url_override=url or None)
    client._retry = 0                 # FACTS §3: else 429/504 sleep 3 s x 3 inside alpaca-py
    old = client._session
    client._session = _TimeoutSession()
    old.close()
    return client


def order_request(cid: str, symbol: str, side: int, qty: float, limit_px: float, tif: int):
    """alpaca-py request object of a market (``limit_px`` 0) or limit order."""
    from alpaca.trading.enums import OrderSide, TimeInForce
    from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

    if not (math.isfinite(qty) and qty > 0) or not (math.isfinite(limit_px) and limit_px >= 0):
        raise ValueError(f"order {cid}: qty must be > 0 and limit_px >= 0, got {qty!r} / {limit_px!r}")
    kw = dict(symbol=symbol, qty=qty, side=OrderSide.BUY if side > 0 else OrderSide.SELL,
              time_in_force=TimeInForce(TIF_NAMES[tif]), client_order_id=cid)
    if limit_px > 0.0:
        return LimitOrderRequest(limit_price=limit_px, **kw)
    return MarketOrderRequest(**kw)


# -- requests ---------------------------------------------------------------------------------

@dataclasses.dataclass(slots=True)
class _Req:
    kind: str
    oid: int = 0
    cid: str = ""
    venue_id: str = ""
    symbol: str = ""
    side: int = 0
    qty: float = 0.0
    limit_px: float = 0.0
    tif: int = 0
    new_oid: int = 0
    new_cid: str = ""
    after: str = ""
    venue_ids: tuple = ()


class RestWorker(threading.Thread):
    """See the module doc. ``client`` is built by ``client_factory()`` inside the thread.

    Tests drive ``handle(req)`` directly with a stub client and a fake ``sleep``/``clock``.
    """

    def __init__(self, client_factory, results: collections.deque, limiter: RateLimiter, *,
                 max_retries: int = 5, backoff_s: float = 0.1, backoff_cap_s: float = 2.0,
                 jitter: float = 0.5, seed: int = 0, settle_s: float | None = None, log=None,
                 clock=time.monotonic, wall=time.time, sleep=None):
        super().__init__(name="alpaca-rest", daemon=True)
        self.client_factory, self.results, self.limiter = client_factory, results, limiter
        self.max_retries, self.backoff_s, self.backoff_cap_s = max_retries, backoff_s, backoff_cap_s
        self.jitter, self.rng = jitter, random.Random(seed)
        #: extra wait before the *final* lookup of a submit whose every send failed ambiguously:
        #: a 404 there closes the order, so give a slow request time to land first (default:
        #: the backoff cap, without jitter, whatever max_retries/backoff_s say)
        self.settle_s = backoff_cap_s if settle_s is None else settle_s
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.clock, self.wall = clock, wall
        self._stop_ev = threading.Event()
        self.sleep = sleep or self._stop_ev.wait        # interruptible by stop()
        self.client = None
        self.stats = {k: 0 for k in STATS}
        self._heap: list = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self.busy = 0                   #: requests taken off the queue and not yet answered

    # -- called from the stage thread ---------------------------------------------------
    def _put(self, prio: int, req: _Req) -> None:
        with self._cv:
            heapq.heappush(self._heap, (prio, next(self._seq), req))
            self._cv.notify()

    def submit(self, oid, cid, symbol, side, qty, limit_px, tif) -> None:
        self._put(PRIO_ORDER, _Req("submit", oid, cid, symbol=symbol, side=side, qty=qty,
                                   limit_px=limit_px, tif=tif))

    def cancel(self, oid, venue_id) -> None:
        self._put(PRIO_CANCEL, _Req("cancel", oid, venue_id=venue_id))

    def replace(self, oid, venue_id, new_oid, new_cid, qty, limit_px, tif) -> None:
        self._put(PRIO_ORDER, _Req("replace", oid, venue_id=venue_id, new_oid=new_oid,
                                   new_cid=new_cid, qty=qty, limit_px=limit_px, tif=tif))

    def lookup(self, oid, cid) -> None:
        self._put(PRIO_QUERY, _Req("lookup", oid, cid))

    def refresh(self, oid, venue_id) -> None:
        self._put(PRIO_QUERY, _Req("refresh", oid, venue_id=venue_id))

    def resync(self, after_iso: str, venue_ids=()) -> None:
        self._put(PRIO_QUERY, _Req("resync", after=after_iso, venue_ids=tuple(venue_ids)))

    def run_pending(self) -> int:
        """Run every queued request in the calling thread (tests: the thread must not run)."""
        n = 0
        while self._heap:
            _, _, req = heapq.heappop(self._heap)
            self.handle(req)
            n += 1
        return n

    def pending(self) -> int:
        """Requests queued or in progress."""
        with self._cv:
            return len(self._heap) + self.busy

    def stop(self, timeout: float = 5.0) -> None:
        self._stop_ev.set()
        with self._cv:
            self._cv.notify_all()
        if self.is_alive():
            self.join(timeout)

    # -- the thread -----------------------------------------------------------------------
    def run(self) -> None:
        try:
            self.client = self.client_factory()
        except Exception as e:  # noqa: BLE001 - reported, then every request fails cleanly
            self.log(f"pyrt: alpaca rest: cannot create the client: {type(e).__name__}: {e}")
        while not self._stop_ev.is_set():
            with self._cv:
                while not self._heap and not self._stop_ev.is_set():
                    self._cv.wait(0.1)
                if self._stop_ev.is_set():
                    break
                _, _, req = heapq.heappop(self._heap)
                self.busy = 1
            try:
                self.handle(req)
            except Exception as e:  # noqa: BLE001 - a bug must not kill the thread silently
                self.log(f"pyrt: alpaca rest: {req.kind} of order {req.oid} failed: "
                         f"{type(e).__name__}: {e}")
                self._fail_closed(req, f"{type(e).__name__}")
            finally:
                self.busy = 0
        if self.client is not None:          # close the keep-alive connection
            try:
                self.client._session.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass

    def _fail_closed(self, req: _Req, what: str) -> None:
        """An unexpected error: answer so the stage is not left waiting (never a resend)."""
        if req.kind == "submit":
            self.results.append(Unresolved(req.oid))
        elif req.kind == "cancel":
            self.results.append(CancelResult(req.oid, False, REASON_UNKNOWN_ORDER, what))
        elif req.kind == "replace":
            self.results.append(ReplaceResult(req.oid, req.new_oid, False, None, REASON_UNKNOWN_ORDER, what))
        elif req.kind == "resync":
            self.results.append(ResyncDone(0, False))

    def handle(self, req: _Req) -> None:
        """Run one request to its final answer (appended to ``results``)."""
        getattr(self, "_do_" + req.kind)(req)

    # -- building blocks ------------------------------------------------------------------
    def _call(self, fn, *args):
        """One REST call through the limiter; returns the result or raises a ``Failure``."""
        waited = False
        while True:
            if self._stop_ev.is_set():
                raise _Stopped()
            wait = self.limiter.reserve(self.clock())
            if wait <= 0.0:
                break
            if not waited:
                self.stats["rate_limited"] += 1
                waited = True
            self.sleep(min(wait, 1.0))
        self.stats["calls"] += 1
        if self.client is None:
            raise Failure(AMBIGUOUS, 0, 0, "no client")
        try:
            return fn(self.client, *args)
        except Exception as e:  # noqa: BLE001 - classified below; the rest re-raised
            f = classify(e)
            if f.kind == RATE:
                self.stats["http_429"] += 1
                now_wall = self.wall()
                wait = 1.0 if f.reset is None else min(max(f.reset - now_wall, 0.0), 60.0)
                self.limiter.block_until(self.clock() + wait)
            elif f.kind in (RETRY, AMBIGUOUS):
                self.stats["venue_errors"] += 1
            raise f from None

    def _backoff(self, k: int) -> None:
        b = min(self.backoff_cap_s, self.backoff_s * 2.0 ** (k - 1))
        self.sleep(b * (1.0 - self.jitter * self.rng.random()))

    def _check_after(self, f: Failure, attempt: int) -> bool | None:
        """After a create (POST) or replace (PATCH) failed with ``f`` on its ``attempt``-th send:
        False: send again (rate limited: ``_call`` paces); True: the venue may have acted, so
        look it up by client id before sending again (transient errors after a backoff; a 422
        may be "client_order_id must be unique"); None: final, the venue refused it."""
        if f.kind == RATE:
            return False
        if f.kind in (RETRY, AMBIGUOUS):
            self._backoff(attempt)
            return True
        if f.status == 422:
            return True
        return None

    def _find(self, cid: str):
        """The venue's order with client id ``cid``: a VenueOrder, None (404), or raise
        ``Unknown`` after ``max_retries`` failed lookups."""
        for k in range(1, self.max_retries + 2):
            self.stats["lookups"] += 1
            try:
                return parse_order(self._call(lambda c: c.get_order_by_client_id(cid)))
            except Failure as f:
                if f.kind == NOT_FOUND:
                    return None
                if f.kind == REFUSED:
                    raise _Unknown(f) from None
                if f.kind != RATE:
                    self._backoff(k)
            except ValueError:                       # unreadable body: ask again
                self._backoff(k)
        raise _Unknown(None)

    # -- submit ---------------------------------------------------------------------------
    def _do_submit(self, r: _Req) -> None:
        sent = time.monotonic_ns()
        try:
            req = order_request(r.cid, r.symbol, r.side, r.qty, r.limit_px, r.tif)
        except (ValueError, IndexError) as e:       # refused locally: nothing was sent
            return self._refused(r, Failure(REFUSED, 0, REASON_BAD_ORDER, str(e)[:300]), 0, sent)
        posts = 0
        check = False             # True: the venue may have it; look before sending again
        last = Failure(AMBIGUOUS)
        try:
            while True:
                if check:
                    if posts > self.max_retries and last.kind != REFUSED:
                        self.sleep(self.settle_s)   # the final lookup: see settle_s
                    found = self._find(r.cid)
                    check = False
                    if found is not None:
                        self.stats["duplicates_avoided"] += 1
                        self.results.append(SubmitResult(r.oid, True, found, attempts=posts,
                                                         recovered=True, sent_ns=sent,
                                                         done_ns=time.monotonic_ns()))
                        return
                    if last.kind == REFUSED:       # a 422 and the venue has no such order
                        return self._refused(r, last, posts, sent)
                if posts > self.max_retries:
                    last.code = last.code or REASON_RETRIES_EXHAUSTED
                    self.log(f"pyrt: alpaca rest: order {r.oid} ({r.cid}) not placed after "
                             f"{posts} attempts: {last.message}")
                    return self._refused(r, last, posts, sent, exhausted=True)
                if posts:
                    self.stats["retries"] += 1
                posts += 1
                try:
                    order = parse_order(self._call(lambda c: c.submit_order(req)))
                except ValueError as e:             # 2xx with an unreadable body: it exists?
                    last, check = Failure(AMBIGUOUS, 0, 0, str(e)), True
                    continue
                except Failure as f:
                    last, check = f, self._check_after(f, posts)
                    if check is None:
                        return self._refused(r, f, posts, sent)
                    continue
                self.stats["submitted"] += 1
                self.results.append(SubmitResult(r.oid, True, order, attempts=posts, sent_ns=sent,
                                                 done_ns=time.monotonic_ns()))
                return
        except _Unknown:
            self.results.append(Unresolved(r.oid))
        except _Stopped:
            self.results.append(Unresolved(r.oid))

    def _refused(self, r, f: Failure, posts: int, sent: int, exhausted: bool = False) -> None:
        self.stats["rejected"] += 1
        if not exhausted:
            self.log(f"pyrt: alpaca rest: order {r.oid} ({r.cid}, {r.symbol}) refused by the venue: "
                     f"HTTP {f.status} code {f.code}: {f.message}")
        self.results.append(SubmitResult(r.oid, False, None, f.code or REASON_RETRIES_EXHAUSTED,
                                         f.message, posts, sent_ns=sent, done_ns=time.monotonic_ns()))

    # -- cancel / replace -----------------------------------------------------------------
    def _do_cancel(self, r: _Req) -> None:
        for k in range(1, self.max_retries + 2):
            try:
                self._call(lambda c: c.cancel_order_by_id(r.venue_id))
                self.results.append(CancelResult(r.oid, True))
                return
            except Failure as f:
                if f.kind in (REFUSED, NOT_FOUND):     # 422 not cancelable, 404 gone
                    self.results.append(CancelResult(r.oid, False, f.code, f.message))
                    return
                if f.kind != RATE:
                    self._backoff(k)                   # DELETE is idempotent: just send again
                if k > 1:
                    self.stats["retries"] += 1
            except _Stopped:
                break
        self.results.append(CancelResult(r.oid, False, REASON_RETRIES_EXHAUSTED, "cancel not confirmed"))

    def _do_replace(self, r: _Req) -> None:
        """PATCH the order; the same lookup-before-resend rule, keyed by the new client id."""
        from alpaca.trading.requests import ReplaceOrderRequest

        kw = dict(qty=r.qty, client_order_id=r.new_cid, time_in_force=TIF_NAMES[r.tif])
        if r.limit_px > 0.0:
            kw["limit_price"] = r.limit_px
        req = ReplaceOrderRequest(**kw)
        check, last = False, Failure(AMBIGUOUS)
        try:
            for k in range(1, self.max_retries + 3):
                if check:
                    check = False
                    found = self._find(r.new_cid)
                    if found is not None:
                        self.stats["duplicates_avoided"] += 1
                        self.results.append(ReplaceResult(r.oid, r.new_oid, True, found))
                        return
                    if last.kind == REFUSED:
                        break
                if k > self.max_retries + 1:
                    break
                if k > 1:
                    self.stats["retries"] += 1
                try:
                    order = parse_order(self._call(lambda c: c.replace_order_by_id(r.venue_id, req)))
                    self.results.append(ReplaceResult(r.oid, r.new_oid, True, order))
                    return
                except ValueError as e:
                    last, check = Failure(AMBIGUOUS, 0, 0, str(e)), True
                except Failure as f:
                    last, check = f, self._check_after(f, k)
                    if check is None:
                        break
        except (_Unknown, _Stopped):
            last = Failure(AMBIGUOUS, 0, REASON_RETRIES_EXHAUSTED, "replace not confirmed")
        self.log(f"pyrt: alpaca rest: replace of order {r.oid} by {r.new_oid} refused: "
                 f"HTTP {last.status} code {last.code}: {last.message}")
        self.results.append(ReplaceResult(r.oid, r.new_oid, False, None,
                                          last.code or REASON_RETRIES_EXHAUSTED, last.message))

    # -- queries --------------------------------------------------------------------------
    def _do_lookup(self, r: _Req) -> None:
        try:
            found = self._find(r.cid)
        except (_Unknown, _Stopped):
            self.results.append(Unresolved(r.oid))
            return
        self.results.append(Snapshot(r.oid, None if found is None else VenueUpdate(found, "snapshot")))

    def _do_refresh(self, r: _Req) -> None:
        for k in range(1, self.max_retries + 2):
            try:
                d = self._call(lambda c: c.get_order_by_id(r.venue_id))
                self.results.append(Snapshot(r.oid, VenueUpdate(parse_order(d), "snapshot")))
                return
            except Failure as f:
                if f.kind in (REFUSED, NOT_FOUND):
                    self.results.append(Snapshot(r.oid, None))
                    return
                if f.kind != RATE:
                    self._backoff(k)
            except (ValueError, _Stopped):
                break
        self.results.append(Unresolved(r.oid))

    def _do_resync(self, r: _Req) -> None:
        """Every order since ``after`` (paged, oldest first), then each listed venue id the
        listing did not contain; each one a ``Snapshot`` (source "resync")."""
        from alpaca.common.enums import Sort
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        seen, n, after, ok = set(), 0, r.after, True
        try:
            for _page in range(20):
                req = GetOrdersRequest(status=QueryOrderStatus.ALL, after=after, limit=500,
                                       direction=Sort.ASC)
                rows = self._retrying(lambda c: c.get_orders(req))
                for d in rows or ():
                    o = parse_order(d)
                    seen.add(o.venue_id)
                    n += 1
                    self.results.append(Snapshot(0, VenueUpdate(o, "snapshot", source="resync")))
                if not rows or len(rows) < 500:
                    break
                after = rows[-1].get("submitted_at") or after
            for vid in r.venue_ids:
                if vid in seen:
                    continue
                d = self._retrying(lambda c: c.get_order_by_id(vid))
                self.results.append(Snapshot(0, VenueUpdate(parse_order(d), "snapshot", source="resync")))
                n += 1
        except (Failure, ValueError, _Unknown, _Stopped) as e:
            ok = False
            self.log(f"pyrt: alpaca rest: resync incomplete after {n} orders: {e}")
        self.results.append(ResyncDone(n, ok))

    def _retrying(self, fn):
        last = None
        for k in range(1, self.max_retries + 2):
            try:
                return self._call(fn)
            except Failure as f:
                last = f
                if f.kind in (REFUSED, NOT_FOUND):
                    raise
                if f.kind != RATE:
                    self._backoff(k)
        raise _Unknown(last)


class _Unknown(Exception):
    """Could not tell (lookups kept failing)."""


class _Stopped(Exception):
    """The worker is stopping: no more calls."""


