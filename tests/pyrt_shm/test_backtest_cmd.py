"""``pyrt backtest`` end to end: the reports are written and the exit code is 0; bad command
lines, configurations and data exit 2 with a message naming the fault, never a traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pyrt_shm.research import backtest_cmd

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BARS = os.path.join(ROOT, "config", "backtest-bars.toml")


def test_writes_the_reports_and_prints_the_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    assert backtest_cmd.main(["--config", BARS, "--out", str(out), "--no-progress",
                              "--set", "stages.signal.params.fast=5", "--set", "stages.signal.params.slow=20"]) == 0
    text = capsys.readouterr().out
    assert "1,950 events of DEMO" in text and "sharpe" in text and "max_drawdown" in text
    assert sorted(os.listdir(out)) == ["equity.csv", "report.html", "summary.json", "trades.csv"]
    s = json.loads((out / "summary.json").read_text())
    assert s["events"] == 1950 and s["overrides"] == {"stages.signal.params.fast": 5, "stages.signal.params.slow": 20}
    assert s["metrics"]["n_trades"] >= 1 and s["metrics"]["conventions"]["periods_per_year"] == 252.0
    with open(out / "equity.csv") as f:
        assert sum(1 for _ in f) == 1950 + 1                  # a sample per bar, and the header


def test_json_and_conventions(tmp_path, capsys):
    assert backtest_cmd.main(["--config", BARS, "--out", str(tmp_path / "r"), "--json", "--no-progress",
                              "--periods-per-year", "365", "--risk-free", "0.02", "--period", "1h",
                              "--equity-every", "5m"]) == 0
    doc = json.loads(capsys.readouterr().out)
    conv = doc["metrics"]["conventions"]
    assert conv["periods_per_year"] == 365.0 and conv["risk_free_rate"] == 0.02 and conv["period"] == "1h"
    assert doc["equity_every_ns"] == 5 * 60 * 10**9 and doc["out"] == str(tmp_path / "r")


def test_default_config_and_bundled_data(tmp_path, capsys):
    assert backtest_cmd.main(["--out", str(tmp_path / "d"), "--no-progress"]) == 0
    assert "1,950 events of DEMO" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["--data", "{tmp}/none.csv"], "none.csv: no such file"),
    (["--data", "{bad}"], "bad.csv:3: column 'c': not a number: 'x'"),
    (["--data", "{unsorted}", "--unsorted", "reject"], "unsorted.csv:3: out of order"),
    (["--config", "{tmp}/none.toml"], "cannot read topology file"),
    (["--config", BARS, "--set", "stages.signal.params.slow=1"], "stages.signal.params.slow"),
    (["--config", BARS, "--set", "stages.signal.params.fast"], "--set stages.signal.params.fast: expected KEY=VALUE"),
    (["--config", BARS, "--set", "stages.nope.params.x=1"], "stages.nope"),
    (["--config", BARS, "--period", "2d"], "Conventions.period"),
    (["--config", BARS, "--equity-every", "often"], "equity_every"),
    (["--config", BARS, "--data", "{quotes}"], "replays bars to the signal"),
])
def test_bad_input_exits_2_naming_the_fault(argv, words, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("t,o,h,l,c,v\n2024-01-02T14:30:00Z,1,2,0.5,1.5,10\n2024-01-02T14:31:00Z,1,2,0.5,x,10\n")
    uns = tmp_path / "unsorted.csv"
    uns.write_text("t,o,h,l,c,v\n2024-01-02T14:31:00Z,1,2,0.5,1.5,10\n2024-01-02T14:30:00Z,1,2,0.5,1.5,10\n")
    quotes = tmp_path / "Q.csv"
    quotes.write_text("t,bp,bs,ap,as\n2024-01-02T14:30:00Z,1,1,2,1\n")
    argv = [a.format(tmp=tmp_path, bad=bad, unsorted=uns, quotes=quotes) for a in argv]
    out = tmp_path / "out"
    assert backtest_cmd.main(argv + ["--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not out.exists()


def test_the_pyrt_command(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pyrt_shm.cli", "backtest", "--config", BARS, "--out",
                        str(tmp_path / "c"), "--no-progress"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "reports:" in r.stdout and (tmp_path / "c" / "report.html").exists()
    r = subprocess.run([sys.executable, "-m", "pyrt_shm.cli", "backtest", "--data", str(tmp_path / "x.csv")],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 2 and "x.csv: no such file" in r.stderr and "Traceback" not in r.stderr
