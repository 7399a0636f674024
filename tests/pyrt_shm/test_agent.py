"""Agents, the runner's duty cycle, the composite and the invoker (no processes)."""
from layouts.stats import STAGE_DRAINING, STAGE_FAILED, STAGE_RUNNING, STAGE_STOPPED
from pyrt_shm.agent import Agent, AgentInvoker, AgentRunner, CompositeAgent
from ringbuf.idle import BusySpinIdle


class Countdown(Agent):
    def __init__(self, name, n):
        self.name, self.n, self.log = name, n, []

    def on_start(self):
        self.log.append("start")

    def do_work(self, now_ns):
        self.log.append(now_ns)
        if self.n:
            self.n -= 1
            return 1
        return 0

    def on_close(self):
        self.log.append("close")


def test_invoker_uses_injected_clock_and_counts_work():
    t = iter(range(100, 200))
    a = Countdown("a", 3)
    inv = AgentInvoker(a, clock=lambda: next(t))
    assert inv.run_until_idle(idle_cycles=2) == 3
    assert a.log == ["start", 100, 101, 102, 103, 104]
    assert inv.cycles == 5 and inv.work == 3
    inv.close()
    assert a.log[-1] == "close"


def test_composite_runs_agents_in_order_and_sums_work():
    a, b = Countdown("a", 2), Countdown("b", 1)
    comp = CompositeAgent([a, b])
    assert comp.name == "a+b"
    inv = AgentInvoker(comp, clock=lambda: 7)
    assert inv.invoke() == 2
    assert inv.invoke() == 1
    assert inv.invoke() == 0
    inv.close()
    assert a.log == ["start", 7, 7, 7, "close"] and b.log == ["start", 7, 7, 7, "close"]


def test_runner_beats_records_cycles_and_stops():
    a = Countdown("a", 5)
    beats, cycles = [], []
    clock = iter(range(0, 10**9, 1000))
    runner = AgentRunner(a, BusySpinIdle(), should_stop=lambda: a.n == 0,
                         beat=lambda now, c, w, i, st: beats.append((c, w, st)),
                         beat_ns=1, record_cycle=cycles.append, clock=lambda: next(clock))
    assert runner.run() == 0
    assert runner.work == 5
    assert len(cycles) == 5 and all(c == 1000 for c in cycles)   # one clock step per work cycle
    states = [b[2] for b in beats]
    assert states[0] == STAGE_RUNNING and states[-2:] == [STAGE_DRAINING, STAGE_STOPPED]
    assert a.log[0] == "start" and a.log[-1] == "close"


def test_runner_reports_failure_and_still_closes():
    class Boom(Countdown):
        def do_work(self, now_ns):
            raise RuntimeError("boom")

    a = Boom("a", 0)
    states = []
    runner = AgentRunner(a, BusySpinIdle(), should_stop=lambda: False,
                         beat=lambda now, c, w, i, st: states.append(st))
    try:
        runner.run()
    except RuntimeError:
        pass
    else:
        raise AssertionError("the error must propagate")
    assert isinstance(runner.error, RuntimeError)
    assert STAGE_FAILED in states and a.log[-1] == "close"
