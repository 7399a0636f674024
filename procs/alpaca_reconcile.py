"""Start-up reconciliation with the Alpaca account, and the client-order-id session.

Runs in the supervisor *before any stage is built* (``AlpacaExecStage.prepare``, called by
``pyrt_shm.supervisor``), with one REST client, so the engine starts from what the account
really holds:

1. **Open orders** (``open_orders`` policy of the exec stage):

   * ``"cancel"`` (default): every open order is canceled (each logged), and the account is
     read only once none is open any more (bounded by ``settle_s``), so a fill racing the
     cancel is in the positions read next, never lost.
   * ``"adopt"``: open orders on the engine's symbols become engine orders ``1..k`` (in the
     order the venue lists them). Risk seeds them as open orders (their unfilled quantity counts in
     ``open_buy``/``open_sell``, ``open_orders``, exposure) and starts its own ids at
     ``k + 1``; exec tracks them by venue id and client order id, so their fills update
     positions like any engine order's, and a kill switch or ``pyrt kill`` cancels them
     too. Their filled part is already in the positions. Orders on symbols outside the
     engine's table are left alone and logged. To read positions and orders consistently,
     open orders are read before and after the positions; the read is repeated until no
     order filled in between.
2. **Positions**: ``qty`` (negative when short) and ``avg_entry_price`` of every engine
   symbol seed risk's positions (``initial_positions``); positions in other symbols are
   logged and not traded.
3. **Account**: ``cash`` seeds ``initial_cash`` and ``buying_power`` seeds risk's
   ``buying_power`` (read after the cancels, which release buying power).

Everything reconciled is logged (counts, symbols, quantities; never the keys).

**Client order ids** are ``<engine>-<session>-<order id>`` (at most 48 characters; an
engine name longer than 26 characters is shortened to 21 characters plus a 4-hex hash).
``session`` (base 36) is drawn from a per-engine counter kept in
``$PYRT_STATE_DIR`` (default ``$XDG_STATE_HOME/pyrt-shm`` or ``~/.local/state/pyrt-shm``),
file ``<engine>.alpaca-session``, under an exclusive lock: each start takes
``max(last + 1, unix seconds)``. So a restart never reuses an id of an earlier run, even
when the file is lost (the clock has moved on) or two starts fall in one second (the
counter has moved on). Run one engine name per account: two hosts running the same name
against one account could collide.
"""
from __future__ import annotations

import dataclasses
import datetime
import fcntl
import hashlib
import os
import sys
import time

from .alpaca_rest import (
    AMBIGUOUS, RATE, RETRY, classify, limiter_for, make_client, parse_order, parse_position,
)

POLICIES = ("cancel", "adopt")
MAX_CID = 48


class ReconcileError(RuntimeError):
    """The account could not be read or settled; the message says what and why."""


@dataclasses.dataclass
class Reconciled:
    cash: float
    buying_power: float
    equity: float
    positions: dict            #: engine symbol -> (qty, avg_px)
    other_positions: dict      #: symbol outside the engine's table -> qty
    canceled: list             #: VenueOrder canceled at start
    adopted: list              #: dicts: id, venue_id, client_order_id, symbol, side, qty, filled, limit_px
    left_alone: list           #: VenueOrder on other symbols (adopt policy)


# -- the session ----------------------------------------------------------------------------

def state_dir() -> str:
    base = os.environ.get("PYRT_STATE_DIR")
    if base:
        return base
    xdg = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(xdg, "pyrt-shm")


def engine_tag(engine: str) -> str:
    """The engine part of client order ids (at most 26 characters, see module doc)."""
    if len(engine) <= 26:
        return engine
    return engine[:21] + "~" + hashlib.sha1(engine.encode()).hexdigest()[:4]


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def allocate_session(engine: str, directory: str | None = None, log=None) -> str:
    """The next session of ``engine`` (see module doc); the client-order-id prefix is
    ``f"{engine_tag(engine)}-{session}-"``."""
    directory = directory or state_dir()
    now = int(time.time())
    path = os.path.join(directory, f"{engine}.alpaca-session")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        with open(path, "a+", encoding="ascii") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            text = f.read().strip()
            last = int(text) if text.isdigit() else 0
            n = max(last + 1, now)
            f.seek(0)
            f.truncate()
            f.write(f"{n}\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        n = now
        (log or _log)(f"pyrt: alpaca: warning: cannot keep the session counter in {path} "
                      f"({e.strerror}); using the clock ({n})")
    return _b36(n)


def client_prefix(engine: str, session: str) -> str:
    return f"{engine_tag(engine)}-{session}-"


# -- talking to the account -----------------------------------------------------------------

def _call(client, limiter, what: str, fn, attempts: int = 4, sleep=time.sleep):
    """One REST call with the shared limiter; 429 / 5xx / timeouts retried a few times;
    anything else raises ReconcileError naming the call and the venue's answer."""
    for k in range(1, attempts + 1):
        while True:
            wait = limiter.reserve(time.monotonic())
            if wait <= 0:
                break
            sleep(min(wait, 1.0))
        try:
            return fn(client)
        except Exception as e:  # noqa: BLE001 - classified; non-HTTP errors re-raised by classify
            f = classify(e)
            if k < attempts and f.kind in (RATE, RETRY, AMBIGUOUS):
                wait = 1.0 if f.kind != RATE or f.reset is None else min(max(f.reset - time.time(), 0), 60)
                sleep(min(wait, 0.2 * 2 ** k) if f.kind != RATE else wait)
                continue
            hint = " (check APCA_API_KEY_ID / APCA_API_SECRET_KEY and paper vs live)" \
                if f.status in (401, 403) else ""
            raise ReconcileError(f"alpaca: {what} failed: HTTP {f.status or '-'} code {f.code}: "
                                 f"{f.message}{hint}") from None
    raise ReconcileError(f"alpaca: {what} failed")  # pragma: no cover - loop always returns/raises


def _open_orders(client, limiter):
    from alpaca.trading.enums import QueryOrderStatus
    from alpaca.trading.requests import GetOrdersRequest

    req = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500)
    rows = _call(client, limiter, "GET /v2/orders?status=open", lambda c: c.get_orders(req)) or []
    return [parse_order(d) for d in rows]


def _positions(client, limiter, symbols) -> tuple[dict, dict]:
    rows = _call(client, limiter, "GET /v2/positions", lambda c: c.get_all_positions()) or []
    mine, other = {}, {}
    for d in rows:
        try:
            sym, q, px = parse_position(d)
        except ValueError as e:
            raise ReconcileError(f"alpaca: GET /v2/positions: {e}") from None
        if sym in symbols:
            mine[sym] = (q, px)
        else:
            other[sym] = q
    return mine, other


def reconcile(client, limiter, symbols, policy: str, *, settle_s: float = 10.0, log=None,
              sleep=time.sleep) -> Reconciled:
    """Read and settle the account (see module doc)."""
    log = log or _log
    if policy not in POLICIES:
        raise ValueError(f"open_orders: one of {', '.join(POLICIES)}, got {policy!r}")
    symbols = tuple(symbols)
    canceled, adopted, left = [], [], []
    if policy == "cancel":
        for o in _open_orders(client, limiter):
            log(f"pyrt: alpaca: canceling open order {o.venue_id} ({o.cid or 'no client id'}): "
                f"{'buy' if o.side > 0 else 'sell'} {o.qty:g} {o.symbol} {o.order_type}, "
                f"{o.filled_qty:g} filled")
            try:
                _call(client, limiter, f"DELETE /v2/orders/{o.venue_id}",
                      lambda c, v=o.venue_id: c.cancel_order_by_id(v))
            except ReconcileError as e:        # 404/422: it ended meanwhile; checked below
                log(f"pyrt: alpaca: {e}")
            canceled.append(o)
        deadline = time.monotonic() + settle_s
        while canceled:
            still = _open_orders(client, limiter)
            if not still:
                break
            if time.monotonic() > deadline:
                raise ReconcileError(
                    f"alpaca: {len(still)} order(s) still open {settle_s:g} s after canceling: "
                    + ", ".join(f"{o.venue_id} {o.symbol} ({o.status})" for o in still[:10]))
            sleep(0.2)
        mine, other = _positions(client, limiter, symbols)
    else:
        for _ in range(5):
            before = _open_orders(client, limiter)
            mine, other = _positions(client, limiter, symbols)
            after = _open_orders(client, limiter)
            if {o.venue_id: o.filled_qty for o in before} == {o.venue_id: o.filled_qty for o in after}:
                break
            sleep(0.2)
        else:
            raise ReconcileError("alpaca: open orders kept filling while the account was read "
                                 "(5 tries); start again when the account is quieter")
        for o in after:
            if o.symbol not in symbols:
                left.append(o)
                log(f"pyrt: alpaca: leaving open order {o.venue_id} on {o.symbol} alone "
                    "(not an engine symbol)")
                continue
            adopted.append({"id": len(adopted) + 1, "venue_id": o.venue_id, "client_order_id": o.cid,
                            "symbol": o.symbol, "side": "buy" if o.side > 0 else "sell",
                            "qty": o.qty, "filled": o.filled_qty, "avg_px": o.filled_avg_price,
                            "limit_px": o.limit_price if o.order_type == "limit" else 0.0})
    acct = _call(client, limiter, "GET /v2/account", lambda c: c.get_account()) or {}
    try:
        cash = float(acct.get("cash") or 0.0)
        bp = float(acct.get("buying_power") or 0.0)
        equity = float(acct.get("equity") or 0.0)
    except (TypeError, ValueError) as e:
        raise ReconcileError(f"alpaca: GET /v2/account: malformed account: {e}") from None
    for sym, q in sorted(other.items()):
        log(f"pyrt: alpaca: position {sym} {q:g} is not an engine symbol: not seeded, not traded")
    return Reconciled(cash, bp, equity, mine, other, canceled, adopted, left)


# -- the supervisor hook ----------------------------------------------------------------------

def prepare_topology(topology, stage_name: str, params, creds, log=None):
    """Reconcile and return ``topology`` with risk's seeding params and exec's session params
    filled in (``params`` is the exec stage's validated ``AlpacaParams``)."""
    from pyrt_shm.config_model import deep_freeze

    log = log or _log
    risk = [r.producer for r in topology.rings_in(stage_name) if r.record == "order"]
    if len(risk) != 1:
        raise ValueError(f"stages.{stage_name}: needs exactly one order ring (from the risk stage)")
    risk_name = risk[0]
    engine = topology.engine.name
    symbols = topology.engine.symbols
    session = allocate_session(engine, log=log)
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=2)
    limiter = limiter_for(params.rest_url, params.rate_limit_per_min)
    client = make_client(creds.key_id, creds.secret_key, params.paper, params.rest_url,
                         params.timeout_s)
    try:
        rec = reconcile(client, limiter, symbols, params.open_orders, log=log)
    finally:
        client._session.close()
    pos_txt = ", ".join(f"{s} {q:g} @ {px:g}" for s, (q, px) in sorted(rec.positions.items())) or "flat"
    log(f"pyrt: alpaca: account reconciled: cash {rec.cash:,.2f}, buying power {rec.buying_power:,.2f}, "
        f"equity {rec.equity:,.2f}; positions: {pos_txt}; {len(rec.other_positions)} position(s) in "
        f"other symbols; open orders: {len(rec.canceled)} canceled, {len(rec.adopted)} adopted, "
        f"{len(rec.left_alone)} left alone; client order ids {client_prefix(engine, session)}<n>")
    stages = []
    for st in topology.stages:
        p = dict(st.params)
        if st.name == risk_name:
            for k in ("initial_positions", "initial_cash", "buying_power", "adopted_orders"):
                if k in p:
                    log(f"pyrt: alpaca: stages.{risk_name}.params.{k} replaced by the account's state")
            p["initial_positions"] = {s: [q, px] for s, (q, px) in rec.positions.items()}
            p["initial_cash"] = rec.cash
            p["buying_power"] = rec.buying_power
            p["adopted_orders"] = [{k: a[k] for k in ("id", "symbol", "side", "qty", "filled", "limit_px")}
                                   for a in rec.adopted]
        elif st.name == stage_name:
            p["client_prefix"] = client_prefix(engine, session)
            p["session_start"] = start.isoformat()
            p["adopted_orders"] = rec.adopted
        else:
            stages.append(st)
            continue
        stages.append(dataclasses.replace(st, params=deep_freeze(p)))
    return dataclasses.replace(topology, stages=tuple(stages))


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


__all__ = ["POLICIES", "ReconcileError", "Reconciled", "reconcile", "prepare_topology",
           "allocate_session", "client_prefix", "engine_tag", "state_dir"]
