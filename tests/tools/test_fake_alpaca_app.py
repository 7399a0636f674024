"""FakeAlpaca's lifecycle and argument checking: clean start/stop, clear errors, no leftovers."""
from __future__ import annotations

import socket
import threading

import pytest
import requests

from tools.fake_alpaca import FakeAlpaca


def _fake_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("fake-alpaca")]


def test_start_close_joins_every_thread_and_close_is_idempotent():
    before = _fake_threads()
    fake = FakeAlpaca(quote_rate=500.0)
    fake.start()
    assert fake.md_url("iex").endswith("/v2/iex") and fake.md_url("crypto").endswith("/v1beta3/crypto/us")
    with requests.Session() as s:                     # leave a keep-alive connection open
        r = s.get(fake.rest_url + "/v2/clock", timeout=5,
                  headers={"APCA-API-KEY-ID": "fake-key", "APCA-API-SECRET-KEY": "fake-secret"})
        assert r.status_code == 200
        assert len(_fake_threads()) >= len(before) + 3
        fake.close()
        fake.close()
    assert _fake_threads() == before
    with pytest.raises(RuntimeError, match="already closed"):
        fake.start()


@pytest.mark.parametrize("which", ["md_port", "stream_port", "rest_port"])
def test_port_in_use_is_a_clear_oserror_and_nothing_is_left(which):
    before = _fake_threads()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            FakeAlpaca(quote_rate=0, **{which: port}).start()
    assert _fake_threads() == before


@pytest.mark.parametrize("kw, text", [
    ({"symbols": "AAPL"}, "symbols"),
    ({"symbols": ("BTC/USD",)}, "crypto_symbols"),
    ({"crypto_symbols": ("BTCUSD",)}, "BASE/QUOTE"),
    ({"quote_rate": -1}, "quote_rate"),
    ({"trade_ratio": 2}, "trade_ratio"),
    ({"plan_feeds": ("iex", "nasdaq")}, "plan_feeds"),
    ({"md_port": 70000}, "md_port"),
    ({"start_price": 0}, "start_price"),
    ({"key_id": ""}, "key_id"),
    ({"symbol_limit": 0}, "symbol_limit"),
])
def test_constructor_names_the_bad_argument(kw, text):
    with pytest.raises(ValueError, match=text):
        FakeAlpaca(**kw)


def test_publish_and_seed_arguments_are_checked():
    with FakeAlpaca(quote_rate=0) as fake:
        with pytest.raises(ValueError, match="crossed quote for AAPL"):
            fake.publish_quote("AAPL", 10.1, 10.0, 1, 1)
        with pytest.raises(ValueError, match="bid"):
            fake.publish_quote("AAPL", float("nan"), 10.0, 1, 1)
        with pytest.raises(ValueError, match="size"):
            fake.publish_trade("AAPL", 10.0, 0)
        with pytest.raises(ValueError, match="md_url: unknown feed"):
            fake.md_url("otc")
        with pytest.raises(ValueError, match="seed_open_order: side"):
            fake.seed_open_order("AAPL", "hold", 1, 10.0)
        assert fake.orders() == [] and fake.positions() == {}


def test_seeded_state_is_visible_through_rest_and_matches_later():
    with FakeAlpaca(quote_rate=0) as fake, requests.Session() as s:
        s.headers.update({"APCA-API-KEY-ID": "fake-key", "APCA-API-SECRET-KEY": "fake-secret"})
        fake.seed_position("MSFT", -20, 310.0)
        o = fake.seed_open_order("AAPL", "buy", 5, 99.0, client_order_id="seeded-1")
        assert o["status"] == "new" and o["client_order_id"] == "seeded-1"
        [p] = s.get(fake.rest_url + "/v2/positions", timeout=5).json()
        assert (p["symbol"], p["qty"], p["side"], p["avg_entry_price"]) == ("MSFT", "-20", "short", "310")
        assert [x["client_order_id"] for x in s.get(fake.rest_url + "/v2/orders", timeout=5).json()] == ["seeded-1"]
        fake.publish_quote("AAPL", 98.9, 99.0, 100, 100)
        assert fake.positions() == {"MSFT": -20.0, "AAPL": 5.0}
        assert fake.expire_day_orders() == 0
