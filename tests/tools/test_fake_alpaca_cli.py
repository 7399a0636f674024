"""``python -m tools.fake_alpaca.cli``: ready line, serving, SIGTERM -> exit 0; clear exit 2 errors."""
from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _spawn(*args, env_keys=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("APCA_")}
    if env_keys:
        env.update(APCA_API_KEY_ID="cli-key", APCA_API_SECRET_KEY="cli-secret")
    return subprocess.Popen([sys.executable, "-m", "tools.fake_alpaca.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _readline(proc, timeout_s: float) -> str:
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout_s):
            raise AssertionError(f"no ready line within {timeout_s} s")
        return proc.stdout.readline()
    finally:
        sel.close()


def test_ready_json_serves_and_exits_0_on_sigterm():
    proc = _spawn("--ready-json", "--rate", "0", "--md-port", "0", "--rest-port", "0", "--stream-port", "0")
    try:
        ready = json.loads(_readline(proc, 20))
        assert ready["md"].startswith("ws://127.0.0.1:") and ready["stream"].endswith("/stream")
        assert ready["md_urls"]["iex"] == ready["md"] + "/v2/iex"
        r = requests.get(ready["rest"] + "/v2/account", timeout=5,
                         headers={"APCA-API-KEY-ID": "cli-key", "APCA-API-SECRET-KEY": "cli-secret"})
        assert r.status_code == 200 and r.json()["status"] == "ACTIVE"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        out, err = proc.communicate(timeout=5)
        assert "cli-secret" not in out + err                    # keys never printed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_port_in_use_and_missing_keys_exit_2():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        proc = _spawn("--ready-json", "--rate", "0", "--rest-port", str(port))
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and out == ""
    assert f"REST cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err
    proc = _spawn("--ready-json", env_keys=False)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and "APCA_API_KEY_ID" in err
