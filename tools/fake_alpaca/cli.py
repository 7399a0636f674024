"""``pyrt fake-alpaca``: run the fake Alpaca until SIGINT/SIGTERM.

Prints one line when all three servers listen: with ``--ready-json`` the JSON object
``{"md": "ws://H:P", "rest": "http://H:Q", "stream": "ws://H:R/stream", "md_urls": {...}}``
(``md`` is the market-data base: append ``/v2/iex``, ``/v1beta3/crypto/us`` ...; ``md_urls``
spells every endpoint out), else a human-readable line. Keys: ``--key``/``--secret``, else
``APCA_API_KEY_ID``/``APCA_API_SECRET_KEY`` from the environment; they are never printed.

Exit status: 0 after a signal, 2 for a bad command line, missing keys or a port in use.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from .app import FakeAlpaca
from .md_server import STOCK_FEEDS


def _csv(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyrt fake-alpaca", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--md-port", type=int, default=0, help="market-data WebSocket port (0 = any free)")
    p.add_argument("--rest-port", type=int, default=0, help="trading REST port (0 = any free)")
    p.add_argument("--stream-port", type=int, default=0, help="trading stream port (0 = any free)")
    p.add_argument("--symbols", type=_csv, default=("AAPL", "MSFT"), help="stock symbols, comma-separated")
    p.add_argument("--crypto-symbols", type=_csv, default=("BTC/USD",), help="crypto symbols, comma-separated")
    p.add_argument("--rate", type=float, default=1000.0, help="synthetic events per second, all symbols (0 = none)")
    p.add_argument("--trade-ratio", type=float, default=0.2, help="share of synthetic events that are trades")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--plan-feeds", type=_csv, default=("iex", "test", "sip"),
                   help=f"stock feeds the plan includes (of {', '.join(STOCK_FEEDS)}); others answer 409")
    p.add_argument("--cash", type=float, default=100_000.0)
    p.add_argument("--key", help="API key id (default: $APCA_API_KEY_ID)")
    p.add_argument("--secret", help="API secret key (default: $APCA_API_SECRET_KEY)")
    p.add_argument("--ready-json", action="store_true", help="print the ready line as one JSON object")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    key = args.key or os.environ.get("APCA_API_KEY_ID")
    secret = args.secret or os.environ.get("APCA_API_SECRET_KEY")
    if not key or not secret:
        print("pyrt fake-alpaca: no keys: pass --key and --secret or set APCA_API_KEY_ID and "
              "APCA_API_SECRET_KEY", file=sys.stderr)
        return 2
    try:
        fake = FakeAlpaca(key_id=key, secret_key=secret, symbols=args.symbols, crypto_symbols=args.crypto_symbols,
                          quote_rate=args.rate, trade_ratio=args.trade_ratio, seed=args.seed, host=args.host,
                          md_port=args.md_port, rest_port=args.rest_port, stream_port=args.stream_port,
                          plan_feeds=args.plan_feeds, cash=args.cash)
    except ValueError as e:
        print(f"pyrt fake-alpaca: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            fake.start()
        except OSError as e:
            print(f"pyrt fake-alpaca: {e.strerror or e}", file=sys.stderr)
            return 2
        urls = {"md": fake.md_base_url, "rest": fake.rest_url, "stream": fake.stream_url,
                "md_urls": {f: fake.md_url(f) for f in STOCK_FEEDS + ("crypto",)}}
        if args.ready_json:
            print(json.dumps(urls), flush=True)
        else:
            print(f"fake Alpaca listening: market data {urls['md']} (/v2/iex, /v1beta3/crypto/us, ...), "
                  f"REST {urls['rest']}, trading stream {urls['stream']}; Ctrl-C stops", flush=True)
        while not stop.wait(0.5):
            pass
        return 0
    finally:
        fake.close()
        for s, h in previous.items():
            signal.signal(s, h)


if __name__ == "__main__":
    raise SystemExit(main())
