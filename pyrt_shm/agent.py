"""Agents and the loops that run them (Agrona's Agent / AgentRunner / AgentInvoker).

An agent only does work: ``do_work(now_ns) -> int`` returns how much it did (records
handled), and never blocks or sleeps. The runner owns the duty cycle::

    now = clock()                  # read the clock once per cycle
    work = agent.do_work(now)      # drain with a limit, run the jitted step
    record cycle time (when work was done), beat the heartbeat every beat_ns
    idle.idle(work)                # strategy decides what "no work" costs

Errors raised by ``do_work`` are counted; the runner stops on the first one (a stage that
raised has undefined state: trading on it is worse than stopping).
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

from layouts.stats import STAGE_DRAINING, STAGE_FAILED, STAGE_RUNNING, STAGE_STOPPED


class Agent:
    """A unit of work driven by a runner. Subclasses override the three hooks."""

    name = "agent"

    def on_start(self) -> None:
        """Called once in the process that runs the agent, before the first cycle."""

    def do_work(self, now_ns: int) -> int:
        """Do a bounded amount of work; return the work count (0 = idle)."""
        return 0

    def on_close(self) -> None:
        """Called once after the last cycle (also after an error)."""


class CompositeAgent(Agent):
    """Several agents run in one loop, in order, as one agent (stages fused in one process)."""

    def __init__(self, agents: Sequence[Agent]):
        self.agents = list(agents)
        self.name = "+".join(a.name for a in self.agents)

    def on_start(self) -> None:
        for a in self.agents:
            a.on_start()

    def do_work(self, now_ns: int) -> int:
        work = 0
        for a in self.agents:
            work += a.do_work(now_ns)
        return work

    def on_close(self) -> None:
        for a in self.agents:
            a.on_close()


class AgentInvoker:
    """Runs duty cycles by hand, with an injectable clock: for tests and backtests."""

    def __init__(self, agent: Agent, clock: Callable[[], int] = time.monotonic_ns):
        self.agent, self.clock = agent, clock
        self.started = False
        self.cycles = 0
        self.work = 0

    def start(self) -> None:
        if not self.started:
            self.agent.on_start()
            self.started = True

    def invoke(self) -> int:
        """Run one duty cycle; return its work count."""
        self.start()
        w = self.agent.do_work(self.clock())
        self.cycles += 1
        self.work += w
        return w

    def run_until_idle(self, max_cycles: int = 1_000_000, idle_cycles: int = 2) -> int:
        """Invoke until ``idle_cycles`` consecutive cycles do no work; return total work."""
        total, quiet = 0, 0
        for _ in range(max_cycles):
            w = self.invoke()
            total += w
            quiet = 0 if w else quiet + 1
            if quiet >= idle_cycles:
                break
        return total

    def close(self) -> None:
        if self.started:
            self.agent.on_close()
            self.started = False


class AgentRunner:
    """Runs one agent in the current thread until ``should_stop()`` says so.

    ``beat(now_ns, cycles, work, idle_cycles, state)`` is called at most every ``beat_ns``
    (and at state changes) to publish the heartbeat and stats; the cycle itself touches
    only Python locals.
    """

    def __init__(self, agent: Agent, idle, should_stop: Callable[[], bool],
                 beat: Callable[[int, int, int, int, int], None] | None = None,
                 beat_ns: int = 1_000_000, record_cycle: Callable[[int], None] | None = None,
                 clock: Callable[[], int] = time.monotonic_ns):
        self.agent, self.idle, self.should_stop = agent, idle, should_stop
        self.beat = beat or (lambda *a: None)
        self.beat_ns, self.record_cycle, self.clock = beat_ns, record_cycle, clock
        self.cycles = self.work = self.idle_cycles = 0
        self.error: BaseException | None = None

    def run(self) -> int:
        """Run to completion; return the process exit status (0 ok, 1 the agent raised)."""
        agent, idle, clock, stop = self.agent, self.idle, self.clock, self.should_stop
        record = self.record_cycle
        try:
            agent.on_start()
            now = clock()
            self.beat(now, 0, 0, 0, STAGE_RUNNING)
            next_beat = now + self.beat_ns
            cycles = work_total = idle_total = 0
            while True:
                now = clock()
                work = agent.do_work(now)
                cycles += 1
                if work:
                    work_total += work
                    if record is not None:
                        record(clock() - now)
                else:
                    idle_total += 1
                if now >= next_beat:
                    self.beat(now, cycles, work_total, idle_total, STAGE_RUNNING)
                    next_beat = now + self.beat_ns
                    if stop():
                        break
                idle.idle(work)
            self.cycles, self.work, self.idle_cycles = cycles, work_total, idle_total
            self.beat(clock(), cycles, work_total, idle_total, STAGE_DRAINING)
            return 0
        except BaseException as e:  # noqa: BLE001 - the runner is the error boundary
            self.error = e
            self.beat(clock(), self.cycles, self.work, self.idle_cycles, STAGE_FAILED)
            raise
        finally:
            try:
                agent.on_close()
            finally:
                if self.error is None:
                    self.beat(clock(), self.cycles, self.work, self.idle_cycles, STAGE_STOPPED)
