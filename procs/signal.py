"""The signal stage: book events in, intents out, decided by a pluggable strategy.

``SignalStage`` runs the strategy named by ``params.strategy`` (an import path; default the
EMA crossover ``procs.strategies.ema_cross:EmaCross``). The strategy API (numba and Python
flavours, hooks, intents, parameters) is documented in ``procs.strategy``; example
strategies are in ``procs.strategies``. ``EmaCrossSignal`` is the same stage pinned to the
EMA crossover with its historical counter names (``crosses_up`` / ``crosses_down``).

How each flavour runs:

* **numba**: at construction the stage writes a small module (in the jit-loop cache
  directory, named by a hash of the strategy's and the engine's sources) whose ``step``
  is a copy of ``strategy_step`` (the generic driver below) with the strategy's ``@njit``
  hooks bound as globals. ``kernel()`` returns that step, so the process's native duty
  loop (``pyrt_shm.jit_loop``) calls the strategy with no dispatch at all.
* **Python**: ``kernel()`` is None, so the process runs the Python ``AgentRunner``.
  ``do_work`` drains a batch with one jitted call (``take_events``), calls the hooks with
  ``Event`` named tuples, and writes every intent of the batch with one jitted call
  (``write_intents``). Histogram ``decide`` records each hook call's duration (for an ONNX
  strategy: copy of the tick's features + inference + decision). To keep the per-tick cost
  down, the hook-outcome counters (``quotes`` ... ``model_calls``) and the ``decide``
  samples are published with the batch's intents, or when the stage finds no work, or at
  least every millisecond (``events_in`` and ``latency`` are always immediate).

Per event (both flavours): histogram ``latency`` records ``now - sent_ns``; the event goes
to ``on_quote`` (a quote / book delta / snapshot with a valid book), ``on_trade`` or
``on_bar``, else it is counted in ``skipped``. Intents are validated, numbered (``seq``
gap-free from 0), stamped with the event's ``feed_ns``, ``ref_px`` (the mid; trade price
or bar close when the book is not valid) and ``sent_ns`` at publish.

Backpressure: the stage consumes an event only when the intent ring has ``MAX_INTENTS``
free slots for it (the strategy's bound on intents per event), so no intent is ever lost.

Counters (``GENERIC_COUNTERS``): ``events_in``, ``intents_out``, ``quotes``, ``trades``,
``bars`` (events handed to each hook), ``skipped``, ``warming`` (hook returned WARMING),
``buys``, ``sells``, ``bad_intents`` (invalid intent dropped), ``intents_over_max``,
``strategy_errors`` (a Python hook raised: the stage stops), ``model_calls`` (ONNX
inferences, via ``StrategyContext.count``).

Stage parameters: ``strategy`` (import path), ``batch`` (events per cycle, 256); every
other key goes to the strategy, which declares it in ``PARAMS``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import sys
import time

import numpy as np
from numba import njit

from layouts.market import TICK_BAR, TICK_BOOK_DELTA, TICK_BOOK_SNAPSHOT, TICK_QUOTE, TICK_TRADE
from layouts.orders import BUY, INTENT, ORDER_LIMIT, ORDER_MARKET, SELL, TIF_FOK
from layouts.ring import IDX_CAPACITY, IDX_HEAD
from pyrt_shm.hdr_recorder import hdr_record
from pyrt_shm.stage import Stage
from ringbuf import spsc
from ringbuf._atomics import monotonic_ns

from . import check_keys, int_param, publish, twin
from .strategy import (WARMING, Event, FunctionStrategy, Intent, Strategy, StrategyContext, intent_fields,
                       load_strategy)

GENERIC_COUNTERS = ("events_in", "intents_out", "quotes", "trades", "bars", "skipped", "warming",
                    "buys", "sells", "bad_intents", "intents_over_max", "strategy_errors", "model_calls")
(G_EVENTS_IN, G_INTENTS_OUT, G_QUOTES, G_TRADES, G_BARS, G_SKIPPED, G_WARMING, G_BUYS, G_SELLS,
 G_BAD_INTENTS, G_OVER_MAX, G_ERRORS, G_MODEL_CALLS) = range(len(GENERIC_COUNTERS))
N_GENERIC = len(GENERIC_COUNTERS)
P_BATCH, P_MAX_INTENTS, P_NSYM = 0, 1, 2
S_NEXT_SEQ = 0
#: columns of the Python flavour's pending-intent rows
_PE, _PSYM, _PSIDE, _PQTY, _PLIM, _PTAG, _PTIF = range(7)
DEFAULT_STRATEGY = "procs.strategies.ema_cross:EmaCross"


# -- shared jitted pieces -----------------------------------------------------------------
@njit(cache=True, inline="always")
def _bump(counters, cmap, g, n):
    c = cmap[g]
    if c >= 0 and n != 0:
        counters[c] += np.uint64(n)


@njit(cache=True, inline="always")
def _is_quote(kind):
    return kind == TICK_QUOTE or kind == TICK_BOOK_DELTA or kind == TICK_BOOK_SNAPSHOT


@njit(cache=True, inline="always")
def _ref_px(e):
    if e.valid != 0:
        return 0.5 * (e.bid + e.ask)
    if e.kind == TICK_TRADE:
        return e.trade_px
    if e.kind == TICK_BAR:
        return e.bar_close
    return 0.0


@njit(cache=True, inline="always")
def _intent_ok(sym, side, qty, lim, tif, nsym):
    return (0 <= sym < nsym and (side == BUY or side == SELL) and np.isfinite(qty) and qty > 0.0
            and np.isfinite(lim) and lim >= 0.0 and 0 <= tif <= TIF_FOK)


@njit(cache=True, inline="always")
def _write_intent(o, seq, e, sym, side, qty, lim, tag, tif, ref):
    o.seq = seq
    o.feed_ns = e.feed_ns
    o.sym = sym
    o.side = side
    o.order_type = ORDER_LIMIT if lim > 0.0 else ORDER_MARKET
    o.tif = tif
    o.qty = qty
    o.limit_px = lim
    o.ref_px = ref
    o.tag = tag


# -- numba flavour: the generic step -------------------------------------------------------
def strategy_step(in_ctl, in_recs, out_ctl, out_recs, hists, h_lat, counters, cmap, state, buf, st, pi):
    """Consume up to ``batch`` events through the strategy's hooks; return the number consumed.

    A template, never called here: ``build_numba_step`` copies this function's source into a
    generated module where ``ON_QUOTE``, ``ON_TRADE`` and ``ON_BAR`` are globals bound to the
    strategy's ``@njit`` hooks, and compiles it there with ``cache=True`` (numba inlines
    global functions as direct calls; passed as arguments they would make the step
    uncacheable) and ``_nrt=False``: the step allocates nothing, and with numba's reference
    counting its 10 array arguments (and the arrays of the strategy's state) cost atomic
    incref/decref pairs on every call, idle or not. The hooks keep their own flags (``SignalStage`` compiles them first, see
    ``compile_hooks``).
    """
    m = pi[P_MAX_INTENTS]
    avail = np.int64(spsc.poll(in_ctl, pi[P_BATCH]))
    if avail == 0:
        return 0
    room = np.int64(spsc.claim(out_ctl, avail * m))
    k = min(avail, room // m)
    if k == 0:
        return 0
    now = monotonic_ns()
    nsym = pi[P_NSYM]
    rd, wr = spsc.tail_of(in_ctl), spsc.head_of(out_ctl)
    n_out = 0
    quotes = trades = bars = skipped = warming = buys = sells = bad = over = 0
    for j in range(k):
        e = in_recs[spsc.slot(in_ctl, rd + np.uint64(j))]
        hdr_record(hists, h_lat, now - e.sent_ns)
        kind = e.kind
        if e.sym >= nsym:
            skipped += 1
            continue
        if kind == TICK_TRADE:
            trades += 1
            n = ON_TRADE(e, state, buf)  # noqa: F821 - global of the generated module
        elif kind == TICK_BAR:
            bars += 1
            n = ON_BAR(e, state, buf)  # noqa: F821
        elif _is_quote(kind) and e.valid != 0:
            quotes += 1
            n = ON_QUOTE(e, state, buf)  # noqa: F821
        else:
            skipped += 1
            continue
        if n < 0:
            warming += 1
            continue
        if n > m:
            over += n - m
            n = m
        if n == 0:
            continue
        ref = _ref_px(e)
        for i in range(n):
            b = buf[i]
            sym, side, qty, lim, tif = np.int64(b.sym), np.int64(b.side), b.qty, b.limit_px, np.int64(b.tif)
            if not _intent_ok(sym, side, qty, lim, tif, nsym):
                bad += 1
                continue
            o = out_recs[spsc.slot(out_ctl, wr + np.uint64(n_out))]
            _write_intent(o, st[S_NEXT_SEQ], e, sym, side, qty, lim, b.tag, tif, ref)
            st[S_NEXT_SEQ] += 1
            if side == BUY:
                buys += 1
            else:
                sells += 1
            n_out += 1
    spsc.release(in_ctl, k)
    publish(out_ctl, out_recs, n_out)
    _bump(counters, cmap, G_EVENTS_IN, k)
    _bump(counters, cmap, G_INTENTS_OUT, n_out)
    _bump(counters, cmap, G_QUOTES, quotes)
    _bump(counters, cmap, G_TRADES, trades)
    _bump(counters, cmap, G_BARS, bars)
    _bump(counters, cmap, G_SKIPPED, skipped)
    _bump(counters, cmap, G_WARMING, warming)
    _bump(counters, cmap, G_BUYS, buys)
    _bump(counters, cmap, G_SELLS, sells)
    _bump(counters, cmap, G_BAD_INTENTS, bad)
    _bump(counters, cmap, G_OVER_MAX, over)
    return k


#: names the step template uses, given to the generated module
_STEP_NAMES = ("np", "spsc", "hdr_record", "monotonic_ns", "publish", "_bump", "_is_quote", "_ref_px",
               "_intent_ok", "_write_intent", "TICK_TRADE", "TICK_BAR", "BUY", "P_MAX_INTENTS", "P_BATCH",
               "P_NSYM", "S_NEXT_SEQ", "G_EVENTS_IN", "G_INTENTS_OUT", "G_QUOTES", "G_TRADES", "G_BARS",
               "G_SKIPPED", "G_WARMING", "G_BUYS", "G_SELLS", "G_BAD_INTENTS", "G_OVER_MAX")


def step_globals() -> dict:
    """The module globals the generated step needs (see ``strategy_step``)."""
    g = globals()
    return {n: g[n] for n in _STEP_NAMES}


_STEP_TEMPLATE = '''"""Generated by procs.signal for the numba strategy {path}; do not edit.

Regenerated (under a new name) when the strategy's or the engine's sources change.
"""
from numba import njit

from procs.signal import step_globals
from procs.strategy import no_intents
from {module} import {name} as _S

globals().update(step_globals())
ON_QUOTE = {on_quote}
ON_TRADE = {on_trade}
ON_BAR = {on_bar}


@njit(cache=True, _nrt=False)
{step_source}'''


def _source_files(module: str):
    """Files whose change must regenerate a strategy's step: its package tree and the engine's
    jitted runtime (numba's cache does not notice a changed callee)."""
    files = set()
    mod = sys.modules[module]
    top = sys.modules[module.split(".")[0]]
    roots = list(getattr(top, "__path__", None) or [])                  # the strategy's top package
    roots.append(os.path.dirname(os.path.abspath(__file__)))          # procs/ (incl. strategies, indicators)
    for r in roots:
        for dirpath, dirnames, filenames in os.walk(r):
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "__"))]
            files.update(os.path.join(dirpath, f) for f in filenames if f.endswith(".py"))
    files.add(inspect.getfile(mod))
    for name in ("ringbuf._atomics", "ringbuf.spsc", "pyrt_shm.hdr_recorder"):
        files.add(inspect.getfile(sys.modules[name]))
    return sorted(files)


def build_numba_step(path: str, kind: str, obj):
    """Generate, import and return the cached ``step`` of a numba strategy (see module doc)."""
    from pyrt_shm.jit_loop import cache_dir

    module, _, name = path.partition(":")
    if kind == "function":
        hooks = ("_S", "_S", "_S")
    else:
        hooks = tuple(f"_S.{h}" if getattr(obj, h) is not None else "no_intents"
                      for h in ("on_quote", "on_trade", "on_bar"))
    source = _STEP_TEMPLATE.format(path=path, module=module, name=name, on_quote=hooks[0],
                                   on_trade=hooks[1], on_bar=hooks[2],
                                   step_source=inspect.getsource(strategy_step).replace(
                                       "def strategy_step(", "def step(", 1))
    h = hashlib.blake2b(source.encode(), digest_size=10)
    for f in _source_files(module):
        h.update(f.encode())
        try:
            with open(f, "rb") as fh:
                h.update(fh.read())
        except OSError:
            pass
    mod_name = f"pyrt_strategy_{h.hexdigest()}"
    if mod_name in sys.modules:
        return sys.modules[mod_name].step
    file = os.path.join(cache_dir(), mod_name + ".py")
    if not os.path.exists(file):
        tmp = f"{file}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            fh.write(source)
        os.replace(tmp, file)
    spec = importlib.util.spec_from_file_location(mod_name, file)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[mod_name]
        raise
    return mod.step


def compile_hooks(hooks, in_recs, state, buf) -> None:
    """Compile a numba strategy's hooks for the step's argument types before the step.

    Why: numba compiles a callee that sets no ``_nrt`` with its first caller's setting, and
    caches that version for every later caller. The generated step is ``_nrt=False``; compiled
    under it, a hook (or a helper it calls) that allocates would fail to compile, and one
    that returns an array or a view would hand a reference it never took to NRT callers
    (e.g. Python). Compiled here first, from Python, they keep numba's defaults, exactly as
    with an NRT step. A hook that does not compile is left alone: the step's first call
    raises its error as before.
    """
    from numba import typeof

    sig = (typeof(in_recs).dtype, typeof(state), typeof(buf))
    for h in hooks:
        if h is None or not hasattr(h, "compile"):
            continue
        try:
            h.compile(sig)
        except Exception:               # reported by the step's own compile (see above)
            pass


# -- Python flavour: batch in, batch out ---------------------------------------------------
# ``_nrt=False``: they allocate nothing, and without NRT numba also skips building a
# reference-counted array for each argument on the Python -> njit call.
@njit(cache=True, _nrt=False)
def take_events(in_ctl, in_recs, out_ctl, hists, h_lat, counters, cmap, batch, pi):
    """Copy up to ``batch`` events (as many as the intent ring has room for) and release them."""
    lim = min(pi[P_BATCH], batch.shape[0])
    m = pi[P_MAX_INTENTS]
    avail = np.int64(spsc.poll(in_ctl, lim))
    if avail == 0:
        return 0
    room = np.int64(spsc.claim(out_ctl, avail * m))
    k = min(avail, room // m)
    if k == 0:
        return 0
    now = monotonic_ns()
    rd = spsc.tail_of(in_ctl)
    for j in range(k):
        e = in_recs[spsc.slot(in_ctl, rd + np.uint64(j))]
        batch[j] = e
        hdr_record(hists, h_lat, now - e.sent_ns)
    spsc.release(in_ctl, k)
    _bump(counters, cmap, G_EVENTS_IN, k)
    return k


@njit(cache=True, _nrt=False)
def write_intents(out_ctl, out_recs, counters, cmap, batch, pend, n_pend, st, pi, add,
                  hists, h_dec, dec, n_dec):
    """Validate and publish the batch's pending intents; add the batch's counts; record the
    hooks' durations. Room was reserved by ``take_events``. Returns the intents published."""
    nsym = pi[P_NSYM]
    wr = spsc.head_of(out_ctl)
    n_out = 0
    buys = sells = bad = 0
    for i in range(n_pend):
        p = pend[i]
        sym, side, qty, lim, tif = np.int64(p[_PSYM]), np.int64(p[_PSIDE]), p[_PQTY], p[_PLIM], np.int64(p[_PTIF])
        if not _intent_ok(sym, side, qty, lim, tif, nsym):
            bad += 1
            continue
        e = batch[np.int64(p[_PE])]
        o = out_recs[spsc.slot(out_ctl, wr + np.uint64(n_out))]
        _write_intent(o, st[S_NEXT_SEQ], e, sym, side, qty, lim, np.int64(p[_PTAG]), tif, _ref_px(e))
        st[S_NEXT_SEQ] += 1
        if side == BUY:
            buys += 1
        else:
            sells += 1
        n_out += 1
    publish(out_ctl, out_recs, n_out)
    _bump(counters, cmap, G_INTENTS_OUT, n_out)
    _bump(counters, cmap, G_BUYS, buys)
    _bump(counters, cmap, G_SELLS, sells)
    _bump(counters, cmap, G_BAD_INTENTS, bad)
    for g in range(add.shape[0]):
        _bump(counters, cmap, g, add[g])
        add[g] = 0
    if h_dec >= 0:
        for i in range(n_dec):
            hdr_record(hists, h_dec, dec[i])
    return n_out


_QUOTE_KINDS = (TICK_QUOTE, TICK_BOOK_DELTA, TICK_BOOK_SNAPSHOT)


class SignalStage(Stage):
    """Book events -> strategy -> intents (see module doc and ``procs.strategy``)."""

    INPUTS = ("top",)
    OUTPUTS = ("intent",)
    HISTOGRAMS = ("latency", "decide")
    COUNTERS = GENERIC_COUNTERS
    #: class counter name -> generic counter it shows (subclasses with historical names)
    COUNTER_ALIASES: dict = {}
    STAGE_PARAMS = ("strategy", "batch")
    DEFAULT_STRATEGY = DEFAULT_STRATEGY
    FIXED_STRATEGY = False

    def __init__(self, ctx):
        super().__init__(ctx)
        where = f"stages.{ctx.name}.params.strategy"
        path = ctx.param("strategy", self.DEFAULT_STRATEGY, kind=str)
        if self.FIXED_STRATEGY and path != self.DEFAULT_STRATEGY:
            raise ValueError(f"{where}: {type(self).__name__} runs only {self.DEFAULT_STRATEGY}, got {path!r} "
                             f"(use procs.signal:SignalStage for other strategies)")
        self.strategy_path = path
        self.flavour, obj = load_strategy(path, where)
        strategy_params = FunctionStrategy.PARAMS if self.flavour == "function" else tuple(getattr(obj, "PARAMS", ()))
        check_keys(ctx, tuple(self.STAGE_PARAMS) + strategy_params)
        batch = int_param(ctx, "batch", 256, lo=1, hi=1 << 20)
        self.inp, self.out = ctx.input("top"), ctx.output("intent")
        self.h_lat = ctx.hist("latency")
        self.h_dec = ctx.hist_index.get("decide", -1)
        self.cmap = self._counter_map()
        sctx = StrategyContext(ctx.name, tuple(ctx.symbols),
                               {k: v for k, v in ctx.params.items() if k not in self.STAGE_PARAMS},
                               self._count)
        self.strategy = FunctionStrategy(sctx, obj) if self.flavour == "function" else obj(sctx)
        m = int(getattr(self.strategy, "MAX_INTENTS", 1))
        cap = int(self.out.ctl[IDX_CAPACITY])
        if not 1 <= m <= cap:
            raise ValueError(f"{where}: {path} may emit {m} intents per event (MAX_INTENTS); "
                             f"the intent ring holds {cap}")
        self.max_intents = m
        self.nsym = len(ctx.symbols)
        self.st = np.zeros(1, np.int64)
        self.pi = np.array([batch, m, self.nsym], np.int64)
        self.buf = np.zeros(m, INTENT)
        if self.flavour == "python":
            self._setup_python(batch, m)
            self.step = None
            self.state = None
        else:
            self.state = self.strategy.make_state()
            self.step = build_numba_step(path, self.flavour, obj)
            hooks = (obj,) if self.flavour == "function" else (obj.on_quote, obj.on_trade, obj.on_bar)
            compile_hooks(hooks, self.inp.recs, self.state, self.buf)

    # -- counters --------------------------------------------------------------------------
    def _counter_map(self) -> np.ndarray:
        cmap = np.full(N_GENERIC, -1, np.int64)
        names = list(self.COUNTERS)
        for g, gname in enumerate(GENERIC_COUNTERS):
            if gname in names:
                cmap[g] = names.index(gname)
        for alias, gname in self.COUNTER_ALIASES.items():
            cmap[GENERIC_COUNTERS.index(gname)] = names.index(alias)
        return cmap

    def _count(self, name: str, n: int = 1) -> None:
        """``StrategyContext.count``: deferred with the stage's own counts (Python flavour)."""
        g = GENERIC_COUNTERS.index(name)
        if self.flavour == "python":
            self._acc[g] += int(n)
            return
        c = self.cmap[g]
        if c >= 0:
            self.ctx.counters[c] += np.uint64(n)

    # -- numba flavour ---------------------------------------------------------------------
    def _args(self):
        ctx = self.ctx
        return (self.inp.ctl, self.inp.recs, self.out.ctl, self.out.recs, ctx.hists, self.h_lat,
                ctx.counters, self.cmap, self.state, self.buf, self.st, self.pi)

    def kernel(self):
        """(step, args, takes_now) for the native duty loop; None for a Python strategy."""
        if self.step is None:
            return None
        return self.step, self._args(), False

    def do_work(self, now_ns: int) -> int:
        if self.step is None:
            return self._do_work_python()
        head = int(self.out.ctl[IDX_HEAD])
        k = self.step(*self._args())
        if k and int(self.out.ctl[IDX_HEAD]) != head:
            self.wake_consumers()
        return k

    def warm_up(self) -> None:
        ctx = self.ctx
        if self.step is None:
            self._warm_up_python()
            return
        st = self.state
        state = tuple(a.copy() for a in st) if isinstance(st, tuple) else st.copy()
        self.step(twin(self.inp.ctl), twin(self.inp.recs, 2), twin(self.out.ctl), twin(self.out.recs, 2),
                  twin(ctx.hists, 1), 0, twin(ctx.counters), self.cmap.copy(), state, self.buf.copy(),
                  twin(self.st), self.pi.copy())

    # -- Python flavour --------------------------------------------------------------------
    def _setup_python(self, batch: int, m: int) -> None:
        s = self.strategy
        base = Strategy

        def hook(name):
            f = getattr(s, name, None)
            if f is None or getattr(type(s), name, None) is getattr(base, name, object()):
                return None          # not overridden: skip the call
            return f

        self._on_quote, self._on_trade, self._on_bar = hook("on_quote"), hook("on_trade"), hook("on_bar")
        self._on_batch = hook("on_batch")
        self._batch = np.zeros(batch, self.inp.recs.dtype)
        self._pend = np.zeros((batch * m, 7))
        self._add = np.zeros(N_GENERIC, np.int64)
        self._acc = [0] * N_GENERIC            # counts not yet in shared memory
        self._dec = np.zeros(max(batch, 1024), np.int64)
        self._n_dec = 0
        self._last_flush = time.perf_counter_ns()

    #: deferred counts and hook durations reach shared memory at least this often
    FLUSH_NS = 1_000_000

    def _flush(self, n_pend: int = 0) -> None:
        """Publish pending intents, deferred counter increments and hook durations (one jitted
        call). Called when a batch produced intents, when the stage finds no work, when the
        duration buffer is nearly full, and at least every ``FLUSH_NS``."""
        ctx, acc, add = self.ctx, self._acc, self._add
        for g in range(N_GENERIC):
            add[g] = acc[g]
            acc[g] = 0
        head = int(self.out.ctl[IDX_HEAD])
        write_intents(self.out.ctl, self.out.recs, ctx.counters, self.cmap, self._batch, self._pend, n_pend,
                      self.st, self.pi, add, ctx.hists, self.h_dec, self._dec, self._n_dec)
        self._n_dec = 0
        self._last_flush = time.perf_counter_ns()
        if int(self.out.ctl[IDX_HEAD]) != head:
            self.wake_consumers()

    def _do_work_python(self) -> int:
        ctx = self.ctx
        k = int(take_events(self.inp.ctl, self.inp.recs, self.out.ctl, ctx.hists, self.h_lat, ctx.counters,
                            self.cmap, self._batch, self.pi))
        if k == 0:
            if self._n_dec or any(self._acc):
                self._flush()
            return 0
        events = self._batch[:k]
        n_pend = 0
        n_dec = self._n_dec
        quotes = trades = bars = skipped = warming = over = 0
        nsym, m = self.nsym, self.max_intents
        on_quote, on_trade, on_bar = self._on_quote, self._on_trade, self._on_bar
        pend, dec = self._pend, self._dec
        clock = time.perf_counter_ns
        j = -1
        failed = False
        try:
            if self._on_batch is not None:
                self._on_batch(events)
            for j, row in enumerate(events.tolist()):
                sym, kind = row[3], row[4]
                if sym >= nsym:
                    skipped += 1
                    continue
                if kind == TICK_TRADE:
                    trades += 1
                    f = on_trade
                elif kind == TICK_BAR:
                    bars += 1
                    f = on_bar
                elif kind in _QUOTE_KINDS and row[5]:
                    quotes += 1
                    f = on_quote
                else:
                    skipped += 1
                    continue
                if f is None:
                    continue
                ev = Event(*row, j)
                t0 = clock()
                r = f(ev)
                dec[n_dec] = clock() - t0
                n_dec += 1
                if r is None:
                    continue
                if type(r) is int:
                    if r == WARMING:
                        warming += 1
                    continue
                if isinstance(r, Intent) or (isinstance(r, tuple) and r and not isinstance(r[0], (tuple, list))):
                    r = (r,)
                n_ev = 0
                for it in r:
                    if n_ev >= m:
                        over += 1
                        continue
                    n_ev += 1
                    pend[n_pend] = (j, *intent_fields(it))
                    n_pend += 1
        except Exception as e:
            failed = True
            self._acc[G_ERRORS] += 1
            e.add_note(f"in strategy {self.strategy_path} (stage {self.name!r}), event {j} of the batch")
            raise
        finally:
            acc = self._acc
            acc[G_QUOTES] += quotes
            acc[G_TRADES] += trades
            acc[G_BARS] += bars
            acc[G_SKIPPED] += skipped
            acc[G_WARMING] += warming
            acc[G_OVER_MAX] += over
            self._n_dec = n_dec
            if (failed or n_pend or n_dec + self._batch.shape[0] > dec.shape[0]
                    or clock() - self._last_flush >= self.FLUSH_NS):
                self._flush(n_pend)
        return k

    def _warm_up_python(self) -> None:
        ctx = self.ctx
        take_events(twin(self.inp.ctl), twin(self.inp.recs, 2), twin(self.out.ctl), twin(ctx.hists, 1), 0,
                    twin(ctx.counters), self.cmap.copy(), self._batch.copy(), self.pi.copy())
        write_intents(twin(self.out.ctl), twin(self.out.recs, 2), twin(ctx.counters), self.cmap.copy(),
                      self._batch.copy(), self._pend.copy(), 0, twin(self.st), self.pi.copy(),
                      self._add.copy(), twin(ctx.hists, 1), 0, self._dec.copy(), 0)
        self.strategy.warm_up()

    def on_start(self) -> None:
        if self.flavour == "python":
            self.strategy.on_start()

    def on_close(self) -> None:
        if self.flavour == "python":
            self._flush()
            self.strategy.on_close()


class EmaCrossSignal(SignalStage):
    """The signal stage pinned to the EMA crossover (``procs.strategies.ema_cross``), with the
    historical counters. Params: fast, slow, qty, warmup, batch (and ``strategy``, which may
    only name the EMA crossover, so a topology written for SignalStage runs unchanged)."""

    HISTOGRAMS = ("latency",)
    COUNTERS = ("events_in", "intents_out", "crosses_up", "crosses_down", "warming")
    COUNTER_ALIASES = {"crosses_up": "buys", "crosses_down": "sells"}
    FIXED_STRATEGY = True
    PARAMS = ("fast", "slow", "qty", "warmup", "batch", "strategy")

    @property
    def fast(self):
        return self.strategy.fast

    @property
    def slow(self):
        return self.strategy.slow

    @property
    def count(self):
        return self.strategy.count

    @property
    def sign(self):
        return self.strategy.sign
