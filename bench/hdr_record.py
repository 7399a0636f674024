"""HDR recording cost: ``hdr_record`` inside an njit loop against ``hdrh`` ``record_value`` from Python.

Measures, on the same log-uniform latencies (1 ns .. 60 s):

* ``njit_ns_per_value``: ``hdr_record`` inlined in a jitted loop over ``--n-jit`` values (the
  hot-path shape), best of ``--repeat`` runs after a warm-up run that compiles.
* ``njit_call_from_python_ns``: one ``hdr_record`` call from Python (numba dispatch included).
* ``hdrh_ns_per_value`` (the baseline): ``HdrHistogram.record_value`` over ``--n-py`` values.
* conversion off the hot path: ``to_hdrh``, ``percentiles``, ``encode``, ``format_hgrm``.

The run also checks that both histograms are ``equals()``. Prints one JSON object.
Run: ``PYTHONPATH=. python -m bench.hdr_record [--n-jit N] [--n-py N]``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

import numpy as np
from hdrh.histogram import HdrHistogram
from numba import njit

from layouts.histogram import HIGHEST, HISTOGRAM, LOWEST, SIGFIGS
from pyrt_shm import hdr_convert
from pyrt_shm.hdr_recorder import hdr_record, hdr_reset


@njit(cache=True)
def _record_all(hists, i, values):
    for v in values:
        hdr_record(hists, i, v)


def _best_ns(fn, repeat: int) -> int:
    """Smallest wall time of ``repeat`` calls: the run least disturbed by the host."""
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        fn()
        dt = time.perf_counter_ns() - t0
        best = dt if best is None else min(best, dt)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-jit", type=int, default=10_000_000, help="values recorded in njit")
    ap.add_argument("--n-py", type=int, default=100_000, help="values recorded by hdrh")
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement; best is kept")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    values = np.exp(rng.uniform(0.0, math.log(HIGHEST), args.n_jit)).astype(np.int64)
    hists = np.zeros(1, HISTOGRAM)

    _record_all(hists, 0, values[:1000])  # compile (or load from cache) outside the timing

    def jit_run():
        hdr_reset(hists, 0)
        _record_all(hists, 0, values)

    jit_ns = _best_ns(jit_run, args.repeat) / args.n_jit

    scratch = np.zeros(1, HISTOGRAM)
    n_calls = 100_000
    t0 = time.perf_counter_ns()
    for v in values[:n_calls].tolist():
        hdr_record(scratch, 0, v)
    call_ns = (time.perf_counter_ns() - t0) / n_calls

    py_values = values[: args.n_py].tolist()
    ref = HdrHistogram(LOWEST, HIGHEST, SIGFIGS)
    t0 = time.perf_counter_ns()
    for v in py_values:
        ref.record_value(v)
    py_ns = (time.perf_counter_ns() - t0) / args.n_py

    row = hists[0]
    conv = {name: _best_ns(fn, args.repeat) / 1000 for name, fn in {
        "to_hdrh_us": lambda: hdr_convert.to_hdrh(row),
        "percentiles_us": lambda: hdr_convert.percentiles(row),
        "encode_us": lambda: hdr_convert.encode(row),
        "format_hgrm_us": lambda: hdr_convert.format_hgrm(hdr_convert.to_hdrh(row)),
    }.items()}

    same_head = np.zeros(1, HISTOGRAM)
    _record_all(same_head, 0, values[: args.n_py])
    equal = hdr_convert.to_hdrh(same_head[0]).equals(ref)

    report = {
        "bench": "hdr_record",
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(),
                 "python": platform.python_version()},
        "n_jit": args.n_jit, "n_py": args.n_py,
        "njit_ns_per_value": round(jit_ns, 2),
        "njit_call_from_python_ns": round(call_ns, 1),
        "hdrh_ns_per_value": round(py_ns, 1),
        "speedup_njit_vs_hdrh": round(py_ns / jit_ns, 1),
        "speedup_python_call_vs_hdrh": round(py_ns / call_ns, 2),
        **{k: round(v, 1) for k, v in conv.items()},
        "equals_hdrh": bool(equal),
    }
    print(json.dumps(report, indent=2))
    return 0 if equal else 1


if __name__ == "__main__":
    raise SystemExit(main())
