"""The supervisor: creates the engine's memory, forks and pins stage processes, watches them,
drains and stops them in order, reports, and removes every segment.

Lifecycle::

    start()   remove stale segments of a dead engine of this name (refuse if one is alive)
              -> stage classes' ``prepare`` hooks (e.g. reconcile a venue account and seed
              risk) -> create every segment -> build + warm (JIT) every stage -> fork one process
              per [processes.X], pinned
              -> start the Prometheus exporter if ``[engine] metrics_port`` is set
    watch()   every 10 ms: reap children, check heartbeats, duration, signals, print status
    stop()    graceful: stop sources -> wait until no record is in flight (every ring empty,
              no head moving, and every stage's ``IN_FLIGHT`` counter, if it names one, at 0:
              e.g. orders still waiting for a venue) -> stop every stage -> join -> report
    fault     a child that died or stalled trips the kill switch (risk rejects every new
              order), the rest are stopped, the run exits non-zero naming stage and cause
    close()   stop the exporter, unlink every segment and semaphore (always, also on exceptions)
"""
from __future__ import annotations

import os
import signal
import sys
import time

from layouts.control import KILL_STAGE_DIED, KILL_STAGE_STALLED
from layouts.stats import STAGE_FAILED, STAGE_STOPPED
from ringbuf.idle import ParkIdle, Waker, make_idle

from . import report
from .config import resolve_auto_cpus
from .segment import engine_prefix, remove_stale
from .wiring import EngineMemory, stage_classes

POLL_S = 0.01
START_GRACE_NS = 10_000_000_000   # a process has this long to beat for the first time
DRAIN_TIMEOUT_S = 5.0
JOIN_TIMEOUT_S = 5.0


class EngineFault(RuntimeError):
    """A stage died or stalled; the message names the stage and the cause."""


class StagePrepareError(RuntimeError):
    """A stage's ``prepare`` hook failed (e.g. the venue account could not be read); the
    message names the stage."""


class Supervisor:
    def __init__(self, topology, log=None, status_every_s: float = 1.0, use_jit_loop: bool = True):
        self.topology = topology
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.status_every_s = status_every_s
        self.use_jit_loop = use_jit_loop
        self.jit_loops = {}
        self.mem: EngineMemory | None = None
        self.stages = {}
        self.children = {}          # pid -> ProcessConfig
        self.exit_status = {}       # process name -> description of how it ended
        self.placement = {}
        self.semaphores = []
        self.fault: str | None = None
        self.fault_ns = 0               #: CLOCK_MONOTONIC when the fault was detected
        self.started_ns = 0
        self._signal = None
        self.exporter = None            #: pyrt_shm.metrics.MetricsExporter while it serves

    # -- start ------------------------------------------------------------------------------
    def start(self) -> None:
        topo = self.topology
        for w in topo.warnings:
            self.log(f"pyrt: warning: {w}")
        removed = remove_stale(topo.engine.name)          # raises EngineRunning
        if removed:
            self.log(f"pyrt: removed {len(removed)} stale segment(s) of a dead engine {topo.engine.name!r}")
        classes = stage_classes(topo)
        topo = self._prepare(topo, classes)
        self.mem = EngineMemory(topo, "shm", classes)
        try:
            for st in topo.stages:
                self.stages[st.name] = self.mem.build_stage(st.name)
            self._wire_parking()
            for s in self.stages.values():
                s.warm_up()
            self._build_jit_loops()
            self.placement = resolve_auto_cpus(topo)
            self._place_self()
            self.started_ns = time.monotonic_ns()
            for proc in topo.processes:
                self._fork(proc)
        except BaseException:
            self._kill_all()
            self.close()
            raise
        self._start_exporter()

    def _prepare(self, topo, classes):
        """Run each stage class's ``prepare(topology, stage_name, log=...) -> topology`` hook,
        in file order, before anything is built: a venue stage reconciles its account there
        and seeds other stages' params (``procs.alpaca_exec``). A ValueError (a bad param) or
        ``MissingCredentials`` passes through as it is; any other failure becomes
        ``StagePrepareError`` naming the stage."""
        from .credentials import MissingCredentials

        for st in topo.stages:
            hook = getattr(classes[st.name], "prepare", None)
            if hook is None:
                continue
            try:
                topo = hook(topo, st.name, log=self.log)
            except (ValueError, MissingCredentials):
                raise
            except Exception as e:  # noqa: BLE001 - named and re-raised
                raise StagePrepareError(f"stages.{st.name}: {e}") from e
        self.topology = topo
        return topo

    def _start_exporter(self) -> None:
        """Serve metrics from this process's own thread (after the forks: children get no
        thread). It only reads shared memory through a read-only reader; a port that cannot
        be bound is logged, not fatal: the engine is already trading."""
        eng = self.topology.engine
        if not eng.metrics_port:
            return
        from .metrics import start_exporter

        try:
            self.exporter = start_exporter(eng.name, eng.metrics_port, eng.metrics_addr)
        except OSError as e:
            self.log(f"pyrt: warning: metrics exporter not started on "
                     f"{eng.metrics_addr}:{eng.metrics_port}: {e}")
            return
        self.log(f"pyrt: metrics at {self.exporter.url}")

    def _place_self(self) -> None:
        # Leave the hot cores to the stages: the supervisor (and its exporter, status line)
        # runs on whatever CPUs no stage is pinned to, when there are any.
        hot = {c for c in self.placement.values() if c is not None}
        self._saved_affinity = set(os.sched_getaffinity(0))
        spare = self._saved_affinity - hot
        if spare:
            os.sched_setaffinity(0, spare)

    def _wire_parking(self) -> None:
        """Give every ring whose consumer parks a semaphore, and its producer a Waker."""
        import posix_ipc

        topo = self.topology
        self.idles = {}
        for proc in topo.processes:
            idle = make_idle(proc.idle)
            self.idles[proc.name] = idle
            if not isinstance(idle, ParkIdle):
                continue
            name = "/" + engine_prefix(topo.engine.name) + f"wake-{proc.name}"
            sem = posix_ipc.Semaphore(name, posix_ipc.O_CREX, mode=0o600, initial_value=0)
            self.semaphores.append(sem)
            for stage in proc.stages:
                for r in topo.rings_in(stage):
                    if topo.process_of(r.producer).name == proc.name:
                        continue            # same loop: never parked while it produces
                    ring = self.mem.rings[r.name]
                    idle.watch(ring.ctl, sem)
                    self.stages[r.producer].ctx.wakers[r.record] = Waker(ring.ctl, sem)

    def _build_jit_loops(self) -> None:
        """Compile each process's native duty loop before forking (see ``pyrt_shm.jit_loop``)."""
        from . import jit_loop

        self.jit_loops = {}
        for proc in self.topology.processes:
            stages = [self.stages[n] for n in proc.stages]
            if self.use_jit_loop and jit_loop.supports(stages, proc.idle):
                row = self.mem.hist_names.index(f"process.{proc.name}.cycle")
                jl = jit_loop.JitProcessLoop(stages, jit_loop.JIT_IDLE_MODES[proc.idle], self.mem.hists, row)
                jl.warm_up()
                self.jit_loops[proc.name] = jl

    def _fork(self, proc) -> None:
        from .process_main import fork_process

        stages = [self.stages[n] for n in proc.stages]
        pid = fork_process(proc, self.placement.get(proc.name), stages, self.mem, self.idles[proc.name],
                           self.jit_loops.get(proc.name))
        self.children[pid] = proc

    # -- watch ------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        def handler(signum, frame):
            self._signal = signum
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    def watch(self, duration_s: float | None = None, until=None, status=None) -> str:
        """Supervise until the duration passes, a signal arrives, ``until()`` is true, or a fault.

        Returns why it stopped: ``"duration"``, ``"signal"``, ``"until"`` or ``"fault"``.
        """
        deadline = None if duration_s is None else time.monotonic() + duration_s
        next_status = time.monotonic() + self.status_every_s
        while True:
            if self._check_children() or self._check_heartbeats():
                return "fault"
            if self._signal is not None:
                return "signal"
            if until is not None and until():
                return "until"
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return "duration"
            if status is not None and now >= next_status:
                status(self)
                next_status = now + self.status_every_s
            time.sleep(POLL_S)

    def _check_children(self) -> bool:
        for pid, proc in list(self.children.items()):
            try:
                done, st = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, st = pid, 0
            if not done:
                continue
            del self.children[pid]
            how = _describe_status(st)
            self.exit_status[proc.name] = how
            stop = self.mem.control[0]["stop"]
            asked = all(stop[self.stages[n].ctx.index] for n in proc.stages)
            if asked and os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0:
                continue                      # stopped because we asked it to
            if self.fault is None:
                self._trip(proc, KILL_STAGE_DIED, f"died ({how})")
                return True
        return False

    def _check_heartbeats(self) -> bool:
        mem, now = self.mem, time.monotonic_ns()
        timeout = self.topology.engine.heartbeat_timeout_ms * 1_000_000
        for pid, proc in list(self.children.items()):
            for name in proc.stages:
                row = mem.stats[self.stages[name].ctx.index]
                hb = int(row["heartbeat_ns"])
                if int(row["state"]) in (STAGE_STOPPED, STAGE_FAILED):
                    continue
                age = now - (hb if hb else self.started_ns)
                limit = timeout if hb else START_GRACE_NS
                if age > limit:
                    self._trip(proc, KILL_STAGE_STALLED,
                               f"stalled (no heartbeat for {age / 1e6:.0f} ms, deadline "
                               f"{self.topology.engine.heartbeat_timeout_ms} ms)")
                    self._kill(pid)           # it is stuck: it will not stop by itself
                    del self.children[pid]
                    self.exit_status[proc.name] = "killed by the supervisor (stalled)"
                    return True
        return False

    def _trip(self, proc, cause: int, what: str) -> None:
        self.fault_ns = time.monotonic_ns()
        c = self.mem.control[0]
        c["kill_stage"] = self.stages[proc.stages[0]].ctx.index
        c["kill_cause"] = cause
        c["kill_ns"] = time.monotonic_ns()
        c["kill_switch"] = 1
        names = ", ".join(proc.stages)
        self.fault = f"stage {names} (process {proc.name}) {what}; kill switch tripped"
        self.log(f"pyrt: FAULT: {self.fault}")

    # -- stop -------------------------------------------------------------------------------
    def stop(self) -> dict:
        """Stop in order (graceful when no fault); return drain information."""
        self.stop_ns = time.monotonic_ns()
        info = {"drained": False, "in_flight": 0}
        stop = self.mem.control[0]["stop"]
        if self.fault is None:
            for name, st in self.stages.items():
                if not st.INPUTS:
                    stop[st.ctx.index] = 1               # sources first
            info = self._drain()
        for st in self.stages.values():
            stop[st.ctx.index] = 1
        self._join()
        return info

    def _drain(self) -> dict:
        """Wait until no record is in flight: every ring empty and no head moving."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        prev = None
        while time.monotonic() < deadline:
            if self._check_children():
                break
            heads = tuple(int(r.statistics().published) for r in self.mem.rings.values())
            depth = sum(r.statistics().depth for r in self.mem.rings.values())
            sources_done = all(int(self.mem.stats[s.ctx.index]["state"]) != 2 or s.INPUTS
                               for s in self.stages.values())
            waiting = self._venue_in_flight()
            if depth == 0 and heads == prev and sources_done and waiting == 0:
                return {"drained": True, "in_flight": 0}
            prev = heads
            time.sleep(0.02)
        depth = sum(r.statistics().depth for r in self.mem.rings.values())
        waiting = self._venue_in_flight()
        self.log(f"pyrt: warning: drain timed out with {depth} record(s) in flight"
                 + (f" and {waiting} order(s) still waiting for a venue" if waiting else ""))
        return {"drained": False, "in_flight": depth + waiting}

    def _venue_in_flight(self) -> int:
        """Sum of the ``IN_FLIGHT`` counters of stages that name one (a gauge the stage
        updates after publishing its reports, so 0 means its reports are in its ring)."""
        n = 0
        for st in self.stages.values():
            name = getattr(st, "IN_FLIGHT", None)
            if name:
                n += int(self.mem.stats[st.ctx.index]["counters"][st.COUNTERS.index(name)])
        return n

    def _join(self) -> None:
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while self.children and time.monotonic() < deadline:
            for pid, proc in list(self.children.items()):
                done, st = os.waitpid(pid, os.WNOHANG)
                if done:
                    del self.children[pid]
                    self.exit_status.setdefault(proc.name, _describe_status(st))
            time.sleep(POLL_S)
        for pid, proc in list(self.children.items()):
            self.log(f"pyrt: process {proc.name} (pid {pid}) did not stop; killing it")
            self._kill(pid)
            self.exit_status.setdefault(proc.name, "killed by the supervisor (did not stop)")
            del self.children[pid]

    def _kill(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass

    def _kill_all(self) -> None:
        for pid in list(self.children):
            self._kill(pid)
        self.children.clear()

    def summary(self) -> dict:
        # Running time: from the fork of the first stage to the stop request (drain and
        # join excluded, so ticks/s in the report is the rate while running).
        end = getattr(self, "stop_ns", 0) or time.monotonic_ns()
        elapsed = (end - self.started_ns) / 1e9 if self.started_ns else 0.0
        return report.summary(self.mem, elapsed, {
            "fault": self.fault,
            "fault_ns": self.fault_ns,
            "processes": {p.name: {"cpu": self.placement.get(p.name), "idle": p.idle,
                                   "stages": list(p.stages), "exit": self.exit_status.get(p.name)}
                          for p in self.topology.processes},
            "source": self.topology.source,
        })

    def close(self) -> None:
        """Kill what still runs, unlink every segment and semaphore, restore this process's
        CPU affinity (idempotent)."""
        if getattr(self, "_saved_affinity", None):
            try:
                os.sched_setaffinity(0, self._saved_affinity)
            except OSError:
                pass
            self._saved_affinity = None
        if self.exporter is not None:
            self.exporter.close()
            self.exporter = None
        self._kill_all()
        for sem in self.semaphores:
            try:
                sem.unlink()
            except Exception:  # noqa: BLE001 - already gone
                pass
            sem.close()
        self.semaphores = []
        if self.mem is not None:
            self.mem.close()


def _describe_status(st: int) -> str:
    if os.WIFSIGNALED(st):
        sig = os.WTERMSIG(st)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by {name}"
    if os.WIFEXITED(st):
        return f"exited with status {os.WEXITSTATUS(st)}"
    return f"wait status {st}"
