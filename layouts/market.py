"""Market-data records: what the feed publishes and the book consumes.

One ``TICK`` dtype carries trades, quotes, bars and book deltas (``kind`` says which), so
a single ring holds the interleaved stream in arrival order. Fields not used by a kind
are zero. Symbols are small integer ids from the symbol table.
"""
from __future__ import annotations

import numpy as np

#: ``kind`` values.
TICK_TRADE = 1
TICK_QUOTE = 2
TICK_BAR = 3
TICK_BOOK_DELTA = 4
TICK_BOOK_SNAPSHOT = 5   #: first level of a snapshot: the book side is reset first

#: Book delta side.
SIDE_BID = 0
SIDE_ASK = 1

TICK = np.dtype(
    [
        ("seq", "<u8"),         #: feed sequence number, gap-free per feed
        ("recv_ns", "<i8"),     #: CLOCK_MONOTONIC when the feed received/created the tick
        ("exch_ns", "<i8"),     #: venue timestamp (unix ns), 0 if unknown
        ("sym", "<u4"),         #: symbol id
        ("kind", "<u2"),        #: TICK_*
        ("flags", "<u2"),       #: kind-specific flags (book side for deltas)
        ("price", "<f8"),       #: trade price / bar close / delta level price
        ("size", "<f8"),        #: trade size / bar volume / delta level size (0 = remove)
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
