"""``AlpacaExecStage``: exec on Alpaca (paper or live) through alpaca-py, off the hot loop.

Same contract as ``procs.exec:ExecStage``: one input, the ``order`` ring, refused at start
unless the risk stage produces it (no order reaches Alpaca without the pre-trade checks);
one output, the ``fill`` ring of FILL reports, numbered by ``fill_id`` gap-free from 1;
every order id gets exactly one terminal report (FULL, REJECTED, CANCELED, EXPIRED or
REPLACED); order states move only as ``procs.exec_orders.TRANSITIONS`` allows.

It is a plain-Python stage: run it in its own process with ``idle = "backoff"`` (or
``"park"``), never fused into the native hot loop. ``do_work`` never blocks on the network:

1. **Results** of the two worker threads (``procs.alpaca_rest.RestWorker``: submit/cancel/
   replace/lookup answers and REST snapshots; ``procs.alpaca_trade_updates``: the
   ``trade_updates`` stream) are drained from one deque and applied to the orders:
   ``new`` (or a submit answer in status ``new``) -> ACCEPTED (``accepted``/``pending_new``:
   received but not routed yet, may still be rejected: the order stays SUBMITTED, the one
   state the table lets end REJECTED); ``partial_fill``/``fill`` ->
   PARTIAL/FULL (qty and price of the execution, ``leaves = qty - filled_qty``);
   ``canceled`` -> CANCELED; ``expired``/``done_for_day`` -> EXPIRED; ``rejected`` or a
   refused submit -> REJECTED (``reason`` = the venue's numeric code, e.g. 40310000);
   ``replaced`` -> REPLACED (``replaced_by`` = the new engine order id);
   ``order_cancel_rejected``/``order_replace_rejected`` or a refused cancel/replace ->
   CANCEL_REJECTED. **Executions are counted once**: a fill is the increase of the order's
   cumulative ``filled_qty`` over what was already reported (its price from the execution,
   or from the change in ``filled_avg_price x filled_qty`` when updates were missed), and
   a repeated ``execution_id`` or an older snapshot adds nothing. So a REST answer, a
   stream event and a resync after a reconnect can describe one execution in any order.
2. **Orders** from risk: NEW orders wait here (a cancel of one that never left is answered
   here) and go to the REST worker as it frees up; cancels and replaces of orders at the
   venue go at once (a cancel jumps the worker's queue; before the venue id is known it
   waits for the submit's answer).
3. **Watchdog**: an order that waits for the venue longer than ``stale_ms`` is read by REST
   (``GET /v2/orders/{id}``), a submit whose outcome stayed unknown is looked up by client
   order id again: a lost stream message cannot leave an order hanging.

Reports are written to the ring as it has room (nothing is dropped: they wait in order);
new orders are taken only while fewer than a ring's worth of reports wait. The
``in_flight`` counter (orders awaiting the venue, market orders not yet done, requests
queued) tells the supervisor's drain to wait for the venue before stopping (bounded).

**Client order ids, idempotency, rate limits, start-up**: ``<engine>-<session>-<order id>``
(``procs.alpaca_reconcile``: a persisted per-engine session counter, so a restart never
reuses one); never sent twice (``procs.alpaca_rest``: lookup before any resend; the venue
refuses a duplicate id). Known gap (see ``procs.alpaca_rest``): a submit whose retries ran
out and whose final lookup said 404 is reported REJECTED; should the venue accept it later,
its fills are logged as an ERROR and not forwarded (risk's positions miss them). 200 requests a minute enforced locally, 429 honoured; at start
``prepare()`` reconciles the account (positions, cash and buying power seed risk; open
orders canceled or adopted, param ``open_orders``). Credentials come from
``APCA_API_KEY_ID``/``APCA_API_SECRET_KEY`` (or the ``dotenv`` file), read before any
network access; missing ones stop ``pyrt run`` before any process starts.

Params: ``rest_url`` ("" = alpaca-py's paper/live default), ``stream_url`` ("" = the
paper/live trading stream), ``paper`` (true), ``rate_limit_per_min`` (200),
``timeout_s`` (10), ``max_retries`` (5), ``backoff_ms`` (100), ``backoff_cap_ms`` (2000),
``jitter`` (0.5), ``open_orders`` ("cancel" | "adopt"), ``dotenv`` (".env"),
``reconnect_min_ms`` (500), ``reconnect_max_ms`` (30000), ``stale_ms`` (2000),
``max_orders`` (65536: orders tracked at once), ``batch`` (256); set by ``prepare()``:
``client_prefix``, ``session_start``, ``adopted_orders``.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime
import math
import sys
import time

import numpy as np

from layouts.orders import (
    ACTION_CANCEL, ACTION_REPLACE, BUY, FILL, FILL_ACCEPTED, FILL_CANCEL_REJECTED,
    FILL_CANCELED, FILL_EXPIRED, FILL_FULL, FILL_PARTIAL, FILL_REJECTED, FILL_REPLACED, ORDER_LIMIT,
    ORDER_MARKET, POSITION, SELL, TIF_FOK, TIF_IOC,
)
from pyrt_shm.hdr_recorder import hdr_record
from pyrt_shm.stage import Stage
from ringbuf.seqlock import write_begin, write_end

from . import check_keys, check_order_source, float_param, int_param, twin
from .alpaca_reconcile import POLICIES
from .alpaca_rest import (
    REASON_BAD_ORDER, REASON_CANCELED, REASON_UNKNOWN_ORDER, CancelResult, ReplaceResult,
    ResyncDone, Snapshot, SubmitResult, Unresolved, VenueUpdate, parse_position,
)
from .alpaca_trade_updates import Listening
from .exec import _book_execution
from .exec_orders import (
    ACCEPTED, E_ACCEPT, E_CANCEL_REJECT, E_CANCEL_REQ, E_CANCELED, E_EXPIRE, E_FILL, E_PARTIAL_FILL,
    E_REJECT, E_REPLACE_REJECT, E_REPLACE_REQ, E_REPLACED, E_SUBMIT, ILLEGAL, NEW, PARTIALLY_FILLED,
    PENDING_CANCEL, PENDING_REPLACE, SUBMITTED, TRANSITIONS, next_state,
)

EPS = 1e-9
REASON_DUPLICATE_ID = 3       #: the simulated venue's numbers (same codes)
REASON_TABLE_FULL = 12
REASON_REPLACE_FAILED = 13
WINDOW = 2                    #: requests kept queued at the REST worker
LOG_UNKNOWN = 20              #: unknown-order updates logged (then only counted)
#: counters the REST worker keeps (``RestWorker.stats``), added to the stage's own
WORKER_COUNTERS = frozenset(("submitted", "rate_limited", "http_429", "venue_errors", "retries",
                             "lookups", "duplicates_avoided"))
#: An order is ACCEPTED once the venue routed it ("new"); Alpaca's "accepted"/"pending_new"
#: (received, not yet routed) can still end "rejected", which the state table allows only
#: from SUBMITTED, so they keep the order SUBMITTED.
ACK_EVENTS = ("new",)
ACK_STATUSES = ("new", "partially_filled")


@dataclasses.dataclass(frozen=True)
class AlpacaParams:
    rest_url: str
    stream_url: str
    paper: bool
    rate_limit_per_min: int
    timeout_s: float
    max_retries: int
    backoff_s: float
    backoff_cap_s: float
    jitter: float
    open_orders: str
    dotenv: str
    reconnect_min_s: float
    reconnect_max_s: float
    stale_ns: int
    max_orders: int
    batch: int


PARAMS = ("rest_url", "stream_url", "paper", "rate_limit_per_min", "timeout_s", "max_retries",
          "backoff_ms", "backoff_cap_ms", "jitter", "open_orders", "dotenv", "reconnect_min_ms",
          "reconnect_max_ms", "stale_ms", "max_orders", "batch", "client_prefix", "session_start",
          "adopted_orders")


def read_params(ctx) -> AlpacaParams:
    """Validate the stage's params (ValueError naming ``stages.<name>.params.<key>``)."""
    check_keys(ctx, PARAMS)
    w = f"stages.{ctx.name}.params"
    rest = ctx.param("rest_url", "", kind=str)
    stream = ctx.param("stream_url", "", kind=str)
    for key, url, schemes in (("rest_url", rest, ("http://", "https://")),
                              ("stream_url", stream, ("ws://", "wss://"))):
        if url and not url.startswith(schemes):
            raise ValueError(f"{w}.{key}: must start with {' or '.join(schemes)} (or be \"\" for "
                             f"Alpaca's own), got {url!r}")
        if url.rstrip("/").endswith("/v2"):
            raise ValueError(f"{w}.{key}: give the base URL without /v2 (alpaca-py adds it), got {url!r}")
    paper = ctx.param("paper", True, kind=bool)
    policy = ctx.param("open_orders", "cancel", kind=str)
    if policy not in POLICIES:
        raise ValueError(f"{w}.open_orders: one of {', '.join(POLICIES)}, got {policy!r}")
    lo = float_param(ctx, "reconnect_min_ms", 500.0, lo=1.0)
    return AlpacaParams(
        rest_url=rest.rstrip("/"), stream_url=stream, paper=paper,
        rate_limit_per_min=int_param(ctx, "rate_limit_per_min", 200, lo=1, hi=10_000),
        timeout_s=float_param(ctx, "timeout_s", 10.0, lo=0.0, hi=300.0, lo_open=True),
        max_retries=int_param(ctx, "max_retries", 5, lo=0, hi=100),
        backoff_s=float_param(ctx, "backoff_ms", 100.0, lo=0.0) / 1e3,
        backoff_cap_s=float_param(ctx, "backoff_cap_ms", 2000.0, lo=0.0) / 1e3,
        jitter=float_param(ctx, "jitter", 0.5, lo=0.0, hi=1.0),
        open_orders=policy, dotenv=ctx.param("dotenv", ".env", kind=str),
        reconnect_min_s=lo / 1e3,
        reconnect_max_s=float_param(ctx, "reconnect_max_ms", 30_000.0, lo=lo) / 1e3,
        stale_ns=int(float_param(ctx, "stale_ms", 2000.0, lo=10.0) * 1e6),
        max_orders=int_param(ctx, "max_orders", 65536, lo=16, hi=1 << 24),
        batch=int_param(ctx, "batch", 256, lo=1, hi=65536))


class _Order:
    """Exec's view of one order (stage thread only)."""

    __slots__ = ("oid", "cid", "vid", "sym", "side", "ot", "tif", "qty", "px", "state", "filled",
                 "value", "attempts", "feed_ns", "recv_ns", "touched", "cancel_wanted", "new_oid",
                 "orig_oid", "execs", "lookup_at", "done", "polls", "wall")

    def __init__(self, oid, cid, sym, side, ot, tif, qty, px, feed_ns, now):
        self.oid, self.cid, self.vid = oid, cid, ""
        self.sym, self.side, self.ot, self.tif, self.qty, self.px = sym, side, ot, tif, qty, px
        self.state, self.filled, self.value, self.attempts = NEW, 0.0, 0.0, 0
        self.feed_ns, self.recv_ns, self.touched = feed_ns, now, now
        self.cancel_wanted, self.new_oid, self.orig_oid = False, 0, 0
        self.execs: set = set()
        self.lookup_at = 0
        self.done = False
        self.polls = 0
        self.wall = time.time() if now else 0.0     # wall clock at receipt (resync window)

    @property
    def quick(self) -> bool:
        """Expected to end soon by itself (market, IOC, FOK): the drain waits for it."""
        return self.ot == ORDER_MARKET or self.tif in (TIF_IOC, TIF_FOK)


class AlpacaExecStage(Stage):
    """Order execution on Alpaca (see module doc)."""

    INPUTS = ("order",)
    OUTPUTS = ("fill",)
    TABLES = {"venue_positions": (POSITION, "symbols"), "alpaca_positions": (POSITION, "symbols")}
    HISTOGRAMS = ("latency", "tick_to_order", "submit_rtt")
    COUNTERS = ("orders_in", "fills_out", "executions", "orders_done", "rejected", "in_flight",
                "submitted", "rate_limited", "http_429", "venue_errors", "retries", "lookups",
                "duplicates_avoided", "unknown_updates", "ignored_updates", "stream_reconnects")
    #: counter the supervisor's drain waits on (see pyrt_shm.supervisor)
    IN_FLIGHT = "in_flight"
    PARAMS = PARAMS

    @classmethod
    def prepare(cls, topology, stage_name: str, log=None):
        """Before any stage is built: credentials, then the account reconciliation (see
        ``procs.alpaca_reconcile``); return the topology with risk's and exec's params set."""
        from pyrt_shm.credentials import alpaca_credentials
        from pyrt_shm.stage import StageContext

        from .alpaca_reconcile import prepare_topology

        st = topology.stage(stage_name)
        p = read_params(StageContext(name=stage_name, index=0, params=st.params))
        creds = alpaca_credentials(dotenv_path=p.dotenv)     # MissingCredentials: no network yet
        return prepare_topology(topology, stage_name, p, creds, log)

    def __init__(self, ctx):
        super().__init__(ctx)
        from pyrt_shm.credentials import alpaca_credentials

        self.p = p = read_params(ctx)
        self._creds = alpaca_credentials(dotenv_path=p.dotenv)
        import alpaca.trading.client  # noqa: F401 - import once here, before the fork
        import alpaca.trading.requests  # noqa: F401

        from .alpaca_reconcile import allocate_session, client_prefix

        self.prefix = ctx.param("client_prefix", None, kind=str) or client_prefix("pyrt", allocate_session("pyrt"))
        start = ctx.param("session_start", None, kind=str)
        if start is not None:
            try:
                if datetime.datetime.fromisoformat(start).tzinfo is None:
                    raise ValueError("no time zone")
            except ValueError as e:
                raise ValueError(f"stages.{ctx.name}.params.session_start: an ISO-8601 time with a "
                                 f"time zone, got {start!r} ({e})") from None
        self.session_start = start or (datetime.datetime.now(datetime.timezone.utc)
                                       - datetime.timedelta(seconds=2)).isoformat()
        self.inp, self.out = ctx.input("order"), ctx.output("fill")
        self.symbols = tuple(ctx.symbols)
        self.sym_id = {s: i for i, s in enumerate(self.symbols)}
        self.vtable = ctx.tables["venue_positions"]
        self.atable = ctx.tables["alpaca_positions"]
        n = len(self.vtable)
        self.vpos = np.zeros(n, POSITION)
        self.vpos["sym"] = np.arange(n)
        self.h_lat, self.h_t2o = ctx.hist("latency"), ctx.hist("tick_to_order")
        self.h_rtt = ctx.hist("submit_rtt")
        self.results: collections.deque = collections.deque()
        self.worker = None
        self.stream = None
        self.orders: dict[int, _Order] = {}
        self.by_cid: dict[str, int] = {}
        self.by_vid: dict[str, int] = {}
        self.pending: collections.deque = collections.deque()      # oids in NEW, in order
        self.outbox: collections.deque = collections.deque()       # reports not yet in the ring
        self.finished: collections.deque = collections.deque()     # terminal oids, oldest first
        self.next_fill_id = 1
        self.last_oid = 0
        self.active: dict[int, _Order] = {}                        # orders not yet finished
        self.c = {k: 0 for k in self.COUNTERS}
        self._pushed: dict = {}
        self._next_watch = 0
        self._resyncs = 0
        self._adopt(ctx.param("adopted_orders", (), kind=(list, tuple)))

    def _adopt(self, adopted) -> None:
        """Orders adopted at start (``prepare``): tracked like engine orders, ids as given."""
        w = f"stages.{self.name}.params.adopted_orders"
        for i, a in enumerate(adopted):
            try:
                oid, sym = int(a["id"]), self.sym_id[a["symbol"]]
                side = BUY if a["side"] == "buy" else SELL
                q, f, lp = float(a["qty"]), float(a.get("filled", 0.0)), float(a.get("limit_px", 0.0))
                vid, cid = str(a["venue_id"]), str(a.get("client_order_id") or "")
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{w}[{i}]: bad or missing field ({e})") from None
            o = _Order(oid, cid, sym, side, ORDER_LIMIT if lp > 0 else ORDER_MARKET, 0, q, lp, 0, 0)
            o.vid, o.filled, o.state = vid, f, PARTIALLY_FILLED if f > 0 else ACCEPTED
            o.value = f * float(a.get("avg_px", 0.0) or lp)
            self._track(o)
            self.last_oid = max(self.last_oid, oid)

    def _track(self, o: _Order) -> None:
        self.orders[o.oid] = o
        if o.cid:
            self.by_cid[o.cid] = o.oid
        if o.vid:
            self.by_vid[o.vid] = o.oid
        self.active[o.oid] = o

    # -- wiring and lifecycle -------------------------------------------------------------
    def warm_up(self) -> None:
        """Refuse an order ring that risk does not produce (the check ExecStage makes), and
        compile the histogram recorder for Python ints (on a private array)."""
        check_order_source(self)
        hdr_record(np.zeros(1, self.ctx.hists.dtype), 0, 1)
        t = self.vtable                 # _book's types, so the first fill compiles nothing
        _book_execution(np.zeros_like(t.seqs), twin(t.rows), twin(self.vpos), 0, BUY, 0.0, 0.0)

    def on_start(self) -> None:
        """In the stage's own process: start the REST worker and the trade_updates client."""
        from .alpaca_rest import RestWorker, limiter_for, make_client
        from .alpaca_trade_updates import LIVE_STREAM, PAPER_STREAM, TradeUpdatesClient

        p, creds = self.p, self._creds
        self.worker = RestWorker(
            lambda: make_client(creds.key_id, creds.secret_key, p.paper, p.rest_url, p.timeout_s),
            self.results, limiter_for(p.rest_url, p.rate_limit_per_min), max_retries=p.max_retries,
            backoff_s=p.backoff_s, backoff_cap_s=p.backoff_cap_s, jitter=p.jitter, seed=self.ctx.index)
        self.worker.start()
        url = p.stream_url or (PAPER_STREAM if p.paper else LIVE_STREAM)
        self.stream = TradeUpdatesClient(url, creds.key_id, creds.secret_key, self.results,
                                         reconnect_min_s=p.reconnect_min_s,
                                         reconnect_max_s=p.reconnect_max_s)
        self.stream.start()

    def on_close(self) -> None:
        """Stop the threads (bounded), publish what is left, record the venue's positions."""
        # bounded well inside the supervisor's join timeout (5 s): the drain already waited
        # for the venue, so the threads are normally idle here
        if self.stream is not None:
            self.stream.stop(timeout=2.0)
        if self.worker is not None:
            self.worker.stop(timeout=2.0)
            self._drain_results(time.monotonic_ns())
            self._flush()
            self._read_venue_positions()
        self._sync_counters(force=True)

    def _read_venue_positions(self) -> None:
        """The account's positions at close into ``alpaca_positions`` (the venue's own record,
        for comparison with risk's); logged, never fatal."""
        from .alpaca_rest import make_client

        p, creds = self.p, self._creds
        client = None
        try:
            client = make_client(creds.key_id, creds.secret_key, p.paper, p.rest_url, min(p.timeout_s, 1.0))
            rows = client.get_all_positions() or []
        except Exception as e:  # noqa: BLE001 - best effort at shutdown
            print(f"pyrt: alpaca: positions at close not read: {type(e).__name__}: {e}",
                  file=sys.stderr, flush=True)
            return
        finally:
            if client is not None:
                client._session.close()
        t = self.atable
        for d in rows:
            try:
                sym, q, px = parse_position(d)
            except ValueError as e:
                print(f"pyrt: alpaca: positions at close: {e}", file=sys.stderr, flush=True)
                continue
            s = self.sym_id.get(sym)
            if s is None:
                continue
            row = np.zeros(1, POSITION)[0]
            row["sym"], row["qty"], row["avg_px"] = s, q, px
            write_begin(t.seqs, s)
            t.rows[s] = row
            write_end(t.seqs, s)

    @classmethod
    def summarize(cls, tables) -> dict:
        """Report section: the account's positions as Alpaca reported them at close, keyed by
        symbol id (the index in ``engine.symbols``). The stage writes the table once, in
        ``on_close``; the report reads it after the stage stopped."""
        t = tables.get("alpaca_positions")
        if t is None:
            return {}
        rows = t.rows.copy()
        return {"alpaca_positions": {int(r["sym"]): {"qty": float(r["qty"]), "avg_px": float(r["avg_px"])}
                                     for r in rows if r["qty"] != 0.0}}

    # -- the duty cycle -------------------------------------------------------------------
    def do_work(self, now_ns: int) -> int:
        work = self._drain_results(now_ns)
        work += self._intake(now_ns)
        work += self._hand_off(now_ns)
        if now_ns >= self._next_watch:
            self._watchdog(now_ns)
            self._next_watch = now_ns + 100_000_000
        work += self._flush()
        self._sync_counters()           # after the flush: in_flight 0 means reports are out
        return work

    # -- 1. results ---------------------------------------------------------------------------
    def _drain_results(self, now: int) -> int:
        q, n = self.results, 0
        while q and n < self.p.batch:
            r = q.popleft()
            n += 1
            if isinstance(r, VenueUpdate):
                self._on_update(r, now)
            elif isinstance(r, SubmitResult):
                self._on_submit(r, now)
            elif isinstance(r, Snapshot):
                self._on_snapshot(r, now)
            elif isinstance(r, CancelResult):
                self._on_cancel_result(r, now)
            elif isinstance(r, ReplaceResult):
                self._on_replace_result(r, now)
            elif isinstance(r, Unresolved):
                o = self.orders.get(r.oid)
                if o is not None and not o.done:
                    o.lookup_at = now + int(self.p.backoff_cap_s * 1e9) + 1
            elif isinstance(r, Listening):
                self._resyncs += 1
                if r.n > 1:
                    self.c["stream_reconnects"] += 1
                self._resync()
            elif not isinstance(r, ResyncDone):
                raise TypeError(f"alpaca exec: unexpected result {type(r).__name__}")
        return n

    def _resync(self) -> None:
        """After the stream (re)connected: read every order that may have moved meanwhile,
        i.e. all orders since the oldest unfinished one was received (5 s of slack for
        clocks), plus each unfinished order with a venue id by its id (adopted ones are older)."""
        live = list(self.active.values())
        if not live:
            return
        oldest = min(o.wall for o in live)
        after = self.session_start
        if oldest > 0:
            t = datetime.datetime.fromtimestamp(oldest - 5.0, datetime.timezone.utc)
            after = max(t, datetime.datetime.fromisoformat(self.session_start)).isoformat()
        self.worker.resync(after, [o.vid for o in live if o.vid])

    def _on_submit(self, r: SubmitResult, now: int) -> None:
        o = self.orders.get(r.oid)
        if o is None:
            return
        if r.ok and r.done_ns and o.attempts <= 1:
            hdr_record(self.ctx.hists, self.h_rtt, max(r.done_ns - o.recv_ns, 0))
        if o.done:
            return
        if r.ok:
            self._on_update(VenueUpdate(r.order, "snapshot"), now, o)
        elif self._move(o, E_REJECT):
            self.c["rejected"] += 1
            self._report(o, FILL_REJECTED, reason=r.code)
            self._finish(o)

    def _on_snapshot(self, r: Snapshot, now: int) -> None:
        if r.update is not None:
            self._on_update(r.update, now, self.orders.get(r.oid) if r.oid else None)
            return
        o = self.orders.get(r.oid)
        if o is None or o.done:
            return
        if o.state == SUBMITTED and not o.vid and o.lookup_at == -1:
            # a lookup after an unresolved submit found nothing: resend (same client id, so a
            # request still in flight makes the venue refuse it with a 422: never two orders)
            o.lookup_at = 0
            o.attempts += 1
            self.c["retries"] += 1
            self.worker.submit(o.oid, o.cid, self.symbols[o.sym], o.side, o.qty, o.px, o.tif)
        else:
            o.touched = now

    def _on_cancel_result(self, r: CancelResult, now: int) -> None:
        o = self.orders.get(r.oid)
        if o is None or o.done:
            return
        o.touched = now
        if not r.ok and o.state == PENDING_CANCEL:
            self._move(o, E_CANCEL_REJECT)
            self._report(o, FILL_CANCEL_REJECTED, reason=r.code)
            if o.vid:
                self.worker.refresh(o.oid, o.vid)     # it ended meanwhile? read how

    def _on_replace_result(self, r: ReplaceResult, now: int) -> None:
        o, n = self.orders.get(r.oid), self.orders.get(r.new_oid)
        if r.ok:
            if n is not None and not n.done:
                self._on_update(VenueUpdate(r.order, "snapshot"), now, n)
            if o is not None and not o.done and o.vid:
                self.worker.refresh(o.oid, o.vid)     # its "replaced" status ends it
            return
        if o is not None and not o.done and o.state == PENDING_REPLACE:
            self._move(o, E_REPLACE_REJECT)
            self._report(o, FILL_CANCEL_REJECTED, reason=r.code, other=r.new_oid)
        if n is not None and not n.done and self._move(n, E_REJECT):
            self.c["rejected"] += 1
            self._report(n, FILL_REJECTED, reason=r.code or REASON_REPLACE_FAILED)
            self._finish(n)

    def _find(self, v) -> _Order | None:
        oid = self.by_cid.get(v.cid) or self.by_vid.get(v.venue_id)
        if oid is None and v.cid.startswith(self.prefix):
            try:
                oid = int(v.cid[len(self.prefix):])
            except ValueError:
                oid = None
        return self.orders.get(oid) if oid is not None else None

    def _on_update(self, u: VenueUpdate, now: int, o: _Order | None = None) -> None:
        """Apply one trade update or REST snapshot to its order (see module doc)."""
        v = u.order
        o = o or self._find(v)
        if o is None:
            if u.source == "stream":
                self.c["unknown_updates"] += 1
                if self.c["unknown_updates"] <= LOG_UNKNOWN:
                    print(f"pyrt: alpaca: {u.event} for an order the engine does not know: "
                          f"{v.venue_id} ({v.cid or 'no client id'}) {v.symbol}", file=sys.stderr, flush=True)
            return
        if o.done:
            if u.source == "resync":            # a resync lists finished orders too
                return
            if v.filled_qty > o.filled + EPS:
                print(f"pyrt: alpaca: ERROR: order {o.oid} ({o.cid}) filled {v.filled_qty:g} at the venue "
                      f"after its terminal report at {o.filled:g}: positions differ from the venue's",
                      file=sys.stderr, flush=True)
            self.c["ignored_updates"] += 1
            return
        o.touched = now
        if v.venue_id and not o.vid and (not v.cid or v.cid == o.cid):
            o.vid = v.venue_id
            self.by_vid[o.vid] = o.oid
            o.lookup_at = 0
            if o.cancel_wanted:
                o.cancel_wanted = False
                self.worker.cancel(o.oid, o.vid)
        dup = bool(u.execution_id) and u.execution_id in o.execs
        cum = v.filled_qty
        if cum > o.filled + EPS and not dup:
            self._execution(o, u, cum)
            if o.done:
                return
        elif u.event in ("fill", "partial_fill"):
            self.c["ignored_updates"] += 1
        ev, st = u.event, v.status
        if ev == "canceled" or st == "canceled":
            self._end(o, E_CANCELED, FILL_CANCELED, REASON_CANCELED)
        elif ev in ("expired", "done_for_day") or st in ("expired", "done_for_day"):
            self._end(o, E_EXPIRE, FILL_EXPIRED, 0)
        elif ev == "rejected" or st == "rejected":
            if self._end(o, E_REJECT, FILL_REJECTED, 0):
                self.c["rejected"] += 1
        elif ev == "replaced" or st == "replaced":
            new = o.new_oid or self.by_vid.get(v.replaced_by, 0)
            self._end(o, E_REPLACED, FILL_REPLACED, 0, other=new)
        elif ev in ("order_cancel_rejected", "order_replace_rejected"):
            if o.state in (PENDING_CANCEL, PENDING_REPLACE):
                rep = o.state == PENDING_REPLACE
                self._move(o, E_REPLACE_REJECT if rep else E_CANCEL_REJECT)
                self._report(o, FILL_CANCEL_REJECTED, reason=REASON_UNKNOWN_ORDER,
                             other=o.new_oid if rep else 0)
        elif (ev in ACK_EVENTS or st in ACK_STATUSES) and o.state == SUBMITTED:
            if self._move(o, E_ACCEPT):
                self._report(o, FILL_ACCEPTED)

    def _execution(self, o: _Order, u: VenueUpdate, cum: float) -> None:
        v = u.order
        delta = cum - o.filled
        if u.event in ("fill", "partial_fill") and abs(u.qty - delta) <= 1e-6 and u.price > 0:
            px = u.price
        elif v.filled_avg_price > 0:
            px = (cum * v.filled_avg_price - o.value) / delta        # missed updates: the rest
            if not (math.isfinite(px) and px > 0):
                px = v.filled_avg_price
        else:
            px = u.price
        complete = cum >= o.qty - EPS
        if not self._move(o, E_FILL if complete else E_PARTIAL_FILL):
            return
        if u.execution_id:
            o.execs.add(u.execution_id)
        o.filled, o.value = cum, o.value + delta * px
        self.c["executions"] += 1
        self._book(o.sym, o.side, delta)
        self._report(o, FILL_FULL if complete else FILL_PARTIAL, qty=delta, px=px,
                     leaves=0.0 if complete else max(o.qty - cum, 0.0))
        if complete:
            self._finish(o)

    def _end(self, o: _Order, event: int, status: int, reason: int, other: int = 0) -> bool:
        if not self._move(o, event):
            return False
        self._report(o, status, reason=reason, other=other, leaves=max(o.qty - o.filled, 0.0))
        self._finish(o)
        return True

    def _book(self, s: int, side: int, q: float) -> None:
        t = self.vtable                 # ExecStage's own booking (Alpaca's fees are 0 here)
        _book_execution(t.seqs, t.rows, self.vpos, s, side, q, 0.0)

    # -- 2. orders from risk --------------------------------------------------------------
    def _intake(self, now: int) -> int:
        k = min(self.p.batch, len(self.out.recs) - len(self.outbox))
        if k <= 0:
            return 0
        recs = self.inp.poll(k)
        if len(recs) == 0:
            return 0
        clock = time.monotonic_ns()
        hists = self.ctx.hists
        for r in recs:
            hdr_record(hists, self.h_lat, clock - int(r["sent_ns"]))
            a = int(r["action"])
            if a == ACTION_CANCEL:
                self._cancel(int(r["order_id"]), r, now)
                continue
            hdr_record(hists, self.h_t2o, clock - int(r["feed_ns"]))
            self.c["orders_in"] += 1
            self._new(r, a, now)
        return len(recs)

    def _new(self, r, action: int, now: int) -> None:
        oid = int(r["order_id"])
        sym, side, ot, tif = int(r["sym"]), int(r["side"]), int(r["order_type"]), int(r["tif"])
        q, lp = float(r["qty"]), float(r["limit_px"])
        reason = 0
        if oid <= self.last_oid:
            reason = REASON_DUPLICATE_ID
        elif action > ACTION_REPLACE or sym >= len(self.symbols) or side not in (BUY, SELL) \
                or not (math.isfinite(q) and q > 0) or ot not in (ORDER_MARKET, ORDER_LIMIT) \
                or tif > TIF_FOK or (ot == ORDER_LIMIT and not (math.isfinite(lp) and lp > 0)):
            reason = REASON_BAD_ORDER
        elif len(self.active) >= self.p.max_orders:
            reason = REASON_TABLE_FULL
        orig = self.orders.get(int(r["orig_order_id"])) if action == ACTION_REPLACE else None
        if reason == 0 and action == ACTION_REPLACE and not (
                orig is not None and not orig.done and orig.vid and orig.state in (ACCEPTED, PARTIALLY_FILLED)
                and orig.sym == sym and orig.side == side):
            reason = REASON_REPLACE_FAILED
        if reason != REASON_DUPLICATE_ID:
            self.last_oid = oid
        o = _Order(oid, self.prefix + str(oid), sym, side, ot, tif, q, lp if ot == ORDER_LIMIT else 0.0,
                   int(r["feed_ns"]), now)
        if reason:
            self.c["rejected"] += 1
            self.c["orders_done"] += 1
            self._report(o, FILL_REJECTED, reason=reason)
            return
        self._track(o)
        if action == ACTION_REPLACE:
            self._move(orig, E_REPLACE_REQ)
            orig.new_oid, o.orig_oid = oid, orig.oid
            self._move(o, E_SUBMIT)
            o.attempts = 1
            self.worker.replace(orig.oid, orig.vid, oid, o.cid, q, o.px, tif)
        else:
            self.pending.append(oid)

    def _cancel(self, oid: int, r, now: int) -> None:
        o = self.orders.get(oid)
        if o is None or o.done or o.state not in (NEW, SUBMITTED, ACCEPTED, PARTIALLY_FILLED):
            self._report_raw(oid, int(r["sym"]), int(r["side"]), int(r["feed_ns"]), FILL_CANCEL_REJECTED,
                             reason=REASON_UNKNOWN_ORDER)
            return
        at_venue = o.state != NEW
        self._move(o, E_CANCEL_REQ)
        if not at_venue:                        # never left exec: canceled here
            self._report(o, FILL_CANCELED, reason=REASON_CANCELED, leaves=o.qty)
            self._finish(o)
        elif o.vid:
            self.worker.cancel(o.oid, o.vid)
        else:
            o.cancel_wanted = True              # sent when the submit's answer names the order

    def _hand_off(self, now: int) -> int:
        sent = 0
        while self.pending and self.worker.pending() < WINDOW:
            o = self.orders.get(self.pending.popleft())
            if o is None or o.done or o.state != NEW:
                continue
            self._move(o, E_SUBMIT)
            o.attempts = 1
            o.touched = now
            self.worker.submit(o.oid, o.cid, self.symbols[o.sym], o.side, o.qty, o.px, o.tif)
            sent += 1
        return sent

    # -- 3. watchdog ----------------------------------------------------------------------
    def _watchdog(self, now: int) -> None:
        """Ask the venue about orders that waited too long (at most 10 per pass)."""
        if self.worker.pending() >= WINDOW:
            return
        asked = 0
        for o in self.active.values():
            if asked >= 10:
                break
            if o.lookup_at > 0 and now >= o.lookup_at and not o.vid:
                o.lookup_at = -1                # marks "a lookup is out" (see _on_snapshot)
                self.worker.lookup(o.oid, o.cid)
                asked += 1
            elif o.vid and now - o.touched > self.p.stale_ns << min(o.polls, 5) and (
                    o.state in (SUBMITTED, PENDING_CANCEL, PENDING_REPLACE) or o.quick):
                o.touched = now                 # an order that stays quiet is asked less often
                o.polls += 1
                self.worker.refresh(o.oid, o.vid)
                asked += 1

    # -- reports --------------------------------------------------------------------------
    def _move(self, o: _Order, event: int) -> bool:
        n = int(next_state(TRANSITIONS, o.state, event, o.filled))
        if n == ILLEGAL:
            self.c["ignored_updates"] += 1
            return False
        o.state = n
        return True

    def _finish(self, o: _Order) -> None:
        o.done = True
        self.active.pop(o.oid, None)
        self.c["orders_done"] += 1
        self.finished.append(o.oid)
        while len(self.finished) > self.p.max_orders:       # forget the oldest finished orders
            old = self.orders.pop(self.finished.popleft(), None)
            if old is not None:
                self.by_cid.pop(old.cid, None)
                self.by_vid.pop(old.vid, None)

    def _report(self, o: _Order, status: int, qty: float = 0.0, px: float = 0.0, leaves: float = 0.0,
                reason: int = 0, other: int = 0) -> None:
        if status in (FILL_ACCEPTED, FILL_CANCEL_REJECTED):
            leaves = max(o.qty - o.filled, 0.0)
        self._report_raw(o.oid, o.sym, o.side, o.feed_ns, status, qty, px, leaves, reason,
                         o.attempts, other)

    def _report_raw(self, oid, sym, side, feed_ns, status, qty=0.0, px=0.0, leaves=0.0, reason=0,
                    attempts=0, other=0) -> None:
        self.outbox.append((oid, sym, side, feed_ns, status, qty, px, leaves,
                            min(max(int(reason), 0), 0xFFFFFFFF), min(attempts, 0xFFFF), other))

    def _flush(self) -> int:
        n = len(self.outbox)
        if n == 0:
            return 0
        recs = np.zeros(n, FILL)
        now = time.monotonic_ns()
        for i, (oid, sym, side, feed_ns, st, q, px, lv, reason, att, other) in enumerate(self.outbox):
            f = recs[i]
            f["order_id"], f["fill_id"], f["feed_ns"], f["sym"], f["side"] = oid, self.next_fill_id + i, feed_ns, sym, side
            f["status"], f["qty"], f["price"], f["leaves_qty"] = st, q, px, lv
            f["reason"], f["attempts"], f["replaced_by"], f["venue_ns"], f["sent_ns"] = reason, att, other, now, now
        k = self.out.offer(recs)
        for _ in range(k):
            self.outbox.popleft()
        self.next_fill_id += k
        self.c["fills_out"] += k
        if k:
            self.wake_consumers()
        return k

    def _sync_counters(self, force: bool = False) -> None:
        c = self.c
        w = self.worker.stats if self.worker is not None else {}
        inflight = sum(1 for o in self.active.values()
                       if o.state in (NEW, SUBMITTED, PENDING_CANCEL, PENDING_REPLACE) or o.quick)
        c["in_flight"] = inflight + len(self.outbox) + (self.worker.pending() if self.worker else 0)
        counters = self.ctx.counters
        for i, name in enumerate(self.COUNTERS):
            val = c[name] + w.get(name, 0) if name in WORKER_COUNTERS else c[name]
            if force or self._pushed.get(name) != val:
                counters[i] = val
                self._pushed[name] = val
