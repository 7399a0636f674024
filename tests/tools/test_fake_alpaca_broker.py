"""The fake's broker on its own (no sockets): matching, positions, account, validation."""
from __future__ import annotations

import uuid

import pytest

from tools.fake_alpaca.broker import Broker, BrokerError
from tools.fake_alpaca.stats import Stats


class Book:
    """A broker with a recording event sink."""

    def __init__(self, cash: float = 100_000.0, reject: int = 0):
        self.events: list[dict] = []
        self.rejects = reject

        def rejecter():
            if self.rejects > 0:
                self.rejects -= 1
                return True
            return False
        self.b = Broker(cash, self.events.append, Stats(), rejecter=rejecter)
        for s in ("AAPL", "MSFT", "BTC/USD"):
            self.b.add_asset(s)

    def kinds(self, oid=None):
        return [e["event"] for e in self.events if oid is None or e["order"]["id"] == oid]


def order(sym="AAPL", side="buy", qty=10, typ="market", tif="day", **kw):
    return {"symbol": sym, "side": side, "qty": qty, "type": typ, "time_in_force": tif, **kw}


def test_market_order_fills_at_the_ask_up_to_size_then_on_next_quotes():
    t = Book()
    t.b.on_quote("AAPL", 100.0, 100.02, 500, 100)
    o = t.b.submit(order(qty=250))
    assert o["status"] == "new" and o["filled_qty"] == "0"          # the snapshot at acceptance
    assert t.kinds() == ["new", "partial_fill"]
    pf = t.events[1]
    assert pf["price"] == "100.02" and pf["qty"] == "100" and pf["position_qty"] == "100"
    assert uuid.UUID(pf["execution_id"])
    t.b.on_quote("AAPL", 100.0, 100.04, 500, 100)
    t.b.on_quote("AAPL", 100.0, 100.06, 500, 100)
    assert t.kinds() == ["new", "partial_fill", "partial_fill", "fill"]
    got = t.b.get(o["id"])
    assert got["status"] == "filled" and got["filled_qty"] == "250"
    assert float(got["filled_avg_price"]) == pytest.approx((100.02 * 100 + 100.04 * 100 + 100.06 * 50) / 250)
    assert t.b.positions() == {"AAPL": 250.0}
    assert t.events[-1]["position_qty"] == "250"


def test_limit_rests_until_crossed_and_fills_at_the_quote_price():
    t = Book()
    t.b.on_quote("AAPL", 99.0, 99.1, 100, 100)
    o = t.b.submit(order(typ="limit", limit_price="98.50"))           # price as a string
    assert t.kinds() == ["new"]
    t.b.on_quote("AAPL", 98.6, 98.7, 100, 100)                         # not yet
    assert t.kinds() == ["new"]
    t.b.on_quote("AAPL", 98.3, 98.4, 100, 100)                         # crosses: fills at 98.4, better
    assert t.kinds() == ["new", "fill"] and t.events[-1]["price"] == "98.4"
    assert t.b.get(o["id"])["limit_price"] == "98.5"


def test_time_priority_shares_one_quote_size():
    t = Book()
    a = t.b.submit(order(qty=80, typ="limit", limit_price=101))
    b = t.b.submit(order(qty=80, typ="limit", limit_price=101))
    assert t.kinds() == ["new", "new"]                                  # no quote yet: both rest
    t.b.on_quote("AAPL", 100.0, 100.5, 100, 100)
    assert t.kinds(a["id"]) == ["new", "fill"]
    assert t.kinds(b["id"]) == ["new", "partial_fill"] and t.events[-1]["qty"] == "20"
    t.b.on_quote("AAPL", 100.0, 100.5, 100, 100)
    assert t.kinds(b["id"]) == ["new", "partial_fill", "fill"]


def test_price_priority_before_time_and_market_orders_first():
    t = Book()
    early = t.b.submit(order(qty=80, typ="limit", limit_price=100.5))
    better = t.b.submit(order(qty=80, typ="limit", limit_price=101))
    far = t.b.submit(order(qty=80, typ="limit", limit_price=99))        # never reached below
    t.b.on_quote("AAPL", 100.0, 100.4, 100, 100)
    assert t.kinds(better["id"]) == ["new", "fill"]
    assert t.kinds(early["id"]) == ["new", "partial_fill"] and t.events[-1]["qty"] == "20"
    assert t.kinds(far["id"]) == ["new"]
    mkt = t.b.submit(order(qty=50))                                     # no size left on this quote
    assert t.kinds(mkt["id"]) == ["new"]
    t.b.on_quote("AAPL", 100.0, 100.4, 100, 60)                        # the market order goes first
    assert t.kinds(mkt["id"]) == ["new", "fill"]
    assert t.kinds(early["id"]) == ["new", "partial_fill", "partial_fill"] and t.events[-1]["qty"] == "10"
    assert float(t.b.account()["buying_power"]) == pytest.approx(
        100_000 - 80 * 100.4 - 30 * 100.4 - 50 * 100.4 - 50 * 100.5 - 80 * 99, rel=1e-3)


def test_ioc_and_fok():
    t = Book()
    t.b.on_quote("AAPL", 100.0, 100.1, 100, 100)
    ioc = t.b.submit(order(qty=150, tif="ioc"))
    assert t.kinds(ioc["id"]) == ["new", "partial_fill", "canceled"]
    t.b.on_quote("AAPL", 100.0, 100.1, 100, 100)
    fok = t.b.submit(order(qty=150, tif="fok"))
    assert t.kinds(fok["id"]) == ["new", "canceled"] and t.b.get(fok["id"])["filled_qty"] == "0"
    fok2 = t.b.submit(order(qty=100, tif="fok"))
    assert t.kinds(fok2["id"]) == ["new", "fill"]
    assert t.b.positions() == {"AAPL": 200.0}


def test_cancel_replace_and_their_errors():
    t = Book()
    t.b.on_quote("AAPL", 100.0, 100.1, 100, 100)
    o = t.b.submit(order(typ="limit", limit_price=90, client_order_id="c1"))
    new = t.b.replace(o["id"], {"limit_price": 91, "client_order_id": "c2"})
    old = t.b.get(o["id"])
    assert old["status"] == "replaced" and old["replaced_by"] == new["id"] and new["replaces"] == o["id"]
    assert new["limit_price"] == "91" and new["qty"] == "10" and new["client_order_id"] == "c2"
    assert t.kinds()[-2:] == ["replaced", "new"] and t.events[-2]["order"]["id"] == o["id"]
    with pytest.raises(BrokerError) as ei:
        t.b.replace(new["id"], {"limit_price": 92, "client_order_id": "c1"})
    assert ei.value.status == 422 and "client_order_id" in ei.value.message
    with pytest.raises(BrokerError) as ei:
        t.b.replace(new["id"], {"limit_price": 91})
    assert ei.value.status == 403 and ei.value.message == "order parameters are not changed"
    with pytest.raises(BrokerError) as ei:
        t.b.replace(o["id"], {"limit_price": 95})
    assert ei.value.status == 422                                       # the old one is closed
    t.b.cancel(new["id"])
    assert t.kinds()[-1] == "canceled" and t.b.get(new["id"])["status"] == "canceled"
    with pytest.raises(BrokerError) as ei:
        t.b.cancel(new["id"])
    assert (ei.value.status, ei.value.code) == (422, 42210000)
    with pytest.raises(BrokerError) as ei:
        t.b.cancel(str(uuid.uuid4()))
    assert (ei.value.status, ei.value.code) == (404, 40410000)


def test_positions_average_price_flip_and_cash():
    t = Book(cash=10_000.0)
    t.b.on_quote("AAPL", 99.9, 100.0, 1000, 1000)
    t.b.submit(order(qty=10))
    t.b.on_quote("AAPL", 109.9, 110.0, 1000, 1000)
    t.b.submit(order(qty=10))
    [p] = t.b.position_entities()
    assert p["avg_entry_price"] == "105" and p["qty"] == "20" and p["side"] == "long"
    t.b.on_quote("AAPL", 120.0, 120.1, 1000, 1000)
    t.b.submit(order(side="sell", qty=30))                              # through flat: short 10 @ 120
    [p] = t.b.position_entities()
    assert p["qty"] == "-10" and p["avg_entry_price"] == "120" and p["side"] == "short"
    acct = t.b.account()
    cash = 10_000 - 1000 - 1100 + 30 * 120.0
    assert float(acct["cash"]) == pytest.approx(cash)
    mark = (120.0 + 120.1) / 2
    assert float(acct["equity"]) == pytest.approx(cash - 10 * mark)
    assert float(acct["short_market_value"]) == pytest.approx(-10 * mark)


def test_buying_power_reserves_open_orders_and_refuses_403():
    t = Book(cash=10_000.0)
    t.b.on_quote("AAPL", 99.9, 100.0, 1000, 1000)
    assert float(t.b.account()["buying_power"]) == 10_000
    t.b.submit(order(qty=50, typ="limit", limit_price=90))               # rests: reserves 4500
    assert float(t.b.account()["buying_power"]) == pytest.approx(5_500)
    with pytest.raises(BrokerError) as ei:
        t.b.submit(order(qty=60, typ="limit", limit_price=95))
    assert (ei.value.status, ei.value.message) == (403, "insufficient buying power")
    t.b.on_quote("BTC/USD", 100.0, 100.1, 5, 5)
    with pytest.raises(BrokerError) as ei:                              # crypto cannot be shorted
        t.b.submit(order(sym="BTC/USD", side="sell", qty=0.5, tif="gtc"))
    assert ei.value.status == 403 and "insufficient balance for BTC/USD" in ei.value.message


def test_crypto_fractional_and_position_symbol():
    t = Book()
    t.b.on_quote("BTC/USD", 100.0, 100.1, 0.3, 0.3)
    t.b.submit(order(sym="BTC/USD", qty=0.5, tif="gtc"))
    t.b.on_quote("BTC/USD", 100.0, 100.2, 0.3, 0.3)
    assert t.b.positions() == {"BTC/USD": 0.5}
    [p] = t.b.position_entities()
    assert p["symbol"] == "BTCUSD" and p["exchange"] == "CRYPTO" and p["asset_class"] == "crypto"
    assert t.b.position_entity("BTCUSD")["qty"] == "0.5"
    with pytest.raises(BrokerError) as ei:
        t.b.position_entity("BTC/USD")                                 # as on Alpaca: 404
    assert ei.value.status == 404


def test_expire_day_and_reject_fault():
    t = Book(reject=1)
    r = t.b.submit(order(typ="limit", limit_price=50))
    assert r["status"] == "accepted" and t.kinds() == ["rejected"]
    assert t.b.get(r["id"])["status"] == "rejected"
    d = t.b.submit(order(typ="limit", limit_price=50))
    g = t.b.submit(order(typ="limit", limit_price=50, tif="gtc"))
    assert t.b.expire_day() == 1
    assert t.b.get(d["id"])["status"] == "expired" and t.b.get(g["id"])["status"] == "new"


@pytest.mark.parametrize("body, field", [
    (order(qty="abc"), "qty"),
    (order(qty=0), "qty"),
    (order(side="short"), "side"),
    (order(tif="week"), "time_in_force"),
    (order(typ="limit"), "limit_price"),
    (order(limit_price=10), "limit_price"),
    (order(typ="stop"), "type"),
    (order(qty=1.5, tif="gtc"), "time_in_force"),
    (order(sym="BTC/USD", tif="day"), "time_in_force"),
    (order(sym="ZZZZ"), "symbol"),
    (order(client_order_id="x" * 129), "client_order_id"),
    (order(order_class="bracket"), "order_class"),
    ({**order(), "notional": 100}, "qty"),
    ({**order(), "colour": "red"}, "colour"),
    (["not", "an", "object"], "object"),
])
def test_bad_orders_get_422_naming_the_field(body, field):
    t = Book()
    with pytest.raises(BrokerError) as ei:
        t.b.submit(body)
    assert ei.value.status == 422 and field in ei.value.message
    assert t.events == [] and t.b.all_orders() == []                     # nothing half-created


def test_duplicate_client_order_id():
    t = Book()
    t.b.submit(order(typ="limit", limit_price=1, client_order_id="dup"))
    with pytest.raises(BrokerError) as ei:
        t.b.submit(order(typ="limit", limit_price=1, client_order_id="dup"))
    assert (ei.value.status, ei.value.message) == (422, "client_order_id must be unique")
    assert len(t.b.all_orders()) == 1
