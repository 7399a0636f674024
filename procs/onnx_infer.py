"""ONNX model inference for the signal stage: an onnxruntime session tuned for one tick at a time.

``OnnxModel(path, features, ...)`` loads a model, checks it against the configured
features and binds in-place buffers once:

* session: ``intra_op_num_threads = inter_op_num_threads = 1``, ``ORT_SEQUENTIAL``, all
  graph optimisations, ``session.intra_op.allow_spinning = 0`` (no spinning thread pool
  stealing the core the hot stages share), CPU provider only;
* IO binding: the input is bound to ``model.x`` (``float32[1, F]``) and the output to
  ``model.y`` (``float32[1, C]``) as OrtValues over those numpy arrays; a tick writes its
  features into ``model.x`` in place, calls ``model.run()`` and reads ``model.y``. Nothing
  is allocated per call.
* ``run()`` is ``sess.run_with_iobinding(io)`` **without RunOptions**: in onnxruntime
  1.31's Python wrapper a RunOptions argument costs ~26 µs a call (it probes an unset
  ``gpu_graph_id`` config entry through a C++ exception), about ten times the inference.

Start-up check (``check_model``): the model must have exactly one input, named ``input``
(default ``"X"``), ``tensor(float)`` of shape ``[N, F]`` with ``F = len(features)`` and a
batch dimension that is symbolic or 1; the configured ``output`` (default
``"probabilities"``) must be a float tensor ``[N, C]``. If the model carries the metadata
``pyrt.features`` (written by ``pyrt model-export``), its feature names and order must equal
the configured ones. Any mismatch raises ValueError naming the model file and the expected
and actual names and shapes (the stage constructor raises it, so the supervisor reports it
before any process starts).

Models for this engine are pinned to **opset 17, IR version 8** (``tools/model_export.py``),
a format onnxruntime 1.31 loads (it refuses onnx 1.23's defaults, IR 14 / opset 28).
"""
from __future__ import annotations

import json
import os

import numpy as np

METADATA_FEATURES = "pyrt.features"
OPSET = 17
IR_VERSION = 8


def _ort():
    try:
        import onnxruntime as ort
    except ImportError as e:               # pragma: no cover - a core dependency
        raise ValueError(f"ONNX inference needs onnxruntime (pip install onnxruntime): {e}") from None
    return ort


def session_options():
    """The low-latency ``SessionOptions`` (see module doc)."""
    ort = _ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


def load_session(path: str, where: str = "model"):
    """An ``InferenceSession`` with ``session_options()``; ValueError naming the file on failure."""
    ort = _ort()
    if not os.path.isfile(path):
        raise ValueError(f"{where}: model file not found: {path}")
    try:
        return ort.InferenceSession(path, sess_options=session_options(), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ValueError(f"{where}: onnxruntime cannot load {path}: {e}") from None


def _shape(s) -> str:
    return "[" + ", ".join("N" if d is None or isinstance(d, str) else str(d) for d in s) + "]"


def _describe(args) -> str:
    return ", ".join(f"{a.name!r} {a.type} {_shape(a.shape)}" for a in args) or "none"


def model_features(sess) -> list[str] | None:
    """The feature names stored in the model's metadata, if any."""
    raw = sess.get_modelmeta().custom_metadata_map.get(METADATA_FEATURES)
    if raw is None:
        return None
    try:
        v = json.loads(raw)
    except ValueError:
        v = [x.strip() for x in raw.split(",") if x.strip()]
    return [str(x) for x in v]


def check_model(sess, path: str, features, input_name: str = "X", output_name: str = "probabilities",
                where: str = "model") -> int:
    """Check ``sess`` against the configured features; return the output's width ``C``."""
    features = list(features)
    nf = len(features)
    want = f"input {input_name!r} tensor(float) [N, {nf}] for features {features}"
    inputs = sess.get_inputs()
    problems = []
    if len(inputs) != 1 or inputs[0].name != input_name:
        problems.append(f"input names differ: expected [{input_name!r}], model has {[i.name for i in inputs]}")
    else:
        i = inputs[0]
        shp = list(i.shape)
        if i.type != "tensor(float)":
            problems.append(f"input {i.name!r} type: expected tensor(float), model has {i.type}")
        if len(shp) != 2 or shp[1] != nf or not (shp[0] is None or isinstance(shp[0], str) or shp[0] == 1):
            problems.append(f"input {i.name!r} shape: expected [N, {nf}], model has {_shape(shp)}")
    mf = model_features(sess)
    if mf is not None and mf != features:
        problems.append(f"feature names differ: configured {features}, model metadata {METADATA_FEATURES} = {mf}")
    outs = {o.name: o for o in sess.get_outputs()}
    width = 0
    if output_name not in outs:
        problems.append(f"output {output_name!r} not found; model outputs: {_describe(sess.get_outputs())}")
    else:
        o = outs[output_name]
        shp = list(o.shape)
        if o.type != "tensor(float)" or len(shp) != 2 or not isinstance(shp[1], int) or shp[1] < 1:
            problems.append(f"output {output_name!r}: expected tensor(float) [N, C], model has {o.type} {_shape(shp)}")
        else:
            width = int(shp[1])
    if problems:
        raise ValueError(f"{where}: model {path} does not match the configured features: expected {want}; "
                         f"the model has inputs {_describe(inputs)}: " + "; ".join(problems))
    return width


class OnnxModel:
    """One model, one tick at a time, through IO binding (see module doc)."""

    def __init__(self, path: str, features, input_name: str = "X", output_name: str = "probabilities",
                 where: str = "model"):
        self.path = os.path.abspath(path)
        self.features = list(features)
        self.input_name, self.output_name, self.where = input_name, output_name, where
        self.x = np.zeros((1, len(self.features)), np.float32)
        self._open()

    def _open(self) -> None:
        ort = _ort()
        self.sess = load_session(self.path, self.where)
        width = check_model(self.sess, self.path, self.features, self.input_name, self.output_name, self.where)
        self.y = np.zeros((1, width), np.float32)
        io = self.sess.io_binding()
        io.bind_ortvalue_input(self.input_name, ort.OrtValue.ortvalue_from_numpy(self.x))
        io.bind_ortvalue_output(self.output_name, ort.OrtValue.ortvalue_from_numpy(self.y))
        self.io = io
        self.pid = os.getpid()
        self.run = self._bound_run()

    def _bound_run(self):
        sess, io = self.sess, self.io

        def run() -> None:
            """Inference on ``self.x`` into ``self.y`` (no RunOptions: see module doc)."""
            sess.run_with_iobinding(io)
        return run

    def reopen_if_forked(self) -> None:
        """A fresh session in a forked child (sessions are not fork-safe in general)."""
        if self.pid != os.getpid():
            self._open()

    def predict(self, x) -> np.ndarray:
        """Convenience: copy ``x`` into the bound input, run, return a copy of the output row."""
        self.x[0] = x
        self.run()
        return self.y[0].copy()

    def run_dict(self, x: np.ndarray) -> np.ndarray:
        """Baseline: ``sess.run([output], {input: x})`` (allocates per call)."""
        return self.sess.run([self.output_name], {self.input_name: x})[0]
