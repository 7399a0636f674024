"""``pyrt kill ENGINE [--reason TEXT]``: flip the kill switch of a running engine, audited.

Any operator process may do it: the command maps the engine's ``control`` segment read-write
and sets ``kill_cause = operator``, ``kill_stage = -1``, ``kill_ns`` (CLOCK_MONOTONIC, the
engine's clock) and then ``kill_switch = 1``, in that order (x86-64 keeps stores in program
order, so a stage that sees the switch sees the cause). The risk stage reads the switch on
every order decision: from its next duty cycle every new intent is rejected
(``rej_kill_switch``), every algo parent stops and every open order gets a cancel. The
switch stays set until the engine stops; a second kill is audited and changes nothing.

Audit: one JSON line (time, engine, its supervisor pid, operator user, host and pid, the
reason, whether the switch was already set) is written to stderr and appended to the audit
log ``<PYRT_AUDIT_DIR or $XDG_STATE_HOME/pyrt-shm or ~/.local/state/pyrt-shm>/<engine>.audit.log``
(``--audit-log`` overrides). The engine's end-of-run report finds the line whose ``mono_ns``
equals the control block's ``kill_ns`` and puts it in ``control.kill_audit`` of the summary
(``summary.json`` in the run directory, the printed report, ``--json``).

Exit codes: 0 switched (or already set), 1 no such engine running, 2 bad arguments.
"""
from __future__ import annotations

import argparse
import datetime
import getpass
import json
import os
import socket
import sys
import time

import numpy as np

from layouts.common import dtype_hash
from layouts.control import CONTROL, KILL_CAUSE_NAMES, KILL_OPERATOR
from layouts.segment import KIND_BLOB

from .errors import ShmError


def audit_dir() -> str:
    d = os.environ.get("PYRT_AUDIT_DIR")
    if d:
        return d
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "pyrt-shm")


def audit_path(engine: str) -> str:
    return os.path.join(audit_dir(), f"{engine}.audit.log")


def find_audit(engine: str, kill_ns: int, path: str | None = None) -> dict | None:
    """The audit record of the kill whose ``mono_ns`` is ``kill_ns`` (the one that flipped the
    switch rather than a later repeat; None if there is none)."""
    try:
        with open(path or audit_path(engine)) as f:
            lines = f.readlines()
    except OSError:
        return None
    found = None
    for line in reversed(lines):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("engine") == engine and rec.get("mono_ns") == int(kill_ns):
            if not rec.get("already_set"):
                return rec                  # the kill that flipped the switch
            found = found or rec
    return found


def _supervisor_pid(engine: str) -> int | None:
    from .segment import attach_segment

    try:
        man = attach_segment(engine, "manifest", kind=KIND_BLOB, readonly=True)
    except ShmError:
        return None
    try:
        n = int(man.array(np.uint64, (1,))[0])
        return int(json.loads(bytes(man.array(np.uint8, (n,), offset=8)))["pid"])
    except (ValueError, KeyError):
        return None
    finally:
        man.close()


def kill(engine: str, reason: str, audit_log: str | None = None) -> dict:
    """Flip the switch of ``engine``; return the audit record (raises ShmError if not running)."""
    from .segment import attach_segment, check_engine_name

    check_engine_name(engine)
    seg = attach_segment(engine, "control", kind=KIND_BLOB, layout_hash=dtype_hash(CONTROL))
    try:
        c = seg.array(CONTROL, (1,))
        prev = bool(c["kill_switch"][0])
        prev_cause = KILL_CAUSE_NAMES.get(int(c["kill_cause"][0]), "?")
        mono = time.monotonic_ns()
        if not prev:
            c["kill_cause"] = KILL_OPERATOR
            c["kill_stage"] = -1
            c["kill_ns"] = mono
            c["kill_switch"] = 1
        rec = {
            "event": "kill_switch",
            "engine": engine,
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds"),
            "unix_ns": time.time_ns(),
            "mono_ns": mono if not prev else int(c["kill_ns"][0]),
            "engine_pid": _supervisor_pid(engine),
            "operator": _user(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "reason": reason,
            "already_set": prev,
            "previous_cause": prev_cause if prev else None,
        }
        del c
    finally:
        seg.close()
    path = audit_log or audit_path(engine)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")
    rec["audit_log"] = path
    return rec


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in a container
        return str(os.getuid())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="pyrt kill", description="Flip the kill switch of a running "
                                 "engine: no new orders, open orders canceled. Audited.")
    ap.add_argument("engine", help="engine name (as given to pyrt run --engine)")
    ap.add_argument("--reason", default="", help="why (goes to the audit log and the run report)")
    ap.add_argument("--audit-log", metavar="FILE", help="append the audit line here instead")
    args = ap.parse_args(argv)
    try:
        rec = kill(args.engine, args.reason, args.audit_log)
    except ShmError as e:
        print(f"pyrt kill: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"pyrt kill: {e}", file=sys.stderr)
        return 2
    state = "was already set" if rec["already_set"] else "set"
    print(f"pyrt kill: AUDIT {json.dumps({k: v for k, v in rec.items() if k != 'audit_log'})}",
          file=sys.stderr, flush=True)
    print(f"pyrt kill: kill switch of engine {args.engine!r} {state}; audit line appended to "
          f"{rec['audit_log']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
