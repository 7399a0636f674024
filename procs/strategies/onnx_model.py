"""``OnnxModelStrategy``: trade on an ONNX classifier's probability that the mid goes up.

A Python strategy (it runs through the stage's Python path: onnxruntime is a Python API).
Per batch, ``on_batch`` computes the features of every event with one jitted call
(``procs.strategies.features``, built on ``procs.indicators``). Per quote event whose
features are ready, ``on_quote`` copies them into the model's bound input, runs the model
(``procs.onnx_infer``: one thread, sequential, no spinning, IO binding, no RunOptions) and
reads ``p = P(next mid move is up)`` from the last column of the output:

* ``p >= enter``: target long (+1); ``p <= 1 - enter``: target short (-1); else hold;
* when the target changes, one market intent moves the position there
  (``qty * |target - current|``, so a flip is one intent of twice ``qty``).

The strategy tracks its *target* per symbol, not fills (the signal stage does not see
positions; risk enforces the limits). Quote events whose features are not ready yet return
WARMING. Each inference is counted in the stage's ``model_calls``.

Parameters:

* ``model``: path of the ``.onnx`` file (default the shipped
  ``procs/strategies/models/imbalance_lr.onnx``); a relative path is tried against the
  working directory, then against the directory that holds the ``procs`` package.
* ``features``: names (``procs.strategies.features.FEATURES``) in the model's input order;
  default: the names stored in the model's metadata by ``pyrt model-export``.
* ``input`` (``"X"``), ``output`` (``"probabilities"``): tensor names.
* ``enter`` (0.55, in (0.5, 1)), ``qty`` (100).

Start-up errors (raised by the constructor, reported before any process starts): a missing
model file, a model onnxruntime cannot load, unknown feature names, or a model whose input
names/shapes or stored feature names differ from the configured features.
"""
from __future__ import annotations

import os

import numpy as np

from procs.onnx_infer import OnnxModel, load_session, model_features
from procs.strategy import BUY, SELL, WARMING, Intent, Strategy

from .features import FeatureEngine

DEFAULT_MODEL = os.path.join("procs", "strategies", "models", "imbalance_lr.onnx")
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def resolve_model_path(path: str) -> str:
    """``path`` as given if it exists (absolute or from the cwd), else under the package root."""
    if os.path.isabs(path) or os.path.exists(path):
        return os.path.abspath(path)
    alt = os.path.join(_ROOT, path)
    return alt if os.path.exists(alt) else os.path.abspath(path)


class OnnxModelStrategy(Strategy):
    """See module doc. Params: model, features, input, output, enter, qty."""

    PARAMS = ("model", "features", "input", "output", "enter", "qty")
    MAX_INTENTS = 1

    def __init__(self, ctx):
        super().__init__(ctx)
        where = ctx.where("model")
        self.model_path = resolve_model_path(ctx.str("model", DEFAULT_MODEL))
        names = ctx.list("features", None)
        input_name = ctx.str("input", "X")
        output_name = ctx.str("output", "probabilities")
        if names is None:
            names = model_features(load_session(self.model_path, where))
            if names is None:
                raise ValueError(f"{ctx.where('features')}: not given, and model {self.model_path} stores "
                                 f"no feature names (metadata pyrt.features)")
        self.enter = ctx.float("enter", 0.55, lo=0.5, hi=1.0, lo_open=True)
        self.qty = ctx.float("qty", 100.0, lo=0.0, lo_open=True)
        self.features = FeatureEngine(len(ctx.symbols), names, ctx.where("features"))
        self.model = OnnxModel(self.model_path, names, input_name, output_name, where)
        self.target = [0] * len(ctx.symbols)
        self._xrow = self.model.x[0]

    def on_start(self) -> None:
        self.model.reopen_if_forked()
        self._xrow = self.model.x[0]

    def warm_up(self) -> None:
        """Compile the feature code and run the model once (private buffers only)."""
        from layouts.orders import BOOK_EVENT

        eng = FeatureEngine(len(self.symbols), self.features.names, capacity=2)
        eng.batch(np.zeros(2, BOOK_EVENT))
        saved = self.model.x.copy()
        self.model.run()
        self.model.x[:] = saved

    def on_batch(self, events: np.ndarray) -> None:
        n = self.features.batch(events)
        if n:
            self.ctx.count("model_calls", n)

    def on_quote(self, ev):
        j = ev.index
        if not self.features.ready[j]:
            return WARMING
        self._xrow[:] = self.features.X[j]
        self.model.run()
        p = float(self.model.y[0, -1])
        s = ev.sym
        cur = self.target[s]
        tgt = 1 if p >= self.enter else (-1 if p <= 1.0 - self.enter else cur)
        if tgt == cur:
            return None
        self.target[s] = tgt
        d = tgt - cur
        return Intent(s, BUY if d > 0 else SELL, self.qty * abs(d))
