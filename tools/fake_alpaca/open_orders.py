"""Open orders of one symbol and side, best first: price, then time (the broker's resting book).

Market orders rank ahead of every limit order. A quote only needs to look at the head of
the book: :meth:`Side.marketable` stops at the first order the price does not reach, so a
quote costs O(orders it can fill), not O(open orders).

Each side also keeps what buying power needs without a scan: the remaining quantity and
value (at the limit price) of its limit orders, and the ids of its market orders (valued
at the current quote by the broker). The broker calls :meth:`Side.filled` on every
execution so the sums stay exact. Not thread-safe: the broker's lock covers it.
"""
from __future__ import annotations

import bisect
import math


class Side:
    """The resting orders of one side; ``buy`` decides the price order."""

    def __init__(self, buy: bool) -> None:
        self.buy = buy
        self._keys: list[tuple[float, int, str]] = []     # (price rank, seq, order id), sorted
        self.limit_qty = 0.0
        self.limit_value = 0.0
        self.markets: dict[str, None] = {}                # market order ids, oldest first
        self._n_limit = 0

    def _key(self, o) -> tuple[float, int, str]:
        if o.limit is None:
            rank = -math.inf
        else:
            rank = -o.limit if self.buy else o.limit
        return rank, o.seq, o.id

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, o, remaining: float) -> None:
        bisect.insort(self._keys, self._key(o))
        if o.limit is None:
            self.markets[o.id] = None
        else:
            self._n_limit += 1
            self.limit_qty += remaining
            self.limit_value += remaining * o.limit

    def remove(self, o, remaining: float) -> None:
        k = self._key(o)
        i = bisect.bisect_left(self._keys, k)
        if i == len(self._keys) or self._keys[i] != k:
            return                                          # not resting here: nothing to undo
        del self._keys[i]
        if o.limit is None:
            self.markets.pop(o.id, None)
            return
        self._n_limit -= 1
        if self._n_limit == 0:
            self.limit_qty = self.limit_value = 0.0       # no float dust left behind
        else:
            self.limit_qty -= remaining
            self.limit_value -= remaining * o.limit

    def filled(self, o, n: float) -> None:
        """``n`` of limit order ``o`` executed: it reserves that much less."""
        if o.limit is not None:
            self.limit_qty -= n
            self.limit_value -= n * o.limit

    def marketable(self, price: float, eps: float = 1e-9) -> list[str]:
        """Ids of the orders ``price`` reaches, best first (a snapshot: safe to modify after)."""
        out = []
        for rank, _, oid in self._keys:
            if rank != -math.inf:
                limit = -rank if self.buy else rank
                if (self.buy and price > limit + eps) or (not self.buy and price < limit - eps):
                    break
            out.append(oid)
        return out
