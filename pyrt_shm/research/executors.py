"""Run many evaluations of one evaluator: inline, on a local process pool, or on a Dask cluster.

An **evaluator** is any picklable callable ``evaluate(params, window) -> dict``:

* ``params``: flat ``{"stages.signal.params.fast": 8, ...}`` (dotted keys, one combination);
* ``window``: ``(start_ns, end_ns)``, half-open ``[start, end)`` in data time (unix ns), or
  None for all the data. The evaluator must use no data outside the window: walk-forward's
  no-look-ahead guarantee rests on it;
* the result maps metric names to numbers. Keys starting with ``_`` are side outputs (an
  equity curve, say): they are returned only for tasks with ``keep_series`` (walk-forward's
  out-of-sample runs), so a grid of thousands of runs ships back only its numbers. Any other
  value that is not a scalar number is dropped from the row and named in ``Run.dropped``.
* it raises to reject a combination (``fast >= slow``): the run becomes a failed row
  carrying the message; the sweep goes on.
* optional ``prepare()``: warm-up (load data, compile numba code) called once per process
  before its first evaluation. The local pool calls it in the parent before forking, so the
  workers inherit the compiled code and the data instead of each compiling and loading.

How the evaluator reaches the workers (never pickled per task):

* ``LocalExecutor`` (start method ``fork``, Linux's default): the pool's worker processes
  are forked from the parent, inheriting the evaluator and its arrays copy-on-write; nothing
  is pickled. With ``forkserver``/``spawn`` the evaluator is pickled once per worker, as the
  pool initializer's argument (an evaluator built from data file paths ships only the paths).
* ``DaskExecutor``: the evaluator is scattered once to every worker (``broadcast=True``)
  and each task refers to it by its future.

Every executor returns one ``Run`` per ``Task``, in task order, whatever order they finished
in, so results do not depend on scheduling.
"""
from __future__ import annotations

import concurrent.futures as cf
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Task", "Run", "evaluate_task", "InlineExecutor", "LocalExecutor", "DaskExecutor",
           "make_executor", "ExecutorError", "usable_cpus"]

#: Longest error message kept in a failed row (a deep traceback is not a table cell).
MAX_ERROR_CHARS = 500


class ExecutorError(RuntimeError):
    """The executor itself cannot run (bad worker count, unreachable scheduler)."""


@dataclass(frozen=True)
class Task:
    """One evaluation to run. ``index`` orders results and breaks ties between equal objectives;
    ``tag`` is the caller's (walk-forward puts the window number there)."""

    index: int
    params: dict
    window: tuple[int, int] | None = None
    keep_series: bool = False
    tag: int | None = None


@dataclass
class Run:
    """The outcome of one task. ``status`` is ``"ok"`` or ``"failed"`` (then ``error`` says why)."""

    index: int
    params: dict
    window: tuple[int, int] | None
    tag: int | None
    status: str
    metrics: dict = field(default_factory=dict)
    error: str = ""
    elapsed_s: float = 0.0
    worker: str = ""
    dropped: tuple = ()
    series: dict | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _number(value: Any):
    """A metric as a plain int/float (None, an undefined figure, as NaN), or None if it is
    not a scalar number."""
    if value is None:
        return math.nan
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return None


def _error_text(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None)  # ConfigError carries one line per problem
    text = "; ".join(map(str, errors)) if isinstance(errors, list) and errors else str(exc)
    text = " ".join(text.split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 3] + "..."


def _ensure_prepared(evaluator) -> None:
    """Call ``evaluator.prepare()`` once in this process. The mark is the pid, so that a copy
    unpickled elsewhere (spawn, Dask) prepares again."""
    prepare = getattr(evaluator, "prepare", None)
    if prepare is None or getattr(evaluator, "_pyrt_prepared_pid", None) == os.getpid():
        return
    prepare()
    try:
        evaluator._pyrt_prepared_pid = os.getpid()
    except AttributeError:  # __slots__ or a function: prepare on every worker start, no harm
        pass


def evaluate_task(evaluator: Callable, task: Task, worker: str = "") -> Run:
    """Run one task; every exception (and a malformed result) becomes a failed ``Run``."""
    run = Run(task.index, dict(task.params), task.window, task.tag, "failed",
              worker=worker or f"pid {os.getpid()}")
    t0 = time.perf_counter()
    try:
        out = evaluator(dict(task.params), task.window)
        if not isinstance(out, dict):
            raise TypeError(f"the evaluator returned {type(out).__name__}, expected a dict of metrics")
        metrics, dropped, series = {}, [], {}
        for name, value in out.items():
            name = str(name)
            if name.startswith("_"):
                if task.keep_series:
                    series[name] = value
                continue
            number = _number(value)
            if number is None:
                dropped.append(name)
            else:
                metrics[name] = number
        run.metrics, run.dropped, run.series = metrics, tuple(dropped), series or None
        run.status = "ok"
    except Exception as exc:  # noqa: BLE001 - a bad combination must not end the sweep
        run.error = _error_text(exc)
    run.elapsed_s = time.perf_counter() - t0
    return run


def _failed(task: Task, why: str) -> Run:
    return Run(task.index, dict(task.params), task.window, task.tag, "failed", error=why)


# --- inline --------------------------------------------------------------------------------

class InlineExecutor:
    """Evaluate in the calling process, one task after another (tests, debugging, 1 core)."""

    name = "inline"
    workers = 1

    def start(self, evaluator) -> None:
        """Prepare ``evaluator`` (every executor has ``start``: the warm-up, timed apart)."""
        _ensure_prepared(evaluator)

    def run(self, evaluator, tasks: Sequence[Task], on_done: Callable | None = None,
            timeout_s: float | None = None) -> list[Run]:
        _ensure_prepared(evaluator)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        runs = []
        for task in tasks:
            if deadline is not None and time.monotonic() > deadline:
                runs.append(_failed(task, f"not run: the sweep's {timeout_s:g}s timeout passed"))
            else:
                runs.append(evaluate_task(evaluator, task))
            if on_done:
                on_done(runs[-1])
        return runs

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- local process pool --------------------------------------------------------------------

_WORKER_EVALUATOR = None  # set in each pool worker by _init_worker; read by _pool_task


def _init_worker(evaluator, inherited: bool) -> None:
    """Pool initializer. ``inherited``: forked from a parent that already prepared the
    evaluator, so its compiled code and data are here already."""
    global _WORKER_EVALUATOR
    _WORKER_EVALUATOR = evaluator
    if inherited:
        try:
            evaluator._pyrt_prepared_pid = os.getpid()
        except AttributeError:
            pass
    _ensure_prepared(evaluator)


def _pool_task(task: Task) -> Run:
    return evaluate_task(_WORKER_EVALUATOR, task)


def _started(_i: int) -> int:
    return os.getpid()


class LocalExecutor:
    """A pool of ``workers`` processes on this host (default: every usable CPU).

    The pool is built on the first ``run`` and kept for later runs with the same evaluator
    (walk-forward and Bayesian batches reuse workers that already hold the data); a run with
    another evaluator rebuilds it. ``close()`` (or the ``with`` block) stops every worker.

    A worker that dies (a crash in native code, the OOM killer) breaks the pool: the runs
    still pending are reported failed with the reason, and the next run starts a new pool.
    """

    name = "local"

    def __init__(self, workers: int | None = None, start_method: str | None = None):
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise ExecutorError(f"workers: must be an integer >= 1, got {workers!r}")
        self.workers = workers or usable_cpus()
        methods = multiprocessing.get_all_start_methods()
        self.start_method = start_method or ("fork" if "fork" in methods else methods[0])
        if self.start_method not in methods:
            raise ExecutorError(f"start method {self.start_method!r} is not available here "
                                f"(available: {', '.join(methods)})")
        self._pool: cf.ProcessPoolExecutor | None = None
        self._evaluator = None

    def _pool_for(self, evaluator) -> cf.ProcessPoolExecutor:
        if self._pool is not None and self._evaluator is evaluator:
            return self._pool
        self.close()
        fork = self.start_method == "fork"
        if fork:
            _ensure_prepared(evaluator)  # compile and load once; the children inherit it
        self._pool = cf.ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context(self.start_method),
            initializer=_init_worker, initargs=(evaluator, fork))
        self._evaluator = evaluator
        return self._pool

    def start(self, evaluator, timeout_s: float = 600.0) -> None:
        """Build the pool and wait until every worker has run its initializer (``prepare``)."""
        if self._pool is not None and self._evaluator is evaluator:
            return
        pool = self._pool_for(evaluator)
        try:
            list(pool.map(_started, range(self.workers), timeout=timeout_s))
        except (BrokenProcessPool, cf.TimeoutError) as exc:
            self.close(kill=True)
            raise ExecutorError(f"local pool: the workers did not start ({_error_text(exc)})") from None

    def run(self, evaluator, tasks: Sequence[Task], on_done: Callable | None = None,
            timeout_s: float | None = None) -> list[Run]:
        if not tasks:
            return []
        pool = self._pool_for(evaluator)
        futures = {pool.submit(_pool_task, task): i for i, task in enumerate(tasks)}
        runs: list[Run | None] = [None] * len(tasks)
        broken = False
        try:
            for future in cf.as_completed(futures, timeout=timeout_s):
                i = futures[future]
                try:
                    runs[i] = future.result()
                except BrokenProcessPool:
                    broken = True
                    runs[i] = _failed(tasks[i], "a worker process died while this run was "
                                                "pending (rerun with --workers 1 to find which)")
                except Exception as exc:  # noqa: BLE001 - e.g. a side output that does not pickle
                    runs[i] = _failed(tasks[i], _error_text(exc))
                if on_done:
                    on_done(runs[i])
        except cf.TimeoutError:
            broken = True  # running workers cannot be interrupted: the pool must go
            for i, run in enumerate(runs):
                if run is None:
                    runs[i] = _failed(tasks[i], f"not finished: the sweep's {timeout_s:g}s timeout passed")
        except BaseException:
            self.close(kill=True)  # Ctrl-C: do not wait for the queued runs
            raise
        if broken:
            self.close(kill=True)
        return runs  # type: ignore[return-value]

    def close(self, kill: bool = False) -> None:
        """Stop the workers. ``kill``: terminate them instead of letting running tasks finish."""
        pool, self._pool, self._evaluator = self._pool, None, None
        if pool is None:
            return
        procs = list((getattr(pool, "_processes", None) or {}).values())
        if kill:
            for p in procs:
                if p.is_alive():
                    p.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        for p in procs:
            p.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- dask.distributed ----------------------------------------------------------------------

def _dask_prepare(evaluator) -> None:
    _ensure_prepared(evaluator)


def _dask_task(evaluator, task: Task) -> Run:
    _ensure_prepared(evaluator)  # the scattered object lives on the worker across tasks
    try:
        from distributed import get_worker
        where = get_worker().address
    except (ImportError, ValueError):
        where = ""
    return evaluate_task(evaluator, task, worker=where or f"pid {os.getpid()}")


class DaskExecutor:
    """Run the tasks on a ``dask.distributed`` cluster (``scheduler``: ``tcp://host:port``).

    The evaluator is scattered once to every worker; the tasks carry only their parameters.
    Workers must be able to import pyrt_shm and the evaluator's module, and to read any data
    file the evaluator names (ship data by a path every worker sees, or keep it inside the
    evaluator so that the scatter carries it). The cluster is not ours: ``close()`` closes
    only the client.
    """

    name = "dask"

    def __init__(self, scheduler: str, connect_timeout_s: float = 10.0):
        try:
            from distributed import Client
        except ImportError:
            raise ExecutorError("--executor dask needs dask.distributed: "
                                "pip install 'pyrt-shm[research]'") from None
        try:
            self.client = Client(scheduler, timeout=connect_timeout_s, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ExecutorError(f"--scheduler {scheduler}: cannot connect to a Dask scheduler "
                                f"within {connect_timeout_s:g}s ({exc})") from None
        self.scheduler = scheduler
        self._scattered = None
        self._evaluator = None

    @property
    def workers(self) -> int:
        """Threads across the cluster's workers right now (each runs one task at a time)."""
        info = self.client.scheduler_info()
        return max(1, sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values()))

    def start(self, evaluator, timeout_s: float = 600.0) -> None:
        """Scatter ``evaluator`` to every worker (once per evaluator) and prepare it there."""
        if self._evaluator is evaluator:
            return
        self._scattered = self.client.scatter(evaluator, broadcast=True, hash=False)
        self._evaluator = evaluator
        from distributed import as_completed
        workers = list(self.client.scheduler_info().get("workers", {}))
        # One warm-up per worker, pinned to it. A warm-up that raises is not fatal here: the
        # same error then fails that worker's rows, each with the message.
        warm = [self.client.submit(_dask_prepare, self._scattered, workers=[w], allow_other_workers=False,
                                   pure=False) for w in workers]
        try:
            for _ in as_completed(warm, loop=self.client.loop, timeout=timeout_s):
                pass
        except TimeoutError:
            raise ExecutorError(f"--scheduler {self.scheduler}: the workers did not prepare the "
                                f"evaluator within {timeout_s:g}s") from None

    def run(self, evaluator, tasks: Sequence[Task], on_done: Callable | None = None,
            timeout_s: float | None = None) -> list[Run]:
        from distributed import as_completed
        if not tasks:
            return []
        self.start(evaluator)
        futures = [self.client.submit(_dask_task, self._scattered, task, pure=False) for task in tasks]
        where = {f.key: i for i, f in enumerate(futures)}
        runs: list[Run | None] = [None] * len(tasks)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            # loop= : without it as_completed looks for a default client, and ours is not one
            for future in as_completed(futures, loop=self.client.loop, timeout=timeout_s):
                i = where[future.key]
                try:
                    runs[i] = future.result(timeout=_left(deadline))
                except Exception as exc:  # noqa: BLE001 - KilledWorker, lost connection
                    runs[i] = _failed(tasks[i], f"dask: {_error_text(exc)}")
                if on_done:
                    on_done(runs[i])
        except TimeoutError:
            for i, run in enumerate(runs):
                if run is None:
                    runs[i] = _failed(tasks[i], f"not finished: the sweep's {timeout_s:g}s timeout passed")
        finally:
            self.client.cancel([f for f in futures if not f.done()])
        return runs  # type: ignore[return-value]

    def close(self) -> None:
        self._scattered = self._evaluator = None
        self.client.close(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def make_executor(kind: str = "local", workers: int | None = None, scheduler: str | None = None):
    """Build the executor a command line names: ``local`` (process pool), ``inline`` or ``dask``."""
    if kind == "local":
        return LocalExecutor(workers)
    if kind == "inline":
        return InlineExecutor()
    if kind == "dask":
        if not scheduler:
            raise ExecutorError("--executor dask needs --scheduler ADDRESS (e.g. tcp://127.0.0.1:8786)")
        return DaskExecutor(scheduler)
    raise ExecutorError(f"unknown executor {kind!r}: must be local, inline or dask")

