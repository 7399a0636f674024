"""Stage statistics table: one row per stage, written by that stage, read by anyone."""
from __future__ import annotations

import numpy as np

#: ``state`` values of a stage.
STAGE_NEW = 0
STAGE_STARTING = 1
STAGE_RUNNING = 2
STAGE_DRAINING = 3
STAGE_STOPPED = 4
STAGE_FAILED = 5
STAGE_STATE_NAMES = {STAGE_NEW: "new", STAGE_STARTING: "starting", STAGE_RUNNING: "running",
                     STAGE_DRAINING: "draining", STAGE_STOPPED: "stopped", STAGE_FAILED: "failed"}

#: Number of per-stage counters a stage may define (names live in the stage class).
N_COUNTERS = 16

STAGE_STATS = np.dtype(
    [
        ("pid", "<i8"),
        ("cpu", "<i4"),              #: CPU the stage is pinned to, -1 if not pinned
        ("state", "<i4"),            #: STAGE_*
        ("heartbeat_ns", "<i8"),     #: CLOCK_MONOTONIC of the last duty cycle
        ("cycles", "<u8"),           #: duty cycles run
        ("work", "<u8"),             #: total work items (records handled)
        ("idle_cycles", "<u8"),      #: cycles that did no work
        ("errors", "<u8"),           #: exceptions caught by the runner
        ("counters", "<u8", (N_COUNTERS,)),  #: stage-defined counters (e.g. rejections by reason)
    ],
    align=True,
)
