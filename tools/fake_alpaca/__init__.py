"""A protocol-faithful fake Alpaca on loopback: market-data stream, trading REST, trading stream.

It proves itself faithful by alpaca-py's own clients working against it (tests in
``tests/tools/test_fake_alpaca_*.py``). The protocol facts it follows are in FACTS §1-§3, §11.

    from tools.fake_alpaca import FakeAlpaca
    with FakeAlpaca(key_id="k", secret_key="s", symbols=("AAPL",), quote_rate=0) as fake:
        fake.md_url("iex")      # ws://127.0.0.1:P/v2/iex   (also sip, test, delayed_sip, crypto)
        fake.rest_url           # http://127.0.0.1:Q        (TradingClient(url_override=...))
        fake.stream_url         # ws://127.0.0.1:R/stream   (TradingStream(url_override=...))
        fake.publish_quote("AAPL", 100.0, 100.02, 300, 200)
        fake.positions(), fake.orders(), fake.account(), fake.stats()
        fake.faults.drop_md_connections()

Modules, one concept each: ``market`` (seeded generator, crypto books), ``orders`` (the
Order entity and request validation), ``broker`` (account, positions, matching),
``open_orders`` (resting orders in price-time priority), ``handoff`` (calls into the loop
thread), ``md_server`` / ``trade_stream`` (picows servers), ``rest_server`` (HTTP), ``faults``,
``stats``, ``wire`` (formats), ``ws_messages`` (frame reassembly), ``app`` (``FakeAlpaca``),
``cli`` (``pyrt fake-alpaca``), ``probe`` (a raw market-data client for tests).

Beyond the core API: ``fake.batch()`` (publishes inside leave as one frame),
``publish_bar``/``publish_status``, ``expire_day_orders()``, ``faults.reject_orders(n)``,
``md_base_url``; constructor ``rest_rate_limit`` (calls per minute, default 200).

Counters in ``stats()`` (absent = 0): ``md_connections``, ``md_frames_sent``,
``md_messages_sent``, ``md_sent_<T>`` (per message type), ``md_malformed_sent``,
``md_error_<code>``, ``md_auth_failures``, ``md_dropped_stall``, ``md_dropped_slow``,
``md_replayed``, ``md_fragmented_messages_in``, ``md_bad_messages_in``, ``md_generated``;
``rest_requests``, ``rest_status_<code>``, ``rest_401``, ``rest_429``, ``rest_429_injected``,
``rest_500``, ``rest_orders_received``, ``rest_orders_accepted``,
``rest_duplicate_client_order_id``, ``rest_dropped_after_accept``; ``fills`` (executions),
``trade_updates_sent``, ``trade_updates_sent_<event>``, ``fills_sent``,
``stream_connections``, ``stream_auth_failures``.
"""
from .app import FakeAlpaca

__all__ = ["FakeAlpaca"]
