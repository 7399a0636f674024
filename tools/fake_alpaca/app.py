"""``FakeAlpaca``: the market-data stream, trading REST and trading stream of Alpaca on loopback.

Threads (all started by :meth:`FakeAlpaca.start`, all joined by :meth:`FakeAlpaca.close`):

* ``fake-alpaca-loop``: one asyncio loop running both picows servers (market data and
  trading stream) and the synthetic quote generator;
* ``fake-alpaca-rest`` + one per HTTP connection: the REST server.

Ordering contract (cross-thread): quotes and trades are published under ``Market.lock``
and handed to the loop (``handoff.Handoff``, FIFO) while it is held, so market data leaves in
publication order and trade ids increase on the wire. The broker sees a published quote
*before* ``publish_quote`` returns (an order submitted afterwards matches against it), and
hands trade updates to the loop under its own lock, so they leave in the order they
happened. Lock order: ``Market.lock`` before ``Broker.lock``, never the reverse.

Synthetic data: ``quote_rate`` events per second in total (all symbols), each a quote or,
with probability ``trade_ratio``, a trade; paced by the loop's clock from a fixed schedule
(event ``i`` due at ``t0 + i / quote_rate``); everything due at one wake-up leaves as one
frame per connection. ``quote_rate = 0``: only what is published.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import threading
import time

from .broker import Broker
from .faults import Faults
from .handoff import Handoff
from .market import Market, is_crypto_symbol
from .md_server import CRYPTO_PATH, STOCK_FEEDS, MdServer
from .rest_server import RestApp, RestServer
from .stats import Stats
from .trade_stream import PATH as STREAM_PATH
from .trade_stream import TradeStreamServer

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
MAX_EVENTS_PER_WAKE = 5_000      # a generator far behind schedule catches up in bounded steps
MIN_SLEEP_S = 0.0005


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(f"FakeAlpaca: {msg}")


def _symbols(value, name: str) -> tuple[str, ...]:
    _check(isinstance(value, (tuple, list)) and all(isinstance(s, str) and s for s in value),
           f"{name} must be a tuple of non-empty strings, got {value!r}")
    return tuple(value)


def _port(value, name: str) -> int:
    _check(isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535,
           f"{name} must be an int in 0..65535, got {value!r}")
    return value


def _positive_price(value, name: str) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok:
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
    return float(value)


class FakeAlpaca:
    """Alpaca on 127.0.0.1 for tests and demos (the package doc shows the API in use).

    ``key_id``/``secret_key``: the one account's keys, checked by all three servers (never
    logged). ``symbols``/``crypto_symbols``: what the generator quotes and orders may trade
    (a published symbol becomes tradable too). ``quote_rate``/``trade_ratio``/``seed``:
    the synthetic stream (0 = only what is published). ``*_port``: 0 = any free port.
    ``plan_feeds``: stock feeds the account's plan includes (others answer 409;
    ``delayed_sip`` is always included). ``symbol_limit``: distinct trades+quotes(+orderbooks)
    symbols per connection (405 beyond). ``auth_timeout_s``: 404 if no auth by then.
    ``start_price``: every symbol's first mid. ``cash``: the account's starting cash.
    ``rest_rate_limit``: REST calls per minute per key (Alpaca: 200).
    """

    def __init__(self, key_id: str = "fake-key", secret_key: str = "fake-secret",
                 symbols=("AAPL", "MSFT"), crypto_symbols=("BTC/USD",), quote_rate: float = 1000.0,
                 trade_ratio: float = 0.2, seed: int = 1, host: str = "127.0.0.1", md_port: int = 0,
                 rest_port: int = 0, stream_port: int = 0, plan_feeds=("iex", "test", "sip"),
                 symbol_limit: int = 30, auth_timeout_s: float = 10.0, start_price: float = 100.0,
                 cash: float = 100_000.0, rest_rate_limit: int = 200) -> None:
        _check(isinstance(key_id, str) and key_id != "", "key_id must be a non-empty string")
        _check(isinstance(secret_key, str) and secret_key != "", "secret_key must be a non-empty string")
        self.symbols = _symbols(symbols, "symbols")
        self.crypto_symbols = _symbols(crypto_symbols, "crypto_symbols")
        for s in self.symbols:
            _check(not is_crypto_symbol(s), f"symbols: {s!r} looks like crypto (has '/'): put it in crypto_symbols")
        for s in self.crypto_symbols:
            _check(is_crypto_symbol(s), f"crypto_symbols: {s!r} must be BASE/QUOTE, e.g. 'BTC/USD'")
        for name, v in (("quote_rate", quote_rate), ("auth_timeout_s", auth_timeout_s)):
            _check(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0,
                   f"{name} must be a finite number >= 0, got {v!r}")
        _check(auth_timeout_s > 0, f"auth_timeout_s must be > 0, got {auth_timeout_s!r}")
        _check(isinstance(trade_ratio, (int, float)) and 0.0 <= trade_ratio <= 1.0,
               f"trade_ratio must be in [0, 1], got {trade_ratio!r}")
        _check(isinstance(seed, int) and not isinstance(seed, bool), f"seed must be an int, got {seed!r}")
        _check(isinstance(host, str) and host != "", f"host must be a non-empty string, got {host!r}")
        _check(isinstance(symbol_limit, int) and symbol_limit >= 1, f"symbol_limit must be an int >= 1, got {symbol_limit!r}")
        _check(isinstance(rest_rate_limit, int) and rest_rate_limit >= 1,
               f"rest_rate_limit must be an int >= 1, got {rest_rate_limit!r}")
        plan = _symbols(plan_feeds, "plan_feeds")
        for f in plan:
            _check(f in STOCK_FEEDS, f"plan_feeds: unknown feed {f!r} (known: {', '.join(STOCK_FEEDS)})")
        _check(isinstance(cash, (int, float)) and math.isfinite(cash) and cash >= 0, f"cash must be >= 0, got {cash!r}")
        self.host = host
        self._ports = {"md": _port(md_port, "md_port"), "rest": _port(rest_port, "rest_port"),
                       "stream": _port(stream_port, "stream_port")}
        self.quote_rate = float(quote_rate)
        self._start_price = _positive_price(start_price, "FakeAlpaca: start_price")

        self._stats = Stats()
        self._handoff = Handoff(self._stats)
        self.faults = Faults({"drop_md": self._drop_md, "drop_stream": self._drop_stream})
        self._market = Market(self.symbols, self.crypto_symbols, seed, start_price, trade_ratio)
        self._broker = Broker(cash, self._emit_update, self._stats,
                              rejecter=lambda: self.faults.take("reject_orders"))
        for s in self.symbols + self.crypto_symbols:
            self._broker.add_asset(s)
        self._md = MdServer(key_id, secret_key, plan, symbol_limit, auth_timeout_s, self._market,
                            self.faults, self._stats)
        self._stream = TradeStreamServer(key_id, secret_key, self._stats)
        self._rest_app = RestApp(key_id, secret_key, self._broker, self.faults, self._stats, rest_rate_limit)
        self._rest: RestServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._gen_task: asyncio.Task | None = None
        self._batch = threading.local()
        self._state = "new"                  # new -> running -> closed
        self._state_lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "FakeAlpaca":
        """Bind all three servers and return once they listen.

        Raises OSError naming the server and address when a port cannot be bound; nothing
        is left running then.
        """
        with self._state_lock:
            if self._state != "new":
                raise RuntimeError(f"FakeAlpaca.start: already {self._state}")
            self._state = "running"
        try:
            try:
                self._rest = RestServer(self.host, self._ports["rest"], self._rest_app)
            except OSError as e:
                raise OSError(e.errno, f"fake Alpaca REST cannot listen on {self.host}:{self._ports['rest']}: "
                                       f"{e.strerror}") from None
            ready: concurrent.futures.Future = concurrent.futures.Future()
            self._thread = threading.Thread(target=self._run_loop, args=(ready,), name="fake-alpaca-loop",
                                            daemon=True)
            self._thread.start()
            self._ports["md"], self._ports["stream"] = ready.result(START_TIMEOUT_S)
            self._ports["rest"] = self._rest.port
            self._rest.start()
        except BaseException:
            self.close()
            raise
        return self

    def _run_loop(self, ready: concurrent.futures.Future) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            try:
                ports = loop.run_until_complete(self._start_servers())
            except BaseException as e:
                ready.set_exception(e)
                return
            self._handoff.bind(loop)
            if self.quote_rate > 0:
                self._gen_task = loop.create_task(self._generate())
            ready.set_result(ports)
            loop.run_forever()
            self._handoff.unbind()
            loop.run_until_complete(self._stop_servers())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _start_servers(self) -> tuple[int, int]:
        which = "market-data"
        try:
            md = await self._md.start(self.host, self._ports["md"])
            which = "trading-stream"
            stream = await self._stream.start(self.host, self._ports["stream"])
        except OSError as e:
            port = self._ports["md" if which == "market-data" else "stream"]
            await self._stop_servers()
            raise OSError(e.errno, f"fake Alpaca {which} cannot listen on {self.host}:{port}: {e.strerror}") from None
        return md, stream

    async def _stop_servers(self) -> None:
        if self._gen_task is not None:
            self._gen_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gen_task
        await self._md.close()
        await self._stream.close()

    def close(self) -> None:
        """Stop everything and join every thread; idempotent (also after a failed start)."""
        with self._state_lock:
            if self._state == "closed":
                return
            self._state = "closed"
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):       # loop already closed
                loop.call_soon_threadsafe(loop.stop)
            thread.join(STOP_TIMEOUT_S)
        if self._rest is not None:
            self._rest.close()

    def __enter__(self) -> "FakeAlpaca":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- addresses ----------------------------------------------------------------------------
    def md_url(self, feed: str = "iex") -> str:
        """``ws://host:P/v2/{feed}`` for a stock feed, ``.../v1beta3/crypto/us`` for ``"crypto"``."""
        if feed == "crypto":
            return f"ws://{self.host}:{self._ports['md']}{CRYPTO_PATH}"
        if feed not in STOCK_FEEDS:
            raise ValueError(f"md_url: unknown feed {feed!r} (known: {', '.join(STOCK_FEEDS)}, crypto)")
        return f"ws://{self.host}:{self._ports['md']}/v2/{feed}"

    @property
    def md_base_url(self) -> str:
        return f"ws://{self.host}:{self._ports['md']}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self._ports['rest']}"

    @property
    def stream_url(self) -> str:
        return f"ws://{self.host}:{self._ports['stream']}{STREAM_PATH}"

    # -- driving the market -------------------------------------------------------------------
    def _send_points(self, crypto: bool, points: list) -> None:
        """Hand points to the md server now, or to the open ``batch()`` (caller holds Market.lock)."""
        pending = getattr(self._batch, "points", None)
        if pending is not None:
            pending.append((crypto, points))
        else:
            self._handoff.put(self._md.emit, crypto, points)

    @contextlib.contextmanager
    def batch(self):
        """Points published inside (in this thread) leave together when it ends: one array frame
        per asset class and connection. The broker still sees each quote at once. Another
        thread publishing the same symbols meanwhile would get its points out first."""
        if getattr(self._batch, "points", None) is not None:
            yield                             # nested: the outer batch sends
            return
        self._batch.points = []
        try:
            yield
        finally:
            pending, self._batch.points = self._batch.points, None
            for crypto in (False, True):
                pts = [p for c, ps in pending if c == crypto for p in ps]
                if pts:
                    self._handoff.put(self._md.emit, crypto, pts)

    def publish_quote(self, sym: str, bid: float, ask: float, bid_size: float, ask_size: float) -> None:
        """Publish a quote: broker matches against it before this returns; subscribers get ``q``."""
        _check(isinstance(sym, str) and sym != "", f"publish_quote: sym must be a non-empty string, got {sym!r}")
        bid = _positive_price(bid, "publish_quote: bid")
        ask = _positive_price(ask, "publish_quote: ask")
        bs = _positive_price(bid_size, "publish_quote: bid_size")
        as_ = _positive_price(ask_size, "publish_quote: ask_size")
        if bid > ask:
            raise ValueError(f"publish_quote: crossed quote for {sym}: bid {bid} > ask {ask}")
        with self._market.lock:
            points = self._market.quote_points(sym, bid, ask, bs, as_, time.time_ns())
            self._broker.on_quote(sym, bid, ask, bs, as_)
            self._send_points(is_crypto_symbol(sym), points)

    def publish_trade(self, sym: str, price: float, size: float) -> None:
        """Publish a trade (``i`` = the symbol's next trade id)."""
        _check(isinstance(sym, str) and sym != "", f"publish_trade: sym must be a non-empty string, got {sym!r}")
        price = _positive_price(price, "publish_trade: price")
        size = _positive_price(size, "publish_trade: size")
        with self._market.lock:
            self._send_points(is_crypto_symbol(sym), [self._market.trade_point(sym, price, size, time.time_ns())])

    def publish_bar(self, sym: str, o: float, h: float, l: float, c: float, v: float,  # noqa: E741
                    n: int | None = None, vw: float | None = None, kind: str = "b") -> None:
        """Publish a bar: ``kind`` ``b`` (bars), ``u`` (updatedBars) or ``d`` (dailyBars); ``n``
        (trade count) and ``vw`` (VWAP) default to 1 and the close: alpaca-py requires both keys."""
        _check(kind in ("b", "u", "d"), f"publish_bar: kind must be 'b', 'u' or 'd', got {kind!r}")
        vals = [_positive_price(x, f"publish_bar: {k}") for k, x in (("o", o), ("h", h), ("l", l), ("c", c))]
        _check(vals[1] >= max(vals) and vals[2] <= min(vals), f"publish_bar: {sym}: need l <= o, c <= h")
        _check(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0, f"publish_bar: v must be >= 0, got {v!r}")
        crypto = is_crypto_symbol(sym)
        point = {"T": kind, "S": sym, "o": vals[0], "h": vals[1], "l": vals[2], "c": vals[3],
                 "v": float(v) if crypto else int(v), "t": time.time_ns(),
                 "n": 1 if n is None else int(n), "vw": vals[3] if vw is None else float(vw)}
        with self._market.lock:
            self._send_points(crypto, [point])

    def publish_status(self, sym: str, status_code: str = "H", status_msg: str = "Trading Halt",
                       reason_code: str = "T1", reason_msg: str = "Halt News Pending") -> None:
        """Publish a trading status ``s`` (stocks; every field alpaca-py's TradingStatus requires)."""
        point = {"T": "s", "S": sym, "sc": status_code, "sm": status_msg, "rc": reason_code,
                 "rm": reason_msg, "t": time.time_ns(), "z": "C"}
        with self._market.lock:
            self._send_points(False, [point])

    async def _generate(self) -> None:
        """The synthetic stream: event ``i`` due at ``t0 + i / quote_rate`` (no drift)."""
        loop, rate = asyncio.get_running_loop(), self.quote_rate
        t0, i = loop.time(), 0
        while True:
            due = int((loop.time() - t0) * rate) + 1 - i
            n = max(0, min(due, MAX_EVENTS_PER_WAKE))
            if n:
                now = time.time_ns()
                with self._market.lock:
                    events = self._market.generate(n, now)
                    for sym, quote, _ in events:
                        if quote is not None:
                            self._broker.on_quote(sym, *quote)
                    # Through the loop's queue like published points (not emitted directly):
                    # a publish queued before this wake-up must leave first (trade id order).
                    for crypto in (False, True):
                        pts = [p for _, _, ps in events for p in ps if is_crypto_symbol(p["S"]) == crypto]
                        if pts:
                            self._send_points(crypto, pts)
                self._stats.inc("md_generated", n)
                i += n
                if due > MAX_EVENTS_PER_WAKE:           # far behind: skip ahead, count the gap
                    self._stats.inc("md_generator_skipped", due - n)
                    i += due - n
            await asyncio.sleep(max(MIN_SLEEP_S, t0 + i / rate - loop.time()))

    # -- trade updates ------------------------------------------------------------------------
    def _emit_update(self, update: dict) -> None:
        self._handoff.put(self._stream.emit, update)

    # -- broker views -------------------------------------------------------------------------
    def positions(self) -> dict[str, float]:
        """Signed quantity per symbol, keyed as ordered (``BTC/USD``; REST says ``BTCUSD``)."""
        return self._broker.positions()

    def orders(self) -> list[dict]:
        """Every order ever accepted (Order entities), oldest first."""
        return self._broker.all_orders()

    def account(self) -> dict:
        return self._broker.account()

    def seed_position(self, sym: str, qty: float, avg_entry_price: float) -> None:
        _check(isinstance(sym, str) and sym != "", f"seed_position: sym must be a non-empty string, got {sym!r}")
        _check(isinstance(qty, (int, float)) and math.isfinite(qty), f"seed_position: qty must be finite, got {qty!r}")
        self._broker.seed_position(sym, qty, _positive_price(avg_entry_price, "seed_position: avg_entry_price"))

    def seed_open_order(self, symbol: str, side: str, qty: float, limit_price: float,
                        client_order_id: str | None = None) -> dict:
        """An open limit order (gtc for crypto, day for stocks) as if placed before; no buying
        power check; it matches like any order when the market reaches it. Returns its entity."""
        body = {"symbol": symbol, "side": side, "qty": qty, "type": "limit", "limit_price": limit_price,
                "time_in_force": "gtc" if is_crypto_symbol(symbol) else "day"}
        if client_order_id is not None:
            body["client_order_id"] = client_order_id
        self._broker.add_asset(symbol)
        try:
            return self._broker.submit(body, check_buying_power=False)
        except Exception as e:              # BrokerError: say which call and field
            raise ValueError(f"seed_open_order: {e}") from None

    def expire_day_orders(self) -> int:
        """End the session: every open day order expires (``expired`` trade updates)."""
        return self._broker.expire_day()

    def stats(self) -> dict[str, int]:
        """Counters (a consistent snapshot); see the package doc for the names."""
        return self._stats.snapshot()

    # -- fault actions (run in the loop, wait for them) ------------------------------------------
    def _run_in_loop_and_wait(self, fn) -> None:
        loop = self._loop
        if loop is None or self._state != "running":
            return
        if threading.current_thread() is self._thread:
            fn()
            return
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def run():
            try:
                fut.set_result(fn())
            except BaseException as e:
                fut.set_exception(e)
        loop.call_soon_threadsafe(run)
        fut.result(STOP_TIMEOUT_S)

    def _drop_md(self) -> None:
        self._run_in_loop_and_wait(self._md.drop_all)

    def _drop_stream(self) -> None:
        self._run_in_loop_and_wait(self._stream.drop_all)
