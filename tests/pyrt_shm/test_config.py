"""Topology loading: the embedded default, every error class with its key path, warnings,
overrides, auto CPU placement, immutability and file/TOML failures.

Every load injects ``available_cpus`` and ``isolated_cpus`` so results do not depend on the
host that runs the tests.
"""
from __future__ import annotations

import dataclasses
import types
from pathlib import Path

import pytest

from pyrt_shm.config import (
    DEFAULT_SOURCE, ConfigError, format_cpu_list, load_topology, override_from_dotted,
    parse_cpu_list, read_isolated_cpus, resolve_auto_cpus,
)
from pyrt_shm.config_model import FULL_POLICIES, IDLE_STRATEGIES, RECORD_KINDS

REPO = Path(__file__).resolve().parents[2]

# A small valid topology that the tests edit one mistake at a time.
BASE = """\
[engine]
name = "t"
symbols = ["A", "B"]

[processes.p1]
cpu = "auto"
idle = "yield"
stages = ["src"]

[processes.p2]
stages = ["dst"]

[stages.src]
class = "procs.feed:SyntheticFeed"
params = { rate = 1000, seed = 1 }

[stages.dst]
class = "procs.book:BookStage"

[rings.md]
producer = "src"
consumer = "dst"
record = "tick"
capacity = 1024
"""


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def load(tmp_path, text=BASE, cpus=(0, 1, 2, 3), isolated=(), **kw):
    path = tmp_path / "topo.toml"
    path.write_text(text)
    return load_topology(path, available_cpus=cpus, isolated_cpus=isolated, **kw)


def errors(tmp_path, text, **kw) -> list[str]:
    """The errors of a load that must fail, without the ``<source>: `` prefix."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, **kw)
    source = str(tmp_path / "topo.toml")
    assert all(e.startswith(f"{source}: ") for e in info.value.errors), info.value.errors
    return [e[len(source) + 2:] for e in info.value.errors]


def has(errs: list[str], prefix: str, *words: str) -> bool:
    """True when one error starts with ``prefix`` (the key path) and holds every word."""
    return any(e.startswith(prefix) and all(w in e for w in words) for e in errs)


# --- the embedded default ------------------------------------------------------------------

def test_embedded_default_loads_valid_pinned_pipeline():
    topo = load_topology(available_cpus={0, 1}, isolated_cpus=())
    assert topo.source == DEFAULT_SOURCE
    assert topo.warnings == ()
    assert topo.engine.name == "default" and topo.engine.shm_prefix == "pyrt-default."
    assert topo.engine.symbols == ("SYM0", "SYM1", "SYM2", "SYM3")
    names = ("feed", "book", "signal", "risk", "exec")
    assert tuple(s.name for s in topo.stages) == names
    assert all(p.cpu_auto and p.cpu is None and p.idle == "yield" for p in topo.processes)
    assert {p.name: p.stages for p in topo.processes} == {
        "feed": ("feed",), "hot": ("book", "signal", "risk", "exec")}
    rings = {r.name: (r.producer, r.consumer, r.record) for r in topo.rings}
    assert rings == {"md": ("feed", "book", "tick"), "top": ("book", "signal", "top"),
                     "intent": ("signal", "risk", "intent"), "order": ("risk", "exec", "order"),
                     "fill": ("exec", "risk", "fill")}
    assert topo.stage("feed").params == {"rate": 100000, "seed": 42}


def test_default_loads_on_this_host_without_injection():
    assert load_topology().source == DEFAULT_SOURCE


def test_config_copy_is_byte_identical_to_package_default():
    assert (REPO / "config" / "default.toml").read_bytes() == \
        (REPO / "pyrt_shm" / "default.toml").read_bytes()


def test_topology_helpers():
    topo = load_topology(available_cpus={0, 1}, isolated_cpus=())
    assert topo.process_of("book").name == "hot"
    assert [r.name for r in topo.rings_out("risk")] == ["order"]
    assert [r.name for r in topo.rings_in("risk")] == ["intent", "fill"]
    assert topo.rings_in("feed") == () and topo.rings_out("exec")[0].name == "fill"
    assert topo.ring("md").capacity == 65536 and topo.process("hot").stages[-1] == "exec"
    with pytest.raises(KeyError):
        topo.stage("nope")
    with pytest.raises(KeyError):
        topo.process_of("nope")


def test_file_source_and_defaults(tmp_path):
    topo = load(tmp_path)
    assert topo.source == str(tmp_path / "topo.toml")
    assert topo.engine.run_dir == "runs" and topo.engine.heartbeat_timeout_ms == 500
    assert topo.engine.fifo_priority == 10
    assert not topo.engine.sched_fifo and not topo.engine.mlockall
    assert topo.process("p2").cpu_auto and topo.process("p2").idle == "yield"
    assert topo.stage("dst").params == {}
    assert topo.ring("md").full == "block"
    assert topo.warnings == ()


def test_name_constants_are_importable_and_match_layouts():
    from layouts.registry import RECORDS
    from layouts.ring import FULL_POLICY_NAMES
    assert IDLE_STRATEGIES == ("busy-spin", "yield", "park", "backoff")
    assert RECORD_KINDS == ("tick", "top", "intent", "order", "fill")
    assert set(RECORD_KINDS) == set(RECORDS)  # every record name the config accepts has a dtype
    assert set(FULL_POLICIES) == set(FULL_POLICY_NAMES.values())


# --- one test per error class ---------------------------------------------------------------

@pytest.mark.parametrize("old,new,path,hint", [
    ("[engine]\n", "[engine]\nnmae = 1\n", "engine.nmae: unknown key", "did you mean 'name'?"),
    ('cpu = "auto"', 'cpus = "auto"', "processes.p1.cpus: unknown key", "did you mean 'cpu'?"),
    ('[stages.dst]\n', '[stages.dst]\nparam = {}\n', "stages.dst.param: unknown key", "'params'"),
    ("capacity = 1024", "capcity = 1024", "rings.md.capcity: unknown key", "'capacity'"),
    ("[engine]", "[ring.x]\n[engine]", "ring: unknown key", "did you mean 'rings'?"),
])
def test_unknown_keys_at_every_level(tmp_path, old, new, path, hint):
    assert has(errors(tmp_path, edit(BASE, old, new)), path, hint)


@pytest.mark.parametrize("old,new,path,got", [
    ("capacity = 1024", "capacity = true", "rings.md.capacity", "got boolean true"),
    ("[engine]\n", "[engine]\nheartbeat_timeout_ms = true\n", "engine.heartbeat_timeout_ms",
     "got boolean true"),
    ("[engine]\n", "[engine]\nfifo_priority = 10.0\n", "engine.fifo_priority", "got float 10.0"),
    ("[engine]\n", '[engine]\nmlockall = "yes"\n', "engine.mlockall", 'got string "yes"'),
    ("[engine]\n", "[engine]\nsched_fifo = 1\n", "engine.sched_fifo", "got integer 1"),
    ('stages = ["dst"]', 'stages = "dst"', "processes.p2.stages", 'got string "dst"'),
    ('stages = ["dst"]', 'stages = ["dst", 3]', "processes.p2.stages[1]", "got integer 3"),
    ('class = "procs.book:BookStage"', "class = 7", "stages.dst.class", "got integer 7"),
    ("params = { rate = 1000, seed = 1 }", "params = 5", "stages.src.params", "got integer 5"),
    ('producer = "src"', "producer = 1", "rings.md.producer", "got integer 1"),
    ('symbols = ["A", "B"]', 'symbols = ["A", 2]', "engine.symbols[1]", "got integer 2"),
    ('[processes.p2]\n', '[processes]\np3 = 1\n[processes.p2]\n', "processes.p3", "got integer 1"),
])
def test_wrong_types_bool_is_not_int(tmp_path, old, new, path, got):
    assert has(errors(tmp_path, edit(BASE, old, new)), f"{path}: expected", got)


@pytest.mark.parametrize("old,path", [
    ('symbols = ["A", "B"]\n', "engine.symbols"),
    ('name = "t"\n', "engine.name"),
    ('stages = ["src"]\n', "processes.p1.stages"),
    ('class = "procs.book:BookStage"\n', "stages.dst.class"),
    ('producer = "src"\n', "rings.md.producer"),
    ('record = "tick"\n', "rings.md.record"),
])
def test_missing_required_keys(tmp_path, old, path):
    assert has(errors(tmp_path, edit(BASE, old, "")), f"{path}: missing required key")


def test_missing_required_tables(tmp_path):
    errs = errors(tmp_path, '[rings]\n')
    for table in ("engine", "stages", "processes"):
        assert f"{table}: missing required table" in errs
    assert len(errs) == 3  # no cascade of "unknown stage" errors


def test_empty_sections_are_errors(tmp_path):
    errs = errors(tmp_path, '[engine]\nname = "t"\nsymbols = ["A"]\n[processes]\n[stages]\n')
    assert has(errs, "processes: must define at least one process")
    assert has(errs, "stages: must define at least one stage")


@pytest.mark.parametrize("name", ["Default", "a_b", "", "x" * 33, "a.b", "a b"])
def test_engine_name_pattern(tmp_path, name):
    assert has(errors(tmp_path, edit(BASE, 'name = "t"', f'name = "{name}"')),
               "engine.name: must match [a-z0-9-]{1,32}")


@pytest.mark.parametrize("section,old", [
    ("processes", "[processes.p2]"), ("stages", "[stages.dst]"), ("rings", "[rings.md]")])
def test_item_names_must_suit_shared_memory(tmp_path, section, old):
    text = edit(BASE, old, old.replace(old.split(".")[1][:-1], '"Bad.Name"'))
    assert has(errors(tmp_path, text), f'{section}."Bad.Name": ', "name must match")


def test_stage_in_two_processes(tmp_path):
    errs = errors(tmp_path, edit(BASE, 'stages = ["dst"]', 'stages = ["dst", "src"]'))
    assert has(errs, "processes.p2.stages[1]: ", '"src"', "already run by processes.p1")


def test_stage_listed_twice_in_one_process(tmp_path):
    errs = errors(tmp_path, edit(BASE, 'stages = ["dst"]', 'stages = ["dst", "dst"]'))
    assert has(errs, "processes.p2.stages[1]: ", "listed twice")


def test_stage_in_no_process(tmp_path):
    errs = errors(tmp_path, edit(BASE, 'stages = ["dst"]', 'stages = ["src"]'))
    assert has(errs, "stages.dst: not run by any process")


def test_process_names_unknown_stage(tmp_path):
    errs = errors(tmp_path, edit(BASE, 'stages = ["dst"]', 'stages = ["dts"]'))
    assert has(errs, "processes.p2.stages[0]: unknown stage", "did you mean 'dst'?")


def test_empty_process_stage_list(tmp_path):
    errs = errors(tmp_path, edit(BASE, 'stages = ["dst"]', "stages = []"))
    assert has(errs, "processes.p2.stages: must not be empty")
    assert not has(errs, "stages.dst")  # no cascade


@pytest.mark.parametrize("path", ["procs.book", "procs.book:", ":BookStage", "procs..book:Book",
                                  "procs.book:Book.Stage", "procs-x.book:Book",
                                  "procs.class:Book", "procs.book:Book:Stage", "1procs:Book"])
def test_stage_class_path_syntax(tmp_path, path):
    errs = errors(tmp_path, edit(BASE, '"procs.book:BookStage"', f'"{path}"'))
    assert has(errs, "stages.dst.class: must be an import path")


def test_stage_params_reject_dates(tmp_path):
    errs = errors(tmp_path, edit(BASE, "seed = 1 }", "seed = 1, at = { start = 2024-01-02 } }"))
    assert has(errs, "stages.src.params.at.start: unsupported value date")


def test_ring_ends_must_be_stages(tmp_path):
    errs = errors(tmp_path, edit(edit(BASE, 'producer = "src"', 'producer = "scr"'),
                                 'consumer = "dst"', 'consumer = "nobody"'))
    assert has(errs, "rings.md.producer: unknown stage", "did you mean 'src'?")
    assert has(errs, "rings.md.consumer: unknown stage", '"nobody"')


def test_ring_producer_is_not_consumer(tmp_path):
    errs = errors(tmp_path, edit(BASE, 'consumer = "dst"', 'consumer = "src"'))
    assert has(errs, "rings.md.consumer: same stage as the producer")


def test_rings_with_same_ends_and_record(tmp_path):
    md2 = '\n[rings.md2]\nproducer = "src"\nconsumer = "dst"\nrecord = "{}"\n'
    errs = errors(tmp_path, BASE + md2.format("tick"))
    assert has(errs, "rings.md2: same producer, consumer and record as rings.md")
    assert load(tmp_path, BASE + md2.format("top")).ring("md2").record == "top"  # other record


@pytest.mark.parametrize("capacity", [0, 1, 3, 1000, 2**27, -4])
def test_capacity_power_of_two_in_range(tmp_path, capacity):
    errs = errors(tmp_path, edit(BASE, "capacity = 1024", f"capacity = {capacity}"))
    assert has(errs, "rings.md.capacity: must be a power of two between 2 and 67108864")


@pytest.mark.parametrize("capacity", [2, 2**26])
def test_capacity_bounds_are_inclusive(tmp_path, capacity):
    topo = load(tmp_path, edit(BASE, "capacity = 1024", f"capacity = {capacity}"))
    assert topo.ring("md").capacity == capacity


def test_full_policy(tmp_path):
    errs = errors(tmp_path, edit(BASE, "capacity = 1024", 'capacity = 1024\nfull = "dorp"'))
    assert has(errs, "rings.md.full: unknown full policy", '"block", "drop"',
               "did you mean 'drop'?")


def test_record_kind(tmp_path):
    errs = errors(tmp_path, edit(BASE, 'record = "tick"', 'record = "ticks"'))
    assert has(errs, "rings.md.record: unknown record kind", "did you mean 'tick'?")


def test_idle_strategy(tmp_path):
    errs = errors(tmp_path, edit(BASE, 'idle = "yield"', 'idle = "busy_spin"'))
    assert has(errs, "processes.p1.idle: unknown idle strategy", "did you mean 'busy-spin'?")


@pytest.mark.parametrize("cpu,message", [
    ("9", "CPU 9 is not usable by this process (usable CPUs: 0-3)"),
    ("-1", "CPU -1 is not usable"),
    ('"2"', 'expected "auto" or a CPU number, got string "2"'),
    ("true", 'expected "auto" or a CPU number, got boolean true'),
])
def test_cpu_must_exist_on_host(tmp_path, cpu, message):
    errs = errors(tmp_path, edit(BASE, 'cpu = "auto"', f"cpu = {cpu}"))
    assert has(errs, "processes.p1.cpu: ", message)


def test_explicit_cpus_collide(tmp_path):
    text = edit(BASE, 'cpu = "auto"', "cpu = 2")
    text = edit(text, 'stages = ["dst"]', 'stages = ["dst"]\ncpu = 2')
    assert has(errors(tmp_path, text), "processes.p2.cpu: CPU 2 collides with processes.p1")


@pytest.mark.parametrize("value", [0, 100, -5])
def test_fifo_priority_range(tmp_path, value):
    errs = errors(tmp_path, edit(BASE, "[engine]\n", f"[engine]\nfifo_priority = {value}\n"))
    assert has(errs, "engine.fifo_priority: must be between 1 and 99", f"got {value}")


@pytest.mark.parametrize("value", [0, -1])
def test_heartbeat_timeout_positive(tmp_path, value):
    errs = errors(tmp_path, edit(BASE, "[engine]\n", f"[engine]\nheartbeat_timeout_ms = {value}\n"))
    assert has(errs, "engine.heartbeat_timeout_ms: must be >= 1")


def test_run_dir_not_empty(tmp_path):
    assert has(errors(tmp_path, edit(BASE, "[engine]\n", '[engine]\nrun_dir = ""\n')),
               "engine.run_dir: must be non-empty")


@pytest.mark.parametrize("symbols,path,message", [
    ("[]", "engine.symbols", "must not be empty"),
    ('["A", "B", "A"]', "engine.symbols[2]", 'duplicate symbol "A" (first at engine.symbols[0])'),
    ('["A", ""]', "engine.symbols[1]", "empty symbol"),
    ('["A", "  "]', "engine.symbols[1]", "empty symbol"),
    ("[" + ", ".join(f'"S{i}"' for i in range(4097)) + "]", "engine.symbols", "at most 4096"),
])
def test_symbols_unique_and_non_empty(tmp_path, symbols, path, message):
    errs = errors(tmp_path, edit(BASE, 'symbols = ["A", "B"]', f"symbols = {symbols}"))
    assert has(errs, f"{path}: ", message)


def test_4096_symbols_are_allowed(tmp_path):
    symbols = "[" + ", ".join(f'"S{i}"' for i in range(4096)) + "]"
    topo = load(tmp_path, edit(BASE, 'symbols = ["A", "B"]', f"symbols = {symbols}"))
    assert len(topo.engine.symbols) == 4096 and topo.engine.symbols[7] == "S7"


# --- every error at once --------------------------------------------------------------------

def test_all_errors_reported_at_once(tmp_path):
    text = BASE
    text = edit(text, 'name = "t"', 'name = "T"')
    text = edit(text, 'cpu = "auto"', "cpus = 1")
    text = edit(text, 'idle = "yield"', 'idle = "spin"')
    text = edit(text, '"procs.book:BookStage"', '"procs.book"')
    text = edit(text, 'record = "tick"', 'record = "tock"')
    text = edit(text, "capacity = 1024", "capacity = 1000")
    text = edit(text, 'consumer = "dst"', 'consumer = "src"')
    errs = errors(tmp_path, text)
    for prefix in ("engine.name:", "processes.p1.cpus:", "processes.p1.idle:",
                   "stages.dst.class:", "rings.md.record:", "rings.md.capacity:",
                   "rings.md.consumer: same stage"):
        assert has(errs, prefix), (prefix, errs)
    assert len(errs) == 7
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert str(info.value).splitlines() == info.value.errors


# --- warnings -------------------------------------------------------------------------------

def busy(text=BASE):
    return edit(text, 'idle = "yield"', 'idle = "busy-spin"')


def test_busy_spin_sharing_a_core_warns(tmp_path):
    topo = load(tmp_path, busy(), cpus=(0, 1), isolated=(1,))  # auto: both on CPU 1
    assert any("processes.p1.idle: busy-spin on CPU 1, shared with processes.p2" in w
               for w in topo.warnings)


def test_busy_spin_count_exceeding_cpus_warns(tmp_path):
    text = busy(edit(BASE, 'stages = ["dst"]', 'stages = ["dst"]\nidle = "busy-spin"'))
    topo = load(tmp_path, text, cpus=(0, 1), isolated=(1,))
    assert any(": processes: 2 busy-spin processes need 3 CPUs (one each and one for the OS), "
               "but 2 are usable" in w for w in topo.warnings)
    topo = load(tmp_path, text, cpus=(0, 1, 2), isolated=(1, 2))
    assert topo.warnings == ()  # one CPU each, both isolated, CPU 0 for the OS


def test_busy_spin_off_isolated_cpu_warns(tmp_path):
    topo = load(tmp_path, busy(edit(BASE, 'cpu = "auto"', "cpu = 3")), isolated=(1, 2))
    assert any("processes.p1.idle: busy-spin on CPU 3, which is not isolated (isolated CPUs: 1-2)"
               in w for w in topo.warnings)


def test_busy_spin_on_dedicated_isolated_cpu_is_quiet(tmp_path):
    assert load(tmp_path, busy(), cpus=range(4), isolated=(1,)).warnings == ()
    assert load(tmp_path, busy(edit(BASE, 'cpu = "auto"', "cpu = 3")), isolated=(3,)).warnings == ()


def test_warnings_carry_source_and_do_not_fail(tmp_path):
    topo = load(tmp_path, busy(), cpus=(0,), isolated=())
    assert topo.warnings and all(w.startswith(f"{tmp_path / 'topo.toml'}: ") for w in topo.warnings)


def test_unpinned_auto_process_warns(tmp_path):
    text = edit(BASE, '[processes.p2]\n', '[processes.p2]\ncpu = 1\n')
    text = edit(text, '[stages.dst]', '[processes.p3]\ncpu = 2\nstages = ["x"]\n'
                                      '[stages.x]\nclass = "a:B"\n[stages.dst]')
    topo = load(tmp_path, text, cpus=(0, 1, 2))
    assert any("processes.p1.cpu: " in w and "runs unpinned" in w for w in topo.warnings)


def test_dropping_orders_or_fills_warns(tmp_path):
    text = edit(edit(BASE, 'record = "tick"', 'record = "fill"'), "capacity = 1024",
                'capacity = 1024\nfull = "drop"')
    assert any("rings.md.full: " in w and "loses fills" in w for w in load(tmp_path, text).warnings)
    text = edit(BASE, "capacity = 1024", 'capacity = 1024\nfull = "drop"')
    assert load(tmp_path, text).warnings == ()  # dropping ticks is a policy, not a hazard


def test_stage_without_rings_warns(tmp_path):
    text = BASE.split("[rings.md]")[0]
    warnings = load(tmp_path, text).warnings
    assert any("stages.src: connected to no ring" in w for w in warnings)
    assert any("stages.dst: connected to no ring" in w for w in warnings)


# --- overrides ------------------------------------------------------------------------------

def test_override_from_dotted_nests():
    assert override_from_dotted({"stages.feed.params.rate": 5000, "engine.name": "x",
                                 "stages.feed.params.seed": 7}) == {
        "stages": {"feed": {"params": {"rate": 5000, "seed": 7}}}, "engine": {"name": "x"}}


def test_override_from_dotted_reports_every_conflict():
    with pytest.raises(ConfigError) as info:
        override_from_dotted({"a..b": 1, "x.y": 1, "x.y.z": 2, "m.n.o": 1, "m.n": 2})
    assert len(info.value.errors) == 3
    assert "<overrides>: a..b: empty key segment" in info.value.errors


def test_overrides_merge_over_file_before_validation():
    overrides = override_from_dotted({"stages.feed.params.rate": 5000,
                                      "processes.hot.idle": "backoff"})
    topo = load_topology(overrides=overrides, available_cpus={0, 1}, isolated_cpus=())
    assert topo.stage("feed").params == {"rate": 5000, "seed": 42}  # seed kept: deep merge
    assert topo.process("hot").idle == "backoff"
    assert overrides == {"stages": {"feed": {"params": {"rate": 5000}}},
                         "processes": {"hot": {"idle": "backoff"}}}  # not mutated


def test_override_errors_name_the_overrides():
    overrides = override_from_dotted({"rings.md.capacity": 1000, "processes.feed.cpus": 1})
    with pytest.raises(ConfigError) as info:
        load_topology(overrides=overrides, available_cpus={0, 1}, isolated_cpus=())
    assert info.value.errors == [
        "<overrides>: processes.feed.cpus: unknown key (did you mean 'cpu'?)",
        "<overrides>: rings.md.capacity: must be a power of two between 2 and 67108864 "
        "(2**26), got 1000",
    ]


def test_override_can_replace_a_whole_table():
    topo = load_topology(overrides={"stages": {"feed": {"params": {"seed": 1}}},
                                    "engine": {"symbols": ("X",)}},
                         available_cpus={0, 1}, isolated_cpus=())
    assert topo.stage("feed").params == {"rate": 100000, "seed": 1}
    assert topo.engine.symbols == ("X",)


# --- auto CPU placement ---------------------------------------------------------------------

PER_STAGE_TOML = Path(__file__).resolve().parents[2] / "config" / "per-stage.toml"


@pytest.fixture(scope="module")
def default():
    """One process per stage: the placement rule is easiest to see with five processes."""
    return load_topology(PER_STAGE_TOML, available_cpus={0, 1}, isolated_cpus=())


def test_auto_on_one_cpu(default):
    assert set(resolve_auto_cpus(default, {0}, isolated_cpus=()).values()) == {0}


def test_auto_on_two_cpus_shares_the_last_core(default):
    assert set(resolve_auto_cpus(default, {0, 1}, isolated_cpus=()).values()) == {1}
    assert set(resolve_auto_cpus(default, {4, 6}, isolated_cpus=()).values()) == {6}


def test_auto_on_four_cpus_round_robins_off_cpu0(default):
    assert resolve_auto_cpus(default, range(4), isolated_cpus=()) == {
        "feed": 1, "book": 2, "signal": 3, "risk": 1, "exec": 2}


def test_auto_on_eight_cpus_gives_each_process_a_core(default):
    assert resolve_auto_cpus(default, range(8), isolated_cpus=()) == {
        "feed": 1, "book": 2, "signal": 3, "risk": 4, "exec": 5}


def test_auto_without_cpu0_in_affinity_uses_every_cpu(default):
    assert resolve_auto_cpus(default, {4, 5, 6}, isolated_cpus=()) == {
        "feed": 4, "book": 5, "signal": 6, "risk": 4, "exec": 5}


def test_auto_skips_explicit_pins(tmp_path):
    text = edit(BASE, '[processes.p2]\n', '[processes.p2]\ncpu = 1\n')
    topo = load(tmp_path, text)
    assert resolve_auto_cpus(topo, range(4), isolated_cpus=()) == {"p1": 2, "p2": 1}


def test_auto_prefers_isolated_cpus_and_gives_them_to_busy_spin_first(default):
    assert resolve_auto_cpus(default, range(8), isolated_cpus={6, 7}) == {
        "feed": 6, "book": 7, "signal": 1, "risk": 2, "exec": 3}
    spin = dataclasses.replace(default, processes=tuple(
        dataclasses.replace(p, idle="busy-spin") if p.name in ("risk", "exec") else p
        for p in default.processes))
    assert resolve_auto_cpus(spin, range(8), isolated_cpus={6, 7}) == {
        "feed": 1, "book": 2, "signal": 3, "risk": 6, "exec": 7}


def test_auto_with_no_free_cpu_is_unpinned(tmp_path):
    text = edit(BASE, '[processes.p2]\n', '[processes.p2]\ncpu = 1\n')
    text = edit(text, '[stages.dst]', '[processes.p3]\ncpu = 2\nstages = ["x"]\n'
                                      '[stages.x]\nclass = "a:B"\n[stages.dst]')
    topo = load(tmp_path, text, cpus=(0, 1, 2))
    assert resolve_auto_cpus(topo, (0, 1, 2), isolated_cpus=()) == {"p1": None, "p2": 1, "p3": 2}


def test_cpu_lists():
    assert parse_cpu_list("1-3,5\n") == {1, 2, 3, 5}
    assert parse_cpu_list("\n") == frozenset()
    assert format_cpu_list({5, 1, 2, 3, 9, 10}) == "1-3,5,9-10"
    with pytest.raises(ValueError):
        parse_cpu_list("3-1")


def test_read_isolated_cpus(tmp_path):
    (tmp_path / "isolated").write_text("2-3\n")
    assert read_isolated_cpus(str(tmp_path / "isolated")) == {2, 3}
    assert read_isolated_cpus(str(tmp_path / "absent")) == frozenset()


# --- immutability ---------------------------------------------------------------------------

def test_objects_are_frozen(default):
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.engine.name = "x"
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.rings[0].capacity = 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.processes[0].cpu = 3
    with pytest.raises(TypeError):
        default.stage("feed").params["rate"] = 1


def test_params_are_deep_frozen(tmp_path):
    text = edit(BASE, "seed = 1 }", 'seed = 1, levels = [1, [2, 3]], venue = { name = "sim" } }')
    params = load(tmp_path, text).stage("src").params
    assert isinstance(params, types.MappingProxyType)
    assert params["levels"] == (1, (2, 3))
    assert isinstance(params["venue"], types.MappingProxyType)
    with pytest.raises(TypeError):
        params["venue"]["name"] = "alpaca"


# --- files and TOML -------------------------------------------------------------------------

def test_bad_toml_reports_line_and_column(tmp_path):
    text = edit(BASE, "capacity = 1024", "capacity = = 1024")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    line = text.splitlines().index("capacity = = 1024") + 1
    assert info.value.errors == [
        f"{tmp_path / 'topo.toml'}: line {line}, column 12: invalid TOML: Invalid value"]


def test_duplicate_toml_key_is_a_toml_error(tmp_path):
    with pytest.raises(ConfigError, match=r"topo.toml: line \d+, column \d+: invalid TOML"):
        load(tmp_path, edit(BASE, 'name = "t"', 'name = "t"\nname = "u"'))


def test_truncated_toml_reports_end_of_document(tmp_path):
    with pytest.raises(ConfigError, match="end of document: invalid TOML"):
        load(tmp_path, BASE + "x = [1,")


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_topology(path)
    assert info.value.errors == [f"{path}: cannot read topology file: No such file or directory"]


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[engine]\nname = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_topology(path)
