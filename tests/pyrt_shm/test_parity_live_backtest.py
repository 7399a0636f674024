"""Live -> backtest parity: a journaled engine run, replayed by ``run_backtest`` over its own
tick journal, makes the same orders.

The live run is ``pyrt run --config <journaled topology>`` in a subprocess (two processes:
feed + journal, and the hot loop), paced at RATE ticks/s for MAX_TICKS ticks with L2 book data.
Its journals are the evidence: ``ticks.npy`` (every tick the book consumed, in order) and
``orders.npy`` (every ORDER exec received from risk). The backtest replays ``ticks.npy`` through
the same topology file, on the data clock, in one process, and journals again.

**What is compared, and why.** The decision fields of every order, in order: ``order_id``,
``intent_seq``, ``sym``, ``side``, ``order_type``, ``tif``, ``qty``, ``limit_px``, ``tag``,
``action``, ``orig_order_id``, ``parent_id``, and ``feed_ns``: the stamp of the tick that caused
the order. ``feed_ns`` maps exactly: the live feed stamps ``recv_ns`` and leaves ``exch_ns`` 0;
``load_ticks`` takes ``recv_ns`` as the data time when ``exch_ns`` is 0, and the replay stamps
``recv_ns = exch_ns``, so an order caused by the same tick carries the same ``feed_ns`` (checked
also through the tick's ``seq``). ``sent_ns`` is excluded: it is risk's publish stamp read from
the machine clock (CLOCK_MONOTONIC) at the moment the order left risk, in the live run and in
the replay alike (the runner's recorded copy replaces it with the data time); it says when the
machine got there, not what was decided.

**Checks that depend on time, and how they are neutralised.** The live engine runs on the
machine clock and batches: one hot-loop cycle may apply up to ``batch`` ticks to the book before
the signal and risk run, and fills come back a cycle later; the backtest applies one data
instant at a time. So every check whose input is *when* (or *how far along the book is*) could
decide differently, and the test's limits keep all of them from binding:

* machine/data clock: risk's order-rate token buckets (``rate_per_sec``, ``rate_per_min``;
  refilled on the stage's ``now``) -> 0 (off); exec's router rate limit (``rate_limit_per_sec``)
  and the venue latency -> 0; algos, stop retries and session close are unused/off;
* book state at check time: the price collar (touch vs ``ref_px``) -> 0 (off); notional, gross
  and net exposure, concentration and buying power (priced at the touch at check time) -> limits
  far above anything the run reaches;
* fills returned so far: ``max_position``, ``max_open_orders``, daily loss and drawdown (and the
  automatic HALT they trigger), stop-loss / trailing stops -> off or far above reach.

The test asserts that risk rejected nothing in either run, so no limit could have made a
difference, and that the strategy (EmaCross: a pure function of the book events) produced
orders at all.
"""
from __future__ import annotations

import json
import os

import numpy as np

from bench.backtest import LOOSE_LIMITS          # limits that never bind (the module doc's list)
from engine_proc import ROOT, finish, shm_entries, start_engine, stop_engine, summary_of

CONFIG = os.path.join(ROOT, "config", "journaled.toml")
MAX_TICKS = 20_000
RATE = 20_000
ENGINE_TIMEOUT_S = 240
#: ORDER fields that carry the decision (see module doc); sent_ns is excluded.
FIELDS = ("order_id", "intent_seq", "sym", "side", "order_type", "tif", "qty", "limit_px", "tag",
          "action", "orig_order_id", "parent_id", "feed_ns")
TICK_FIELDS_BUT_EXCH = ("seq", "recv_ns", "sym", "kind", "flags", "price", "size", "bid", "ask", "bid_size",
                        "ask_size")


def _replace(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"config/journaled.toml changed: {old!r} not found exactly once"
    return text.replace(old, new)


def parity_config(tmp_path) -> str:
    """config/journaled.toml with loose limits, L2 data and the journals in ``tmp_path/live``."""
    limits = tmp_path / "limits.toml"
    limits.write_text(LOOSE_LIMITS)
    text = open(CONFIG).read()
    text = _replace(text, 'params = { rate = 100000, seed = 42 }',
                    'params = { rate = 100000, seed = 7, book_levels = 5 }')
    text = _replace(text, '"runs/journal-{engine}-{pid}/ticks.npy"', json.dumps(str(tmp_path / "live" / "ticks.npy")))
    text = _replace(text, '"runs/journal-{engine}-{pid}/orders.npy"', json.dumps(str(tmp_path / "live" / "orders.npy")))
    text = _replace(text, 'params = { pnl_sample_ms = 1000 }',
                    f'params = {{ pnl_sample_ms = 1000, limits = {json.dumps(str(limits))} }}')
    path = tmp_path / "parity.toml"
    path.write_text(text)
    return str(path)


def first_difference(live: np.ndarray, replay: np.ndarray) -> str:
    n = min(len(live), len(replay))
    for i in range(n):
        bad = [f for f in FIELDS if live[i][f] != replay[i][f]]
        if bad:
            return (f"order #{i}: fields {bad}: live {[live[i][f].item() for f in bad]} vs backtest "
                    f"{[replay[i][f].item() for f in bad]}")
    return f"{len(live)} live orders vs {len(replay)} in the backtest (the first {n} agree)"


def same_orders(live: np.ndarray, replay: np.ndarray) -> bool:
    return len(live) == len(replay) and all(np.array_equal(live[f], replay[f]) for f in FIELDS)


def test_backtest_of_the_journal_makes_the_live_orders(engine_name, tmp_path):
    from pyrt_shm.research.backtest import run_backtest
    from pyrt_shm.research.data import load_ticks

    cfg = parity_config(tmp_path)
    proc = start_engine(engine_name, str(tmp_path / "run"), "--config", cfg, "--max-ticks", str(MAX_TICKS),
                        "--rate", str(RATE), "--duration", "120")
    try:
        rc, out, err = finish(proc, timeout=ENGINE_TIMEOUT_S)
    finally:
        stop_engine(proc, engine_name)
    assert rc == 0, err[-4000:]
    assert not shm_entries(engine_name)
    s = summary_of(out)
    c = s["counters"]
    assert c["feed"]["ticks_out"] == MAX_TICKS and c["book"]["ticks_in"] == MAX_TICKS
    assert c["journal"] == {"ticks": MAX_TICKS, "journaled": MAX_TICKS, "journal_overflow": 0}
    assert c["risk"]["rejected"] == 0, c["risk"]                 # no limit bound in the live run
    assert c["risk"]["orders_out"] == c["exec"]["orders_in"] > 10

    live_dir = tmp_path / "live"
    tick_info = json.loads((live_dir / "ticks.json").read_text())
    order_info = json.loads((live_dir / "orders.json").read_text())
    assert tick_info["complete"] and tick_info["records"] == MAX_TICKS and tick_info["seq_gaps"] == 0
    assert order_info["complete"] and order_info["records"] == c["exec"]["orders_in"]
    live_ticks = np.load(live_dir / "ticks.npy")
    live_orders = np.load(live_dir / "orders.npy")
    assert (live_ticks["exch_ns"] == 0).all() and (np.diff(live_ticks["recv_ns"]) > 0).all()

    data = load_ticks(str(live_dir / "ticks.npy"), symbols=tick_info["symbols"])
    bt_dir = tmp_path / "backtest"
    res = run_backtest(cfg, data, overrides={
        "stages.journal.params.path": str(bt_dir / "ticks.npy"),
        "stages.exec.params.order_journal.path": str(bt_dir / "orders.npy")})
    assert res.counters["risk"]["rejected"] == 0, res.counters["risk"]
    assert res.events == MAX_TICKS

    # the book saw the same ticks: the replay's journal is the live one, exch_ns now set
    bt_ticks = np.load(bt_dir / "ticks.npy")
    assert len(bt_ticks) == MAX_TICKS
    assert (bt_ticks["exch_ns"] == live_ticks["recv_ns"]).all()
    for f in TICK_FIELDS_BUT_EXCH:
        assert np.array_equal(bt_ticks[f], live_ticks[f]), f

    # the same orders: the runner's record and the backtest's own order journal
    assert same_orders(live_orders, res.orders), first_difference(live_orders, res.orders)
    bt_orders = np.load(bt_dir / "orders.npy")
    assert same_orders(live_orders, bt_orders), first_difference(live_orders, bt_orders)

    # each order's feed_ns is the stamp of a journaled tick: the cause maps through seq
    by_stamp = dict(zip(live_ticks["recv_ns"].tolist(), live_ticks["seq"].tolist()))
    assert all(t in by_stamp for t in live_orders["feed_ns"].tolist())


def test_a_differing_order_is_named(tmp_path):
    """The comparison's failure message names the first differing order and field."""
    from layouts.orders import ORDER

    a = np.zeros(3, ORDER)
    a["order_id"] = [1, 2, 3]
    b = a.copy()
    b["sent_ns"] = 99                                             # excluded: no difference
    assert same_orders(a, b)
    b["side"][1] = -1
    assert not same_orders(a, b)
    assert first_difference(a, b) == "order #1: fields ['side']: live [0] vs backtest [-1]"
    assert first_difference(a, a[:2].copy()) == "3 live orders vs 2 in the backtest (the first 2 agree)"
    assert not same_orders(a, a[:2].copy())
