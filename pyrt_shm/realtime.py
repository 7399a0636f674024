"""Process placement and real-time knobs: CPU pinning, SCHED_FIFO, mlockall, parent-death signal.

Every knob that needs a privilege falls back with a warning string instead of failing:
a laptop or a CI container must still run the engine, just without the guarantees.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_PR_SET_PDEATHSIG = 1
MCL_CURRENT, MCL_FUTURE = 1, 2


def pin_to_cpu(cpu: int | None) -> list[str]:
    """Pin the calling process to ``cpu`` (None: leave it where it is)."""
    if cpu is None:
        return []
    try:
        os.sched_setaffinity(0, {cpu})
        return []
    except OSError as e:
        return [f"cannot pin to CPU {cpu}: {e.strerror}"]


def set_fifo(priority: int) -> list[str]:
    """SCHED_FIFO at ``priority`` if permitted (CAP_SYS_NICE or RLIMIT_RTPRIO)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return []
    except (PermissionError, OSError) as e:
        return [f"SCHED_FIFO priority {priority} not permitted ({e.strerror or e}); "
                f"running SCHED_OTHER (grant CAP_SYS_NICE or raise RLIMIT_RTPRIO)"]


def lock_memory() -> list[str]:
    """mlockall(MCL_CURRENT | MCL_FUTURE) so hot paths never page-fault, if permitted."""
    if _libc.mlockall(MCL_CURRENT | MCL_FUTURE) == 0:
        return []
    err = ctypes.get_errno()
    return [f"mlockall failed ({os.strerror(err)}); memory may page-fault "
            f"(grant CAP_IPC_LOCK or raise RLIMIT_MEMLOCK)"]


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux prctl)."""
    _libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
