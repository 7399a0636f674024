"""Market-data fault injection of the fake: drop, stall, malformed frames, replay on reconnect."""
from __future__ import annotations

import asyncio

import msgpack
import orjson
import pytest
import websockets

from tools.fake_alpaca import FakeAlpaca
from tools.fake_alpaca.probe import Probe

K, S = "k-f", "s-f"


def run(coro, timeout_s: float = 15.0):
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


@pytest.fixture
def fake():
    with FakeAlpaca(key_id=K, secret_key=S, symbols=("AAPL", "MSFT"), crypto_symbols=("BTC/USD",),
                    quote_rate=0, seed=11) as f:
        yield f


async def _subscribed(url: str, use_mp: bool = False, **subs) -> Probe:
    p = Probe(url, use_msgpack=use_mp)
    await p.__aenter__()
    await p.login(K, S)
    await p.send({"action": "subscribe", **subs})
    await p.expect("subscription")
    return p


async def _silent(p: Probe, seconds: float) -> bool:
    try:
        await p.recv_raw(seconds)
    except asyncio.TimeoutError:
        return True
    return False


def test_drop_md_connections_aborts_and_frees_the_slots(fake):
    async def go():
        a = await _subscribed(fake.md_url("iex"), quotes=["AAPL"])
        b = await _subscribed(fake.md_url("crypto"), quotes=["BTC/USD"])
        await asyncio.to_thread(fake.faults.drop_md_connections)
        for p in (a, b):
            with pytest.raises(websockets.ConnectionClosedError) as ei:
                await p.recv_raw(3.0)
            assert ei.value.rcvd is None                 # abrupt: no CLOSE frame from the server
        c = await _subscribed(fake.md_url("iex"), quotes=["AAPL"])   # no 406: the slot was freed
        fake.publish_quote("AAPL", 10.0, 10.01, 1, 1)
        assert (await c.data(1))[0]["bp"] == 10.0
        await c.close()
    run(go())
    assert fake.stats()["md_connections_dropped"] == 2


def test_stall_md_mutes_data_but_not_control(fake):
    async def go():
        p = await _subscribed(fake.md_url("iex"), quotes=["AAPL"])
        fake.faults.stall_md(0.6)
        fake.publish_quote("AAPL", 10.0, 10.01, 1, 1)
        await p.send({"action": "subscribe", "trades": ["AAPL"]})
        assert (await p.expect("subscription"))["trades"] == ["AAPL"]      # control still flows
        assert await _silent(p, 0.3)
        await asyncio.sleep(0.4)                                           # the stall is over
        fake.publish_quote("AAPL", 11.0, 11.01, 1, 1)
        assert [m["bp"] for m in await p.data(1)] == [11.0]                # the stalled quote is gone
        await p.close()
    run(go())
    assert fake.stats()["md_dropped_stall"] == 1


@pytest.mark.parametrize("use_mp", [False, True])
def test_malformed_md_inserts_each_kind_before_intact_data(fake, use_mp):
    async def go():
        p = await _subscribed(fake.md_url("iex"), use_mp=use_mp, quotes=["AAPL"])
        fake.faults.malformed_md(4)
        bad = []
        for i in range(5):
            fake.publish_quote("AAPL", 10.0 + i, 10.5 + i, 1, 1)
            if i < 4:
                raw, _ = await p.recv_raw()
                bad.append(raw)
            [q] = await p.recv()                            # the data follows intact
            assert q["bp"] == 10.0 + i
        await p.close()
        return bad

    bad = run(go())
    loads = msgpack.unpackb if use_mp else orjson.loads
    with pytest.raises(Exception):
        loads(bad[0])                                       # not a document at all
    assert isinstance(loads(bad[1]), dict)                  # not an array
    assert "T" not in loads(bad[2])[0]                      # missing T
    wrong = loads(bad[3])[0]
    assert wrong["T"] == "q" and isinstance(wrong["bp"], str)   # wrong types
    assert fake.stats()["md_malformed_sent"] == 4


def test_replay_on_reconnect_resends_last_n_of_the_symbol_set(fake):
    fake.faults.replay_on_reconnect(3)

    async def go():
        a = await _subscribed(fake.md_url("iex"), quotes=["AAPL"])
        assert await _silent(a, 0.2)                        # first connection: nothing replayed
        for i in range(5):
            fake.publish_quote("AAPL", 20.0 + i, 20.5 + i, 1, 1)
            fake.publish_quote("MSFT", 30.0 + i, 30.5 + i, 1, 1)
        assert [m["bp"] for m in await a.data(5)] == [20.0, 21.0, 22.0, 23.0, 24.0]
        await asyncio.to_thread(fake.faults.drop_md_connections)
        b = await _subscribed(fake.md_url("iex"), quotes=["AAPL"])
        replay = await b.recv()
        assert [m["bp"] for m in replay] == [22.0, 23.0, 24.0]
        fake.publish_quote("AAPL", 25.0, 25.5, 1, 1)
        assert [m["bp"] for m in await b.data(1)] == [25.0]
        await b.close()
    run(go())
    assert fake.stats()["md_replayed"] == 3


def test_fault_switches_validate_their_arguments(fake):
    with pytest.raises(ValueError, match="faults.malformed_md"):
        fake.faults.malformed_md(-1)
    with pytest.raises(ValueError, match="faults.stall_md"):
        fake.faults.stall_md(float("nan"))
    with pytest.raises(ValueError, match="faults.http_429"):
        fake.faults.http_429(1, reset_s=-1)


def test_slow_client_gets_no_data_then_407_and_a_drop(fake, monkeypatch):
    """White-box: a full socket buffer is simulated with picows' pause_writing callback."""
    import tools.fake_alpaca.md_server as md_server
    monkeypatch.setattr(md_server, "SLOW_CLIENT_S", 0.2)

    async def go():
        p = await _subscribed(fake.md_url("iex"), quotes=["AAPL"])
        await asyncio.to_thread(fake._run_in_loop_and_wait,
                                lambda: [s.pause_writing() for s in list(fake._md.sessions)])
        fake.publish_quote("AAPL", 10.0, 10.01, 1, 1)                  # dropped: the client is slow
        assert await _silent(p, 0.3)
        fake.publish_quote("AAPL", 10.0, 10.01, 1, 1)                  # slow for > 0.2 s: 407, dropped
        assert await p.expect("error") == {"T": "error", "code": 407, "msg": "slow client"}
        with pytest.raises(websockets.ConnectionClosed):
            await p.recv_raw(3.0)
    run(go())
    st = fake.stats()
    assert st["md_dropped_slow"] == 2 and st["md_error_407"] == 1
