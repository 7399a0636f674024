"""``run_backtest``: hand-checked runs, the data clock, determinism, the topology it builds.

Bars run through ``config/backtest-bars.toml`` (ReplayBars -> signal -> risk -> exec), ticks
through ``config/backtest-ema.toml`` (ReplayFeed -> book -> signal -> risk -> exec); the
strategy is the EMA crossover (``procs.strategies.ema_cross``) with fast = 1 (the EMA is the
price itself: alpha = 2 / (1 + 1) = 1), slow = 3 (alpha = 2 / (3 + 1) = 0.5) and warmup = 1,
so its crosses can be worked out by hand.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from numba import njit

from layouts.market import TICK, TICK_BAR, TICK_QUOTE
from layouts.orders import BUY, FILL_FULL, SELL
from procs.exec import ExecStage
from procs.strategy import Intent, NumbaStrategy, Strategy, emit
from pyrt_shm.config import load_topology
from pyrt_shm.research.backtest import BacktestError, pipeline_order, prepare, run_backtest
from pyrt_shm.research.data import MarketData, load_ticks

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BARS = os.path.join(ROOT, "config", "backtest-bars.toml")
TICKS = os.path.join(ROOT, "config", "backtest-ema.toml")
DEMO = os.path.join(ROOT, "pyrt_shm", "research", "data", "DEMO_1min.csv")
T0 = 1_704_205_800_000_000_000          # 2024-01-02T14:30:00Z
MIN = 60 * 10**9
MS, US = 10**6, 10**3
EMA_1_3 = {"stages.signal.params.fast": 1, "stages.signal.params.slow": 3, "stages.signal.params.warmup": 1,
           "stages.signal.params.qty": 100.0}


def bars(closes, volume=1000.0, symbol="X") -> MarketData:
    t = np.zeros(len(closes), TICK)
    t["exch_ns"] = T0 + MIN * np.arange(len(closes))
    t["recv_ns"] = t["exch_ns"]
    t["seq"] = np.arange(len(closes))
    t["kind"] = TICK_BAR
    t["price"] = t["bid"] = t["ask"] = t["bid_size"] = t["ask_size"] = closes    # o = h = l = c = vwap
    t["size"] = volume
    return MarketData(t, (symbol,), "<bars>")


def quotes(rows, symbol="X") -> MarketData:
    """rows: (t_ns after T0, bid, ask), 500 shares a side."""
    t = np.zeros(len(rows), TICK)
    for i, (dt, b, a) in enumerate(rows):
        t[i]["exch_ns"] = T0 + dt
        t[i]["bid"], t[i]["ask"] = b, a
    t["recv_ns"] = t["exch_ns"]
    t["kind"] = TICK_QUOTE
    t["bid_size"] = t["ask_size"] = 500.0
    t["seq"] = np.arange(len(rows))
    return MarketData(t, (symbol,), "<quotes>")


class BarProbe(Strategy):
    """A Python strategy: remembers every bar it is shown; buys 10 on the third."""

    PARAMS = ("fast", "slow", "qty")          # the config's EMA parameters, ignored
    seen: list = []

    def __init__(self, ctx):
        super().__init__(ctx)
        BarProbe.seen = []

    def on_bar(self, ev):
        BarProbe.seen.append((ev.bar_start_ns, ev.bar_end_ns, ev.bar_open, ev.bar_high, ev.bar_low, ev.bar_close,
                              ev.bar_volume, ev.bar_vwap))
        return Intent.buy(ev.sym, 10.0) if len(BarProbe.seen) == 3 else None


@njit(cache=True)
def buy_third_bar(ev, state, out):
    state[0, 0] += 1.0
    state[0, 1] += ev.bar_vwap                  # the file's VWAP reaches the strategy
    if state[0, 0] == 3.0:
        return emit(out, 0, ev.sym, BUY, 10.0)
    return 0


class NumbaBarProbe(NumbaStrategy):
    PARAMS = ("fast", "slow", "qty")
    on_bar = buy_third_bar

    def make_state(self):
        self.state = np.zeros((len(self.ctx.symbols), 2))
        return self.state


def test_bars_reach_on_bar_of_python_and_numba_strategies():
    data = load_ticks(DEMO)
    py = run_backtest(BARS, data, overrides={"stages.signal.params": {"strategy": "test_backtest:BarProbe"}})
    assert py.info["loop"] == "python" and len(BarProbe.seen) == 1950
    first = data.ticks[0]
    assert BarProbe.seen[0] == (T0, T0 + MIN, first["bid"], first["ask"], first["bid_size"], first["price"],
                                first["size"], first["ask_size"])        # open, high, low, close, volume, vwap
    nb = run_backtest(BARS, data, overrides={"stages.signal.params": {"strategy": "test_backtest:NumbaBarProbe"}})
    assert nb.info["loop"] == "native"
    # both bought 10 at the third bar's close (+1 bp of slippage in the config), once
    for res in (py, nb):
        assert res.fills["price"].tolist() == [pytest.approx(data.ticks["price"][2] * 1.0001)]
        assert res.fills["venue_ns"].tolist() == [T0 + 2 * MIN] and res.positions["qty"].tolist() == [10.0]
    assert py.fills.tobytes() == nb.fills.tobytes() and py.equity.tobytes() == nb.equity.tobytes()


def test_ema_crossover_on_bars_by_hand():
    # closes 100 100 104 104 96 96 100 100 102; fast EMA = the close, slow EMA (alpha 1/2):
    #   bar 0  100: both seeded at 100, warming up
    #   bar 1  100: slow 100, fast - slow = 0
    #   bar 2  104: slow 102,     +2     -> cross up:   BUY 100 at the close quote 104 (spread 0)
    #   bar 3  104: slow 103,     +1
    #   bar 4   96: slow 99.5,    -3.5   -> cross down: SELL 100 at 96   (realized (96 - 104) * 100 = -800)
    #   bar 5   96: slow 97.75,   -1.75
    #   bar 6  100: slow 98.875,  +1.125 -> cross up:   BUY 100 at 100
    #   bar 7  100: slow 99.4375, +0.5625
    #   bar 8  102: slow 100.71875        (long 100 from 100, marked at the last close 102: +200)
    # fees 0.01/share: 1.00 a fill, 3 fills. Final equity 1,000,000 - 800 + 200 - 3 = 999,397.
    res = run_backtest(BARS, bars([100, 100, 104, 104, 96, 96, 100, 100, 102]), overrides={
        **EMA_1_3, "stages.exec.params.fee_per_share": 0.01, "stages.exec.params.slippage_bps": 0.0})
    f = res.fills
    assert f["status"].tolist() == [FILL_FULL] * 3 and f["side"].tolist() == [BUY, SELL, BUY]
    assert f["price"].tolist() == [104.0, 96.0, 100.0] and f["qty"].tolist() == [100.0] * 3
    assert f["fee"].tolist() == [1.0, 1.0, 1.0]
    assert f["venue_ns"].tolist() == [T0 + 2 * MIN, T0 + 4 * MIN, T0 + 6 * MIN]     # latency 0: the bar's time
    assert res.orders["order_id"].tolist() == [1, 2, 3] and res.orders["sent_ns"].tolist() == f["venue_ns"].tolist()
    # one equity sample per bar: cash + position at the close, after fees
    assert res.equity["t_ns"].tolist() == (T0 + MIN * np.arange(9)).tolist()
    assert res.equity["equity"].tolist() == [1e6, 1e6, 999_999.0, 999_999.0, 999_198.0, 999_198.0, 999_197.0,
                                             999_197.0, 999_397.0]
    assert res.equity["cash"][-1] == 1e6 - 800 - 3 - 100 * 100.0 and res.equity["net"][-1] == 100 * 102.0
    assert res.equity["drawdown"][4] == pytest.approx(999_198.0 / 1e6 - 1)
    # trades: the closed long 104 -> 96 (-800 - 2 fees) and the open long from 100 marked at 102 (+200 - 1)
    tr = res.trades
    assert tr["open"].tolist() == [0, 1] and tr["entry_px"].tolist() == [104.0, 100.0]
    assert tr["exit_px"].tolist() == [96.0, 102.0] and tr["pnl"].tolist() == [-802.0, 199.0]
    m = res.metrics
    assert m["final_equity"] == 999_397.0 and m["n_trades"] == 1 and m["n_open_trades"] == 1
    assert res.positions["qty"].tolist() == [100.0] and res.marks.tolist() == [102.0]


def test_ticks_fill_against_the_book_at_the_orders_arrival_in_data_time():
    # 50 us of venue latency. The cross up is decided on the quote at 2 ms (mid 104: slow 102);
    # the order arrives at 2.050 ms, when the book shows the quote of 2.020 ms: it buys at that
    # ask, 105.01 (not 104.01 of the deciding quote, not 106.01 of 2.1 ms). The cross down on the
    # quote at 3 ms (mid 96; slow 104.75 -> 100.375) arrives at 3.050 ms: the book still shows the
    # 3 ms quote, and it sells at its bid, 95.99. Fees 0.005/share: 0.50 a fill.
    data = quotes([(0, 99.99, 100.01), (1 * MS, 99.99, 100.01), (2 * MS, 103.99, 104.01),
                   (2 * MS + 20 * US, 104.99, 105.01), (2 * MS + 100 * US, 105.99, 106.01),
                   (3 * MS, 95.99, 96.01), (4 * MS, 95.99, 96.01)])
    res = run_backtest(TICKS, data, overrides={**EMA_1_3, "stages.exec.params.latency_us": 50,
                                               "stages.exec.params.fee_per_share": 0.005})
    f = res.fills
    assert f["side"].tolist() == [BUY, SELL] and f["price"].tolist() == [105.01, 95.99]
    assert f["venue_ns"].tolist() == [T0 + 2 * MS + 50 * US, T0 + 3 * MS + 50 * US]
    assert res.orders["feed_ns"].tolist() == [T0 + 2 * MS, T0 + 3 * MS]
    assert res.orders["sent_ns"].tolist() == [T0 + 2 * MS, T0 + 3 * MS]      # data time, not the machine's
    assert res.positions["qty"].tolist() == [0.0]
    assert res.metrics["final_equity"] == pytest.approx(1e6 + (95.99 - 105.01) * 100 - 1.0)
    assert res.counters["book"]["quotes"] == 7 and res.events == 7


def test_a_span_of_records_per_clock_step_trades_exactness_for_speed():
    # No venue latency. span 4: the clock covers q0..q3 (to 2.020 ms), then q4..q6 (to 4 ms). The cross up decided
    # on q2 meets the book at the step's end, q3's ask 105.01, at 2.020 ms; the cross down
    # decided on q5 meets q6's bid at 4 ms. (span 1 fills 104.01 at 2 ms and 95.99 at 3 ms.)
    data = quotes([(0, 99.99, 100.01), (1 * MS, 99.99, 100.01), (2 * MS, 103.99, 104.01),
                   (2 * MS + 20 * US, 104.99, 105.01), (2 * MS + 100 * US, 105.99, 106.01),
                   (3 * MS, 95.99, 96.01), (4 * MS, 95.49, 96.51)])
    zero = {**EMA_1_3, "stages.exec.params.latency_us": 0}
    exact = run_backtest(TICKS, data, overrides=zero)
    assert exact.fills["price"].tolist() == [104.01, 95.99]
    assert exact.fills["venue_ns"].tolist() == [T0 + 2 * MS, T0 + 3 * MS]
    fast = run_backtest(TICKS, data, overrides=zero, span=4, progress=True)
    assert fast.fills["price"].tolist() == [105.01, 95.49] and fast.info["span"] == 4
    assert fast.fills["venue_ns"].tolist() == [T0 + 2 * MS + 20 * US, T0 + 4 * MS]
    with pytest.raises(BacktestError, match="span: records per clock step"):
        run_backtest(TICKS, data, span=0)


def test_trades_only_data_trade_against_a_synthetic_book(tmp_path):
    # Alpaca trades; the replay puts a one-level book 1 bp wide (the config's spread_bps) around
    # each trade, sized as the trade. Crosses as in the bar test: buy on the 3rd, sell on the 5th.
    p = tmp_path / "X.csv"
    p.write_text("t,x,p,s,c,i,z\n" + "".join(f"2024-01-02T14:30:0{i}Z,V,{px},500,@,{i},C\n"
                                            for i, px in enumerate([100, 100, 104, 104, 96])))
    res = run_backtest(TICKS, load_ticks(str(p)), overrides={**EMA_1_3, "stages.exec.params.latency_us": 0})
    assert res.fills["side"].tolist() == [BUY, SELL]
    assert res.fills["price"].tolist() == [pytest.approx(104 * (1 + 0.5e-4)), pytest.approx(96 * (1 - 0.5e-4))]
    assert res.counters["feed"]["synthetic"] == 5 and res.counters["book"]["snapshots"] == 5


def test_orders_still_in_flight_at_the_end_are_drained():
    # the last quote decides a buy; its arrival, 1 ms later, is after the last record: the clock
    # steps there and the order fills against the last book
    data = quotes([(0, 99.99, 100.01), (1 * MS, 99.99, 100.01), (2 * MS, 103.99, 104.01)])
    res = run_backtest(TICKS, data, overrides={**EMA_1_3, "stages.exec.params.latency_us": 1000})
    assert res.fills["venue_ns"].tolist() == [T0 + 3 * MS] and res.fills["price"].tolist() == [104.01]
    assert res.info["clock_end_ns"] == T0 + 3 * MS and not res.info["drain_incomplete"]


def test_two_runs_are_identical_bit_for_bit():
    data = load_ticks(DEMO)
    a = run_backtest(BARS, data)
    b = run_backtest(BARS, data)
    assert len(a.fills) > 10 and len(a.equity) == len(data)
    for name in ("orders", "fills", "equity"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.tobytes() == y.tobytes(), name
    assert a.metrics == b.metrics


def test_the_python_loop_gives_the_native_loops_results():
    data = quotes([(i * MS, 100.0 + d - 0.01, 100.0 + d + 0.01)
                   for i, d in enumerate([0, 0, 1, 2, -3, -2, 2, 3, -1, -4, 0, 5])])
    a = run_backtest(TICKS, data, overrides=EMA_1_3)
    b = run_backtest(TICKS, data, overrides=EMA_1_3, python_loop=True)
    assert a.info["loop"] == "native" and b.info["loop"] == "python" and len(a.fills) >= 4
    for name in ("orders", "fills", "equity"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name


def test_bars_in_a_tick_topology_skip_the_book():
    data = load_ticks(DEMO)
    topo, _, src = prepare(None, data, None)                         # the embedded default
    assert "book" not in [s.name for s in topo.stages] and src == "feed"
    assert topo.stage("feed").class_path == "procs.replay_feed:ReplayBars"
    assert [r.record for r in topo.rings_out("feed")] == ["top"] and len(topo.processes) == 1
    a = run_backtest(None, data)
    b = run_backtest(BARS, data, overrides={"stages.exec.params.slippage_bps": 0.0})
    assert len(a.fills) > 10 and a.fills.tobytes() == b.fills.tobytes()


def test_topology_is_fused_in_pipeline_order():
    topo, data, src = prepare(TICKS, quotes([(0, 99.0, 101.0)]), {"stages.signal.params.fast": 5})
    assert [p.name for p in topo.processes] == ["backtest"]
    assert topo.processes[0].stages == ("feed", "book", "signal", "risk", "exec")
    assert topo.engine.symbols == ("X",) and topo.stage("signal").params["fast"] == 5
    assert dict(topo.stage("feed").params) == {"spread_bps": 1.0, "quote_size": 0.0, "batch": 256, "clock": "data"}
    per_stage = load_topology(os.path.join(ROOT, "config", "per-stage.toml"))
    assert pipeline_order(per_stage) == ["feed", "book", "signal", "risk", "exec"]


def test_a_live_topology_gets_the_replay_and_the_sim_venue():
    topo, _, _ = prepare(os.path.join(ROOT, "config", "alpaca-paper.toml"), quotes([(0, 99.0, 101.0)]), None)
    assert topo.stage("feed").class_path == "procs.replay_feed:ReplayFeed"
    assert topo.stage("exec").class_path == "procs.exec:ExecStage"
    assert set(topo.stage("exec").params) <= set(ExecStage.PARAMS)


def test_overrides_dotted_nested_and_on_a_topology_object():
    data = bars([100, 100, 104, 104, 96])
    dotted = run_backtest(BARS, data, overrides=EMA_1_3)
    nested = run_backtest(BARS, data, overrides={"stages": {"signal": {"params": {
        k.split(".")[-1]: v for k, v in EMA_1_3.items()}}}})
    topo = run_backtest(load_topology(BARS), data, overrides=EMA_1_3)
    assert len(dotted.fills) == 2
    assert dotted.fills.tobytes() == nested.fills.tobytes() == topo.fills.tobytes()
    with pytest.raises(BacktestError, match=r"engine.name: a Topology object takes overrides of"):
        run_backtest(load_topology(BARS), data, overrides={"engine.name": "x"})


def test_equity_sampled_once_per_interval_that_held_data():
    rows = [(0, 99.99, 100.01), (400 * MS, 99.99, 100.01), (2500 * MS, 99.99, 100.01), (2600 * MS, 99.99, 100.01)]
    res = run_backtest(TICKS, quotes(rows), equity_every="1s")
    assert res.equity["t_ns"].tolist() == [T0, T0 + 1000 * MS, T0 + 3000 * MS]     # interval ends; 1-2 s had none
    every = run_backtest(TICKS, quotes(rows), equity_every="bar")
    assert every.equity["t_ns"].tolist() == [T0 + dt for dt, _, _ in rows]
    with pytest.raises(BacktestError, match="equity_every: 'bar' or a duration"):
        run_backtest(TICKS, quotes(rows), equity_every="often")


def test_bad_inputs_raise_backtest_error_naming_the_fault(tmp_path):
    with pytest.raises(BacktestError, match=r"stages.feed replays bars to the signal, but the data .* hold"):
        run_backtest(BARS, quotes([(0, 99.0, 101.0)]))
    with pytest.raises(BacktestError, match=r"stages.signal.params.slow: must be > fast"):
        run_backtest(BARS, bars([100, 101]), overrides={"stages.signal.params.fast": 40})
    with pytest.raises(BacktestError, match=r"stages.signal.params.bogus: unknown parameter"):
        run_backtest(BARS, bars([100, 101]), overrides={"stages.signal.params.bogus": 1})
    with pytest.raises(BacktestError, match="cannot read topology file"):
        run_backtest(str(tmp_path / "none.toml"), bars([100]))
    with pytest.raises(BacktestError, match="expected a MarketData"):
        run_backtest(BARS, np.zeros(3, TICK))


def test_data_from_the_configs_path_when_none_is_given():
    res = run_backtest(BARS, None)
    assert res.events == 1950 and res.symbols == ("DEMO",)


def test_write_reports(tmp_path):
    res = run_backtest(BARS, load_ticks(DEMO))
    out = res.write(tmp_path / "r")
    assert sorted(os.path.basename(p) for p in out.values()) == ["equity.csv", "report.html", "summary.json",
                                                                 "trades.csv"]
    s = res.summary
    assert s["events"] == 1950 and s["symbols"] == ["DEMO"] and s["loop"] == "native"
    assert s["final_equity"] == res.metrics["final_equity"] and s["counters"]["exec"]["orders_in"] == len(res.orders)
