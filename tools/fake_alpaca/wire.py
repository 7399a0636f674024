"""Wire formats shared by the fake's three servers: timestamps, decimals, market-data encoding.

Alpaca's conventions (FACTS §1-§2):

* REST and the trading stream: timestamps are RFC-3339 strings, decimals are JSON *strings*.
* Market data in JSON mode: ``t`` is an RFC-3339 string with nanoseconds
  (``2021-02-22T15:51:45.335689322Z``).
* Market data in msgpack mode: ``t`` is a msgpack Timestamp extension (type -1); alpaca-py
  calls ``msg["t"].to_datetime()`` and crashes on a string.

A market-data point is kept as a plain dict whose time fields (``t``, and ``r`` when present)
are int nanoseconds since the epoch (``r`` only in trades and quotes); :func:`md_json` / :func:`md_msgpack` make the
encoding's form of a point when it is sent (the stored point is never modified).
"""
from __future__ import annotations

import functools
import math
import time

import msgpack
import orjson

#: Message types whose ``r`` is a time (received-at). In an orderbook ``o``, ``r`` is the
#: reset flag: the same letter, another meaning (as ``c`` and ``i`` elsewhere).
R_IS_TIME = ("t", "q")


@functools.lru_cache(maxsize=1024)
def _second(s: int) -> str:
    # strftime + gmtime cost ~2 us; stamps of one second share their prefix
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))


def rfc3339_ns(ns: int) -> str:
    """``ns`` since the epoch as ``YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`` (9 fractional digits)."""
    s, frac = divmod(int(ns), 1_000_000_000)
    return f"{_second(s)}.{frac:09d}Z"


def rfc3339_us(ns: int) -> str:
    """``ns`` since the epoch with microseconds (what Alpaca's REST responses carry)."""
    s, frac = divmod(int(ns), 1_000_000_000)
    return f"{_second(s)}.{frac // 1000:06d}Z"


def dec(x: float) -> str:
    """A decimal as Alpaca writes it: a string, no exponent, no trailing zeros (``"100.5"``)."""
    if x == 0:
        return "0"
    s = f"{x:.9f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


def parse_number(value, field: str) -> float:
    """A JSON number or numeric string as float; ValueError naming ``field`` otherwise.

    alpaca-py sends ``qty``/``limit_price`` as JSON numbers, other clients as strings: both
    are accepted. Booleans, NaN and infinities are refused.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{field}: must be a number or a numeric string, got {type(value).__name__}")
    try:
        v = float(value)
    except ValueError:
        raise ValueError(f"{field}: {value!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"{field}: must be finite, got {value!r}")
    return v


def _convert(point: dict, conv) -> dict:
    out = dict(point)
    if "t" in out:
        out["t"] = conv(out["t"])
    if "r" in out and out.get("T") in R_IS_TIME:
        out["r"] = conv(out["r"])
    return out


def md_json(point: dict) -> dict:
    """The JSON-mode form of a market-data point (time fields as RFC-3339 strings)."""
    return _convert(point, rfc3339_ns)


def md_msgpack(point: dict) -> dict:
    """The msgpack-mode form of a market-data point (time fields as msgpack Timestamps)."""
    return _convert(point, msgpack.Timestamp.from_unix_nano)


def encode(objs, use_msgpack: bool) -> bytes:
    """One frame payload: ``objs`` (already in the mode's form) as JSON or msgpack."""
    return msgpack.packb(objs) if use_msgpack else orjson.dumps(objs)


def decode(payload: bytes, use_msgpack: bool):
    """A client message; raises ValueError on bytes that are not one valid document."""
    if use_msgpack:
        try:
            return msgpack.unpackb(payload)
        except Exception as e:  # msgpack raises several unrelated types (ExtraData, ValueError, ...)
            raise ValueError(f"not msgpack: {type(e).__name__}") from None
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e}") from None
