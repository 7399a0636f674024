"""The fake's market: a seeded quote/trade generator per symbol, and crypto order books.

Model, per symbol (stocks and crypto alike, tick 0.01):

* mid: a log random walk from ``start_price``, ``log(mid) += 2e-4 * N(0, 1)`` per quote;
* spread: 1..4 ticks, uniform; ``bid = floor((mid - spread/2) / tick) * tick``, ``ask = bid + spread``;
* sizes: stocks ``100 * U{1..10}`` shares (trades ``U{1..300}``, odd lots < 100 get condition
  ``I``); crypto ``U(0.01, 2)`` rounded to 4 places (trades ``U(0.0001, 0.5)``);
* a trade prints at the current bid or ask (50/50) and, 1 time in 4, carries ``r`` (the
  received-at stamp Alpaca adds at times: clients must ignore unknown keys);
* each event picks a symbol uniformly; with probability ``trade_ratio`` it is a trade.

The draws come from one ``random.Random(seed)`` in a fixed order, so the *contents* of the
synthetic stream depend on the seed and on what was published in between, not on timing.

Crypto symbols (``"BTC/USD"``) also keep a 10-level book per side, derived from each quote:
level ``k`` of the bid side sits ``k`` ticks below the bid, level 0 has the quote's size,
deeper levels keep their size while their price stays in the window. Each quote yields an
``o`` delta (changed levels, removed ones with size 0); :meth:`Market.book_snapshot` gives
the full book with ``r = True`` (what a new ``orderbooks`` subscriber gets first).

Concurrency: a ``Market`` is not thread-safe by itself. Its owner holds ``Market.lock``
around every call (the generator runs in the loop thread, ``publish_*`` in the caller's
thread), and emits the returned points while still holding it, so points leave in the
order their trade ids were given.
"""
from __future__ import annotations

import math
import random
import threading

TICK = 0.01
BOOK_LEVELS = 10
SIGMA = 2e-4
STOCK_EXCHANGE = "V"   # IEX: the fake serves the same data on every stock feed
STOCK_TAPE = "C"


def is_crypto_symbol(sym: str) -> bool:
    """Alpaca's crypto symbols carry a slash (``BTC/USD``); stock symbols never do."""
    return "/" in sym


def _ticks(p: float) -> int:
    return int(round(p / TICK))


class _Symbol:
    __slots__ = ("sym", "crypto", "mid", "bid", "ask", "next_trade_id", "book_b", "book_a")

    def __init__(self, sym: str, start_price: float) -> None:
        self.sym = sym
        self.crypto = is_crypto_symbol(sym)
        self.mid = start_price
        self.bid = self.ask = math.nan        # last quote; NaN until the first one
        self.next_trade_id = 1
        self.book_b: dict[int, float] = {}   # price in ticks -> size (crypto only)
        self.book_a: dict[int, float] = {}


class Market:
    """Symbols, their random walks, trade ids and crypto books. Caller holds :attr:`lock`."""

    def __init__(self, symbols, crypto_symbols, seed: int, start_price: float, trade_ratio: float) -> None:
        self.lock = threading.Lock()
        self._rng = random.Random(seed)
        self._start_price = float(start_price)
        self._trade_ratio = float(trade_ratio)
        self._syms: dict[str, _Symbol] = {}
        for s in tuple(symbols) + tuple(crypto_symbols):
            self.symbol(s)
        #: Symbols the generator draws from (the configured ones, in order).
        self.generated = tuple(self._syms)

    # -- symbols ----------------------------------------------------------------------------
    def symbol(self, sym: str) -> _Symbol:
        """The state of ``sym``, created at ``start_price`` on first use."""
        st = self._syms.get(sym)
        if st is None:
            st = self._syms[sym] = _Symbol(sym, self._start_price)
        return st

    def symbols(self, crypto: bool) -> list[str]:
        """Every known stock (``crypto=False``) or crypto symbol, in creation order."""
        return [s for s, st in self._syms.items() if st.crypto == crypto]

    # -- points -----------------------------------------------------------------------------
    def quote_points(self, sym: str, bid: float, ask: float, bs: float, as_: float, ts: int) -> list[dict]:
        """The ``q`` point of a quote (plus an ``o`` delta for crypto); moves the walk there."""
        st = self.symbol(sym)
        st.bid, st.ask, st.mid = bid, ask, (bid + ask) / 2.0
        if st.crypto:
            q = {"T": "q", "S": sym, "bp": bid, "bs": float(bs), "ap": ask, "as": float(as_), "t": ts}
            return [q, self._book_delta(st, bid, ask, float(bs), float(as_), ts)]
        return [{"T": "q", "S": sym, "bx": STOCK_EXCHANGE, "bp": bid, "bs": int(bs), "ax": STOCK_EXCHANGE,
                 "ap": ask, "as": int(as_), "t": ts, "c": ["R"], "z": STOCK_TAPE}]

    def trade_point(self, sym: str, price: float, size: float, ts: int, taker: str | None = None,
                    received_ns: int | None = None) -> dict:
        """A ``t`` point with the symbol's next trade id ``i``."""
        st = self.symbol(sym)
        tid = st.next_trade_id
        st.next_trade_id += 1
        if st.crypto:
            p = {"T": "t", "S": sym, "p": price, "s": float(size), "t": ts, "i": tid,
                 "tks": taker or ("B" if tid % 2 else "S")}
        else:
            size = int(size)
            p = {"T": "t", "S": sym, "i": tid, "x": STOCK_EXCHANGE, "p": price, "s": size, "t": ts,
                 "c": ["@", "I"] if size < 100 else ["@"], "z": STOCK_TAPE}
        if received_ns is not None:
            p["r"] = received_ns
        return p

    def generate(self, n: int, ts: int) -> list[tuple[str, tuple | None, list[dict]]]:
        """``n`` synthetic events stamped ``ts``: ``(symbol, quote or None, points)`` each.

        ``quote`` is ``(bid, ask, bid_size, ask_size)`` for quote events, for the broker.
        """
        rng, out = self._rng, []
        if not self.generated:
            return out
        for _ in range(n):
            st = self._syms[self.generated[rng.randrange(len(self.generated))]]
            if rng.random() < self._trade_ratio:
                if math.isnan(st.bid):
                    price = round(st.mid, 2)
                else:
                    price = st.ask if rng.random() < 0.5 else st.bid
                if st.crypto:
                    size = round(rng.uniform(0.0001, 0.5), 4)
                else:
                    size = rng.randint(1, 300)
                r = ts + rng.randint(1_000, 50_000) if rng.random() < 0.25 else None
                out.append((st.sym, None, [self.trade_point(st.sym, price, size, ts, received_ns=r)]))
                continue
            mid = st.mid * math.exp(SIGMA * rng.gauss(0.0, 1.0))
            spread = rng.randint(1, 4)
            bid_t = max(1, math.floor((mid - spread * TICK / 2.0) / TICK))
            bid, ask = round(bid_t * TICK, 2), round((bid_t + spread) * TICK, 2)
            if st.crypto:
                bs, as_ = round(rng.uniform(0.01, 2.0), 4), round(rng.uniform(0.01, 2.0), 4)
            else:
                bs, as_ = 100 * rng.randint(1, 10), 100 * rng.randint(1, 10)
            points = self.quote_points(st.sym, bid, ask, bs, as_, ts)
            st.mid = mid   # the walk continues from the drawn mid, not the rounded quote
            out.append((st.sym, (bid, ask, bs, as_), points))
        return out

    # -- crypto books -----------------------------------------------------------------------
    def _level_size(self) -> float:
        return round(self._rng.uniform(0.01, 5.0), 4)

    def _side_delta(self, book: dict[int, float], top: int, step: int, top_size: float) -> list[dict]:
        want = {top + step * k for k in range(BOOK_LEVELS)}
        delta = []
        for p in sorted(set(book) - want):
            del book[p]
            delta.append({"p": round(p * TICK, 2), "s": 0.0})
        for k in range(BOOK_LEVELS):
            p = top + step * k
            size = top_size if k == 0 else book.get(p) or self._level_size()
            if book.get(p) != size:
                book[p] = size
                delta.append({"p": round(p * TICK, 2), "s": size})
        return delta

    def _book_delta(self, st: _Symbol, bid: float, ask: float, bs: float, as_: float, ts: int) -> dict:
        b = self._side_delta(st.book_b, _ticks(bid), -1, bs)
        a = self._side_delta(st.book_a, _ticks(ask), +1, as_)
        return {"T": "o", "S": st.sym, "t": ts, "b": b, "a": a}

    def book_snapshot(self, sym: str, ts: int) -> dict | None:
        """The full book of crypto ``sym`` (``r = True``), or None before its first quote."""
        st = self._syms.get(sym)
        if st is None or not st.crypto or not st.book_b:
            return None
        return {"T": "o", "S": sym, "t": ts, "r": True,
                "b": [{"p": round(p * TICK, 2), "s": s} for p, s in sorted(st.book_b.items(), reverse=True)],
                "a": [{"p": round(p * TICK, 2), "s": s} for p, s in sorted(st.book_a.items())]}
