"""Example strategies for the signal stage (see ``procs.strategy`` for the API).

* ``ema_cross:EmaCross``: fast/slow EMA crossover of the mid (numba; the default).
* ``book_imbalance:BookImbalance``: mean reversion on the touch imbalance (numba, aggressive
  limit orders).
* ``onnx_model:OnnxModelStrategy``: an ONNX classifier over indicator features (Python,
  onnxruntime with IO binding); ``models/imbalance_lr.onnx`` is a small pre-built model.
* ``features``: the streaming feature engine shared by the ONNX strategy and
  ``tools/model_export.py`` (so training and serving compute features with the same code).
"""
