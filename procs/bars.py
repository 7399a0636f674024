"""Bars for the book stage: built from trades (time, tick, volume bars, per symbol and bar
specification), and the fields of the venue's own bars, which the book forwards.

Specifications (book param ``bars``, a list of strings; the index in the list is the
event's ``bar_spec``):

* ``"<n><unit>"`` with unit ``us``, ``ms``, ``s``, ``m``, ``h``: **time bars** of that period (e.g.
  ``"1s"``, ``"250ms"``, ``"1m"``). A trade at time ``t`` belongs to interval
  ``floor(t / period)``; intervals are aligned to the clock's epoch (with venue stamps,
  ``"1m"`` bars are UTC minutes). A bar completes when the first trade of a *later*
  interval arrives (that trade opens the next bar); an interval without trades makes no
  bar, as Alpaca's bars. Its ``bar_start_ns``/``bar_end_ns`` are the interval's bounds.
* ``"<N>t"``: **tick bars**: a bar completes with its ``N``-th trade.
* ``"<V>v"`` (V may have decimals): **volume bars**: a bar completes with the trade that
  brings its volume to ``>= V``; trades are not split, so a bar's volume may exceed ``V``.
  Tick and volume bars carry the times of their first and last trades.

The bar clock is the trade's ``exch_ns`` when non-zero (the venue's time), else its
``recv_ns`` (the feed's receive stamp). A feed should stamp all trades of a symbol or none.
The book rejects trades whose stamps go backwards, so each symbol's bar clock is monotonic.

Every bar carries OHLC, volume (sum of sizes), VWAP (``sum(price * size) / volume``,
accumulated in trade order) and the trade count. Only accepted trades make bars.

**Venue bars** (TICK_BAR records, bars the venue computed: ``layouts.market``) are not built
here but forwarded: ``venue_bar_fields`` fills a BOOK_EVENT's bar fields from the record,
the same fields a built bar has, so a strategy's ``on_bar`` reads both alike:
``bar_open/high/low/close/volume/vwap`` as sent (vwap 0 when the venue gives none),
``bar_start_ns`` = the record's ``exch_ns`` (venues label a bar by its start; unix ns),
``bar_end_ns`` = start + ``VENUE_MINUTE_NS`` for minute and updated bars, + ``VENUE_DAY_NS``
for daily bars (a nominal 24 h: the venue's day is the calendar day it starts, 23 or 25 h
long on a daylight-saving change, and the trading session is shorter),
``bar_count`` 0 (a TICK has no field for the venue's trade count: unknown),
``bar_type`` BAR_TIME, ``bar_spec`` ``VENUE_BAR_SPEC`` (never a spec index, which is <
``MAX_SPECS``: this is how a strategy tells venue bars from the book's own). An updated bar
carries the start of the bar it corrects: a strategy that sees a venue bar whose start and
length it has seen before is looking at a correction, and decides what to do with it.
"""
from __future__ import annotations

import re

import numpy as np
from numba import njit

from layouts.market import BAR_DAILY, VENUE_BAR_SPEC
from layouts.orders import BAR_TICK, BAR_TIME, BAR_VOLUME

MAX_SPECS = 16
#: Lengths of venue bars: ``bar_end_ns - bar_start_ns`` (see the module doc).
VENUE_MINUTE_NS = 60 * 1_000_000_000
VENUE_DAY_NS = 86_400 * 1_000_000_000
#: The latest start a venue bar may have: its end must fit in an int64 (``procs.l2book``
#: rejects later ones, so an end never wraps).
VENUE_MAX_START = np.iinfo(np.int64).max - VENUE_DAY_NS
_UNIT_NS = {"us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_SPEC = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|t|v)\s*$")

#: ``bf`` / ``out_f`` columns (float64) and ``bi`` columns (int64).
F_OPEN, F_HIGH, F_LOW, F_CLOSE, F_VOLUME, F_PV = range(6)
N_F = 6
I_COUNT, I_START, I_END, I_BUCKET = range(4)
N_I = 4
#: ``out_i`` columns of a completed bar.
O_COUNT, O_START, O_END, O_SPEC = range(4)


def parse_bar_specs(specs, where: str = "bars"):
    """``(types int64[n], ints int64[n], volumes float64[n])`` from spec strings.

    ``ints`` is the period in ns (time bars) or the trade count (tick bars); ``volumes`` the
    volume threshold (volume bars). ValueError naming ``where`` for anything else.
    """
    if isinstance(specs, str) or not isinstance(specs, (list, tuple)):
        raise ValueError(f"{where}: expected a list of bar specs like [\"1s\", \"100t\", \"5000v\"], "
                         f"got {specs!r}")
    if len(specs) > MAX_SPECS:
        raise ValueError(f"{where}: at most {MAX_SPECS} bar specs, got {len(specs)}")
    types, ints, vols, seen = [], [], [], set()
    for i, spec in enumerate(specs):
        m = _SPEC.match(spec) if isinstance(spec, str) else None
        if m is None:
            raise ValueError(f"{where}[{i}]: bad bar spec {spec!r}: expected <n>us|ms|s|m|h (time), "
                             f"<N>t (trades) or <V>v (volume), e.g. \"1s\", \"100t\", \"5000v\"")
        num, unit = m.group(1), m.group(2)
        if unit == "v":
            v = float(num)
            if not v > 0:
                raise ValueError(f"{where}[{i}]: volume bar threshold must be > 0, got {spec!r}")
            key = (BAR_VOLUME, 0, v)
        else:
            if "." in num:
                raise ValueError(f"{where}[{i}]: {spec!r}: time and tick bars take an integer")
            n = int(num)
            if n <= 0:
                raise ValueError(f"{where}[{i}]: {spec!r}: must be > 0")
            key = (BAR_TICK, n, 0.0) if unit == "t" else (BAR_TIME, n * _UNIT_NS[unit], 0.0)
        if key in seen:
            raise ValueError(f"{where}[{i}]: {spec!r} repeats an earlier bar spec")
        seen.add(key)
        types.append(key[0])
        ints.append(key[1])
        vols.append(key[2])
    return np.array(types, np.int64), np.array(ints, np.int64), np.array(vols, np.float64)


def new_bars(n_sym: int, n_specs: int) -> dict:
    """Zeroed bar state: ``bf`` float64[n_sym, n_specs, N_F], ``bi`` int64[n_sym, n_specs, N_I],
    and the per-trade scratch ``out_f`` / ``out_i`` (completed bars of one trade)."""
    k = max(n_specs, 1)
    return {"bf": np.zeros((n_sym, k, N_F)), "bi": np.zeros((n_sym, k, N_I), np.int64),
            "out_f": np.zeros((k, N_F)), "out_i": np.zeros((k, N_I), np.int64)}


@njit(cache=True, inline="always")
def _add(bf, bi, s, j, p, q, t):
    if bi[s, j, I_COUNT] == 0:
        bf[s, j, F_OPEN] = p
        bf[s, j, F_HIGH] = p
        bf[s, j, F_LOW] = p
        bf[s, j, F_VOLUME] = 0.0
        bf[s, j, F_PV] = 0.0
        bi[s, j, I_START] = t
    else:
        if p > bf[s, j, F_HIGH]:
            bf[s, j, F_HIGH] = p
        if p < bf[s, j, F_LOW]:
            bf[s, j, F_LOW] = p
    bf[s, j, F_CLOSE] = p
    bf[s, j, F_VOLUME] += q
    bf[s, j, F_PV] += p * q
    bi[s, j, I_COUNT] += 1
    bi[s, j, I_END] = t


@njit(cache=True, inline="always")
def _emit(bf, bi, s, j, out_f, out_i, k, start, end):
    for c in range(F_PV):
        out_f[k, c] = bf[s, j, c]
    out_f[k, F_PV] = bf[s, j, F_PV] / bf[s, j, F_VOLUME]      # the VWAP
    out_i[k, O_COUNT] = bi[s, j, I_COUNT]
    out_i[k, O_START] = start
    out_i[k, O_END] = end
    out_i[k, O_SPEC] = j
    bi[s, j, I_COUNT] = 0


@njit(cache=True, _nrt=False)
def bars_on_trade(types, ints, vols, bf, bi, s, p, q, t, out_f, out_i):
    """Add trade (price ``p``, size ``q`` > 0, bar clock ``t``) to every bar of symbol ``s``.

    Completed bars are copied, in spec order, into ``out_f[k]`` (open, high, low, close,
    volume, vwap) and ``out_i[k]`` (count, start, end, spec); return how many (<= n_specs).
    """
    k = 0
    for j in range(types.shape[0]):
        typ = types[j]
        if typ == BAR_TIME:
            per = ints[j]
            b = t // per
            if bi[s, j, I_COUNT] > 0 and b != bi[s, j, I_BUCKET]:
                start = bi[s, j, I_BUCKET] * per
                _emit(bf, bi, s, j, out_f, out_i, k, start, start + per)
                k += 1
            _add(bf, bi, s, j, p, q, t)
            bi[s, j, I_BUCKET] = b
        else:
            _add(bf, bi, s, j, p, q, t)
            if (typ == BAR_TICK and bi[s, j, I_COUNT] >= ints[j]) or \
                    (typ == BAR_VOLUME and bf[s, j, F_VOLUME] >= vols[j]):
                _emit(bf, bi, s, j, out_f, out_i, k, bi[s, j, I_START], bi[s, j, I_END])
                k += 1
    return k


@njit(cache=True, inline="always")
def bar_record_fields(e, t, end_ns):
    """Fill the bar fields of BOOK_EVENT ``e`` from the TICK_BAR record ``t`` (a bar computed
    elsewhere: by the venue, or read from a file by ``procs.replay_feed:ReplayBars``), ending
    at ``end_ns``: OHLC, volume and VWAP as the record carries them, ``bar_start_ns`` = its
    ``exch_ns``, ``bar_count`` 0, ``bar_type`` BAR_TIME, ``bar_spec`` ``VENUE_BAR_SPEC``."""
    e.bar_open = t.bid
    e.bar_high = t.ask
    e.bar_low = t.bid_size
    e.bar_close = t.price
    e.bar_volume = t.size
    e.bar_vwap = t.ask_size
    e.bar_start_ns = t.exch_ns
    e.bar_end_ns = end_ns
    e.bar_count = 0
    e.bar_type = BAR_TIME
    e.bar_spec = VENUE_BAR_SPEC


# Not inlined, and without reference counting (nothing is allocated): venue bars are rare (one
# a minute per symbol and stream), so their copy stays out of the book step's hot loop body.
@njit(cache=True, _nrt=False)
def venue_bar_fields(e, t):
    """Fill the bar fields of BOOK_EVENT ``e`` from the venue bar ``t`` (a validated TICK_BAR
    record: ``procs.l2book``), as the module doc says."""
    bar_record_fields(e, t, t.exch_ns + (VENUE_DAY_NS if t.flags == BAR_DAILY else VENUE_MINUTE_NS))
