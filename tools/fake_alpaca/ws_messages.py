"""WebSocket messages from picows frames: picows delivers frames, clients send messages.

alpaca-py sends its subscribe message fragmented (BINARY fin=0, then CONTINUATION fin=1,
FACTS §1), so both servers reassemble before decoding. The payload of a picows frame points
into its receive buffer and is invalid once ``on_ws_frame`` returns: fragments are copied.
"""
from __future__ import annotations

from picows import WSCloseCode, WSListener, WSMsgType

MAX_MESSAGE = 1 << 20        # a reassembled message larger than this is refused


class Assembler:
    """Turns one connection's frames into whole messages (``feed`` returns them)."""

    def __init__(self, stats, prefix: str) -> None:
        self._stats, self._prefix = stats, prefix
        self._frag: bytearray | None = None
        self._type = None

    def feed(self, transport, frame) -> list[tuple]:
        """What ``frame`` completes: a list of ``(payload, msg_type)`` for whole messages and
        ``(None, reason)`` for rule breaks (the broken fragment is dropped, counted by the
        caller). CLOSE is answered and the connection closed here; PING/PONG are ignored
        (picows answers pings itself).
        """
        mt = frame.msg_type
        if mt == WSMsgType.CLOSE:
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()
            return []
        if mt in (WSMsgType.PING, WSMsgType.PONG):
            return []
        if mt == WSMsgType.CONTINUATION:
            if self._frag is None:
                return [(None, "CONTINUATION frame without a message to continue")]
            self._frag += frame.get_payload_as_memoryview()
            if len(self._frag) > MAX_MESSAGE:
                self._frag = None
                return [(None, f"message larger than {MAX_MESSAGE} bytes")]
            if not frame.fin:
                return []
            data, self._frag = bytes(self._frag), None
            self._stats.inc(self._prefix + "_fragmented_messages_in")
            return [(data, self._type)]
        out = [(None, "new message before the fragmented one ended")] if self._frag is not None else []
        self._frag = None
        if frame.fin:
            out.append((frame.get_payload_as_bytes(), mt))
        else:
            self._frag, self._type = bytearray(frame.get_payload_as_memoryview()), mt
        return out


class MessageListener(WSListener):
    """A picows listener that works in whole messages: ``on_ws_frame`` feeds the session's
    ``_assembler`` (an Assembler) and calls ``_message(payload, msg_type)`` per whole message
    and ``_bad(reason)`` per rule break, which the subclass defines."""

    def on_ws_frame(self, transport, frame) -> None:
        for payload, what in self._assembler.feed(transport, frame):
            if payload is None:
                self._bad(what)
            else:
                self._message(payload, what)
