"""AlpacaFeed construction (params, credentials) and its watchdog, without a network."""
from __future__ import annotations

import pytest

from procs.alpaca_feed import AlpacaFeed, AlpacaFeedError
from test_alpaca_md_support import alpaca_engine

KEY, SECRET = "PKPARAMSTEST", "params-secret-value"


@pytest.fixture(autouse=True)
def creds(monkeypatch):
    monkeypatch.setenv("APCA_API_KEY_ID", KEY)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)


def build(tmp_path, symbols=("AAPL", "MSFT"), **params):
    params.setdefault("dotenv", str(tmp_path / "absent.env"))
    return alpaca_engine(tmp_path, symbols=symbols, **params).build_stage("feed")


def test_defaults_and_url(tmp_path):
    st = build(tmp_path)
    assert st.url == "wss://stream.data.alpaca.markets/v2/iex"
    assert st.channels == ("quotes", "trades") and st.stale_ns == 5_000_000_000
    assert st.session.wanted == {"quotes": ["AAPL", "MSFT"], "trades": ["AAPL", "MSFT"]}
    assert st.client.reconnect_min_s == 0.25 and st.client.reconnect_max_s == 30.0
    assert st.client._thread is None                  # the constructor starts nothing


@pytest.mark.parametrize("feed, path", [("sip", "v2/sip"), ("test", "v2/test"), ("delayed_sip", "v2/delayed_sip"),
                                        ("crypto", "v1beta3/crypto/us")])
def test_feed_paths(tmp_path, feed, path):
    assert build(tmp_path, feed=feed, url="ws://127.0.0.1:9/").url == f"ws://127.0.0.1:9/{path}"


@pytest.mark.parametrize("params, words", [
    ({"rate": 5}, ["stages.feed.params.rate", "unknown parameter"]),
    ({"feed": "nasdaq"}, ["stages.feed.params.feed", "iex"]),
    ({"feed": 5}, ["stages.feed.params.feed", "expected str"]),
    ({"url": "http://x"}, ["stages.feed.params.url", "ws://"]),
    ({"url": "ws://"}, ["stages.feed.params.url"]),
    ({"channels": "quotes"}, ["stages.feed.params.channels"]),
    ({"channels": []}, ["stages.feed.params.channels", "non-empty"]),
    ({"channels": ["quotes", "news"]}, ["stages.feed.params.channels", "news"]),
    ({"channels": ["quotes", "quotes"]}, ["stages.feed.params.channels", "distinct"]),
    ({"channels": ["orderbooks"]}, ["stages.feed.params.channels", "crypto"]),
    ({"stale_ms": -1}, ["stages.feed.params.stale_ms", ">= 0"]),
    ({"reconnect_min_ms": 0}, ["stages.feed.params.reconnect_min_ms"]),
    ({"reconnect_min_ms": 500, "reconnect_max_ms": 100}, ["stages.feed.params.reconnect_max_ms", ">= 500"]),
    ({"max_ticks": -3}, ["stages.feed.params.max_ticks"]),
    ({"dotenv": 3}, ["stages.feed.params.dotenv"]),
])
def test_bad_params_name_the_key(tmp_path, params, words):
    with pytest.raises(ValueError) as e:
        build(tmp_path, **params)
    for w in words:
        assert w in str(e.value)


def test_missing_credentials_fail_in_the_constructor_naming_the_variables(tmp_path, monkeypatch):
    monkeypatch.delenv("APCA_API_KEY_ID")
    monkeypatch.delenv("APCA_API_SECRET_KEY")
    with pytest.raises(ValueError) as e:
        build(tmp_path)
    text = str(e.value)
    assert "stages.feed" in text and "APCA_API_KEY_ID" in text and "APCA_API_SECRET_KEY" in text


def test_credentials_from_the_dotenv_param(tmp_path, monkeypatch):
    monkeypatch.delenv("APCA_API_KEY_ID")
    monkeypatch.delenv("APCA_API_SECRET_KEY")
    env = tmp_path / "keys.env"
    env.write_text("APCA_API_KEY_ID=PKFROMFILE\nexport APCA_API_SECRET_KEY='file-secret'\n")
    st = build(tmp_path, dotenv=str(env))
    assert b"PKFROMFILE" in st.session._auth and b"file-secret" in st.session._auth
    assert "file-secret" not in repr(st.session) and "PKFROMFILE" not in repr(st.session)


class _Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, why):
        self.calls.append(why)


def test_watchdog_stale_reconnects_once_per_connection(tmp_path):
    st = build(tmp_path, stale_ms=100)
    c, rec = st.client, _Recorder()
    c.request_reconnect = rec
    now = 10**12
    c.open, c.live, c.connections, c.connected_ns, c.last_frame_ns = True, True, 1, now - 10**9, now - 50_000_000
    assert st.do_work(now) == 0 and rec.calls == []                       # 50 ms: fine
    assert st.do_work(now + 60_000_000) == 0 and len(rec.calls) == 1      # 110 ms: stale
    assert "stale_ms = 100" in rec.calls[0] and st.counter("stale") == 1
    st.do_work(now + 500_000_000)
    assert len(rec.calls) == 1                                            # once per connection
    c.connections, c.last_frame_ns = 2, now + 500_000_000                 # reconnected, then silent again
    st.do_work(now + 700_000_000)
    assert len(rec.calls) == 2 and st.counter("stale") == 2


def test_watchdog_off_with_stale_ms_zero(tmp_path):
    st = build(tmp_path, stale_ms=0)
    c, rec = st.client, _Recorder()
    c.request_reconnect = rec
    c.open, c.live, c.connections, c.last_frame_ns = True, True, 1, 0
    st.do_work(10**15)
    assert rec.calls == [] and st.counter("stale") == 0


def test_watchdog_handshake_timeout(tmp_path):
    from procs.alpaca_feed import HANDSHAKE_S

    st = build(tmp_path)
    c, rec = st.client, _Recorder()
    c.request_reconnect = rec
    c.open, c.live, c.connections, c.connected_ns = True, False, 1, 10**12
    st.do_work(10**12 + int(HANDSHAKE_S * 1e9) - 1)
    assert rec.calls == []
    st.do_work(10**12 + int(HANDSHAKE_S * 1e9) + 1)
    assert len(rec.calls) == 1 and "not subscribed" in rec.calls[0]


def test_fatal_from_the_client_raises_in_do_work(tmp_path):
    st = build(tmp_path)
    st.client.fatal = "Alpaca market data error 402 (auth failed) on wss://x/v2/iex: check keys"
    with pytest.raises(AlpacaFeedError, match="stages.feed: Alpaca market data error 402"):
        st.do_work(0)


def test_warm_up_leaves_shared_state_untouched(tmp_path):
    st = build(tmp_path)
    ctl = st.writer.ring.ctl.copy()
    hists = st.ctx.hists.copy()
    st.warm_up()
    assert (st.writer.ring.ctl == ctl).all() and (st.ctx.hists == hists).all()
    assert AlpacaFeed.OUTPUTS == ("tick",) and len(AlpacaFeed.COUNTERS) <= 16
