"""Malformed input: counted and dropped, never an exception, no state change for the bad parts.

Hypothesis builds frames mixing valid quotes/trades (strictly newer, never duplicates) with
broken elements: non-objects, a required field deleted, a required field of the wrong type,
a timestamp that is not RFC-3339. The records written must be exactly the valid elements,
in order, with gap-free seq; ``malformed`` must count exactly the broken ones; and the
duplicate marks must not have moved for them (a later valid message is still accepted).
Whole frames that are not JSON or not an array count once and write nothing.
"""
from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layouts.market import TICK_QUOTE, TICK_TRADE
from test_alpaca_md_support import T0, Rig, quote, trade

SYMS = ("AAPL", "MSFT")
FUTURE = T0 + 10**17            # broken elements carry far-future stamps and ids: if any of them
FUTURE_ID = 10**15              # moved a duplicate mark, the final valid messages would be dropped

REQUIRED = {"q": ("T", "S", "t", "bp", "bs", "ap", "as"), "t": ("T", "S", "i", "t", "p", "s")}
NUMBER_FIELDS = {"q": ("bp", "bs", "ap", "as"), "t": ("i", "p", "s")}
INTS = st.integers(-2**62, 2**62)          # orjson serialises 64-bit integers only
WRONG_NUMBER = st.one_of(st.text(max_size=5), st.none(), st.lists(INTS, max_size=2),
                         st.dictionaries(st.text(max_size=2), INTS, max_size=2))
WRONG_SYMBOL = st.one_of(st.none(), INTS, st.lists(st.text(max_size=3), max_size=2),
                         st.dictionaries(st.text(max_size=2), INTS, max_size=1), st.floats(allow_nan=False))
WRONG_TIME = st.one_of(st.none(), INTS, st.floats(allow_nan=False), st.lists(INTS, max_size=1),
                       st.text(max_size=12).filter(lambda s: "T" not in s), st.just("2021-02-22T15:51:45"),
                       st.just("2021-02-30T00:00:00Z"), st.just("2021-02-22T15:51:45.12x4Z"))
NON_OBJECT = st.one_of(INTS, st.floats(allow_nan=False), st.text(max_size=5), st.none(), st.booleans(),
                       st.lists(INTS, max_size=3))


@st.composite
def broken(draw):
    """A malformed element (JSON-serialisable)."""
    how = draw(st.sampled_from(["non_object", "missing", "wrong_number", "wrong_symbol", "wrong_time"]))
    if how == "non_object":
        return draw(NON_OBJECT)
    kind = draw(st.sampled_from(["q", "t"]))
    m = quote(draw(st.sampled_from(SYMS)), t=FUTURE) if kind == "q" else \
        trade(draw(st.sampled_from(SYMS)), i=FUTURE_ID, t=FUTURE)
    if how == "missing":
        del m[draw(st.sampled_from(REQUIRED[kind]))]
    elif how == "wrong_number":
        m[draw(st.sampled_from(NUMBER_FIELDS[kind]))] = draw(WRONG_NUMBER)
    elif how == "wrong_symbol":
        m["S"] = draw(WRONG_SYMBOL)
    else:
        m["t"] = draw(WRONG_TIME)
    return m


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.one_of(st.tuples(st.just("ok"), st.sampled_from(["q", "t"]), st.sampled_from(SYMS)),
                                   st.tuples(st.just("bad"), broken())), min_size=1, max_size=8),
                min_size=1, max_size=12))
def test_broken_elements_are_counted_and_the_rest_is_exact(frames):
    r = Rig(capacity=1024)
    expect, bad, t, ids = [], 0, T0, {s: 0 for s in SYMS}
    for elements in frames:
        msgs = []
        for e in elements:
            if e[0] == "bad":
                msgs.append(e[1])
                bad += 1
                continue
            _, kind, sym = e
            t += 1
            if kind == "q":
                msgs.append(quote(sym, t=t))
                expect.append((TICK_QUOTE, SYMS.index(sym), t))
            else:
                ids[sym] += 1
                msgs.append(trade(sym, i=ids[sym], t=t))
                expect.append((TICK_TRADE, SYMS.index(sym), t))
        r.feed(*msgs)
    # the marks did not move for broken elements: newer valid messages are still accepted
    for sym in SYMS:
        t += 1
        ids[sym] += 1
        r.feed(quote(sym, t=t), trade(sym, i=ids[sym], t=t))
        expect += [(TICK_QUOTE, SYMS.index(sym), t), (TICK_TRADE, SYMS.index(sym), t)]
    got = r.drain()
    assert [(int(k), int(s), int(e)) for k, s, e in zip(got["kind"], got["sym"], got["exch_ns"])] == expect
    assert got["seq"].tolist() == list(range(len(expect)))
    c = r.counts()
    assert c.get("malformed", 0) == bad
    assert c.get("duplicates", 0) == 0 and c.get("unknown_symbol", 0) == 0


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=64),
                 st.text(max_size=40).map(str.encode),
                 st.one_of(INTS, st.text(max_size=8), st.none(), st.booleans(),
                           st.dictionaries(st.text(max_size=3), INTS, max_size=3)).map(orjson.dumps)))
def test_whole_frames_that_are_not_json_arrays_count_once(payload):
    r = Rig()
    try:
        is_array = isinstance(orjson.loads(payload), list)
    except orjson.JSONDecodeError:
        is_array = False
    if is_array:
        return                                   # arrays are the other test's business
    assert r.feed(raw=payload) == 0
    assert r.counts() == {"frames": 1, "malformed": 1}
    assert len(r.drain()) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["T", "S", "t", "p", "s", "i", "bp", "bs", "ap", "as", "b", "a", "r",
                                                 "o", "h", "l", "c", "v", "vw"]),
                                st.one_of(st.sampled_from(["q", "t", "b", "u", "d", "o", "AAPL", "BTC/USD"]),
                                          st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False),
                                          st.none(), st.booleans(), st.text(max_size=4),
                                          st.lists(st.dictionaries(st.sampled_from(["p", "s"]),
                                                                   st.one_of(st.floats(0, 10), st.none()),
                                                                   max_size=2), max_size=2)),
                                max_size=8), max_size=6))
def test_arbitrary_objects_never_raise_and_everything_is_accounted_for(msgs):
    """Any mix of plausible keys and values: decode never raises, and each element ends up in
    exactly one bucket (a record kind, a drop reason, control, ignored)."""
    r = Rig(symbols=("AAPL", "BTC/USD"))
    n = r.feed(*msgs)
    c = r.counts()
    assert n == c.get("quotes", 0) + c.get("trades", 0) + c.get("bars", 0) + c.get("book", 0)
    elements = len(msgs)
    accounted = sum(c.get(k, 0) for k in ("quotes", "trades", "bars", "malformed", "duplicates", "unknown_symbol",
                                         "unknown_type", "ignored")) + len(r.dec.control)
    books_msgs = sum(1 for m in msgs if m.get("T") == "o")      # a valid book message counts its levels
    assert elements - books_msgs <= accounted <= elements
    assert len(r.drain()) == n
