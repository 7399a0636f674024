"""The fake's market-data stream, tested on the wire with an independent client (websockets).

Every error code, incremental subscriptions, fragment reassembly, JSON/msgpack encodings,
batching, crypto order books. Each test runs its coroutine under a hard timeout.
"""
from __future__ import annotations

import asyncio
import re

import msgpack
import orjson
import pytest
import websockets

from tools.fake_alpaca import FakeAlpaca
from tools.fake_alpaca.md_server import MdSession
from tools.fake_alpaca.probe import Probe

K, S = "k-md", "s-md"
RFC3339_NS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


def run(coro, timeout_s: float = 15.0):
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


@pytest.fixture
def fake():
    with FakeAlpaca(key_id=K, secret_key=S, symbols=("AAPL", "MSFT", "AMD"), crypto_symbols=("BTC/USD",),
                    quote_rate=0, seed=7, auth_timeout_s=10.0) as f:
        yield f


def _wait_until(pred, timeout_s: float = 3.0):
    async def go():
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while not pred():
            if loop.time() > end:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.01)
    return go()


async def _closed(p: Probe, timeout_s: float = 3.0) -> bool:
    """True once the server closed the connection (frames before the close are skipped)."""
    try:
        while True:
            await p.recv_raw(timeout_s)
    except websockets.ConnectionClosed:
        return True


def test_connect_auth_and_codes_401_402_403(fake):
    async def go():
        async with Probe(fake.md_url("iex")) as p:
            assert await p.expect("success") == {"T": "success", "msg": "connected"}
            await p.send({"action": "subscribe", "trades": ["AAPL"]})
            assert await p.expect("error") == {"T": "error", "code": 401, "msg": "not authenticated"}
            await p.send({"action": "auth", "key": K, "secret": S})
            assert (await p.expect("success"))["msg"] == "authenticated"
            await p.send({"action": "auth", "key": K, "secret": S})
            assert (await p.expect("error"))["code"] == 403
        async with Probe(fake.md_url("iex")) as p:
            await p.expect("success")
            await p.send({"action": "auth", "key": K, "secret": "wrong"})
            assert await p.expect("error") == {"T": "error", "code": 402, "msg": "auth failed"}
            assert await _closed(p)
    run(go())
    st = fake.stats()
    assert st["md_error_401"] == 1 and st["md_error_403"] == 1 and st["md_error_402"] == 1
    assert st["md_auth_failures"] == 1


def test_400_on_bad_json_unknown_action_and_bad_types(fake):
    async def go():
        async with Probe(fake.md_url("iex")) as p:
            await p.login(K, S)
            await p.ws.send("{not json")
            assert (await p.expect("error"))["code"] == 400
            await p.send({"action": "dance"})
            assert (await p.expect("error"))["code"] == 400
            await p.send(["action", "auth"])
            assert (await p.expect("error"))["code"] == 400
            await p.send({"action": "subscribe", "trades": "AAPL"})          # not a list
            assert (await p.expect("error"))["code"] == 400
            await p.send({"action": "subscribe", "widgets": ["AAPL"]})       # unknown channel
            assert (await p.expect("error"))["code"] == 400
            await p.send({"action": "subscribe", "orderbooks": ["AAPL"]})    # crypto-only channel
            assert (await p.expect("error"))["code"] == 410
            # the session is still usable after all that
            await p.send({"action": "subscribe", "quotes": ["AAPL"]})
            assert (await p.expect("subscription"))["quotes"] == ["AAPL"]
    run(go())
    assert fake.stats()["md_error_400"] == 5


def test_404_auth_timeout_closes():
    with FakeAlpaca(key_id=K, secret_key=S, quote_rate=0, auth_timeout_s=0.3) as fake:
        async def go():
            async with Probe(fake.md_url("test")) as p:
                await p.expect("success")
                assert await p.expect("error", 3.0) == {"T": "error", "code": 404, "msg": "auth timeout"}
                assert await _closed(p)
        run(go())


def test_405_symbol_limit_leaves_subscription_unchanged():
    with FakeAlpaca(key_id=K, secret_key=S, quote_rate=0, symbol_limit=2) as fake:
        async def go():
            async with Probe(fake.md_url("iex")) as p:
                await p.login(K, S)
                await p.send({"action": "subscribe", "trades": ["AAPL"], "quotes": ["AAPL", "MSFT"]})
                assert (await p.expect("subscription"))["quotes"] == ["AAPL", "MSFT"]
                await p.send({"action": "subscribe", "quotes": ["AMD"]})
                assert (await p.expect("error"))["code"] == 405
                await p.send({"action": "subscribe", "bars": ["AMD", "IBM", "ORCL"]})   # bars unlimited
                sub = await p.expect("subscription")
                assert sub["quotes"] == ["AAPL", "MSFT"] and sub["bars"] == ["AMD", "IBM", "ORCL"]
        run(go())


def test_406_second_connection_and_409_plan_and_http_404(fake):
    async def go():
        async with Probe(fake.md_url("iex")) as a:
            await a.login(K, S)
            async with Probe(fake.md_url("iex")) as b:
                await b.expect("success")
                await b.send({"action": "auth", "key": K, "secret": S})
                assert await b.expect("error") == {"T": "error", "code": 406, "msg": "connection limit exceeded"}
                assert await _closed(b)
            async with Probe(fake.md_url("test")) as c:      # another endpoint: its own slot
                await c.login(K, S)
        async with Probe(fake.md_url("iex")) as d:           # the slot is free again
            await d.login(K, S)
        with pytest.raises(websockets.InvalidStatus) as ei:
            async with Probe(fake.md_url("iex").replace("/v2/iex", "/v2/nasdaq")):
                pass
        assert ei.value.response.status_code == 404
    run(go())
    with FakeAlpaca(key_id=K, secret_key=S, quote_rate=0, plan_feeds=("iex",)) as f2:
        async def sip():
            async with Probe(f2.md_url("sip")) as p:
                await p.expect("success")
                await p.send({"action": "auth", "key": K, "secret": S})
                assert await p.expect("error") == {"T": "error", "code": 409, "msg": "insufficient subscription"}
                assert await _closed(p)
        run(sip())


def test_500_when_the_server_fails(fake, monkeypatch):
    def boom(self, msg, add):
        raise RuntimeError("bug")
    monkeypatch.setattr(MdSession, "_subscribe", boom)

    async def go():
        async with Probe(fake.md_url("iex")) as p:
            await p.login(K, S)
            await p.send({"action": "subscribe", "trades": ["AAPL"]})
            assert await p.expect("error") == {"T": "error", "code": 500, "msg": "internal error"}
    run(go())


def test_incremental_subscription_full_set_and_auto_channels(fake):
    async def go():
        async with Probe(fake.md_url("sip")) as p:
            await p.login(K, S)
            await p.send({"action": "subscribe", "trades": ["AAPL"], "quotes": ["AMD", "MSFT"], "bars": ["*"],
                          "dailyBars": ["AAPL"], "statuses": ["*"]})
            sub = await p.expect("subscription")
            assert sub == {"T": "subscription", "trades": ["AAPL"], "quotes": ["AMD", "MSFT"], "bars": ["*"],
                           "updatedBars": [], "dailyBars": ["AAPL"], "statuses": ["*"], "lulds": [],
                           "corrections": ["AAPL"], "cancelErrors": ["AAPL"]}
            await p.send({"action": "subscribe", "trades": ["MSFT"]})
            sub = await p.expect("subscription")
            assert sub["trades"] == ["AAPL", "MSFT"] and sub["quotes"] == ["AMD", "MSFT"]
            assert sub["corrections"] == sub["cancelErrors"] == ["AAPL", "MSFT"]
            await p.send({"action": "unsubscribe", "bars": ["*"], "trades": ["AAPL"]})
            sub = await p.expect("subscription")
            assert sub["bars"] == [] and sub["trades"] == ["MSFT"] and sub["corrections"] == ["MSFT"]
            assert sub["quotes"] == ["AMD", "MSFT"]
    run(go())


def test_fragmented_subscribe_is_reassembled(fake):
    async def go():
        for use_mp in (False, True):
            async with Probe(fake.md_url("iex"), use_msgpack=use_mp) as p:
                await p.login(K, S)
                await p.send_fragments({"action": "subscribe", "quotes": ["AAPL", "MSFT", "AMD"]}, 3)
                assert (await p.expect("subscription"))["quotes"] == ["AAPL", "MSFT", "AMD"]
    run(go())
    assert fake.stats()["md_fragmented_messages_in"] == 2


def test_json_mode_text_frames_and_nanosecond_t(fake):
    async def go():
        async with Probe(fake.md_url("iex")) as p:
            await p.login(K, S)
            await p.send({"action": "subscribe", "trades": ["AAPL"], "quotes": ["AAPL"]})
            await p.expect("subscription")
            fake.publish_quote("AAPL", 100.0, 100.02, 300, 200)
            fake.publish_trade("AAPL", 100.01, 50)
            raw, binary = await p.recv_raw()
            assert not binary and isinstance(raw, str)
            q = orjson.loads(raw)[0]
            assert q["T"] == "q" and q["bp"] == 100.0 and q["ap"] == 100.02 and q["bs"] == 300 and q["as"] == 200
            assert RFC3339_NS.match(q["t"]), q["t"]
            [t] = await p.data(1)
            assert t["T"] == "t" and t["p"] == 100.01 and t["s"] == 50 and t["i"] == 1
            assert {"x", "c", "z"} <= set(t) and RFC3339_NS.match(t["t"])
    run(go())


def test_msgpack_mode_binary_frames_and_timestamp_ext(fake):
    async def go():
        async with Probe(fake.md_url("iex"), use_msgpack=True) as p:
            await p.login(K, S)
            await p.send({"action": "subscribe", "trades": ["MSFT"]})
            await p.expect("subscription")
            fake.publish_trade("MSFT", 250.5, 10)
            raw, binary = await p.recv_raw()
            assert binary
            [t] = msgpack.unpackb(raw)
            assert isinstance(t["t"], msgpack.Timestamp) and t["t"].to_unix_nano() > 0
    run(go())


def test_batching_and_filtering(fake):
    async def go():
        async with Probe(fake.md_url("iex")) as p:
            await p.login(K, S)
            await p.send({"action": "subscribe", "quotes": ["AAPL", "MSFT"], "trades": ["AAPL"]})
            await p.expect("subscription")
            with fake.batch():
                fake.publish_quote("AAPL", 100.0, 100.01, 100, 100)
                fake.publish_quote("AMD", 50.0, 50.01, 100, 100)        # not subscribed
                fake.publish_trade("MSFT", 300.0, 5)                    # trades of MSFT: not subscribed
                fake.publish_quote("MSFT", 300.0, 300.05, 100, 100)
                fake.publish_trade("AAPL", 100.01, 7)
            frame = await p.recv()
            assert [(m["T"], m["S"]) for m in frame] == [("q", "AAPL"), ("q", "MSFT"), ("t", "AAPL")]
            fake.publish_trade("AAPL", 100.02, 1)
            frame = await p.recv()
            assert len(frame) == 1 and frame[0]["i"] == 2               # AAPL's own id sequence
    run(go())
    st = fake.stats()
    assert st["md_frames_sent"] == 2 and st["md_messages_sent"] == 4


def test_bars_carry_n_and_vw_and_star_subscription(fake):
    async def go():
        async with Probe(fake.md_url("iex"), use_msgpack=True) as p:
            await p.login(K, S)
            await p.send({"action": "subscribe", "bars": ["*"], "statuses": ["AAPL"]})
            await p.expect("subscription")
            fake.publish_bar("MSFT", 10.0, 11.0, 9.5, 10.5, 1200, n=12, vw=10.2)
            fake.publish_status("AAPL")
            [b] = await p.data(1)
            assert b["T"] == "b" and b["n"] == 12 and b["vw"] == 10.2 and b["v"] == 1200
            [s] = await p.data(1)
            assert s["T"] == "s" and {"sc", "sm", "rc", "rm", "z"} <= set(s)
    run(go())


def test_synthetic_stream_paced_ids_increase_and_sometimes_r():
    with FakeAlpaca(key_id=K, secret_key=S, symbols=("AAPL",), crypto_symbols=(), quote_rate=400.0,
                    trade_ratio=0.5, seed=3) as fake:
        async def go():
            async with Probe(fake.md_url("iex")) as p:
                await p.login(K, S)
                await p.send({"action": "subscribe", "trades": ["AAPL"], "quotes": ["AAPL"]})
                await p.expect("subscription")
                return await p.data(150, 10.0)
        msgs = run(go())
    trades = [m for m in msgs if m["T"] == "t"]
    quotes = [m for m in msgs if m["T"] == "q"]
    assert trades and quotes
    ids = [t["i"] for t in trades]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert any("r" in t for t in trades) and not all("r" in t for t in trades)
    assert all(q["bp"] < q["ap"] for q in quotes)


def test_crypto_trades_quotes_and_orderbook_snapshot_then_deltas(fake):
    fake.publish_quote("BTC/USD", 100.0, 100.05, 0.5, 0.25)           # book exists before subscribing

    async def go():
        async with Probe(fake.md_url("crypto"), use_msgpack=True) as p:
            await p.login(K, S)
            await p.send({"action": "subscribe", "orderbooks": ["BTC/USD"], "trades": ["BTC/USD"],
                          "quotes": ["BTC/USD"]})
            sub = await p.expect("subscription")
            assert "corrections" not in sub and sub["orderbooks"] == ["BTC/USD"]
            [snap] = await p.data(1)
            assert snap["T"] == "o" and snap["r"] is True and len(snap["b"]) == len(snap["a"]) == 10
            assert snap["b"][0] == {"p": 100.0, "s": 0.5} and snap["a"][0] == {"p": 100.05, "s": 0.25}
            fake.publish_quote("BTC/USD", 100.01, 100.05, 1.5, 0.25)
            q, delta = await p.data(2)
            assert q["T"] == "q" and q["bs"] == 1.5 and "bx" not in q
            assert delta["T"] == "o" and not delta.get("r")
            assert {"p": 100.01, "s": 1.5} in delta["b"] and {"p": 99.91, "s": 0.0} in delta["b"]
            assert delta["a"] == []                                      # ask side unchanged
            fake.publish_trade("BTC/USD", 100.05, 0.0123)
            [t] = await p.data(1)
            assert t["s"] == 0.0123 and t["tks"] in ("B", "S") and "x" not in t
            await p.send({"action": "subscribe", "statuses": ["BTC/USD"]})   # stocks-only channel
            assert (await p.expect("error"))["code"] == 410
    run(go())


def test_header_auth_on_upgrade(fake):
    async def go():
        async with Probe(fake.md_url("iex"), headers={"APCA-API-KEY-ID": K, "APCA-API-SECRET-KEY": S}) as p:
            await p.expect("success")
            assert (await p.expect("success"))["msg"] == "authenticated"
            await p.send({"action": "subscribe", "quotes": ["AAPL"]})
            await p.expect("subscription")
    run(go())
