"""``pyrt model-export``: train a small classifier on indicator features and write an ONNX model.

::

    pyrt model-export --out model.onnx [--ticks N] [--seed S] [--ticks-file TICKS.npy]
                      [--features a,b,...] [--horizon H] [--trainer auto|sklearn|numpy]
                      [--config TOPOLOGY.toml] [--json]

1. **Events.** Ticks come from the engine's synthetic market (``procs.feed:SyntheticFeed``
   of the topology, ``--seed``, ``--ticks``) or from a recorded ``.npy`` file of
   ``layouts.market.TICK`` records (``--ticks-file``). They go through the topology's book
   stage in private memory (nothing in /dev/shm, no processes), so the model sees the same
   BOOK_EVENT stream the signal stage sees.
2. **Features** are computed by ``procs.strategies.features`` (the streaming code the ONNX
   strategy runs, built on ``procs.indicators``) over that stream from a fresh state.
3. **Labels**: for each quote event with ready features, 1 if the mid ``H`` quote events of
   the same symbol later (``--horizon``, default 1) is higher, 0 if lower; ties and events
   without a future are left out.
4. **Training** (``--trainer auto``: the first available):

   * ``sklearn``: ``StandardScaler`` + ``LogisticRegression`` converted with ``skl2onnx``
     (``zipmap`` off) -- needs the ``model`` extra: ``pip install 'pyrt-shm[model]'``;
   * ``numpy``: the same model (standardise, L2-regularised logistic regression, C = 1,
     fitted by Newton's method) with the scaler folded into the weights, written with
     ``onnx.helper`` as Gemm -> Softmax over ``[0, z]`` = ``[1 - p, p]`` -- needs only
     ``onnx``.

   Both produce input ``X`` float ``[N, F]`` and output ``probabilities`` float ``[N, 2]``
   (scikit-learn's ``predict_proba`` layout; skl2onnx's ``label`` output is dropped from the
   graph outputs: the engine never reads it), pinned to **opset 17 (ai.onnx.ml 3), IR 8**,
   and store the feature names in the metadata ``pyrt.features`` (checked by the signal
   stage at start). Without ``onnx`` (and skl2onnx) the command fails with a message
   naming the extra.
5. The written file is loaded back with onnxruntime and checked like the stage does; a
   one-line summary (JSON with ``--json``) gives samples, train/test accuracy, and trainer.

Exit codes: 0 written; 1 training or export failed (no samples, missing dependency);
2 bad command line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

OPSET = 17
ML_OPSET = 3
IR_VERSION = 8
EXTRA_HINT = "pip install 'pyrt-shm[model]' (scikit-learn, skl2onnx, onnx), or at least onnx"


class ExportError(RuntimeError):
    """Training or export cannot proceed (the message says why and what to install)."""


# -- events ------------------------------------------------------------------------------
def _memory(config, seed: int, ticks: int):
    from pyrt_shm.config import load_topology, override_from_dotted
    from pyrt_shm.wiring import EngineMemory

    over = {"engine.name": "model-export", "stages.feed.params.rate": 0,
            "stages.feed.params.max_ticks": int(ticks), "stages.feed.params.seed": int(seed)}
    topo = load_topology(config, overrides=override_from_dotted(over), available_cpus={0, 1},
                         isolated_cpus=())
    return EngineMemory(topo, backend="local")


def _ring_between(mem, producer: str, consumer: str):
    for r in mem.topology.rings:
        if r.producer == producer and r.consumer == consumer:
            return mem.rings[r.name]
    raise ExportError(f"the topology has no ring {producer} -> {consumer}")


def book_events(ticks: int = 200_000, seed: int = 7, ticks_file: str | None = None, config=None):
    """The BOOK_EVENT stream of synthetic (or recorded) ticks through the book stage;
    returns ``(events, n_symbols)``."""
    from layouts.market import TICK

    recorded = None
    if ticks_file is not None:
        recorded = np.load(ticks_file, allow_pickle=False)
        if recorded.dtype != TICK:
            raise ExportError(f"{ticks_file}: expected an array of layouts.market.TICK records, got {recorded.dtype}")
        recorded = np.ascontiguousarray(recorded.reshape(-1)).view(TICK)   # np.save drops the aligned flag
        ticks = len(recorded)
    mem = _memory(config, seed, max(int(ticks), 1))
    book = mem.build_stage("book")
    md, top = _ring_between(mem, "feed", "book"), _ring_between(mem, "book", "signal")
    feed = None if recorded is not None else mem.build_stage("feed")
    out, fed = [], 0
    while True:
        work = 0
        if feed is not None:
            work += feed.do_work(0)
        elif fed < len(recorded):
            k = md.offer(recorded[fed:fed + 4096])
            fed += k
            work += k
        work += book.do_work(0)
        got = top.poll(4096)
        if len(got):
            out.append(got)
            work += len(got)
        if work == 0:
            break
    n_sym = len(mem.topology.engine.symbols)
    mem.close()
    return (np.concatenate(out) if out else np.zeros(0, top.dtype)), n_sym


def dataset(events: np.ndarray, n_symbols: int, features, horizon: int = 1):
    """``(X float32[n, F], y int64[n])`` from an event stream (see module doc)."""
    from layouts.market import TICK_BOOK_DELTA, TICK_BOOK_SNAPSHOT, TICK_QUOTE
    from procs.strategies.features import compute

    X, ready = compute(events, n_symbols, features)
    quote = np.isin(events["kind"], (TICK_QUOTE, TICK_BOOK_DELTA, TICK_BOOK_SNAPSHOT)) & (events["valid"] != 0)
    mid = 0.5 * (events["bid"] + events["ask"])
    rows, labels = [], []
    for s in range(n_symbols):
        idx = np.flatnonzero(quote & (events["sym"] == s))
        if len(idx) <= horizon:
            continue
        now, fut = idx[:-horizon], idx[horizon:]
        d = mid[fut] - mid[now]
        keep = ready[now] & (d != 0.0)
        rows.append(now[keep])
        labels.append((d[keep] > 0).astype(np.int64))
    if not rows:
        return np.zeros((0, len(list(features))), np.float32), np.zeros(0, np.int64)
    order = np.argsort(np.concatenate(rows), kind="stable")
    idx = np.concatenate(rows)[order]
    return X[idx], np.concatenate(labels)[order]


# -- the numpy trainer and reference -------------------------------------------------------
def fit_logistic(X: np.ndarray, y: np.ndarray, C: float = 1.0, iters: int = 50) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression on standardised features, folded back to raw
    features: returns ``(w float64[F], b)`` with ``P(y=1|x) = sigmoid(x @ w + b)``.

    Minimises ``0.5 |w|^2 + C * sum(log-loss)`` (scikit-learn's objective, intercept not
    penalised) by Newton's method.
    """
    X = np.asarray(X, np.float64)
    mu = X.mean(axis=0)
    sd = X.std(axis=0)
    sd[sd == 0] = 1.0
    Z = np.hstack([(X - mu) / sd, np.ones((len(X), 1))])
    theta = np.zeros(Z.shape[1])
    reg = np.full(Z.shape[1], 1.0 / C)
    reg[-1] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(Z @ theta)))
        grad = Z.T @ (p - y) + reg * theta
        H = (Z * (p * (1 - p))[:, None]).T @ Z + np.diag(reg) + 1e-12 * np.eye(Z.shape[1])
        step = np.linalg.solve(H, grad)
        theta -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    w = theta[:-1] / sd
    b = float(theta[-1] - np.sum(theta[:-1] * mu / sd))
    return w, b


def reference_proba(X: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    """The numpy reference of the exported numpy model: ``[1 - p, p]`` per row (float64)."""
    p = 1.0 / (1.0 + np.exp(-(np.asarray(X, np.float64) @ w + b)))
    return np.column_stack([1.0 - p, p])


def _onnx():
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ExportError(f"writing an ONNX model needs the onnx package: {EXTRA_HINT}") from None
    return onnx, TensorProto, helper, numpy_helper


def numpy_model(w: np.ndarray, b: float, n_features: int):
    """The logistic model as an ``onnx.ModelProto`` (opset 17, IR 8) built with onnx.helper.

    Two nodes: ``Gemm(X, [0 | w], [0, b]) -> Softmax``, i.e. ``softmax([0, z]) = [1 - p, p]``
    with ``p = sigmoid(x @ w + b)`` -- the fewest onnxruntime kernels that give scikit-learn's
    ``predict_proba`` layout (each kernel costs ~0.5 µs per call at batch 1).
    """
    onnx, TensorProto, helper, numpy_helper = _onnx()
    W2 = np.zeros((n_features, 2), np.float32)
    W2[:, 1] = np.asarray(w, np.float32).reshape(-1)
    B2 = np.array([0.0, b], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["X", "W", "B"], ["logits"], name="linear"),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1, name="proba")],
        "pyrt_logistic",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", n_features])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(W2, "W"), numpy_helper.from_array(B2, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="pyrt-shm model-export")
    model.ir_version = IR_VERSION
    return model


def only_probabilities(model):
    """Keep ``probabilities`` as the graph's only output (the engine never reads ``label``)."""
    keep = [o for o in model.graph.output if o.name == "probabilities"]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    return model


def sklearn_model(X: np.ndarray, y: np.ndarray):
    """``(fitted pipeline, onnx.ModelProto)``: StandardScaler + LogisticRegression via skl2onnx."""
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from skl2onnx import to_onnx
    except ImportError:
        raise ExportError(f"the sklearn trainer needs scikit-learn and skl2onnx: {EXTRA_HINT}") from None
    _onnx()
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    clf.fit(X.astype(np.float64), y)
    model = to_onnx(clf, X[:1].astype(np.float32), options={id(clf): {"zipmap": False}},
                    target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET})
    model.ir_version = IR_VERSION
    return clf, only_probabilities(model)


def available_trainers() -> list[str]:
    out = []
    try:
        import onnx  # noqa: F401
    except ImportError:
        return out
    try:
        import skl2onnx  # noqa: F401
        import sklearn  # noqa: F401
        out.append("sklearn")
    except ImportError:
        pass
    out.append("numpy")
    return out


# -- export ------------------------------------------------------------------------------
def export(out: str, ticks: int = 200_000, seed: int = 7, features=None, horizon: int = 1,
           trainer: str = "auto", ticks_file: str | None = None, config=None, test_fraction: float = 0.25) -> dict:
    """Train and write ``out``; return a summary dict (see module doc). Raises ExportError."""
    from procs.onnx_infer import METADATA_FEATURES, check_model, load_session
    from procs.strategies.features import FEATURES, feature_index

    features = list(features or FEATURES)
    try:
        feature_index(features, "--features")
    except ValueError as e:
        raise ExportError(str(e)) from None
    avail = available_trainers()
    if trainer == "auto":
        if not avail:
            raise ExportError(f"model export needs onnx (and for the sklearn trainer scikit-learn + skl2onnx): "
                              f"{EXTRA_HINT}")
        trainer = avail[0]
    elif trainer not in ("sklearn", "numpy"):
        raise ExportError(f"--trainer must be auto, sklearn or numpy, got {trainer!r}")
    events, n_sym = book_events(ticks, seed, ticks_file, config)
    X, y = dataset(events, n_sym, features, horizon)
    if len(y) < 20 or len(np.unique(y)) < 2:
        raise ExportError(f"only {len(y)} labelled samples from {len(events)} book events "
                          f"(need >= 20 of both classes): use more --ticks")
    n_test = int(len(y) * test_fraction)
    Xtr, ytr, Xte, yte = X[:len(y) - n_test], y[:len(y) - n_test], X[len(y) - n_test:], y[len(y) - n_test:]
    if trainer == "sklearn":
        clf, model = sklearn_model(Xtr, ytr)
        proba = lambda A: clf.predict_proba(A.astype(np.float64))  # noqa: E731
    else:
        w, b = fit_logistic(Xtr, ytr)
        model = numpy_model(w, b, len(features))
        proba = lambda A: reference_proba(A, w, b)  # noqa: E731
    acc = lambda A, t: float(np.mean((proba(A)[:, 1] > 0.5) == t)) if len(t) else float("nan")  # noqa: E731
    onnx = _onnx()[0]
    meta = {METADATA_FEATURES: json.dumps(features), "pyrt.trainer": trainer, "pyrt.horizon": str(horizon),
            "pyrt.source": ticks_file or f"synthetic seed={seed} ticks={ticks}", "pyrt.samples": str(len(y))}
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    onnx.checker.check_model(model)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = f"{out}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(model.SerializeToString())
    os.replace(tmp, out)
    sess = load_session(out, out)
    check_model(sess, out, features, "X", "probabilities", out)
    summary = {"out": os.path.abspath(out), "bytes": os.path.getsize(out), "trainer": trainer,
               "features": features, "horizon": horizon, "book_events": int(len(events)),
               "samples": int(len(y)), "train": int(len(ytr)), "test": int(len(yte)),
               "up_fraction": float(np.mean(y)), "train_accuracy": acc(Xtr, ytr),
               "test_accuracy": acc(Xte, yte), "opset": OPSET, "ir_version": IR_VERSION}
    if trainer == "numpy":
        summary["weights"] = [float(v) for v in w]
        summary["intercept"] = b
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="pyrt model-export",
                                 description="Train a small classifier on indicator features of synthetic or "
                                             "recorded ticks and write an ONNX model (opset 17, IR 8).")
    ap.add_argument("--out", required=True, help="the .onnx file to write")
    ap.add_argument("--ticks", type=int, default=200_000, help="synthetic ticks to generate (default 200000)")
    ap.add_argument("--seed", type=int, default=7, help="seed of the synthetic market (default 7)")
    ap.add_argument("--ticks-file", help="recorded ticks: a .npy array of layouts.market.TICK records")
    ap.add_argument("--features", help="comma-separated feature names (default: all of "
                                       "procs.strategies.features.FEATURES)")
    ap.add_argument("--horizon", type=int, default=1, help="label: mid this many quotes later (default 1)")
    ap.add_argument("--trainer", default="auto", choices=("auto", "sklearn", "numpy"))
    ap.add_argument("--config", help="topology whose feed and book produce the events (default: embedded)")
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    args = ap.parse_args(argv)
    if args.ticks < 1 or args.horizon < 1:
        ap.error("--ticks and --horizon must be >= 1")
    feats = [f.strip() for f in args.features.split(",") if f.strip()] if args.features else None
    try:
        s = export(args.out, args.ticks, args.seed, feats, args.horizon, args.trainer, args.ticks_file, args.config)
    except (ExportError, OSError, ValueError) as e:
        print(f"pyrt model-export: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(s))
    else:
        print(f"wrote {s['out']} ({s['bytes']} B, {s['trainer']}, opset {s['opset']}, IR {s['ir_version']}): "
              f"{s['samples']} samples from {s['book_events']} book events, features {','.join(s['features'])}; "
              f"accuracy train {s['train_accuracy']:.3f} test {s['test_accuracy']:.3f} "
              f"(up fraction {s['up_fraction']:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
