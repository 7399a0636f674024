"""The one writer of BOOK_EVENT records (``layouts.orders.BOOK_EVENT``), shared by the stages
that emit them: the book (``procs.book``) and the bar replay (``procs.replay_feed:ReplayBars``),
which feeds the signal without a book. A stage must not import another stage, so the writer
lives here, and both emit events a strategy cannot tell apart by where they came from.

Both helpers are ``inline="always"``: they run once per event on the book's hot path.
"""
from __future__ import annotations

from numba import njit

from .l2book import touch_stats


@njit(cache=True, inline="always")
def top_touch(top):
    """``(microprice, imbalance)`` of a TOP record's touch; ``(0.0, 0.0)`` while it is not
    ``valid`` (a side is unknown, so there is no touch to weigh)."""
    if top.valid != 0:
        _mid, micro, imb = touch_stats(top.bid, top.ask, top.bid_size, top.ask_size)
        return micro, imb
    return 0.0, 0.0


@njit(cache=True, inline="always")
def top_event(e, seq, feed_ns, s, kind, top, micro, imb):
    """Fill every field of BOOK_EVENT ``e`` except ``sent_ns`` (``procs.publish`` stamps it):
    the causing tick's ``seq`` and feed stamp, symbol ``s``, ``kind``, the top of book ``top``
    with its ``micro``/``imb`` (``top_touch``), and zero trade and bar fields, which the
    caller sets after for a trade or a bar."""
    e.tick_seq = seq
    e.feed_ns = feed_ns
    e.sym = s
    e.kind = kind
    e.valid = top.valid
    e.bid = top.bid
    e.ask = top.ask
    e.bid_size = top.bid_size
    e.ask_size = top.ask_size
    e.microprice = micro
    e.imbalance = imb
    e.trade_px = 0.0
    e.trade_size = 0.0
    e.bar_open = 0.0
    e.bar_high = 0.0
    e.bar_low = 0.0
    e.bar_close = 0.0
    e.bar_volume = 0.0
    e.bar_vwap = 0.0
    e.bar_start_ns = 0
    e.bar_end_ns = 0
    e.bar_count = 0
    e.bar_type = 0
    e.bar_spec = 0
