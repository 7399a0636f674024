"""Order-side records: intents (signal -> risk), orders (risk -> exec), fills (exec -> risk).

Every record carries ``feed_ns``, the feed's stamp of the tick that caused it, so
latency can be measured end to end, and ``sent_ns``, when the upstream stage published
it, so each hop can be measured too.
"""
from __future__ import annotations

import numpy as np

#: Sides.
BUY = 1
SELL = -1

#: Order types.
ORDER_MARKET = 0
ORDER_LIMIT = 1

#: Time in force.
TIF_DAY = 0
TIF_GTC = 1
TIF_IOC = 2
TIF_FOK = 3

#: Fill/report status (``status`` field of FILL).
FILL_PARTIAL = 1
FILL_FULL = 2
FILL_REJECTED = 3     #: venue refused the order; qty = 0
FILL_CANCELED = 4     #: remaining quantity canceled (IOC remainder, cancel request)
FILL_EXPIRED = 5

#: Book event sent from book to signal after each applied tick.
BOOK_EVENT = np.dtype(
    [
        ("tick_seq", "<u8"),    #: seq of the tick that caused this event
        ("feed_ns", "<i8"),     #: feed stamp of that tick
        ("sent_ns", "<i8"),     #: when book published this event
        ("sym", "<u4"),
        ("kind", "<u2"),        #: TICK_* of the causing tick
        ("valid", "<u2"),       #: 1 when both sides of the book are known
        ("bid", "<f8"),
        ("ask", "<f8"),
        ("bid_size", "<f8"),
        ("ask_size", "<f8"),
        ("trade_px", "<f8"),    #: trade price if kind is TICK_TRADE, else 0
        ("trade_size", "<f8"),
        ("microprice", "<f8"),  #: size-weighted mid of the touch (0 until both sides known)
        ("imbalance", "<f8"),   #: (bid_size - ask_size) / (bid_size + ask_size) at the touch
        ("bar_open", "<f8"),    #: kind == TICK_BAR: a completed bar (else 0)
        ("bar_high", "<f8"),
        ("bar_low", "<f8"),
        ("bar_close", "<f8"),
        ("bar_volume", "<f8"),
        ("bar_vwap", "<f8"),
        ("bar_start_ns", "<i8"), #: bar start (feed clock for time bars)
        ("bar_count", "<u4"),   #: trades in the bar
        ("bar_type", "<u2"),    #: BAR_* (time / tick / volume); 0 for non-bar events
        ("bar_spec", "<u2"),    #: index of the bar specification in the book's params
    ],
    align=True,
)

#: ``bar_type`` values of a BOOK_EVENT that carries a completed bar.
BAR_TIME = 1
BAR_TICK = 2
BAR_VOLUME = 3

INTENT = np.dtype(
    [
        ("seq", "<u8"),         #: signal's intent sequence, gap-free
        ("feed_ns", "<i8"),
        ("sent_ns", "<i8"),
        ("sym", "<u4"),
        ("side", "<i1"),        #: BUY / SELL
        ("order_type", "<u1"),  #: ORDER_*
        ("tif", "<u1"),         #: TIF_*
        ("qty", "<f8"),
        ("limit_px", "<f8"),    #: 0 for market
        ("ref_px", "<f8"),      #: price the signal saw (mid) when deciding
        ("tag", "<u4"),         #: strategy-defined tag
    ],
    align=True,
)

ORDER = np.dtype(
    [
        ("order_id", "<u8"),    #: engine-unique client order id number
        ("intent_seq", "<u8"),  #: the intent this order came from
        ("feed_ns", "<i8"),
        ("sent_ns", "<i8"),
        ("sym", "<u4"),
        ("side", "<i1"),
        ("order_type", "<u1"),
        ("tif", "<u1"),
        ("qty", "<f8"),
        ("limit_px", "<f8"),
        ("tag", "<u4"),
    ],
    align=True,
)

FILL = np.dtype(
    [
        ("order_id", "<u8"),
        ("fill_id", "<u8"),     #: venue-unique fill sequence
        ("feed_ns", "<i8"),
        ("sent_ns", "<i8"),
        ("sym", "<u4"),
        ("side", "<i1"),
        ("status", "<u1"),      #: FILL_*
        ("qty", "<f8"),         #: filled quantity of this report
        ("price", "<f8"),
        ("fee", "<f8"),
        ("leaves_qty", "<f8"),  #: quantity still open after this report
        ("reason", "<u4"),      #: venue reject/cancel reason code
    ],
    align=True,
)

#: Position and P&L per symbol (seqlocked table owned by risk).
POSITION = np.dtype(
    [
        ("sym", "<u4"),
        ("fills", "<u4"),
        ("qty", "<f8"),            #: signed position
        ("avg_px", "<f8"),         #: average cost of the open position
        ("realized", "<f8"),       #: realized P&L, before fees
        ("unrealized", "<f8"),     #: marked to mid
        ("fees", "<f8"),
        ("bought", "<f8"),         #: total quantity bought
        ("sold", "<f8"),
        ("open_buy", "<f8"),       #: quantity in open buy orders
        ("open_sell", "<f8"),
        ("mark", "<f8"),
    ],
    align=True,
)

