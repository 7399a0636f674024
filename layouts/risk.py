"""Risk-state tables owned by the risk stage: rejections by reason, the portfolio, P&L history.

* ``RISK_REJECTIONS`` (one row): one ``u8`` counter per rejection reason, named by the
  reason (``REJECT_REASONS``). It is a table rather than stage counters because there are
  more reasons than a stage has counters; the report and readers show the fields as
  ``rej_<reason>`` of the risk stage. Every rejected intent, algo child or stop order adds
  one to exactly one field.
* ``RISK_STATE`` (one row): the portfolio (equity, P&L, exposure, drawdown), the trading
  state as risk last set or saw it, why it halted, and when it saw the kill switch.
* ``PNL_SAMPLE`` (``pnl_history``, N rows used as a ring): the portfolio sampled on the risk
  stage's clock every ``pnl_sample_ms``; row ``i % N`` holds sample ``i``, ``RISK_STATE.samples``
  counts them. VaR/CVaR are computed from it off the hot path (``procs.risk_var``).
"""
from __future__ import annotations

import numpy as np

#: Rejection reasons in check order (the first failed check is the one counted). The field
#: index in ``RISK_REJECTIONS`` is the reason code.
REJECT_REASONS = (
    "bad_intent",          #: unknown symbol/side/type/tif/algo, qty or price not finite and > 0
    "kill_switch",         #: control.kill_switch is set
    "halted",              #: trading state HALTED
    "restricted",          #: symbol on the restricted list
    "reduce_only",         #: trading state REDUCING and the order would not reduce the position
    "max_order_qty",
    "no_market_data",      #: no valid top of book to price or collar the order
    "price_collar",        #: limit (or the market's move since ref_px) beyond the collar
    "max_order_notional",
    "daily_loss",          #: the day's net P&L is at or below -daily_loss_limit
    "drawdown",            #: equity is max_drawdown or more below its peak
    "max_position",        #: |position + open orders on the side + qty| > max_position
    "gross_exposure",
    "net_exposure",
    "concentration",       #: the symbol's exposure / equity > max_concentration
    "buying_power",
    "max_open_orders",
    "open_orders_full",    #: the open-order table slot of the next id is still taken
    "rate_per_sec",        #: token bucket, per second
    "rate_per_min",        #: token bucket, per minute
)
N_REASONS = len(REJECT_REASONS)
REASON = {name: i for i, name in enumerate(REJECT_REASONS)}

RISK_REJECTIONS = np.dtype([(name, "<u8") for name in REJECT_REASONS], align=True)

#: ``halt_reason`` values.
HALT_NONE = 0
HALT_DAILY_LOSS = 1
HALT_DRAWDOWN = 2
HALT_KILL_SWITCH = 3
HALT_EXTERNAL = 4       #: someone else set trading_state HALTED
HALT_REASON_NAMES = {HALT_NONE: "none", HALT_DAILY_LOSS: "daily loss limit",
                     HALT_DRAWDOWN: "max drawdown", HALT_KILL_SWITCH: "kill switch",
                     HALT_EXTERNAL: "external"}

RISK_STATE = np.dtype(
    [
        ("updated_ns", "<i8"),      #: risk's clock at the last update
        ("start_equity", "<f8"),
        ("equity", "<f8"),          #: start_equity + net_pnl
        ("peak_equity", "<f8"),
        ("drawdown", "<f8"),        #: peak_equity - equity
        ("max_drawdown", "<f8"),    #: largest drawdown seen
        ("realized", "<f8"),        #: sums over symbols
        ("unrealized", "<f8"),
        ("fees", "<f8"),
        ("net_pnl", "<f8"),
        ("day_pnl", "<f8"),         #: net_pnl since the day started (the run, or day_start)
        ("gross_exposure", "<f8"),  #: sum (|qty| + open_buy + open_sell) * mark
        ("net_exposure", "<f8"),    #: sum (qty + open_buy - open_sell) * mark
        ("buying_power", "<f8"),    #: equity * leverage - gross_exposure
        ("open_orders", "<u8"),
        ("trading_state", "<u8"),   #: TRADING_* as risk last saw or set it
        ("halt_reason", "<u8"),     #: HALT_*
        ("halted_ns", "<i8"),
        ("kill_seen_ns", "<i8"),    #: risk's clock when it first saw the kill switch
        ("cancels_sent_ns", "<i8"),  #: when the last open order got its cancel after a kill/halt
        ("samples", "<u8"),         #: P&L samples written to pnl_history
        ("stops", "<u8"),           #: stop-loss + trailing-stop triggers
        ("algo_active", "<u8"),     #: algo parents working
    ],
    align=True,
)

PNL_SAMPLE = np.dtype(
    [
        ("t_ns", "<i8"),            #: risk's clock (0 = row not written yet)
        ("seq", "<u8"),             #: sample number, from 1
        ("equity", "<f8"),
        ("net_pnl", "<f8"),
        ("realized", "<f8"),
        ("unrealized", "<f8"),
        ("fees", "<f8"),
        ("gross_exposure", "<f8"),
    ],
    align=True,
)
