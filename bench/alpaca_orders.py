"""``python -m bench.alpaca_orders [--orders N] [--json]``: the Alpaca exec path's order round trip.

What the engine's Alpaca venue adds to a REST order round trip, on loopback against the
fake Alpaca (``tools.fake_alpaca``, in this process, its rate limit lifted for the run):

* ``worker``: ``RestWorker.submit`` (what ``AlpacaExecStage`` calls) -> the ``SubmitResult``
  in the result deque, read by a loop polling every 50 µs (as the stage's backoff loop
  does when busy): queue, worker thread, limiter, alpaca-py, HTTP, parse, deque;
* ``alpaca_py``: ``TradingClient.submit_order`` called directly (raw_data, same client setup);
* ``requests``: ``requests.Session.post`` of the same JSON body (the floor of any Python client).

Market orders of 1 share alternating buy/sell (the position stays near flat), ``--orders``
of each after ``WARM`` unrecorded rounds (connections open, code paths warm), interleaved
in rounds so load drifts hit all three alike. The fake shares the
process (its HTTP threads compete for the GIL), so read the ratios, not the absolutes;
``bench/feed.py`` measures the direct paths against a fake in its own process.
"""
from __future__ import annotations

import argparse
import collections
import json
import time

import numpy as np

WARM = 10                 #: rounds run before recording (first connects, imports, caches)
ANSWER_S = 30.0           #: longest wait for the worker's answer (it retries; never forever)


def _pct(ns: list) -> dict:
    a = np.array(ns, dtype=np.int64)
    return {"n": int(a.size), "p50_ns": int(np.percentile(a, 50)), "p90_ns": int(np.percentile(a, 90)),
            "p99_ns": int(np.percentile(a, 99)), "max_ns": int(a.max())}


def run(n: int) -> dict:
    import requests

    from bench.host import host_info
    from procs.alpaca_rest import RateLimiter, RestWorker, SubmitResult, make_client, order_request
    from tools.fake_alpaca import FakeAlpaca

    key, secret = "PKBENCH", "bench-secret"
    out = {"worker": [], "alpaca_py": [], "requests": []}
    with FakeAlpaca(key_id=key, secret_key=secret, symbols=("AAPL",), quote_rate=0, seed=1,
                    rest_rate_limit=10**9, cash=1e12) as fake:
        fake.publish_quote("AAPL", 100.0, 100.01, 1e9, 1e9)
        res: collections.deque = collections.deque()
        w = RestWorker(lambda: make_client(key, secret, True, fake.rest_url, 10.0), res, RateLimiter(10**9))
        w.start()
        client = make_client(key, secret, True, fake.rest_url, 10.0)
        s = requests.Session()
        s.headers.update({"APCA-API-KEY-ID": key, "APCA-API-SECRET-KEY": secret})
        try:
            for i in range(WARM + n):
                side = 1 if i & 1 == 0 else -1
                t0 = time.perf_counter_ns()
                w.submit(i + 1, f"bw-{i}", "AAPL", side, 1.0, 0.0, 0)
                end = t0 + int(ANSWER_S * 1e9)
                while not res:
                    if time.perf_counter_ns() > end:
                        raise TimeoutError(f"bench: no answer from the REST worker in {ANSWER_S:g} s")
                    time.sleep(0.00005)
                r = res.popleft()
                out["worker"].append(time.perf_counter_ns() - t0)
                assert isinstance(r, SubmitResult) and r.ok, r
                req = order_request(f"ba-{i}", "AAPL", -side, 1.0, 0.0, 0)
                t0 = time.perf_counter_ns()
                client.submit_order(req)
                out["alpaca_py"].append(time.perf_counter_ns() - t0)
                body = {"symbol": "AAPL", "qty": "1", "side": "buy" if side > 0 else "sell", "type": "market",
                        "time_in_force": "day", "client_order_id": f"br-{i}"}
                t0 = time.perf_counter_ns()
                resp = s.post(f"{fake.rest_url}/v2/orders", json=body, timeout=10)
                out["requests"].append(time.perf_counter_ns() - t0)
                resp.raise_for_status()
        finally:
            w.stop()
            client._session.close()
            s.close()
    rep = {k: _pct(v[WARM:]) for k, v in out.items()}
    rep["ratios"] = {"worker_over_alpaca_py_p50": rep["worker"]["p50_ns"] / rep["alpaca_py"]["p50_ns"],
                     "alpaca_py_over_requests_p50": rep["alpaca_py"]["p50_ns"] / rep["requests"]["p50_ns"]}
    rep["host"] = host_info(warm_rounds=WARM)
    return rep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.alpaca_orders", description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", type=int, default=300, help="orders per path (default 300)")
    ap.add_argument("--json", action="store_true", help="print JSON only")
    args = ap.parse_args(argv)
    if args.orders < 10:
        ap.error("--orders: at least 10")
    from pyrt_shm.report import fmt_ns

    rep = run(args.orders)
    if args.json:
        print(json.dumps(rep))
        return 0
    for k in ("worker", "alpaca_py", "requests"):
        r = rep[k]
        print(f"{k:10s} p50 {fmt_ns(r['p50_ns']):>8s}  p90 {fmt_ns(r['p90_ns']):>8s}  "
              f"p99 {fmt_ns(r['p99_ns']):>8s}  max {fmt_ns(r['max_ns']):>8s}  (n={r['n']})")
    print(f"worker / alpaca-py p50: {rep['ratios']['worker_over_alpaca_py_p50']:.2f}x; "
          f"alpaca-py / requests p50: {rep['ratios']['alpaca_py_over_requests_p50']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
