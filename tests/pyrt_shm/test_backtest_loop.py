"""The data-clock mode of ``pyrt_shm.jit_loop`` with three toy stages.

``src`` publishes records at their data times; ``echo`` consumes them and, for even ``seq``,
publishes a follow-up; ``sink`` consumes the follow-ups. Each logs the ``now`` it saw. The
loop must hand every record to ``echo`` at its own time, settle the follow-ups before the
clock moves, step the clock to timers' times, call observers once per settled time, and stop
before a cycle when a guard says so.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from layouts.market import TICK
from pyrt_shm.jit_loop import NEVER, STATUS_DONE, STATUS_MAX_CYCLES, DataClockLoop
from ringbuf import spsc
from ringbuf.ring import SpscRing, ring_bytes


@njit(cache=True)
def src_step(now, ctl, recs, times, st):
    n = 0
    while st[0] < times.shape[0] and times[st[0]] <= now and spsc.claim(ctl, 1) == 1:
        r = recs[spsc.slot(ctl, spsc.head_of(ctl))]
        r.seq = st[0]
        r.exch_ns = times[st[0]]
        spsc.commit(ctl, 1)
        st[0] += 1
        n += 1
    return n


@njit(cache=True)
def src_timer(now, times, st):
    return times[st[0]] if st[0] < times.shape[0] else NEVER


@njit(cache=True)
def echo_step(now, in_ctl, in_recs, out_ctl, out_recs, log, st):
    k = np.int64(spsc.poll(in_ctl, 1))
    if k == 0 or spsc.claim(out_ctl, 1) == 0:
        return 0
    r = in_recs[spsc.slot(in_ctl, spsc.tail_of(in_ctl))]
    log[st[0], 0] = now
    log[st[0], 1] = r.exch_ns
    st[0] += 1
    if r.seq % 2 == 0:
        o = out_recs[spsc.slot(out_ctl, spsc.head_of(out_ctl))]
        o.seq = r.seq
        spsc.commit(out_ctl, 1)
    spsc.release(in_ctl, 1)
    return 1


@njit(cache=True)
def sink_step(now, ctl, recs, log, st):
    k = np.int64(spsc.poll(ctl, 16))
    for j in range(k):
        log[st[0], 0] = now
        log[st[0], 1] = np.int64(recs[spsc.slot(ctl, spsc.tail_of(ctl) + np.uint64(j))].seq)
        st[0] += 1
    spsc.release(ctl, k)
    return k


@njit(cache=True)
def once_timer(now, at, fired):
    """Due once, at ``at``."""
    if fired[0] != 0:
        return NEVER
    if now >= at:
        fired[0] = 1
        return NEVER
    return at


@njit(cache=True)
def observe(now, nxt, log, st):
    log[st[0], 0] = now
    log[st[0], 1] = nxt
    st[0] += 1


@njit(cache=True)
def stop_if(flag):
    return flag[0]


class Toy:
    """The stage objects DataClockLoop wants: ``kernel()`` -> (step, args, takes_now)."""

    def __init__(self, step, args):
        self._k = (step, args, True)

    def kernel(self):
        return self._k


def ring(cap=8):
    return SpscRing.init_in(bytearray(ring_bytes(TICK, cap)), 0, TICK, cap)


def build(times):
    a, b = ring(), ring()
    times = np.array(times, np.int64)
    s = {k: np.zeros(1, np.int64) for k in ("src", "echo", "sink", "obs")}
    logs = {k: np.zeros((64, 2), np.int64) for k in ("echo", "sink", "obs")}
    fired, flag = np.zeros(1, np.int64), np.zeros(1, np.int64)
    stages = [Toy(src_step, (a.ctl, a.recs, times, s["src"])),
              Toy(echo_step, (a.ctl, a.recs, b.ctl, b.recs, logs["echo"], s["echo"])),
              Toy(sink_step, (b.ctl, b.recs, logs["sink"], s["sink"]))]
    loop = DataClockLoop(stages, (a.ctl, b.ctl), guards=[(stop_if, (flag,))],
                         timers=[(src_timer, (times, s["src"])), (once_timer, (np.int64(27), fired))],
                         observers=[(observe, (logs["obs"], s["obs"]))])
    return loop, logs, s, flag


def rows(log, st):
    return [tuple(x) for x in log[:int(st[0])].tolist()]


def test_every_record_at_its_time_follow_ups_settled_timers_and_observers():
    loop, logs, s, _ = build([10, 20, 20, 20, 35])
    clk = np.array([10], np.int64)
    cycles, work, status = loop.run(clk, 1000)
    assert status == STATUS_DONE and clk[0] == 35
    assert rows(logs["echo"], s["echo"]) == [(10, 10), (20, 20), (20, 20), (20, 20), (35, 35)]
    # follow-ups of seq 0, 2, 4 are consumed at the instant they were made
    assert rows(logs["sink"], s["sink"]) == [(10, 0), (20, 2), (35, 4)]
    # one observation per settled time, with the time the clock moves to; 27 is the timer's
    assert rows(logs["obs"], s["obs"]) == [(10, 20), (20, 27), (27, 35), (35, NEVER)]
    assert work == 5 + 5 + 3


def test_a_guard_stops_before_the_cycle_and_max_cycles_resumes():
    loop, logs, s, flag = build([10, 20])
    clk = np.array([10], np.int64)
    flag[0] = 5
    assert loop.run(clk, 1000) == (0, 0, 5) and s["src"][0] == 0        # nothing ran
    flag[0] = 0
    cycles, _, status = loop.run(clk, 1)
    assert (cycles, status) == (1, STATUS_MAX_CYCLES) and clk[0] == 20     # 10 settled in one cycle
    assert loop.run(clk, 1000)[2] == STATUS_DONE and s["echo"][0] == 2 and clk[0] == 27


def test_no_stage_runs_when_inactive_and_set_args_swaps_a_hook_buffer():
    loop, logs, s, _ = build([10])
    loop.active[:] = [1, 0, 0]
    clk = np.array([10], np.int64)
    loop.run(clk, 100)
    assert s["src"][0] == 1 and s["echo"][0] == 0
    log2, st2 = np.zeros((8, 2), np.int64), np.zeros(1, np.int64)
    loop.set_args("observers", 0, (log2, st2))
    loop.active[:] = 1
    loop.run(clk, 100)
    assert s["echo"][0] == 1 and st2[0] >= 1
