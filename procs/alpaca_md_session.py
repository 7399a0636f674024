"""Connection state machine of one Alpaca market-data stream (pure: it says what to do).

Alpaca's handshake (FACTS §1)::

    connect ──▶ WAIT_CONNECTED ──[success "connected"]──▶ send auth ──▶ WAIT_AUTH
    WAIT_AUTH ──[success "authenticated"]──▶ send subscribe ──▶ WAIT_SUBSCRIPTION
    WAIT_SUBSCRIPTION ──[subscription]──▶ LIVE          (every later "subscription" updates it)
    any state ──[error N]──▶ per ERRORS: fatal (FAILED), retry (406), reconnect, or ignore

``on_open()`` starts a connection; ``on_message(msg)`` takes one control message (``T`` =
``success`` / ``subscription`` / ``error``) and returns a list of actions for the client:

* ``(SEND, bytes)``: send this JSON text (the auth message carries the secret: the client
  sends it and never logs it; nothing here puts a key into a string that is logged);
* ``(LIVE, None)``: the subscription is confirmed (data may flow; the watchdog may start);
* ``(RECONNECT, text)``: drop the connection and reconnect with backoff;
* ``(RETRY, text)``: 406 connection limit: reconnect with backoff, at most ``MAX_406_RETRIES``
  times in a row (Alpaca's Go SDK retries this one code), then fatal;
* ``(FATAL, text)``: stop: the text names the code, the feed URL and what to do;
* ``(LOG, text)``: worth a line on stderr, nothing else.

The wanted subscription (``channels -> symbols``) survives reconnects: after every
re-authentication the full set is subscribed again. ``subscribe`` / ``unsubscribe`` change
it incrementally and return the message to send now if the session is past authentication.
"""
from __future__ import annotations

import orjson

WAIT_CONNECTED, WAIT_AUTH, WAIT_SUBSCRIPTION, LIVE, FAILED, CLOSED = range(6)
STATE_NAMES = ("wait_connected", "wait_auth", "wait_subscription", "live", "failed", "closed")
SEND, LIVE_NOW, RECONNECT, RETRY, FATAL, LOG = "send", "live", "reconnect", "retry", "fatal", "log"

#: Channels this engine can turn into TICK records (the subscribe message's keys).
CHANNELS = ("quotes", "trades", "bars", "updatedBars", "dailyBars", "orderbooks")
MAX_406_RETRIES = 5

#: code -> (what Alpaca means, how to react, what the operator should do).
ERRORS = {
    400: ("invalid syntax", FATAL, "the server did not understand a message of this client: report it as "
                                   "a pyrt bug"),
    401: ("not authenticated", FATAL, "the client subscribed before authenticating: report it as a pyrt bug"),
    402: ("auth failed", FATAL, "the key pair was rejected: check APCA_API_KEY_ID and APCA_API_SECRET_KEY "
                                "(paper and live keys differ; regenerate revoked keys)"),
    403: ("already authenticated", LOG, ""),
    404: ("auth timeout", FATAL, "authentication did not complete in time after connecting: check the "
                                 "network path to the feed and the host's load"),
    405: ("symbol limit exceeded", FATAL, "the plan allows fewer symbols on this feed: subscribe fewer "
                                          "(engine.symbols, params.channels) or upgrade the data plan"),
    406: ("connection limit exceeded", RETRY, "another connection with these keys is open on this endpoint "
                                              "(another engine, an alpaca-py script, a notebook): close it"),
    407: ("slow client", RECONNECT, "the engine read the stream too slowly"),
    408: ("v2 not enabled", FATAL, "market data v2 is not enabled for this account: contact Alpaca"),
    409: ("insufficient subscription", FATAL, "this feed is not in the account's market data plan: use "
                                              "feed = \"iex\" (free plan) or subscribe to the feed"),
    410: ("invalid subscribe action for this feed", FATAL, "a channel is not offered on this feed (e.g. "
                                                           "orderbooks exist only on crypto): fix params.channels"),
    411: ("insufficient scope", FATAL, "the credentials lack market-data scope"),
    500: ("internal error", RECONNECT, "Alpaca reported an internal error"),
}


class MdSession:
    """Protocol state of one feed (see module doc). Not thread-safe: the client thread owns it."""

    def __init__(self, url: str, key_id: str, secret_key: str, channels: dict):
        self.url = url
        self._auth = orjson.dumps({"action": "auth", "key": key_id, "secret": secret_key})
        self.wanted = {c: list(dict.fromkeys(s)) for c, s in channels.items() if s}
        self.server: dict = {}                #: the last subscription the server confirmed
        self.state = CLOSED
        self.retries_406 = 0

    def __repr__(self) -> str:               # never shows the auth message
        return f"MdSession({self.url!r}, state={STATE_NAMES[self.state]})"

    def on_open(self) -> list:
        self.state = WAIT_CONNECTED
        return []

    def on_close(self) -> None:
        if self.state != FAILED:
            self.state = CLOSED

    def on_message(self, m: dict) -> list:
        T = m.get("T")
        if T == "success":
            what = m.get("msg")
            if what == "connected" and self.state == WAIT_CONNECTED:
                self.state = WAIT_AUTH
                return [(SEND, self._auth)]
            if what == "authenticated" and self.state in (WAIT_CONNECTED, WAIT_AUTH):
                self.retries_406 = 0
                if not self.wanted:
                    self.state = LIVE
                    return [(LIVE_NOW, None)]
                self.state = WAIT_SUBSCRIPTION
                return [(SEND, self._message("subscribe", self.wanted))]
            return [(LOG, f"unexpected success message {what!r} in state {STATE_NAMES[self.state]}")]
        if T == "subscription":
            self.server = {k: v for k, v in m.items() if k != "T" and isinstance(v, list)}
            missing = {c: sorted(set(s) - set(self.server.get(c, ())) - {"*"})
                       for c, s in self.wanted.items()}
            missing = {c: s for c, s in missing.items() if s and "*" not in self.server.get(c, ())}
            out = [(LOG, f"subscription on {self.url} lacks {missing}")] if missing else []
            if self.state == WAIT_SUBSCRIPTION:
                self.state = LIVE
                out.append((LIVE_NOW, None))
            return out
        if T == "error":
            return self._error(m)
        return [(LOG, f"unexpected control message type {T!r}")]

    def _error(self, m: dict) -> list:
        code, text = m.get("code"), m.get("msg", "")
        meaning, how, advice = ERRORS.get(code, ("unknown error", RECONNECT, ""))
        what = f"Alpaca market data error {code} ({text or meaning}) on {self.url}"
        if advice:
            what += f": {advice}"
        if how == RETRY:
            self.retries_406 += 1
            if self.retries_406 > MAX_406_RETRIES:
                how = FATAL
                what += f" (still refused after {MAX_406_RETRIES} retries with backoff)"
        if how == FATAL:
            self.state = FAILED
        return [(how, what)]

    # -- subscription changes -------------------------------------------------------------
    def subscribe(self, channels, symbols) -> list:
        """Add ``symbols`` on each of ``channels``; return the message to send now (if any)."""
        add = self._check(channels, symbols)
        for c in channels:
            cur = self.wanted.setdefault(c, [])
            cur.extend(s for s in add if s not in cur)
        return self._now("subscribe", {c: add for c in channels})

    def unsubscribe(self, channels, symbols) -> list:
        """Remove ``symbols`` from each of ``channels``; return the message to send now (if any)."""
        rem = self._check(channels, symbols)
        for c in channels:
            left = [s for s in self.wanted.get(c, []) if s not in rem]
            if left:
                self.wanted[c] = left
            else:
                self.wanted.pop(c, None)
        return self._now("unsubscribe", {c: rem for c in channels})

    @staticmethod
    def _check(channels, symbols) -> list:
        bad = [c for c in channels if c not in CHANNELS]
        if bad:
            raise ValueError(f"unknown channel(s) {bad}; known: {list(CHANNELS)}")
        symbols = list(symbols)
        if not symbols or not all(isinstance(s, str) and s for s in symbols):
            raise ValueError(f"symbols must be non-empty strings, got {symbols!r}")
        return symbols

    def _now(self, action: str, chans: dict) -> list:
        if self.state in (WAIT_SUBSCRIPTION, LIVE):
            return [(SEND, self._message(action, chans))]
        return []                            # sent with the full set after authentication

    @staticmethod
    def _message(action: str, chans: dict) -> bytes:
        msg = {"action": action}
        msg.update({c: list(s) for c, s in chans.items()})
        return orjson.dumps(msg)
