"""The embedded default pipeline fused in one process: every record accounted for, deterministic.

All five stages run over private memory (``EngineMemory(..., backend="local")``) in one
``CompositeAgent`` driven by an ``AgentInvoker`` until idle; the feed is unpaced
(``rate = 0``) and stops after ``max_ticks``.
"""
from __future__ import annotations

import numpy as np

from pyrt_shm.agent import AgentInvoker, CompositeAgent

MAX_TICKS = 20_000


def run_pipeline(engine, **feed_params):
    over = {"stages.feed.params.max_ticks": MAX_TICKS, "stages.feed.params.rate": 0}
    over.update({f"stages.feed.params.{k}": v for k, v in feed_params.items()})
    mem = engine(over)
    stages = {s.name: mem.build_stage(s.name) for s in mem.topology.stages}
    for s in stages.values():
        s.warm_up()
    inv = AgentInvoker(CompositeAgent(list(stages.values())))
    inv.run_until_idle(max_cycles=1_000_000, idle_cycles=3)
    inv.close()
    counters = {name: s.counter_values() for name, s in stages.items()}
    return mem, stages, counters


def test_every_record_is_accounted_for(engine):
    mem, stages, c = run_pipeline(engine)
    feed, book, sig, risk, ex = (c[n] for n in ("feed", "book", "signal", "risk", "exec"))
    assert feed["finished"] == 1 and feed["ticks_out"] == MAX_TICKS
    assert book["ticks_in"] == feed["ticks_out"]
    assert book["events_out"] == sig["events_in"] == book["quotes"] + book["trades"]
    assert sig["intents_out"] > 0 and sig["intents_out"] == sig["crosses_up"] + sig["crosses_down"]
    rejections = sum(v for k, v in risk.items() if k.startswith("rej_"))
    assert risk["rejected"] == rejections
    assert risk["intents_in"] == sig["intents_out"] == risk["orders_out"] + rejections
    # market orders of 100 against lots of >= 100 at the touch: one full fill each
    assert ex["orders_in"] == risk["orders_out"] and ex["fills_out"] == ex["orders_in"]
    assert ex["orders_done"] == ex["executions"] == ex["orders_in"]
    assert risk["fills_in"] == ex["fills_out"]
    assert mem.tables["risk_state"].read(0)["open_orders"] == 0
    assert risk["fill_unknown_order"] == risk["fill_overfill"] == ex["duplicate_order_id"] == 0
    assert risk["fill_bad"] == ex["bad_order"] == 0
    for ring in mem.rings.values():                      # everything drained
        assert ring.statistics().depth == 0

    # Positions: risk's table == exec's independent record == the sum of the fills.
    fills_ring = mem.rings["fill"]
    assert ex["fills_out"] <= fills_ring.statistics().capacity     # the ring has not wrapped
    fills = fills_ring.recs[:ex["fills_out"]]
    assert fills["fill_id"].tolist() == list(range(1, ex["fills_out"] + 1))
    pos = mem.tables["positions"].snapshot()
    venue = mem.tables["venue_positions"].snapshot()
    for s in range(len(mem.topology.engine.symbols)):
        f = fills[(fills["sym"] == s) & (fills["qty"] > 0)]
        signed = np.where(f["side"] > 0, f["qty"], -f["qty"])
        assert pos[s]["qty"] == venue[s]["qty"] == signed.sum()
        assert pos[s]["bought"] == venue[s]["bought"] == f["qty"][f["side"] > 0].sum()
        assert pos[s]["sold"] == venue[s]["sold"] == f["qty"][f["side"] < 0].sum()
        assert pos[s]["fills"] == venue[s]["fills"] == len(f)
        assert np.isclose(pos[s]["fees"], venue[s]["fees"]) and np.isclose(pos[s]["fees"], f["fee"].sum())
        assert pos[s]["open_buy"] == pos[s]["open_sell"] == 0.0
        assert abs(pos[s]["qty"]) <= 500.0                        # max_position held
    # Latency histograms saw every record they should.
    h = {name: mem.hists[mem.hist_names.index(name)]["total"] for name in mem.hist_names}
    assert h["book.latency"] == MAX_TICKS and h["signal.latency"] == book["events_out"]
    assert h["risk.latency"] == risk["intents_in"] and h["risk.fill_latency"] == risk["fills_in"]
    assert h["exec.latency"] == h["exec.tick_to_order"] == ex["orders_in"]


def test_the_run_is_deterministic(engine):
    mem1, _, c1 = run_pipeline(engine, seed=11)
    mem2, _, c2 = run_pipeline(engine, seed=11)
    assert c1 == c2
    for t in ("positions", "venue_positions", "tops"):
        a, b = mem1.tables[t].snapshot(), mem2.tables[t].snapshot()
        if t == "tops":                       # updated_ns is the feed's clock stamp
            a, b = a[[n for n in a.dtype.names if n != "updated_ns"]], b[[n for n in b.dtype.names if n != "updated_ns"]]
        assert np.array_equal(a, b), t
    _, _, c3 = run_pipeline(engine, seed=12)
    assert c3 != c1
