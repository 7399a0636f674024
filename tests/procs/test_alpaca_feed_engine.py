"""``pyrt run`` with AlpacaFeed as the feed of the full pipeline, against the fake Alpaca.

The embedded default topology with its feed replaced: the supervisor builds the stage (reads
the credentials), forks the feed process (the client thread starts there, in ``on_start``),
the engine runs until ``max_ticks`` records went through, and every segment is removed.
Also: a fatal feed error (bad keys) stops the engine with exit status 1 and a message naming
the code and the stage (never the secret); missing credentials fail before anything starts.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tools.fake_alpaca import FakeAlpaca

ROOT = Path(__file__).resolve().parents[2]
KEY, SECRET = "engine-key-id", "engine-secret-value"
TIMEOUT_S = 180


def _config(tmp_path, engine_name, url, **params) -> Path:
    src = (ROOT / "pyrt_shm" / "default.toml").read_text()
    feed = {"url": url, "feed": "iex", "stale_ms": 0, "reconnect_min_ms": 50, "reconnect_max_ms": 200,
            "dotenv": str(tmp_path / "absent.env")}
    feed.update(params)
    table = "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in feed.items()) + " }"
    reps = [('name = "default"', f'name = "{engine_name}"'),
            ('symbols = ["SYM0", "SYM1", "SYM2", "SYM3"]', 'symbols = ["AAPL", "MSFT"]'),
            ('[processes.feed]\ncpu = "auto"\nidle = "yield"', '[processes.feed]\ncpu = "auto"\nidle = "backoff"'),
            ('class = "procs.feed:SyntheticFeed"\nparams = { rate = 100000, seed = 42 }',
             f'class = "procs.alpaca_feed:AlpacaFeed"\nparams = {table}')]
    for a, b in reps:
        assert a in src, f"default.toml changed: {a!r} not found"
        src = src.replace(a, b)
    path = tmp_path / "alpaca.toml"
    path.write_text(src)
    return path


def _run(tmp_path, config, env_extra, duration=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith("APCA_")}
    env.update(env_extra)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "pyrt_shm.cli", "run", "--config", str(config), "--duration", str(duration),
           "--json", "--quiet", "--run-dir", str(tmp_path / "runs")]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


def test_engine_runs_the_alpaca_feed_to_max_ticks(tmp_path, engine_name):
    with FakeAlpaca(key_id=KEY, secret_key=SECRET, symbols=("AAPL", "MSFT"), quote_rate=500.0, seed=2) as fake:
        cfg = _config(tmp_path, engine_name, fake.md_base_url, max_ticks=300)
        p = _run(tmp_path, cfg, {"APCA_API_KEY_ID": KEY, "APCA_API_SECRET_KEY": SECRET})
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert summary["stop_reason"] == "until" and summary["drain"]["drained"] is True
    c = summary["counters"]["feed"]
    assert c["ticks_out"] == 300 and c["finished"] == 1 and c["quotes"] + c["trades"] == 300
    assert c["malformed"] == 0 and c["errors"] == 0
    md = summary["rings"]["md"]
    assert md["published"] == md["consumed"] == 300 and md["dropped"] == 0
    assert summary["latency_ns"]["feed.decode"]["count"] > 0
    assert summary["processes"]["feed"]["exit"] == "exited with status 0"
    assert SECRET not in p.stdout + p.stderr


def test_engine_stops_with_a_clear_error_on_bad_keys(tmp_path, engine_name):
    with FakeAlpaca(key_id=KEY, secret_key=SECRET, symbols=("AAPL", "MSFT"), quote_rate=0) as fake:
        cfg = _config(tmp_path, engine_name, fake.md_base_url)
        p = _run(tmp_path, cfg, {"APCA_API_KEY_ID": KEY, "APCA_API_SECRET_KEY": "not-the-secret"}, duration=60)
        url = fake.md_url("iex")
    assert p.returncode == 1, p.stderr[-3000:]
    assert "402" in p.stderr and url in p.stderr and "stages.feed" in p.stderr
    assert "not-the-secret" not in p.stdout + p.stderr


def test_missing_credentials_fail_before_anything_starts(tmp_path, engine_name):
    cfg = _config(tmp_path, engine_name, "ws://127.0.0.1:9")
    p = _run(tmp_path, cfg, {}, duration=5)
    assert p.returncode == 2, p.stderr[-3000:]
    assert "invalid configuration" in p.stderr
    assert "APCA_API_KEY_ID" in p.stderr and "APCA_API_SECRET_KEY" in p.stderr
    assert "Traceback" not in p.stderr
