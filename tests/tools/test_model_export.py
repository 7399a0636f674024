"""``pyrt model-export``: the command line, recorded ticks, pinned format, clear failures."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tools import model_export as mx

onnx = pytest.importorskip("onnx", reason="onnx is in the test extra: pip install -e '.[test]'")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _ticks(n: int, seed: int) -> np.ndarray:
    """The synthetic feed's first ``n`` TICK records (what a recording would hold)."""
    mem = mx._memory(None, seed, n)
    feed = mem.build_stage("feed")
    ring = mx._ring_between(mem, "feed", "book")
    out = []
    while feed.do_work(0) or len(out) == 0 or sum(map(len, out)) < n:
        out.append(ring.poll(65536))
    mem.close()
    return np.concatenate(out)


def test_cli_writes_a_pinned_model_and_a_json_summary(tmp_path, capsys):
    out = tmp_path / "sub" / "m.onnx"
    rc = mx.main(["--out", str(out), "--ticks", "20000", "--seed", "3", "--trainer", "numpy",
                  "--features", "imbalance,ret_bps,ema_gap_bps", "--json"])
    assert rc == 0
    s = json.loads(capsys.readouterr().out)
    assert s["out"] == str(out) and s["bytes"] == os.path.getsize(out) < 4096
    assert s["trainer"] == "numpy" and s["features"] == ["imbalance", "ret_bps", "ema_gap_bps"]
    assert s["opset"] == 17 and s["ir_version"] == 8 and s["samples"] > 1000
    assert 0.3 < s["test_accuracy"] < 0.8
    m = onnx.load(str(out))
    assert m.ir_version == 8 and [(o.domain, o.version) for o in m.opset_import] == [("", 17)]
    onnx.checker.check_model(m)


def test_recorded_ticks_give_the_same_model_as_the_synthetic_market(tmp_path, capsys):
    ticks = _ticks(15_000, 4)
    assert len(ticks) == 15_000
    path = tmp_path / "ticks.npy"
    np.save(path, ticks)
    a = mx.export(str(tmp_path / "a.onnx"), ticks=15_000, seed=4, trainer="numpy")
    b = mx.export(str(tmp_path / "b.onnx"), ticks_file=str(path), trainer="numpy")
    assert a["samples"] == b["samples"] and a["weights"] == b["weights"] and a["intercept"] == b["intercept"]


def test_failures_exit_1_with_the_reason(tmp_path, capsys):
    assert mx.main(["--out", str(tmp_path / "m.onnx"), "--features", "imbalance,rsi9", "--ticks", "1000"]) == 1
    assert "unknown feature(s) ['rsi9']" in capsys.readouterr().err
    assert mx.main(["--out", str(tmp_path / "m.onnx"), "--ticks", "50", "--trainer", "numpy"]) == 1
    assert "labelled samples" in capsys.readouterr().err
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros(10))
    assert mx.main(["--out", str(tmp_path / "m.onnx"), "--ticks-file", str(bad)]) == 1
    assert "expected an array of layouts.market.TICK records" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "m.onnx")


def test_pyrt_cli_dispatches_model_export(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "pyrt_shm.cli", "model-export", "--help"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--ticks-file" in r.stdout and "opset 17" in r.stdout
