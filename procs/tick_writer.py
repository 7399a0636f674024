"""``TickWriter``: the producer side of a TICK ring, written record by record from Python.

Why not the jitted ``spsc`` functions: a venue adapter decodes JSON in Python (orjson hands
back dicts), and each Python -> numba dispatch costs ~0.2-0.3 µs, more than writing a record.
So the writer packs each record straight into its ring slot with one precompiled
``struct.Struct.pack_into`` (measured by ``pyrt bench feed``, ``write_methods``: ~0.2-0.4 µs,
about half of assigning a tuple to a numpy record and a tenth of numpy field-by-field stores)
and publishes the head cursor once per batch (a frame), exactly like ``spsc.claim`` /
``spsc.commit``:

    free, head, seq = begin(recv_ns)     # start a batch: every record gets this recv_ns
    put(exch_ns, sym, kind, flags, ...)  # pack into slot (head + n) & mask, or spill
    commit()                             # store the new head: the batch becomes visible

(``procs.alpaca_md`` inlines ``put``'s fast branch: it packs slots ``head + n`` for
``n < free`` itself and calls ``commit(n)``.)

The struct format is derived from ``layouts.market.TICK`` (field offsets and types; a gap
becomes padding), and the writer refuses a ring whose records are not TICKs.

Memory ordering (the contract of ``ringbuf._atomics``: write the payload, then
store-release the head; the consumer load-acquires the head, then reads):

* On x86-64 (TSO) the writer stores the head through a ``memoryview`` of the control words
  (an aligned 8-byte store: one ``mov``, never torn). TSO keeps stores in program order, and
  the C compiler cannot sink the record stores (made inside ``pack_into``) below the head
  store (made inside another C call reached through the interpreter), so the head store *is*
  a release store. Reading the consumer's ``tail`` the same way is an acquire load on TSO
  (a load is never reordered with later stores), so a slot is reused only after the
  consumer has released it.
* Elsewhere (aarch64: stores may be reordered in hardware) the writer claims and commits
  through jitted ``load_acquire`` / ``store_release`` (``ldar`` / ``stlr``): correct
  everywhere, one dispatch more per batch.

Full ring (the ring's ``full_policy``):

* ``block``: records that do not fit are kept, in order, in ``pending`` (already validated,
  seq not yet assigned) and ``flush_pending()`` publishes them as slots free up; while
  anything is pending, every new record is appended behind it, so order is preserved and
  nothing is lost. The caller is expected to stop reading its source meanwhile (the Alpaca
  client pauses the socket: TCP backpressure).
* ``drop``: records that do not fit are counted in the ring's ``dropped`` word (the
  producer's) and in ``dropped`` here, and are gone. ``group(k)`` lets a caller keep a
  multi-record unit (a book snapshot) whole: all ``k`` records fit, or all are dropped.

``seq`` is assigned when a record enters its slot, so it is gap-free from 0 under both
policies (dropped records take no seq). With ``max_ticks > 0`` the writer publishes at most
that many records and then ignores every further record (``finished`` becomes True).

One thread, one writer: only the thread that owns the producer side may call any method.
"""
from __future__ import annotations

import struct

import numpy as np

from layouts.market import TICK
from layouts.ring import FULL_DROP, IDX_CACHED_TAIL, IDX_DROPPED, IDX_FULL_POLICY, IDX_HEAD, IDX_TAIL, \
    IDX_TIMES_FULL
from numba import njit

from ringbuf._atomics import _IS_X86, load_acquire, store_release

_CODES = {"<u8": "Q", "<i8": "q", "<u4": "I", "<i4": "i", "<u2": "H", "<i2": "h", "<f8": "d", "|u1": "B"}


def record_struct(dtype: np.dtype) -> struct.Struct:
    """A little-endian ``struct.Struct`` with ``dtype``'s fields in offset order (gaps as padding)."""
    dtype = np.dtype(dtype)
    fmt, pos = "<", 0
    for name, (ft, off) in sorted(((n, dtype.fields[n][:2]) for n in dtype.names), key=lambda x: x[1][1]):
        code = _CODES.get(ft.str)
        if code is None:
            raise TypeError(f"record_struct: field {name!r} has unsupported type {ft.str}")
        if off > pos:
            fmt += f"{off - pos}x"
        fmt += code
        pos = off + ft.itemsize
    if dtype.itemsize > pos:
        fmt += f"{dtype.itemsize - pos}x"
    s = struct.Struct(fmt)
    if s.size != dtype.itemsize:
        raise TypeError(f"record_struct: struct size {s.size} != dtype itemsize {dtype.itemsize}")
    return s


@njit(cache=True)
def _load_tail(ctl):
    return load_acquire(ctl, IDX_TAIL)


@njit(cache=True)
def _store_head(ctl, head):
    store_release(ctl, IDX_HEAD, head)


TICK_STRUCT = record_struct(TICK)
RECORD_SIZE = TICK.itemsize


class TickWriter:
    """Producer of one TICK ``SpscRing`` (see module doc)."""

    __slots__ = ("ring", "_ctl", "_cw", "pack", "buf", "_scratch", "capacity", "mask", "drop",
                 "portable", "head", "_tail", "seq", "max_ticks", "dropped", "pending", "recv", "n", "free")

    def __init__(self, ring, max_ticks: int = 0, portable: bool | None = None):
        if ring.recs.dtype != TICK:
            raise TypeError(f"TickWriter: ring {ring.name!r} holds {ring.recs.dtype}, not TICK records")
        self.ring = ring
        self._ctl = ring.ctl
        self._cw = memoryview(ring.ctl).cast("B").cast("Q")          # control words, native u64
        self.buf = memoryview(ring.recs.reshape(-1).view(np.uint8))   # the record slots, bytes
        self.pack = TICK_STRUCT.pack_into
        self._scratch = bytearray(RECORD_SIZE)
        self.capacity = int(ring.recs.shape[0])
        self.mask = self.capacity - 1
        self.drop = int(self._cw[IDX_FULL_POLICY]) == FULL_DROP
        self.portable = (not _IS_X86) if portable is None else portable
        self.head = int(self._cw[IDX_HEAD])      # own cursor: only this writer stores it
        self._tail = int(self._cw[IDX_TAIL])     # cached copy of the consumer's cursor
        self.seq = 0                             # seq of the next record published
        self.max_ticks = int(max_ticks)
        self.dropped = 0
        self.pending: list[tuple] = []
        self.recv = 0
        self.n = 0                               # records packed in the current batch
        self.free = 0                            # slots usable by the current batch

    # -- batch ------------------------------------------------------------------------------
    def begin(self, recv_ns: int) -> tuple:
        """Start a batch whose records carry ``recv_ns``; publish what is pending first.

        Returns ``(free, head, seq)``: slots ``head + 0 .. head + free - 1`` (their records
        getting ``seq + 0 ..``) may be packed directly, which is the decoder's fast path
        (``pack`` / ``buf`` / ``mask``, then ``commit(n)``); any record beyond them goes
        through ``put`` (with ``n`` set to the count packed so far), which spills.
        """
        self.recv = recv_ns
        self.n = 0
        if self.pending:
            self.flush_pending()
            self.free = 0 if self.pending else self._room(False)
        else:
            room = self.capacity - (self.head - self._tail)   # cached tail; re-read only when full
            self.free = room if room and not self.max_ticks else self._room(False)
        return self.free, self.head, self.seq

    def put(self, exch_ns, sym, kind, flags, price, size, bid, ask, bid_size, ask_size) -> None:
        """Write one record of the batch (or spill it, see ``_spill``).

        Raises ``struct.error`` for a value of the wrong type (nothing is written then).
        """
        n = self.n
        if n < self.free:
            self.pack(self.buf, ((self.head + n) & self.mask) * RECORD_SIZE, self.seq + n, self.recv,
                       exch_ns, sym, kind, flags, price, size, bid, ask, bid_size, ask_size)
            self.n = n + 1
        else:
            self._spill((self.recv, exch_ns, sym, kind, flags, price, size, bid, ask, bid_size, ask_size))

    def group(self, k: int) -> bool:
        """Before ``k`` records that must stay together: False (and ``k`` counted dropped) if
        the ``drop`` policy would cut them; always True under ``block`` (they queue in order)."""
        if not self.drop or self.n + k <= self.free:
            return True
        if not self.pending:
            self.free = self._room(True)
            if self.n + k <= self.free:
                return True
        if not self._limit_reached(k):
            self._cw[IDX_TIMES_FULL] += 1
            self._count_dropped(k)
        return False

    def commit(self, n: int | None = None) -> int:
        """Publish the batch (release-store of the head, see module doc); return its size.

        ``n``: how many slots the caller packed itself from ``head`` on (the fast path), when
        it did not go through ``put``.
        """
        if n is None:
            n = self.n
        if n:
            self.n = 0
            head = self.head = self.head + n
            self.seq += n
            if self.portable:
                _store_head(self._ctl, head)                     # store-release (stlr)
            else:
                self._cw[IDX_HEAD] = head                        # release on TSO (see module doc)
        return n

    # -- full ring ----------------------------------------------------------------------------
    def _spill(self, rec: tuple) -> None:
        self.pack(self._scratch, 0, 0, *rec)          # validate before keeping it (raises struct.error)
        if self._limit_reached(1):
            return
        if not self.pending:
            self.free = self._room(True)                  # the consumer may have made room
            if self.n < self.free:
                self.pack(self.buf, ((self.head + self.n) & self.mask) * RECORD_SIZE, self.seq + self.n,
                           *rec)
                self.n += 1
                return
            self._cw[IDX_TIMES_FULL] += 1                 # a claim that found no free slot
        if self.drop:
            self._count_dropped(1)
        else:
            self.pending.append(rec)

    def flush_pending(self) -> int:
        """Publish as many pending records as fit now (``block`` policy); return how many."""
        p = self.pending
        if not p or self.n:
            return 0
        k = min(self._room(True), len(p))
        if k < len(p) and not self.finished:
            self._cw[IDX_TIMES_FULL] += 1
        pack, buf, head, mask, seq = self.pack, self.buf, self.head, self.mask, self.seq
        for i in range(k):
            pack(buf, ((head + i) & mask) * RECORD_SIZE, seq + i, *p[i])
        if k:
            del p[:k]
            self.commit(k)                                     # self.n is 0 here
        if self.max_ticks and self.seq >= self.max_ticks:
            p.clear()
        return k

    @property
    def finished(self) -> bool:
        return bool(self.max_ticks) and self.seq >= self.max_ticks

    # -- cursors ------------------------------------------------------------------------------
    def _room(self, reread: bool) -> int:
        """Free slots for this batch (the consumer's tail re-read when ``reread`` or when the cached
        copy says full), capped by ``max_ticks``."""
        room = self.capacity - (self.head - self._tail)
        if reread or room == 0:
            if self.portable:
                self._tail = int(_load_tail(self._ctl))          # load-acquire (ldar)
            else:
                self._tail = self._cw[IDX_TAIL]                  # acquire on TSO (see module doc)
            self._cw[IDX_CACHED_TAIL] = self._tail
            room = self.capacity - (self.head - self._tail)
        if self.max_ticks:
            room = min(room, max(self.max_ticks - self.seq, 0))
        return room

    @property
    def published(self) -> int:
        """Records published since this writer was made (= the next seq)."""
        return self.seq

    def _limit_reached(self, k: int) -> bool:
        return bool(self.max_ticks) and self.seq + self.n + len(self.pending) + k > self.max_ticks

    def _count_dropped(self, k: int) -> None:
        self.dropped += k
        self._cw[IDX_DROPPED] += k                               # producer-owned word
