"""alpaca-py's own clients against the fake: the proof that the fake is faithful enough.

StockDataStream / CryptoDataStream (msgpack, fragmented subscribe), TradingClient (REST,
pydantic models), TradingStream (trade_updates). Every wait is bounded.
"""
from __future__ import annotations

import asyncio
import time

import pytest
from alpaca.common.exceptions import APIError
from alpaca.data.live import CryptoDataStream, StockDataStream
from alpaca.data.models import Bar, Orderbook, Quote, Trade, TradingStatus
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, QueryOrderStatus, TimeInForce, TradeEvent
from alpaca.trading.models import TradeUpdate
from alpaca.trading.requests import (GetOrdersRequest, LimitOrderRequest, MarketOrderRequest,
                                     ReplaceOrderRequest)
from alpaca.trading.stream import TradingStream

from tools.fake_alpaca import FakeAlpaca

K, S = "k-apy", "s-apy"


def run(coro, timeout_s: float = 20.0):
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


async def _until(pred, timeout_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def _stop(stream, task) -> None:
    """Stop an alpaca-py data stream: its loop notices within one received frame (data flows)."""
    await stream.stop_ws()
    try:
        await asyncio.wait_for(task, 8.0)
    except asyncio.TimeoutError:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await stream.close()
        raise


def _collect(stream, subscriptions) -> tuple[list, asyncio.Task]:
    """Subscribe one list-appending handler to each ``(subscribe method name, symbol)`` and
    start the stream's loop (it runs at the caller's next await): (received, task)."""
    got: list = []

    async def handler(x):
        got.append(x)
    for method, symbol in subscriptions:
        getattr(stream, method)(handler, symbol)
    return got, asyncio.create_task(stream._run_forever())


def test_stock_data_stream_gets_trade_quote_bar_status_models():
    with FakeAlpaca(key_id=K, secret_key=S, symbols=("AAPL", "MSFT"), crypto_symbols=(), quote_rate=300.0,
                    trade_ratio=0.3, seed=2) as fake:
        async def go():
            stream = StockDataStream(K, S, url_override=fake.md_url("iex"))
            got, task = _collect(stream, (("subscribe_trades", "AAPL"), ("subscribe_quotes", "AAPL"),
                                          ("subscribe_bars", "MSFT"), ("subscribe_trading_statuses", "AAPL")))
            await _until(lambda: fake.stats().get("md_messages_in", 0) >= 2, 5, "auth + subscribe")
            fake.publish_bar("MSFT", 10.0, 10.5, 9.9, 10.2, 1000, n=7, vw=10.1)
            fake.publish_status("AAPL")
            await _until(lambda: {type(x) for x in got} >= {Trade, Quote, Bar, TradingStatus}, 8, "all 4 models")
            await _stop(stream, task)
            return got
        got = run(go())
        st = fake.stats()
    assert st["md_connections_msgpack"] == 1 and st["md_fragmented_messages_in"] == 1
    trades = [x for x in got if isinstance(x, Trade)]
    assert all(t.symbol == "AAPL" and t.size > 0 and t.id is not None for t in trades)
    ids = [t.id for t in trades]
    assert ids == sorted(ids)
    bar = next(x for x in got if isinstance(x, Bar))
    assert bar.trade_count == 7 and bar.vwap == 10.1
    q = next(x for x in got if isinstance(x, Quote))
    assert q.bid_price < q.ask_price and q.timestamp.year >= 2024


def test_crypto_data_stream_gets_trades_quotes_and_orderbooks():
    with FakeAlpaca(key_id=K, secret_key=S, symbols=(), crypto_symbols=("BTC/USD", "ETH/USD"), quote_rate=300.0,
                    trade_ratio=0.3, seed=4) as fake:
        async def go():
            stream = CryptoDataStream(K, S, url_override=fake.md_url("crypto"))
            fake.publish_quote("BTC/USD", 100.0, 100.02, 1.0, 1.0)        # a book exists: snapshot first
            got, task = _collect(stream, (("subscribe_trades", "BTC/USD"), ("subscribe_quotes", "BTC/USD"),
                                          ("subscribe_orderbooks", "BTC/USD")))
            await _until(lambda: sum(isinstance(x, Orderbook) for x in got) >= 3 and
                         {type(x) for x in got} >= {Trade, Quote, Orderbook}, 8, "crypto models")
            await _stop(stream, task)
            return got
        got = run(go())
    books = [x for x in got if isinstance(x, Orderbook)]
    assert books[0].reset is True and len(books[0].bids) == len(books[0].asks) == 10
    assert all(not b.reset for b in books[1:])
    t = next(x for x in got if isinstance(x, Trade))
    assert t.symbol == "BTC/USD" and 0 < t.size < 1


@pytest.fixture
def fake():
    with FakeAlpaca(key_id=K, secret_key=S, symbols=("AAPL", "MSFT"), crypto_symbols=("BTC/USD",),
                    quote_rate=0, seed=9, cash=1_000_000.0) as f:
        f.publish_quote("AAPL", 150.0, 150.05, 1000, 1000)
        yield f


def test_trading_client_full_flow(fake):
    c = TradingClient(K, S, url_override=fake.rest_url)
    acct = c.get_account()
    assert acct.status.value == "ACTIVE" and float(acct.cash) == 1_000_000
    m = c.submit_order(MarketOrderRequest(symbol="AAPL", qty=10, side=OrderSide.BUY,
                                          time_in_force=TimeInForce.DAY, client_order_id="m-1"))
    assert m.client_order_id == "m-1" and m.status == OrderStatus.NEW
    lim = c.submit_order(LimitOrderRequest(symbol="AAPL", qty=5, side=OrderSide.BUY, limit_price=140.0,
                                           time_in_force=TimeInForce.GTC, client_order_id="l-1"))
    assert c.get_order_by_client_id("m-1").status == OrderStatus.FILLED
    assert c.get_order_by_client_id("l-1").status == OrderStatus.NEW
    opened = c.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))
    assert [o.client_order_id for o in opened] == ["l-1"]
    everything = c.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, symbols=["AAPL"]))
    assert {o.client_order_id for o in everything} == {"m-1", "l-1"}
    rep = c.replace_order_by_id(lim.id, ReplaceOrderRequest(limit_price=141.0, qty=6))
    assert rep.replaces == lim.id and float(rep.limit_price) == 141.0 and float(rep.qty) == 6
    assert c.get_order_by_id(lim.id).status == OrderStatus.REPLACED
    assert c.cancel_order_by_id(rep.id) is None
    with pytest.raises(APIError) as ei:
        c.cancel_order_by_id(rep.id)
    assert ei.value.status_code == 422 and ei.value.code == 42210000
    positions = c.get_all_positions()
    assert {p.symbol: float(p.qty) for p in positions} == fake.positions() == {"AAPL": 10.0}
    assert float(c.get_open_position("AAPL").avg_entry_price) == 150.05
    bad = TradingClient(K, "wrong", url_override=fake.rest_url)
    with pytest.raises(APIError) as ei:
        bad.get_account()
    assert ei.value.status_code == 401 and ei.value.code == 40110000


def test_trading_client_timing_with_tcp_nodelay(fake):
    """Not a benchmark: guards against the 40 ms Nagle/delayed-ACK stall (FACTS §3)."""
    c = TradingClient(K, S, url_override=fake.rest_url)
    c.get_account()                                                    # connection warm
    times = []
    for i in range(20):
        t0 = time.perf_counter()
        c.submit_order(LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, limit_price=100.0,
                                         time_in_force=TimeInForce.DAY))
        times.append(time.perf_counter() - t0)
    times.sort()
    assert times[len(times) // 2] < 0.030, times                        # a Nagle stall is >= 40 ms


def test_trading_stream_receives_fill_updates(fake):
    updates: list[TradeUpdate] = []

    async def go():
        stream = TradingStream(K, S, url_override=fake.stream_url)

        async def handler(u):
            updates.append(u)
        stream.subscribe_trade_updates(handler)
        task = asyncio.create_task(stream._run_forever())
        try:
            await _until(lambda: fake.stats().get("stream_listens", 0) >= 1, 5, "listening")
            c = TradingClient(K, S, url_override=fake.rest_url)
            o = await asyncio.to_thread(c.submit_order, MarketOrderRequest(
                symbol="AAPL", qty=1500, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))
            fake.publish_quote("AAPL", 150.0, 150.1, 1000, 1000)
            await _until(lambda: any(u.event == TradeEvent.FILL for u in updates), 5, "fill")
            return o
        finally:
            task.cancel()                                              # TradingStream's stop polls every 5 s
            await asyncio.gather(task, return_exceptions=True)
            await stream.close()
    o = run(go())
    assert [u.event for u in updates] == [TradeEvent.NEW, TradeEvent.PARTIAL_FILL, TradeEvent.FILL]
    fill = updates[-1]
    assert fill.order.id == o.id and fill.order.status == OrderStatus.FILLED
    assert fill.price == 150.1 and fill.qty == 500 and fill.position_qty == 1500 and fill.execution_id
    assert updates[1].price == 150.05 and updates[1].qty == 1000
    assert fake.stats()["fills_sent"] == 2


def test_stock_data_stream_reconnects_after_drop_md_connections():
    """alpaca-py's own reconnect (backoff ~1 s) gets a fresh slot: no 406 after a drop."""
    with FakeAlpaca(key_id=K, secret_key=S, symbols=("AAPL",), crypto_symbols=(), quote_rate=200.0,
                    trade_ratio=0.0, seed=6) as fake:
        async def go():
            stream = StockDataStream(K, S, url_override=fake.md_url("iex"))
            got, task = _collect(stream, (("subscribe_quotes", "AAPL"),))
            await _until(lambda: len(got) >= 5, 5, "first quotes")
            await asyncio.to_thread(fake.faults.drop_md_connections)
            n = len(got)
            await _until(lambda: fake.stats().get("md_connections", 0) >= 2 and len(got) >= n + 5, 10,
                         "quotes after the reconnect")
            await _stop(stream, task)
        run(go())
        st = fake.stats()
    assert st["md_connections_dropped"] == 1 and st.get("md_error_406", 0) == 0
