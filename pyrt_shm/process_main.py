"""What a forked stage process runs: place itself, run its stages' loop, exit.

The supervisor builds and warms every stage before forking, so a child inherits compiled
code and mapped segments and only has to pin itself and loop. A child never unlinks
anything and never touches another process's stats row.
"""
from __future__ import annotations

import os
import signal
import sys
import time
import traceback

import numpy as np

from layouts.stats import STAGE_DRAINING, STAGE_FAILED, STAGE_RUNNING, STAGE_STOPPED
from ringbuf._atomics import monotonic_ns  # noqa: F401  (keeps the clock symbol registered)

from . import realtime
from .agent import Agent, AgentRunner


class ProcessAgent(Agent):
    """The stages of one process in one loop; a stage leaves the loop when its stop flag is set.

    Sources (the feed) are stopped first by the supervisor and must stop producing while the
    rest of their process keeps draining, so the flags are per stage, not per process.
    """

    def __init__(self, stages, stop_flags: np.ndarray):
        self.stages = list(stages)
        self.active = list(stages)
        self.stop_flags = stop_flags
        self.active_mask = None     # the jitted loop's per-stage on/off switches, if any
        self.name = "+".join(s.name for s in self.stages)

    def on_start(self):
        for s in self.stages:
            s.on_start()

    def do_work(self, now_ns: int) -> int:
        work = 0
        for s in self.active:
            work += s.do_work(now_ns)
        return work

    def refresh(self) -> bool:
        """Drop stages whose stop flag is set; True when none is left."""
        flags = self.stop_flags
        self.active = [s for s in self.active if not flags[s.ctx.index]]
        if self.active_mask is not None:
            for j, s in enumerate(self.stages):
                self.active_mask[j] = 0 if flags[s.ctx.index] else 1
        return not self.active

    def on_close(self):
        for s in self.stages:
            s.on_close()


def run_process(proc, cpu, stages, mem, idle, jit_loop=None) -> int:
    """Body of a stage process; returns its exit status."""
    realtime.die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # Ctrl-C is the supervisor's to handle
    stop_requested = []
    signal.signal(signal.SIGTERM, lambda *a: stop_requested.append(1))
    topo = mem.topology
    notes = realtime.pin_to_cpu(cpu)
    if topo.engine.sched_fifo:
        notes += realtime.set_fifo(topo.engine.fifo_priority)
    if topo.engine.mlockall:
        notes += realtime.lock_memory()
    for n in notes:
        print(f"pyrt: process {proc.name}: warning: {n}", file=sys.stderr, flush=True)

    stats = mem.stats
    idxs = [s.ctx.index for s in stages]
    pid = os.getpid()
    for i in idxs:
        stats[i]["pid"] = pid
        stats[i]["cpu"] = -1 if cpu is None else cpu
    control = mem.control[0]
    stop_flags = control["stop"]
    agent = ProcessAgent(stages, stop_flags)
    cycle_row = mem.hist_names.index(f"process.{proc.name}.cycle")

    from .hdr_recorder import hdr_record

    hists = mem.hists

    def record_cycle(ns: int) -> None:
        hdr_record(hists, cycle_row, ns)

    def beat(now, cycles, work, idle_cycles, state):
        active = {s.ctx.index for s in agent.active}
        for i in idxs:
            row = stats[i]
            row["cycles"] = cycles
            row["work"] = work
            row["idle_cycles"] = idle_cycles
            st = state if (i in active or state in (STAGE_STOPPED, STAGE_FAILED)) else STAGE_DRAINING
            row["state"] = st
            row["heartbeat_ns"] = now

    def should_stop() -> bool:
        return agent.refresh() or bool(stop_requested)

    try:
        if jit_loop is not None:
            return run_jit_loop(agent, jit_loop, beat, should_stop)
        runner = AgentRunner(agent, idle, should_stop, beat=beat, record_cycle=record_cycle)
        return runner.run()
    except BaseException:
        for i in idxs:
            stats[i]["errors"] += 1
        print(f"pyrt: process {proc.name} (stages {', '.join(s.name for s in stages)}) failed:\n"
              + traceback.format_exc(), file=sys.stderr, flush=True)
        return 1


def run_jit_loop(agent: ProcessAgent, jit_loop, beat, should_stop, beat_ns: int = 1_000_000) -> int:
    """Duty cycles in native code (``pyrt_shm.jit_loop``); Python once per heartbeat period."""
    agent.active_mask = jit_loop.active
    agent.on_start()
    clock = time.monotonic_ns
    now = clock()
    beat(now, 0, 0, 0, STAGE_RUNNING)
    cycles = work = idle_cycles = 0
    try:
        while True:
            c, w, i = jit_loop.run_for(clock() + beat_ns)
            cycles, work, idle_cycles = cycles + c, work + w, idle_cycles + i
            beat(clock(), cycles, work, idle_cycles, STAGE_RUNNING)
            if should_stop():
                break
        beat(clock(), cycles, work, idle_cycles, STAGE_DRAINING)
    except BaseException:
        beat(clock(), cycles, work, idle_cycles, STAGE_FAILED)
        agent.on_close()
        raise
    agent.on_close()
    beat(clock(), cycles, work, idle_cycles, STAGE_STOPPED)
    return 0


def fork_process(proc, cpu, stages, mem, idle, jit_loop=None) -> int:
    """Fork a child running ``run_process``; return its pid (parent side)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        code = run_process(proc, cpu, stages, mem, idle, jit_loop)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
