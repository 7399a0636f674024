"""Evaluators and constructed series shared by the optimize / walk-forward tests (no tests here).

They live in a module of their own so that pool workers (fork, spawn) and Dask workers can
import them by name.

The series: ``price_t = 100 + A sin(w t)`` sampled once a minute. The strategy ``MaSpread``
holds ``SMA_fast - SMA_slow`` units over each next step, so its P&L has a closed form. With
``H(n) = (1 - e^{-iwn}) / (n (1 - e^{-iw}))`` (an n-sample SMA of ``e^{iwt}`` is
``H(n) e^{iwt}``), ``G = H(fast) - H(slow)`` and ``E = e^{iw} - 1`` (one step of ``e^{iwt}``),
the P&L over M steps is ``A^2 M/2 Re(G conj(E))`` plus an oscillating part no larger than
``A^2 |G| |E| / (2 |sin w|)``. So the best (fast, slow) of a grid is known without a backtest.
"""
from __future__ import annotations

import os

import numpy as np

from pyrt_shm.research.equity import EQUITY

MINUTE = 60 * 10**9
T0 = 1_704_067_200 * 10**9      # 2024-01-01T00:00:00Z
CAPITAL = 10_000.0


def sine_series(n: int, period: float, amp: float = 5.0, t0: int = T0, dt: int = MINUTE):
    """(t_ns, price): n samples of 100 + amp sin(2 pi i / period), one every ``dt`` ns."""
    i = np.arange(n)
    return t0 + i * dt, 100.0 + amp * np.sin(2 * np.pi * i / period)


def analytic_pnl(fast: int, slow: int, steps: int, period: float, amp: float = 5.0):
    """(expected P&L, bound on the oscillating remainder) of MaSpread on ``sine_series``."""
    w = 2 * np.pi / period

    def h(n):
        return (1 - np.exp(-1j * w * n)) / (n * (1 - np.exp(-1j * w)))

    g, e = h(fast) - h(slow), np.exp(1j * w) - 1
    return (amp * amp * steps / 2 * float(np.real(g * np.conj(e))),
            amp * amp * abs(g) * abs(e) / (2 * abs(np.sin(w))))


def _sma(p: np.ndarray, n: int) -> np.ndarray:
    c = np.concatenate(([0.0], np.cumsum(p)))
    return (c[n:] - c[:-n]) / n          # [j] = mean of p[j .. j+n-1]


def spread_step_pnl(p: np.ndarray, fast: int, slow: int) -> np.ndarray:
    """P&L of each step i -> i+1 for i = slow-1 .. n-2 (position = SMA_fast - SMA_slow at i)."""
    spread = _sma(p, fast)[slow - fast:] - _sma(p, slow)
    return spread[:-1] * np.diff(p[slow - 1:])


class MaSpread:
    """``evaluate(params, window)``: MaSpread P&L on the samples inside ``window`` only.

    Metrics: ``pnl``, ``total_return`` (pnl / CAPITAL), ``steps``, ``sharpe`` (per-step mean
    over std), and what it saw: ``seen_first_ns`` / ``seen_last_ns`` / ``seen_n``. With
    ``equity`` it also returns ``_equity`` (EQUITY rows) and ``_initial_equity``.
    """

    def __init__(self, t, p, fast_key: str = "fast", slow_key: str = "slow", equity: bool = False):
        self.t, self.p = np.asarray(t, np.int64), np.asarray(p, np.float64)
        self.fast_key, self.slow_key, self.equity = fast_key, slow_key, equity

    def cut(self, window):
        if window is None:
            return self.t, self.p
        lo, hi = np.searchsorted(self.t, window)
        return self.t[lo:hi], self.p[lo:hi]

    def __call__(self, params, window):
        fast, slow = params[self.fast_key], params[self.slow_key]
        if fast >= slow:
            raise ValueError(f"{self.fast_key} ({fast}) must be < {self.slow_key} ({slow})")
        t, p = self.cut(window)
        if len(p) < slow + 1:
            raise ValueError(f"{len(p)} samples in the window; {self.slow_key}={slow} needs {slow + 1}")
        step = spread_step_pnl(p, fast, slow)
        pnl = float(step.sum())
        sd = float(step.std(ddof=1)) if len(step) > 1 else 0.0
        out = {"total_return": pnl / CAPITAL, "pnl": pnl, "steps": len(step),
               "sharpe": float(step.mean()) / sd if sd > 0 else None,
               "seen_first_ns": int(t[0]), "seen_last_ns": int(t[-1]), "seen_n": len(t)}
        if self.equity:
            eq = np.zeros(len(step), EQUITY)
            eq["t_ns"] = t[slow:]
            eq["equity"] = eq["cash"] = CAPITAL + np.cumsum(step)
            out["_equity"], out["_initial_equity"] = eq, CAPITAL
        return out


class Leaky(MaSpread):
    """A deliberately broken evaluator: it reads ``extra_ns`` past the end of its window."""

    def __init__(self, t, p, extra_ns: int, **kw):
        super().__init__(t, p, **kw)
        self.extra_ns = extra_ns

    def cut(self, window):
        return super().cut(None if window is None else (window[0], window[1] + self.extra_ns))


class Bowl:
    """A smooth function with a known maximum at (x, y) = (3.7, 12): ``-(x-3.7)^2 - (y-12)^2/4``."""

    def __call__(self, params, window):
        x, y = params["x"], params["y"]
        return {"score": -(x - 3.7) ** 2 - (y - 12) ** 2 / 4}


class Constant:
    """Every combination scores the same: the ranking is the tie-break alone."""

    def __call__(self, params, window):
        return {"score": 1.0, "echo": params["a"] * 10 + params["b"]}


_LOADED: dict = {}   # path -> array: this process's cache (one per pool worker)
_LOADS = [0]


class LoadsFromFile:
    """Reads its data from an ``.npy`` path, once per process; reports how often it loaded."""

    def __init__(self, path: str):
        self.path = path

    def __call__(self, params, window):
        arr = _LOADED.get(self.path)
        if arr is None:
            _LOADS[0] += 1
            arr = _LOADED[self.path] = np.load(self.path, mmap_mode="r")
        return {"value": float(arr[params["i"]]), "loads": _LOADS[0], "pid": os.getpid()}


class CountsPickles:
    """Counts, in the process that pickles it, how many times it was pickled."""

    pickled = 0

    def __init__(self, payload: np.ndarray):
        self.payload = payload

    def __reduce__(self):
        CountsPickles.pickled += 1
        return CountsPickles, (self.payload,)

    def __call__(self, params, window):
        return {"value": float(self.payload[params["i"]])}


class Crashes:
    """Kills its worker process (as a segfault would) on ``i == crash_at``."""

    def __init__(self, crash_at: int):
        self.crash_at = crash_at

    def __call__(self, params, window):
        if params["i"] == self.crash_at:
            os._exit(3)
        return {"value": float(params["i"])}


class Sleeps:
    """Sleeps ``params['s']`` seconds."""

    def __call__(self, params, window):
        import time
        time.sleep(params["s"])
        return {"value": params["s"]}


_PREPARES = [0]


class Prepares:
    """Records where and how often ``prepare()`` ran in the evaluating process."""

    def __init__(self):
        self.prepared_in = None

    def prepare(self):
        _PREPARES[0] += 1
        self.prepared_in = os.getpid()

    def __call__(self, params, window):
        return {"value": float(params["i"]), "prepared_in": self.prepared_in,
                "prepares": _PREPARES[0], "pid": os.getpid()}
