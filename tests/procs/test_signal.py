"""EmaCrossSignal: a hand-worked crossover, a plain-Python reference, warm-up, backpressure.

The test plays the book (puts BOOK_EVENTs into ``top``) and risk (polls ``intent``).
"""
from __future__ import annotations

import numpy as np
import pytest

from layouts.market import TICK_QUOTE, TICK_TRADE
from layouts.orders import BOOK_EVENT, BUY, ORDER_MARKET, SELL, TIF_DAY


def _events(rows):
    """BOOK_EVENTs from (sym, mid) or (sym, mid, kind, valid); spread 0.02 around the mid."""
    e = np.zeros(len(rows), BOOK_EVENT)
    for i, r in enumerate(rows):
        sym, mid = r[0], r[1]
        kind, valid = (r[2], r[3]) if len(r) > 2 else (TICK_QUOTE, 1)
        e[i]["tick_seq"] = i
        e[i]["feed_ns"] = 5000 + i
        e[i]["sent_ns"] = 6000 + i
        e[i]["sym"], e[i]["kind"], e[i]["valid"] = sym, kind, valid
        e[i]["bid"], e[i]["ask"] = mid - 0.01, mid + 0.01
    return e


def _run(engine, drain_ring, events, **params):
    mem = engine({f"stages.signal.params.{k}": v for k, v in params.items()})
    sig = mem.build_stage("signal")
    mem.rings["top"].put(events)
    out = []
    while sig.do_work(0):
        out.append(drain_ring(mem.rings["intent"]))
    out = np.concatenate(out) if out else np.zeros(0, mem.rings["intent"].dtype)
    return mem, sig, out


def test_hand_worked_crossover(engine, drain_ring):
    # fast = 2 (alpha 2/3), slow = 4 (alpha 2/5), both seeded with the first mid:
    #  e0 mid 10: f = 10,      s = 10       d = 0   warming (warmup = 1)
    #  e1 mid 12: f = 11.3333, s = 10.8     d > 0   crossed up from 0     -> BUY  (seq 0)
    #  e2 mid 12: f = 11.7778, s = 11.28    d > 0   no cross
    #  e3 mid 10: f = 10.5926, s = 10.768   d < 0   crossed down          -> SELL (seq 1)
    #  e4 mid 10: f = 10.1975, s = 10.4608  d < 0   no cross
    # Symbol 1 events, a trade and an invalid event are interleaved and must change nothing.
    rows = [(0, 10.0), (1, 50.0), (0, 12.0), (0, 99.0, TICK_TRADE, 1), (0, 12.0),
            (0, 99.0, TICK_QUOTE, 0), (1, 50.0), (0, 10.0), (0, 10.0)]
    mem, sig, out = _run(engine, drain_ring, _events(rows), fast=2, slow=4, warmup=1, qty=250.0)
    assert out["seq"].tolist() == [0, 1]
    assert out["side"].tolist() == [BUY, SELL]
    assert out["feed_ns"].tolist() == [5002, 5007]          # feed stamp of the causing event
    assert out["ref_px"].tolist() == pytest.approx([12.0, 10.0])
    assert out["sym"].tolist() == [0, 0] and out["qty"].tolist() == [250.0, 250.0]
    assert set(out["order_type"]) == {ORDER_MARKET} and set(out["tif"]) == {TIF_DAY}
    assert np.all(out["limit_px"] == 0.0) and np.all(out["sent_ns"] > 0)
    assert sig.counter_values() == {"events_in": 9, "intents_out": 2, "crosses_up": 1,
                                    "crosses_down": 1, "warming": 2}   # e0 and sym 1's first
    assert sig.fast[0] == pytest.approx(10.19753086) and sig.slow[0] == pytest.approx(10.46080)
    assert mem.hists[sig.h_lat]["total"] == 9


def test_sign_is_tracked_during_warm_up(engine, drain_ring):
    # Same series with warmup = 2: e1 (fast above slow) is still warming, so e2 is no cross.
    rows = [(0, 10.0), (0, 12.0), (0, 12.0), (0, 10.0), (0, 10.0)]
    _, sig, out = _run(engine, drain_ring, _events(rows), fast=2, slow=4, warmup=2)
    assert out["side"].tolist() == [SELL] and out["seq"].tolist() == [0]
    assert sig.counter("warming") == 2 and sig.counter("crosses_up") == 0


def reference(rows, fast, slow, warmup):
    """Plain-Python EMA crossover: [(event index, sym, side)]."""
    af, aslow = 2 / (fast + 1), 2 / (slow + 1)
    f, s, n, sign, out = {}, {}, {}, {}, []
    for i, (sym, mid) in enumerate(rows):
        if sym not in n:
            f[sym] = s[sym] = mid
            n[sym], sign[sym] = 0, 0
        else:
            f[sym] += af * (mid - f[sym])
            s[sym] += aslow * (mid - s[sym])
        n[sym] += 1
        d = f[sym] - s[sym]
        cur = (d > 0) - (d < 0)
        prev, sign[sym] = sign[sym], cur
        if n[sym] <= warmup:
            continue
        if prev <= 0 < cur:
            out.append((i, sym, BUY))
        elif prev >= 0 > cur:
            out.append((i, sym, SELL))
    return out


@pytest.mark.parametrize("fast, slow, warmup, batch", [(8, 32, 32, 256), (3, 5, 0, 7), (5, 21, 50, 1)])
def test_random_walk_matches_reference(engine, drain_ring, fast, slow, warmup, batch):
    rng = np.random.default_rng(fast * 100 + slow)
    mids = np.full(3, 100.0)
    rows = []
    for _ in range(3000):
        sym = int(rng.integers(0, 3))
        mids[sym] = round(mids[sym] + rng.normal(0, 0.05), 2)
        rows.append((sym, float(mids[sym])))
    ev = _events(rows)
    _, sig, out = _run(engine, drain_ring, ev, fast=fast, slow=slow, warmup=warmup, batch=batch)
    ref = reference([(s, float((e["bid"] + e["ask"]) / 2)) for (s, _), e in zip(rows, ev)],
                    fast, slow, warmup)
    assert len(ref) > 10
    assert [(int(o["feed_ns"]) - 5000, int(o["sym"]), int(o["side"])) for o in out] == ref
    assert out["seq"].tolist() == list(range(len(ref)))


def test_backpressure_loses_no_intent(engine, drain_ring):
    rows = [(0, 10.0 + (i % 2) * 5) for i in range(200)]     # a cross on nearly every event
    ev = _events(rows)
    _, _, ref = _run(engine, drain_ring, ev, fast=1, slow=2, warmup=0)
    mem = engine({"rings.intent.capacity": 2, "stages.signal.params.fast": 1,
                  "stages.signal.params.slow": 2, "stages.signal.params.warmup": 0})
    sig = mem.build_stage("signal")
    mem.rings["top"].put(ev)
    got = []
    for _ in range(1000):
        sig.do_work(0)
        got.append(drain_ring(mem.rings["intent"]))
    got = np.concatenate(got)
    assert sig.counter("events_in") == 200
    assert len(ref) > 100 and got["seq"].tolist() == list(range(len(ref)))
    assert np.array_equal(got["side"], ref["side"]) and np.array_equal(got["feed_ns"], ref["feed_ns"])


@pytest.mark.parametrize("over, key", [
    ({"fast": 8, "slow": 8}, "slow"),
    ({"fast": 0}, "fast"),
    ({"qty": 0}, "qty"),
    ({"qty": -5.0}, "qty"),
    ({"warmup": -1}, "warmup"),
    ({"slow": "32"}, "slow"),
    ({"threshold": 1}, "threshold"),
])
def test_bad_params_name_the_key(engine, over, key):
    mem = engine({f"stages.signal.params.{k}": v for k, v in over.items()})
    with pytest.raises(ValueError, match=rf"stages\.signal\.params\.{key}"):
        mem.build_stage("signal")
