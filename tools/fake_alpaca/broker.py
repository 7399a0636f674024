"""The fake's broker: account, orders, positions, and the matching of orders against quotes.

Matching (against the fake's own quotes, one symbol at a time):

* a buy executes at the ask, a sell at the bid, at most the quote's size; what a quote's
  size gave to one order is gone for the orders behind it (price-time priority: market
  orders first, then better limits, then older) until the next quote refreshes the sizes. The rest of a market order fills on the next quotes:
  ``partial_fill`` events, then ``fill``.
* a limit order executes (at the quote's price, never worse than its limit) when it is
  marketable against the current quote, else it rests and executes when a later quote
  crosses it. An order whose symbol has no quote yet rests until one arrives.
* time in force: ``day`` and ``gtc`` rest (a day order rests until :meth:`expire_day`, the
  fake has no session clock); ``ioc`` cancels what did not execute at once; ``fok``
  executes all at once or is canceled without a fill.
* market, limit; ``qty`` or ``notional`` (market only). Stop, stop-limit, trailing-stop
  and multi-leg orders are refused with 422 naming ``type``/``order_class``.

Account (a 1x margin account, shorting enabled for stocks, never for crypto):
``cash`` moves by every fill; ``equity = cash + sum(qty * mark)``, the mark being the last
quote's mid (the entry price before any quote); ``buying_power = equity - sum(|qty| * mark)
- reserved``, where ``reserved`` is the exposure open orders would add, at their limit (or
the current quote) price. An order that needs more than the buying power is refused (403).
Positions keep the average entry price (unchanged when a fill reduces a position; reset to
the fill price when it flips side).

Concurrency: one lock guards everything. Every public method takes it. ``emit`` (the trade
stream's sink) is called *under the lock*, so events leave in the order they happened even
when HTTP threads and the quote publisher race; ``emit`` must not block and must not call
back into the broker.
"""
from __future__ import annotations

import itertools
import threading
import time
import uuid

from .market import is_crypto_symbol
from .open_orders import Side
from .orders import (CRYPTO_TIFS, EPS, NAMESPACE, OPEN_STATUSES, REPLACE_KEYS, TIFS, BrokerError, Order,
                     asset_id, choice, client_order_id, parse_order, position_symbol, positive, unprocessable)
from .wire import dec, rfc3339_ns, rfc3339_us


class _Quote:
    __slots__ = ("bid", "ask", "avail_b", "avail_a")


class _Position:
    __slots__ = ("qty", "avg")

    def __init__(self, qty: float, avg: float) -> None:
        self.qty, self.avg = qty, avg


class Broker:
    """Orders, positions and an account for one API key; see the module doc for the rules."""

    def __init__(self, cash: float, emit, stats, rejecter=None, clock=time.time_ns) -> None:
        self.lock = threading.Lock()
        self._emit, self._stats, self._clock = emit, stats, clock
        self._rejecter = rejecter or (lambda: False)   # fault hook: reject this order?
        self._cash = float(cash)
        self._last_equity = float(cash)
        self._created = clock()
        self._orders: dict[str, Order] = {}           # by id, in creation order
        self._by_cid: dict[str, str] = {}
        self._books: dict[str, dict[str, Side]] = {}   # symbol -> {"buy", "sell"}: resting orders
        self._seq = itertools.count()                  # time priority among equal prices
        self._quotes: dict[str, _Quote] = {}
        self._pos: dict[str, _Position] = {}
        self._assets: set[str] = set()

    # -- assets and quotes --------------------------------------------------------------------
    def add_asset(self, symbol: str) -> None:
        with self.lock:
            self._assets.add(symbol)

    def on_quote(self, symbol: str, bid: float, ask: float, bid_size: float, ask_size: float) -> None:
        """A new top of book for ``symbol``: refresh its sizes, then match its open orders."""
        with self.lock:
            self._assets.add(symbol)
            q = self._quotes.get(symbol)
            if q is None:
                q = self._quotes[symbol] = _Quote()
            q.bid, q.ask, q.avail_b, q.avail_a = bid, ask, float(bid_size), float(ask_size)
            now = self._clock()
            book = self._books.get(symbol)
            if book is None:
                return
            for side, px in (("buy", ask), ("sell", bid)):
                for oid in book[side].marketable(px):
                    self._match(self._orders[oid], now)
                    if (q.avail_a if side == "buy" else q.avail_b) <= EPS:
                        break                          # this quote's size is used up

    # -- orders -------------------------------------------------------------------------------
    def submit(self, body: dict, check_buying_power: bool = True) -> dict:
        """Validate and accept an order (POST /v2/orders); returns its entity at acceptance.

        Raises BrokerError: 422 naming the bad field, 422 for a duplicate client_order_id,
        403 when buying power (or, for crypto, the balance) does not cover it.
        """
        o = parse_order(body)
        with self.lock:
            if o.cid in self._by_cid:
                self._stats.inc("rest_duplicate_client_order_id")
                raise BrokerError(422, 40010001, "client_order_id must be unique")
            if o.symbol not in self._assets:
                raise unprocessable(f'symbol: asset "{o.symbol}" not found')
            if check_buying_power:
                self._check_funds(o)
            now = self._clock()
            o.created = o.updated = o.submitted = now
            self._orders[o.id] = o
            self._by_cid[o.cid] = o.id
            if self._rejecter():
                o.status, o.failed_at = "rejected", now
                self._event("rejected", o, now)
                return o.entity() | {"status": "accepted", "failed_at": None}
            self._rest(o)
            accepted = o.entity()
            self._event("new", o, now)
            self._match(o, now)
            return accepted

    def get(self, order_id: str) -> dict:
        with self.lock:
            return self._find(order_id).entity()

    def get_by_client_id(self, cid: str) -> dict:
        with self.lock:
            oid = self._by_cid.get(cid)
            if oid is None:
                raise BrokerError(404, 40410000, "order not found")
            return self._orders[oid].entity()

    def list_orders(self, status: str = "open", limit: int = 50, symbols=None, side=None,
                    after_ns=None, until_ns=None, direction: str = "desc") -> list[dict]:
        """GET /v2/orders: filter by status group, symbols, side and submission time."""
        with self.lock:
            out = []
            for o in self._orders.values():
                if status == "open" and o.status not in OPEN_STATUSES:
                    continue
                if status == "closed" and o.status in OPEN_STATUSES:
                    continue
                if symbols and o.symbol not in symbols:
                    continue
                if side and o.side != side:
                    continue
                if (after_ns is not None and o.submitted <= after_ns) or \
                        (until_ns is not None and o.submitted > until_ns):
                    continue
                out.append(o)
            if direction == "desc":
                out.reverse()
            return [o.entity() for o in out[:limit]]

    def all_orders(self) -> list[dict]:
        with self.lock:
            return [o.entity() for o in self._orders.values()]

    def cancel(self, order_id: str) -> None:
        """DELETE /v2/orders/{id}: 404 unknown, 422 not cancelable, else canceled now."""
        with self.lock:
            o = self._find(order_id)
            if o.status not in OPEN_STATUSES:
                raise BrokerError(422, 42210000, f"order is not cancelable (status {o.status})")
            self._cancel(o, self._clock())

    def cancel_all(self) -> list[dict]:
        """DELETE /v2/orders: every open order canceled; the 207 body."""
        with self.lock:
            now, out = self._clock(), []
            for o in [o for o in self._orders.values() if o.status in OPEN_STATUSES]:
                self._cancel(o, now)
                out.append({"id": o.id, "status": 200, "body": o.entity()})
            return out

    def replace(self, order_id: str, body: dict) -> dict:
        """PATCH /v2/orders/{id}: a new order ``replaces`` the old, which becomes ``replaced``."""
        if not isinstance(body, dict):
            raise unprocessable("request body must be a JSON object")
        unknown = sorted(set(body) - REPLACE_KEYS)
        if unknown:
            raise unprocessable(f"{unknown[0]}: unknown field for replace (known: {', '.join(sorted(REPLACE_KEYS))})")
        with self.lock:
            old = self._find(order_id)
            if old.status not in OPEN_STATUSES:
                raise BrokerError(422, 42210000, f"order is not replaceable (status {old.status})")
            new = Order()
            for k in Order.__slots__:
                setattr(new, k, getattr(old, k))
            new.id, new.filled, new.filled_value, new.status = str(uuid.uuid4()), 0.0, 0.0, "new"
            new.filled_at = new.canceled_at = new.expired_at = new.failed_at = new.replaced_at = None
            new.replaced_by, new.replaces = None, old.id
            changed = False
            if body.get("qty") is not None:
                new.qty = positive(body["qty"], "qty")
                new.notional = None
                changed = True
            elif old.notional is None:
                new.qty = round(old.qty - old.filled, 9)
            else:
                new.notional = old.notional - old.filled_value   # what is left to spend
            if body.get("limit_price") is not None:
                if old.type != "limit":
                    raise unprocessable("limit_price: only a limit order has one")
                new.limit = positive(body["limit_price"], "limit_price")
                changed = changed or new.limit != old.limit
            if body.get("time_in_force") is not None:
                new.tif = choice(body["time_in_force"], "time_in_force",
                                       CRYPTO_TIFS if old.crypto else TIFS)
                changed = changed or new.tif != old.tif
            for k in ("stop_price", "trail"):
                if body.get(k) is not None:
                    raise unprocessable(f"{k}: the fake's {old.type} orders have none")
            cid = body.get("client_order_id")
            if cid is not None:
                new.cid = client_order_id(cid)
                if new.cid in self._by_cid:
                    self._stats.inc("rest_duplicate_client_order_id")
                    raise BrokerError(422, 40010001, "client_order_id must be unique")
            else:
                new.cid = str(uuid.uuid4())
            if not changed:
                raise BrokerError(403, 40310000, "order parameters are not changed")
            now = self._clock()
            old.status, old.replaced_by, old.replaced_at, old.updated = "replaced", new.id, now, now
            self._unrest(old)
            new.created = new.updated = new.submitted = now
            self._orders[new.id] = new
            self._by_cid[new.cid] = new.id
            self._rest(new)
            self._event("replaced", old, now)
            accepted = new.entity()
            self._event("new", new, now)
            self._match(new, now)
            return accepted

    def expire_day(self) -> int:
        """Expire every open ``day`` order (the session ended); returns how many."""
        with self.lock:
            now, n = self._clock(), 0
            for o in [o for o in self._orders.values() if o.status in OPEN_STATUSES and o.tif == "day"]:
                o.status, o.expired_at, o.updated = "expired", now, now
                self._unrest(o)
                self._event("expired", o, now)
                n += 1
            return n

    # -- positions and account ----------------------------------------------------------------
    def seed_position(self, symbol: str, qty: float, avg_entry_price: float) -> None:
        """Set a position as if held from before (cash is left as it is)."""
        with self.lock:
            self._assets.add(symbol)
            if abs(qty) < EPS:
                self._pos.pop(symbol, None)
            else:
                self._pos[symbol] = _Position(float(qty), float(avg_entry_price))

    def positions(self) -> dict[str, float]:
        """Signed quantity per symbol (as ordered: ``BTC/USD``), flat symbols omitted."""
        with self.lock:
            return {s: p.qty for s, p in self._pos.items()}

    def position_entities(self) -> list[dict]:
        with self.lock:
            return [self._position_entity(s, p) for s, p in self._pos.items()]

    def position_entity(self, symbol: str) -> dict:
        """GET /v2/positions/{symbol}; ``symbol`` as Alpaca reports it (``BTCUSD``) or by asset id."""
        with self.lock:
            return self._position_entity(*self._find_position(symbol))

    def close_position(self, symbol: str, qty: float | None = None) -> dict:
        """DELETE /v2/positions/{symbol}: a market order for the position (or ``qty`` of it)."""
        with self.lock:
            sym, p = self._find_position(symbol)
            size = abs(p.qty) if qty is None else qty
            if size <= EPS or size > abs(p.qty) + EPS:
                raise unprocessable(f"qty: must be > 0 and <= the position's {dec(abs(p.qty))}")
        body = {"symbol": sym, "qty": size, "side": "sell" if p.qty > 0 else "buy", "type": "market",
                "time_in_force": "gtc" if is_crypto_symbol(sym) else "day"}
        return self.submit(body, check_buying_power=False)

    def account(self) -> dict:
        """GET /v2/account: the TradeAccount entity (money fields as strings)."""
        with self.lock:
            long_mv = sum(p.qty * self._mark(s, p) for s, p in self._pos.items() if p.qty > 0)
            short_mv = sum(p.qty * self._mark(s, p) for s, p in self._pos.items() if p.qty < 0)
            equity = self._cash + long_mv + short_mv
            margin = long_mv - short_mv
            bp = self._buying_power()
            now = self._clock()
            return {
                "id": str(uuid.uuid5(NAMESPACE, "account")), "account_number": "PA3FAKE00001", "status": "ACTIVE",
                "crypto_status": "ACTIVE", "currency": "USD", "buying_power": dec(bp), "regt_buying_power": dec(bp),
                "daytrading_buying_power": "0", "non_marginable_buying_power": dec(bp),
                "options_buying_power": dec(bp), "cash": dec(self._cash), "accrued_fees": "0",
                "pending_transfer_in": "0", "pending_transfer_out": "0", "portfolio_value": dec(equity),
                "pattern_day_trader": False, "trading_blocked": False, "transfers_blocked": False,
                "account_blocked": False, "created_at": rfc3339_us(self._created),
                "trade_suspended_by_user": False, "multiplier": "1", "shorting_enabled": True,
                "equity": dec(equity), "last_equity": dec(self._last_equity),
                "long_market_value": dec(long_mv), "short_market_value": dec(short_mv),
                "position_market_value": dec(long_mv - short_mv),
                "initial_margin": dec(margin), "maintenance_margin": dec(margin),
                "last_maintenance_margin": "0", "sma": "0", "daytrade_count": 0,
                "balance_asof": time.strftime("%Y-%m-%d", time.gmtime(now // 1_000_000_000)),
                "options_approved_level": 0, "options_trading_level": 0,
            }

    # -- internals (lock held) ----------------------------------------------------------------
    def _find(self, order_id: str) -> Order:
        o = self._orders.get(order_id)
        if o is None:
            raise BrokerError(404, 40410000, "order not found")
        return o

    def _find_position(self, symbol: str) -> tuple[str, _Position]:
        for s, p in self._pos.items():
            if position_symbol(s) == symbol or asset_id(s) == symbol:
                return s, p
        raise BrokerError(404, 40410000, "position does not exist")

    def _mark(self, symbol: str, p: _Position) -> float:
        q = self._quotes.get(symbol)
        return (q.bid + q.ask) / 2.0 if q is not None else p.avg

    def _position_entity(self, symbol: str, p: _Position) -> dict:
        mark = self._mark(symbol, p)
        mv, cost = p.qty * mark, p.qty * p.avg
        pl = mv - cost
        plpc = pl / abs(cost) if abs(cost) > EPS else 0.0
        held, _ = self._side_load(symbol, "sell" if p.qty > 0 else "buy")
        crypto = is_crypto_symbol(symbol)
        return {
            "asset_id": asset_id(symbol), "symbol": position_symbol(symbol),
            "exchange": "CRYPTO" if crypto else "NASDAQ", "asset_class": "crypto" if crypto else "us_equity",
            "asset_marginable": not crypto, "avg_entry_price": dec(p.avg), "qty": dec(p.qty),
            "qty_available": dec(max(0.0, abs(p.qty) - held) * (1 if p.qty > 0 else -1)),
            "side": "long" if p.qty > 0 else "short", "market_value": dec(mv), "cost_basis": dec(cost),
            "unrealized_pl": dec(pl), "unrealized_plpc": dec(plpc), "unrealized_intraday_pl": dec(pl),
            "unrealized_intraday_plpc": dec(plpc), "current_price": dec(mark), "lastday_price": dec(p.avg),
            "change_today": dec((mark - p.avg) / p.avg if p.avg else 0.0),
        }

    def _est_price(self, o: Order) -> float:
        if o.limit is not None:
            return o.limit
        q = self._quotes.get(o.symbol)
        if q is not None:
            return q.ask if o.side == "buy" else q.bid
        p = self._pos.get(o.symbol)
        return p.avg if p is not None else 0.0

    def _rest(self, o: Order) -> None:
        """``o`` joins its symbol's resting book (it may still execute at once)."""
        o.seq = next(self._seq)
        book = self._books.get(o.symbol)
        if book is None:
            book = self._books[o.symbol] = {"buy": Side(True), "sell": Side(False)}
        book[o.side].add(o, round(o.qty - o.filled, 9) if o.limit is not None else 0.0)

    def _unrest(self, o: Order) -> None:
        self._books[o.symbol][o.side].remove(o, round(o.qty - o.filled, 9) if o.limit is not None else 0.0)

    def _side_load(self, sym: str, side: str, extra: Order | None = None) -> tuple[float, float]:
        """Quantity and value (limit, else quote, price) of the open orders of one side."""
        book = self._books.get(sym)
        qty = value = 0.0
        orders = []
        if book is not None:
            s = book[side]
            qty, value = s.limit_qty, s.limit_value
            orders = [self._orders[i] for i in s.markets]
        if extra is not None and extra.symbol == sym and extra.side == side:
            orders.append(extra)
        for o in orders:
            px = self._est_price(o)
            n = o.remaining(px or 1.0)
            qty += n
            value += n * px
        return max(qty, 0.0), max(value, 0.0)

    def _reserved(self, extra: Order | None = None) -> tuple[float, dict[str, float]]:
        """Exposure open orders (plus ``extra``) would add, in dollars; and sell qty beyond holdings."""
        syms = set(self._books)
        if extra is not None:
            syms.add(extra.symbol)
        total, oversold = 0.0, {}
        for sym in syms:
            pos = self._pos.get(sym)
            q = pos.qty if pos is not None else 0.0
            for side, cover in (("buy", max(0.0, -q)), ("sell", max(0.0, q))):
                qty, value = self._side_load(sym, side, extra)
                if qty <= EPS:
                    continue
                adds = max(0.0, qty - cover)
                total += adds * value / qty
                if side == "sell" and adds > EPS:
                    oversold[sym] = adds
        return total, oversold

    def _buying_power(self, reserved: float | None = None) -> float:
        exposure = sum(abs(p.qty) * self._mark(s, p) for s, p in self._pos.items())
        equity = self._cash + sum(p.qty * self._mark(s, p) for s, p in self._pos.items())
        if reserved is None:
            reserved = self._reserved()[0]
        return max(0.0, equity - exposure - reserved)

    def _check_funds(self, o: Order) -> None:
        before, _ = self._reserved()
        after, oversold = self._reserved(o)
        if o.crypto and o.symbol in oversold:
            pos = self._pos.get(o.symbol)
            have = pos.qty if pos is not None else 0.0
            raise BrokerError(403, 40310000, f"insufficient balance for {o.symbol} "
                                             f"(requested: {dec(o.remaining(self._est_price(o) or 1.0))}, "
                                             f"available: {dec(max(0.0, have))})")
        need = after - before
        if need > EPS and need > self._buying_power(before) + EPS:
            raise BrokerError(403, 40310000, "insufficient buying power")

    def _event(self, event: str, o: Order, now: int, **fill) -> None:
        self._emit({"event": event, "timestamp": rfc3339_ns(now), "order": o.entity(), **fill})

    def _cancel(self, o: Order, now: int) -> None:
        self._unrest(o)
        o.status, o.canceled_at, o.updated = "canceled", now, now
        self._event("canceled", o, now)

    def _match(self, o: Order, now: int) -> None:
        """Execute ``o`` against its symbol's quote as far as the rules allow."""
        q = self._quotes.get(o.symbol)
        if q is not None:
            buy = o.side == "buy"
            px, avail = (q.ask, q.avail_a) if buy else (q.bid, q.avail_b)
            marketable = o.limit is None or (px <= o.limit + EPS if buy else px >= o.limit - EPS)
            want = o.remaining(px)
            if o.tif == "fok" and (not marketable or avail + EPS < want):
                self._cancel(o, now)
                return
            n = round(min(want, avail), 9) if marketable else 0.0
            if n > EPS:
                if buy:
                    q.avail_a -= n
                else:
                    q.avail_b -= n
                self._fill(o, n, px, now)
        if o.status in OPEN_STATUSES and o.tif in ("ioc", "fok"):
            self._cancel(o, now)

    def _fill(self, o: Order, n: float, px: float, now: int) -> None:
        signed = n if o.side == "buy" else -n
        p = self._pos.get(o.symbol)
        q0, avg = (p.qty, p.avg) if p is not None else (0.0, 0.0)
        q1 = round(q0 + signed, 9)
        if q0 == 0 or (q0 > 0) == (signed > 0):
            avg = (abs(q0) * avg + n * px) / abs(q1)
        elif abs(signed) > abs(q0) + EPS:
            avg = px                                  # flipped through flat: a new position
        if abs(q1) < EPS:
            self._pos.pop(o.symbol, None)
            q1 = 0.0
        elif p is None:
            self._pos[o.symbol] = _Position(q1, avg)
        else:
            p.qty, p.avg = q1, avg
        self._cash -= signed * px
        self._books[o.symbol][o.side].filled(o, n)
        o.filled = round(o.filled + n, 9)
        o.filled_value += n * px
        o.updated = now
        done = o.remaining(px) <= EPS
        if done:
            o.status, o.filled_at = "filled", now
            self._unrest(o)
        else:
            o.status = "partially_filled"
        self._stats.inc("fills")
        self._event("fill" if done else "partial_fill", o, now, execution_id=str(uuid.uuid4()),
                    price=dec(px), qty=dec(n), position_qty=dec(q1))
