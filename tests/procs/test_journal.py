"""Journals (procs/journal.py): the TickJournal stage and exec's order journal.

Stages run over private memory built from ``config/journaled.toml`` (no /dev/shm, no
processes); the test plays the neighbours through the rings' Python façade. Journal paths
point into ``tmp_path``.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from layouts.market import TICK, TICK_QUOTE, TICK_TRADE
from layouts.orders import BUY, FILL, ORDER, ORDER_MARKET, SELL
from pyrt_shm.agent import AgentInvoker, CompositeAgent
from pyrt_shm.config import load_topology, override_from_dotted
from pyrt_shm.wiring import EngineMemory

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "config", "journaled.toml")


def memory(tmp_path, flat=None) -> EngineMemory:
    over = {"stages.journal.params.path": str(tmp_path / "j-{engine}-{pid}" / "ticks.npy"),
            "stages.exec.params.order_journal.path": str(tmp_path / "j-{engine}-{pid}" / "orders.npy")}
    flat = flat or {}
    over = {k: v for k, v in over.items() if not any(k.startswith(f + ".") for f in flat)}
    over.update(flat)
    topo = load_topology(CONFIG, overrides=override_from_dotted(over), available_cpus={0, 1},
                         isolated_cpus=())
    return EngineMemory(topo, backend="local")


def ticks(n, start=0):
    t = np.zeros(n, TICK)
    t["seq"] = np.arange(start, start + n)
    t["recv_ns"] = 1_000_000 + 10 * t["seq"].astype(np.int64)
    t["sym"] = t["seq"] % 4
    t["kind"] = np.where(t["seq"] % 5 == 0, TICK_TRADE, TICK_QUOTE)
    t["price"] = np.where(t["kind"] == TICK_TRADE, 100.0 + 0.01 * (t["seq"] % 7), 0.0)
    t["size"] = np.where(t["kind"] == TICK_TRADE, 100.0, 0.0)
    t["bid"] = np.where(t["kind"] == TICK_QUOTE, 99.99, 0.0)
    t["ask"] = np.where(t["kind"] == TICK_QUOTE, 100.01, 0.0)
    t["bid_size"] = t["ask_size"] = np.where(t["kind"] == TICK_QUOTE, 200.0, 0.0)
    return t


def drain(ring) -> np.ndarray:
    out = []
    while len(got := ring.poll(4096)):
        out.append(got)
    return np.concatenate(out) if out else np.zeros(0, ring.dtype)


def run_idle(stage, now=0, max_cycles=100_000) -> int:
    total = 0
    for _ in range(max_cycles):
        w = stage.do_work(now)
        if not w:
            return total
        total += w
    raise AssertionError(f"{stage.name} still busy after {max_cycles} cycles")


def sidecar(path) -> dict:
    with open(str(path)[:-4] + ".json") as f:
        return json.load(f)


# -- TickJournal ---------------------------------------------------------------------------------

def test_ticks_pass_unchanged_and_the_journal_holds_exactly_them(tmp_path):
    mem = memory(tmp_path)
    j = mem.build_stage("journal")
    j.warm_up()
    path = j.path
    assert path == str(tmp_path / f"j-journaled-{os.getpid()}" / "ticks.npy")
    assert os.path.exists(path + ".part") and not os.path.exists(path)
    sent = ticks(1000)
    mem.rings["md_raw"].put(sent[:600])
    run_idle(j)
    mem.rings["md_raw"].put(sent[600:])
    run_idle(j)
    out = drain(mem.rings["md"])
    assert out.tobytes() == sent.tobytes()                      # forwarded bit for bit, in order
    assert j.counter_values() == {"ticks": 1000, "journaled": 1000, "journal_overflow": 0}
    j.on_close()
    assert not os.path.exists(path + ".part")
    got = np.load(path)
    assert got.dtype == TICK and got.tobytes() == sent.tobytes()
    info = sidecar(path)
    assert info == j.journal_info()
    assert (info["records"], info["overflow"], info["complete"]) == (1000, 0, True)
    assert (info["first_seq"], info["last_seq"], info["seq_gaps"]) == (0, 999, 0)
    assert info["engine"] == "journaled" and info["symbols"] == ["SYM0", "SYM1", "SYM2", "SYM3"]
    assert info["kind"] == "tick" and info["pid"] == os.getpid()
    j.on_close()                                                # idempotent
    assert np.load(path).tobytes() == sent.tobytes()


def test_file_is_sparse_and_cut_to_the_records_written(tmp_path):
    mem = memory(tmp_path, {"stages.journal.params.capacity": 1 << 20})
    j = mem.build_stage("journal")
    j.warm_up()
    st = os.stat(j.path + ".part")
    assert st.st_size >= (1 << 20) * TICK.itemsize            # preallocated ...
    assert st.st_blocks * 512 < 1 << 20                         # ... but sparse: ~80 MB, < 1 MB used
    mem.rings["md_raw"].put(ticks(10))
    run_idle(j)
    j.on_close()
    header = os.path.getsize(j.path) - 10 * TICK.itemsize
    assert 0 < header <= 4096 and header % 64 == 0             # a .npy header, then the 10 records
    assert len(np.load(j.path, mmap_mode="r")) == 10


def test_a_full_journal_forwards_counts_and_reports_what_it_could_not_write(tmp_path, capsys):
    mem = memory(tmp_path, {"stages.journal.params.capacity": 5})
    j = mem.build_stage("journal")
    sent = ticks(12)
    mem.rings["md_raw"].put(sent)
    run_idle(j)
    assert drain(mem.rings["md"]).tobytes() == sent.tobytes()  # trading goes on
    assert j.counter_values() == {"ticks": 12, "journaled": 5, "journal_overflow": 7}
    j.on_close()
    assert np.load(j.path).tobytes() == sent[:5].tobytes()
    info = sidecar(j.path)
    assert (info["records"], info["overflow"], info["complete"], info["capacity"]) == (5, 7, False, 5)
    err = capsys.readouterr().err
    assert "journal" in err and "7 tick record(s) not journaled" in err and "capacity 5" in err


def test_backpressure_consumes_only_what_the_book_ring_takes(tmp_path):
    mem = memory(tmp_path, {"rings.md.capacity": 8})
    j = mem.build_stage("journal")
    sent = ticks(20)
    mem.rings["md_raw"].put(sent)
    assert j.do_work(0) == 8 and j.do_work(0) == 0              # the book's ring is full
    assert mem.rings["md_raw"].statistics().depth == 12         # the rest waits upstream
    out = [drain(mem.rings["md"])]
    run_idle(j)
    out.append(drain(mem.rings["md"]))
    run_idle(j)
    out.append(drain(mem.rings["md"]))
    assert np.concatenate(out).tobytes() == sent.tobytes()
    j.on_close()
    assert np.load(j.path).tobytes() == sent.tobytes()          # journaled once each, in order


def test_seq_gaps_are_reported(tmp_path):
    mem = memory(tmp_path)
    j = mem.build_stage("journal")
    mem.rings["md_raw"].put(np.concatenate([ticks(5), ticks(5, start=8)]))
    run_idle(j)
    j.on_close()
    info = sidecar(j.path)
    assert (info["first_seq"], info["last_seq"], info["seq_gaps"]) == (0, 12, 1)


def test_an_unfinished_journal_is_a_valid_npy_of_capacity_records(tmp_path):
    mem = memory(tmp_path, {"stages.journal.params.capacity": 64})
    j = mem.build_stage("journal")
    sent = ticks(10)
    mem.rings["md_raw"].put(sent)
    run_idle(j)
    part = np.load(j.path + ".part")                            # as a killed process leaves it
    assert len(part) == 64 and part[:10].tobytes() == sent.tobytes()
    assert not part[10:].view(np.uint8).any()


def test_an_existing_journal_is_not_overwritten_unless_asked(tmp_path):
    fixed = str(tmp_path / "fixed" / "ticks.npy")
    mem = memory(tmp_path, {"stages.journal.params.path": fixed})
    j = mem.build_stage("journal")
    mem.rings["md_raw"].put(ticks(3))
    run_idle(j)
    j.on_close()
    with pytest.raises(ValueError, match=r"stages\.journal\.params: journal .*ticks\.npy already exists"):
        memory(tmp_path, {"stages.journal.params.path": fixed}).build_stage("journal")
    mem2 = memory(tmp_path, {"stages.journal.params.path": fixed, "stages.journal.params.overwrite": True})
    j2 = mem2.build_stage("journal")
    mem2.rings["md_raw"].put(ticks(2, start=50))
    run_idle(j2)
    j2.on_close()
    assert np.load(fixed)["seq"].tolist() == [50, 51]


@pytest.mark.parametrize("flat, message", [
    ({"stages.journal.params.path": "runs/{run}/t.npy"},
     r"stages\.journal\.params\.path: unknown placeholder\(s\) \{run\}"),
    ({"stages.journal.params.path": "runs/t.bin"}, r"stages\.journal\.params\.path: a journal is a \.npy"),
    ({"stages.journal.params.path": ""}, r"stages\.journal\.params\.path: a journal path must be a non-empty"),
    ({"stages.journal.params.path": "runs/{/t.npy"}, r"stages\.journal\.params\.path: malformed path"),
    ({"stages.journal.params.capacity": 0}, r"stages\.journal\.params\.capacity: must be an integer >= 1"),
    ({"stages.journal.params.overwrite": "yes"}, r"stages\.journal\.params\.overwrite: must be true or false"),
    ({"stages.journal.params.colour": 1}, r"stages\.journal\.params\.colour: unknown parameter"),
    ({"stages.exec.params.order_journal": "runs/o.npy"},
     r"stages\.exec\.params\.order_journal: expected a table"),
    ({"stages.exec.params.order_journal.size": 5},
     r"stages\.exec\.params\.order_journal: unknown key\(s\) size"),
    ({"stages.exec.params.order_journal.capacity": -1},
     r"stages\.exec\.params\.order_journal\.capacity: must be an integer >= 1"),
])
def test_bad_journal_params_fail_naming_the_key(tmp_path, flat, message):
    mem = memory(tmp_path, flat)
    stage = "exec" if "exec" in next(iter(flat)) else "journal"
    if stage == "exec":
        mem.build_stage("risk")
    with pytest.raises(ValueError, match=message):
        mem.build_stage(stage)
    assert not any(p.name.endswith(".part") for p in tmp_path.rglob("*"))   # nothing half-made


def test_missing_path_is_named(tmp_path):
    topo = load_topology(CONFIG, available_cpus={0, 1}, isolated_cpus=())
    params = dict(topo.stage("journal").params)
    del params["path"]
    from pyrt_shm.stage import StageContext
    from procs.journal import TickJournal

    mem = EngineMemory(topo, backend="local")
    ctx = mem.stage_context("journal")
    ctx.params = params
    with pytest.raises(ValueError, match=r"stages\.journal\.params\.path: required"):
        TickJournal(ctx)
    bare = StageContext(name="journal", index=0, params={"path": "x/{engine}.npy"},
                        inputs=ctx.inputs, outputs=ctx.outputs, counters=ctx.counters,
                        control=np.zeros(1, mem.control.dtype))
    with pytest.raises(ValueError, match=r"uses \{engine\} but the engine name is unknown"):
        TickJournal(bare)


# -- exec's order journal --------------------------------------------------------------------------

def orders(ids, sym=0):
    o = np.zeros(len(ids), ORDER)
    o["order_id"] = ids
    o["intent_seq"] = np.asarray(ids) + 100
    o["sym"] = sym
    o["side"] = np.where(np.asarray(ids) % 2 == 0, BUY, SELL)
    o["order_type"] = ORDER_MARKET
    o["qty"] = 100.0
    o["feed_ns"] = 1000 + np.asarray(ids)
    o["sent_ns"] = 2000 + np.asarray(ids)
    return o


def exec_pair(tmp_path, flat=None):
    mem = memory(tmp_path, flat)
    mem.tables["tops"].write(0, sym=0, valid=1, bid=99.0, ask=101.0, bid_size=1e6, ask_size=1e6)
    mem.build_stage("risk")                                     # tags the order ring
    ex = mem.build_stage("exec")
    ex.warm_up()
    return mem, ex


def test_exec_journals_every_order_it_receives_once_in_ring_order(tmp_path):
    mem, ex = exec_pair(tmp_path, {"stages.exec.params.batch": 4})
    sent = orders(list(range(1, 11)))
    mem.rings["order"].put(sent[:7])
    assert ex.do_work(1_000) > 0                                # batch 4: three orders stay in the ring
    assert mem.rings["order"].statistics().depth == 3
    run_idle(ex, 1_000)
    mem.rings["order"].put(sent[7:])
    run_idle(ex, 2_000)
    fills = drain(mem.rings["fill"])
    assert ex.counter("orders_in") == 10 and ex.counter("executions") == 10
    ex.on_close()
    path = ex.order_journal.path
    got = np.load(path)
    assert got.dtype == ORDER and got.tobytes() == sent.tobytes()
    info = sidecar(path)
    assert (info["kind"], info["records"], info["overflow"], info["complete"]) == ("order", 10, 0, True)
    assert len(fills) == 10 and fills.dtype == FILL


def test_exec_behaves_the_same_with_and_without_the_order_journal(tmp_path):
    from procs.exec import ExecStage, exec_step

    topo = load_topology(CONFIG, available_cpus={0, 1}, isolated_cpus=())
    plain = dict(topo.stage("exec").params)
    del plain["order_journal"]                                  # the param absent: no journal
    mem_plain = EngineMemory(topo, backend="local")
    mem_plain.tables["tops"].write(0, sym=0, valid=1, bid=99.0, ask=101.0, bid_size=1e6, ask_size=1e6)
    mem_plain.build_stage("risk")
    ctx = mem_plain.stage_context("exec")
    ctx.params = plain
    ex_plain = ExecStage(ctx)
    ex_plain.warm_up()
    assert ex_plain.order_journal is None and ex_plain.kernel()[0] is exec_step
    mem_j, ex_j = exec_pair(tmp_path)
    assert ex_j.kernel()[0] is not exec_step
    sent = orders(list(range(1, 21)))
    out = []
    for mem, ex in ((mem_plain, ex_plain), (mem_j, ex_j)):
        mem.rings["order"].put(sent)
        run_idle(ex, 5_000)
        f = drain(mem.rings["fill"])
        f["sent_ns"] = 0                                        # the publish stamp is the clock
        out.append((f, ex.counter_values()))
        ex.on_close()
    assert len(out[0][0]) > 0 and (out[0][0] == out[1][0]).all()   # field by field (not padding)
    assert out[0][1] == out[1][1]
    assert np.load(ex_j.order_journal.path).tobytes() == sent.tobytes()


def test_order_journal_overflow_is_reported(tmp_path, capsys):
    mem, ex = exec_pair(tmp_path, {"stages.exec.params.order_journal.capacity": 3})
    mem.rings["order"].put(orders([1, 2, 3, 4, 5]))
    run_idle(ex, 1_000)
    assert ex.counter("orders_in") == 5                         # every order still executed
    ex.on_close()
    assert np.load(ex.order_journal.path)["order_id"].tolist() == [1, 2, 3]
    info = sidecar(ex.order_journal.path)
    assert (info["records"], info["overflow"], info["complete"]) == (3, 2, False)
    assert "2 order record(s) not journaled" in capsys.readouterr().err


# -- the whole pipeline ---------------------------------------------------------------------------

def test_journaled_pipeline_records_what_the_book_saw_and_what_exec_got(tmp_path):
    """feed -> journal -> book -> signal -> risk -> exec fused, unpaced, until idle."""
    mem = memory(tmp_path, {"stages.feed.params.max_ticks": 5000, "stages.feed.params.rate": 0})
    stages = {s.name: mem.build_stage(s.name) for s in mem.topology.stages}
    for s in stages.values():
        s.warm_up()
    inv = AgentInvoker(CompositeAgent(list(stages.values())))
    inv.run_until_idle(max_cycles=100_000, idle_cycles=3)
    inv.close()                                                 # on_close finishes both journals
    c = {n: s.counter_values() for n, s in stages.items()}
    t = np.load(stages["journal"].path)
    o = np.load(stages["exec"].order_journal.path)
    assert len(t) == c["feed"]["ticks_out"] == c["book"]["ticks_in"] == 5000
    assert t["seq"].tolist() == list(range(5000))
    assert len(o) == c["risk"]["orders_out"] == c["exec"]["orders_in"] > 0
    assert o["order_id"].tolist() == list(range(1, len(o) + 1))
    assert sidecar(stages["exec"].order_journal.path)["engine"] == "journaled"
