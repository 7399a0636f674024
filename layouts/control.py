"""Engine control block: kill switch, trading state and per-stage stop requests.

Written by the supervisor (stop requests), any operator process (kill switch, through
``pyrt kill``), and the risk stage (trading state). Every field is one aligned u64 with a
single logical writer at a time; flags only ever go 0 -> 1 within a run.
"""
from __future__ import annotations

import numpy as np

from .common import line_groups

MAX_STAGES = 32

#: Trading states (``trading_state``).
TRADING_ACTIVE = 0
TRADING_REDUCING = 1   #: only orders that reduce exposure
TRADING_HALTED = 2
TRADING_STATE_NAMES = {TRADING_ACTIVE: "ACTIVE", TRADING_REDUCING: "REDUCING", TRADING_HALTED: "HALTED"}

#: Kill-switch causes (``kill_cause``).
KILL_NONE = 0
KILL_OPERATOR = 1      #: `pyrt kill`
KILL_STAGE_DIED = 2
KILL_STAGE_STALLED = 3
KILL_RISK_LIMIT = 4
KILL_CAUSE_NAMES = {KILL_NONE: "none", KILL_OPERATOR: "operator", KILL_STAGE_DIED: "stage died",
                    KILL_STAGE_STALLED: "stage stalled", KILL_RISK_LIMIT: "risk limit"}

CONTROL = line_groups(
    [
        [("kill_switch", "<u8"), ("kill_cause", "<u8"), ("kill_stage", "<i8"), ("kill_ns", "<i8")],
        [("trading_state", "<u8")],
        [("stop", "<u8", (MAX_STAGES,))],   # stop[i] = 1: stage i finishes its cycle and exits
    ]
)
