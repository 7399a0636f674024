"""The engine end to end on the Alpaca path, as ``pyrt run`` subprocesses, all on loopback:

* against a fake Alpaca run by the test (so the test can read the venue's books and break it
  mid-run): ticks in from the fake's market data (``procs.alpaca_feed``), orders out through
  ``AlpacaExecStage``, fills back from REST answers and the trade_updates stream; during the
  run the fake answers 429s, 500s, drops a connection after creating an order and drops the
  trade stream. Afterwards risk's positions equal the fake's, every client order id is at the
  fake exactly once, and every engine order got its terminal report;
* ``config/alpaca-fake.toml`` as shipped: ``pyrt run`` starts the fake itself with throwaway
  keys, stops it at the end (also on SIGINT), and the positions match the venue's at close;
* ``config/alpaca-paper.toml`` without credentials: exit 2 naming the variables, before any
  process or network.
"""
from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

from engine_proc import ROOT, finish, shm_entries, start_engine, stop_engine, summary_of, wait_running
from pyrt_shm.config import ConfigError, load_topology
from tools.fake_alpaca import FakeAlpaca

KEY, SECRET = "PKENGINETEST00000001", "engine-test-secret-0123456789"
FAKE_CONFIG = os.path.join(ROOT, "config", "alpaca-fake.toml")
PAPER_CONFIG = os.path.join(ROOT, "config", "alpaca-paper.toml")


def topology_for(fake, tmp_path) -> str:
    """config/alpaca-fake.toml pointed at the test's own fake (no [fake_alpaca] table)."""
    text = open(FAKE_CONFIG).read()
    text = re.sub(r"\n\[fake_alpaca\]\n(?:[^\[\n][^\n]*\n|\n)*", "\n", text)
    text = (text.replace("{fake_alpaca.md}", fake.md_base_url).replace("{fake_alpaca.rest}", fake.rest_url)
            .replace("{fake_alpaca.stream}", fake.stream_url))
    path = tmp_path / "alpaca-test.toml"
    path.write_text(text)
    return str(path)


def venue_checks(s: dict, fake, engine_positions=None, exclude=()):
    """The engine's books against the venue's, and the reporting contract."""
    ex, risk = s["counters"]["exec"], s["counters"]["risk"]
    assert ex["orders_in"] > 0 and ex["executions"] > 0, ex
    assert ex["orders_in"] == ex["orders_done"], ex             # every order: one terminal report
    assert ex["in_flight"] == 0 and s["drain"]["drained"], (ex, s["drain"])
    assert risk["orders_out"] == ex["orders_in"] and risk["fill_unknown_order"] == 0
    assert risk["fills_in"] == ex["fills_out"] and risk["fill_overfill"] == 0
    mine = {p["symbol"]: p["qty"] for p in s["positions"] if p["qty"] != 0}
    if fake is not None:
        assert mine == {k: v for k, v in fake.positions().items() if v != 0}
        cids = collections.Counter(o["client_order_id"] for o in fake.orders()
                                   if o["client_order_id"] not in exclude)
        assert set(cids.values()) == {1}                          # no order sent twice
        assert len(cids) == ex["orders_in"]                       # none lost
    if engine_positions is not None:
        assert mine == engine_positions
    return ex


def test_engine_against_the_fake_under_faults(tmp_path, engine_name):
    with FakeAlpaca(key_id=KEY, secret_key=SECRET, symbols=("AAPL", "MSFT"), quote_rate=150, seed=11) as fake:
        cfg = topology_for(fake, tmp_path)
        fake.seed_position("AAPL", 30, 99.5)                 # held from before: risk is seeded
        old = fake.seed_open_order("MSFT", "buy", 5, 50.0, client_order_id="left-from-before")
        env = {"APCA_API_KEY_ID": KEY, "APCA_API_SECRET_KEY": SECRET, "PYRT_STATE_DIR": str(tmp_path)}
        proc = start_engine(engine_name, str(tmp_path / "runs"), "--config", cfg, "--duration", "14",
                            env_extra=env)
        try:
            wait_running(engine_name, proc, min_work=0, timeout=120)
            deadline = time.monotonic() + 30
            while fake.stats().get("rest_orders_accepted", 0) < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert fake.stats().get("rest_orders_accepted", 0) >= 3, fake.stats()
            fake.faults.http_429(3, reset_s=1)           # a 429 storm ...
            time.sleep(2.5)
            fake.faults.http_500(3)                      # ... then 500s ...
            time.sleep(1.5)
            fake.faults.drop_after_accept(1)             # ... a connection lost after the order was made
            time.sleep(1.5)
            fake.faults.drop_trade_stream()              # ... and the trade stream drops
            code, out, err = finish(proc, timeout=120)
        finally:
            stop_engine(proc, engine_name)
        assert code == 0, err[-3000:]
        s = summary_of(out)
        orders = {o["id"]: o for o in fake.orders()}
        assert orders.pop(old["id"])["status"] == "canceled"      # open_orders = "cancel" at start
        ex = venue_checks(s, fake, exclude={"left-from-before"})
        aapl = next(p for p in s["positions"] if p["symbol"] == "AAPL")
        assert aapl["bought"] - aapl["sold"] + 30 == aapl["qty"]  # the seed plus the run's fills
        st = fake.stats()
        assert st.get("rest_429_injected", 0) == 3 and ex["http_429"] == 3, (st, ex)
        assert st.get("rest_500", 0) == 3 and ex["venue_errors"] >= 3 and ex["lookups"] >= 1
        assert ex["stream_reconnects"] >= 1
        if st.get("rest_dropped_after_accept", 0):
            assert ex["duplicates_avoided"] >= 1
        assert KEY not in out + err and SECRET not in out + err
    assert not shm_entries(engine_name)


def _fake_pid(err: str) -> int:
    m = re.search(r"fake Alpaca \(pid (\d+)\) ready", err)
    assert m, err[-2000:]
    return int(m.group(1))


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_alpaca_fake_config_runs_and_stops_its_fake(tmp_path, engine_name):
    env = {"PYRT_STATE_DIR": str(tmp_path), "APCA_API_KEY_ID": "", "APCA_API_SECRET_KEY": ""}
    proc = start_engine(engine_name, str(tmp_path / "runs"), "--config", FAKE_CONFIG, "--duration", "8",
                        env_extra=env)
    try:
        code, out, err = finish(proc, timeout=180)
    finally:
        stop_engine(proc, engine_name)
    assert code == 0, err[-3000:]
    s = summary_of(out)
    syms = ("AAPL", "MSFT")
    venue = {syms[int(k)]: v["qty"] for k, v in s["stage_reports"]["exec"]["alpaca_positions"].items()}
    venue_checks(s, None, engine_positions=venue)
    assert _gone(_fake_pid(err)), "the fake Alpaca outlived pyrt run"
    assert "throwaway keys" in err and "Traceback" not in err
    assert not shm_entries(engine_name)


def test_sigint_stops_the_engine_and_its_fake(tmp_path, engine_name):
    env = {"PYRT_STATE_DIR": str(tmp_path), "APCA_API_KEY_ID": "", "APCA_API_SECRET_KEY": ""}
    proc = start_engine(engine_name, str(tmp_path / "runs"), "--config", FAKE_CONFIG, "--duration", "0",
                        env_extra=env)
    try:
        wait_running(engine_name, proc, min_work=0, timeout=120)
        time.sleep(2.0)
        proc.send_signal(signal.SIGINT)
        code, out, err = finish(proc, timeout=120)
    finally:
        stop_engine(proc, engine_name)
    assert code == 0, err[-3000:]
    assert summary_of(out)["stop_reason"] == "signal"
    assert _gone(_fake_pid(err))
    assert not shm_entries(engine_name)


def test_paper_config_without_credentials_stops_before_anything(tmp_path, engine_name):
    env = {k: v for k, v in os.environ.items() if not k.startswith("APCA_")}
    env["PYTHONPATH"] = ROOT
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "pyrt_shm.cli", "run", "--config", PAPER_CONFIG, "--engine",
                        engine_name, "--duration", "3"], cwd=str(tmp_path), env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "APCA_API_KEY_ID" in p.stderr and "APCA_API_SECRET_KEY" in p.stderr
    assert str(tmp_path / ".env") in p.stderr
    assert "Traceback" not in p.stderr and "running" not in p.stdout
    assert time.monotonic() - t0 < 60
    assert not shm_entries(engine_name)


# -- the [fake_alpaca] table --------------------------------------------------------------------

def test_fake_alpaca_table_is_validated(tmp_path):
    text = open(FAKE_CONFIG).read()
    bad = text.replace("rate = 100.0", "rate = -1").replace("seed = 7", "seed = 7\nspeed = 2") \
        .replace("md_port = 0 ", "md_port = 5555 ").replace("rest_port = 0", "rest_port = 5555")
    path = tmp_path / "bad.toml"
    path.write_text(bad)
    with pytest.raises(ConfigError) as e:
        load_topology(path, available_cpus={0, 1}, isolated_cpus=())
    msg = str(e.value)
    assert "fake_alpaca.rate: must be a finite number >= 0" in msg
    assert "fake_alpaca.speed: unknown key" in msg
    assert "fake_alpaca.rest_port: port 5555 is also fake_alpaca.md_port" in msg
    no_table = re.sub(r"\n\[fake_alpaca\]\n(?:[^\[\n][^\n]*\n|\n)*", "\n", text)
    path.write_text(no_table.replace("{fake_alpaca.rest}", "{fake_alpaca.rst}"))
    with pytest.raises(ConfigError) as e:
        load_topology(path, available_cpus={0, 1}, isolated_cpus=())
    msg = str(e.value)
    assert "stages.exec.params.rest_url: unknown placeholder {fake_alpaca.rst}" in msg
    assert "stages.feed.params.url: {fake_alpaca.md} needs a [fake_alpaca] table" in msg
    topo = load_topology(FAKE_CONFIG, available_cpus={0, 1}, isolated_cpus=())
    assert topo.fake_alpaca.symbols == ("AAPL", "MSFT") and topo.fake_alpaca.rate == 100.0
