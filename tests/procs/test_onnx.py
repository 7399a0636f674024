"""ONNX inference in the signal stage: exported models load and agree with their reference;
a model that does not match the configured features is a clear startup error; the ONNX
strategy decides inside the signal stage exactly as a plain-numpy reference does.

Needs ``onnx`` (in the ``test`` extra) for the numpy/onnx.helper export path, which every
test here uses. The scikit-learn + skl2onnx path is tested when the ``model`` extra is
installed and reported as skipped (with the reason) when it is not.
"""
from __future__ import annotations

import json
import os
from types import MappingProxyType

import numpy as np
import pytest

from layouts.market import TICK_QUOTE, TICK_TRADE
from layouts.orders import BOOK_EVENT, BUY, SELL
from procs.onnx_infer import OnnxModel, check_model, load_session
from procs.strategies import features as F
from tools import model_export as mx

onnx = pytest.importorskip("onnx", reason="onnx is in the test extra: pip install -e '.[test]'")

try:
    import sklearn  # noqa: F401
    import skl2onnx  # noqa: F401
    HAVE_SKLEARN = True
except ImportError:
    HAVE_SKLEARN = False

SHIPPED = os.path.join(os.path.dirname(F.__file__), "models", "imbalance_lr.onnx")
FEATS = ["imbalance", "ret_bps", "trade_flow"]


def _stream(n=3000, nsym=2, seed=3):
    """A book-event stream with a random-walk mid, random sizes, 20 % trades."""
    rng = np.random.default_rng(seed)
    e = np.zeros(n, BOOK_EVENT)
    mids = np.full(nsym, 100.0)
    for i in range(n):
        s = int(rng.integers(0, nsym))
        mids[s] = round(mids[s] + rng.choice([-0.01, 0.0, 0.01]), 2)
        r = e[i]
        r["tick_seq"], r["feed_ns"], r["sent_ns"], r["sym"], r["valid"] = i, 10_000 + i, 20_000 + i, s, 1
        r["bid"], r["ask"] = mids[s] - 0.01, mids[s] + 0.01
        r["bid_size"], r["ask_size"] = rng.integers(1, 20, 2) * 100.0
        if rng.random() < 0.2:
            r["kind"] = TICK_TRADE
            r["trade_px"] = r["ask"] if rng.random() < 0.5 else r["bid"]
            r["trade_size"] = 100.0
        else:
            r["kind"] = TICK_QUOTE
    return e


def _write(model, path):
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return str(path)


def _lr_file(tmp_path, w, b, names=None, name="m.onnx", meta=True):
    m = mx.numpy_model(np.asarray(w), b, len(w))
    if meta:
        p = m.metadata_props.add()
        p.key, p.value = "pyrt.features", json.dumps(names)
    return _write(m, tmp_path / name)


# -- the exported models --------------------------------------------------------------------
def test_numpy_export_matches_the_numpy_reference(tmp_path):
    s = mx.export(str(tmp_path / "np.onnx"), ticks=20_000, seed=5, features=FEATS, trainer="numpy")
    m = onnx.load(s["out"])
    assert m.ir_version == 8 and [(o.domain, o.version) for o in m.opset_import] == [("", 17)]
    meta = {p.key: p.value for p in m.metadata_props}
    assert json.loads(meta["pyrt.features"]) == FEATS and meta["pyrt.trainer"] == "numpy"
    events, nsym = mx.book_events(20_000, 5)
    X, y = mx.dataset(events, nsym, FEATS)
    assert len(y) == s["samples"] > 1000
    ref = mx.reference_proba(X, np.array(s["weights"]), s["intercept"])
    sess = load_session(s["out"])
    got = sess.run(["probabilities"], {"X": X})[0]
    assert np.max(np.abs(got - ref)) < 1e-5
    assert [o.name for o in sess.get_outputs()] == ["probabilities"]
    model = OnnxModel(s["out"], FEATS)                     # the IO-bound path, row by row
    for i in range(0, len(X), 97):
        assert np.max(np.abs(model.predict(X[i]) - ref[i])) < 1e-5


def test_numpy_trainer_agrees_with_a_reference_fit():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -1.0]
    logit = X @ np.array([0.8, -0.05, 3.0]) + 0.3
    y = (rng.random(4000) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    w, b = mx.fit_logistic(X, y, C=1e6)                  # ~unregularised: the MLE
    # gradient of the log-likelihood vanishes at the optimum
    p = mx.reference_proba(X, w, b)[:, 1]
    assert np.max(np.abs(np.column_stack([X, np.ones(len(X))]).T @ (p - y))) < 1e-3
    assert np.allclose(w, [0.8, -0.05, 3.0], atol=0.5) and abs(b - 0.3) < 0.5   # sampling noise


@pytest.mark.skipif(not HAVE_SKLEARN, reason="scikit-learn/skl2onnx not installed (pip install -e '.[model]'); "
                                              "the numpy/onnx.helper path is tested instead")
def test_sklearn_export_matches_predict_proba(tmp_path):
    s = mx.export(str(tmp_path / "sk.onnx"), ticks=20_000, seed=5, features=FEATS, trainer="sklearn")
    m = onnx.load(s["out"])
    assert m.ir_version == 8 and dict((o.domain, o.version) for o in m.opset_import)[""] == 17
    events, nsym = mx.book_events(20_000, 5)
    X, y = mx.dataset(events, nsym, FEATS)
    n_train = s["train"]
    clf, _ = mx.sklearn_model(X[:n_train], y[:n_train])       # the same fit, deterministic
    sess = load_session(s["out"])
    got = sess.run(["probabilities"], {"X": X})[0]
    assert np.max(np.abs(got - clf.predict_proba(X.astype(np.float64)))) < 1e-5
    model = OnnxModel(s["out"], FEATS)
    assert np.max(np.abs(model.predict(X[7]) - clf.predict_proba(X[7:8].astype(np.float64))[0])) < 1e-5


def test_auto_trainer_falls_back_to_numpy_without_sklearn(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "sklearn", None)
    monkeypatch.setitem(__import__("sys").modules, "skl2onnx", None)
    assert mx.available_trainers() == ["numpy"]
    s = mx.export(str(tmp_path / "auto.onnx"), ticks=5_000, seed=1, features=FEATS)
    assert s["trainer"] == "numpy"
    with pytest.raises(mx.ExportError, match=r"pyrt-shm\[model\]"):
        mx.export(str(tmp_path / "x.onnx"), ticks=5_000, features=FEATS, trainer="sklearn")


def test_without_onnx_the_error_names_the_extra(tmp_path, monkeypatch):
    for mod in ("onnx", "sklearn", "skl2onnx"):
        monkeypatch.setitem(__import__("sys").modules, mod, None)
    assert mx.available_trainers() == []
    with pytest.raises(mx.ExportError, match=r"needs onnx.*pip install 'pyrt-shm\[model\]'"):
        mx.export(str(tmp_path / "x.onnx"), ticks=5_000)
    assert not os.path.exists(tmp_path / "x.onnx")


def test_the_shipped_model_loads_and_is_pinned():
    m = onnx.load(SHIPPED)
    assert m.ir_version == 8 and [(o.domain, o.version) for o in m.opset_import] == [("", 17)]
    assert os.path.getsize(SHIPPED) < 8192
    names = json.loads({p.key: p.value for p in m.metadata_props}["pyrt.features"])
    assert names == list(F.FEATURES)
    model = OnnxModel(SHIPPED, names)
    p = model.predict(np.zeros(len(names), np.float32))
    assert p.shape == (2,) and abs(p.sum() - 1) < 1e-6


# -- start-up check ------------------------------------------------------------------------
def test_check_model_names_file_and_expected_and_actual(tmp_path):
    path = _lr_file(tmp_path, [0.1, 0.2, 0.3], 0.0, FEATS)
    sess = load_session(path)
    assert check_model(sess, path, FEATS) == 2
    with pytest.raises(ValueError) as ei:                 # one feature too few
        check_model(sess, path, FEATS[:2])
    msg = str(ei.value)
    assert path in msg and "expected input 'X' tensor(float) [N, 2]" in msg and "model has [N, 3]" in msg
    with pytest.raises(ValueError, match=r"feature names differ: configured \['ret_bps', 'imbalance', "
                                         r"'trade_flow'\], model metadata pyrt.features = \['imbalance'"):
        check_model(sess, path, ["ret_bps", "imbalance", "trade_flow"])
    with pytest.raises(ValueError, match=r"input names differ: expected \['features'\], model has \['X'\]"):
        check_model(sess, path, FEATS, input_name="features")
    with pytest.raises(ValueError, match=r"output 'proba' not found; model outputs: 'probabilities' "
                                         r"tensor\(float\) \[N, 2\]"):
        check_model(sess, path, FEATS, output_name="proba")


def _signal(engine, **params):
    mem = engine({"stages.signal.class": "procs.signal:SignalStage"})
    ctx = mem.stage_context("signal")
    ctx.params = MappingProxyType({"strategy": "procs.strategies.onnx_model:OnnxModelStrategy", **params})
    return mem, mem.classes["signal"](ctx)


def test_mismatched_model_is_a_startup_error_of_the_stage(engine, tmp_path):
    path = _lr_file(tmp_path, [0.1, 0.2, 0.3], 0.0, FEATS)
    with pytest.raises(ValueError, match=rf"stages\.signal\.params\.model: model {path} does not match.*"
                                         r"\[N, 4\].*model has \[N, 3\]"):
        _signal(engine, model=path, features=FEATS + ["spread_bps"])
    with pytest.raises(ValueError, match=r"stages\.signal\.params\.model: model file not found: .*nope\.onnx"):
        _signal(engine, model=str(tmp_path / "nope.onnx"), features=FEATS)
    with pytest.raises(ValueError, match=r"stages\.signal\.params\.features: unknown feature\(s\) \['rsi9'\]"):
        _signal(engine, model=path, features=["imbalance", "rsi9", "trade_flow"])
    bare = _lr_file(tmp_path, [0.1, 0.2, 0.3], 0.0, meta=False, name="bare.onnx")
    with pytest.raises(ValueError, match=r"stages\.signal\.params\.features: not given, and model .*bare\.onnx "
                                         r"stores no feature names"):
        _signal(engine, model=bare)
    _signal(engine, model=bare, features=FEATS)          # no metadata: names not checked, shape is
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"onnxruntime cannot load .*junk\.onnx"):
        _signal(engine, model=str(tmp_path / "junk.onnx"), features=FEATS)


# -- the ONNX strategy inside the signal stage ------------------------------------------------
def reference_intents(ev, nsym, w, b, enter, qty):
    """Plain numpy: features by the feature engine, probabilities by the numpy reference,
    then the strategy's rule. Returns [(event index, sym, side, qty)]."""
    X, ready = F.compute(ev, nsym, FEATS)
    p = mx.reference_proba(X.astype(np.float64), w, b)[:, 1]
    target = [0] * nsym
    out = []
    for j in range(len(ev)):
        if ev[j]["kind"] != TICK_QUOTE or not ready[j]:
            continue
        s = int(ev[j]["sym"])
        tgt = 1 if p[j] >= enter else (-1 if p[j] <= 1 - enter else target[s])
        if tgt != target[s]:
            d = tgt - target[s]
            target[s] = tgt
            out.append((j, s, BUY if d > 0 else SELL, qty * abs(d)))
    return out


@pytest.mark.parametrize("batch", [256, 1])
def test_onnx_strategy_in_the_signal_stage_matches_the_reference(engine, drain_ring, tmp_path, batch):
    w, b = np.array([0.9, -0.35, 0.8]), 0.01
    path = _lr_file(tmp_path, w, b, FEATS)
    ev = _stream()
    mem, sig = _signal(engine, model=path, features=FEATS, enter=0.56, qty=10.0, batch=batch)
    assert sig.flavour == "python" and sig.kernel() is None
    sig.warm_up()
    sig.on_start()
    mem.rings["top"].put(ev)
    out = []
    while sig.do_work(0):
        out.append(drain_ring(mem.rings["intent"]))
    out = np.concatenate(out)
    ref = reference_intents(ev, 2, w, b, 0.56, 10.0)
    assert len(ref) > 20
    assert [(int(o["feed_ns"]) - 10_000, int(o["sym"]), int(o["side"]), float(o["qty"])) for o in out] == ref
    assert out["seq"].tolist() == list(range(len(ref)))
    X, ready = F.compute(ev, 2, FEATS)
    quotes = ev["kind"] == TICK_QUOTE
    c = sig.counter_values()
    assert c["model_calls"] == int(np.sum(ready & quotes))
    assert c["warming"] == int(np.sum(quotes & ~ready))
    assert c["events_in"] == len(ev) and c["intents_out"] == len(ref)
    dec = mem.hists[sig.h_dec]
    assert dec["total"] == int(np.sum(quotes))           # one decide time per quote hook call


def test_onnx_example_topology_builds(engine):
    from pyrt_shm.config import load_topology
    from pyrt_shm.wiring import EngineMemory

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    topo = load_topology(os.path.join(root, "config", "onnx-example.toml"), available_cpus={0, 1},
                         isolated_cpus=())
    mem = EngineMemory(topo, backend="local")
    sig = mem.build_stage("signal")
    assert sig.flavour == "python" and sig.strategy.model.path == SHIPPED
