"""Replay of recorded market data: ``ReplayFeed`` (ticks -> the book) and ``ReplayBars`` (bars -> the signal).

Both publish the records of a ``pyrt_shm.research.data.MarketData`` (loaded from ``path``
with ``load_ticks``, or handed in by the backtest runner as the ``data`` param, which TOML
cannot express) in time order, from a jitted step, so they run in the process's native loop.
The data time of a record is its ``exch_ns`` (unix ns); records are never reordered.

**Clocks** (``clock``):

* ``"wall"`` (the live engine; default): paced on the engine's clock. ``speed`` 1 replays at
  the recorded pace, ``x`` at x times it, 0 as fast as the ring takes them. Paced record ``i``
  is due at ``t0 + (exch_ns[i] - exch_ns[0]) / speed`` (``t0``: the first cycle's ``now``) and
  stamped ``recv_ns`` = that due time, so latency downstream includes any lag (coordinated
  omission corrected; histogram ``lag`` records ``now - due``); unpaced records get the clock
  at publication.
* ``"data"`` (backtests): the duty loop's ``now`` *is* data time. A step publishes the
  records with ``exch_ns <= now`` (at most ``batch``), stamped ``recv_ns = exch_ns``;
  ``timer()`` tells the loop the time of the next record, so the loop can step its clock
  there; with ``span`` = N > 1, of the N-th next record: the clock then covers N records a
  step (faster; an order decided on one of them meets the book as it is after the N-th).

``seq`` is gap-free from 0 over the records published (synthetic ones included). Records of
symbols that are not in the engine's symbol table are skipped and counted (``skipped``).
When the data are exhausted, counter ``finished`` becomes 1 (``pyrt run`` stops on it).

**ReplayFeed** (OUTPUTS ``tick``) replays trades, quotes and L2 book records for the book.
The book needs quotes to have a top of book, and the sim venue fills only against one, so
for trades-only data it writes a **synthetic book** before each trade: a one-level snapshot
(two TICK_BOOK_SNAPSHOT records, ``BOOK_FIRST`` bid then ``BOOK_LAST`` ask) at ``bid = p (1 -
h)``, ``ask = p (1 + h)`` with ``h = spread_bps / 2e4``, both sized ``quote_size`` (0: the
trade's size). A snapshot rather than a quote: it replaces both sides whole, so no level of
an earlier trade's book stays behind as stale depth for the venue to fill against.
``synthetic_quotes``: ``"auto"`` (default: when the data have trades and neither quotes nor
book records), ``true``, ``false``. Bars are refused: replay them with ReplayBars (the book
forwards a bar to the strategy but leaves the top of book alone, and the venue needs one).

**ReplayBars** (OUTPUTS ``top``: BOOK_EVENTs straight to the signal; it owns the ``tops``
table, so the topology has no book) replays bar data. Why not through the book: a bar is not
book data (no levels, no sides): the book forwards a bar record to the strategy but sets no
top of book from it, so the sim venue would have nothing to fill against, and rebuilding a
bar from synthetic trades would lose its VWAP. Per bar, at its time (the
file's label; Alpaca labels a bar by its start), in this order:

1. the symbol's top of book becomes the bar's close quote: ``bid = c (1 - h)``, ``ask = c (1 +
   h)`` (``h = spread_bps / 2e4``; default 0: bid = ask = close, so market orders fill at the
   close, before the exec's ``slippage_bps``), sizes ``quote_size`` (0: the bar's volume; a
   bar without volume leaves the top invalid: nothing can trade on it), ``last`` = close;
   written to ``tops`` under its seqlock (risk marks positions to its mid, the sim venue
   fills against it);
2. a BOOK_EVENT ``kind = TICK_QUOTE`` with that top (for ``on_quote`` strategies: their mid
   is the close), when the top is valid;
3. a BOOK_EVENT ``kind = TICK_BAR``: ``bar_open/high/low/close/volume/vwap`` from the file
   (vwap 0 if the file has none), ``bar_start_ns`` = its time, ``bar_end_ns`` = start +
   the bar period (``bar_period_s``; 0 = the smallest gap between two bars of the symbol),
   ``bar_count`` 0 (files' trade counts do not fit a TICK), ``bar_type`` BAR_TIME,
   ``bar_spec`` ``VENUE_BAR_SPEC`` (0xFFFF: a bar the venue computed, as the book marks the
   venue bars it forwards; bars the book builds from trades carry their spec's index).

Params (both): ``path`` (file or list of files; a relative path that does not exist in the
current directory is taken from the repository root), ``data`` (programmatic), ``clock``,
``speed`` (1.0), ``batch`` (256 data records per step; fewer if the output ring is smaller;
at least ``span``), ``span`` (1), ``spread_bps`` (ReplayFeed 1.0, ReplayBars 0),
``quote_size`` (0), ``unsorted`` ("sort" | "reject", for ``path``); ReplayFeed:
``synthetic_quotes``; ReplayBars: ``bar_period_s``.

Counters: ``ticks_out`` (records published), ``records_in`` / ``bars_in`` (data records
consumed), ``skipped``, ``finished``; ReplayFeed: ``synthetic`` (books it made), ``trades``,
``quotes``, ``book`` (deltas and snapshot records of the data); ReplayBars: ``bars``,
``no_volume`` (bars that left the top invalid).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from layouts.market import (BOOK_FIRST, BOOK_LAST, SIDE_ASK, SIDE_BID, TICK, TICK_BAR, TICK_BOOK_DELTA,
                            TICK_BOOK_SNAPSHOT, TICK_QUOTE, TICK_TRADE, TOP)
from layouts.ring import IDX_CAPACITY
from pyrt_shm.hdr_recorder import hdr_record
from pyrt_shm.stage import Stage
from ringbuf import spsc
from ringbuf._atomics import monotonic_ns
from ringbuf.seqlock import write_begin, write_end

from . import check_keys, float_param, int_param, publish, twin
from .bars import bar_record_fields
from .book_events import top_event, top_touch

NEVER = np.iinfo(np.int64).max
CLOCK_WALL, CLOCK_DATA = 0, 1
CLOCKS = {"wall": CLOCK_WALL, "data": CLOCK_DATA}
# counters: both stages use the first four slots alike
C_RECORDS_OUT, C_RECORDS_IN, C_SKIPPED, C_FINISHED = 0, 1, 2, 3
C_SYNTHETIC, C_TRADES, C_QUOTES, C_BOOK = 4, 5, 6, 7          # ReplayFeed
C_BARS, C_NO_VOLUME = 4, 5                                    # ReplayBars
# state, int params, float params
S_CURSOR, S_SEQ, S_STARTED, S_T0, S_D0, S_FINISHED = range(6)
N_STATE = 6
P_CLOCK, P_BATCH, P_SYNTH, P_SPAN = 0, 1, 2, 3
F_SPEED, F_HALF_SPREAD, F_QUOTE_SIZE = 0, 1, 2


# -- shared pieces ---------------------------------------------------------------------------------

@njit(cache=True, _nrt=False)
def next_time(now, data, st, pi):
    """A loop timer: the data time of the ``span``-th record still to publish (the next one
    when ``span`` is 1), or NEVER when there is none."""
    i = st[S_CURSOR]
    n = data.shape[0]
    if st[S_FINISHED] != 0 or i >= n:
        return NEVER
    return data[min(i + pi[P_SPAN] - 1, n - 1)].exch_ns


@njit(cache=True, inline="always")
def _start(now, data, st):
    if st[S_STARTED] == 0:
        st[S_STARTED] = 1
        st[S_T0] = now
        st[S_D0] = data[st[S_CURSOR]].exch_ns if st[S_CURSOR] < data.shape[0] else 0


@njit(cache=True, inline="always")
def _paced_ns(d, st, speed):
    """When record ``d`` is due on the wall clock at ``speed`` > 0 (see the module doc)."""
    return st[S_T0] + np.int64((d.exch_ns - st[S_D0]) / speed)


@njit(cache=True, inline="always")
def _is_due(now, d, st, clock, speed):
    """Whether record ``d`` may be published at ``now`` (see the module doc's clocks)."""
    if clock == CLOCK_DATA:
        return d.exch_ns <= now
    if speed > 0.0:
        return _paced_ns(d, st, speed) <= now
    return True


@njit(cache=True, inline="always")
def _finish(data, st, counters, i):
    st[S_CURSOR] = i
    if i >= data.shape[0] and st[S_FINISHED] == 0:
        st[S_FINISHED] = 1
        counters[C_FINISHED] = np.uint64(1)


@njit(cache=True, inline="always")
def _ready(now, data, st, counters, clock, speed):
    """Whether a step has work at ``now``: data left (else mark the end) and the next record due."""
    if st[S_FINISHED] != 0:
        return False
    i = st[S_CURSOR]
    if i >= data.shape[0]:
        _finish(data, st, counters, i)
        return False
    _start(now, data, st)
    return _is_due(now, data[i], st, clock, speed)


@njit(cache=True, inline="always")
def _batch(ctl, st, clock, speed):
    """``(stamp, head, seq)`` of a step's batch: the clock at publication for unpaced
    wall-clock records (read once: a batch leaves at one instant), the cursor of the first
    claimed slot, the first record's ``seq``."""
    stamp = monotonic_ns() if clock == CLOCK_WALL and speed <= 0.0 else 0
    return stamp, spsc.head_of(ctl), np.uint64(st[S_SEQ])


@njit(cache=True, inline="always")
def _recv_time(now, d, st, clock, speed, stamp, hists, h_lag):
    """``(due, recv_ns)`` of record ``d`` at ``now`` (see the module doc's clocks): data time on
    the data clock; the paced due time on the wall clock, its lag recorded when it is due;
    ``stamp`` (the clock at publication) when unpaced."""
    if clock == CLOCK_DATA:
        return d.exch_ns <= now, d.exch_ns
    if speed > 0.0:
        recv = _paced_ns(d, st, speed)
        if recv > now:
            return False, recv
        hdr_record(hists, h_lag, now - recv)
        return True, recv
    return True, stamp


@njit(cache=True, inline="always")
def _engine_sym(smap, sym):
    """The engine's symbol id of a data symbol id, or -1 when the engine does not trade it."""
    return smap[sym] if sym < smap.shape[0] else -1


@njit(cache=True, inline="always")
def _count(data, st, counters, i, published, used, skipped):
    """Add a step's common counts and move the cursor to ``i`` (last: ``finished`` is set only
    after the counts it ends are in)."""
    counters[C_RECORDS_OUT] += np.uint64(published)
    counters[C_RECORDS_IN] += np.uint64(used)
    counters[C_SKIPPED] += np.uint64(skipped)
    _finish(data, st, counters, i)


# -- ReplayFeed ------------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _copy_tick(r, d, seq, recv, s):
    r.seq = seq
    r.recv_ns = recv
    r.exch_ns = d.exch_ns
    r.sym = s
    r.kind = d.kind
    r.flags = d.flags
    r.price = d.price
    r.size = d.size
    r.bid = d.bid
    r.ask = d.ask
    r.bid_size = d.bid_size
    r.ask_size = d.ask_size


@njit(cache=True, inline="always")
def _level(r, seq, recv, exch, s, flags, price, size):
    """One record of a synthetic one-level book snapshot."""
    r.seq = seq
    r.recv_ns = recv
    r.exch_ns = exch
    r.sym = s
    r.kind = TICK_BOOK_SNAPSHOT
    r.flags = flags
    r.price = price
    r.size = size
    r.bid = 0.0
    r.ask = 0.0
    r.bid_size = 0.0
    r.ask_size = 0.0


@njit(cache=True, _nrt=False)
def replay_step(now, ctl, recs, data, smap, hists, h_lag, counters, st, pi, pf):
    """Publish the data records due at ``now`` (at most ``batch``); return data records consumed."""
    clock, batch, synth = pi[P_CLOCK], pi[P_BATCH], pi[P_SYNTH]
    speed = pf[F_SPEED]
    if not _ready(now, data, st, counters, clock, speed):
        return 0                                     # done, or nothing due: claim nothing
    n = data.shape[0]
    i = st[S_CURSOR]
    per = 3 if synth != 0 else 1                     # a trade may need a synthetic book first
    k = np.int64(spsc.claim(ctl, batch * per))
    if k < per:
        return 0
    stamp, start, seq = _batch(ctl, st, clock, speed)
    half, qsz = pf[F_HALF_SPREAD], pf[F_QUOTE_SIZE]
    j = 0
    used = 0
    skipped = trades = quotes = book = synthetic = 0
    while i < n and used < batch and j + per <= k:
        d = data[i]
        due, recv = _recv_time(now, d, st, clock, speed, stamp, hists, h_lag)
        if not due:
            break
        i += 1
        used += 1
        s = _engine_sym(smap, d.sym)
        if s < 0:
            skipped += 1
            continue
        kind = d.kind
        if kind == TICK_TRADE:
            trades += 1
            if synth != 0:
                sz = qsz if qsz > 0.0 else d.size
                _level(recs[spsc.slot(ctl, start + np.uint64(j))], seq + np.uint64(j), recv, d.exch_ns, s,
                       SIDE_BID | BOOK_FIRST, d.price - d.price * half, sz)
                _level(recs[spsc.slot(ctl, start + np.uint64(j + 1))], seq + np.uint64(j + 1), recv, d.exch_ns,
                       s, SIDE_ASK | BOOK_LAST, d.price + d.price * half, sz)
                j += 2
                synthetic += 1
        elif kind == TICK_QUOTE:
            quotes += 1
        else:
            book += 1
        _copy_tick(recs[spsc.slot(ctl, start + np.uint64(j))], d, seq + np.uint64(j), recv, s)
        j += 1
    if j > 0:
        spsc.commit(ctl, j)
        st[S_SEQ] += j
    counters[C_SYNTHETIC] += np.uint64(synthetic)
    counters[C_TRADES] += np.uint64(trades)
    counters[C_QUOTES] += np.uint64(quotes)
    counters[C_BOOK] += np.uint64(book)
    _count(data, st, counters, i, j, used, skipped)
    return used


# -- ReplayBars ------------------------------------------------------------------------------------

@njit(cache=True, _nrt=False)
def bars_step(now, ctl, recs, data, smap, period, top_seqs, top_rows, tops, hists, h_lag, counters, st, pi, pf):
    """Publish the bars due at ``now`` (top, quote event, bar event); return bars consumed."""
    clock, batch = pi[P_CLOCK], pi[P_BATCH]
    speed = pf[F_SPEED]
    if not _ready(now, data, st, counters, clock, speed):
        return 0
    n = data.shape[0]
    i = st[S_CURSOR]
    k = np.int64(spsc.claim(ctl, batch * 2))
    if k < 2:
        return 0
    stamp, start, seq = _batch(ctl, st, clock, speed)
    half, qsz = pf[F_HALF_SPREAD], pf[F_QUOTE_SIZE]
    j = 0
    used = 0
    skipped = bars = no_volume = 0
    while i < n and used < batch and j + 2 <= k:
        d = data[i]
        due, recv = _recv_time(now, d, st, clock, speed, stamp, hists, h_lag)
        if not due:
            break
        i += 1
        used += 1
        s = _engine_sym(smap, d.sym)
        if s < 0:
            skipped += 1
            continue
        c = d.price
        size = qsz if qsz > 0.0 else d.size
        top = tops[s]
        if size > 0.0:
            top.bid = c - c * half
            top.ask = c + c * half
            top.bid_size = size
            top.ask_size = size
            top.valid = 1
        else:
            no_volume += 1
            top.bid_size = 0.0
            top.ask_size = 0.0
            top.valid = 0
        top.last = c
        top.updated_ns = recv
        top.updates += np.uint64(1)
        write_begin(top_seqs, s)
        top_rows[s] = top
        write_end(top_seqs, s)
        micro, imb = top_touch(top)
        if top.valid != 0:
            top_event(recs[spsc.slot(ctl, start + np.uint64(j))], seq + np.uint64(j), recv, s, TICK_QUOTE, top,
                      micro, imb)
            j += 1
        e = recs[spsc.slot(ctl, start + np.uint64(j))]
        top_event(e, seq + np.uint64(j), recv, s, TICK_BAR, top, micro, imb)
        bar_record_fields(e, d, d.exch_ns + period[s])
        j += 1
        bars += 1
    if j > 0:
        publish(ctl, recs, j)
        st[S_SEQ] += j
    counters[C_BARS] += np.uint64(bars)
    counters[C_NO_VOLUME] += np.uint64(no_volume)
    _count(data, st, counters, i, j, used, skipped)
    return used


# -- the stages ---------------------------------------------------------------------------------------

def _market_data(ctx, unsorted: str):
    """``(ticks, names of their symbol ids, source)`` from the ``data`` or ``path`` param."""
    from pyrt_shm.research.data import DataError, MarketData, load_ticks, resolve

    where = f"stages.{ctx.name}.params"
    data, path = ctx.params.get("data"), ctx.params.get("path")
    if (data is None) == (path is None):
        raise ValueError(f"{where}: give exactly one of path (a data file, or a list of them) and data "
                         f"(a MarketData, given by the backtest runner)")
    if data is not None:
        if isinstance(data, MarketData):
            return data.ticks, tuple(data.symbols), data.source
        if isinstance(data, np.ndarray) and data.dtype == TICK:
            return data, tuple(ctx.symbols), "<array>"
        raise ValueError(f"{where}.data: expected a MarketData or an array of TICK records, got "
                         f"{type(data).__name__}")
    if not (isinstance(path, str) or (isinstance(path, (list, tuple)) and path
                                      and all(isinstance(p, str) for p in path))):
        raise ValueError(f"{where}.path: expected a file name or a list of them, got {path!r}")
    try:
        paths = [resolve(p) for p in path] if isinstance(path, (list, tuple)) else resolve(path)
        md = load_ticks(paths, sort=unsorted)
    except DataError as e:
        raise ValueError(f"{where}.path: {e}") from None
    return md.ticks, tuple(md.symbols), md.source


class _Replay(Stage):
    """What both replay stages share: the data, the symbol map, pacing, the loop timer."""

    HISTOGRAMS = ("lag",)
    COMMON_PARAMS = ("path", "data", "clock", "speed", "batch", "span", "spread_bps", "quote_size", "unsorted")
    DEFAULT_SPREAD_BPS = 0.0

    def __init__(self, ctx, extra_params=()):
        super().__init__(ctx)
        check_keys(ctx, self.COMMON_PARAMS + tuple(extra_params))
        clock = ctx.param("clock", "wall", kind=str)
        if clock not in CLOCKS:
            raise ValueError(f"stages.{ctx.name}.params.clock: 'wall' (the live engine) or 'data' (backtests), "
                             f"got {clock!r}")
        unsorted = ctx.param("unsorted", "sort", kind=str)
        if unsorted not in ("sort", "reject"):
            raise ValueError(f"stages.{ctx.name}.params.unsorted: 'sort' or 'reject', got {unsorted!r}")
        self.speed = float_param(ctx, "speed", 1.0, lo=0.0)
        self.batch = int_param(ctx, "batch", 256, lo=1, hi=1 << 20)
        self.span = int_param(ctx, "span", 1, lo=1, hi=1 << 20)
        self.batch = max(self.batch, self.span)
        self.spread_bps = float_param(ctx, "spread_bps", self.DEFAULT_SPREAD_BPS, lo=0.0, hi=10_000.0)
        self.quote_size = float_param(ctx, "quote_size", 0.0, lo=0.0)
        ticks, names, self.source = _market_data(ctx, unsorted)
        self.data = np.ascontiguousarray(ticks)
        self.names = names
        index = {s: i for i, s in enumerate(ctx.symbols)}
        self.smap = np.array([index.get(s, -1) for s in names] or [-1], np.int64)
        self.unknown = [s for s in names if s not in index]
        self.clock = CLOCKS[clock]
        self.st = np.zeros(N_STATE, np.int64)
        self.pf = np.array([self.speed, self.spread_bps / 2e4, self.quote_size])
        self.h_lag = ctx.hist("lag")
        if len(ctx.symbols) == 0:
            raise ValueError(f"stages.{ctx.name}: the feed needs at least one symbol (engine.symbols)")

    def _fit_batch(self, ring, per: int) -> None:
        """A step claims ``batch * per`` slots at once: no more than the ring holds."""
        cap = int(ring.ctl[IDX_CAPACITY])
        if self.batch * per > cap:
            self.batch = max(cap // per, 1)

    def timer(self):
        """``(fn, args)``: ``fn(now, *args)`` is the data time of the next record, or NEVER (a
        data-clock loop steps its clock there; see ``pyrt_shm.jit_loop``)."""
        return next_time, (self.data, self.st, self.pi)

    @property
    def cursor(self) -> int:
        """Data records consumed so far."""
        return int(self.st[S_CURSOR])

    def do_work(self, now_ns: int) -> int:
        step, args, _ = self.kernel()
        k = step(now_ns, *args)
        if k:
            self.wake_consumers()
        return k


class ReplayFeed(_Replay):
    """Trades, quotes and book records from a file or an array, for the book (see module doc)."""

    OUTPUTS = ("tick",)
    COUNTERS = ("ticks_out", "records_in", "skipped", "finished", "synthetic", "trades", "quotes", "book")
    DEFAULT_SPREAD_BPS = 1.0

    def __init__(self, ctx):
        super().__init__(ctx, extra_params=("synthetic_quotes",))
        kinds = self.data["kind"]
        if np.any(kinds == TICK_BAR):
            raise ValueError(f"stages.{ctx.name}: the data ({self.source}) hold bars: replay bars with "
                             f"procs.replay_feed:ReplayBars, which gives the venue a top of book (the bar's "
                             f"close) and the signal its events directly (see config/backtest-bars.toml)")
        synth = ctx.param("synthetic_quotes", "auto", kind=(str, bool))
        if synth == "auto":
            has_quotes = bool(np.any(np.isin(kinds, (TICK_QUOTE, TICK_BOOK_DELTA, TICK_BOOK_SNAPSHOT))))
            synth = bool(np.any(kinds == TICK_TRADE)) and not has_quotes
        elif not isinstance(synth, bool):
            raise ValueError(f"stages.{ctx.name}.params.synthetic_quotes: true, false or \"auto\", got {synth!r}")
        if synth and self.spread_bps <= 0.0:
            raise ValueError(f"stages.{ctx.name}.params.spread_bps: synthetic books need a spread > 0 (the book "
                             f"refuses a crossed or locked book), got {self.spread_bps}")
        self.synthetic_quotes = synth
        self.out = ctx.output("tick")
        self._fit_batch(self.out, 3 if synth else 1)
        self.pi = np.array([self.clock, self.batch, int(synth), self.span], np.int64)

    def _args(self):
        ctx = self.ctx
        return (self.out.ctl, self.out.recs, self.data, self.smap, ctx.hists, self.h_lag, ctx.counters,
                self.st, self.pi, self.pf)

    def kernel(self):
        """(step, args, takes_now) for the process's jitted duty loop (see pyrt_shm.jit_loop)."""
        return replay_step, self._args(), True

    def warm_up(self) -> None:
        ctx = self.ctx
        replay_step(0, twin(self.out.ctl), twin(self.out.recs, 2), self.data[:0], self.smap.copy(),
                    twin(ctx.hists, 1), 0, twin(ctx.counters), twin(self.st), self.pi.copy(), self.pf.copy())
        next_time(0, self.data[:0], twin(self.st), self.pi.copy())


class ReplayBars(_Replay):
    """Bars from a file or an array, as tops and BOOK_EVENTs for the signal (see module doc)."""

    OUTPUTS = ("top",)
    TABLES = {"tops": (TOP, "symbols")}
    #: ``ticks_out``: records published (BOOK_EVENTs: a quote and a bar event per bar; the name
    #: the run report reads for a feed); ``bars_in``: data records consumed
    COUNTERS = ("ticks_out", "bars_in", "skipped", "finished", "bars", "no_volume")

    def __init__(self, ctx):
        super().__init__(ctx, extra_params=("bar_period_s",))
        if len(self.data) and not np.all(self.data["kind"] == TICK_BAR):
            raise ValueError(f"stages.{ctx.name}: ReplayBars replays bars only, but the data ({self.source}) "
                             f"also hold other records: replay ticks with procs.replay_feed:ReplayFeed "
                             f"through the book")
        period_s = float_param(ctx, "bar_period_s", 0.0, lo=0.0)
        self.period = self._periods(int(round(period_s * 1e9)))
        self.out = ctx.output("top")
        self._fit_batch(self.out, 2)
        self.table = ctx.tables["tops"]
        n = len(self.table)
        self.tops = np.zeros(n, TOP)     # private working copy; the table is its snapshot
        self.tops["sym"] = np.arange(n)
        self.table.rows["sym"] = np.arange(n)      # before any process starts: no reader yet
        self.pi = np.array([self.clock, self.batch, 0, self.span], np.int64)

    def _periods(self, fixed_ns: int) -> np.ndarray:
        """Bar period per engine symbol: ``fixed_ns``, or the smallest gap between two bars."""
        out = np.full(len(self.ctx.symbols), fixed_ns, np.int64)
        if fixed_ns == 0 and len(self.data):
            sym, t = self.data["sym"], self.data["exch_ns"]
            for src, dst in enumerate(self.smap.tolist()):
                if dst < 0:
                    continue
                gaps = np.diff(t[sym == src])
                gaps = gaps[gaps > 0]
                out[dst] = int(gaps.min()) if len(gaps) else 0
        return out

    def _args(self):
        ctx, t = self.ctx, self.table
        return (self.out.ctl, self.out.recs, self.data, self.smap, self.period, t.seqs, t.rows, self.tops,
                ctx.hists, self.h_lag, ctx.counters, self.st, self.pi, self.pf)

    def kernel(self):
        """(step, args, takes_now) for the process's jitted duty loop (see pyrt_shm.jit_loop)."""
        return bars_step, self._args(), True

    def warm_up(self) -> None:
        ctx, t = self.ctx, self.table
        bars_step(0, twin(self.out.ctl), twin(self.out.recs, 2), self.data[:0], self.smap.copy(),
                  self.period.copy(), twin(t.seqs), twin(t.rows), twin(self.tops), twin(ctx.hists, 1), 0,
                  twin(ctx.counters), twin(self.st), self.pi.copy(), self.pf.copy())
        next_time(0, self.data[:0], twin(self.st), self.pi.copy())
