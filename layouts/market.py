"""Market-data records: what the feed publishes and the book consumes.

One ``TICK`` dtype carries trades, quotes, bars and book deltas (``kind`` says which), so
a single ring holds the interleaved stream in arrival order. Fields not used by a kind
are zero. Symbols are small integer ids from the symbol table.

L2 book protocol (what a feed adapter emits, what ``procs.book`` applies), one price level
per record in ``price`` / ``size``, its side in ``flags & BOOK_SIDE`` (``SIDE_BID`` /
``SIDE_ASK``):

* ``TICK_BOOK_DELTA``: set the level to ``size``; ``size == 0`` removes it (a no-op when the
  level is absent). Alpaca ``orderbooks`` messages with ``r`` false: one delta per entry of
  ``b`` and ``a``.
* ``TICK_BOOK_SNAPSHOT``: one level of a full-book snapshot (Alpaca ``r`` true). A snapshot is
  a run of records of one symbol: the first carries ``BOOK_FIRST`` (it opens a new, empty
  staged book), the last carries ``BOOK_LAST`` (the staged book then replaces *both* sides of
  the live book at once, unless it is crossed); a one-record snapshot carries both. Levels
  may come in any order; ``size`` must be > 0. A record with ``BOOK_NO_LEVEL`` carries no
  level (``price``/``size`` ignored): an empty book is one ``FIRST|LAST|NO_LEVEL`` record.
  Records of other symbols (and other kinds) may interleave; nothing of a snapshot is
  visible until its last record.
* ``TICK_QUOTE``: top-level update of both sides: ``bid``/``bid_size`` become the best bid
  (bid levels above ``bid`` are removed) and ``ask``/``ask_size`` the best ask.

Venue bars (bars the venue computed, e.g. Alpaca ``bars`` / ``updatedBars`` / ``dailyBars``):
one ``TICK_BAR`` record per bar, ``price`` = close, ``size`` = volume, ``bid`` = open, ``ask`` =
high, ``bid_size`` = low, ``ask_size`` = VWAP (0 when the venue gives none), ``exch_ns`` = the
bar's start (venues label bars by their start), ``flags`` = one of the ``BAR_*`` values below
(a value, not bits). The book forwards them to the signal as BOOK_EVENTs whose ``bar_spec``
is ``VENUE_BAR_SPEC`` (``procs.l2book`` has the validation and order rules).
"""
from __future__ import annotations

import numpy as np

#: ``kind`` values.
TICK_TRADE = 1
TICK_QUOTE = 2
TICK_BAR = 3
TICK_BOOK_DELTA = 4
TICK_BOOK_SNAPSHOT = 5   #: first level of a snapshot: the book side is reset first

#: ``flags`` of a TICK_BAR record: which bar stream of the venue it came from. A value, not
#: bits; the book rejects any other value (``rejected_unsupported_kind``) because the bar's
#: length, hence its ``bar_end_ns``, follows from it.
BAR_MINUTE = 0    #: a one-minute bar, sent shortly after its minute closes (Alpaca ``b``)
BAR_UPDATED = 1   #: a minute bar re-sent, corrected by late trades, with the same start (Alpaca ``u``)
BAR_DAILY = 2     #: the bar of a day, perhaps sent again with the same start as the day goes on (Alpaca ``d``)

#: ``bar_spec`` of a BOOK_EVENT that carries a venue bar. Bars the book builds from trades
#: carry the index of their spec in the book's ``bars`` param (< 16, ``procs.bars.MAX_SPECS``),
#: so this reserved value tells a strategy which bars came from the venue. (``BOOK_EVENT`` is
#: in ``layouts.orders``; the constant lives here, beside the TICK_BAR flags it goes with.)
VENUE_BAR_SPEC = 0xFFFF

#: Book record side: ``flags & BOOK_SIDE``.
SIDE_BID = 0
SIDE_ASK = 1

#: ``flags`` bits of TICK_BOOK_DELTA / TICK_BOOK_SNAPSHOT records (other bits are ignored).
BOOK_SIDE = 0x1        #: SIDE_BID (0) or SIDE_ASK (1)
BOOK_FIRST = 0x2       #: snapshot: first record (opens a new staged book for the symbol)
BOOK_LAST = 0x4        #: snapshot: last record (validate and apply the staged book)
BOOK_NO_LEVEL = 0x8    #: snapshot: the record carries no level (e.g. an empty book)

TICK = np.dtype(
    [
        ("seq", "<u8"),         #: feed sequence number, gap-free per feed
        ("recv_ns", "<i8"),     #: CLOCK_MONOTONIC when the feed received/created the tick
        ("exch_ns", "<i8"),     #: venue timestamp (unix ns), 0 if unknown
        ("sym", "<u4"),         #: symbol id
        ("kind", "<u2"),        #: TICK_*
        ("flags", "<u2"),       #: kind-specific flags (BOOK_* for deltas and snapshots, BAR_* for bars)
        ("price", "<f8"),       #: trade price / bar close / book level price
        ("size", "<f8"),        #: trade size / bar volume / book level size (delta: 0 = remove)
        ("bid", "<f8"),         #: quote bid / bar open
        ("ask", "<f8"),         #: quote ask / bar high
        ("bid_size", "<f8"),    #: quote bid size / bar low
        ("ask_size", "<f8"),    #: quote ask size / bar vwap
    ],
    align=True,
)

#: Top of book per symbol, as published by the book stage in a seqlocked table.
TOP = np.dtype(
    [
        ("sym", "<u4"),
        ("valid", "<u4"),       #: 1 once both sides are known
        ("bid", "<f8"),
        ("ask", "<f8"),
        ("bid_size", "<f8"),
        ("ask_size", "<f8"),
        ("last", "<f8"),        #: last trade price
        ("updated_ns", "<i8"),  #: recv_ns of the tick that last changed this row
        ("updates", "<u8"),
    ],
    align=True,
)

#: Levels per side the ``depth`` table can hold (the book's ``depth`` param publishes <= this).
DEPTH_LEVELS = 20

#: Top-N levels of a symbol's L2 book, as published by the book stage in a seqlocked table.
#: Level ``k`` of a side is its (k+1)-th best; entries at and beyond ``n_bid``/``n_ask`` are 0.
DEPTH = np.dtype(
    [
        ("sym", "<u4"),
        ("valid", "<u4"),               #: 1 when both sides have at least one level
        ("n_bid", "<u4"),               #: bid levels published (<= the stage's depth)
        ("n_ask", "<u4"),
        ("bid_levels", "<u4"),          #: bid levels held by the book (<= its capacity)
        ("ask_levels", "<u4"),
        ("updated_ns", "<i8"),          #: recv_ns of the tick that last changed the book
        ("updates", "<u8"),             #: book changes published (quotes, deltas, snapshots)
        ("mid", "<f8"),                 #: (bid + ask) / 2 of the touch; 0 unless valid
        ("microprice", "<f8"),          #: (bid * ask_size + ask * bid_size) / (bid_size + ask_size)
        ("imbalance", "<f8"),           #: (bid_size - ask_size) / (bid_size + ask_size) at the touch
        ("depth_imbalance", "<f8"),     #: the same over the published levels' total sizes
        ("bid_px", "<f8", (DEPTH_LEVELS,)),
        ("bid_size", "<f8", (DEPTH_LEVELS,)),
        ("ask_px", "<f8", (DEPTH_LEVELS,)),
        ("ask_size", "<f8", (DEPTH_LEVELS,)),
    ],
    align=True,
)
