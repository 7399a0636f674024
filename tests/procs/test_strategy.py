"""The strategy API of the signal stage (procs.strategy, procs.signal:SignalStage).

Numba and Python flavours of the same test strategy must produce the same intents on a
constructed event stream; the default strategy must reproduce EmaCrossSignal exactly;
wrong import paths and parameters fail at construction with the config key in the message.
The test plays the book (puts BOOK_EVENTs into ``top``) and risk (polls ``intent``).
"""
from __future__ import annotations

from types import MappingProxyType

import numpy as np
import pytest
from numba import njit

from layouts.market import TICK_BAR, TICK_BOOK_DELTA, TICK_QUOTE, TICK_TRADE
from layouts.orders import BOOK_EVENT, BUY, ORDER_LIMIT, ORDER_MARKET, SELL, TIF_DAY, TIF_IOC
from procs.strategy import WARMING, Intent, NumbaStrategy, Strategy, emit

SIGNAL = "procs.signal:SignalStage"
HERE = __name__          # import path of this module, as the stage will import it


# -- event streams --------------------------------------------------------------------------
def quote(sym, bid, ask, bsz=100.0, asz=100.0, valid=1, kind=TICK_QUOTE):
    return dict(sym=sym, kind=kind, valid=valid, bid=bid, ask=ask, bid_size=bsz, ask_size=asz)


def trade(sym, px, size=100.0, bid=0.0, ask=0.0, valid=0):
    return dict(sym=sym, kind=TICK_TRADE, valid=valid, bid=bid, ask=ask, trade_px=px, trade_size=size)


def bar(sym, close, volume=1000.0):
    return dict(sym=sym, kind=TICK_BAR, valid=0, bar_open=close, bar_high=close, bar_low=close,
                bar_close=close, bar_volume=volume, bar_count=3, bar_type=1)


def events(rows):
    e = np.zeros(len(rows), BOOK_EVENT)
    for i, r in enumerate(rows):
        e[i]["tick_seq"] = i
        e[i]["feed_ns"] = 1000 + i
        e[i]["sent_ns"] = 2000 + i
        for k, v in r.items():
            e[i][k] = v
    return e


def build(engine, strategy=None, cls=SIGNAL, over=None, **params):
    """A signal stage with exactly ``params`` (+ ``strategy``) over fresh local memory."""
    o = {"stages.signal.class": cls}
    o.update(over or {})
    mem = engine(o)
    p = dict(params)
    if strategy is not None:
        p["strategy"] = strategy
    ctx = mem.stage_context("signal")
    ctx.params = MappingProxyType(p)
    return mem, mem.classes["signal"](ctx)


def run(engine, drain_ring, ev, strategy=None, cls=SIGNAL, **params):
    mem, sig = build(engine, strategy, cls, **params)
    mem.rings["top"].put(ev)
    out = []
    while sig.do_work(0):
        out.append(drain_ring(mem.rings["intent"]))
    out.append(drain_ring(mem.rings["intent"]))
    return mem, sig, np.concatenate(out)


def fields(intents):
    """Comparable view of intents: everything but the publish stamp."""
    return [(int(o["seq"]), int(o["feed_ns"]), int(o["sym"]), int(o["side"]), int(o["order_type"]),
             int(o["tif"]), float(o["qty"]), float(o["limit_px"]), float(o["ref_px"]), int(o["tag"]))
            for o in intents]


# -- a test strategy, twice: numba and Python ------------------------------------------------
# Rules (per event): quote of sym 0 with bid >= 10 -> BUY 5 @ market, tag 1, and when
# bid >= 20 also SELL 7 limit at the ask, IOC, tag 2; quote of sym 1 -> WARMING;
# trade -> SELL trade_size limit at the trade price (tag 3); bar -> BUY 1 at market (tag 4);
# a quote with bid == 13 emits an invalid intent (qty 0), bid == 14 three intents (one over
# MAX_INTENTS = 2), bid == 15 an unknown symbol.
@njit(cache=True)
def t_on_quote(ev, state, out):
    state[0] += 1.0
    if ev.sym == 1:
        return WARMING
    if ev.bid == 13.0:
        return emit(out, 0, ev.sym, BUY, 0.0)
    if ev.bid == 15.0:
        return emit(out, 0, 99, BUY, 1.0)
    if ev.bid == 14.0:
        n = emit(out, 0, ev.sym, BUY, 1.0)
        n = emit(out, n, ev.sym, BUY, 2.0)
        return emit(out, n, ev.sym, BUY, 3.0)
    n = 0
    if ev.bid >= 10.0:
        n = emit(out, n, ev.sym, BUY, 5.0, 0.0, 1)
    if ev.bid >= 20.0:
        n = emit(out, n, ev.sym, SELL, 7.0, ev.ask, 2, TIF_IOC)
    return n


@njit(cache=True)
def t_on_trade(ev, state, out):
    state[1] += 1.0
    return emit(out, 0, ev.sym, SELL, ev.trade_size, ev.trade_px, 3)


@njit(cache=True)
def t_on_bar(ev, state, out):
    return emit(out, 0, ev.sym, BUY, 1.0, 0.0, 4)


class NumbaRules(NumbaStrategy):
    MAX_INTENTS = 2
    on_quote = t_on_quote
    on_trade = t_on_trade
    on_bar = t_on_bar

    def make_state(self):
        self.state = np.zeros(2)
        return self.state


class PyRules(Strategy):
    MAX_INTENTS = 2

    def __init__(self, ctx):
        super().__init__(ctx)
        self.calls = []

    def on_quote(self, ev):
        self.calls.append(("q", ev.index, ev.sym))
        if ev.sym == 1:
            return WARMING
        if ev.bid == 13.0:
            return Intent.buy(ev.sym, 0.0)
        if ev.bid == 15.0:
            return (99, "buy", 1.0)                       # a plain tuple works too
        if ev.bid == 14.0:
            return [Intent.buy(ev.sym, q) for q in (1.0, 2.0, 3.0)]
        out = []
        if ev.bid >= 10.0:
            out.append(Intent(ev.sym, BUY, 5.0, None, 1))
        if ev.bid >= 20.0:
            out.append(Intent.sell(ev.sym, 7.0, ev.ask, tag=2, tif=TIF_IOC))
        return out or None

    def on_trade(self, ev):
        self.calls.append(("t", ev.index, ev.sym))
        return Intent(ev.sym, "sell", ev.trade_size, ev.trade_px, 3)

    def on_bar(self, ev):
        self.calls.append(("b", ev.index, ev.sym))
        return Intent.buy(ev.sym, 1.0, tag=4)


RULE_STREAM = [
    quote(0, 9.0, 9.5),                 # 0: no intent
    quote(0, 10.0, 10.5),               # 1: BUY 5 mkt tag 1
    quote(1, 50.0, 51.0),               # 2: warming
    trade(0, 10.25, 300.0),             # 3: SELL 300 @ 10.25 tag 3 (book not valid: ref = trade px)
    quote(0, 20.0, 20.5, kind=TICK_BOOK_DELTA),   # 4: BUY 5 + SELL 7 @ 20.5 IOC
    quote(0, 30.0, 31.0, valid=0),      # 5: skipped (book not valid)
    dict(sym=7, kind=TICK_QUOTE, valid=1, bid=1.0, ask=2.0),   # 6: skipped (unknown symbol)
    bar(2, 42.0),                       # 7: BUY 1 tag 4 (ref = bar close)
    quote(0, 13.0, 13.5),               # 8: bad intent (qty 0)
    quote(0, 14.0, 14.5),               # 9: two intents, one over max
    quote(0, 15.0, 15.5),               # 10: bad intent (unknown symbol)
    dict(sym=0, kind=99, valid=1, bid=1.0, ask=2.0),           # 11: skipped (unknown kind)
]
EXPECTED = [  # (seq, feed_ns, sym, side, order_type, tif, qty, limit_px, ref_px, tag)
    (0, 1001, 0, BUY, ORDER_MARKET, TIF_DAY, 5.0, 0.0, 10.25, 1),
    (1, 1003, 0, SELL, ORDER_LIMIT, TIF_DAY, 300.0, 10.25, 10.25, 3),
    (2, 1004, 0, BUY, ORDER_MARKET, TIF_DAY, 5.0, 0.0, 20.25, 1),
    (3, 1004, 0, SELL, ORDER_LIMIT, TIF_IOC, 7.0, 20.5, 20.25, 2),
    (4, 1007, 2, BUY, ORDER_MARKET, TIF_DAY, 1.0, 0.0, 42.0, 4),
    (5, 1009, 0, BUY, ORDER_MARKET, TIF_DAY, 1.0, 0.0, 14.25, 0),
    (6, 1009, 0, BUY, ORDER_MARKET, TIF_DAY, 2.0, 0.0, 14.25, 0),
]
EXPECTED_COUNTERS = {"events_in": 12, "intents_out": 7, "quotes": 7, "trades": 1, "bars": 1, "skipped": 3,
                     "warming": 1, "buys": 5, "sells": 2, "bad_intents": 2, "intents_over_max": 1,
                     "strategy_errors": 0, "model_calls": 0}


@pytest.mark.parametrize("flavour", ["numba", "python"])
def test_both_flavours_produce_the_expected_intents(engine, drain_ring, flavour):
    name = "NumbaRules" if flavour == "numba" else "PyRules"
    mem, sig, out = run(engine, drain_ring, events(RULE_STREAM), f"{HERE}:{name}")
    assert sig.flavour == flavour
    assert fields(out) == EXPECTED
    assert np.all(out["sent_ns"] > 0)
    assert sig.counter_values() == EXPECTED_COUNTERS
    assert mem.hists[sig.h_lat]["total"] == len(RULE_STREAM)
    if flavour == "numba":
        step, args, takes_now = sig.kernel()
        assert not takes_now and step.py_func.__name__ == "step"
        assert sig.state.tolist() == [7.0, 1.0]          # hooks saw 7 quotes and 1 trade
        assert mem.hists[sig.h_dec]["total"] == 0
    else:
        assert sig.kernel() is None                       # the process runs the Python runner
        assert [c[0] for c in sig.strategy.calls] == ["q", "q", "q", "t", "q", "b", "q", "q", "q"]
        assert sig.strategy.calls[3] == ("t", 3, 0)       # ev.index is the row in the batch
        assert mem.hists[sig.h_dec]["total"] == 9         # one duration per hook call


@pytest.mark.parametrize("flavour", ["numba", "python"])
@pytest.mark.parametrize("batch, capacity", [(1, 2), (3, 4), (256, 2)])
def test_backpressure_loses_no_intent(engine, drain_ring, flavour, batch, capacity):
    name = "NumbaRules" if flavour == "numba" else "PyRules"
    rows = [quote(0, 25.0, 25.5), trade(0, 25.2)] * 40      # 3 intents per pair
    mem, sig = build(engine, f"{HERE}:{name}", over={"rings.intent.capacity": capacity}, batch=batch)
    mem.rings["top"].put(events(rows))
    got = []
    for _ in range(2000):
        sig.do_work(0)
        got.append(drain_ring(mem.rings["intent"]))
    got = np.concatenate(got)
    assert sig.counter("events_in") == 80
    assert got["seq"].tolist() == list(range(120))
    assert got["side"].tolist() == [BUY, SELL, SELL] * 40


def test_max_intents_larger_than_the_ring_is_a_startup_error(engine):
    with pytest.raises(ValueError, match=r"stages\.signal\.params\.strategy: .*Greedy may emit 4 intents"):
        build(engine, f"{HERE}:Greedy", over={"rings.intent.capacity": 2})


class Greedy(PyRules):
    MAX_INTENTS = 4


# -- the default strategy is the EMA crossover, identical to EmaCrossSignal --------------
def _walk(n, nsym, seed):
    rng = np.random.default_rng(seed)
    mids = np.full(nsym, 100.0)
    rows = []
    for _ in range(n):
        s = int(rng.integers(0, nsym))
        mids[s] = round(mids[s] + rng.normal(0, 0.05), 2)
        if rng.random() < 0.2:
            rows.append(trade(s, mids[s], valid=1, bid=mids[s] - 0.01, ask=mids[s] + 0.01))
        else:
            rows.append(quote(s, mids[s] - 0.01, mids[s] + 0.01))
    return events(rows)


@pytest.mark.parametrize("params", [{}, {"fast": 3, "slow": 5, "warmup": 0, "batch": 7}])
def test_default_strategy_reproduces_ema_cross_signal(engine, drain_ring, params):
    ev = _walk(4000, 3, 5)
    _, old, ref = run(engine, drain_ring, ev, cls="procs.signal:EmaCrossSignal", **params)
    _, new, out = run(engine, drain_ring, ev, **params)                  # no strategy: EmaCross
    _, named, out2 = run(engine, drain_ring, ev, "procs.strategies.ema_cross:EmaCross", **params)
    assert len(ref) > 20
    assert fields(out) == fields(ref) == fields(out2)
    c_old, c_new = old.counter_values(), new.counter_values()
    assert c_new["buys"] == c_old["crosses_up"] and c_new["sells"] == c_old["crosses_down"]
    for k in ("events_in", "intents_out", "warming"):
        assert c_new[k] == c_old[k]
    assert c_new["quotes"] + c_new["trades"] == c_new["events_in"]


def test_ema_cross_signal_accepts_only_its_strategy(engine):
    build(engine, "procs.strategies.ema_cross:EmaCross", cls="procs.signal:EmaCrossSignal")
    with pytest.raises(ValueError, match=r"stages\.signal\.params\.strategy: EmaCrossSignal runs only"):
        build(engine, "procs.strategies.book_imbalance:BookImbalance", cls="procs.signal:EmaCrossSignal")


# -- a bare njit function ---------------------------------------------------------------
@njit(cache=True)
def every_third_quote(ev, state, out):
    if ev.kind != TICK_QUOTE:
        return 0
    state[ev.sym, 0] += 1.0
    if state[ev.sym, 0] % 3.0 == 0.0:
        return emit(out, 0, ev.sym, SELL, state[ev.sym, 0])
    return 0


def test_bare_njit_function_is_a_strategy(engine, drain_ring):
    rows = [quote(s, 10.0, 10.1) for _ in range(6) for s in (0, 1)] + [trade(0, 10.0)]
    _, sig, out = run(engine, drain_ring, events(rows), f"{HERE}:every_third_quote", state_size=2)
    assert sig.flavour == "function" and sig.state.shape == (4, 2)
    assert [(int(o["sym"]), float(o["qty"])) for o in out] == [(0, 3.0), (1, 3.0), (0, 6.0), (1, 6.0)]
    assert sig.counter("trades") == 1


# -- example: mean reversion on book imbalance ------------------------------------------
def test_book_imbalance_fades_the_extremes(engine, drain_ring):
    # window 1: the signal is the imbalance itself. entry 0.5, exit 0.1.
    rows = [quote(0, 10.0, 10.02, 100, 100),      # imb 0: flat -> flat, nothing
            quote(0, 10.0, 10.02, 900, 100),      # imb 0.8 -> short: SELL 100 @ bid 10.00 IOC
            quote(0, 10.0, 10.02, 500, 400),      # imb 0.11: hold
            quote(0, 10.0, 10.02, 100, 100),      # imb 0 -> flat: BUY 100 @ ask 10.02
            quote(1, 20.0, 20.02, 100, 900),      # imb -0.8 -> long: BUY 100 @ 20.02
            quote(1, 20.0, 20.04, 900, 100)]      # imb 0.8 -> short: SELL 200 @ 20.00
    _, sig, out = run(engine, drain_ring, events(rows), "procs.strategies.book_imbalance:BookImbalance",
                      window=1, entry=0.5, exit=0.1, qty=100.0, tag=9)
    got = [(int(o["sym"]), int(o["side"]), float(o["qty"]), float(o["limit_px"]), int(o["order_type"]),
            int(o["tif"]), int(o["tag"])) for o in out]
    assert got == [(0, SELL, 100.0, 10.0, ORDER_LIMIT, TIF_IOC, 9), (0, BUY, 100.0, 10.02, ORDER_LIMIT, TIF_IOC, 9),
                   (1, BUY, 100.0, 20.02, ORDER_LIMIT, TIF_IOC, 9), (1, SELL, 200.0, 20.0, ORDER_LIMIT, TIF_IOC, 9)]


def test_book_imbalance_warms_up_with_the_indicator(engine, drain_ring):
    rows = [quote(0, 10.0, 10.02, 900, 100)] * 5
    _, sig, out = run(engine, drain_ring, events(rows), "procs.strategies.book_imbalance:BookImbalance", window=4)
    assert sig.counter("warming") == 3                  # TA-Lib EMA(4): NaN for 3 values
    assert len(out) == 1 and out[0]["side"] == SELL


# -- errors at construction ----------------------------------------------------------------
@pytest.mark.parametrize("path, msg", [
    ("procs.strategies.nope:X", r"cannot import strategy module 'procs\.strategies\.nope'"),
    ("procs.strategies.ema_cross:Nope", r"module 'procs\.strategies\.ema_cross' has no 'Nope'"),
    ("procs.strategies.ema_cross", r"expected \"package\.module:Name\""),
    (f"{HERE}:every_third_quote", None),                # an njit function: accepted (bare function)
    ("procs.strategy:Intent", r"'procs\.strategy:Intent' is not a strategy"),
    (f"{HERE}:NoHooks", r"numba strategy .*NoHooks. defines none of on_quote/on_trade/on_bar"),
])
def test_wrong_import_path_is_a_clear_error(engine, path, msg):
    if msg is None:
        build(engine, path)
        return
    with pytest.raises(ValueError, match=r"stages\.signal\.params\.strategy: " + msg):
        build(engine, path)


class NoHooks(NumbaStrategy):
    pass


@pytest.mark.parametrize("params, key", [
    ({"threshold": 1}, "threshold"),
    ({"strategy": "procs.strategies.book_imbalance:BookImbalance", "fast": 3}, "fast"),
    ({"strategy": "procs.strategies.book_imbalance:BookImbalance", "exit": 0.6}, "exit"),
    ({"slow": "32"}, "slow"),
    ({"strategy": 5}, "strategy"),
    ({"batch": 0}, "batch"),
])
def test_bad_params_name_the_key(engine, params, key):
    with pytest.raises(ValueError, match=rf"stages\.signal\.params\.{key}"):
        build(engine, **params)


# -- Python flavour details ---------------------------------------------------------------
class Boom(Strategy):
    def on_quote(self, ev):
        if ev.bid > 10:
            raise RuntimeError("strategy bug")
        return Intent.buy(ev.sym, 1.0)


def test_python_hook_error_is_counted_and_stops_the_stage(engine, drain_ring):
    mem, sig = build(engine, f"{HERE}:Boom")
    mem.rings["top"].put(events([quote(0, 9.0, 9.1), quote(0, 11.0, 11.1), quote(0, 9.0, 9.1)]))
    with pytest.raises(RuntimeError, match="strategy bug") as ei:
        sig.do_work(0)
    assert any("Boom" in n and "event 1" in n for n in getattr(ei.value, "__notes__", []))
    assert sig.counter("strategy_errors") == 1
    assert fields(drain_ring(mem.rings["intent"]))[0][:4] == (0, 1000, 0, BUY)  # decided before the bug


class Odd(Strategy):
    MAX_INTENTS = 8

    def on_quote(self, ev):
        return [(0, "SELL", 2), (0, "hold", 1), (0, BUY, float("nan")), (0, BUY, 1, -5.0), ("x", BUY, 1),
                (0, BUY, 1, None, 0, 9), Intent.buy(1, 3.0, 12.5)]


def test_python_intents_are_validated(engine, drain_ring):
    _, sig, out = run(engine, drain_ring, events([quote(0, 12.0, 12.5)]), f"{HERE}:Odd")
    assert [(int(o["sym"]), int(o["side"]), float(o["qty"]), float(o["limit_px"])) for o in out] == \
        [(0, SELL, 2.0, 0.0), (1, BUY, 3.0, 12.5)]
    assert sig.counter("bad_intents") == 5


def test_numba_strategy_runs_in_the_generated_native_loop(engine, drain_ring):
    import time

    from pyrt_shm import jit_loop

    mem, sig = build(engine, f"{HERE}:NumbaRules")
    sig.warm_up()
    row = mem.hist_names.index("process.hot.cycle")
    jl = jit_loop.JitProcessLoop([sig], jit_loop.MODE_BUSY_SPIN, mem.hists, row)
    jl.warm_up()
    mem.rings["top"].put(events(RULE_STREAM))
    c, w, i = jl.run_for(time.monotonic_ns() + 20_000_000)
    assert w == len(RULE_STREAM)
    assert fields(drain_ring(mem.rings["intent"])) == EXPECTED
    assert sig.counter_values() == EXPECTED_COUNTERS


def test_python_strategy_in_the_fused_pipeline_accounts_for_every_record(engine):
    """The default pipeline with a Python strategy: counts balance end to end."""
    from pyrt_shm.agent import AgentInvoker, CompositeAgent

    mem = engine({"stages.signal.class": SIGNAL, "stages.feed.params.max_ticks": 5000, "stages.feed.params.rate": 0,
                  "stages.signal.params.strategy": f"{HERE}:PyAlternate"})
    stages = {s.name: mem.build_stage(s.name) for s in mem.topology.stages}
    for s in stages.values():
        s.warm_up()
    inv = AgentInvoker(CompositeAgent(list(stages.values())))
    inv.run_until_idle(max_cycles=200_000, idle_cycles=3)
    inv.close()
    c = {n: s.counter_values() for n, s in stages.items()}
    assert c["signal"]["events_in"] == c["book"]["events_out"]
    assert c["signal"]["intents_out"] == c["risk"]["intents_in"] > 100
    rej = sum(v for k, v in c["risk"].items() if k.startswith("rej_"))
    assert c["risk"]["intents_in"] == c["risk"]["orders_out"] + rej
    assert c["exec"]["orders_in"] == c["risk"]["orders_out"]


class PyAlternate(Strategy):
    """Every 10th quote of a symbol: buy, then sell, alternately."""

    def __init__(self, ctx):
        super().__init__(ctx)
        self.n = [0] * len(ctx.symbols)

    def on_quote(self, ev):
        self.n[ev.sym] += 1
        k = self.n[ev.sym]
        if k % 10:
            return None
        return Intent.buy(ev.sym, 100) if (k // 10) % 2 else Intent.sell(ev.sym, 100)
