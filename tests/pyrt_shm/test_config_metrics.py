"""``[engine] metrics_port`` / ``metrics_addr``: defaults (no port opened unless asked),
validation with key paths, the non-loopback warning, the ``pyrt run --metrics-port`` override,
and the shipped TOML files.

Every load injects ``available_cpus`` and ``isolated_cpus`` (as in test_config.py).
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from pyrt_shm.config import ConfigError, load_topology, override_from_dotted
from pyrt_shm.run_cmd import _overrides, _parser

REPO = Path(__file__).resolve().parents[2]

BASE = """\
[engine]
name = "t"
symbols = ["A", "B"]

[processes.p1]
stages = ["src"]

[processes.p2]
stages = ["dst"]

[stages.src]
class = "procs.feed:SyntheticFeed"

[stages.dst]
class = "procs.book:BookStage"

[rings.md]
producer = "src"
consumer = "dst"
record = "tick"
capacity = 1024
"""


def load(tmp_path, extra: str = "", **kw):
    path = tmp_path / "topo.toml"
    path.write_text(BASE.replace('symbols = ["A", "B"]\n', 'symbols = ["A", "B"]\n' + extra))
    return load_topology(path, available_cpus=(0, 1, 2, 3), isolated_cpus=(), **kw)


def errors(tmp_path, extra: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, extra)
    source = str(tmp_path / "topo.toml")
    return [e[len(source) + 2:] for e in info.value.errors]


def test_defaults_open_no_port(tmp_path):
    eng = load(tmp_path).engine
    assert eng.metrics_port == 0 and eng.metrics_addr == "127.0.0.1"
    default = load_topology(available_cpus={0, 1}, isolated_cpus=()).engine
    assert default.metrics_port == 0 and default.metrics_addr == "127.0.0.1"


@pytest.mark.parametrize("port", [0, 1, 9464, 65535])
def test_valid_ports(tmp_path, port):
    topo = load(tmp_path, f"metrics_port = {port}\n")
    assert topo.engine.metrics_port == port
    assert topo.warnings == ()


@pytest.mark.parametrize("value, message", [
    ("-1", "must be between 0 and 65535, got -1"),
    ("65536", "must be between 0 and 65535, got 65536"),
    ("true", "expected an integer, got"),
    ('"9464"', "expected an integer, got"),
    ("9464.0", "expected an integer, got"),
])
def test_invalid_ports(tmp_path, value, message):
    errs = errors(tmp_path, f"metrics_port = {value}\n")
    assert any(e.startswith("engine.metrics_port: ") and message in e for e in errs), errs


@pytest.mark.parametrize("addr", ["127.0.0.1", "::1", "localhost", "0.0.0.0", "metrics.example.org"])
def test_valid_addresses(tmp_path, addr):
    assert load(tmp_path, f'metrics_addr = "{addr}"\n').engine.metrics_addr == addr


@pytest.mark.parametrize("value, message", [
    ('""', "must be an IP address or a host name"),
    ('"not a host"', "must be an IP address or a host name"),
    ('"bad_host"', "must be an IP address or a host name"),
    ('"-a.example"', "must be an IP address or a host name"),
    ("127", "expected a string"),
])
def test_invalid_addresses(tmp_path, value, message):
    errs = errors(tmp_path, f"metrics_addr = {value}\n")
    assert any(e.startswith("engine.metrics_addr: ") and message in e for e in errs), errs


def test_both_errors_reported_at_once(tmp_path):
    errs = errors(tmp_path, 'metrics_port = -5\nmetrics_addr = "a b"\n')
    assert any(e.startswith("engine.metrics_port: ") for e in errs)
    assert any(e.startswith("engine.metrics_addr: ") for e in errs)


def test_typo_suggests_the_key(tmp_path):
    errs = errors(tmp_path, "metric_port = 9464\n")
    assert any(e.startswith("engine.metric_port: unknown key") and "metrics_port" in e for e in errs)


@pytest.mark.parametrize("addr", ["0.0.0.0", "192.168.1.10", "::", "metrics.example.org"])
def test_exporter_reachable_from_other_hosts_warns(tmp_path, addr):
    topo = load(tmp_path, f'metrics_port = 9464\nmetrics_addr = "{addr}"\n')
    assert any("engine.metrics_addr: " in w and "reachable from other hosts" in w
               for w in topo.warnings), topo.warnings


@pytest.mark.parametrize("addr", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_exporter_is_quiet(tmp_path, addr):
    assert load(tmp_path, f'metrics_port = 9464\nmetrics_addr = "{addr}"\n').warnings == ()


def test_address_without_port_is_quiet(tmp_path):
    assert load(tmp_path, 'metrics_addr = "0.0.0.0"\n').warnings == ()


def test_run_flag_overrides_the_file(tmp_path):
    args = _parser().parse_args(["--metrics-port", "9464"])
    flat = _overrides(args)
    assert flat["engine.metrics_port"] == 9464
    topo = load(tmp_path, "metrics_port = 1234\n", overrides=override_from_dotted(flat))
    assert topo.engine.metrics_port == 9464
    assert "engine.metrics_port" not in _overrides(_parser().parse_args([]))


def test_bad_run_flag_is_reported_as_an_override(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, overrides=override_from_dotted({"engine.metrics_port": 70000}))
    assert any(e.startswith("<overrides>: engine.metrics_port: ") for e in info.value.errors)


@pytest.mark.parametrize("name", ["default.toml", "per-stage.toml", "fused.toml"])
def test_shipped_files_document_the_keys_commented_out(name):
    text = (REPO / "config" / name).read_text()
    assert "# metrics_port = 9464" in text and '# metrics_addr = "127.0.0.1"' in text
    engine = tomllib.loads(text)["engine"]
    assert "metrics_port" not in engine and "metrics_addr" not in engine     # off unless asked
    topo = load_topology(REPO / "config" / name, available_cpus={0, 1}, isolated_cpus=())
    assert topo.engine.metrics_port == 0
    assert (REPO / "pyrt_shm" / "default.toml").read_bytes() == \
        (REPO / "config" / "default.toml").read_bytes()
