"""RFC-3339 -> unix ns: the fast path, every fraction length, zones, the cache, and refusals."""
from __future__ import annotations

import calendar
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procs import alpaca_md_time
from procs.alpaca_md_time import Rfc3339, format_ns

T0 = calendar.timegm((2021, 2, 22, 15, 51, 45)) * 1_000_000_000


@pytest.mark.parametrize("text, ns", [
    ("2021-02-22T15:51:45.335689322Z", T0 + 335_689_322),        # Alpaca's usual form: 9 digits
    ("2021-02-22T15:51:45Z", T0),                                # no fraction
    ("2021-02-22T15:51:45.3Z", T0 + 300_000_000),
    ("2021-02-22T15:51:45.208Z", T0 + 208_000_000),             # Go trims trailing zeros
    ("2021-02-22T15:51:45.000001Z", T0 + 1_000),
    ("2021-02-22T15:51:45.1234567891Z", T0 + 123_456_789),      # > 9 digits: truncated to ns
    ("2021-02-22T15:51:45.5z", T0 + 500_000_000),
    ("2021-02-22t15:51:45.5Z", T0 + 500_000_000),
    ("2021-02-22T10:51:45.335689322-05:00", T0 + 335_689_322),  # offsets: local = UTC + offset
    ("2021-02-22T21:21:45.5+05:30", T0 + 500_000_000),
    ("2021-02-22T15:51:45+00:00", T0),
    ("2021-02-23T00:51:45.000000001+09:00", T0 + 1),             # crosses midnight
])
def test_parses(text, ns):
    p = Rfc3339()
    assert p.to_ns(text) == ns
    assert p.to_ns(text) == ns          # again, from the cache


def test_leap_second_reads_as_next_minute():
    assert Rfc3339().to_ns("2016-12-31T23:59:60Z") == calendar.timegm((2017, 1, 1, 0, 0, 0)) * 10**9


@pytest.mark.parametrize("text", [
    "", "2021", "2021-02-22T15:51:45", "2021-02-22T15:51:45.", "2021-02-22T15:51:45.Z",
    "2021-02-22 15:51:45.5", "2021-02-22T15:51:45.335689322", "2021-02-22T15:51:45.33568932xZ",
    "2021-02-22T15:51:45.+35689322Z", "2021-02-22T15:51:45. 35689322Z", "2021-02-22T15:51:45.3_5689322Z",
    "2021-02-22T15:51:45.335689322ZZ", "2021-02-22T15:51:45.5+0500", "2021-02-22T15:51:45.5+25:00",
    "2021-13-22T15:51:45Z", "2021-02-30T15:51:45Z", "2021-02-22T24:00:00Z", "2021-02-22T15:60:00Z",
    "2021/02/22T15:51:45Z", "20x1-02-22T15:51:45Z", "1969-12-31T23:59:59Z", "2021-02-22T15:51:45.²Z",
])
def test_refuses_with_value_error(text):
    p = Rfc3339()
    p.to_ns("2021-02-22T15:51:45.1Z")           # seconds cached: the tail is still checked
    with pytest.raises(ValueError):
        p.to_ns(text)


@pytest.mark.parametrize("value", [None, 1614009105, 1.5, ["2021-02-22T15:51:45Z"], {"t": 1}, True])
def test_non_strings_raise_type_error(value):
    with pytest.raises(TypeError):
        Rfc3339().to_ns(value)


def test_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(alpaca_md_time, "CACHE_SIZE", 8)
    p = Rfc3339()
    for s in range(100):
        assert p.to_ns(format_ns(T0 + s * 10**9)) == T0 + s * 10**9
        assert len(p._secs) <= 8


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=253_402_300_799 * 10**9 + 999_999_999),
       st.integers(min_value=0, max_value=9),
       st.sampled_from(["Z", "+00:00", "-05:00", "+09:30"]))
def test_round_trips_against_datetime(ns, digits, zone):
    """Any instant, any fraction length, any zone: equals the value datetime computes."""
    sec, frac = divmod(ns, 10**9)
    frac -= frac % 10 ** (9 - digits)                      # what `digits` digits can say
    off = 0 if zone == "Z" else (1 if zone[0] == "+" else -1) * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    if not 0 <= sec + off <= 253_402_300_799:
        return
    local = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=sec + off)
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{frac:09d}"[:digits]
    text += zone
    assert Rfc3339().to_ns(text) == sec * 10**9 + frac
