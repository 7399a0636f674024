"""Idle strategies: what a duty-cycle loop does when a cycle found no work.

Usage (Agrona's shape): ``idle.idle(agent.do_work())``; ``idle(0)`` idles, ``idle(n>0)``
resets the strategy's escalation state. Each class states its trade-off, because picking
one is picking where latency and CPU go.

The strategies are Python objects driving a Python-level loop around jitted steps: a
Python loop iteration costs ~0.1-0.3 µs, small next to the work a jitted step does per
call (it drains a batch), and it lets the loop react to signals and stop flags.
"""
from __future__ import annotations

import os
import time


class IdleStrategy:
    """Base: ``idle(work_count)``; ``reset()`` after work."""

    alias = ""

    def idle(self, work_count: int = 0) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        pass


class BusySpinIdle(IdleStrategy):
    """Never gives up the CPU: lowest and steadiest wake-up latency (tens of ns).

    Use only when the process is pinned to an isolated core it owns. On a shared or
    non-isolated core it takes the core from everything else, including the stage it waits
    for: on a 2-core host this turns µs tails into ms tails. The supervisor warns.
    """

    alias = "busy-spin"

    def idle(self, work_count: int = 0) -> None:
        pass


class YieldIdle(IdleStrategy):
    """``sched_yield()`` after every cycle: after work too (hand-off), and when idle.

    For several stages sharing one core. Yielding after a cycle that published records
    hands the core to the next runnable stage at once (~0.5 µs a switch), so a tick moves
    through a pipeline of processes on one core in one round of switches instead of
    waiting for the producer's scheduler time slice (~ms) to run out: measured, yielding
    only when idle gave a ms-scale tick-to-order p50, yielding after work too gave µs.
    With ``handoff=False`` it spins ``spins`` empty cycles before yielding and never
    yields after work (for a process alone on its core). A yielding process still shows
    100% CPU: on a shared core that is the point, on a busy machine it is a cost.
    """

    alias = "yield"

    def __init__(self, spins: int = 0, handoff: bool = True):
        self.spins, self.handoff = spins, handoff
        self._n = 0

    def idle(self, work_count: int = 0) -> None:
        if work_count > 0:
            self._n = 0
            if self.handoff:
                os.sched_yield()
            return
        if self._n < self.spins:
            self._n += 1
            return
        os.sched_yield()

    def reset(self) -> None:
        self._n = 0


class BackoffIdle(IdleStrategy):
    """Spin, then yield, then sleep with exponentially growing pauses up to ``max_sleep_ns``.

    Nearly free when quiet; the first tick after a quiet period pays up to ``max_sleep_ns``
    plus the kernel's timer slack ("latency spikes can occur after quiet periods").
    """

    alias = "backoff"

    def __init__(self, spins: int = 10, yields: int = 5, min_sleep_ns: int = 1_000,
                 max_sleep_ns: int = 1_000_000):
        self.spins, self.yields = spins, yields
        self.min_sleep_ns, self.max_sleep_ns = min_sleep_ns, max_sleep_ns
        self.reset()

    def reset(self) -> None:
        self._n = 0
        self._sleep_ns = self.min_sleep_ns

    def idle(self, work_count: int = 0) -> None:
        if work_count > 0:
            self.reset()
            return
        self._n += 1
        if self._n <= self.spins:
            return
        if self._n <= self.spins + self.yields:
            os.sched_yield()
            return
        time.sleep(self._sleep_ns / 1e9)
        self._sleep_ns = min(self._sleep_ns * 2, self.max_sleep_ns)


class ParkIdle(IdleStrategy):
    """Spin, then block on a POSIX semaphore until the producer posts it (or a timeout).

    Uses no CPU while parked and wakes in a few µs (FACTS: p50 2.8 µs, p99 6.9 µs), at
    the price of a syscall per wake-up and a seq_cst fence per producer commit on the
    watched ring. Parking needs a ring to watch: ``watch(ctl, semaphore)`` is called by
    the runner with the consumer's input ring. ``timeout_s`` bounds the sleep so the loop
    still beats its heartbeat and sees stop requests.
    """

    alias = "park"

    def __init__(self, spins: int = 100, timeout_s: float = 0.01):
        self.spins, self.timeout_s = spins, timeout_s
        self._n = 0
        self._watched: list = []   # (ctl, posix_ipc.Semaphore)

    def watch(self, ctl, semaphore) -> None:
        self._watched.append((ctl, semaphore))

    def reset(self) -> None:
        self._n = 0

    def idle(self, work_count: int = 0) -> None:
        if work_count > 0:
            self._n = 0
            return
        self._n += 1
        if self._n <= self.spins:
            return
        if not self._watched:
            time.sleep(self.timeout_s)
            return
        from . import spsc
        import posix_ipc

        # All watched rings share one semaphore per consumer process (see pyrt_shm wiring);
        # announce on every ring first, then sleep once.
        ready = 0
        for ctl, _ in self._watched:
            ready += spsc.prepare_park(ctl)
        if ready == 0:
            try:
                self._watched[0][1].acquire(self.timeout_s)
            except posix_ipc.BusyError:
                pass
        for ctl, _ in self._watched:
            spsc.unpark(ctl)
        # Every commit the producer made while we were parked saw ``parked == 1`` and posted:
        # drop those extra posts now (after unparking), or each later park would return at
        # once and parking would turn into spinning. No wake-up is lost: the next park
        # re-polls the rings after announcing itself.
        sem = self._watched[0][1]
        while True:
            try:
                sem.acquire(0)
            except posix_ipc.BusyError:
                break
        self._n = 0


IDLE_STRATEGIES = {cls.alias: cls for cls in (BusySpinIdle, YieldIdle, BackoffIdle, ParkIdle)}


def make_idle(alias: str, **kwargs) -> IdleStrategy:
    """Build an idle strategy by its configuration alias (``busy-spin``, ``yield``, ``park``, ``backoff``)."""
    try:
        return IDLE_STRATEGIES[alias](**kwargs)
    except KeyError:
        raise ValueError(f"unknown idle strategy {alias!r}; choose one of {sorted(IDLE_STRATEGIES)}") from None


class Waker:
    """Producer side of ``ParkIdle``: after publishing, post the consumer's semaphore if it parked.

    Costs one seq_cst fence (~20 ns) and one relaxed load per call; the semaphore is posted
    only when the consumer announced it is about to sleep.
    """

    def __init__(self, ctl, semaphore):
        self.ctl, self.semaphore = ctl, semaphore

    def wake_if_parked(self) -> bool:
        from . import spsc

        if spsc.needs_wake(self.ctl):
            self.semaphore.release()
            return True
        return False
