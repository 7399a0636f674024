"""RFC-3339 timestamps (Alpaca's ``t``) to unix nanoseconds, cheaply enough for every message.

Alpaca market data stamps each message with ``t`` like ``"2021-02-22T15:51:45.335689322Z"``:
date and time to the second, 0-9 fraction digits, then ``Z`` or an offset ``+HH:MM`` /
``-HH:MM``. Parsing that with ``datetime.strptime`` costs several µs; a feed decodes tens of
thousands a second, and consecutive messages share the seconds part. So:

* the seconds part (the first 19 characters, ``YYYY-MM-DDTHH:MM:SS``) is parsed strictly
  once and cached (a dict keyed by that text, cleared when it holds ``CACHE_SIZE`` entries:
  timestamps move forward, so only recent seconds matter);
* the fraction is ``int()`` of its digits scaled to ns (more than 9 digits are truncated to
  9, i.e. to the ns below); the common ``...SS.fffffffffZ`` form is one slice and one
  ``int``;
* ``Z``/``z`` means UTC; ``+HH:MM``/``-HH:MM`` is subtracted (local = UTC + offset).

A leap second (``:60``) is read as the first second of the next minute (``calendar.timegm``
arithmetic). Anything else that is not RFC-3339 raises ``ValueError`` (a non-string
raises ``TypeError``); the caller counts the message as malformed.
"""
from __future__ import annotations

import calendar

NS = 1_000_000_000
CACHE_SIZE = 4096
#: Scale of an n-digit fraction to ns (index n = 0..9).
_SCALE = tuple(10 ** (9 - n) for n in range(10))
_DIGIT_POS = (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18)
_DIGITS = frozenset("0123456789")


def _seconds_ns(b: str) -> int:
    """``YYYY-MM-DDTHH:MM:SS`` (exactly 19 characters, UTC-naive) -> ns since the epoch."""
    if len(b) != 19 or b[4] != "-" or b[7] != "-" or b[10] not in "Tt " or b[13] != ":" or b[16] != ":":
        raise ValueError(f"not an RFC-3339 date-time: {b!r}")
    for i in _DIGIT_POS:
        if b[i] not in _DIGITS:
            raise ValueError(f"not an RFC-3339 date-time: {b!r}")
    y, mo, d = int(b[0:4]), int(b[5:7]), int(b[8:10])
    h, mi, s = int(b[11:13]), int(b[14:16]), int(b[17:19])
    if not (1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1] and h <= 23 and mi <= 59 and s <= 60) \
            or y < 1970:
        raise ValueError(f"RFC-3339 date-time out of range: {b!r}")
    return calendar.timegm((y, mo, d, h, mi, s)) * NS


def _offset_ns(tz: str) -> int:
    """``Z`` -> 0; ``+HH:MM`` / ``-HH:MM`` -> the offset in ns (local = UTC + offset)."""
    if tz == "Z" or tz == "z":
        return 0
    if len(tz) != 6 or tz[0] not in "+-" or tz[3] != ":" or not (tz[1:3] + tz[4:6]).isdigit() \
            or not tz.isascii():
        raise ValueError(f"bad RFC-3339 time offset {tz!r}")
    h, m = int(tz[1:3]), int(tz[4:6])
    if h > 23 or m > 59:
        raise ValueError(f"bad RFC-3339 time offset {tz!r}")
    off = (h * 3600 + m * 60) * NS
    return -off if tz[0] == "-" else off


class Rfc3339:
    """``to_ns(text) -> int``: RFC-3339 text to unix ns, with the seconds part cached.

    ``to_ns`` is a closure over the cache (a call costs no attribute lookups). One instance
    per decoder (not thread-safe: the cache is plain dict state).
    """

    __slots__ = ("_secs", "to_ns")

    def __init__(self):
        self._secs: dict[str, int] = {}
        secs, slow = self._secs, self._slow

        def to_ns(t: str) -> int:
            base = secs.get(t[:19])
            # Fast path: the seconds are cached, nine fraction digits and 'Z' (what Alpaca
            # sends). isdigit() keeps int() from accepting a sign, spaces or underscores.
            if base is not None and len(t) == 30 and t[29] == "Z" and t[19] == ".":
                f = t[20:29]
                if f.isdigit():
                    return base + int(f)
            return slow(t)

        self.to_ns = to_ns

    def _slow(self, t) -> int:
        if type(t) is not str:
            raise TypeError(f"timestamp must be a string, got {type(t).__name__}")
        b = t[:19]
        base = self._secs.get(b)
        if base is None:
            base = _seconds_ns(b)
            if len(self._secs) >= CACHE_SIZE:
                self._secs.clear()
            self._secs[b] = base
        return base + self._tail(t)

    @staticmethod
    def _tail(t: str) -> int:
        """Fraction and zone after the seconds: ``[.d{1,}](Z|±HH:MM)`` -> ns to add."""
        n = len(t)
        j = 19
        frac = 0
        if n > 19 and t[19] == ".":
            j = 20
            while j < n and t[j] in _DIGITS:
                j += 1
            digits = j - 20
            if digits == 0:
                raise ValueError(f"empty fraction in timestamp {t!r}")
            frac = int(t[20:min(j, 29)]) * _SCALE[min(digits, 9)]
        if j >= n:
            raise ValueError(f"timestamp {t!r} has no time zone (Z or +HH:MM)")
        return frac - _offset_ns(t[j:])


def format_ns(ns: int) -> str:
    """Unix ns -> ``YYYY-MM-DDTHH:MM:SS.fffffffffZ`` (the inverse of ``to_ns``, for tests and tools)."""
    import time

    s, f = divmod(ns, NS)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{f:09d}Z"
