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

#: Fill/report status (``status`` field of FILL). One order gets any number of reports and
#: exactly one terminal one (FULL, REJECTED, CANCELED, EXPIRED or REPLACED).
FILL_PARTIAL = 1
FILL_FULL = 2
FILL_REJECTED = 3     #: venue refused the order; qty = 0
FILL_CANCELED = 4     #: remaining quantity canceled (IOC remainder, cancel request)
FILL_EXPIRED = 5      #: DAY order at the session close, FOK that could not fill in full
FILL_ACCEPTED = 6     #: the venue acknowledged the order and it rests (no quantity)
FILL_REPLACED = 7     #: ``order_id`` was replaced by ``replaced_by`` (terminal for the old id)
FILL_CANCEL_REJECTED = 8  #: a cancel/replace of ``order_id`` was refused (too late); it stays open
FILL_STATUS_NAMES = {FILL_PARTIAL: "partial", FILL_FULL: "filled", FILL_REJECTED: "rejected",
                     FILL_CANCELED: "canceled", FILL_EXPIRED: "expired", FILL_ACCEPTED: "accepted",
                     FILL_REPLACED: "replaced", FILL_CANCEL_REJECTED: "cancel_rejected"}

#: ``action`` of an ORDER record (risk -> exec) and of an INTENT (signal -> risk).
ACTION_NEW = 0
ACTION_CANCEL = 1     #: ORDER: cancel ``order_id``; INTENT: cancel the open orders of (sym, tag)
ACTION_REPLACE = 2    #: ORDER: ``orig_order_id`` becomes ``order_id`` (qty, limit_px);
                      #: INTENT: replace the open order of (sym, side, tag)

#: Execution algorithm of an INTENT (``algo``). Risk slices TWAP/VWAP/ICEBERG parents into
#: child orders, each of which passes the pre-trade checks (see procs/algos.py).
ALGO_NONE = 0         #: one order: market or limit as ``order_type`` says
ALGO_TWAP = 1         #: ``slices`` equal children over ``duration_ns``
ALGO_VWAP = 2         #: children sized by the volume profile over ``duration_ns``
ALGO_ICEBERG = 3      #: limit children of ``display_qty``, the next when one completes

#: FILL ``liquidity``.
LIQ_NONE = 0
LIQ_TAKER = 1
LIQ_MAKER = 2

#: Book event sent from book to signal: one per applied tick (a snapshot: one when it is
#: applied) and one per completed bar (``kind == TICK_BAR``, after the trade that completed it).
#: Bar times are on the bar clock: the trade's ``exch_ns`` when non-zero, else its ``recv_ns``.
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
        ("bar_start_ns", "<i8"), #: time bar: interval start; tick/volume bar: first trade's time
        ("bar_end_ns", "<i8"),  #: time bar: interval end (exclusive); tick/volume: last trade's time
        ("bar_count", "<u4"),   #: trades in the bar
        ("bar_type", "<u2"),    #: BAR_* (time / tick / volume); 0 for non-bar events
        ("bar_spec", "<u2"),    #: index of the bar specification in the book's params;
                                #: layouts.market.VENUE_BAR_SPEC = a bar from the venue
                                #: (times = its start and start + length, bar_count 0)
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
        ("action", "<u1"),      #: ACTION_* (0 = a new order)
        ("algo", "<u1"),        #: ALGO_* (0 = a single order)
        ("slices", "<u2"),      #: TWAP/VWAP: number of children (VWAP 0 = the profile's length)
        ("duration_ns", "<i8"), #: TWAP/VWAP: schedule length
        ("display_qty", "<f8"), #: ICEBERG: quantity shown per child
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
        ("action", "<u1"),      #: ACTION_NEW / ACTION_CANCEL / ACTION_REPLACE
        ("orig_order_id", "<u8"),  #: REPLACE: the order being replaced (0 otherwise)
        ("parent_id", "<u8"),   #: algo parent id of a child order (0 = none)
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
        ("liquidity", "<u1"),   #: LIQ_TAKER / LIQ_MAKER for executions
        ("attempts", "<u2"),    #: submissions it took (retries + 1)
        ("replaced_by", "<u8"), #: FILL_REPLACED: the new order id
        ("venue_ns", "<i8"),    #: exec's clock when the venue acted
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
        ("cost", "<f8"),           #: cost of the open position (sum |lot qty| * lot price)
        ("net_pnl", "<f8"),        #: realized + unrealized - fees
        ("peak_pnl", "<f8"),       #: highest net_pnl seen (drawdown reference)
        ("trail_px", "<f8"),       #: best mark since the position opened (trailing stop)
        ("stop_px", "<f8"),        #: price that triggers the stop (0 = none)
        ("open_orders", "<u4"),
        ("lots", "<u4"),           #: open FIFO lots (1 for average cost while not flat)
    ],
    align=True,
)

