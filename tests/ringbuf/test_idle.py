"""Idle strategies: aliases, escalation, sleep growth, and the park/wake handshake.

The escalation tests replace ``os.sched_yield`` and ``time.sleep`` with recorders, so they are
exact and take no time. The park tests use a real POSIX semaphore ("/pyrt-<engine>.wake") and
a ring in ordinary memory; the producer runs in a thread (``Semaphore.acquire`` releases the GIL).
"""
from __future__ import annotations

import threading
import time

import numpy as np
import posix_ipc
import pytest

from layouts.ring import IDX_PARKED
from ringbuf import idle as idle_mod
from ringbuf import spsc
from ringbuf.idle import (
    IDLE_STRATEGIES,
    BackoffIdle,
    BusySpinIdle,
    IdleStrategy,
    ParkIdle,
    Waker,
    YieldIdle,
    make_idle,
)
from ringbuf.ring import SpscRing, ring_bytes

REC = np.dtype([("seq", "<u8")])


@pytest.fixture
def calls(monkeypatch):
    """Record sched_yield / sleep calls made by the strategies instead of making them."""
    log = []
    monkeypatch.setattr(idle_mod.os, "sched_yield", lambda: log.append("yield"))
    monkeypatch.setattr(idle_mod.time, "sleep", lambda s: log.append(("sleep", s)))
    return log


@pytest.fixture
def wake_sem(engine_name):
    name = f"/pyrt-{engine_name}.wake"
    sem = posix_ipc.Semaphore(name, posix_ipc.O_CREX, mode=0o600, initial_value=0)
    try:
        yield sem
    finally:
        sem.close()
        posix_ipc.unlink_semaphore(name)


@pytest.fixture
def ring():
    return SpscRing.init_in(bytearray(ring_bytes(REC, 8)), 0, REC, 8, name="watched")


def one_record(seq=1):
    r = np.zeros(1, REC)
    r["seq"] = seq
    return r


# ---- aliases ---------------------------------------------------------------------------------

def test_aliases_name_the_four_strategies():
    assert IDLE_STRATEGIES == {"busy-spin": BusySpinIdle, "yield": YieldIdle,
                               "backoff": BackoffIdle, "park": ParkIdle}
    for alias, cls in IDLE_STRATEGIES.items():
        s = make_idle(alias)
        assert type(s) is cls and s.alias == alias and isinstance(s, IdleStrategy)
        assert cls.__doc__ and len(cls.__doc__) > 80, f"{alias}: the trade-off must be documented"


def test_make_idle_passes_options():
    s = make_idle("backoff", spins=1, yields=2, min_sleep_ns=10, max_sleep_ns=20)
    assert (s.spins, s.yields, s.min_sleep_ns, s.max_sleep_ns) == (1, 2, 10, 20)
    assert make_idle("yield", spins=7).spins == 7
    assert make_idle("park", spins=3, timeout_s=0.5).timeout_s == 0.5


@pytest.mark.parametrize("alias", ["spin", "Yield", "", "sleep", "busy_spin"])
def test_unknown_alias_is_an_error_listing_the_choices(alias):
    with pytest.raises(ValueError, match="unknown idle strategy") as e:
        make_idle(alias)
    for name in ("backoff", "busy-spin", "park", "yield"):
        assert name in str(e.value)


def test_bad_option_is_a_type_error_not_unknown_alias():
    with pytest.raises(TypeError):
        make_idle("yield", nonsense=1)


# ---- escalation ------------------------------------------------------------------------------

def test_busy_spin_never_gives_up_the_cpu(calls):
    s = BusySpinIdle()
    for _ in range(1000):
        s.idle(0)
    s.idle(5)
    s.reset()
    assert calls == []


def test_yield_without_handoff_spins_then_yields_every_idle_cycle(calls):
    s = YieldIdle(spins=3, handoff=False)
    for _ in range(3):
        s.idle(0)
    assert calls == []
    for _ in range(4):
        s.idle(0)
    assert calls == ["yield"] * 4
    s.idle(2)                            # work: back to spinning, no yield
    for _ in range(3):
        s.idle(0)
    assert calls == ["yield"] * 4
    s.idle(0)
    assert calls == ["yield"] * 5
    s.reset()
    s.idle(0)
    assert calls == ["yield"] * 5


def test_yield_with_handoff_yields_after_work_too(calls):
    s = YieldIdle()                      # default: hand the core over after every cycle
    assert (s.spins, s.handoff) == (0, True)
    s.idle(3)
    assert calls == ["yield"]
    s.idle(0)
    s.idle(0)
    assert calls == ["yield"] * 3
    h = YieldIdle(spins=2, handoff=True)
    calls.clear()
    h.idle(0)
    h.idle(0)
    assert calls == []                   # empty cycles still spin first
    h.idle(0)
    assert calls == ["yield"]
    h.idle(1)                            # work: yield at once, and the spin count restarts
    h.idle(0)
    assert calls == ["yield"] * 2


def test_yield_with_no_spins_yields_at_once(calls):
    s = YieldIdle(spins=0, handoff=False)
    s.idle(0)
    assert calls == ["yield"]


def test_backoff_spins_yields_then_sleeps_doubling_up_to_the_cap(calls):
    s = BackoffIdle(spins=2, yields=3, min_sleep_ns=1_000, max_sleep_ns=8_000)
    for _ in range(2 + 3 + 7):
        s.idle(0)
    sleeps = [c[1] for c in calls if c != "yield"]
    assert calls[:3] == ["yield"] * 3
    assert sleeps == pytest.approx([1e-6, 2e-6, 4e-6, 8e-6, 8e-6, 8e-6, 8e-6])
    calls.clear()
    s.idle(1)                            # work resets the whole escalation
    for _ in range(2 + 3 + 1):
        s.idle(0)
    assert calls == ["yield"] * 3 + [("sleep", pytest.approx(1e-6))]
    calls.clear()
    s.reset()
    s.idle(0)
    s.idle(0)
    assert calls == []


def test_backoff_cap_smaller_than_start_is_respected(calls):
    s = BackoffIdle(spins=0, yields=0, min_sleep_ns=4_000, max_sleep_ns=4_000)
    for _ in range(5):
        s.idle(0)
    assert [c[1] for c in calls] == pytest.approx([4e-6] * 5)


def test_park_without_a_watched_ring_sleeps_its_timeout(calls):
    s = ParkIdle(spins=2, timeout_s=0.25)
    s.idle(0)
    s.idle(0)
    assert calls == []
    s.idle(0)
    assert calls == [("sleep", 0.25)]


# ---- park / wake -----------------------------------------------------------------------------

def test_park_wakes_promptly_when_the_producer_posts(ring, wake_sem):
    park = ParkIdle(spins=0, timeout_s=5.0)
    park.watch(ring.ctl, wake_sem)
    waker = Waker(ring.ctl, wake_sem)
    result = {}

    def producer():
        deadline = time.monotonic() + 5
        while int(ring.ctl[IDX_PARKED]) == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.02)                 # let the consumer block in acquire()
        result["parked_seen"] = int(ring.ctl[IDX_PARKED])
        assert ring.offer(one_record()) == 1
        result["t_post"] = time.perf_counter()
        result["woke"] = waker.wake_if_parked()

    t = threading.Thread(target=producer, daemon=True)
    t0 = time.perf_counter()
    t.start()
    park.idle(0)
    t_back = time.perf_counter()
    t.join(5)
    assert not t.is_alive()
    assert result["parked_seen"] == 1, "the consumer announced it was parking"
    assert result["woke"] is True, "the Waker saw the parked flag and posted"
    assert t_back - t0 < 2.5, f"parked {t_back - t0:.3f} s: not woken by the post (timeout is 5 s)"
    assert t_back - result["t_post"] < 1.0
    assert int(ring.ctl[IDX_PARKED]) == 0, "unparked after waking"
    assert ring.poll(8)["seq"].tolist() == [1]


def test_park_returns_after_its_timeout_when_nothing_is_published(ring, wake_sem):
    park = ParkIdle(spins=0, timeout_s=0.05)
    park.watch(ring.ctl, wake_sem)
    t0 = time.perf_counter()
    park.idle(0)
    took = time.perf_counter() - t0
    assert 0.04 <= took < 3.0
    assert int(ring.ctl[IDX_PARKED]) == 0
    assert len(ring.poll(8)) == 0


def test_park_does_not_sleep_when_records_are_waiting(ring, wake_sem):
    park = ParkIdle(spins=0, timeout_s=5.0)
    park.watch(ring.ctl, wake_sem)
    ring.offer(one_record())
    t0 = time.perf_counter()
    park.idle(0)
    assert time.perf_counter() - t0 < 1.0
    assert int(ring.ctl[IDX_PARKED]) == 0
    assert wake_sem.value == 0


def test_park_spins_before_touching_the_semaphore(ring, wake_sem, monkeypatch):
    announced = []
    monkeypatch.setattr(spsc, "prepare_park", lambda ctl: announced.append(1) or 0)
    park = ParkIdle(spins=3, timeout_s=0.01)
    park.watch(ring.ctl, wake_sem)
    for _ in range(3):
        park.idle(0)
    assert announced == []
    park.idle(0)
    assert announced == [1]
    park.idle(1)                         # work resets the spin count
    park.idle(0)
    assert announced == [1]


def test_waker_posts_only_when_the_consumer_parked(ring, wake_sem):
    waker = Waker(ring.ctl, wake_sem)
    ring.offer(one_record())
    assert waker.wake_if_parked() is False
    assert wake_sem.value == 0
    ring.ctl[IDX_PARKED] = 1             # as prepare_park leaves it
    assert waker.wake_if_parked() is True
    assert wake_sem.value == 1


def test_handshake_never_loses_a_wake_up(ring, wake_sem):
    """Dekker pairs, enumerated: consumer announces then re-polls; producer commits then checks.

    Whatever the order of the two halves, either the consumer sees the record (and does not
    sleep) or the producer sees the flag (and posts). The outcome "neither" must not occur.
    """
    waker = Waker(ring.ctl, wake_sem)
    # consumer first: it sees nothing, the producer sees the flag and posts
    assert spsc.prepare_park(ring.ctl) == 0
    ring.offer(one_record(1))
    assert waker.wake_if_parked() is True
    wake_sem.acquire(0)
    spsc.unpark(ring.ctl)
    assert ring.poll(8)["seq"].tolist() == [1]
    # producer first: the consumer sees the record and does not park
    ring.offer(one_record(2))
    assert waker.wake_if_parked() is False
    assert spsc.prepare_park(ring.ctl) == 1
    assert int(ring.ctl[IDX_PARKED]) == 0
    assert ring.poll(8)["seq"].tolist() == [2]
    assert wake_sem.value == 0


def test_posts_left_over_from_one_park_do_not_cancel_the_next(ring, wake_sem):
    """A parked consumer can be posted several times before it clears its flag (each commit the
    producer makes meanwhile sees ``parked == 1``). Those extra posts must not make every later
    park return at once: the next idle with nothing published still sleeps about its timeout.
    """
    park = ParkIdle(spins=0, timeout_s=0.2)
    park.watch(ring.ctl, wake_sem)
    waker = Waker(ring.ctl, wake_sem)
    # The consumer announces and sleeps; the producer commits three batches before it wakes.
    assert spsc.prepare_park(ring.ctl) == 0
    for seq in (1, 2, 3):
        ring.offer(one_record(seq))
        assert waker.wake_if_parked() is True
    wake_sem.acquire(0)                  # the consumer wakes on the first post...
    park.idle(0)                         # ...and its strategy tidies up (records are waiting)
    assert ring.poll(8)["seq"].tolist() == [1, 2, 3]
    t0 = time.perf_counter()
    park.idle(0)                         # nothing published: this must be a real sleep
    took = time.perf_counter() - t0
    assert took >= 0.15, (f"idle returned after {took * 1e3:.1f} ms: stale posts "
                          f"(semaphore value {wake_sem.value}) turned parking into spinning")
