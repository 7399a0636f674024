"""The strategy API of the signal stage (``procs.signal:SignalStage``).

A *strategy* turns book events (``layouts.orders.BOOK_EVENT``: quotes, trades, completed
bars, with the top of book) into *intents* (symbol id, side, quantity, limit price or
market, tag). The signal stage owns everything else: rings, backpressure, sequence
numbers, stamps, validation, counters and histograms. A strategy is named by import path
in the topology::

    [stages.signal]
    class = "procs.signal:SignalStage"
    params = { strategy = "procs.strategies.ema_cross:EmaCross", fast = 8, slow = 32 }

Every other key of ``params`` (besides the stage's own ``strategy`` and ``batch``) is a
strategy parameter; the strategy declares their names in ``PARAMS`` and an unknown key is
a startup error naming ``stages.signal.params.<key>``. Without ``strategy`` the stage runs
the EMA crossover (``procs.strategies.ema_cross:EmaCross``).

Two flavours, chosen by what the import path names:

**Numba** (runs inside the process's native duty loop): a ``NumbaStrategy`` subclass, or a
bare ``@njit`` function. Hooks are ``@njit`` functions with one signature::

    on_quote(ev, state, out) -> int      # ev: BOOK_EVENT record, read only
    on_trade(ev, state, out) -> int
    on_bar(ev, state, out) -> int

``state`` is whatever the strategy's ``make_state()`` returned (an array or a tuple of
arrays: per-symbol indicator state, parameters); ``out`` is an INTENT buffer of
``MAX_INTENTS`` rows. A hook writes intents with ``n = emit(out, n, sym, side, qty,
limit_px, tag, tif)`` and returns how many it wrote (0: no decision), or ``WARMING`` (-1)
for "still warming up" (counted). A hook left as ``None`` ignores that kind. Hooks are
class attributes (module-level ``@njit`` functions assigned in the class body): the stage
generates a small module that references them as globals and calls them from the stage's
jitted step (``procs.signal``), so a strategy costs a direct call, no dispatch; the module
is regenerated when the strategy's package or the engine's sources change.
A bare ``@njit`` function ``f(ev, state, out)`` gets every event (switch on ``ev.kind``);
its state is a zeroed ``float64[n_symbols, state_size]`` (parameters ``state_size``,
default 8, and ``max_intents``, default 1).

**Python** (runs through the Python ``AgentRunner``; ``kernel()`` is None): a class with
``on_quote(ev)``, ``on_trade(ev)``, ``on_bar(ev)`` (subclass ``Strategy``), constructed as
``cls(ctx)``. The stage drains a batch of events with one jitted call, converts them to
``Event`` named tuples (BOOK_EVENT fields + ``mid``, ``spread``, ``index``) and calls the
hooks in order. A hook returns ``None``, an ``Intent``, a list of intents, or ``WARMING``.
``on_batch(events)`` (optional) runs once per batch before the per-event hooks with the
raw BOOK_EVENT records (vectorised or njit feature code goes there; ``ev.index`` is the
event's row). ``on_start()`` runs in the stage's process (after the fork: open sessions,
sockets there), ``on_close()`` at the end. An exception from a hook is counted in
``strategy_errors`` and stops the stage (its state is undefined: trading on is worse).

Which hook sees which event: ``on_quote`` a top-of-book update (kind quote, book delta or
snapshot) once both sides are known (``ev.valid``); ``on_trade`` every trade; ``on_bar``
every completed bar (``kind == TICK_BAR``). Events of unknown symbols, other kinds and
quotes before the book is valid are counted in ``skipped`` and reach no hook.

What the stage does with an intent: assigns ``seq`` (gap-free), copies the event's
``feed_ns``, sets ``ref_px`` (the mid, else the trade price or bar close), order type
``ORDER_LIMIT`` when ``limit_px > 0`` else ``ORDER_MARKET``, stamps ``sent_ns`` at publish.
An intent with an unknown symbol, a side other than ``BUY``/``SELL``, a quantity that is
not finite and > 0, a negative or non-finite limit price or a bad ``tif`` is dropped and
counted in ``bad_intents``; intents beyond ``MAX_INTENTS`` for one event are dropped and
counted in ``intents_over_max``. The stage consumes an event only when the intent ring has
``MAX_INTENTS`` free slots for it, so backpressure never loses an intent.

Parameters: a strategy reads its parameters from ``ctx`` (``StrategyContext``) with the
helpers ``ctx.int / ctx.float / ctx.str / ctx.list / ctx.bool``, which raise ValueError
naming ``stages.<stage>.params.<key>``; raising ValueError from the constructor is how a
strategy refuses a configuration (the supervisor reports it before any process starts).
"""
from __future__ import annotations

import builtins
import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping, NamedTuple

import numpy as np
from numba import njit

from layouts.orders import BOOK_EVENT, BUY, SELL, TIF_DAY, TIF_FOK, TIF_GTC, TIF_IOC  # noqa: F401

from . import float_param, int_param

#: A hook's return value meaning "still warming up: no decision" (counted in ``warming``).
WARMING = -1

__all__ = ["WARMING", "BUY", "SELL", "TIF_DAY", "TIF_GTC", "TIF_IOC", "TIF_FOK", "emit", "no_intents",
           "Intent", "Event", "Strategy", "NumbaStrategy", "StrategyContext", "load_strategy"]


# -- numba flavour ------------------------------------------------------------------------
@njit(cache=True, inline="always")
def emit(out, n, sym, side, qty, limit_px=0.0, tag=0, tif=TIF_DAY):
    """Write intent number ``n`` into ``out``; return ``n + 1`` (the new count).

    ``side`` is ``BUY`` (+1) or ``SELL`` (-1); ``limit_px`` 0 means a market order. Past the
    end of ``out`` nothing is written but the count still grows, so the stage can count the
    excess in ``intents_over_max``.
    """
    if n < out.shape[0]:
        o = out[n]
        o.sym = sym
        o.side = side
        o.qty = qty
        o.limit_px = limit_px
        o.tag = tag
        o.tif = tif
    return n + 1


# ``_nrt=False`` like the generated step that calls it (procs.signal): it allocates nothing.
@njit(cache=True, _nrt=False)
def no_intents(ev, state, out):
    """The hook of an event kind a numba strategy ignores."""
    return 0


class NumbaStrategy:
    """Base of numba strategies. Set the hooks to ``@njit`` functions (module-level functions
    assigned as class attributes, or ``staticmethod(njit(...))``), declare ``PARAMS`` and
    ``MAX_INTENTS``, read parameters in ``__init__`` and return the state in ``make_state``."""

    PARAMS: tuple = ()
    MAX_INTENTS: int = 1
    on_quote = None
    on_trade = None
    on_bar = None

    def __init__(self, ctx: "StrategyContext"):
        self.ctx = ctx

    def make_state(self):
        """The ``state`` argument of every hook: an array or a tuple of arrays (built once)."""
        return np.zeros((len(self.ctx.symbols), 1))


class FunctionStrategy(NumbaStrategy):
    """A bare ``@njit`` function ``f(ev, state, out)`` as a numba strategy (every event kind)."""

    PARAMS = ("state_size", "max_intents")

    def __init__(self, ctx, fn):
        super().__init__(ctx)
        self.fn = fn
        self.state_size = ctx.int("state_size", 8, lo=1)
        self.MAX_INTENTS = ctx.int("max_intents", 1, lo=1, hi=1024)

    def make_state(self):
        return np.zeros((len(self.ctx.symbols), self.state_size))


# -- Python flavour -----------------------------------------------------------------------
class Intent(NamedTuple):
    """What a Python hook returns. ``limit_px`` None or 0: market. ``side``: BUY/SELL, or
    ``"buy"``/``"sell"``."""

    sym: int
    side: int
    qty: float
    limit_px: float | None = None
    tag: int = 0
    tif: int = TIF_DAY

    @classmethod
    def buy(cls, sym, qty, limit_px=None, tag=0, tif=TIF_DAY):
        return cls(sym, BUY, qty, limit_px, tag, tif)

    @classmethod
    def sell(cls, sym, qty, limit_px=None, tag=0, tif=TIF_DAY):
        return cls(sym, SELL, qty, limit_px, tag, tif)


class _EventBase(NamedTuple("_EventFields", [(n, object) for n in BOOK_EVENT.names] + [("index", int)])):
    __slots__ = ()

    @property
    def mid(self) -> float:
        """``(bid + ask) / 2`` (meaningful when ``valid``)."""
        return 0.5 * (self.bid + self.ask)

    @property
    def spread(self) -> float:
        return self.ask - self.bid


class Event(_EventBase):
    """A BOOK_EVENT as a named tuple for Python hooks: every BOOK_EVENT field by name, plus
    ``index`` (its row in the batch given to ``on_batch``) and the properties ``mid`` and
    ``spread``."""

    __slots__ = ()


class Strategy:
    """Base of Python strategies (all hooks optional; see the module doc)."""

    PARAMS: tuple = ()
    MAX_INTENTS: int = 4
    WARMING = WARMING

    def __init__(self, ctx: "StrategyContext"):
        self.ctx = ctx
        self.symbols = ctx.symbols

    def on_start(self) -> None:
        """Runs in the process that runs the stage, before the first event."""

    def on_batch(self, events: np.ndarray) -> None:
        """Optional: once per batch, before the per-event hooks (``events``: BOOK_EVENT rows)."""

    def on_quote(self, ev: Event):
        return None

    def on_trade(self, ev: Event):
        return None

    def on_bar(self, ev: Event):
        return None

    def warm_up(self) -> None:
        """Compile/prepare before the fork (supervisor); must not touch shared state."""

    def on_close(self) -> None:
        """Runs once after the last cycle."""


# -- context and loading -----------------------------------------------------------------
@dataclass
class StrategyContext:
    """What a strategy gets: the stage's name, the symbols, its parameters, a counter hook.

    Duck-compatible with ``StageContext`` for ``procs.int_param`` / ``procs.float_param``,
    so error messages name ``stages.<stage>.params.<key>``.
    """

    name: str
    symbols: tuple = ()
    params: Mapping = field(default_factory=lambda: MappingProxyType({}))
    counter_hook: object = None

    def param(self, key, default=None, kind=None):
        v = self.params.get(key, default)
        if kind is not None and v is not None:
            ok = isinstance(v, kind) and not (kind in (int, float, (int, float)) and isinstance(v, bool))
            if not ok:
                raise ValueError(f"{self.where(key)}: expected {getattr(kind, '__name__', kind)}, "
                                 f"got {type(v).__name__} {v!r}")
        return v

    def where(self, key: str) -> str:
        return f"stages.{self.name}.params.{key}"

    def int(self, key, default, lo=None, hi=None):
        return int_param(self, key, default, lo=lo, hi=hi)

    def float(self, key, default, lo=None, hi=None, lo_open=False):
        return float_param(self, key, default, lo=lo, hi=hi, lo_open=lo_open)

    def str(self, key, default):
        return self.param(key, default, kind=str)

    def bool(self, key, default):
        return self.param(key, default, kind=bool)

    def list(self, key, default, item=None):
        """A list parameter (a TOML array) whose items are ``item`` (default ``str``)."""
        item = item or builtins.str
        v = self.param(key, default, kind=(builtins.list, tuple))
        if v is not None and not all(isinstance(x, item) for x in v):
            raise ValueError(f"{self.where(key)}: expected a list of {item.__name__}, got {v!r}")
        return None if v is None else builtins.list(v)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to one of the stage's generic counters (e.g. ``"model_calls"``)."""
        if self.counter_hook is not None:
            self.counter_hook(name, n)


def _is_dispatcher(obj) -> bool:
    return hasattr(obj, "py_func") and hasattr(obj, "compile")


def load_strategy(path: str, where: str):
    """Import ``"package.module:Name"``; return ``(kind, obj)``, kind ``"numba"``,
    ``"function"`` or ``"python"``. ValueError naming ``where`` and the path otherwise."""
    if not isinstance(path, str) or path.count(":") != 1:
        raise ValueError(f"{where}: expected \"package.module:Name\", got {path!r}")
    import importlib

    module, _, name = path.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f"{where}: cannot import strategy module {module!r} ({path!r}): {e}") from None
    try:
        obj = getattr(mod, name)
    except AttributeError:
        raise ValueError(f"{where}: module {module!r} has no {name!r} ({path!r})") from None
    if isinstance(obj, type) and issubclass(obj, NumbaStrategy):
        hooks = [getattr(obj, h) for h in ("on_quote", "on_trade", "on_bar")]
        if not any(h is not None for h in hooks):
            raise ValueError(f"{where}: numba strategy {path!r} defines none of on_quote/on_trade/on_bar")
        for h_name, h in zip(("on_quote", "on_trade", "on_bar"), hooks):
            if h is not None and not _is_dispatcher(h):
                raise ValueError(f"{where}: {path}.{h_name} must be an @njit function, "
                                 f"got {type(h).__name__}")
        return "numba", obj
    if _is_dispatcher(obj):
        return "function", obj
    if isinstance(obj, type) and any(callable(getattr(obj, h, None)) for h in ("on_quote", "on_trade", "on_bar")):
        return "python", obj
    raise ValueError(f"{where}: {path!r} is not a strategy: expected a NumbaStrategy subclass, an @njit "
                     f"function f(ev, state, out), or a class with on_quote/on_trade/on_bar")


def intent_fields(r):
    """``(sym, side, qty, limit_px, tag, tif)`` of one Python intent (Intent or plain tuple).

    Bad values become ones the stage's validation rejects (counted in ``bad_intents``).
    """
    n = len(r)
    sym, side, qty = r[0], r[1], r[2]
    lim = r[3] if n > 3 else None
    tag = r[4] if n > 4 else 0
    tif = r[5] if n > 5 else TIF_DAY
    if isinstance(side, str):
        side = {"buy": BUY, "sell": SELL}.get(side.lower(), 0)
    try:
        sym = int(sym) if sym is not None and sym >= 0 else -1
        side = int(side)
        qty = float(qty)
        lim = 0.0 if lim is None else float(lim)
        tag = int(tag)
        tif = int(tif)
    except (TypeError, ValueError, OverflowError):
        return -1, 0, math.nan, 0.0, 0, 0
    return sym, side, qty, lim, tag, tif
