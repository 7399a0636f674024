"""End-to-end engine runs through `pyrt run` in a subprocess: consistency, faults, signals.

Every run uses the `yield` idle strategy of the default topology (no busy-spinning on the
2-core CI machines) and is bounded by a timeout.
"""
from __future__ import annotations

import os
import signal
import time

import pytest

from engine_proc import ROOT, finish, shm_entries, start_engine, summary_of, wait_running

PER_STAGE = os.path.join(ROOT, "config", "per-stage.toml")


def _check_consistency(s: dict) -> None:
    c = s["counters"]
    feed, book, sig, risk, ex = c["feed"], c["book"], c["signal"], c["risk"], c["exec"]
    assert feed["ticks_out"] > 0
    # every tick consumed by book
    assert book["ticks_in"] == feed["ticks_out"]
    # every book event reached the signal
    assert sig["events_in"] == book["events_out"]
    # every intent (and algo child, and stop order) accounted for: an order, a counted
    # rejection (by reason, risk's rejection table) or an accepted algo parent
    rejections = sum(v for k, v in risk.items() if k.startswith("rej_"))
    assert risk.get("rejected", rejections) == rejections
    assert risk["intents_in"] == sig["intents_out"]
    assert risk["intents_in"] + risk.get("algo_children", 0) + risk.get("stop_loss", 0) \
        + risk.get("trailing_stop", 0) == risk["orders_out"] + rejections + risk.get("algo_parents", 0)
    # every order and every cancel reached exec; every report reached risk
    assert ex["orders_in"] == risk["orders_out"]
    assert ex.get("cancels_in", 0) == risk.get("cancels_out", 0)
    assert risk["fills_in"] == ex["fills_out"]
    # each order got one terminal report, or is still open, and risk and exec agree on which
    done = ex.get("orders_done", ex["orders_in"])
    open_orders = ex["orders_in"] + ex.get("replaces_in", 0) - done
    assert open_orders >= 0
    if "risk" in s.get("stage_reports", {}):
        assert s["stage_reports"]["risk"]["open_orders"] == open_orders
    assert risk["fill_unknown_order"] == 0 and risk["fill_overfill"] == 0
    assert ex["duplicate_order_id"] == 0
    # positions in risk equal the venue's independent record of fills
    risk_pos = {p["symbol"]: p for p in s["positions"]}
    venue_pos = {p["symbol"]: p for p in s["venue_positions"]}
    assert set(risk_pos) == set(venue_pos)
    for sym, p in risk_pos.items():
        assert p["qty"] == pytest.approx(venue_pos[sym]["qty"])
        assert p["qty"] == pytest.approx(p["bought"] - p["sold"])
        assert p["fills"] == venue_pos[sym]["fills"]
    for r in s["rings"].values():
        assert r["dropped"] == 0 and r["depth"] == 0


@pytest.mark.parametrize("config", ["default.toml", "per-stage.toml", "fused.toml"])
def test_run_is_consistent_and_leaves_nothing(engine_name, tmp_path, config):
    proc = start_engine(engine_name, str(tmp_path), "--config", os.path.join(ROOT, "config", config),
                        "--duration", "3", "--rate", "20000")
    rc, out, err = finish(proc)
    assert rc == 0, err
    s = summary_of(out)
    assert s["drain"]["drained"] and s["fault"] is None
    _check_consistency(s)
    assert s["counters"]["risk"]["orders_out"] > 0, "the strategy should trade on 60k ticks"
    assert "exec.tick_to_order" in s["latency_ns"]
    run_dir = s["run_dir"]
    files = os.listdir(run_dir)
    assert "summary.json" in files and "exec.tick_to_order.hgrm" in files
    assert shm_entries(engine_name) == []


def test_feed_max_ticks_ends_the_run(engine_name, tmp_path):
    proc = start_engine(engine_name, str(tmp_path), "--duration", "60", "--rate", "0",
                        "--max-ticks", "50000")
    rc, out, err = finish(proc)
    assert rc == 0, err
    s = summary_of(out)
    assert s["stop_reason"] == "until"
    assert s["counters"]["feed"]["ticks_out"] == 50000
    _check_consistency(s)


@pytest.mark.parametrize("victim", ["feed", "book", "signal", "risk", "exec"])
def test_sigkill_of_a_stage_trips_the_kill_switch(engine_name, tmp_path, victim):
    proc = start_engine(engine_name, str(tmp_path), "--config", PER_STAGE, "--duration", "60",
                        "--rate", "5000")
    try:
        pids = wait_running(engine_name, proc)
        t_kill = time.monotonic_ns()
        os.kill(pids[victim], signal.SIGKILL)
        rc, out, err = finish(proc, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc != 0
    assert f"stage {victim} (process {victim}) died (killed by SIGKILL)" in err
    s = summary_of(out)
    assert s["control"]["kill_switch"] is True and s["control"]["kill_cause"] == "stage died"
    # death is seen at the supervisor's next poll: well within 100 ms
    assert (s["fault_ns"] - t_kill) / 1e6 < 100
    assert shm_entries(engine_name) == []


def test_stuck_stage_is_detected_by_its_heartbeat(engine_name, tmp_path):
    cfg = tmp_path / "stuck.toml"
    from pyrt_shm.config import load_topology  # noqa: F401  (checks the file below parses)
    default = open(PER_STAGE).read()
    cfg.write_text(default.replace('class = "procs.book:BookStage"',
                                   'class = "stuck_stages:SleepingBook"\nparams = { stall_after = 2000 }')
                   .replace("heartbeat_timeout_ms = 500", "heartbeat_timeout_ms = 300"))
    proc = start_engine(engine_name, str(tmp_path), "--config", str(cfg), "--duration", "60",
                        "--rate", "5000")
    rc, out, err = finish(proc, timeout=60)
    assert rc != 0
    assert "stage book (process book) stalled" in err
    s = summary_of(out)
    assert s["control"]["kill_cause"] == "stage stalled"
    assert shm_entries(engine_name) == []


def test_sigint_stops_cleanly_with_a_report(engine_name, tmp_path):
    proc = start_engine(engine_name, str(tmp_path), "--duration", "60", "--rate", "10000")
    try:
        wait_running(engine_name, proc)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        rc, out, err = finish(proc, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, err
    s = summary_of(out)
    assert s["stop_reason"] == "signal" and s["drain"]["drained"]
    _check_consistency(s)
    assert "tick_to_order" in out
    assert shm_entries(engine_name) == []


def test_second_engine_with_the_same_name_refuses(engine_name, tmp_path):
    first = start_engine(engine_name, str(tmp_path), "--duration", "60", "--rate", "2000")
    try:
        wait_running(engine_name, first)
        second = start_engine(engine_name, str(tmp_path), "--duration", "1")
        rc, out, err = finish(second, timeout=60)
        assert rc == 1
        assert f"engine {engine_name!r} is running" in err
        assert first.poll() is None, "the running engine must be left alone"
    finally:
        first.send_signal(signal.SIGINT)
        rc1, _, err1 = finish(first, timeout=60)
    assert rc1 == 0, err1
    assert shm_entries(engine_name) == []


def test_bad_config_path_and_bad_toml_exit_2(engine_name, tmp_path):
    rc, out, err = finish(start_engine(engine_name, str(tmp_path), "--config", str(tmp_path / "nope.toml")))
    assert rc == 2 and "nope.toml" in err
    bad = tmp_path / "bad.toml"
    bad.write_text("[engine\nname = 1\n")
    rc, out, err = finish(start_engine(engine_name, str(tmp_path), "--config", str(bad)))
    assert rc == 2 and "bad.toml" in err and "line 1" in err
    bad.write_text(open(os.path.join(os.path.dirname(__file__), "..", "..", "config", "default.toml"))
                   .read().replace("capacity = 65536", "capacity = 1000"))
    rc, out, err = finish(start_engine(engine_name, str(tmp_path), "--config", str(bad)))
    assert rc == 2 and "capacity" in err and "power of two" in err
