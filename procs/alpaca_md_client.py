"""``MdClient``: one thread running an asyncio loop with the picows client of one Alpaca feed.

Threading contract (the stage process has two threads):

* **client thread** (this module): connects, authenticates, subscribes, and in picows'
  ``on_ws_frame`` decodes each frame and writes its records into the tick ring. It is the
  ring's only producer and the only writer of every counter and histogram row it touches
  (``flush()`` copies the decoder's and writer's Python counts to shared memory every
  ``HOUSEKEEPING_S`` and when the thread ends).
* **stage thread** (the process's agent loop) only reads the plain attributes published here
  (``fatal``, ``open``, ``live``, ``finished``, ``connections``, ``last_frame_ns``,
  ``connected_ns``; single reads and
  writes of a Python attribute are atomic under the GIL) and asks for things through
  ``request_reconnect`` / ``subscribe`` / ``stop``, which hand a callback to the loop
  (``call_soon_threadsafe``): the transport is touched by the client thread only (picows
  checks that).

Connection loop: connect (``ws_connect``, bounded by ``CONNECT_TIMEOUT_S``), run the session
(``procs.alpaca_md_session``) on the control messages, wait until the connection ends, then
reconnect after ``uniform(min, min(max, min * 2**attempt))`` (exponential backoff, full jitter
above the floor; ``attempt`` resets once a connection went live). A fatal session error ends
the loop with ``fatal`` set to a message naming the code and the URL; the stage raises it.

Block policy, ring full: the writer keeps the records in order; the client pauses reading the
socket (TCP backpressure; frames already read are still decoded behind the pending ones) and
retries every ``PENDING_RETRY_S`` until everything is published, then resumes reading.

Staleness and handshake timeouts are judged by the stage thread (``AlpacaFeed.do_work``) from
``last_frame_ns`` / ``connected_ns``, so a client thread that hangs is noticed too.
"""
from __future__ import annotations

import asyncio
import random
import sys
import threading
import time

import numpy as np
from numba import njit
from picows import WSListener, WSMsgType, ws_connect

from pyrt_shm.hdr_recorder import hdr_record

from . import alpaca_md_session as sess
from .alpaca_md import C_MALFORMED, COUNT_NAMES

CONNECT_TIMEOUT_S = 10.0
HOUSEKEEPING_S = 0.01
PENDING_RETRY_S = 0.0002
MAX_FRAME = 16 * 1024 * 1024
_DATA_FRAMES = (WSMsgType.TEXT, WSMsgType.BINARY)
_mono = time.monotonic_ns                  # CLOCK_MONOTONIC, as ringbuf._atomics.monotonic_ns


@njit(cache=True)
def record_samples(hists, row, values):
    """Record each of ``values`` (ns) into HDR row ``row`` (one dispatch per flush, not per sample)."""
    for i in range(values.shape[0]):
        hdr_record(hists, row, values[i])


class _Listener(WSListener):
    """picows callbacks of one connection; everything is forwarded to the client."""

    __slots__ = ("c",)

    def __init__(self, client):
        super().__init__()
        self.c = client

    def on_ws_connected(self, transport):
        self.c._on_open(transport)

    def on_ws_frame(self, transport, frame):
        self.c._on_frame(transport, frame)

    def on_ws_disconnected(self, transport):
        self.c._on_closed()


class MdClient:
    """The feed's network side (see module doc).

    ``sink(counts)`` is called in the client thread to publish counters (a dict of name ->
    value); ``decode_row`` / ``age_row`` are HDR rows of ``hists`` (or None; a benchmark may
    switch them between runs once the previous run's samples are recorded); ``wake()`` is
    called after records were published (wakes parked consumers); ``should_stop()`` is polled
    every housekeeping period (the engine's per-stage stop flag).
    """

    def __init__(self, url, session, decoder, writer, *, reconnect_min_s=0.25, reconnect_max_s=30.0,
                 sink=None, hists=None, decode_row=None, age_row=None, wake=None, should_stop=None,
                 log=None, rng=None):
        self.url = url
        self.session, self.decoder, self.writer = session, decoder, writer
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self._sink, self._hists, self.decode_row, self.age_row = sink, hists, decode_row, age_row
        self.wake = wake
        self._should_stop = should_stop or (lambda: False)
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self._rng = rng or random.Random()
        # published to the stage thread (plain attribute reads/writes)
        self.fatal: str | None = None
        self.live = False
        self.open = False
        self.finished = False
        self.last_frame_ns = 0
        self.connected_ns = 0
        self.reconnects = 0
        self.errors = 0
        self.connections = 0
        # client thread only
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport = None
        self._stopping = False
        self._stop_event: asyncio.Event | None = None
        self._paused = False
        self._retrying = False
        self._hk = None
        self._went_live = False
        self._decode_ns: list[int] = []
        self._age_ns: list[int] = []
        self._rt_offset = time.time_ns() - time.monotonic_ns()
        self._ready = threading.Event()

    # -- lifecycle (stage thread) -------------------------------------------------------------
    def start(self) -> None:
        """Start the client thread (call in the process that runs the stage, after any fork)."""
        if self._thread is not None:
            raise RuntimeError("MdClient already started")
        self._thread = threading.Thread(target=self._run, name="alpaca-md", daemon=True)
        self._thread.start()
        self._ready.wait(5.0)

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the thread to close the connection and end; join it; True if it ended in time."""
        t = self._thread
        if t is None:
            return True
        self._stopping = True
        self._call(self._on_stop)
        t.join(timeout)
        if t.is_alive():
            self.log(f"pyrt: alpaca feed {self.url}: client thread did not stop within {timeout} s")
            return False
        return True

    def request_reconnect(self, why: str) -> None:
        """Drop the current connection (if any) and reconnect with backoff (any thread)."""
        self._call(self._drop, why)

    def subscribe(self, channels, symbols) -> None:
        """Add a subscription now (if live) and for every later reconnect (any thread)."""
        self._change(self.session.subscribe, channels, symbols)

    def unsubscribe(self, channels, symbols) -> None:
        """Remove a subscription now and for every later reconnect (any thread)."""
        self._change(self.session.unsubscribe, channels, symbols)

    def _change(self, fn, channels, symbols) -> None:
        self.session._check(channels, symbols)           # bad input raises in the caller's thread
        t = self._thread
        if t is None or not t.is_alive():
            fn(channels, symbols)                        # no connection: only the wanted set changes
        elif threading.get_ident() == t.ident:
            self._act(fn(channels, symbols))
        else:
            self._call(lambda: self._act(fn(channels, symbols)))

    def _call(self, fn, *args) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:                          # the loop closed meanwhile
                pass

    # -- client thread ------------------------------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as e:  # noqa: BLE001 - the thread's error boundary: report, never vanish
            self.fatal = self.fatal or f"alpaca feed {self.url}: client thread failed: {e!r}"
        finally:
            self.live = False
            self.flush()
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
            self._ready.set()

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        self._ready.set()
        self._hk = self._loop.call_later(HOUSEKEEPING_S, self._housekeep)
        attempt = 0
        try:
            while not self._done():
                self._went_live = False
                transport = await self._connect()
                if transport is not None:
                    try:
                        await transport.wait_disconnected()
                    except Exception as e:  # noqa: BLE001 - a local failure that ended the connection
                        self.errors += 1
                        self.log(f"pyrt: alpaca feed {self.url}: connection failed: {type(e).__name__}: {e}")
                    self._transport = None
                if self._done():
                    break
                if self._went_live:
                    attempt = 0
                self.reconnects += 1
                delay = self._backoff(attempt)
                attempt += 1
                self.log(f"pyrt: alpaca feed {self.url}: disconnected; reconnect #{self.reconnects} "
                         f"in {delay * 1e3:.0f} ms")
                try:
                    await asyncio.wait_for(self._stop_event.wait(), delay)
                except asyncio.TimeoutError:
                    pass
        finally:
            self._hk.cancel()

    def _done(self) -> bool:
        return self._stopping or self.fatal is not None or self.finished

    async def _connect(self):
        """One connection attempt, abandoned at once when a stop is requested; None on failure."""
        connect = asyncio.ensure_future(ws_connect(
            lambda: _Listener(self), self.url, websocket_handshake_timeout=CONNECT_TIMEOUT_S,
            max_frame_size=MAX_FRAME, enable_auto_ping=True, auto_ping_idle_timeout=20, auto_ping_reply_timeout=10))
        stop = asyncio.ensure_future(self._stop_event.wait())
        try:
            await asyncio.wait((connect, stop), timeout=CONNECT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not connect.done():
            connect.cancel()
            try:
                await connect
            except BaseException:  # noqa: BLE001 - the cancelled attempt's outcome is irrelevant
                pass
            if not self._done():
                self.errors += 1
                self.log(f"pyrt: alpaca feed: cannot connect to {self.url}: no handshake within "
                         f"{CONNECT_TIMEOUT_S:.0f} s")
            self._close_transport()
            return None
        try:
            transport, _ = connect.result()
        except Exception as e:  # noqa: BLE001 - any failure to connect is retried with backoff
            self.errors += 1
            self.log(f"pyrt: alpaca feed: cannot connect to {self.url}: {type(e).__name__}: {e}")
            return None
        if self._done():                                   # stopped while the handshake completed
            transport.disconnect()
        return transport

    def _backoff(self, attempt: int) -> float:
        cap = min(self.reconnect_max_s, self.reconnect_min_s * (2 ** min(attempt, 30)))
        return self._rng.uniform(self.reconnect_min_s, max(cap, self.reconnect_min_s))

    def _on_open(self, transport) -> None:
        # on_ws_connected runs before ws_connect returns, and the server's first frame may be
        # handled before it returns too: the transport is taken from here.
        self._transport = transport
        self.open = True
        self.connections += 1
        self.connected_ns = time.monotonic_ns()
        self.last_frame_ns = self.connected_ns
        self._act(self.session.on_open())

    def _on_closed(self) -> None:
        self._transport = None
        self.open = False
        self.live = False
        self.session.on_close()
        if self._paused:
            self._paused = False                       # a new connection starts reading anyway

    def _on_frame(self, transport, frame) -> None:
        """Hot path: decode the frame into the ring (one batch), then the rare work."""
        recv = _mono()
        if frame.msg_type in _DATA_FRAMES and frame.fin:
            dec = self.decoder
            try:
                n = dec.decode(frame.get_payload_as_memoryview(), recv)
            except Exception as e:  # noqa: BLE001 - a decoder bug must not kill the connection loop
                n = 0
                self.errors += 1
                self.log(f"pyrt: alpaca feed {self.url}: decoder error: {type(e).__name__}: {e}")
            self._decode_ns.append(_mono() - recv)
            self.last_frame_ns = recv
            if n:
                self._age_ns.append(recv + self._rt_offset - dec.last_exch_ns)
                if self.wake is not None:
                    self.wake()
            if dec.control:
                msgs, dec.control = dec.control, []
                for m in msgs:
                    self._act(self.session.on_message(m))
            w = self.writer
            if w.pending and not self._paused:
                self._pause(transport)
            if w.max_ticks and not self.finished and w.finished:
                self._finish("max_ticks reached")
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif frame.msg_type in _DATA_FRAMES or frame.msg_type == WSMsgType.CONTINUATION:
            # Alpaca never fragments its messages and picows' core API does not reassemble.
            self.decoder.counts[C_MALFORMED] += 1

    def _act(self, actions) -> None:
        for what, arg in actions:
            if what == sess.SEND:
                if self._transport is not None:
                    self._transport.send(WSMsgType.TEXT, arg)
            elif what == sess.LIVE_NOW:
                self.live = True
                self._went_live = True
                self.last_frame_ns = time.monotonic_ns()
            elif what == sess.LOG:
                self.log(f"pyrt: alpaca feed: {arg}")
            elif what == sess.RECONNECT:
                self.errors += 1
                self._drop(arg)
            elif what == sess.RETRY:
                self.errors += 1
                self._drop(arg + "; retrying with backoff")
            elif what == sess.FATAL:
                self.errors += 1
                self.fatal = arg
                self.log(f"pyrt: alpaca feed: FATAL: {arg}")
                self._close_transport()

    def _drop(self, why: str) -> None:
        if self._transport is not None:
            self.log(f"pyrt: alpaca feed {self.url}: reconnecting: {why}")
        self._close_transport()

    def _close_transport(self) -> None:
        self.live = False
        t = self._transport
        if t is not None:
            t.disconnect()

    def _pause(self, transport) -> None:
        try:
            transport.underlying_transport.pause_reading()
        except (AttributeError, RuntimeError):
            pass
        self._paused = True
        if not self._retrying:
            self._retrying = True
            self._loop.call_later(PENDING_RETRY_S, self._retry_pending)

    def _retry_pending(self) -> None:
        w = self.writer
        if w.flush_pending() and self.wake is not None:
            self.wake()
        if w.finished and not self.finished:
            self._finish("max_ticks reached")
        if w.pending and not self._stopping:
            self._loop.call_later(PENDING_RETRY_S, self._retry_pending)
            return
        self._retrying = False
        self._paused = False
        t = self._transport
        if t is not None:
            try:
                t.underlying_transport.resume_reading()
            except (AttributeError, RuntimeError):
                pass

    def _finish(self, why: str) -> None:
        self.finished = True
        self.log(f"pyrt: alpaca feed {self.url}: {why}; disconnecting")
        self._close_transport()
        if self._stop_event is not None:
            self._stop_event.set()

    def _on_stop(self) -> None:
        self._stopping = True
        self._close_transport()
        if self._stop_event is not None:
            self._stop_event.set()

    def _housekeep(self) -> None:
        if not self._stopping and self._should_stop():
            self._on_stop()                              # the engine stops sources first
        # Wall minus monotonic, re-read so that a step of the wall clock shows within 10 ms.
        self._rt_offset = time.time_ns() - time.monotonic_ns()
        self.flush()
        if not self._stopping:
            self._hk = self._loop.call_later(HOUSEKEEPING_S, self._housekeep)

    def flush(self) -> None:
        """Publish counts and histogram samples to shared memory (client thread; or after it ended)."""
        if self._hists is not None:
            for row, buf in ((self.decode_row, self._decode_ns), (self.age_row, self._age_ns)):
                if buf and row is not None:
                    vals = np.array(buf, dtype=np.int64)
                    buf.clear()
                    record_samples(self._hists, row, vals)
                else:
                    buf.clear()
        else:
            self._decode_ns.clear()
            self._age_ns.clear()
        if self._sink is not None:
            self._sink(self.counts())

    def counts(self) -> dict:
        d = self.decoder
        out = dict(zip(COUNT_NAMES, d.counts))
        w = self.writer
        out.update(ticks_out=w.published, dropped=w.dropped, reconnects=self.reconnects, errors=self.errors,
                   connected=int(self.live), finished=int(self.finished))
        return out
