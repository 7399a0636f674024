"""``pyrt clean ENGINE``: remove the segments of an engine whose processes are dead."""
from __future__ import annotations

import argparse
import sys

from .errors import EngineRunning
from .segment import remove_stale


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="pyrt clean", description=__doc__)
    ap.add_argument("engine", nargs="?", default="default")
    args = ap.parse_args(argv)
    try:
        removed = remove_stale(args.engine)
    except EngineRunning as e:
        print(f"pyrt clean: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"pyrt clean: {e}", file=sys.stderr)
        return 2
    for n in removed:
        print(f"removed {n}")
    if not removed:
        print(f"nothing to remove for engine {args.engine!r}")
    return 0
