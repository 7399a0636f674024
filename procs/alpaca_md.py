"""Alpaca market data v2 frames -> TICK records: the decoder (pure: no sockets, no threads).

Input: the payload of one WebSocket frame in JSON mode (``orjson.loads`` takes the frame's
memoryview as is), a JSON array of messages ``[{"T": ..., ...}, ...]``; data messages may be
batched, control messages come alone. Stocks (``v2/iex|sip|test|delayed_sip``) and crypto
(``v1beta3/crypto/us``) share the schemas below (crypto sizes are floats; only crypto has
order books). Output: records written through a ``procs.tick_writer.TickWriter``, one batch
(one claim, one head store) per frame, every record stamped with the frame's ``recv_ns``.

===========  ==================  =================================================================
``T``        record kind         fields
===========  ==================  =================================================================
``t``        TICK_TRADE          price = ``p``, size = ``s``
``q``        TICK_QUOTE          bid = ``bp``, ask = ``ap``, bid_size = ``bs``, ask_size = ``as``
``b u d``    TICK_BAR            price = close ``c``, size = volume ``v``, bid = open ``o``,
                                 ask = high ``h``, bid_size = low ``l``, ask_size = vwap ``vw``
                                 (0 when absent); flags = BAR_MINUTE / BAR_UPDATED / BAR_DAILY
``o``        TICK_BOOK_*         ``r`` true: a snapshot run (``layouts.market`` L2 protocol): one
                                 TICK_BOOK_SNAPSHOT per level with size > 0, bids (``b``) then
                                 asks (``a``), BOOK_FIRST on the first, BOOK_LAST on the last; no
                                 level -> one FIRST|LAST|NO_LEVEL record. ``r`` false: one
                                 TICK_BOOK_DELTA per entry (size 0 = remove the level)
===========  ==================  =================================================================

Every record: ``exch_ns`` = the message's ``t`` as unix ns (``procs.alpaca_md_time``), ``sym``
= the symbol's index in the engine's symbol table, ``seq`` gap-free (the writer's).

What is not a record, and where it is counted (``counts``, indices ``C_*``):

* control messages (``success``, ``subscription``, ``error``) are appended to ``control`` for
  the connection state machine (``procs.alpaca_md_session``);
* statuses, LULDs, corrections, cancel/errors, imbalances, news (``s l c x i n``): ``ignored``
  (they have no TICK kind; corrections and cancelErrors arrive with every trade subscription);
* any other ``T``: ``unknown_type``; a symbol not in the table: ``unknown_symbol``;
* ``malformed``: a frame that is not JSON or not an array (counted once, nothing of it
  written), an element that is not an object, a required field missing or of the wrong type
  (a string, null, array or object where a number belongs; a non-string ``t``; a trade id
  that is not a number), a timestamp that is not RFC-3339 (also when the message would be a
  duplicate: malformed is counted first). Such an element is skipped: the
  frame's other elements are decoded as if it were not there, and no state changes for it.
  (A JSON ``true``/``false`` in a quote, trade or bar number field is read as 1/0 by
  ``struct``, like Python's ``int(True)``: checking every field for ``bool`` would cost ~25 ns
  each on the hot path, and Alpaca never sends one; book entries are checked strictly.)
* ``duplicates`` (what a replay after a reconnect offers again), per symbol:
  - trade: its id ``i`` <= the highest trade id seen for the symbol (Alpaca trade ids grow per
    symbol on a feed; a late trade with a lower id is dropped too: the rule trusts the ids);
  - quote, bar (per kind b/u/d), order book: ``t`` older than the last accepted ``t`` of that
    symbol and kind, or equal to it with identical content (an update with the same ``t`` and
    new content, e.g. an ``updatedBars`` correction, is accepted).

Counters are plain Python ints in the list ``counts`` (a list item increment is the cheapest
counter Python has); the stage copies them to shared memory off the hot path.
"""
from __future__ import annotations

import struct

import orjson

from layouts.market import (BAR_DAILY, BAR_MINUTE, BAR_UPDATED, BOOK_FIRST, BOOK_LAST, BOOK_NO_LEVEL, SIDE_ASK,
                            SIDE_BID, TICK_BAR, TICK_BOOK_DELTA, TICK_BOOK_SNAPSHOT, TICK_QUOTE, TICK_TRADE)

from .alpaca_md_time import Rfc3339
from .tick_writer import RECORD_SIZE

_BAR_FLAGS = {"b": BAR_MINUTE, "u": BAR_UPDATED, "d": BAR_DAILY}

CONTROL_TYPES = frozenset(("success", "subscription", "error"))
IGNORED_TYPES = frozenset(("s", "l", "c", "x", "i", "n"))

COUNT_NAMES = ("frames", "quotes", "trades", "bars", "book", "malformed", "duplicates", "unknown_symbol",
               "unknown_type", "ignored")
(C_FRAMES, C_QUOTES, C_TRADES, C_BARS, C_BOOK, C_MALFORMED, C_DUPLICATES, C_UNKNOWN_SYMBOL, C_UNKNOWN_TYPE,
 C_IGNORED) = range(len(COUNT_NAMES))

_BAD = (KeyError, TypeError, ValueError, OverflowError, struct.error)


def _number(x):
    """``x`` if it is a JSON number (int or float, not bool), else TypeError."""
    if type(x) is float or type(x) is int:
        return x
    raise TypeError(f"expected a number, got {type(x).__name__}")


def _same_quote(p, bp, bs, ap, az) -> bool:
    """Whether the last accepted quote ``p`` (its message) has this content."""
    return p is not None and p["bp"] == bp and p["bs"] == bs and p["ap"] == ap and p["as"] == az


def _numbers(*xs) -> None:
    """TypeError unless every one of ``xs`` is a JSON number (the duplicate path's check: a
    message that is both stale and broken counts as malformed)."""
    for x in xs:
        _number(x)


class MdDecoder:
    """Decode frames of one feed connection (and its reconnections) into ``writer``.

    ``symbols``: the engine's symbol table (id = index). State that survives reconnects: the
    duplicate high-water marks, the counts, and the writer's seq.
    """

    __slots__ = ("ids", "w", "_ts", "counts", "control", "last_exch_ns", "_trade_id", "_quote_t", "_quote_c",
                 "_bar_t", "_bar_c", "_book_t", "_book_c", "_hot")

    def __init__(self, symbols, writer):
        self.ids = {s: i for i, s in enumerate(symbols)}
        if len(self.ids) != len(symbols):
            raise ValueError(f"symbol table has duplicates: {list(symbols)}")
        n = len(symbols)
        self.w = writer
        self._ts = Rfc3339().to_ns
        self.counts = [0] * len(COUNT_NAMES)
        self.control: list[dict] = []
        self.last_exch_ns = 0                 #: exch_ns of the last data message decoded
        self._trade_id = [-1] * n             # highest trade id per symbol
        self._quote_t = [-1] * n
        self._quote_c: list = [None] * n
        self._bar_t = {k: [-1] * n for k in _BAR_FLAGS}
        self._bar_c = {k: [None] * n for k in _BAR_FLAGS}
        self._book_t = [-1] * n
        self._book_c: list = [None] * n
        self._hot = (self.ids, self._ts, writer.put, writer.pack, writer.buf, writer.mask, self._quote_t,
                     self._quote_c, self._trade_id)       # one attribute load per frame, not nine

    def decode(self, payload, recv_ns: int) -> int:
        """Decode one frame payload (bytes, memoryview or str); return the records published.

        Never raises for bad input (it is counted); records that did not fit a full ring are
        pending in the writer (``block``) or counted dropped (``drop``).
        """
        cnt = self.counts
        cnt[C_FRAMES] += 1
        try:
            msgs = orjson.loads(payload)
        except orjson.JSONDecodeError:
            cnt[C_MALFORMED] += 1
            return 0
        if type(msgs) is not list:
            cnt[C_MALFORMED] += 1
            return 0
        # The writer's fast path, inlined (a method call per record would cost ~0.3 µs): pack
        # slots head + n while n < free, then commit(n) once; beyond ``free`` (ring full) the
        # record goes through w.put, which re-reads the tail and spills (see TickWriter).
        w = self.w
        free, base, seq0 = w.begin(recv_ns)
        ids, ts, put, pack, buf, mask, qt, qc, tid = self._hot
        n = 0
        t = 0
        for m in msgs:
            try:
                T = m["T"]
                if T == "q":
                    s = m["S"]
                    sid = ids.get(s)
                    if sid is None:
                        cnt[C_UNKNOWN_SYMBOL if type(s) is str else C_MALFORMED] += 1
                        continue
                    t = ts(m["t"])
                    bp, bs, ap, az = m["bp"], m["bs"], m["ap"], m["as"]
                    last = qt[sid]
                    if t <= last and (t < last or _same_quote(qc[sid], bp, bs, ap, az)):
                        _numbers(bp, bs, ap, az)          # malformed beats duplicate
                        cnt[C_DUPLICATES] += 1
                        continue
                    if n < free:
                        pack(buf, ((base + n) & mask) * RECORD_SIZE, seq0 + n, recv_ns, t, sid, TICK_QUOTE, 0,
                             0.0, 0.0, bp, ap, bs, az)
                        n += 1
                    else:
                        w.n = n
                        put(t, sid, TICK_QUOTE, 0, 0.0, 0.0, bp, ap, bs, az)
                        n, free = w.n, w.free
                    qt[sid] = t
                    qc[sid] = m                           # the content, compared only on an equal t
                    cnt[C_QUOTES] += 1
                elif T == "t":
                    s = m["S"]
                    sid = ids.get(s)
                    if sid is None:
                        cnt[C_UNKNOWN_SYMBOL if type(s) is str else C_MALFORMED] += 1
                        continue
                    i = m["i"]
                    if i <= tid[sid]:
                        _numbers(i, m["p"], m["s"])
                        ts(m["t"])
                        cnt[C_DUPLICATES] += 1
                        continue
                    t = ts(m["t"])
                    if n < free:
                        pack(buf, ((base + n) & mask) * RECORD_SIZE, seq0 + n, recv_ns, t, sid, TICK_TRADE, 0,
                             m["p"], m["s"], 0.0, 0.0, 0.0, 0.0)
                        n += 1
                    else:
                        w.n = n
                        put(t, sid, TICK_TRADE, 0, m["p"], m["s"], 0.0, 0.0, 0.0, 0.0)
                        n, free = w.n, w.free
                    tid[sid] = i
                    cnt[C_TRADES] += 1
                elif T in _BAR_FLAGS:
                    w.n = n
                    t = self._bar(m, T, ids, ts, put, cnt) or t
                    n, free = w.n, w.free
                elif T == "o":
                    w.n = n
                    t = self._book(m, ids, ts, put, cnt) or t
                    n, free = w.n, w.free
                elif T in CONTROL_TYPES:
                    self.control.append(m)
                elif T in IGNORED_TYPES:
                    cnt[C_IGNORED] += 1
                else:
                    cnt[C_UNKNOWN_TYPE] += 1
            except _BAD:
                cnt[C_MALFORMED] += 1
        if t:
            self.last_exch_ns = t
        return w.commit(n)

    def _bar(self, m, T, ids, ts, put, cnt) -> int:
        """One bar message; returns its exch_ns if written, else 0. Raises for malformed input
        before writing anything (``put`` packs or validates before it counts a record)."""
        s = m["S"]
        sid = ids.get(s)
        if sid is None:
            cnt[C_UNKNOWN_SYMBOL if type(s) is str else C_MALFORMED] += 1
            return 0
        t = ts(m["t"])
        o, h, lo, c, v, vw = m["o"], m["h"], m["l"], m["c"], m["v"], m.get("vw", 0.0)
        bt, bc = self._bar_t[T], self._bar_c[T]
        if t <= bt[sid] and (t < bt[sid] or bc[sid] == (o, h, lo, c, v, vw)):
            _numbers(o, h, lo, c, v, vw)
            cnt[C_DUPLICATES] += 1
            return 0
        put(t, sid, TICK_BAR, _BAR_FLAGS[T], c, v, o, h, lo, vw)
        bt[sid] = t
        bc[sid] = (o, h, lo, c, v, vw)
        cnt[C_BARS] += 1
        return t

    def _book(self, m, ids, ts, put, cnt) -> int:
        """One order-book message (see module doc); returns its exch_ns if handled, else 0."""
        s = m["S"]
        sid = ids.get(s)
        if sid is None:
            cnt[C_UNKNOWN_SYMBOL if type(s) is str else C_MALFORMED] += 1
            return 0
        t = ts(m["t"])
        bids, asks, reset = m.get("b") or [], m.get("a") or [], m.get("r", False)
        if type(bids) is not list or type(asks) is not list or type(reset) is not bool:
            raise TypeError("orderbook b/a must be arrays and r a boolean")
        # Validate every level before writing any: a bad entry leaves no partial book behind.
        levels = [(SIDE_BID, _number(e["p"]), _number(e["s"])) for e in bids]
        levels += [(SIDE_ASK, _number(e["p"]), _number(e["s"])) for e in asks]
        last = self._book_t[sid]
        if t <= last and (t < last or self._book_c[sid] == (reset, bids, asks)):
            cnt[C_DUPLICATES] += 1
            return 0
        self._book_t[sid] = t
        self._book_c[sid] = (reset, bids, asks)
        w = self.w
        if reset:
            levels = [lv for lv in levels if lv[2] > 0]       # size 0 is no level in a snapshot
            k = len(levels)
            if not w.group(k or 1):
                return t                                      # drop policy: counted by the writer
            if k == 0:
                put(t, sid, TICK_BOOK_SNAPSHOT, BOOK_FIRST | BOOK_LAST | BOOK_NO_LEVEL, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
            for j, (side, p, z) in enumerate(levels):
                fl = side | (BOOK_FIRST if j == 0 else 0) | (BOOK_LAST if j == k - 1 else 0)
                put(t, sid, TICK_BOOK_SNAPSHOT, fl, p, z, 0.0, 0.0, 0.0, 0.0)
            cnt[C_BOOK] += k or 1
        else:
            for side, p, z in levels:
                put(t, sid, TICK_BOOK_DELTA, side, p, z, 0.0, 0.0, 0.0, 0.0)
            cnt[C_BOOK] += len(levels)
        return t
