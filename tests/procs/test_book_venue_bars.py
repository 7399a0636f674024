"""Venue bars (TICK_BAR records: bars the venue computed) through the book stage to the signal.

The book forwards each valid venue bar as one BOOK_EVENT (kind TICK_BAR, the symbol's top as
it is, the bar's fields, ``bar_spec = VENUE_BAR_SPEC``) and changes neither its books nor its
tables; bad bars are rejected by reason; an updated bar may re-send an older start; a
strategy's ``on_bar`` sees venue bars end to end, numba and Python flavours.

``VenueReferenceBook`` (the plain-Python ``ReferenceBook`` plus venue bars, written from the
rules in ``procs.l2book`` and ``procs.bars``) is the oracle of the random-stream tests in
``test_book.py`` and ``test_l2book.py`` too.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit

from bench.market_book import ReferenceBook
from layouts.market import (BAR_DAILY, BAR_MINUTE, BAR_UPDATED, TICK, TICK_BAR, TICK_QUOTE, TICK_TRADE,
                            VENUE_BAR_SPEC)
from layouts.orders import BAR_TICK, BAR_TIME, BUY, SELL
from procs.strategy import Intent, NumbaStrategy, Strategy, emit
from pyrt_shm.agent import AgentInvoker, CompositeAgent

HERE = __name__          # import path of this module, as the signal stage will import it
N_SYM = 4
MINUTE = 60 * 10**9
DAY = 86_400 * 10**9
T0 = 1_700_000_040 * 10**9                 # a UTC minute
SMALL = {"rings.md.capacity": 1024, "rings.top.capacity": 1024}
EV_BAR = 3                                 # procs.l2book.EV_BAR: checked against it below


# ---- the oracle ---------------------------------------------------------------------------------

class VenueReferenceBook(ReferenceBook):
    """``ReferenceBook`` plus venue bars: validated (flags, prices, volume, stamps per stream,
    updated bars exempt from the venue-time order) and forwarded as one event each."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.bar_floor = [{"minute": 0, "daily": 0} for _ in range(self.n_sym)]

    def apply_book(self, rec) -> int:
        _seq, recv, exch, s, kind, flags, c, v, o, h, lo, vw = tuple(rec)
        if kind != TICK_BAR or s >= self.n_sym:
            return super().apply_book(rec)
        if flags not in (BAR_MINUTE, BAR_UPDATED, BAR_DAILY):
            return self._reject("unsupported_kind")
        good = all(math.isfinite(x) and x > 0 for x in (o, h, lo, c)) and math.isfinite(vw) and vw >= 0
        if not good or lo > min(o, c) or h < max(o, c):
            return self._reject("bad_price")
        if not (math.isfinite(v) and v >= 0):
            return self._reject("bad_size")
        stream = "daily" if flags == BAR_DAILY else "minute"
        floor = self.bar_floor[s][stream]
        if not 0 < exch <= 2**63 - 1 - DAY or (self.recv[s] is not None and recv < self.recv[s]) \
                or (flags != BAR_UPDATED and exch < floor):
            return self._reject("out_of_order")
        self.recv[s] = recv
        self.bar_floor[s][stream] = max(floor, exch)
        self.counters["bars_out"] += 1
        return EV_BAR

    def apply(self, rec) -> list:
        rec = tuple(rec)
        if rec[4] != TICK_BAR:
            return super().apply(rec)
        self.counters["ticks_in"] += 1
        if self.apply_book(rec) == 0:
            return []
        seq, recv, exch, s, _kind, flags, c, v, o, h, lo, vw = rec
        top = self.tops[s]                                       # as it is: a bar changes no top
        micro = imb = 0.0
        if top["valid"]:
            tot = top["bid_size"] + top["ask_size"]
            micro = (top["bid"] * top["ask_size"] + top["ask"] * top["bid_size"]) / tot
            imb = (top["bid_size"] - top["ask_size"]) / tot
        self.counters["events_out"] += 1
        return [dict(tick_seq=seq, feed_ns=recv, sym=s, kind=TICK_BAR, valid=top["valid"], bid=top["bid"],
                     ask=top["ask"], bid_size=top["bid_size"], ask_size=top["ask_size"], microprice=micro,
                     imbalance=imb, trade_px=0.0, trade_size=0.0, bar_open=o, bar_high=h, bar_low=lo,
                     bar_close=c, bar_volume=v, bar_vwap=vw, bar_start_ns=exch,
                     bar_end_ns=exch + (DAY if flags == BAR_DAILY else MINUTE), bar_count=0,
                     bar_type=BAR_TIME, bar_spec=VENUE_BAR_SPEC)]


def venue_bar(sym, o, h, lo, c, v=1000.0, vw=0.0, t=T0, flags=BAR_MINUTE, **kw):
    """A TICK_BAR row (dict) laid out as a feed writes it (layouts.market)."""
    return dict(kind=TICK_BAR, sym=sym, flags=flags, price=c, size=v, bid=o, ask=h, bid_size=lo, ask_size=vw,
                exch_ns=t, **kw)


def quote(sym, bid, ask, bs=100.0, as_=200.0, **kw):
    return dict(kind=TICK_QUOTE, sym=sym, bid=bid, ask=ask, bid_size=bs, ask_size=as_, **kw)


def trade(sym, price, size=100.0, **kw):
    return dict(kind=TICK_TRADE, sym=sym, price=price, size=size, **kw)


def ticks(rows):
    """TICK records; seq = index, recv_ns = 1000 + index unless given."""
    t = np.zeros(len(rows), TICK)
    for i, r in enumerate(rows):
        t[i]["seq"], t[i]["recv_ns"] = i, 1000 + i
        for k, v in r.items():
            t[i][k] = v
    return t


def run_book(engine, drain_ring, rows, **params):
    over = dict(SMALL)
    over.update({f"stages.book.params.{k}": v for k, v in params.items()})
    mem = engine(over)
    book = mem.build_stage("book")
    md, t, i, out = mem.rings["md"], ticks(rows), 0, []
    for _ in range(10 * len(t) + 10):             # bounded: each round consumes or ends
        if i < len(t):
            i += md.offer(t[i:i + 512])
        w = book.do_work(0)
        out.append(drain_ring(mem.rings["top"]))
        if not w and i >= len(t):
            return mem, book, np.concatenate(out)
    raise AssertionError(f"the book stage did not consume {len(t)} ticks")


def nonzero(counters: dict) -> dict:
    return {k: v for k, v in counters.items() if v}


# ---- fields, tables, counters -------------------------------------------------------------------

def test_a_venue_bar_is_forwarded_with_its_fields_exactly(engine, drain_ring):
    rows = [quote(1, 99.5, 100.5, 300.0, 100.0, exch_ns=T0 + 5 * MINUTE),
            venue_bar(1, 100.0, 101.25, 99.75, 100.5, 12_345.0, 100.125, T0, BAR_MINUTE),
            venue_bar(1, 98.0, 102.0, 97.5, 101.0, 9e6, 0.0, T0 - 14 * 3600 * 10**9, BAR_DAILY),
            venue_bar(1, 100.0, 101.5, 99.75, 100.75, 12_500.0, 100.25, T0, BAR_UPDATED)]
    mem, book, ev = run_book(engine, drain_ring, rows)
    assert ev["kind"].tolist() == [TICK_QUOTE, TICK_BAR, TICK_BAR, TICK_BAR]
    assert ev["tick_seq"].tolist() == [0, 1, 2, 3] and ev["feed_ns"].tolist() == [1000, 1001, 1002, 1003]
    bars = ev[1:]
    got = [(float(e["bar_open"]), float(e["bar_high"]), float(e["bar_low"]), float(e["bar_close"]),
            float(e["bar_volume"]), float(e["bar_vwap"]), int(e["bar_start_ns"]), int(e["bar_end_ns"]),
            int(e["bar_count"]), int(e["bar_type"]), int(e["bar_spec"])) for e in bars]
    day0 = T0 - 14 * 3600 * 10**9
    assert got == [
        (100.0, 101.25, 99.75, 100.5, 12_345.0, 100.125, T0, T0 + MINUTE, 0, BAR_TIME, 0xFFFF),
        (98.0, 102.0, 97.5, 101.0, 9e6, 0.0, day0, day0 + DAY, 0, BAR_TIME, 0xFFFF),
        (100.0, 101.5, 99.75, 100.75, 12_500.0, 100.25, T0, T0 + MINUTE, 0, BAR_TIME, 0xFFFF),
    ]
    assert VENUE_BAR_SPEC == 0xFFFF
    for e in bars:                        # the symbol's top as it is, no trade
        assert (e["sym"], e["valid"], e["bid"], e["ask"], e["bid_size"], e["ask_size"]) == \
            (1, 1, 99.5, 100.5, 300.0, 100.0)
        assert e["microprice"] == ev[0]["microprice"] == (99.5 * 100.0 + 100.5 * 300.0) / 400.0
        assert e["imbalance"] == ev[0]["imbalance"] == 0.5
        assert e["trade_px"] == e["trade_size"] == 0.0 and e["sent_ns"] >= ev[0]["sent_ns"] > 0
    # a bar changes neither the top nor the depth table: they show the quote alone
    row, d = mem.tables["tops"].read(1), mem.tables["depth"].read(1)
    assert (row["updates"], row["updated_ns"], row["last"]) == (1, 1000, 0.0)
    assert mem.tables["tops"].version(1) == mem.tables["depth"].version(1) == 1 and d["updates"] == 1
    cv = book.counter_values()
    assert nonzero(cv) == {"ticks_in": 4, "events_out": 4, "quotes": 1, "bars_out": 3}
    assert cv["ticks_in"] == cv["quotes"] + cv["bars_out"] and mem.hists[book.h_lat]["total"] == 4


def test_a_bar_before_any_quote_carries_an_invalid_top(engine, drain_ring):
    mem, book, ev = run_book(engine, drain_ring, [venue_bar(3, 10.0, 10.0, 10.0, 10.0, 0.0)])
    (e,) = ev
    assert (e["kind"], e["sym"], e["valid"], e["bid"], e["ask"], e["microprice"], e["imbalance"]) == \
        (TICK_BAR, 3, 0, 0.0, 0.0, 0.0, 0.0)
    assert (e["bar_close"], e["bar_volume"], e["bar_spec"]) == (10.0, 0.0, VENUE_BAR_SPEC)   # volume 0 is valid
    assert mem.tables["tops"].version(3) == 0 and book.counter_values()["bars_out"] == 1


def test_venue_bars_and_bars_built_from_trades_are_told_apart(engine, drain_ring):
    rows = [trade(0, 10.0), venue_bar(0, 9.0, 11.0, 8.0, 10.5, t=T0), trade(0, 11.0)]
    _, book, ev = run_book(engine, drain_ring, rows, bars=["2t"])
    assert ev["kind"].tolist() == [TICK_TRADE, TICK_BAR, TICK_TRADE, TICK_BAR]
    built, venue = ev[3], ev[1]
    assert (built["bar_spec"], built["bar_type"], built["bar_count"], built["bar_open"]) == (0, BAR_TICK, 2, 10.0)
    assert (venue["bar_spec"], venue["bar_type"], venue["bar_count"], venue["bar_open"]) == \
        (VENUE_BAR_SPEC, BAR_TIME, 0, 9.0)
    cv = book.counter_values()
    assert nonzero(cv) == {"ticks_in": 3, "events_out": 4, "trades": 2, "bars_out": 2}


def test_a_venue_bar_needs_one_slot_of_the_output_ring(engine, drain_ring):
    """A trade may make 1 + len(bars) events, a venue bar one: the bar takes the last of 4
    slots; the trade after it waits for room for 4."""
    mem = engine({"rings.top.capacity": 4, "stages.book.params.bars": ["1t", "2t", "3t"]})
    book = mem.build_stage("book")
    mem.rings["md"].put(ticks([quote(0, 9.0, 11.0), quote(0, 9.5, 10.5), quote(0, 9.6, 10.4),
                               venue_bar(0, 10, 10, 10, 10), trade(0, 10.0)]))
    assert book.do_work(0) == 4 and book.do_work(0) == 0
    assert drain_ring(mem.rings["top"])["kind"].tolist() == [TICK_QUOTE] * 3 + [TICK_BAR]
    assert book.do_work(0) == 1
    assert drain_ring(mem.rings["top"])["kind"].tolist() == [TICK_TRADE] + [TICK_BAR] * 1


# ---- validation ---------------------------------------------------------------------------------

GOOD = dict(sym=0, o=100.0, h=101.0, lo=99.0, c=100.5, v=500.0, vw=100.2, t=T0 + 10 * MINUTE)
BAD = [
    ("rejected_unknown_symbol", dict(sym=N_SYM)),
    ("rejected_unsupported_kind", dict(flags=3)),                     # a bar of unknown length
    ("rejected_unsupported_kind", dict(flags=0xFFFF)),
    ("rejected_bad_price", dict(o=math.nan)),
    ("rejected_bad_price", dict(h=math.inf)),
    ("rejected_bad_price", dict(lo=0.0)),
    ("rejected_bad_price", dict(c=-1.0)),
    ("rejected_bad_price", dict(vw=-0.5)),
    ("rejected_bad_price", dict(vw=math.nan)),
    ("rejected_bad_price", dict(lo=100.25)),                          # low above the open
    ("rejected_bad_price", dict(lo=100.75, h=102.0, o=101.5)),        # low above the close
    ("rejected_bad_price", dict(h=100.25)),                           # high below the close
    ("rejected_bad_price", dict(h=100.75, o=100.9)),                  # high below the open
    ("rejected_bad_size", dict(v=-1.0)),
    ("rejected_bad_size", dict(v=math.nan)),
    ("rejected_bad_size", dict(v=math.inf)),
    ("rejected_out_of_order", dict(t=0)),                             # no start
    ("rejected_out_of_order", dict(t=-MINUTE)),
    ("rejected_out_of_order", dict(t=2**63 - 1)),                     # its end would not fit
    ("rejected_out_of_order", dict(t=T0 + 9 * MINUTE)),               # behind the last minute bar
    ("rejected_out_of_order", dict(t=T0 - DAY, flags=BAR_DAILY)),     # behind the last daily bar
    ("rejected_out_of_order", dict(recv_ns=999)),                     # the feed's stamp went back
    ("rejected_out_of_order", dict(recv_ns=999, flags=BAR_UPDATED)),
]


@pytest.mark.parametrize("reason, change", BAD, ids=[f"{i}-{r}" for i, (r, _) in enumerate(BAD)])
def test_a_bad_bar_is_rejected_by_reason_and_not_forwarded(engine, drain_ring, reason, change):
    """A quote and a minute and a daily bar first (stamps recv 1000, exch T0 + 10 min and T0);
    then the bad bar; then a good bar, which still passes."""
    spec = dict(GOOD, flags=BAR_MINUTE, recv_ns=1003)
    spec.update(change)
    sym, flags, recv = spec.pop("sym"), spec.pop("flags"), spec.pop("recv_ns")
    bad = venue_bar(sym, *(spec[k] for k in ("o", "h", "lo", "c", "v", "vw", "t")), flags=flags, recv_ns=recv)
    rows = [quote(0, 99.0, 100.0, recv_ns=1000), venue_bar(0, 100.0, 100.0, 100.0, 100.0, t=T0 + 10 * MINUTE,
                                                           recv_ns=1000),
            venue_bar(0, 100.0, 100.0, 100.0, 100.0, t=T0, flags=BAR_DAILY, recv_ns=1000), bad,
            venue_bar(0, 100.0, 101.0, 99.0, 100.5, t=T0 + 11 * MINUTE, recv_ns=1004)]
    _, book, ev = run_book(engine, drain_ring, rows)
    assert ev["tick_seq"].tolist() == [0, 1, 2, 4]
    cv = book.counter_values()
    assert nonzero(cv) == {"ticks_in": 5, "events_out": 4, "quotes": 1, "bars_out": 3, reason: 1}


def test_the_good_bar_of_the_rejection_table_is_accepted(engine, drain_ring):
    """The table's base bar itself is fine (so each row tests its one change)."""
    spec = dict(GOOD)
    _, book, ev = run_book(engine, drain_ring, [venue_bar(spec.pop("sym"), *spec.values())])
    assert len(ev) == 1 and book.counter_values()["bars_out"] == 1


# ---- order: streams and updated bars ------------------------------------------------------------

def test_updated_bars_may_resend_an_older_start_and_streams_are_separate(engine, drain_ring):
    m = lambda t, flags=BAR_MINUTE, c=100.0: venue_bar(0, c, c, c, c, t=t, flags=flags)   # noqa: E731
    rows = [
        m(T0 + MINUTE),                              # 0 ok: minute floor T0 + 1
        m(T0 + 2 * MINUTE),                          # 1 ok: floor T0 + 2
        m(T0 + MINUTE, BAR_UPDATED, 101.0),          # 2 ok: corrects the T0 + 1 bar, older than the floor
        m(T0 + MINUTE),                              # 3 rejected: a minute bar behind the floor
        m(T0 + 2 * MINUTE, BAR_UPDATED, 102.0),      # 4 ok: corrects the latest one
        m(T0 + 2 * MINUTE),                          # 5 ok: equal start is in order (floor unchanged by 2)
        m(T0 - 10 * 3600 * 10**9, BAR_DAILY),        # 6 ok: the day started before its minutes
        m(T0 - 10 * 3600 * 10**9, BAR_DAILY, 103.0),  # 7 ok: the daily bar re-sent as the day goes on
        m(T0 + 3 * MINUTE, BAR_UPDATED),             # 8 ok: an updated bar ahead moves the floor
        m(T0 + 2 * MINUTE),                          # 9 rejected: now behind
        quote(0, 99.0, 100.0, exch_ns=T0),           # 10 ok: quotes are a stream of their own
    ]
    _, book, ev = run_book(engine, drain_ring, rows)
    assert ev["tick_seq"].tolist() == [0, 1, 2, 4, 5, 6, 7, 8, 10]
    bars = ev[ev["kind"] == TICK_BAR]
    assert bars["bar_close"].tolist() == [100.0, 100.0, 101.0, 102.0, 100.0, 100.0, 103.0, 100.0]
    assert bars["bar_start_ns"].tolist()[2] == T0 + MINUTE and bars["bar_end_ns"].tolist()[2] == T0 + 2 * MINUTE
    assert nonzero(book.counter_values()) == {"ticks_in": 11, "events_out": 9, "quotes": 1, "bars_out": 8,
                                              "rejected_out_of_order": 2}


def test_a_bar_moves_the_symbols_receive_floor_for_every_kind(engine, drain_ring):
    rows = [venue_bar(0, 1.0, 1.0, 1.0, 1.0, recv_ns=5000), quote(0, 1.0, 2.0, recv_ns=4999),
            trade(1, 1.0, recv_ns=4999)]                  # another symbol: its own floor
    _, book, ev = run_book(engine, drain_ring, rows)
    assert ev["tick_seq"].tolist() == [0, 2]
    assert book.counter_values()["rejected_out_of_order"] == 1


def test_the_oracle_agrees_with_the_stage_on_a_mixed_stream(engine, drain_ring):
    """Quotes, trades and venue bars of every kind, good and bad, two symbols, some stamps going
    back: event for event (and counter for counter) what ``VenueReferenceBook`` says."""
    rng = np.random.default_rng(7)
    rows, recv = [], 1000
    for i in range(3000):
        recv += int(rng.choice([2, 2, 2, 1, 0, -3]))
        s = N_SYM if rng.random() < 0.01 else int(rng.integers(0, 3))      # 1 % unknown symbols
        x = rng.random()
        if x < 0.4:
            b = round(100 + rng.normal(), 2)
            rows.append(quote(s, b, b + 0.01 * int(rng.integers(1, 4)), recv_ns=recv))
        elif x < 0.6:
            rows.append(trade(s, round(100 + rng.normal(), 2), recv_ns=recv))
        else:
            o, c = (round(100 + rng.normal(), 2) for _ in range(2))
            h = max(o, c) + float(rng.choice([0.0, 0.5, 0.5, -0.01]))      # sometimes below the body
            lo = min(o, c) - float(rng.choice([0.0, 0.5, 0.5, -0.01]))
            flags = int(rng.choice([BAR_MINUTE, BAR_MINUTE, BAR_UPDATED, BAR_DAILY, 7]))
            if flags == BAR_DAILY:                        # days go on, now and then a stale one
                t = T0 + DAY * (i // 1500 - int(rng.random() < 0.1))
            else:                                         # minutes go on, some stale or re-sent
                t = T0 + MINUTE * (i // 20 - int(rng.choice([0, 0, 0, 1, 5])))
            v = float(rng.choice([0.0, 100.0, 2500.0, -1.0]))
            rows.append(venue_bar(s, o, h, lo, c, v, float(rng.choice([0.0, c, math.nan])), t, flags, recv_ns=recv))
    mem, book, ev = run_book(engine, drain_ring, rows, bars=["3t"])
    ref = VenueReferenceBook(N_SYM, bars=("3t",))
    want = [w for r in ticks(rows).tolist() for w in ref.apply(r)]
    assert len(ev) == len(want)
    for e, w in zip(ev, want):
        for k, v in w.items():
            assert e[k] == v, (k, e, w)
        for k in set(ev.dtype.names) - set(w) - {"sent_ns"}:
            assert e[k] == 0, (k, e)
    for s in range(N_SYM):                                # venue bars left the tops alone
        row = mem.tables["tops"].read(s)
        assert {k: row[k] for k in ref.tops[s]} == ref.tops[s], s
    cv = book.counter_values()
    assert cv == ref.counters
    venue, built = ev["bar_spec"] == VENUE_BAR_SPEC, (ev["kind"] == TICK_BAR) & (ev["bar_spec"] == 0)
    assert venue.sum() > 100 and built.sum() > 50 and cv["bars_out"] == venue.sum() + built.sum()
    assert min(cv[k] for k in ("rejected_bad_price", "rejected_bad_size", "rejected_unsupported_kind",
                               "rejected_out_of_order")) > 50


# ---- end to end: a strategy's on_bar -----------------------------------------------------------

class VenueBarRecorder(Strategy):
    """Python flavour: remembers every bar; buys the volume of a venue bar, sells 1 on a built one."""

    def __init__(self, ctx):
        super().__init__(ctx)
        self.bars = []

    def on_bar(self, ev):
        self.bars.append(ev)
        if ev.bar_spec == VENUE_BAR_SPEC:
            return Intent.buy(ev.sym, ev.bar_volume, tag=int(ev.bar_end_ns - ev.bar_start_ns == DAY))
        return Intent.sell(ev.sym, 1.0, tag=2)


@njit(cache=True)
def _nb_on_bar(ev, state, out):
    state[ev.sym, 0] += 1.0
    if ev.bar_spec == VENUE_BAR_SPEC:
        return emit(out, 0, ev.sym, BUY, ev.bar_volume, 0.0, 1 if ev.bar_end_ns - ev.bar_start_ns == DAY else 0)
    return emit(out, 0, ev.sym, SELL, 1.0, 0.0, 2)


class NumbaVenueBars(NumbaStrategy):
    """Numba flavour of ``VenueBarRecorder`` (counts bars per symbol in its state)."""

    on_bar = _nb_on_bar

    def make_state(self):
        return np.zeros((len(self.ctx.symbols), 1))


@pytest.mark.parametrize("strategy", ["VenueBarRecorder", "NumbaVenueBars"])
def test_a_strategy_sees_venue_bars_end_to_end(engine, drain_ring, strategy):
    """Book and signal fused over local memory, as in test_pipeline_local: ticks in ``md``,
    intents out of ``intent``."""
    mem = engine(dict(SMALL, **{"stages.signal.class": "procs.signal:SignalStage",
                                "stages.signal.params.strategy": f"{HERE}:{strategy}",
                                "stages.book.params.bars": ["2t"]}))
    book, sig = mem.build_stage("book"), mem.build_stage("signal")
    for s in (book, sig):
        s.warm_up()
    rows = [venue_bar(2, 50.0, 51.0, 49.0, 50.5, 700.0, 50.2, T0),                 # before any quote
            quote(2, 50.0, 50.5),
            venue_bar(2, 48.0, 52.0, 47.0, 50.25, 9000.0, 0.0, T0 - 9 * 3600 * 10**9, BAR_DAILY),
            trade(2, 50.1), trade(2, 50.2),                                         # a built 2t bar
            venue_bar(2, 50.0, 51.5, 49.0, 50.75, 800.0, 50.3, T0, BAR_UPDATED),
            venue_bar(9, 1.0, 1.0, 1.0, 1.0)]                                       # unknown symbol
    mem.rings["md"].put(ticks(rows))
    inv = AgentInvoker(CompositeAgent([book, sig]))
    inv.run_until_idle(max_cycles=10_000, idle_cycles=3)
    inv.close()
    intents = drain_ring(mem.rings["intent"])
    assert [(int(o["sym"]), int(o["side"]), float(o["qty"]), int(o["tag"]), float(o["ref_px"])) for o in intents] == [
        (2, BUY, 700.0, 0, 50.5),            # no book yet: ref = the bar's close
        (2, BUY, 9000.0, 1, 50.25),          # the mid of the book
        (2, SELL, 1.0, 2, 50.25),            # the bar built from two trades
        (2, BUY, 800.0, 0, 50.25),           # the corrected minute bar
    ]
    assert intents["feed_ns"].tolist() == [1000, 1002, 1004, 1005]
    sc = sig.counter_values()
    assert (sc["events_in"], sc["bars"], sc["trades"], sc["quotes"]) == (7, 4, 2, 1)
    assert book.counter_values()["rejected_unknown_symbol"] == 1
    if strategy == "VenueBarRecorder":
        seen = sig.strategy.bars
        assert [(e.bar_spec, e.bar_start_ns, e.bar_end_ns, e.bar_close, e.bar_vwap, e.bar_count) for e in seen] == [
            (VENUE_BAR_SPEC, T0, T0 + MINUTE, 50.5, 50.2, 0),
            (VENUE_BAR_SPEC, T0 - 9 * 3600 * 10**9, T0 - 9 * 3600 * 10**9 + DAY, 50.25, 0.0, 0),
            (0, seen[2].bar_start_ns, seen[2].bar_end_ns, 50.2, pytest.approx((50.1 + 50.2) / 2), 2),
            (VENUE_BAR_SPEC, T0, T0 + MINUTE, 50.75, 50.3, 0),
        ]
        assert (seen[0].valid, seen[1].valid, seen[1].mid) == (0, 1, 50.25)
    else:
        assert sig.state[2, 0] == 4.0 and sig.state.sum() == 4.0


def test_ev_bar_is_the_l2book_code():
    from procs.l2book import EV_BAR as code

    assert code == EV_BAR
