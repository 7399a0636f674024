"""The fake's trading REST through ``requests`` directly: status codes, bodies, headers, faults.

Not through alpaca-py on purpose: its 429 handling sleeps 3 s x 3 (FACTS §3).
"""
from __future__ import annotations

import time

import pytest
import requests

from tools.fake_alpaca import FakeAlpaca

K, S = "k-rest", "s-rest"
HDRS = {"APCA-API-KEY-ID": K, "APCA-API-SECRET-KEY": S}
TIMEOUT = 5


@pytest.fixture
def fake():
    with FakeAlpaca(key_id=K, secret_key=S, symbols=("AAPL", "MSFT"), crypto_symbols=("BTC/USD",),
                    quote_rate=0, seed=5) as f:
        f.publish_quote("AAPL", 100.0, 100.02, 500, 500)
        yield f


@pytest.fixture
def http(fake):
    with requests.Session() as s:
        s.headers.update(HDRS)
        base = fake.rest_url + "/v2"

        def call(method, path, **kw):
            return s.request(method, base + path, timeout=TIMEOUT, **kw)
        yield call


def _rate_headers(r) -> tuple[int, int, int]:
    return (int(r.headers["X-Ratelimit-Limit"]), int(r.headers["X-Ratelimit-Remaining"]),
            int(r.headers["X-Ratelimit-Reset"]))


def test_401_with_body_and_rate_headers(fake):
    r = requests.get(fake.rest_url + "/v2/account", headers={**HDRS, "APCA-API-SECRET-KEY": "nope"}, timeout=TIMEOUT)
    assert r.status_code == 401 and r.json() == {"code": 40110000, "message": "request is not authorized"}
    assert _rate_headers(r)[0] == 200
    r = requests.get(fake.rest_url + "/v2/account", timeout=TIMEOUT)          # no headers at all
    assert r.status_code == 401


def test_order_round_trip_strings_and_uuids(http, fake):
    r = http("POST", "/orders", json={"symbol": "AAPL", "qty": "3", "side": "buy", "type": "market",
                                      "time_in_force": "day", "client_order_id": "rt-1"})
    assert r.status_code == 200
    o = r.json()
    assert o["qty"] == "3" and o["status"] == "new" and o["client_order_id"] == "rt-1" and len(o["id"]) == 36
    assert o["created_at"].endswith("Z") and o["asset_class"] == "us_equity"
    got = http("GET", f"/orders/{o['id']}").json()
    assert got["status"] == "filled" and got["filled_avg_price"] == "100.02"
    assert http("GET", "/orders:by_client_order_id", params={"client_order_id": "rt-1"}).json()["id"] == o["id"]
    assert http("GET", "/orders", params={"status": "closed"}).json()[0]["id"] == o["id"]
    assert http("GET", "/orders").json() == []                                # default: open
    [p] = http("GET", "/positions").json()
    assert p["qty"] == "3" and p["avg_entry_price"] == "100.02" and isinstance(p["market_value"], str)
    acct = http("GET", "/account").json()
    assert acct["status"] == "ACTIVE" and isinstance(acct["cash"], str)
    assert float(acct["cash"]) == pytest.approx(100_000 - 300.06)


def test_cancel_codes_and_cancel_all_207(http, fake):
    o = http("POST", "/orders", json={"symbol": "AAPL", "qty": 1, "side": "buy", "type": "limit",
                                      "limit_price": 90, "time_in_force": "gtc"}).json()
    r = http("DELETE", f"/orders/{o['id']}")
    assert r.status_code == 204 and r.content == b""
    r = http("DELETE", f"/orders/{o['id']}")
    assert r.status_code == 422 and r.json()["code"] == 42210000
    r = http("DELETE", "/orders/00000000-0000-4000-8000-000000000000")
    assert r.status_code == 404 and r.json()["code"] == 40410000
    ids = {http("POST", "/orders", json={"symbol": "MSFT", "qty": 1, "side": "buy", "type": "limit",
                                         "limit_price": 50 + i, "time_in_force": "day"}).json()["id"]
           for i in range(2)}
    r = http("DELETE", "/orders")
    assert r.status_code == 207
    assert {x["id"] for x in r.json()} == ids and all(x["status"] == 200 for x in r.json())
    assert http("GET", "/orders").json() == []


def test_422_names_the_field_and_duplicate_client_order_id(http, fake):
    r = http("POST", "/orders", json={"symbol": "AAPL", "qty": "ten", "side": "buy", "type": "market",
                                      "time_in_force": "day"})
    assert r.status_code == 422 and "qty" in r.json()["message"]
    r = http("GET", "/orders", params={"status": "pending"})
    assert r.status_code == 422 and "status" in r.json()["message"]
    r = http("GET", "/orders", params={"limit": "900"})
    assert r.status_code == 422 and "limit" in r.json()["message"]
    r = http("POST", "/orders", data=b"{broken", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == 40010000
    body = {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "limit", "limit_price": 1, "time_in_force": "day",
            "client_order_id": "same"}
    assert http("POST", "/orders", json=body).status_code == 200
    r = http("POST", "/orders", json=body)
    assert r.status_code == 422 and r.json()["message"] == "client_order_id must be unique"
    assert fake.stats()["rest_duplicate_client_order_id"] == 1
    r = http("POST", "/orders", json={**body, "client_order_id": "big", "qty": 10_000, "limit_price": 100})
    assert r.status_code == 403 and r.json() == {"code": 40310000, "message": "insufficient buying power"}
    assert http("GET", "/nothing/here").status_code == 404
    assert http("PUT", "/account").status_code == 405


def test_injected_429_then_500_then_normal(http, fake):
    fake.faults.http_429(2, reset_s=5)
    now = time.time()
    for _ in range(2):
        r = http("GET", "/account")
        assert r.status_code == 429 and r.json()["code"] == 42910000
        limit, remaining, reset = _rate_headers(r)
        assert (limit, remaining) == (200, 0) and now + 4 <= reset <= now + 7
    fake.faults.http_500(1)
    r = http("GET", "/account")
    assert r.status_code == 500 and r.json()["code"] == 50010000
    r = http("GET", "/account")
    assert r.status_code == 200
    st = fake.stats()
    assert st["rest_429"] == 2 and st["rest_429_injected"] == 2 and st["rest_500"] == 1


def test_sliding_window_rate_limit():
    with FakeAlpaca(key_id=K, secret_key=S, quote_rate=0, rest_rate_limit=3) as fake, requests.Session() as s:
        s.headers.update(HDRS)
        remaining = []
        for _ in range(3):
            r = s.get(fake.rest_url + "/v2/account", timeout=TIMEOUT)
            assert r.status_code == 200
            remaining.append(_rate_headers(r)[1])
        assert remaining == [2, 1, 0]
        r = s.get(fake.rest_url + "/v2/account", timeout=TIMEOUT)
        assert r.status_code == 429 and _rate_headers(r)[1] == 0
        assert _rate_headers(r)[2] >= int(time.time()) + 58       # the oldest call leaves in ~60 s
        assert fake.stats()["rest_429"] == 1


def test_drop_after_accept_creates_the_order_but_sends_nothing(http, fake):
    fake.faults.drop_after_accept(1)
    body = {"symbol": "AAPL", "qty": 2, "side": "buy", "type": "limit", "limit_price": 99,
            "time_in_force": "day", "client_order_id": "idem-1"}
    with pytest.raises(requests.ConnectionError):
        http("POST", "/orders", json=body)
    assert [o["client_order_id"] for o in fake.orders()] == ["idem-1"]
    r = http("POST", "/orders", json=body)                   # a blind retry is refused...
    assert r.status_code == 422 and "unique" in r.json()["message"]
    r = http("GET", "/orders:by_client_order_id", params={"client_order_id": "idem-1"})
    assert r.status_code == 200 and r.json()["status"] == "new"   # ...a lookup finds it
    assert fake.stats()["rest_dropped_after_accept"] == 1


def test_partial_fills_through_rest_and_crypto_positions(http, fake):
    fake.publish_quote("MSFT", 300.0, 300.1, 100, 100)
    o = http("POST", "/orders", json={"symbol": "MSFT", "qty": 250, "side": "buy", "type": "market",
                                      "time_in_force": "day"}).json()
    assert http("GET", f"/orders/{o['id']}").json()["status"] == "partially_filled"
    fake.publish_quote("MSFT", 300.0, 300.2, 100, 200)
    got = http("GET", f"/orders/{o['id']}").json()
    assert got["status"] == "filled" and got["filled_qty"] == "250"
    assert float(got["filled_avg_price"]) == pytest.approx((300.1 * 100 + 300.2 * 150) / 250)

    fake.publish_quote("BTC/USD", 100.0, 100.1, 2.0, 2.0)
    r = http("POST", "/orders", json={"symbol": "BTC/USD", "qty": "0.25", "side": "buy", "type": "market",
                                      "time_in_force": "gtc"})
    assert r.status_code == 200
    assert http("GET", "/positions/BTCUSD").json()["qty"] == "0.25"
    assert http("GET", "/positions/BTC/USD").status_code == 404          # as on Alpaca
    r = http("DELETE", "/positions/BTCUSD", params={"percentage": "100"})
    assert r.status_code == 200 and r.json()["side"] == "sell" and r.json()["qty"] == "0.25"
    assert "BTC/USD" not in fake.positions() and fake.positions()["MSFT"] == 250


def test_clock_and_keep_alive_connection_reuse(http, fake):
    for _ in range(5):
        r = http("GET", "/clock")
        assert r.status_code == 200 and r.json()["is_open"] is True
