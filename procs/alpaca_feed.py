"""``AlpacaFeed``: Alpaca real-time market data (stocks or crypto) into the tick ring.

Pieces: ``procs.alpaca_md`` decodes frames into records, ``procs.tick_writer`` writes them
into the ring, ``procs.alpaca_md_session`` runs the handshake, ``procs.alpaca_md_client`` owns
the thread, the picows connection and reconnects. This stage wires them to the engine.

Threads: the constructor (in the supervisor, before any fork) validates params and reads the
credentials, so a missing key fails ``pyrt run`` before anything starts; it opens nothing.
``on_start`` (in the stage's own process) starts the client thread, the ring's only
producer. ``do_work`` runs in the process's agent loop and only watches: it raises
``AlpacaFeedError`` after a fatal error (the runner stops the stage, the supervisor trips the
kill switch), and asks for a reconnect when a live connection saw no frame for ``stale_ms``
(counter ``stale``, a line on stderr) or a connection is not live ``HANDSHAKE_S`` after it
opened. It returns 0: the process idles by its strategy. Use ``idle = "backoff"`` or
``"park"`` for the feed's process: they sleep and leave the GIL to the client thread; a
``yield`` loop competes with it for the GIL on every frame. On a 2-core host give the feed's
process the core the hot stages do not spin on. ``on_close`` stops the thread (bounded
join). ``now_ns`` given to ``do_work`` must be CLOCK_MONOTONIC (the runner's clock).

Params (``[stages.<name>.params]``):

* ``url``: base WebSocket URL, default ``wss://stream.data.alpaca.markets`` (a local fake:
  ``ws://127.0.0.1:PORT``); the path comes from ``feed``;
* ``feed``: ``iex`` | ``sip`` | ``test`` | ``delayed_sip`` | ``crypto`` (``v1beta3/crypto/us``);
* ``channels``: subset of quotes, trades, bars, updatedBars, dailyBars, orderbooks (crypto
  only); default ``["quotes", "trades"]``; every symbol of ``engine.symbols`` is subscribed
  (venue bars become TICK_BAR records, which the book forwards to the strategy's
  ``on_bar`` as BOOK_EVENTs with ``bar_spec = layouts.market.VENUE_BAR_SPEC``);
* ``stale_ms`` (5000; 0 = no watchdog: a quiet market, e.g. IEX at night, is not a fault),
  ``reconnect_min_ms`` (250), ``reconnect_max_ms`` (30000);
* ``dotenv``: the .env file read for APCA_API_KEY_ID / APCA_API_SECRET_KEY when they are
  not in the environment (default ``.env``);
* ``max_ticks``: stop after this many records (0 = unlimited); then ``finished`` = 1.

Counters: ``ticks_out`` (records published), ``quotes``/``trades``/``bars``/``book`` (records of
each kind), ``malformed``/``duplicates``/``unknown_symbol``/``unknown_type``/``ignored`` (see
``procs.alpaca_md``), ``frames``, ``reconnects``, ``stale``, ``errors`` (connection failures
and Alpaca errors), ``connected`` (1 while live), ``finished``. Records a ``drop`` ring could
not take are in the ring's own ``dropped`` statistic. Every counter has one writer: ``stale``
the agent loop, the rest the client thread (copied every 10 ms and when the thread ends).

Histograms (ns):

* ``decode``: per frame, from receipt (the clock read first thing in ``on_ws_frame``, which is
  also every record's ``recv_ns``) to its records committed to the ring: the adapter's cost;
* ``venue_age``: per frame with records, the host's real-time clock at receipt minus the last
  message's ``t``: how old the data is when it arrives (network + Alpaca's own path), as
  meaningful as the host's NTP sync (``recv_ns - exch_ns`` would compare a monotonic clock
  with a wall clock, so it is not recorded).
"""
from __future__ import annotations

import sys

from pyrt_shm.credentials import MissingCredentials, alpaca_credentials
from pyrt_shm.stage import Stage

from . import check_keys, int_param
from .alpaca_md import MdDecoder
from .alpaca_md_client import MdClient, record_samples
from .alpaca_md_session import CHANNELS, MdSession
from .tick_writer import TickWriter

DEFAULT_URL = "wss://stream.data.alpaca.markets"
FEEDS = {"iex": "v2/iex", "sip": "v2/sip", "test": "v2/test", "delayed_sip": "v2/delayed_sip",
         "crypto": "v1beta3/crypto/us"}
HANDSHAKE_S = 10.0


class AlpacaFeedError(RuntimeError):
    """A fatal feed error (bad keys, plan, limits): the message says what to do."""


class AlpacaFeed(Stage):
    """Alpaca market data -> tick ring (see module doc)."""

    OUTPUTS = ("tick",)
    HISTOGRAMS = ("decode", "venue_age")
    COUNTERS = ("ticks_out", "quotes", "trades", "bars", "book", "malformed", "duplicates", "unknown_symbol",
                "unknown_type", "ignored", "frames", "reconnects", "stale", "errors", "connected", "finished")
    PARAMS = ("url", "feed", "channels", "stale_ms", "reconnect_min_ms", "reconnect_max_ms", "dotenv",
              "max_ticks")

    def __init__(self, ctx):
        super().__init__(ctx)
        check_keys(ctx, self.PARAMS)
        where = f"stages.{ctx.name}.params"
        base = ctx.param("url", DEFAULT_URL, kind=str)
        if not base.startswith(("ws://", "wss://")) or len(base.split("://", 1)[1].strip("/")) == 0:
            raise ValueError(f"{where}.url: expected a ws:// or wss:// URL, got {base!r}")
        feed = ctx.param("feed", "iex", kind=str)
        if feed not in FEEDS:
            raise ValueError(f"{where}.feed: expected one of {', '.join(FEEDS)}, got {feed!r}")
        channels = ctx.param("channels", ("quotes", "trades"), kind=(list, tuple))
        bad = [c for c in channels if c not in CHANNELS]
        if bad or not channels or len(set(channels)) != len(channels):
            raise ValueError(f"{where}.channels: expected a non-empty list of distinct channels from "
                             f"{list(CHANNELS)}, got {list(channels)!r}")
        if "orderbooks" in channels and feed != "crypto":
            raise ValueError(f"{where}.channels: orderbooks exist only on the crypto feed (feed = {feed!r})")
        stale_ms = int_param(ctx, "stale_ms", 5000, lo=0)
        rmin = int_param(ctx, "reconnect_min_ms", 250, lo=1)
        rmax = int_param(ctx, "reconnect_max_ms", 30_000, lo=rmin)
        dotenv = ctx.param("dotenv", ".env", kind=str)
        max_ticks = int_param(ctx, "max_ticks", 0, lo=0)
        symbols = tuple(ctx.symbols)
        if not symbols:
            raise ValueError(f"stages.{ctx.name}: the feed needs at least one symbol (engine.symbols)")
        try:
            creds = alpaca_credentials(dotenv_path=dotenv)
        except MissingCredentials as e:
            raise ValueError(f"stages.{ctx.name}: {e}") from None
        self.url = f"{base.rstrip('/')}/{FEEDS[feed]}"
        self.feed, self.channels = feed, tuple(channels)
        self.stale_ns = stale_ms * 1_000_000
        out = ctx.output("tick")
        self.writer = TickWriter(out, max_ticks=max_ticks)
        self.decoder = MdDecoder(symbols, self.writer)
        self.session = MdSession(self.url, creds.key_id, creds.secret_key, {c: symbols for c in channels})
        self._i_stale = self.COUNTERS.index("stale")
        # Every counter but ``stale`` (the agent loop's) comes from the client thread's counts().
        self._sink_index = [(i, n) for i, n in enumerate(self.COUNTERS) if n != "stale"]
        stop = None
        if ctx.control is not None:
            flags, i = ctx.control[0]["stop"], ctx.index
            stop = lambda: bool(flags[i])           # noqa: E731 - the engine's stop request for this stage
        self.client = MdClient(
            self.url, self.session, self.decoder, self.writer, reconnect_min_s=rmin / 1e3, reconnect_max_s=rmax / 1e3,
            sink=self._sink, hists=ctx.hists, decode_row=ctx.hist("decode"), age_row=ctx.hist("venue_age"),
            should_stop=stop, log=self._log)
        self._stale = 0
        self._acted_on = 0                          # connection number the watchdog last acted on

    # -- agent --------------------------------------------------------------------------------
    def on_start(self) -> None:
        # The supervisor hands out wakers after building the stages: look now, not in __init__.
        self.client.wake = self.wake_consumers if self.ctx.wakers else None
        self.client.start()

    def do_work(self, now_ns: int) -> int:
        c = self.client
        if c.fatal is not None:
            raise AlpacaFeedError(f"stages.{self.name}: {c.fatal}")
        conn = c.connections
        if conn == self._acted_on or c.finished or not c.open:
            return 0
        if c.live:
            if self.stale_ns and now_ns - c.last_frame_ns > self.stale_ns:
                self._acted_on = conn
                self._stale += 1
                self.ctx.counters[self._i_stale] = self._stale
                c.request_reconnect(f"no data for {(now_ns - c.last_frame_ns) / 1e6:.0f} ms "
                                    f"(stale_ms = {self.stale_ns // 1_000_000})")
        elif now_ns - c.connected_ns > HANDSHAKE_S * 1e9:
            self._acted_on = conn
            c.request_reconnect(f"not subscribed {HANDSHAKE_S:.0f} s after connecting "
                                f"(state {self.session!r})")
        return 0

    def on_close(self) -> None:
        self.client.stop()

    def warm_up(self) -> None:
        """Compile the jitted helpers the client thread calls (on private arrays)."""
        import numpy as np

        from ringbuf import spsc

        from . import twin

        record_samples(twin(self.ctx.hists, 1), 0, np.zeros(1, np.int64))
        spsc.needs_wake(twin(self.writer.ring.ctl))

    # -- subscriptions --------------------------------------------------------------------------
    def subscribe(self, channels, symbols) -> None:
        """Subscribe ``symbols`` (of the symbol table) on ``channels``, now and after reconnects."""
        self._check_symbols(symbols)
        self.client.subscribe(channels, symbols)

    def unsubscribe(self, channels, symbols) -> None:
        self.client.unsubscribe(channels, symbols)

    def _check_symbols(self, symbols) -> None:
        unknown = [s for s in symbols if s not in self.decoder.ids]
        if unknown:
            raise ValueError(f"stages.{self.name}: symbols {unknown} are not in engine.symbols; their "
                             f"data would be counted as unknown_symbol and dropped")

    # -- client thread callbacks ----------------------------------------------------------------
    def _sink(self, counts: dict) -> None:
        cs = self.ctx.counters
        if cs is None:
            return
        for i, n in self._sink_index:
            cs[i] = counts[n]

    def _log(self, text: str) -> None:
        print(f"{text} [stage {self.name}]", file=sys.stderr, flush=True)
