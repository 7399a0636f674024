"""Orders of the fake broker: the Order entity, request parsing and validation, error type.

Validation follows Alpaca's rules where the fake implements the feature and refuses the
rest by name (422, the field first in the message): market and limit orders; ``qty`` or
``notional`` (market only); fractional stock quantities only with ``time_in_force=day``;
crypto only ``gtc``/``ioc``; ``extended_hours`` only for DAY limit orders;
``client_order_id`` at most 128 characters (generated as a UUID when absent).
"""
from __future__ import annotations

import functools
import math
import uuid

from .market import is_crypto_symbol
from .wire import dec, parse_number, rfc3339_us

EPS = 1e-9
OPEN_STATUSES = frozenset({"new", "partially_filled", "accepted", "pending_new", "accepted_for_bidding",
                           "held", "pending_cancel", "pending_replace", "calculated", "stopped", "suspended"})
CLOSED_STATUSES = frozenset({"filled", "canceled", "expired", "replaced", "rejected", "done_for_day"})
SIDES = ("buy", "sell")
TYPES = ("market", "limit")
UNSUPPORTED_TYPES = ("stop", "stop_limit", "trailing_stop")
TIFS = ("day", "gtc", "ioc", "fok")
CRYPTO_TIFS = ("gtc", "ioc")
MAX_CLIENT_ORDER_ID = 128
ORDER_KEYS = frozenset({"symbol", "qty", "notional", "side", "type", "time_in_force", "limit_price", "stop_price",
                        "trail_price", "trail_percent", "extended_hours", "client_order_id", "order_class",
                        "take_profit", "stop_loss", "position_intent", "legs"})
REPLACE_KEYS = frozenset({"qty", "time_in_force", "limit_price", "stop_price", "trail", "client_order_id"})
NAMESPACE = uuid.UUID("5f6e2c0a-0d7b-4c39-9a55-3f0c6b7d9e21")   # namespace of the fake's stable ids


@functools.lru_cache(maxsize=4096)
def asset_id(symbol: str) -> str:
    """A stable UUID per symbol (Alpaca's asset ids are UUIDs)."""
    return str(uuid.uuid5(NAMESPACE, "asset:" + symbol))


def position_symbol(symbol: str) -> str:
    """The symbol Alpaca reports a position under: crypto loses its slash (``BTCUSD``)."""
    return symbol.replace("/", "")


class BrokerError(Exception):
    """A refusal with its HTTP status and Alpaca's ``{"code", "message"}`` body."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def unprocessable(message: str) -> BrokerError:
    return BrokerError(422, 40010001, message)


class Order:
    __slots__ = ("id", "cid", "symbol", "crypto", "side", "type", "tif", "qty", "notional", "limit",
                 "filled", "filled_value", "status", "created", "updated", "submitted", "filled_at",
                 "canceled_at", "expired_at", "failed_at", "replaced_at", "replaced_by", "replaces",
                 "extended_hours", "seq")

    def remaining(self, price: float) -> float:
        """Quantity still to execute (a notional order converts what is left at ``price``)."""
        if self.notional is not None:
            left = self.notional - self.filled_value
            return round(left / price, 9) if left > EPS and price > 0 else 0.0
        return round(self.qty - self.filled, 9)

    def entity(self) -> dict:
        """The Order entity exactly as Alpaca's REST and trade stream carry it."""
        def ts(ns):
            return rfc3339_us(ns) if ns else None
        avg = self.filled_value / self.filled if self.filled > EPS else None
        return {
            "id": self.id, "client_order_id": self.cid,
            "created_at": ts(self.created), "updated_at": ts(self.updated), "submitted_at": ts(self.submitted),
            "filled_at": ts(self.filled_at), "expired_at": ts(self.expired_at), "canceled_at": ts(self.canceled_at),
            "failed_at": ts(self.failed_at), "replaced_at": ts(self.replaced_at),
            "replaced_by": self.replaced_by, "replaces": self.replaces,
            "asset_id": asset_id(self.symbol), "symbol": self.symbol,
            "asset_class": "crypto" if self.crypto else "us_equity",
            "notional": dec(self.notional) if self.notional is not None else None,
            "qty": dec(self.qty) if self.qty is not None else None,
            "filled_qty": dec(self.filled), "filled_avg_price": dec(avg) if avg is not None else None,
            "order_class": "", "order_type": self.type, "type": self.type, "side": self.side,
            "position_intent": None, "time_in_force": self.tif,
            "limit_price": dec(self.limit) if self.limit is not None else None, "stop_price": None,
            "status": self.status, "extended_hours": self.extended_hours, "legs": None,
            "trail_percent": None, "trail_price": None, "hwm": None, "expires_at": None, "ratio_qty": None,
        }


def positive(value, field: str) -> float:
    try:
        v = parse_number(value, field)
    except ValueError as e:
        raise unprocessable(str(e)) from None
    if v <= 0:
        raise unprocessable(f"{field}: must be > 0, got {value!r}")
    return v

def choice(value, field: str, allowed) -> str:
    if value not in allowed:
        raise unprocessable(f"{field}: must be one of {', '.join(allowed)}, got {value!r}")
    return value

def client_order_id(value) -> str:
    if not isinstance(value, str) or not value:
        raise unprocessable("client_order_id: must be a non-empty string")
    if len(value) > MAX_CLIENT_ORDER_ID:
        raise unprocessable(f"client_order_id: must be at most {MAX_CLIENT_ORDER_ID} characters")
    return value

def parse_order(body) -> Order:
    if not isinstance(body, dict):
        raise unprocessable("request body must be a JSON object")
    unknown = sorted(set(body) - ORDER_KEYS)
    if unknown:
        raise unprocessable(f"{unknown[0]}: unknown field")
    o = Order()
    sym = body.get("symbol")
    if not isinstance(sym, str) or not sym:
        raise unprocessable("symbol: required, a non-empty string")
    o.symbol, o.crypto = sym, is_crypto_symbol(sym)
    o.side = choice(body.get("side"), "side", SIDES)
    typ = body.get("type")
    if typ in UNSUPPORTED_TYPES:
        raise unprocessable(f"type: {typ!r} orders are not supported by the fake (market, limit)")
    o.type = choice(typ, "type", TYPES)
    o.tif = choice(body.get("time_in_force"), "time_in_force", CRYPTO_TIFS if o.crypto else TIFS)
    oc = body.get("order_class")
    if oc not in (None, "", "simple"):
        raise unprocessable(f"order_class: {oc!r} is not supported by the fake (simple)")
    for k in ("stop_price", "trail_price", "trail_percent", "take_profit", "stop_loss", "legs"):
        if body.get(k) is not None:
            raise unprocessable(f"{k}: not supported by the fake for {o.type} orders")
    qty, notional = body.get("qty"), body.get("notional")
    if (qty is None) == (notional is None):
        raise unprocessable("qty: exactly one of qty and notional is required")
    o.qty = positive(qty, "qty") if qty is not None else None
    o.notional = positive(notional, "notional") if notional is not None else None
    if o.notional is not None and o.type != "market":
        raise unprocessable("notional: only market orders may be given a notional")
    fractional = o.notional is not None or (o.qty is not None and o.qty != math.floor(o.qty))
    if fractional and not o.crypto and o.tif != "day":
        raise unprocessable("time_in_force: fractional orders must be DAY orders")
    lp = body.get("limit_price")
    if o.type == "limit":
        if lp is None:
            raise unprocessable("limit_price: required for limit orders")
        o.limit = positive(lp, "limit_price")
    elif lp is not None:
        raise unprocessable("limit_price: must not be given for market orders")
    else:
        o.limit = None
    eh = body.get("extended_hours", False)
    if not isinstance(eh, bool):
        raise unprocessable("extended_hours: must be a boolean")
    if eh and (o.type != "limit" or o.tif != "day"):
        raise unprocessable("extended_hours: only DAY limit orders may trade in extended hours")
    o.extended_hours = eh
    cid = body.get("client_order_id")
    o.cid = client_order_id(cid) if cid is not None else str(uuid.uuid4())
    o.id = str(uuid.uuid4())
    o.filled, o.filled_value, o.status = 0.0, 0.0, "new"
    o.filled_at = o.canceled_at = o.expired_at = o.failed_at = o.replaced_at = None
    o.replaced_by = o.replaces = None
    return o
