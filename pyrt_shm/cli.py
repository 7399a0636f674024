"""``pyrt``: the command line. Subcommands are imported lazily so ``pyrt --help`` and the
read-only tools start without compiling anything."""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, help). Each module exposes ``main(argv) -> int``.
COMMANDS = {
    "run": ("pyrt_shm.run_cmd", "run the engine (embedded default topology unless --config)"),
    "clean": ("pyrt_shm.clean_cmd", "remove shared-memory segments left by a dead engine"),
    "kill": ("pyrt_shm.kill_cmd", "flip the kill switch of a running engine (audited)"),
    "top": ("tools.top", "live terminal view of a running engine (read-only)"),
    "hist": ("tools.hist", "latency percentiles, .hgrm files, merges and plots"),
    "doctor": ("tools.doctor", "how fit this host is for low latency, with fixes"),
    "model-export": ("tools.model_export", "train a small classifier on indicator features, write ONNX"),
    "backtest": ("pyrt_shm.research.backtest_cmd", "replay history through the live stages fused in one process"),
    "optimize": ("pyrt_shm.research.optimize_cmd", "parameter grid / walk-forward / Bayesian search over backtests"),
    "fake-alpaca": ("tools.fake_alpaca.cli", "protocol-faithful fake Alpaca (market data, REST, trade stream) on loopback"),
}
BENCHES = {
    "ring": ("bench.ring", "SPSC ring vs Pipe/Queue/zmq/mq: hop latency and throughput"),
    "hdr": ("bench.hdr_record", "HDR recording cost in numba vs hdrh from Python"),
    "pipeline": ("bench.pipeline", "tick-to-order latency through the engine vs a ZMQ+JSON pipeline"),
    "market": ("bench.market", "book updates, indicators and ONNX inference vs their baselines"),
    "jitter": ("bench.jitter", "hiccup meter: the platform's own stalls per core"),
    "orders": ("bench.orders", "pre-trade checks, exec hand-off, sim matching vs plain Python"),
    "feed": ("bench.feed", "Alpaca WebSocket frame to tick record vs alpaca-py's StockDataStream; order round trip"),
    "alpaca-orders": ("bench.alpaca_orders", "Alpaca order round trip: REST worker vs alpaca-py vs requests (fake)"),
    "backtest": ("bench.backtest", "backtest events/s and bars/s vs a plain-Python event loop; sweep scaling"),
}


def _dispatch(module: str, argv: list[str]) -> int:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            print(f"pyrt: {module} is not available in this build", file=sys.stderr)
            return 2
        raise
    return int(mod.main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = argparse.ArgumentParser(prog="pyrt", description="pyrt-shm low-latency trading engine")
    sub = top.add_subparsers(dest="cmd", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    bench = sub.add_parser("bench", help="benchmarks (JSON with --json)")
    bsub = bench.add_subparsers(dest="bench", metavar="BENCH")
    for name, (_, help_) in BENCHES.items():
        bsub.add_parser(name, help=help_, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd in COMMANDS:
        return _dispatch(COMMANDS[cmd][0], rest)
    if cmd == "bench":
        if not rest or rest[0] not in BENCHES:
            bench.print_help()
            return 2 if not rest or rest[0] not in ("-h", "--help") else 0
        return _dispatch(BENCHES[rest[0]][0], rest[1:])
    top.print_usage(sys.stderr)
    print(f"pyrt: unknown command {cmd!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
