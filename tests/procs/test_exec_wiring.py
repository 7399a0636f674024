"""Proof that exec reads orders only from risk's ring, and that nothing else reaches the venue.

1. Every shipped topology wires exactly one order ring, from risk to exec, and exec has no
   other input.
2. The code: only ``procs/exec.py`` calls the venue (``sim_venue.submit``), only from its
   jitted step, and only ``procs/risk.py`` produces order records.
3. A topology whose order ring comes from another stage is refused at start, in process and
   through ``pyrt run`` (exit 2, the message names the ring).
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

from pyrt_shm.config import load_topology, override_from_dotted
from pyrt_shm.stage import Stage
from pyrt_shm.wiring import EngineMemory, WiringError, stage_classes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = [None] + [os.path.join(ROOT, "config", f) for f in ("default.toml", "per-stage.toml", "fused.toml")]


class OrderSpammer(Stage):
    """A stage that could write orders straight to exec, skipping the checks."""

    INPUTS = ("intent", "fill")
    OUTPUTS = ("order",)

    def do_work(self, now_ns: int) -> int:
        return 0


@pytest.mark.parametrize("path", CONFIGS, ids=["embedded", "default", "per-stage", "fused"])
def test_every_shipped_topology_wires_orders_from_risk_to_exec_only(path):
    topo = load_topology(path, available_cpus={0, 1}, isolated_cpus=())
    classes = stage_classes(topo)
    order_rings = [r for r in topo.rings if r.record == "order"]
    assert len(order_rings) == 1
    (r,) = order_rings
    assert topo.stage(r.producer).class_path == "procs.risk:RiskStage"
    assert topo.stage(r.consumer).class_path == "procs.exec:ExecStage"
    assert classes[r.consumer].INPUTS == ("order",)              # exec's only input
    assert [x.record for x in topo.rings_in(r.consumer)] == ["order"]
    fills = [x for x in topo.rings if x.record == "fill"]
    assert [(x.producer, x.consumer) for x in fills] == [(r.consumer, r.producer)]


def _calls(tree, name):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and ((isinstance(n.func, ast.Name) and n.func.id == name)
                 or (isinstance(n.func, ast.Attribute) and n.func.attr == name))]


def test_only_exec_reaches_the_venue_and_only_risk_produces_orders():
    procs = os.path.join(ROOT, "procs")
    callers, producers = {}, {}
    for dirpath, _, files in os.walk(procs):
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, ROOT)
            src = open(path).read()
            tree = ast.parse(src)
            if "sim_venue" in src or rel == "procs/sim_venue.py":
                n = [c for c in _calls(tree, "submit")]
                if n:
                    callers[rel] = len(n)
            for c in _calls(tree, "output"):
                if c.args and isinstance(c.args[0], ast.Constant) and c.args[0].value == "order":
                    producers[rel] = producers.get(rel, 0) + 1
    assert set(callers) == {"procs/exec.py"}, callers
    assert producers == {"procs/risk.py": 1}, producers
    # and within exec, the venue is called from the step's helpers on records from the ring
    tree = ast.parse(open(os.path.join(procs, "exec.py")).read())
    fns = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and _calls(n, "submit")}
    assert fns == {"intake", "hand_off"}


def _topology(risk_class):
    over = {"stages.risk.class": risk_class, "stages.signal.class": "procs.signal:EmaCrossSignal"}
    return load_topology(None, overrides=override_from_dotted(over), available_cpus={0, 1},
                         isolated_cpus=())


def test_a_topology_feeding_exec_from_another_stage_is_refused_at_start():
    mem = EngineMemory(_topology("test_exec_wiring:OrderSpammer"), backend="local")
    stages = {s.name: mem.build_stage(s.name) for s in mem.topology.stages}
    with pytest.raises(WiringError) as e:
        for s in stages.values():
            s.warm_up()                                    # what the supervisor does at start
    msg = str(e.value)
    assert "rings.order: stage 'exec' reads orders only from the risk stage (procs.risk:RiskStage)" in msg
    assert "pre-trade checks" in msg


def test_a_risk_subclass_is_accepted():
    import types

    import procs.risk

    mod = types.ModuleType("my_risk_mod")
    exec("from procs.risk import RiskStage\nclass MyRisk(RiskStage):\n    pass\n", mod.__dict__)
    sys.modules["my_risk_mod"] = mod
    try:
        mem = EngineMemory(_topology("my_risk_mod:MyRisk"), backend="local")
        stages = {s.name: mem.build_stage(s.name) for s in mem.topology.stages}
        stages["exec"].check_order_source()
        assert issubclass(mod.MyRisk, procs.risk.RiskStage)
    finally:
        del sys.modules["my_risk_mod"]


def test_pyrt_run_refuses_it_with_exit_2(tmp_path, engine_name):
    cfg = tmp_path / "spam.toml"
    cfg.write_text(open(os.path.join(ROOT, "config", "default.toml")).read()
                   .replace('class = "procs.risk:RiskStage"', 'class = "test_exec_wiring:OrderSpammer"'))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests", "procs")]))
    res = subprocess.run([sys.executable, "-m", "pyrt_shm.cli", "run", "--config", str(cfg), "--engine",
                          engine_name, "--duration", "1", "--quiet"], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "invalid configuration" in res.stderr and "reads orders only from the risk stage" in res.stderr
