"""MdSession: the handshake, the error table, subscription changes; secrets never in text."""
from __future__ import annotations

import orjson
import pytest

from procs import alpaca_md_session as S
from procs.alpaca_md_session import MdSession

URL = "ws://127.0.0.1:1/v2/iex"
KEY, SECRET = "PKTESTKEY123", "very-secret-value"


def _session(channels=None):
    return MdSession(URL, KEY, SECRET, channels or {"quotes": ("AAPL", "MSFT"), "trades": ("AAPL",)})


def _live(s):
    s.on_open()
    s.on_message({"T": "success", "msg": "connected"})
    s.on_message({"T": "success", "msg": "authenticated"})
    s.on_message({"T": "subscription", "quotes": ["AAPL", "MSFT"], "trades": ["AAPL"]})
    return s


def test_handshake_sends_auth_then_subscribe_then_goes_live():
    s = _session()
    assert s.on_open() == [] and s.state == S.WAIT_CONNECTED
    (what, msg), = s.on_message({"T": "success", "msg": "connected"})
    assert what == S.SEND and orjson.loads(msg) == {"action": "auth", "key": KEY, "secret": SECRET}
    (what, msg), = s.on_message({"T": "success", "msg": "authenticated"})
    assert what == S.SEND and orjson.loads(msg) == {"action": "subscribe", "quotes": ["AAPL", "MSFT"],
                                                    "trades": ["AAPL"]}
    assert s.state == S.WAIT_SUBSCRIPTION
    acts = s.on_message({"T": "subscription", "quotes": ["AAPL", "MSFT"], "trades": ["AAPL"],
                         "corrections": ["AAPL"], "cancelErrors": ["AAPL"], "bars": []})
    assert acts == [(S.LIVE_NOW, None)] and s.state == S.LIVE


def test_reconnect_resubscribes_the_full_wanted_set():
    s = _live(_session())
    s.subscribe(["bars"], ["MSFT"])
    s.on_close()
    assert s.state == S.CLOSED
    s.on_open()
    s.on_message({"T": "success", "msg": "connected"})
    (what, msg), = s.on_message({"T": "success", "msg": "authenticated"})
    assert orjson.loads(msg) == {"action": "subscribe", "quotes": ["AAPL", "MSFT"], "trades": ["AAPL"],
                                 "bars": ["MSFT"]}


def test_subscribe_and_unsubscribe_are_incremental_and_sent_only_when_live():
    s = _session({"quotes": ("AAPL",)})
    assert s.subscribe(["trades"], ["AAPL"]) == []               # not connected: sent after auth
    _live(s)
    (what, msg), = s.subscribe(["quotes", "trades"], ["MSFT"])
    assert orjson.loads(msg) == {"action": "subscribe", "quotes": ["MSFT"], "trades": ["MSFT"]}
    (what, msg), = s.unsubscribe(["quotes"], ["AAPL", "MSFT"])
    assert orjson.loads(msg) == {"action": "unsubscribe", "quotes": ["AAPL", "MSFT"]}
    assert s.wanted == {"trades": ["AAPL", "MSFT"]}


@pytest.mark.parametrize("bad", [(["news"], ["AAPL"]), (["quotes"], []), (["quotes"], [""]), (["quotes"], [5])])
def test_subscribe_refuses_bad_input(bad):
    with pytest.raises(ValueError):
        _session().subscribe(*bad)


@pytest.mark.parametrize("code, what, words", [
    (402, S.FATAL, ["402", "APCA_API_KEY_ID", URL]),
    (409, S.FATAL, ["409", "insufficient subscription", "iex", URL]),
    (405, S.FATAL, ["405", "fewer", URL]),
    (401, S.FATAL, ["401", "bug"]),
    (404, S.FATAL, ["404", "auth timeout"]),
    (400, S.FATAL, ["400"]),
    (410, S.FATAL, ["410", "channels"]),
    (406, S.RETRY, ["406", "another connection"]),
    (407, S.RECONNECT, ["407"]),
    (500, S.RECONNECT, ["500"]),
    (999, S.RECONNECT, ["999"]),
    (403, S.LOG, ["403"]),
])
def test_error_table(code, what, words):
    s = _session()
    s.on_open()
    (got, text), = s.on_message({"T": "error", "code": code, "msg": S.ERRORS.get(code, ("x",))[0]})
    assert got == what
    for w in words:
        assert w in text
    assert KEY not in text and SECRET not in text
    assert (s.state == S.FAILED) == (what == S.FATAL)


def test_406_retries_a_few_times_then_fatal_and_a_success_resets():
    s = _session()
    for _ in range(S.MAX_406_RETRIES):
        s.on_open()
        assert s.on_message({"T": "error", "code": 406, "msg": "connection limit exceeded"})[0][0] == S.RETRY
    s.on_open()
    s.on_message({"T": "success", "msg": "connected"})
    s.on_message({"T": "success", "msg": "authenticated"})              # resets the count
    for _ in range(S.MAX_406_RETRIES):
        assert s.on_message({"T": "error", "code": 406})[0][0] == S.RETRY
    (what, text), = s.on_message({"T": "error", "code": 406})
    assert what == S.FATAL and "retries" in text


def test_subscription_missing_symbols_is_logged():
    s = _session()
    s.on_open()
    s.on_message({"T": "success", "msg": "connected"})
    s.on_message({"T": "success", "msg": "authenticated"})
    acts = s.on_message({"T": "subscription", "quotes": ["AAPL"], "trades": ["AAPL"]})
    assert acts[0][0] == S.LOG and "MSFT" in acts[0][1] and acts[-1] == (S.LIVE_NOW, None)


def test_unexpected_messages_are_logged_not_acted_on():
    s = _session()
    s.on_open()
    assert s.on_message({"T": "success", "msg": "authenticated-ish"})[0][0] == S.LOG
    assert s.state == S.WAIT_CONNECTED


def test_repr_never_shows_secrets():
    s = _session()
    assert SECRET not in repr(s) and KEY not in repr(s)
