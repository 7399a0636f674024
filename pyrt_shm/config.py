"""Load the engine topology from TOML and validate all of it in one step.

Why one step (Agrona's ``Context.conclude()``, NautilusTrader's ``validate()``): the supervisor
must know that the whole topology is coherent before it creates one segment or forks one
process, and an operator fixing a file wants every mistake at once, each with the key path
that holds it, rather than one per run. So the checks never stop at the first error: they
collect ``"<source>: <key.path>: <message>"`` lines and ``ConfigError`` carries them all.

Schema (defaults in brackets; ``pyrt_shm/default.toml`` is a commented example)::

    [engine]            name (required, [a-z0-9-]{1,32}), run_dir ["runs"],
                        heartbeat_timeout_ms [500] (> 0), sched_fifo [false],
                        fifo_priority [10] (1..99), mlockall [false],
                        symbols (required; 1..4096 unique non-empty strings, id = index),
                        metrics_port [0] (0 = no Prometheus exporter, else 1..65535;
                        9464 by convention), metrics_addr ["127.0.0.1"] (an IP address
                        or host name; a non-loopback address draws a warning)
    [processes.<name>]  cpu ["auto"] ("auto" or a usable CPU number), idle ["yield"],
                        stages (required, non-empty; every stage in exactly one process)
    [stages.<name>]     class (required, "package.module:ClassName"), params [{}]
    [rings.<name>]      producer, consumer, record (required), capacity [65536]
                        (power of two, 2..2**26), full ["block"] ("block" | "drop")
    [fake_alpaca]       optional: ``pyrt run`` starts a local fake Alpaca for the run
                        (``tools.fake_alpaca``; throwaway keys): symbols [engine.symbols],
                        rate [10.0] (quotes/s, >= 0), seed [1], md_port / rest_port /
                        stream_port [0 = any free port], ready_timeout_s [30] (> 0). Stage
                        params may then hold ``{fake_alpaca.rest}``, ``{fake_alpaca.stream}``
                        and ``{fake_alpaca.md}``, replaced by the fake's URLs at start

Process, stage and ring names match ``[a-z0-9][a-z0-9_-]{0,31}``: they become parts of
shared-memory segment names. Only ``params`` tables accept keys of the user's choosing.
"""
from __future__ import annotations

import difflib
import ipaddress
import json
import keyword
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from .config_model import (
    DEFAULT_SOURCE, FAKE_ALPACA_URLS, FULL_POLICIES, IDLE_STRATEGIES, RECORD_KINDS, EngineConfig,
    FakeAlpacaConfig, ProcessConfig, RingConfig, StageConfig, Topology, deep_freeze,
)

__all__ = [
    "ConfigError", "load_topology", "override_from_dotted", "resolve_auto_cpus", "key_path",
    "parse_cpu_list", "format_cpu_list", "read_isolated_cpus",
    "IDLE_STRATEGIES", "RECORD_KINDS", "FULL_POLICIES", "DEFAULT_SOURCE",
]

#: Where the kernel lists the CPUs isolated from the scheduler (``isolcpus=``).
ISOLATED_CPUS_FILE = "/sys/devices/system/cpu/isolated"
#: Source named in errors that come from ``overrides`` rather than the file.
OVERRIDES_SOURCE = "<overrides>"
MIN_CAPACITY, MAX_CAPACITY = 2, 2**26
MAX_SYMBOLS = 4096
ENGINE_NAME = re.compile(r"[a-z0-9-]{1,32}")
ITEM_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_HOST_NAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
_TOML_POSITION = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")
_REQUIRED = object()  # schema default: the key must be present
_BAD = object()       # a value that has already produced an error


class ConfigError(Exception):
    """The topology is unusable. ``errors`` lists every problem, one line each."""

    def __init__(self, errors: Iterable[str]):
        self.errors: list[str] = list(errors)
        super().__init__("\n".join(self.errors))

    def __str__(self) -> str:
        return "\n".join(self.errors)


def load_topology(path: str | os.PathLike | None = None, overrides: Mapping | None = None, *,
                  available_cpus: Iterable[int] | None = None,
                  isolated_cpus: Iterable[int] | None = None) -> Topology:
    """Parse, merge ``overrides`` over, and validate a topology; raise ConfigError on any error.

    ``path`` None loads the default embedded in the package. ``overrides`` is a nested dict
    (see ``override_from_dotted``) merged over the parsed file before validation, so a CLI
    flag is checked like the file. ``available_cpus`` defaults to ``os.sched_getaffinity(0)``
    and ``isolated_cpus`` to ``/sys/devices/system/cpu/isolated``; tests inject both.
    """
    if path is None:
        source = DEFAULT_SOURCE
        raw = resources.files(__package__).joinpath("default.toml").read_bytes()
    else:
        source = os.fspath(path)
        try:
            raw = Path(source).read_bytes()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConfigError([f"{source}: cannot read topology file: {reason}"]) from None
    data = _parse_toml(raw, source)
    override_paths: list[tuple] = []
    if overrides:
        data = _merge(data, overrides, (), override_paths)
    available = frozenset(os.sched_getaffinity(0) if available_cpus is None else available_cpus)
    isolated = read_isolated_cpus() if isolated_cpus is None else frozenset(isolated_cpus)
    report = _Report(source, override_paths)
    topology = _validate(data, report, available)
    if report.errors:
        raise ConfigError(report.errors)
    _placement_warnings(topology, report, available, isolated)
    _metrics_warnings(topology, report)
    return replace(topology, warnings=tuple(report.warnings))


def override_from_dotted(flat: Mapping[str, Any]) -> dict:
    """Turn ``{"stages.feed.params.rate": 5000}`` into the nested dict ``load_topology`` merges.

    Keys split on every dot (quoted TOML keys with dots cannot be addressed this way).
    Raise ConfigError listing every empty key segment and every key that is both a value
    and a table (``a.b`` and ``a.b.c``).
    """
    out: dict = {}
    errors = []
    for dotted, value in flat.items():
        parts = dotted.split(".")
        if not all(parts):
            errors.append(f"{OVERRIDES_SOURCE}: {dotted}: empty key segment")
            continue
        node = out
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                errors.append(f"{OVERRIDES_SOURCE}: {dotted}: "
                              f"{'.'.join(parts[:i + 1])} is already set to a value")
                break
        else:
            if isinstance(node.get(parts[-1]), dict):
                errors.append(f"{OVERRIDES_SOURCE}: {dotted}: already a table of overrides")
            else:
                node[parts[-1]] = value
    if errors:
        raise ConfigError(errors)
    return out


# --- parsing and merging -------------------------------------------------------------------

def _parse_toml(raw: bytes, source: str) -> dict:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{source}: not UTF-8 text (bad byte at offset {exc.start})"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POSITION.search(message)
        reason = message[:match.start()] if match else message
        where = (f"line {match.group(1)}, column {match.group(2)}" if match and match.group(1)
                 else "end of document" if match else "?")
        raise ConfigError([f"{source}: {where}: invalid TOML: {reason}"]) from None


def _merge(base: Mapping, over: Mapping, path: tuple, leaves: list) -> dict:
    """Deep-merge ``over`` onto ``base``; record the key path of every value ``over`` set."""
    merged = dict(base)
    for key, value in over.items():
        key = str(key)
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value, path + (key,), leaves)
        else:
            merged[key] = _plain(value)
            leaves.append(path + (key,))
    return merged


def _plain(value: Any) -> Any:
    """Override values as tomllib would give them: dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --- reporting -----------------------------------------------------------------------------

class _Report:
    """Collects errors and warnings, each prefixed with where its value came from."""

    def __init__(self, source: str, override_paths: list[tuple]):
        self.source, self.override_paths = source, override_paths
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def _line(self, path: tuple, message: str) -> str:
        from_override = any(path[:len(o)] == o for o in self.override_paths)
        return f"{OVERRIDES_SOURCE if from_override else self.source}: {key_path(path)}: {message}"

    def error(self, path: tuple, message: str) -> None:
        self.errors.append(self._line(path, message))

    def warn(self, path: tuple, message: str) -> None:
        self.warnings.append(self._line(path, message))


def key_path(path: Iterable[str | int]) -> str:
    """Render ``("rings", "md", "capacity")`` as ``rings.md.capacity`` (TOML quoting, [i])."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if _BARE_KEY.fullmatch(part) else _quote(part)
            out += f".{text}" if out else text
    return out


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value}"
    if isinstance(value, str):
        return f"string {_quote(value)}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return "None" if value is None else type(value).__name__


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# --- value checks: each returns the value, or _BAD after reporting ----------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # TOML true is not 1


def _wrong_type(rep: _Report, path: tuple, value: Any, expected: str):
    rep.error(path, f"expected {expected}, got {_describe(value)}")
    return _BAD


def _boolean(rep, path, value):
    return value if isinstance(value, bool) else _wrong_type(rep, path, value, "a boolean")


def _integer(lo: int, hi: int | None = None):
    def check(rep, path, value):
        if not _is_int(value):
            return _wrong_type(rep, path, value, "an integer")
        if value < lo or (hi is not None and value > hi):
            bounds = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
            rep.error(path, f"must be {bounds}, got {value}")
            return _BAD
        return value
    return check


def _string(pattern: re.Pattern | None = None, why: str = ""):
    def check(rep, path, value):
        if not isinstance(value, str):
            return _wrong_type(rep, path, value, "a string")
        if not value.strip() or (pattern is not None and not pattern.fullmatch(value)):
            rule = f"match {pattern.pattern}{why}" if pattern is not None else "be non-empty"
            rep.error(path, f"must {rule}, got {_describe(value)}")
            return _BAD
        return value
    return check


def _choice(options: tuple[str, ...], what: str):
    def check(rep, path, value):
        if not isinstance(value, str):
            return _wrong_type(rep, path, value, f"a string naming {what}")
        if value not in options:
            listed = ", ".join(f'"{o}"' for o in options)
            rep.error(path, f"unknown {what} {_quote(value)}: must be one of {listed}"
                            f"{_suggest(value, options)}")
            return _BAD
        return value
    return check


def _capacity(rep, path, value):
    if not _is_int(value):
        return _wrong_type(rep, path, value, "an integer")
    if value < MIN_CAPACITY or value > MAX_CAPACITY or value & (value - 1):
        rep.error(path, f"must be a power of two between {MIN_CAPACITY} and {MAX_CAPACITY} "
                        f"(2**26), got {value}")
        return _BAD
    return value


def _class_path(rep, path, value):
    if not isinstance(value, str):
        return _wrong_type(rep, path, value, 'a string "package.module:ClassName"')
    module, colon, name = value.partition(":")
    if not (colon and _identifier(name) and all(_identifier(p) for p in module.split("."))):
        rep.error(path, 'must be an import path "package.module:ClassName", '
                        f"got {_describe(value)}")
        return _BAD
    return value


def _identifier(text: str) -> bool:
    return text.isidentifier() and not keyword.iskeyword(text)


def _string_list(rep, path, value):
    if not isinstance(value, list):
        return _wrong_type(rep, path, value, "an array of strings")
    if not value:
        rep.error(path, "must not be empty")
        return _BAD
    bad = [i for i, v in enumerate(value) if not isinstance(v, str)]
    for i in bad:
        _wrong_type(rep, path + (i,), value[i], "a string")
    return _BAD if bad else tuple(value)


def _symbols(rep, path, value):
    items = _string_list(rep, path, value)
    if items is _BAD:
        return _BAD
    ok = len(items) <= MAX_SYMBOLS
    if not ok:
        rep.error(path, f"at most {MAX_SYMBOLS} symbols, got {len(items)}")
    first: dict[str, int] = {}
    for i, symbol in enumerate(items):
        if not symbol.strip():
            rep.error(path + (i,), "empty symbol")
            ok = False
        elif symbol in first:
            rep.error(path + (i,), f"duplicate symbol {_quote(symbol)} "
                                   f"(first at {key_path(path + (first[symbol],))})")
            ok = False
        else:
            first[symbol] = i
    return items if ok else _BAD


def _params(rep, path, value):
    if not isinstance(value, dict):
        return _wrong_type(rep, path, value, "a table")
    return value if _plain_values(rep, path, value) else _BAD


def _plain_values(rep, path, value) -> bool:
    """Params hold what every stage can take: strings, numbers, booleans, arrays, tables."""
    if isinstance(value, dict):
        return all([_plain_values(rep, path + (k,), v) for k, v in value.items()])
    if isinstance(value, list):
        return all([_plain_values(rep, path + (i,), v) for i, v in enumerate(value)])
    if isinstance(value, (str, int, float)):
        return True
    rep.error(path, f"unsupported value {_describe(value)}: params take strings, numbers, "
                    "booleans, arrays and tables (write dates and times as strings)")
    return False


def _host(rep, path, value):
    """An IP address or a DNS host name (what the exporter's ``bind()`` accepts)."""
    if not isinstance(value, str):
        return _wrong_type(rep, path, value, 'a string (an address such as "127.0.0.1")')
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if not _HOST_NAME.fullmatch(value):
        rep.error(path, f"must be an IP address or a host name, got {_describe(value)}")
        return _BAD
    return value


def _cpu(available: frozenset[int]):
    def check(rep, path, value):
        if value == "auto":
            return value
        if not _is_int(value):
            return _wrong_type(rep, path, value, '"auto" or a CPU number')
        if value not in available:
            rep.error(path, f"CPU {value} is not usable by this process "
                            f"(usable CPUs: {format_cpu_list(available) or 'none'})")
            return _BAD
        return value
    return check


# --- tables --------------------------------------------------------------------------------

_ENGINE = {
    "name": (_string(ENGINE_NAME, ' (it prefixes shared-memory names "pyrt-<name>.")'), _REQUIRED),
    "run_dir": (_string(), "runs"),
    "heartbeat_timeout_ms": (_integer(1), 500),
    "sched_fifo": (_boolean, False),
    "fifo_priority": (_integer(1, 99), 10),
    "mlockall": (_boolean, False),
    "symbols": (_symbols, _REQUIRED),
    "metrics_port": (_integer(0, 65535), 0),
    "metrics_addr": (_host, "127.0.0.1"),
}
_SECTIONS = ("engine", "processes", "stages", "rings", "fake_alpaca")
_FAKE_PLACEHOLDER = re.compile(r"\{fake_alpaca\.([A-Za-z0-9_]*)\}")


def _port(rep, path, value):
    return _integer(0, 65535)(rep, path, value)


def _rate(rep, path, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _wrong_type(rep, path, value, "a number")
    if not value >= 0 or value != value or value == float("inf"):
        rep.error(path, f"must be a finite number >= 0, got {_describe(value)}")
        return _BAD
    return float(value)


def _timeout(rep, path, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _wrong_type(rep, path, value, "a number of seconds")
    if not 0 < value <= 600:
        rep.error(path, f"must be > 0 and <= 600 seconds, got {_describe(value)}")
        return _BAD
    return float(value)


_FAKE_ALPACA = {
    "symbols": (_symbols, None),
    "rate": (_rate, 10.0),
    "seed": (_integer(0), 1),
    "md_port": (_port, 0),
    "rest_port": (_port, 0),
    "stream_port": (_port, 0),
    "ready_timeout_s": (_timeout, 30.0),
}


def _fake_alpaca(rep, data, engine) -> FakeAlpacaConfig | None:
    """The optional ``[fake_alpaca]`` table (see the schema in the module doc)."""
    if "fake_alpaca" not in data:
        return None
    table = _table(rep, data, "fake_alpaca", required=False)
    if table is None:
        return None
    f = _fields(rep, ("fake_alpaca",), table, _FAKE_ALPACA)
    ports = [(k, f[k]) for k in ("md_port", "rest_port", "stream_port") if _is_int(f[k]) and f[k]]
    for i, (k, v) in enumerate(ports):
        for k2, v2 in ports[:i]:
            if v == v2:
                rep.error(("fake_alpaca", k), f"port {v} is also fake_alpaca.{k2}")
    if f["symbols"] is None:
        f["symbols"] = engine["symbols"] if engine and engine.get("symbols") is not _BAD else ()
    if _BAD in f.values():
        return None
    return FakeAlpacaConfig(**f)


def _placeholders(rep, stage_tables, has_fake: bool) -> None:
    """Check every ``{fake_alpaca.X}`` in stage params: X known, and a [fake_alpaca] table."""
    def walk(path, v):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(path + (k,), x)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(path + (i,), x)
        elif isinstance(v, str):
            for m in _FAKE_PLACEHOLDER.finditer(v):
                if m.group(1) not in FAKE_ALPACA_URLS:
                    rep.error(path, f"unknown placeholder {m.group(0)} (known: "
                                    + ", ".join("{fake_alpaca.%s}" % u for u in FAKE_ALPACA_URLS) + ")")
                elif not has_fake:
                    rep.error(path, f"{m.group(0)} needs a [fake_alpaca] table (a local fake "
                                    "Alpaca started by pyrt run)")
    for name, t in (stage_tables or {}).items():
        if isinstance(t, dict) and isinstance(t.get("params"), dict):
            walk(("stages", name, "params"), t["params"])
_STAGE = {"class": (_class_path, _REQUIRED), "params": (_params, {})}
_RING = {
    "producer": (_string(), _REQUIRED),
    "consumer": (_string(), _REQUIRED),
    "record": (_choice(RECORD_KINDS, "record kind"), _REQUIRED),
    "capacity": (_capacity, 65536),
    "full": (_choice(FULL_POLICIES, "full policy"), "block"),
}


def _process_schema(available: frozenset[int]) -> dict:
    return {"cpu": (_cpu(available), "auto"),
            "idle": (_choice(IDLE_STRATEGIES, "idle strategy"), "yield"),
            "stages": (_string_list, _REQUIRED)}


def _fields(rep: _Report, path: tuple, table: dict, schema: dict) -> dict:
    """Reject unknown keys, report missing ones, and check each value of ``table``."""
    for key in table:
        if key not in schema:
            rep.error(path + (key,), f"unknown key{_suggest(key, schema)}")
    out = {}
    for key, (check, default) in schema.items():
        if key in table:
            out[key] = check(rep, path + (key,), table[key])
        elif default is _REQUIRED:
            rep.error(path + (key,), "missing required key")
            out[key] = _BAD
        else:
            out[key] = default
    return out


def _table(rep: _Report, data: dict, key: str, required: bool) -> dict | None:
    if key not in data:
        if required:
            rep.error((key,), "missing required table")
        return None if required else {}
    value = data[key]
    if not isinstance(value, dict):
        _wrong_type(rep, (key,), value, "a table")
        return None
    return value


def _named_tables(rep: _Report, data: dict, section: str, kind: str,
                  required: bool) -> dict[str, Any] | None:
    """``[section.<name>]`` tables by name; a value that is not a table maps to _BAD."""
    tables = _table(rep, data, section, required)
    if tables is None:
        return None
    if required and not tables:
        rep.error((section,), f"must define at least one {kind}")
    out = {}
    for name, table in tables.items():
        if not ITEM_NAME.fullmatch(name):
            rep.error((section, name), f"{kind} name must match {ITEM_NAME.pattern} "
                                       "(it becomes part of shared-memory names)")
        out[name] = table if isinstance(table, dict) else _wrong_type(
            rep, (section, name), table, "a table")
    return out


def _validate(data: dict, rep: _Report, available: frozenset[int]) -> Topology | None:
    for key in data:
        if key not in _SECTIONS:
            rep.error((key,), f"unknown key{_suggest(key, _SECTIONS)}")
    engine_table = _table(rep, data, "engine", required=True)
    engine = _fields(rep, ("engine",), engine_table, _ENGINE) if engine_table is not None else None
    stage_tables = _named_tables(rep, data, "stages", "stage", required=True)
    processes = _processes(rep, data, stage_tables, available)  # needs only the stage names
    stages = {name: _fields(rep, ("stages", name), t, _STAGE)
              for name, t in (stage_tables or {}).items() if t is not _BAD}
    rings = _rings(rep, data, stage_tables)
    fake = _fake_alpaca(rep, data, engine)
    _placeholders(rep, stage_tables, fake is not None)
    if rep.errors:
        return None
    return Topology(
        engine=EngineConfig(**engine),
        processes=tuple(ProcessConfig(name, None if f["cpu"] == "auto" else f["cpu"],
                                      f["cpu"] == "auto", f["idle"], f["stages"])
                        for name, f in processes.items()),
        stages=tuple(StageConfig(name, f["class"], deep_freeze(f["params"]))
                     for name, f in stages.items()),
        rings=tuple(RingConfig(name, **f) for name, f in rings.items()),
        source=rep.source,
        fake_alpaca=fake,
    )


def _processes(rep, data, stage_tables, available) -> dict[str, dict]:
    """Check each process and that every stage runs in exactly one process."""
    tables = _named_tables(rep, data, "processes", "process", required=True) or {}
    schema = _process_schema(available)
    owner: dict[str, str] = {}
    pinned: dict[int, str] = {}
    all_lists_ok = True
    out = {}
    for name, table in tables.items():
        if table is _BAD:
            all_lists_ok = False
            continue
        path = ("processes", name)
        fields = out[name] = _fields(rep, path, table, schema)
        cpu = fields["cpu"]
        if _is_int(cpu):
            if cpu in pinned:
                rep.error(path + ("cpu",), f"CPU {cpu} collides with "
                                           f"{key_path(('processes', pinned[cpu]))}")
            pinned.setdefault(cpu, name)
        if fields["stages"] is _BAD:
            all_lists_ok = False
            continue
        for i, stage in enumerate(fields["stages"]):
            where = path + ("stages", i)
            if stage_tables is not None and stage not in stage_tables:
                rep.error(where, f"unknown stage {_quote(stage)}{_suggest(stage, stage_tables)}")
            elif stage in fields["stages"][:i]:
                rep.error(where, f"stage {_quote(stage)} is listed twice in this process")
            elif stage in owner:
                rep.error(where, f"stage {_quote(stage)} is already run by "
                                 f"{key_path(('processes', owner[stage]))}")
            else:
                owner[stage] = name
    if all_lists_ok and stage_tables is not None:
        for stage in stage_tables:
            if stage not in owner:
                rep.error(("stages", stage), "not run by any process "
                                             "(list it in one processes.<name>.stages)")
    return out


def _rings(rep, data, stage_tables) -> dict[str, dict]:
    """Check each ring, its two ends, and that no two rings join the same ends with one record."""
    tables = _named_tables(rep, data, "rings", "ring", required=False) or {}
    seen: dict[tuple, str] = {}
    out = {}
    for name, table in tables.items():
        if table is _BAD:
            continue
        path = ("rings", name)
        fields = out[name] = _fields(rep, path, table, _RING)
        for end in ("producer", "consumer"):
            stage = fields[end]
            if stage is not _BAD and stage_tables is not None and stage not in stage_tables:
                rep.error(path + (end,), f"unknown stage {_quote(stage)}"
                                         f"{_suggest(stage, stage_tables)}")
                fields[end] = _BAD
        ends = (fields["producer"], fields["consumer"], fields["record"])
        if ends[0] is not _BAD and ends[0] == ends[1]:
            rep.error(path + ("consumer",), f"same stage as the producer ({_quote(ends[0])}); "
                                            "a ring joins two different stages")
        elif _BAD not in ends and ends in seen:
            rep.error(path, "same producer, consumer and record as "
                            f"{key_path(('rings', seen[ends]))}")
        elif _BAD not in ends:
            seen[ends] = name
    connected = {f[end] for f in out.values() for end in ("producer", "consumer")}
    if stage_tables is not None and len(stage_tables) > 1:
        for stage in stage_tables:
            if stage not in connected:
                rep.warn(("stages", stage), "connected to no ring")
    for name, fields in out.items():
        if fields["full"] == "drop" and fields["record"] in ("order", "fill"):
            rep.warn(("rings", name, "full"), f'"drop" loses {fields["record"]}s when the ring '
                                              "is full; positions and open orders go wrong")
    return out


def _placement_warnings(topology: Topology, rep: _Report, available: frozenset[int],
                        isolated: frozenset[int]) -> None:
    """Warn where ``cpu`` placement will cost latency; none of these stop the engine."""
    placement = resolve_auto_cpus(topology, available, isolated_cpus=isolated)
    busy = [p for p in topology.processes if p.idle == "busy-spin"]
    if any(p.cpu_auto for p in busy) and len(available) < len(busy) + 1:
        rep.warn(("processes",), f"{len(busy)} busy-spin processes need {len(busy) + 1} CPUs "
                                 f"(one each and one for the OS), but {len(available)} are usable")
    for process in topology.processes:
        cpu = placement[process.name]
        path = ("processes", process.name)
        if cpu is None:
            rep.warn(path + ("cpu",), 'cpu = "auto" found no free CPU (CPU 0 is left to the OS, '
                                      "the others are pinned); the process runs unpinned")
            continue
        if process.idle != "busy-spin":
            continue
        sharers = [key_path(("processes", q.name)) for q in topology.processes
                   if q is not process and placement[q.name] == cpu]
        if sharers:
            rep.warn(path + ("idle",), f"busy-spin on CPU {cpu}, shared with {', '.join(sharers)}: "
                                       'a spinning process starves its neighbours (use idle = '
                                       '"yield" or give it a CPU of its own)')
        if cpu not in isolated:
            rep.warn(path + ("idle",), f"busy-spin on CPU {cpu}, which is not isolated (isolated "
                                       f"CPUs: {format_cpu_list(isolated) or 'none'}); boot with "
                                       'isolcpus= or use idle = "yield"')


def _metrics_warnings(topology: Topology, rep: _Report) -> None:
    """Warn when the exporter would be reachable from other hosts."""
    engine = topology.engine
    if not engine.metrics_port:
        return
    try:
        loopback = ipaddress.ip_address(engine.metrics_addr).is_loopback
    except ValueError:
        loopback = engine.metrics_addr == "localhost"
    if not loopback:
        rep.warn(("engine", "metrics_addr"), f"the metrics exporter listens on "
                 f"{engine.metrics_addr}, reachable from other hosts (no authentication); "
                 'use "127.0.0.1" unless a firewall guards the port')


# --- CPU placement -------------------------------------------------------------------------

def resolve_auto_cpus(topology: Topology, available_cpus: Iterable[int] | None = None, *,
                      isolated_cpus: Iterable[int] | None = None) -> dict[str, int | None]:
    """Return the CPU of every process (file order): explicit pins as given, ``auto`` placed.

    The rule for ``cpu = "auto"``, over ``available_cpus`` (default: this process's
    affinity, ``os.sched_getaffinity(0)``):

    - **<= 2 usable CPUs**: every auto process goes on the highest-numbered CPU. The hot
      stages share one core and the other core is left to the OS, interrupts and I/O; on a
      single CPU there is nothing to choose.
    - **more CPUs**: CPU 0 is left to the OS (it takes most interrupts and housekeeping).
      The free CPUs are the remaining usable ones not pinned explicitly by another process,
      isolated CPUs first (``isolated_cpus``, default ``/sys/devices/system/cpu/isolated``),
      then the rest, each group in ascending order. Auto processes take them round-robin,
      busy-spin processes first (so they get the isolated cores), the others in file order.
    - **no free CPU** (every CPU but 0 is pinned explicitly): the auto process maps to None
      and runs unpinned, scheduled by the OS; ``load_topology`` warns about it.

    Sharing a core is deliberate on small hosts; ``load_topology`` warns when a busy-spin
    process ends up sharing one.
    """
    available = sorted(set(os.sched_getaffinity(0) if available_cpus is None else available_cpus))
    isolated = read_isolated_cpus() if isolated_cpus is None else frozenset(isolated_cpus)
    placement: dict[str, int | None] = {p.name: p.cpu for p in topology.processes}
    auto = [p for p in topology.processes if p.cpu_auto]
    if not auto:
        return placement
    if len(available) <= 2:
        for process in auto:
            placement[process.name] = available[-1] if available else None
        return placement
    pinned = {p.cpu for p in topology.processes if not p.cpu_auto}
    free = sorted((c for c in available if c != 0 and c not in pinned),
                  key=lambda c: (c not in isolated, c))
    ordered = sorted(auto, key=lambda p: p.idle != "busy-spin")  # stable: file order within
    for i, process in enumerate(ordered):
        placement[process.name] = free[i % len(free)] if free else None
    return placement


def parse_cpu_list(text: str) -> frozenset[int]:
    """Parse the kernel's cpulist format (``"1-3,5"``); blank means none. ValueError if bad."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, dash, hi = part.partition("-")
        first, last = int(lo), int(hi) if dash else int(lo)
        if first < 0 or last < first:
            raise ValueError(f"bad CPU range {part!r} in {text!r}")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def format_cpu_list(cpus: Iterable[int]) -> str:
    """Format CPUs the way the kernel does (``{1, 2, 3, 5}`` -> ``"1-3,5"``)."""
    ranges: list[list[int]] = []
    for cpu in sorted(set(cpus)):
        if ranges and cpu == ranges[-1][1] + 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def read_isolated_cpus(path: str = ISOLATED_CPUS_FILE) -> frozenset[int]:
    """Return the CPUs isolated from the scheduler; none if the file is absent or unreadable."""
    try:
        return parse_cpu_list(Path(path).read_text())
    except (OSError, ValueError):
        return frozenset()
