"""``pyrt hist``: latency percentiles, ``.hgrm`` files, merges and plots.

A SOURCE is either

* a **run directory** written by ``pyrt run`` (it holds ``histograms.json``: every histogram
  as an ``hdrh`` ``encode()`` string, lossless; the ``.hgrm`` files beside it are percentile
  tables for people and plotters and cannot be decoded back), or a directory written by
  ``pyrt hist merge``; or
* the **name of a running engine** (``--engine`` of ``pyrt run``): the ``hist`` and
  ``manifest`` segments are attached read-only and each row is copied before it is read, so
  the engine is never slowed or written to. An existing directory wins over an engine name.

Subcommands::

    pyrt hist show  SOURCE [--name PATTERN]... [--json]
    pyrt hist hgrm  SOURCE --name NAME --out FILE|- [--unit ns|us|ms] [--ticks N]
    pyrt hist merge SOURCE SOURCE... --out DIR
    pyrt hist plot  SOURCE... [--name PATTERN]... --out FILE.png [--log-y]   (pyrt-shm[plot])

``--name`` PATTERN: a shell glob (``'exec.*'``, ``'*latency'``), or a plain name that
matches itself and everything under it (``exec`` matches ``exec.latency`` and
``exec.tick_to_order``). Values are nanoseconds.

Exit codes: 0 done; 1 missing engine, directory or histogram (the message names it), or an
unreadable file; 2 bad command line, or ``plot`` without matplotlib.

Imports numpy, hdrh and ``layouts``/``pyrt_shm`` modules only: no numba, so it starts fast.
"""
from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import os
import sys

import numpy as np
from hdrh.histogram import HdrHistogram

from layouts.histogram import COUNTS_LEN, HIGHEST, HISTOGRAM, LOWEST, SIGFIGS
from pyrt_shm import report

PERCENTILES = (50, 90, 99, 99.9, 99.99)
_P_KEYS = {50: "p50", 90: "p90", 99: "p99", 99.9: "p999", 99.99: "p9999"}
_UNITS = {"ns": 1.0, "us": 1e3, "ms": 1e6}
HISTOGRAMS_JSON = "histograms.json"
PLOT_EXTRA_HINT = "pip install 'pyrt-shm[plot]'"


class HistError(Exception):
    """A user-facing failure; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


@dataclasses.dataclass
class Hist:
    name: str
    h: HdrHistogram
    exact: dict | None = None   # live rows: exact min/max/mean/overflow from the row header


@dataclasses.dataclass
class Source:
    spec: str
    label: str
    hists: dict          # name -> Hist, in the engine's row order


# ---------------------------------------------------------------------------------------
# loading

def _is_our_layout(h: HdrHistogram) -> bool:
    return (h.lowest_trackable_value, h.highest_trackable_value, h.significant_figures,
            h.counts_len) == (LOWEST, HIGHEST, SIGFIGS, COUNTS_LEN)


def _decode(blob: str, where: str) -> HdrHistogram:
    try:
        return HdrHistogram.decode(blob.encode("ascii") if isinstance(blob, str) else blob)
    except Exception as e:  # hdrh raises several exception types for bad blobs
        raise HistError(f"{where}: cannot decode histogram ({type(e).__name__}: {e})") from None


def load_run_dir(path: str) -> Source:
    """Histograms of a run directory (its ``histograms.json``)."""
    fn = os.path.join(path, HISTOGRAMS_JSON)
    if not os.path.isfile(fn):
        subs = sorted(d for d in _listdir(path)
                      if os.path.isfile(os.path.join(path, d, HISTOGRAMS_JSON)))
        if subs:
            shown = ", ".join(os.path.join(path, d) for d in subs[:5]) + (" ..." if len(subs) > 5 else "")
            raise HistError(f"{path} is not a run directory (no {HISTOGRAMS_JSON}); it contains "
                            f"{len(subs)} run director{'y' if len(subs) == 1 else 'ies'}: {shown}")
        if any(f.endswith(".hgrm") for f in _listdir(path)):
            raise HistError(f"run directory {path} has .hgrm files but no {HISTOGRAMS_JSON} (written "
                            f"by an older pyrt): .hgrm percentile tables cannot be decoded back into "
                            f"histograms")
        raise HistError(f"{path} is not a run directory (no {HISTOGRAMS_JSON})")
    try:
        with open(fn, encoding="ascii") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise HistError(f"cannot read {fn}: {e}") from None
    if not isinstance(data, dict):
        raise HistError(f"{fn}: expected an object mapping histogram names to encoded histograms")
    hists = {name: Hist(name, _decode(blob, f"{fn} [{name}]")) for name, blob in data.items()}
    return Source(path, f"run directory {path}", hists)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_engine(engine: str) -> Source:
    """Snapshot every histogram row of a running engine (read-only attach)."""
    from layouts.common import dtype_hash
    from layouts.segment import KIND_BLOB, KIND_HISTOGRAMS
    from pyrt_shm import hdr_convert
    from pyrt_shm.errors import SegmentNotFound, ShmError
    from pyrt_shm.segment import attach_segment

    try:
        man = attach_segment(engine, "manifest", kind=KIND_BLOB, readonly=True)
    except SegmentNotFound:
        raise HistError(f"no run directory or running engine named {engine!r} "
                        f"(no directory {engine!r}, no segment /dev/shm/pyrt-{engine}.manifest)") from None
    except ShmError as e:
        raise HistError(f"engine {engine!r}: {e}") from None
    try:
        n = int(man.array(np.uint64, (1,))[0])
        if n <= 0 or n > man.size - man.payload_offset - 8:
            raise HistError(f"engine {engine!r}: manifest length {n} is invalid (engine still starting?)")
        manifest = json.loads(bytes(man.array(np.uint8, (n,), offset=8)))
    except ValueError as e:
        raise HistError(f"engine {engine!r}: unreadable manifest ({e})") from None
    finally:
        man.close()
    names = list(manifest.get("histograms", []))
    try:
        seg = attach_segment(engine, "hist", kind=KIND_HISTOGRAMS, layout_hash=dtype_hash(HISTOGRAM),
                             readonly=True)
    except ShmError as e:
        raise HistError(f"engine {engine!r}: {e}") from None
    try:
        rows = seg.array(HISTOGRAM, (max(len(names), 1),))
        hists = {}
        for i, name in enumerate(names):
            snap = hdr_convert.snapshot(rows[i])
            s = hdr_convert.summary(snap)
            hists[name] = Hist(name, hdr_convert.to_hdrh(snap),
                               {"min": s["min"], "max": s["max"], "mean": s["mean"], "overflow": s["overflow"]})
        del rows
    finally:
        seg.close()
    pid = int(manifest.get("pid", 0))
    state = "running" if _pid_alive(pid) else "not running: stale segments"
    return Source(engine, f"engine {engine} (supervisor pid {pid}, {state})", hists)


def load_source(spec: str) -> Source:
    if os.path.isdir(spec):
        return load_run_dir(spec)
    from pyrt_shm.segment import check_engine_name

    try:
        check_engine_name(spec)
    except ValueError:
        raise HistError(f"no run directory {spec!r} (and it is not a valid engine name)") from None
    return load_engine(spec)


# ---------------------------------------------------------------------------------------
# selecting and measuring

def _matches(name: str, pattern: str) -> bool:
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return name == pattern or name.startswith(pattern + ".")


def select(src: Source, patterns: list[str] | None) -> list[Hist]:
    """Histograms of ``src`` matching any of ``patterns`` (all when None); every pattern must match."""
    if not patterns:
        return list(src.hists.values())
    chosen = []
    for pat in patterns:
        found = [h for n, h in src.hists.items() if _matches(n, pat)]
        if not found:
            raise HistError(f"no histogram matching {pat!r} in {src.label}; it has: "
                            f"{', '.join(src.hists) or '(none)'}")
        chosen += [h for h in found if h not in chosen]
    return chosen


def select_one(src: Source, name: str) -> Hist:
    if name in src.hists:
        return src.hists[name]
    found = select(src, [name])
    if len(found) > 1:
        raise HistError(f"{name!r} matches {len(found)} histograms in {src.label} "
                        f"({', '.join(h.name for h in found)}); name one")
    return found[0]


def _counts(h: HdrHistogram) -> np.ndarray:
    return np.ctypeslib.as_array(h.counts)[: h.counts_len].astype(np.int64)


def percentiles_of(h: HdrHistogram, ps=PERCENTILES) -> dict:
    """``{p: h.get_value_at_percentile(p)}``, vectorised for histograms of the engine's layout."""
    if _is_our_layout(h):
        from pyrt_shm import hdr_convert

        row = np.zeros((), HISTOGRAM)
        row["counts"] = _counts(h)
        return hdr_convert.percentiles(row, ps)
    out = {p: int(h.get_value_at_percentile(p)) for p in ps}
    if 0 in out:
        out[0] = int(h.get_min_value())
    return out


def stats(hist: Hist) -> dict:
    """count, min, p50..p99.99, max (ns) of one histogram; ``None`` percentiles when empty."""
    h = hist.h
    count = int(h.get_total_count())
    out = {"name": hist.name, "count": count}
    if count == 0:
        out.update({"min": None, **{k: None for k in _P_KEYS.values()}, "max": None})
        return out
    # min/max of a decoded or merged histogram come from its counts (bucket edges): hdrh's
    # add() loses min when either side is empty.
    p = percentiles_of(h, (0, *PERCENTILES, 100))
    out["min"] = hist.exact["min"] if hist.exact else int(p[0])
    out.update({_P_KEYS[q]: int(p[q]) for q in PERCENTILES})
    out["max"] = hist.exact["max"] if hist.exact else int(p[100])
    if hist.exact:
        out["mean"] = round(hist.exact["mean"], 1)
        out["overflow"] = hist.exact["overflow"]
    return out


fmt_ns = report.fmt_ns


def format_table(rows: list[dict]) -> str:
    width = max([len(r["name"]) for r in rows] + [9])
    cols = ("p50", "p90", "p99", "p999", "p9999", "max")
    heads = ("p50", "p90", "p99", "p99.9", "p99.99", "max")
    lines = [f"{'histogram':<{width}} {'count':>11} " + " ".join(f"{h:>9}" for h in heads)]
    for r in rows:
        lines.append(f"{r['name']:<{width}} {r['count']:>11,} " + " ".join(f"{fmt_ns(r[c]):>9}" for c in cols))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# subcommands

def cmd_show(args) -> int:
    src = load_source(args.source)
    rows = [stats(h) for h in select(src, args.name)]
    if args.json:
        print(json.dumps({"source": src.spec, "label": src.label, "histograms": rows}))
        return 0
    print(f"{src.label}: {len(rows)} histogram{'s' if len(rows) != 1 else ''}, values in ns")
    print(format_table(rows) if rows else "(no histograms)")
    return 0


def _write_text(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text)
        return
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="ascii") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise HistError(f"cannot write {path}: {e.strerror or e}") from None


def cmd_hgrm(args) -> int:
    from pyrt_shm import hdr_convert

    src = load_source(args.source)
    hist = select_one(src, args.name)
    if args.ticks < 1:
        raise HistError("--ticks must be >= 1", 2)
    text = hdr_convert.format_hgrm(hist.h, args.ticks, _UNITS[args.unit])
    _write_text(args.out, text)
    if args.out != "-":
        print(f"wrote {args.out}: {hist.name} from {src.label} "
              f"({hist.h.get_total_count():,} values, unit {args.unit})")
    return 0


def merge_sources(sources: list[Source]) -> dict:
    """``{name: (HdrHistogram, runs)}``: same-named histograms added with ``hdrh`` ``add``."""
    from pyrt_shm import hdr_convert

    names = []
    for s in sources:
        names += [n for n in s.hists if n not in names]
    out = {}
    for name in names:
        parts = [s.hists[name].h for s in sources if name in s.hists]
        try:
            out[name] = (hdr_convert.merge(parts), len(parts))
        except IndexError as e:
            raise HistError(f"cannot merge {name!r}: {e}") from None
    return out


def cmd_merge(args) -> int:
    from pyrt_shm import hdr_convert

    out_dir = os.path.abspath(args.out)
    for spec in args.sources:
        if os.path.isdir(spec) and os.path.abspath(spec) == out_dir:
            raise HistError(f"--out {args.out} is one of the inputs; choose a new directory", 2)
    sources = [load_source(s) for s in args.sources]
    merged = merge_sources(sources)
    try:
        os.makedirs(out_dir, exist_ok=True)
        for name, (h, _) in merged.items():
            if h.get_total_count():
                hdr_convert.write_hgrm(h, os.path.join(out_dir, f"{name}.hgrm"))
        encoded = {name: h.encode().decode("ascii") for name, (h, _) in merged.items()}
        _write_text(os.path.join(out_dir, HISTOGRAMS_JSON), json.dumps(encoded, indent=1))
        info = {"sources": [s.spec for s in sources],
                "histograms": {name: {"runs": runs, "count": int(h.get_total_count())}
                               for name, (h, runs) in merged.items()}}
        _write_text(os.path.join(out_dir, "merge.json"), json.dumps(info, indent=2))
    except OSError as e:
        raise HistError(f"cannot write to {args.out}: {e.strerror or e}") from None
    print(f"merged {len(sources)} sources into {args.out} ({len(merged)} histograms)")
    partial = [n for n, (_, runs) in merged.items() if runs < len(sources)]
    if partial:
        print(f"note: present in only some sources: {', '.join(partial)}")
    rows = [stats(Hist(name, h)) for name, (h, _) in merged.items()]
    if rows:
        print(format_table(rows))
    return 0


def _hgrm_points(h: HdrHistogram):
    """(percentile fraction, value ns) pairs of the ``.hgrm`` distribution, without the 100 % row."""
    from pyrt_shm import hdr_convert

    pts = []
    for line in hdr_convert.format_hgrm(h).splitlines()[2:]:
        parts = line.split()
        if len(parts) != 4 or line.startswith("#"):
            continue
        value, pct = float(parts[0]), float(parts[1])
        if pct < 1.0:
            pts.append((pct, value))
    return pts


def cmd_plot(args) -> int:
    try:
        import matplotlib
    except ModuleNotFoundError:
        print(f"pyrt hist plot: matplotlib is not installed; it is the optional 'plot' extra: "
              f"{PLOT_EXTRA_HINT}", file=sys.stderr)
        return 2
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    sources = [load_source(s) for s in args.sources]
    series = []
    for src in sources:
        for hist in select(src, args.name):
            if hist.h.get_total_count() == 0:
                continue
            label = hist.name if len(sources) == 1 else f"{src.spec}: {hist.name}"
            series.append((label, _hgrm_points(hist.h), hist.h.get_max_value()))
    if not series:
        raise HistError("nothing to plot: every selected histogram is empty")
    top = max(v for _, pts, _ in series for _, v in pts) if any(p for _, p, _ in series) else 1
    scale, unit = (1e6, "ms") if top >= 1e6 else (1e3, "us") if top >= 1e3 else (1.0, "ns")
    fig, ax = plt.subplots(figsize=(10, 6))
    max_x = 10.0
    for label, pts, _mx in series:
        xs = [1.0 / (1.0 - p) for p, _ in pts]
        ys = [v / scale for _, v in pts]
        if xs:
            max_x = max(max_x, xs[-1])
        ax.plot(xs, ys, label=label, linewidth=1.5)
    ax.set_xscale("log")
    decades = max(1, int(np.ceil(np.log10(max_x))))
    ticks = [10.0 ** k for k in range(decades + 1)]
    names = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%", "99.99999%"]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([names[k] if k < len(names) else f"{100 - 100 / 10 ** k:.{k - 2}f}%"
                        for k in range(len(ticks))])
    ax.set_xlim(1.0, ticks[-1])
    if args.log_y:
        ax.set_yscale("log")
    ax.set_xlabel("percentile")
    ax.set_ylabel(f"latency ({unit})")
    ax.set_title(args.title or "Latency by percentile distribution")
    ax.grid(True, which="major", alpha=0.4)
    ax.legend(loc="upper left", fontsize="small")
    try:
        fig.savefig(args.out, dpi=args.dpi, bbox_inches="tight")
    except OSError as e:
        raise HistError(f"cannot write {args.out}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
    print(f"wrote {args.out}: {len(series)} histogram{'s' if len(series) != 1 else ''}")
    return 0


# ---------------------------------------------------------------------------------------
# main

def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pyrt hist", description="Latency histograms of a live engine "
                                 "or a run directory: percentiles, .hgrm files, merges, plots.")
    sub = ap.add_subparsers(dest="cmd", metavar="SUBCOMMAND", required=True)
    name_help = ("histogram name or glob ('exec.*'); a plain name also matches names under it; "
                 "repeatable")

    p = sub.add_parser("show", help="percentile table (p50 .. p99.99, max, count)")
    p.add_argument("source", metavar="ENGINE_OR_RUN_DIR")
    p.add_argument("--name", action="append", metavar="PATTERN", help=name_help)
    p.add_argument("--json", action="store_true", help="print JSON (values in ns)")
    p.set_defaults(fn=cmd_show)

    p = sub.add_parser("hgrm", help="write HdrHistogram's percentile distribution (.hgrm)")
    p.add_argument("source", metavar="ENGINE_OR_RUN_DIR")
    p.add_argument("--name", required=True, metavar="NAME", help="one histogram")
    p.add_argument("--out", required=True, metavar="FILE", help="output file ('-' for stdout)")
    p.add_argument("--unit", choices=sorted(_UNITS), default="ns",
                   help="unit of the values written (default ns, as in run directories)")
    p.add_argument("--ticks", type=int, default=5, help="percentile ticks per half distance (default 5)")
    p.set_defaults(fn=cmd_hgrm)

    p = sub.add_parser("merge", help="add same-named histograms of several runs")
    p.add_argument("sources", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="directory for histograms.json, merge.json and .hgrm files")
    p.set_defaults(fn=cmd_merge)

    p = sub.add_parser("plot", help=f"plot percentile distributions to PNG ({PLOT_EXTRA_HINT})")
    p.add_argument("sources", nargs="+", metavar="ENGINE_OR_RUN_DIR")
    p.add_argument("--name", action="append", metavar="PATTERN", help=name_help)
    p.add_argument("--out", required=True, metavar="FILE.png")
    p.add_argument("--title", help="plot title")
    p.add_argument("--log-y", action="store_true", help="logarithmic latency axis")
    p.add_argument("--dpi", type=int, default=110)
    p.set_defaults(fn=cmd_plot)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except HistError as e:
        print(f"pyrt hist {args.cmd}: {e}", file=sys.stderr)
        return e.code
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
