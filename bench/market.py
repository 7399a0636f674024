"""``pyrt bench market``: book updates, indicators and ONNX inference, each with its baseline.

Runs ``bench.market_book``, ``bench.market_indicators`` and ``bench.market_onnx`` in one
process and prints their JSON under one object, with the issue's targets collected in one
place. Each part measures its own baseline in the same run (plain-Python reference book,
plain-numpy indicators, ``sess.run``/numpy for ONNX).
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="pyrt bench market", description=__doc__)
    ap.add_argument("--json", action="store_true", help="print only JSON")
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--parts", default="book,indicators,onnx")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    out = {"command": "pyrt bench market " + " ".join(argv or []), "parts": {}}
    t0 = time.monotonic()
    for part in parts:
        mod = {"book": "bench.market_book", "indicators": "bench.market_indicators",
               "onnx": "bench.market_onnx"}.get(part)
        if mod is None:
            print(f"pyrt bench market: unknown part {part!r}", file=sys.stderr)
            return 2
        out["parts"][part] = __import__(mod, fromlist=["run"]).run(args.quick)
    out["seconds"] = round(time.monotonic() - t0, 2)
    targets = {}
    for part, res in out["parts"].items():
        for name, t in (res.get("targets") or {}).items():
            targets[f"{part}.{name}"] = t
    out["targets"] = targets
    text = json.dumps(out, indent=2, default=str)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
