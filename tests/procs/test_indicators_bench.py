"""Smoke test of bench/market_indicators.py: a tiny run yields the full JSON shape.

No timing assertions (a shared 2-core VM is not a timing oracle): structure only, and
that ``run(quick)`` keeps the signature ``bench/market.py`` relies on.
"""
from __future__ import annotations

import inspect
import json

from bench import market_indicators as mi


def test_tiny_run_has_every_section():
    r = mi._run(n_stream=2_000, n_batch=5_000, n_py=1_000, repeats=1, quick=True)
    json.dumps(r)                                                  # JSON-able
    assert set(r) >= {"host", "params", "streaming_ns_per_update", "batch", "baselines",
                      "ratios", "targets"}
    names = {"sma_20", "sma_200", "ema_30", "wma_30", "rsi_14", "macd_12_26_9", "bbands_20",
             "atr_14", "stoch_5_3_3", "obv", "vwap_session", "vwap_session_ts", "vwap_rolling_20"}
    assert set(r["streaming_ns_per_update"]) == names
    for row in r["streaming_ns_per_update"].values():
        assert {"ns_1sym", "ns_64sym", "wall_ns_1sym", "wall_ns_64sym"} <= set(row)
        assert row["ns_1sym"] > 0
    assert {"sma_200", "ema_30", "rsi_14"} <= set(r["batch"])
    assert set(r["baselines"]["python_streaming_ns_per_update"]) == {"sma_200", "ema_30", "rsi_14"}
    assert r["targets"]["sma_200_1M_ms"]["met"] is False           # 5k points: not a 1M run
    t = r["targets"]["streaming_update_ns"]
    assert sorted(t["met_by"] + t["missed_by"]) == sorted(names)


def test_run_signature():
    assert list(inspect.signature(mi.run).parameters) == ["quick"]
    assert callable(mi.main)
