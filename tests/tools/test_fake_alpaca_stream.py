"""The fake's trading stream on the wire: authenticate/listen flow, every event kind, faults."""
from __future__ import annotations

import asyncio

import msgpack
import orjson
import pytest
import requests
import websockets
from alpaca.trading.models import TradeUpdate

from tools.fake_alpaca import FakeAlpaca
from tools.fake_alpaca.probe import Probe

K, S = "k-ts", "s-ts"


def run(coro, timeout_s: float = 15.0):
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


@pytest.fixture
def fake():
    with FakeAlpaca(key_id=K, secret_key=S, symbols=("AAPL",), crypto_symbols=(), quote_rate=0) as f:
        yield f


async def _listening(fake, use_mp: bool = False) -> Probe:
    p = Probe(fake.stream_url, use_msgpack=use_mp)
    await p.__aenter__()
    await p.send({"action": "authenticate", "data": {"key_id": K, "secret_key": S}})
    assert await p.recv() == {"stream": "authorization", "data": {"status": "authorized", "action": "authenticate"}}
    await p.send({"action": "listen", "data": {"streams": ["trade_updates"]}})
    assert await p.recv() == {"stream": "listening", "data": {"streams": ["trade_updates"]}}
    return p


def test_auth_failure_listen_before_auth_and_listen_replaces(fake):
    async def go():
        async with Probe(fake.stream_url) as p:
            await p.send({"action": "listen", "data": {"streams": ["trade_updates"]}})
            assert await p.recv() == {"stream": "authorization", "data": {"status": "unauthorized",
                                                                          "action": "listen"}}
            await p.send({"action": "hello"})
            assert (await p.recv())["stream"] == "error"
        async with Probe(fake.stream_url) as p:
            await p.send({"action": "authenticate", "data": {"key_id": K, "secret_key": "bad"}})
            m = await p.recv()
            assert m["stream"] == "authorization" and m["data"]["status"] == "unauthorized"
            with pytest.raises(websockets.ConnectionClosed):
                await p.recv(3.0)
        p = await _listening(fake)
        await p.send({"action": "listen", "data": {"streams": []}})
        assert await p.recv() == {"stream": "listening", "data": {"streams": []}}
        fake.seed_open_order("AAPL", "buy", 1, 10.0)
        with pytest.raises(asyncio.TimeoutError):                   # not listening: nothing comes
            await p.recv(0.3)
        await p.close()
    run(go())
    assert fake.stats()["stream_auth_failures"] == 1


def _rest(fake, method, path, **kw):
    r = requests.request(method, fake.rest_url + "/v2" + path, timeout=5,
                         headers={"APCA-API-KEY-ID": K, "APCA-API-SECRET-KEY": S}, **kw)
    assert r.status_code in (200, 204), r.text
    return r


EXPECTED = ["new", "partial_fill", "fill", "new", "replaced", "new", "new", "canceled", "rejected", "expired"]


@pytest.mark.parametrize("use_mp", [False, True])
def test_every_event_kind_parses_as_alpaca_py_trade_update(fake, use_mp):
    async def go():
        p = await _listening(fake, use_mp)
        fake.publish_quote("AAPL", 100.0, 100.1, 100, 100)
        a = fake.seed_open_order("AAPL", "buy", 150, 100.5)            # new, partial_fill 100
        fake.publish_quote("AAPL", 100.0, 100.2, 100, 100)              # fill 50
        b = fake.seed_open_order("AAPL", "buy", 1, 90.0)                # new
        await asyncio.to_thread(_rest, fake, "PATCH", f"/orders/{b['id']}", json={"limit_price": 91})
        #                                                                 replaced (b), new (b')
        c = fake.seed_open_order("AAPL", "buy", 1, 80.0)                # new
        await asyncio.to_thread(_rest, fake, "DELETE", f"/orders/{c['id']}")   # canceled
        fake.faults.reject_orders(1)
        fake.seed_open_order("AAPL", "buy", 1, 70.0)                    # rejected (no new)
        assert fake.expire_day_orders() == 1                            # expired (b')
        events = []
        for _ in EXPECTED:
            raw, binary = await p.recv_raw()
            assert binary                                               # paper sends binary frames
            msg = msgpack.unpackb(raw) if use_mp else orjson.loads(raw)
            assert msg["stream"] == "trade_updates"
            events.append(msg["data"])
        with pytest.raises(asyncio.TimeoutError):
            await p.recv(0.2)                                           # and nothing more
        await p.close()
        return a, events

    a, events = run(go())
    assert [e["event"] for e in events] == EXPECTED
    for e in events:
        tu = TradeUpdate(**e)                                           # alpaca-py's model accepts each
        assert tu.order.symbol == "AAPL" and tu.timestamp is not None
    assert events[4]["order"]["status"] == "replaced" and events[5]["order"]["replaces"] == events[4]["order"]["id"]
    fill = events[2]
    assert fill["order"]["id"] == a["id"] and fill["order"]["status"] == "filled"
    assert (fill["qty"], fill["price"], fill["position_qty"]) == ("50", "100.2", "150")
    assert isinstance(fill["execution_id"], str) and events[1]["execution_id"] != fill["execution_id"]


def test_updates_go_to_every_listener_and_drop_trade_stream(fake):
    async def go():
        p1, p2 = await _listening(fake), await _listening(fake)
        fake.seed_open_order("AAPL", "buy", 1, 10.0)
        assert (await p1.recv())["data"]["event"] == "new"
        assert (await p2.recv())["data"]["event"] == "new"
        await asyncio.to_thread(fake.faults.drop_trade_stream)
        for p in (p1, p2):
            with pytest.raises(websockets.ConnectionClosedError):
                await p.recv(3.0)
    run(go())
    st = fake.stats()
    assert st["trade_updates_sent_new"] == 2 and st["stream_connections_dropped"] == 2
