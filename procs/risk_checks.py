"""Pre-trade checks (numba): one function, every reason, first failure wins.

``pretrade`` decides one new order (an intent, an algo child or a stop order) against the
limits, the symbol's position and open orders, the portfolio, the book's top and the
trading state, and returns ``(reason, px)``: ``reason`` is ``-1`` when the order may go out
(then one token of each rate bucket is consumed) or the ``layouts.risk.REJECT_REASONS``
index of the first failed check, in this order:

 1. ``bad_intent``      unknown symbol, side not BUY/SELL, qty not finite or <= 0, unknown
                        order type or tif, a limit order without a finite positive limit
 2. ``kill_switch``     ``control.kill_switch`` set (read on every order: a kill is seen by
                        the next order, within the duty cycle)
 3. ``halted``          trading state HALTED
 4. ``restricted``      the symbol is on the restricted list
 5. ``reduce_only``     trading state REDUCING and the order does not reduce the position
 6. ``max_order_qty``   qty above the symbol's (or global) limit
 7. ``no_market_data``  the collar is on and the symbol has no valid top, or there is no
                        price at all (no limit, no top, no ref_px)
 8. ``price_collar``    limit buy above ask * (1 + collar), limit sell below bid * (1 - collar);
                        market buy when ask > ref_px * (1 + collar), market sell when
                        bid < ref_px * (1 - collar) (the market ran away from the signal)
 9. ``max_order_notional``  qty * px, px = the limit price, else the touch, else ref_px
10.-16.                 only for orders that do not reduce the position ("reducing": opposite
                        side and, with the open orders on that side, not beyond flat):
    ``daily_loss``      day P&L <= -daily_loss_limit (with ``auto_halt`` post-trade halts
                        first, so this is the backstop and the soft-limit mode)
    ``drawdown``        drawdown >= max_drawdown (likewise)
    ``max_position``    |qty + open orders on the side + q| > the symbol's max_position
    ``gross_exposure``  gross + q * px > max_gross_exposure
    ``net_exposure``    |net + signed q * px| > max_net_exposure
    ``concentration``   the symbol's worst-side exposure after the order / equity > max
    ``buying_power``    q * px > equity * leverage - gross (equity <= 0 fails too)
17. ``max_open_orders`` open orders >= max_open_orders
18. ``open_orders_full`` the open-order table slot of the next id is still taken
19. ``rate_per_sec`` / 20. ``rate_per_min``: token buckets refilled on the stage's clock
                        (``now``) at rate/s and rate/60 s, burst = rate; 0 = off.

Exposure is conservative: open orders on both sides add to gross. ``px`` is returned so the
caller can book the order's notional.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from layouts.control import CONTROL, TRADING_HALTED, TRADING_REDUCING
from layouts.orders import BUY, ORDER_LIMIT, ORDER_MARKET, SELL, TIF_FOK
from layouts.risk import REASON
from ringbuf._atomics import load_relaxed
from ringbuf.seqlock import read_row

OK = -1
R_BAD = REASON["bad_intent"]
R_KILL = REASON["kill_switch"]
R_HALTED = REASON["halted"]
R_RESTRICTED = REASON["restricted"]
R_REDUCE_ONLY = REASON["reduce_only"]
R_QTY = REASON["max_order_qty"]
R_NO_DATA = REASON["no_market_data"]
R_COLLAR = REASON["price_collar"]
R_NOTIONAL = REASON["max_order_notional"]
R_DAILY_LOSS = REASON["daily_loss"]
R_DRAWDOWN = REASON["drawdown"]
R_POSITION = REASON["max_position"]
R_GROSS = REASON["gross_exposure"]
R_NET = REASON["net_exposure"]
R_CONCENTRATION = REASON["concentration"]
R_BUYING_POWER = REASON["buying_power"]
R_OPEN_ORDERS = REASON["max_open_orders"]
R_OPEN_FULL = REASON["open_orders_full"]
R_RATE_SEC = REASON["rate_per_sec"]
R_RATE_MIN = REASON["rate_per_min"]

IDX_KILL = CONTROL.fields["kill_switch"][1] // 8
IDX_TRADING_STATE = CONTROL.fields["trading_state"][1] // 8
EPS = 1e-9
READ_TRIES = 1000
NS_PER_S = 1e9
NS_PER_MIN = 60e9

#: Private scalar state the checks share with the stage (token buckets).
BUCKETS = np.dtype([("tok_s", "<f8"), ("tok_m", "<f8"), ("tok_ns", "<i8"), ("tok_init", "<i8")])


@njit(cache=True, inline="always")
def reduces(p, side, q):
    """True if an order of ``q`` on ``side`` reduces ``p`` without going beyond flat,
    counting the open orders already on that side."""
    if side == SELL:
        return p.qty > 0.0 and q + p.open_sell <= p.qty + EPS
    return p.qty < 0.0 and q + p.open_buy <= -p.qty + EPS


@njit(cache=True, inline="always")
def valid_order(sym, side, q, ot, tif, lp, nsym):
    return sym < nsym and (side == BUY or side == SELL) and math.isfinite(q) and q > 0.0 \
        and (ot == ORDER_MARKET or ot == ORDER_LIMIT) and tif <= TIF_FOK \
        and (ot != ORDER_LIMIT or (math.isfinite(lp) and lp > 0.0))


@njit(cache=True, inline="always")
def refill(bk, now, rate_s, rate_m):
    """Refill the token buckets ``bk[0]`` up to ``now`` (the first call fills them)."""
    b = bk[0]
    if b.tok_init == 0:
        b.tok_s, b.tok_m, b.tok_ns, b.tok_init = rate_s, rate_m, now, 1
        return
    dt = now - b.tok_ns
    if dt > 0:
        b.tok_s = min(rate_s, b.tok_s + dt * rate_s / NS_PER_S)
        b.tok_m = min(rate_m, b.tok_m + dt * rate_m / NS_PER_MIN)
        b.tok_ns = now


# ``read_top`` and ``pretrade`` run for every order (and read_top for every mark): compiled
# without numba's reference counting (``_nrt=False``), as their callers in procs.risk and
# procs.sim_venue; they allocate nothing and NRT would add an atomic incref/decref pair
# per array argument per call.
@njit(cache=True, _nrt=False)
def read_top(top_seqs, top_rows, s, top_buf):
    """(valid, bid, ask) of symbol ``s`` from the book's tops table (seqlock snapshot)."""
    if s >= top_rows.shape[0] or read_row(top_seqs, top_rows, s, top_buf, READ_TRIES) == 0:
        return False, 0.0, 0.0
    t = top_buf[0]
    if t.valid == 0 or not (t.bid > 0.0 and t.ask > 0.0):
        return False, 0.0, 0.0
    return True, t.bid, t.ask


@njit(cache=True, _nrt=False)
def pretrade(sym, side, q, ot, tif, lp, ref_px, pos, rs, lim, lim_qty, lim_pos, restricted,
             control, valid, bid, ask, now, bk, slot_taken):
    """Decide one new order; return (reason or -1, price used for its notional). See module doc."""
    nsym = pos.shape[0]
    if not valid_order(sym, side, q, ot, tif, lp, nsym):
        return R_BAD, 0.0
    if load_relaxed(control, IDX_KILL) != 0:
        return R_KILL, 0.0
    state = load_relaxed(control, IDX_TRADING_STATE)
    if state == TRADING_HALTED:
        return R_HALTED, 0.0
    s = np.int64(sym)
    if restricted[s] != 0:
        return R_RESTRICTED, 0.0
    p = pos[s]
    red = reduces(p, side, q)
    if state == TRADING_REDUCING and not red:
        return R_REDUCE_ONLY, 0.0
    L = lim[0]
    if q > lim_qty[s]:
        return R_QTY, 0.0
    collar = L.price_collar_bps * 1e-4
    if collar > 0.0 and not valid:
        return R_NO_DATA, 0.0
    if ot == ORDER_LIMIT:
        px = lp
    elif valid:
        px = ask if side == BUY else bid
    else:
        px = ref_px
    if not (px > 0.0):
        return R_NO_DATA, 0.0
    if collar > 0.0:
        if ot == ORDER_LIMIT:
            if (side == BUY and lp > ask * (1.0 + collar)) or (side == SELL and lp < bid * (1.0 - collar)):
                return R_COLLAR, px
        elif ref_px > 0.0:
            if (side == BUY and ask > ref_px * (1.0 + collar)) or (side == SELL and bid < ref_px * (1.0 - collar)):
                return R_COLLAR, px
    notional = q * px
    if notional > L.max_order_notional:
        return R_NOTIONAL, px
    r = rs[0]
    if not red:
        if L.daily_loss_limit > 0.0 and r.day_pnl <= -L.daily_loss_limit:
            return R_DAILY_LOSS, px
        if L.max_drawdown > 0.0 and r.drawdown >= L.max_drawdown:
            return R_DRAWDOWN, px
        if side == BUY:
            after = p.qty + p.open_buy + q
            worst = max(abs(after), abs(p.qty - p.open_sell))
        else:
            after = p.qty - p.open_sell - q
            worst = max(abs(after), abs(p.qty + p.open_buy))
        if abs(after) > lim_pos[s] + EPS:
            return R_POSITION, px
        if r.gross_exposure + notional > L.max_gross_exposure:
            return R_GROSS, px
        if abs(r.net_exposure + (notional if side == BUY else -notional)) > L.max_net_exposure:
            return R_NET, px
        eq = r.equity
        if eq <= 0.0:
            return R_BUYING_POWER, px
        if worst * px > L.max_concentration * eq:
            return R_CONCENTRATION, px
        if notional > eq * L.leverage - r.gross_exposure:
            return R_BUYING_POWER, px
    if np.int64(r.open_orders) >= L.max_open_orders:
        return R_OPEN_ORDERS, px
    if slot_taken:
        return R_OPEN_FULL, px
    rate_s, rate_m = L.rate_per_sec, L.rate_per_min
    if rate_s > 0.0 or rate_m > 0.0:
        refill(bk, now, rate_s, rate_m)
        b = bk[0]
        if rate_s > 0.0 and b.tok_s < 1.0:
            return R_RATE_SEC, px
        if rate_m > 0.0 and b.tok_m < 1.0:
            return R_RATE_MIN, px
        b.tok_s -= 1.0
        b.tok_m -= 1.0
    return OK, px
