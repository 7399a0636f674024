"""``pyrt hist``: show / hgrm / merge / plot over real run directories and a live engine.

Two short engine runs (``pyrt run --duration 1.5 --rate 5000``, yield idle, in a subprocess
with a timeout) make the run directories shared by the module. The live test starts its own
engine, reads it while it runs, then stops it with SIGINT. Commands run in-process through
``tools.hist.main`` (they attach read-only; nothing of the engine is imported).
"""
from __future__ import annotations

import itertools
import json
import os
import signal
import sys

import pytest
from hdrh.histogram import HdrHistogram

from tools import hist

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyrt_shm"))
from engine_proc import finish, shm_entries, start_engine, summary_of, wait_running  # noqa: E402

_names = itertools.count()


def _engine(tag: str) -> str:
    """Engine name in the conftest convention (``t<pid>-...``) so leak checks know it is ours."""
    return f"t{os.getpid()}-h{tag}{next(_names)}"


def _run_engine(engine: str, run_dir: str) -> tuple[str, dict]:
    proc = start_engine(engine, run_dir, "--duration", "1.5", "--rate", "5000")
    rc, out, err = finish(proc, timeout=120)
    assert rc == 0, err
    s = summary_of(out)
    return s["run_dir"], s


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two run directories: [(path, summary), (path, summary)]."""
    base = tmp_path_factory.mktemp("runs")
    return [_run_engine(_engine(t), str(base)) for t in "ab"]


def call(capsys, *argv) -> tuple[int, str, str]:
    rc = hist.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# ---------------------------------------------------------------------------------------
# run directories

def test_run_dir_holds_lossless_histograms(runs):
    run_dir, s = runs[0]
    with open(os.path.join(run_dir, "histograms.json")) as f:
        encoded = json.load(f)
    assert set(s["latency_ns"]) <= set(encoded)
    for name, lat in s["latency_ns"].items():
        h = HdrHistogram.decode(encoded[name])
        assert h.get_total_count() == lat["count"], name
        assert os.path.isfile(os.path.join(run_dir, f"{name}.hgrm"))


def test_show_run_dir_matches_the_run_summary(runs, capsys):
    run_dir, s = runs[0]
    rc, out, err = call(capsys, "show", run_dir, "--json")
    assert rc == 0, err
    rows = {r["name"]: r for r in json.loads(out)["histograms"]}
    assert set(s["latency_ns"]) <= set(rows)
    for name, lat in s["latency_ns"].items():
        r = rows[name]
        assert r["count"] == lat["count"], name
        for k in ("p50", "p90", "p99", "p999", "p9999"):
            assert r[k] == lat[k], (name, k)
        assert r["min"] <= r["p50"] <= r["p99"] <= r["p9999"] <= r["max"]

    rc, out, err = call(capsys, "show", run_dir)
    assert rc == 0, err
    assert "p99.99" in out and "exec.tick_to_order" in out and "count" in out

    rc, out, err = call(capsys, "show", run_dir, "--name", "exec", "--name", "process.*", "--json")
    assert rc == 0, err
    names = [r["name"] for r in json.loads(out)["histograms"]]
    assert "exec.tick_to_order" in names and "exec.latency" in names
    assert all(n.startswith(("exec.", "process.")) for n in names)


def test_hgrm_is_the_run_dir_file(runs, capsys, tmp_path):
    run_dir, _ = runs[0]
    out_file = tmp_path / "t2o.hgrm"
    rc, out, err = call(capsys, "hgrm", run_dir, "--name", "exec.tick_to_order", "--out", str(out_file))
    assert rc == 0, err
    with open(os.path.join(run_dir, "exec.tick_to_order.hgrm")) as f:
        assert out_file.read_text() == f.read()      # lossless round trip through histograms.json
    rc, out, err = call(capsys, "hgrm", run_dir, "--name", "exec.tick_to_order", "--out", "-", "--unit", "us")
    assert rc == 0, err
    assert out.startswith("       Value     Percentile TotalCount 1/(1-Percentile)")
    assert "#[Max     =" in out and "Total count" in out


def test_merge_adds_same_named_histograms(runs, capsys, tmp_path):
    (a, sa), (b, sb) = runs
    merged_dir = tmp_path / "merged"
    rc, out, err = call(capsys, "merge", a, b, "--out", str(merged_dir))
    assert rc == 0, err
    with open(merged_dir / "histograms.json") as f:
        merged = {n: HdrHistogram.decode(e) for n, e in json.load(f).items()}
    names = set(sa["latency_ns"]) | set(sb["latency_ns"])
    assert names <= set(merged)
    for name in names:
        expected = sa["latency_ns"].get(name, {}).get("count", 0) + sb["latency_ns"].get(name, {}).get("count", 0)
        assert merged[name].get_total_count() == expected, name
        assert (merged_dir / f"{name}.hgrm").is_file()
    info = json.loads((merged_dir / "merge.json").read_text())
    assert info["sources"] == [a, b]
    # the merged directory is itself a source
    rc, out, err = call(capsys, "show", str(merged_dir), "--name", "exec.tick_to_order", "--json")
    assert rc == 0, err
    row = json.loads(out)["histograms"][0]
    assert row["count"] == sa["latency_ns"]["exec.tick_to_order"]["count"] + \
        sb["latency_ns"]["exec.tick_to_order"]["count"]
    assert row["max"] >= max(sa["latency_ns"]["exec.tick_to_order"]["p9999"],
                             sb["latency_ns"]["exec.tick_to_order"]["p9999"])


def test_plot_png_or_clear_message(runs, capsys, tmp_path):
    run_dir, _ = runs[0]
    png = tmp_path / "lat.png"
    rc, out, err = call(capsys, "plot", run_dir, "--name", "exec", "--out", str(png))
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError:
        assert rc == 2
        assert "matplotlib" in err and "pip install 'pyrt-shm[plot]'" in err
        assert not png.exists()
    else:
        assert rc == 0, err
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------
# errors

def test_clear_errors(runs, capsys, tmp_path):
    run_dir, _ = runs[0]
    missing_engine = _engine("none")
    rc, out, err = call(capsys, "show", missing_engine)
    assert rc == 1 and missing_engine in err and "running engine" in err

    rc, out, err = call(capsys, "show", str(tmp_path / "nope"))
    assert rc == 1 and "nope" in err

    rc, out, err = call(capsys, "show", run_dir, "--name", "no.such.hist")
    assert rc == 1 and "no.such.hist" in err and "exec.tick_to_order" in err  # lists what exists

    rc, out, err = call(capsys, "hgrm", run_dir, "--name", "exec", "--out", str(tmp_path / "x.hgrm"))
    assert rc == 1 and "exec.latency" in err and "exec.tick_to_order" in err
    assert not (tmp_path / "x.hgrm").exists()

    # the parent of run directories is not one, but the message points at them
    rc, out, err = call(capsys, "show", os.path.dirname(run_dir))
    assert rc == 1 and "histograms.json" in err and os.path.basename(run_dir) in err

    # an older run directory (only .hgrm files) cannot be decoded
    old = tmp_path / "old"
    old.mkdir()
    (old / "exec.latency.hgrm").write_text("x")
    rc, out, err = call(capsys, "show", str(old))
    assert rc == 1 and "cannot be decoded" in err

    rc, out, err = call(capsys, "merge", run_dir, str(tmp_path / "absent"), "--out", str(tmp_path / "m"))
    assert rc == 1 and "absent" in err

    with pytest.raises(SystemExit) as e:
        hist.main(["frobnicate"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        hist.main(["hgrm", run_dir])           # --name and --out are required
    assert e.value.code == 2


# ---------------------------------------------------------------------------------------
# live engine

def test_show_live_engine(engine_name, tmp_path, capsys):
    proc = start_engine(engine_name, str(tmp_path), "--duration", "30", "--rate", "5000")
    try:
        wait_running(engine_name, proc, min_work=50)
        rc, out, err = call(capsys, "show", engine_name, "--json")
        assert rc == 0, err
        doc = json.loads(out)
        assert "running" in doc["label"] and engine_name in doc["label"]
        rows = {r["name"]: r for r in doc["histograms"]}
        assert "exec.tick_to_order" in rows and "process.feed.cycle" in rows
        assert rows["book.latency"]["count"] > 0
        for r in rows.values():
            if r["count"]:
                assert r["min"] <= r["p50"] <= r["p99"] <= r["p9999"]
                assert r["max"] >= r["min"]

        rc, out, err = call(capsys, "show", engine_name, "--name", "book")
        assert rc == 0, err
        assert "book.latency" in out and "feed.lag" not in out

        rc, out, err = call(capsys, "hgrm", engine_name, "--name", "book.latency", "--out", "-")
        assert rc == 0, err
        assert "Total count" in out

        proc.send_signal(signal.SIGINT)
        rc, out, err = finish(proc, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert rc == 0, err
    assert summary_of(out)["stop_reason"] == "signal"
    assert shm_entries(engine_name) == []
