"""``FakeAlpacaProcess``: the local fake Alpaca a ``[fake_alpaca]`` topology runs against.

``pyrt run --config config/alpaca-fake.toml`` starts ``python -m tools.fake_alpaca.cli
--ready-json`` with throwaway keys in its environment (its own session, so Ctrl-C reaches
only ``pyrt run``, which stops it after the engine; it also dies with ``pyrt run``), waits
for its ready line (``ready_timeout_s``), puts the keys in this process's environment
(memory only: never written, never logged), replaces the ``{fake_alpaca.rest|stream|md}``
placeholders in stage params by its URLs, and stops it at the end, also on errors and
signals.
"""
from __future__ import annotations

import os
import sys
import time


class FakeAlpacaError(RuntimeError):
    """The local fake Alpaca did not start (the message says why)."""


class FakeAlpacaProcess:
    """A ``tools.fake_alpaca.cli`` subprocess for one run (see the module doc)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.proc = None
        self.urls: dict = {}
        self._saved_env: dict = {}

    def start(self, topo):
        """Start the fake, export throwaway keys, return ``topo`` with its URLs filled in."""
        import dataclasses
        import json
        import secrets
        from collections.abc import Mapping
        import select
        import signal
        import subprocess

        from .config_model import FAKE_ALPACA_URLS, deep_freeze
        from .credentials import KEY_VAR, SECRET_VAR
        from .realtime import die_with_parent

        c = self.cfg
        keys = {KEY_VAR: "PK" + secrets.token_hex(9).upper(), SECRET_VAR: secrets.token_urlsafe(30)}
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env.update(keys)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        cmd = [sys.executable, "-m", "tools.fake_alpaca.cli", "--ready-json",
               "--md-port", str(c.md_port), "--rest-port", str(c.rest_port),
               "--stream-port", str(c.stream_port), "--symbols", ",".join(c.symbols),
               "--rate", f"{c.rate:g}", "--seed", str(c.seed)]
        try:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
                                         start_new_session=True,
                                         preexec_fn=lambda: die_with_parent(signal.SIGTERM))
        except OSError as e:
            raise FakeAlpacaError(f"fake_alpaca: cannot start {' '.join(cmd[:3])}: {e}") from None
        deadline = time.monotonic() + c.ready_timeout_s
        line = b""
        fd = self.proc.stdout.fileno()
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise FakeAlpacaError(f"fake_alpaca: no ready line within {c.ready_timeout_s:g} s "
                                      "(fake_alpaca.ready_timeout_s)")
            ready, _, _ = select.select([fd], [], [], min(left, 0.2))
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    code = self.proc.wait(timeout=5)
                    raise FakeAlpacaError(f"fake_alpaca: the fake exited with status {code} before it "
                                          "was ready (its error is above)")
                line += chunk
        try:
            ready_msg = json.loads(line.decode().strip().splitlines()[-1])
            self.urls = {k: str(ready_msg[k]).rstrip("/") for k in FAKE_ALPACA_URLS}
        except (ValueError, KeyError, TypeError, IndexError):
            raise FakeAlpacaError(f"fake_alpaca: unreadable ready line {line[:200]!r}") from None
        for k, v in keys.items():              # memory only; restored by stop()
            self._saved_env[k] = os.environ.get(k)
            os.environ[k] = v
        print(f"pyrt: fake Alpaca (pid {self.proc.pid}) ready: rest {self.urls['rest']}, "
              f"stream {self.urls['stream']}, market data {self.urls['md']}; throwaway keys",
              file=sys.stderr, flush=True)

        def fill(v):
            if isinstance(v, str):
                for k, url in self.urls.items():
                    v = v.replace("{fake_alpaca.%s}" % k, url)
                return v
            if isinstance(v, Mapping):
                return {k: fill(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [fill(x) for x in v]
            return v

        stages = tuple(dataclasses.replace(st, params=deep_freeze(fill(dict(st.params))))
                       for st in topo.stages)
        return dataclasses.replace(topo, stages=stages)

    def stop(self) -> None:
        """SIGTERM the fake, wait (bounded), SIGKILL if it hangs; restore the environment."""
        import subprocess

        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self._saved_env = {}
        p = self.proc
        if p is None:
            return
        self.proc = None
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        if p.stdout is not None:
            p.stdout.close()
