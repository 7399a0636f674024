"""Historical market data for backtests and replay: CSV and NumPy files -> ``TICK`` records.

``load_ticks(paths, symbols=None, kind="auto", sort="sort") -> MarketData``: every record
becomes one ``layouts.market.TICK`` (``exch_ns`` = the data time, unix ns; ``recv_ns`` the
same, except in a memory-mapped ``.npy``, which keeps its recorded stamps; ``seq`` the row of
the merged, sorted stream; ``sym`` an index into ``MarketData.symbols``). Files are merged in
time order; ties keep file order, then row order (a stable sort).

**CSV** (a header row; extra columns are ignored; names of more than two letters match
case-insensitively, one- and two-letter names exactly, because Alpaca's ``S`` is the
symbol and ``s`` the size):

* bars  ``t,o,h,l,c,v,n,vw`` (Alpaca REST) or ``symbol,timestamp,open,high,low,close,volume,
  trade_count,vwap`` (alpaca-py ``BarSet.df`` exported with ``to_csv``) -> ``TICK_BAR`` with
  price = close, size = volume, bid = open, ask = high, bid_size = low, ask_size = vwap
  (0 when the file has none; ``n`` has no place in a TICK and is dropped);
* trades ``t,x,p,s,c,i,z`` or ``symbol,timestamp,exchange,price,size,...`` -> ``TICK_TRADE``
  (price, size);
* quotes ``t,ax,ap,as,bx,bp,bs,c,z`` or ``...,bid_price,bid_size,ask_price,ask_size`` ->
  ``TICK_QUOTE`` (bid, bid_size, ask, ask_size).

``kind="auto"`` takes bars when open/high/low/close columns are present, else quotes when
bid and ask prices are, else trades when a price is (in trades and quotes ``c`` is the
conditions column, in bars the close). The time column is ``t``, ``timestamp``, ``time``,
``datetime`` or ``date``; the symbol column ``S``, ``symbol`` or ``ticker``. Without one, the
symbol is the caller's (``symbols`` with one name) or the file name up to its first ``_``
or ``.`` (``AAPL_1min.csv`` -> ``AAPL``).

**Timestamps.** RFC 3339 / ISO 8601 text, ``2024-01-02T14:30:00Z``, any number of fraction
digits up to 9 (ns), ``Z`` or an offset (``-05:00``), ``T`` or a space between date and time;
no zone means UTC; a bare date is its UTC midnight. Or numbers: an integer is unix time
whose unit is detected per file from the **first** row's magnitude (< 1e11 seconds, < 1e14
milliseconds, < 1e17 microseconds, else nanoseconds; the years 1973-5138 are unambiguous);
a number with a fraction is unix seconds.

**NumPy.** ``.npy`` of TICK records (a file already sorted whose ``exch_ns`` are all set is
memory-mapped, not copied; ``exch_ns == 0`` takes ``recv_ns``), including the tick journals of
``procs.journal`` (symbol names from their JSON sidecar; a ``.npy.part`` left by a killed run
loses its zero-filled tail); ``.npz`` with ``ticks`` (TICK
records) and optionally ``symbols`` (names of the ids), or columns named as in a CSV
(times as integers, ``datetime64`` or text). Symbol names of TICK ids come from the file's
``symbols``, else the caller's ``symbols`` (ids index into it), else the file name when every
id is 0; the ids keep their order. (CSV symbols are numbered in order of first appearance.)

**Errors** are ``DataError`` naming the file, the line (CSV: the physical line, the header
is line 1; NumPy: ``record <i>``) and the column: ``data.csv:17: column 'p': not a number:
'abc'``. Prices must be finite and > 0 (quote sides >= 0: 0 is an empty side), sizes finite
and >= 0, a bar's low <= open, close <= high.

**Order.** ``sort="sort"`` (default) sorts each file by time (stable); ``sort="reject"``
raises on the first row whose time is below the row before it, naming its line.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import numpy as np

from layouts.market import TICK, TICK_BAR, TICK_BOOK_DELTA, TICK_BOOK_SNAPSHOT, TICK_QUOTE, TICK_TRADE

KINDS = ("auto", "trades", "quotes", "bars")
SORTS = ("sort", "reject")
_KIND_CODE = {"trades": TICK_TRADE, "quotes": TICK_QUOTE, "bars": TICK_BAR}
_TICK_KINDS = (TICK_TRADE, TICK_QUOTE, TICK_BAR, TICK_BOOK_DELTA, TICK_BOOK_SNAPSHOT)
_KIND_NAMES = {TICK_TRADE: "trades", TICK_QUOTE: "quotes", TICK_BAR: "bars",
               TICK_BOOK_DELTA: "book deltas", TICK_BOOK_SNAPSHOT: "book snapshots"}

TIME_COLUMNS = ("t", "timestamp", "time", "datetime", "date")
SYMBOL_COLUMNS = ("S", "symbol", "ticker")
#: field -> (accepted column names, required); the TICK field each fills is in _FIELDS.
BAR_COLUMNS = {"open": ("o", "open"), "high": ("h", "high"), "low": ("l", "low"),
               "close": ("c", "close"), "volume": ("v", "volume"), "vwap": ("vw", "vwap")}
TRADE_COLUMNS = {"price": ("p", "price"), "size": ("s", "size")}
QUOTE_COLUMNS = {"bid": ("bp", "bid_price", "bid"), "bid_size": ("bs", "bid_size"),
                 "ask": ("ap", "ask_price", "ask"), "ask_size": ("as", "ask_size")}
_OPTIONAL = {"vwap", "volume", "size", "bid_size", "ask_size"}
#: where each field goes in a TICK
_FIELDS = {"open": "bid", "high": "ask", "low": "bid_size", "close": "price", "volume": "size",
           "vwap": "ask_size", "price": "price", "size": "size", "bid": "bid", "bid_size": "bid_size",
           "ask": "ask", "ask_size": "ask_size"}
#: fields that are prices (> 0; quote sides >= 0) rather than sizes (>= 0)
_PRICES = {"open", "high", "low", "close", "vwap", "price", "bid", "ask"}

_RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?"
                      r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$")
_DAYS_BEFORE_MONTH = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)
NS = 1_000_000_000


def resolve(path) -> str:
    """``path`` as given when it exists (absolute, or relative to the current directory), else
    relative to the repository root (a checkout or an editable install), else as given."""
    path = os.fspath(path)
    if os.path.isabs(path) or os.path.exists(path):
        return path
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    alt = os.path.join(root, path)
    return alt if os.path.exists(alt) else path


class DataError(ValueError):
    """Unusable market data; the message names the file, line or record, and column."""


@dataclass(frozen=True)
class MarketData:
    """Ticks sorted by ``exch_ns`` (the data time), symbols by id, and where they came from."""

    ticks: np.ndarray
    symbols: tuple
    source: str

    def __len__(self) -> int:
        return int(self.ticks.shape[0])

    def counts(self) -> dict:
        """Records by kind name (``{"bars": 2000}``)."""
        kinds, n = np.unique(self.ticks["kind"], return_counts=True)
        return {_KIND_NAMES.get(int(k), f"kind {int(k)}"): int(c) for k, c in zip(kinds, n)}

    @property
    def is_bars(self) -> bool:
        """True when there are records and every one is a bar."""
        return len(self) > 0 and bool(np.all(self.ticks["kind"] == TICK_BAR))

    @property
    def has_bars(self) -> bool:
        return bool(np.any(self.ticks["kind"] == TICK_BAR))

    @property
    def start_ns(self) -> int:
        return int(self.ticks["exch_ns"][0]) if len(self) else 0

    @property
    def end_ns(self) -> int:
        return int(self.ticks["exch_ns"][-1]) if len(self) else 0


# -- timestamps ---------------------------------------------------------------------------------

def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (exact integer maths)."""
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    doy = _DAYS_BEFORE_MONTH[m - 1] + d - 1 + (1 if leap and m > 2 else 0)
    y1 = y - 1
    return 365 * (y - 1970) + (y1 // 4 - y1 // 100 + y1 // 400) - (1969 // 4 - 1969 // 100 + 1969 // 400) + doy


def parse_rfc3339(text: str) -> int | None:
    """Unix ns of an RFC 3339 timestamp (see module doc), or None if it is not one."""
    m = _RFC3339.match(text)
    if m is None:
        return None
    y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    hh, mm, ss = int(m.group(4) or 0), int(m.group(5) or 0), int(m.group(6) or 0)
    frac = m.group(7) or ""
    if not (1 <= mo <= 12 and 1 <= d <= 31 and hh <= 23 and mm <= 59 and ss <= 60) or len(frac) > 9:
        return None
    if d > (29 if mo == 2 else 30 if mo in (4, 6, 9, 11) else 31):
        return None
    if mo == 2 and d == 29 and not (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)):
        return None
    off = 0
    z = m.group(8)
    if z and z not in ("Z", "z"):
        digits = z[1:].replace(":", "")
        oh, om = int(digits[:2]), int(digits[2:] or 0)
        if oh > 23 or om > 59:
            return None
        off = (oh * 3600 + om * 60) * (1 if z[0] == "+" else -1)
    secs = _days_from_civil(y, mo, d) * 86400 + hh * 3600 + mm * 60 + ss - off
    return secs * NS + (int(frac.ljust(9, "0")) if frac else 0)


def unix_unit(first: int) -> int:
    """ns per unit of integer unix times whose first value is ``first`` (see module doc)."""
    a = abs(first)
    return NS if a < 10**11 else 1_000_000 if a < 10**14 else 1_000 if a < 10**17 else 1


class _TimeParser:
    """Parses one file's time column; integer units are fixed by the first integer seen."""

    def __init__(self):
        self.unit = None

    def __call__(self, text: str) -> int | None:
        s = text.strip()
        if s[:1].isdigit() and "-" not in s[1:] and ":" not in s:
            try:
                if "." in s or "e" in s or "E" in s:
                    return int(Decimal(s) * NS)
                v = int(s)
            except (ValueError, InvalidOperation):
                return None
            if self.unit is None:
                self.unit = unix_unit(v)
            return v * self.unit
        return parse_rfc3339(s)


# -- column mapping -------------------------------------------------------------------------

def _find(header: list[str], names) -> int | None:
    for n in names:                                   # exact names first (S vs s)
        if n in header:
            return header.index(n)
    low = [h.lower() for h in header]
    for n in names:
        if len(n) > 2 and n.lower() in low:
            return low.index(n.lower())
    return None


def _columns_for(kind: str) -> dict:
    return {"bars": BAR_COLUMNS, "trades": TRADE_COLUMNS, "quotes": QUOTE_COLUMNS}[kind]


def _detect_kind(header: list[str], where: str, kind: str) -> str:
    def has(cols, fields):
        return all(_find(header, cols[f]) is not None for f in fields)

    if kind != "auto":
        return kind
    if has(BAR_COLUMNS, ("open", "high", "low", "close")):
        return "bars"
    if has(QUOTE_COLUMNS, ("bid", "ask")):
        return "quotes"
    if has(TRADE_COLUMNS, ("price",)):
        return "trades"
    raise DataError(f"{where}:1: cannot tell bars, trades or quotes from the columns {header}: expected "
                    f"o,h,l,c (or open,high,low,close), bp,ap (or bid_price,ask_price), or p (or price)")


def _map_columns(header: list[str], kind: str, where: str) -> dict:
    cols = {}
    for field, names in _columns_for(kind).items():
        i = _find(header, names)
        if i is None and field not in _OPTIONAL:
            raise DataError(f"{where}:1: {kind}: missing column {names[0]!r} ({field}; also accepted: "
                            f"{', '.join(repr(n) for n in names[1:])}); the columns are {header}")
        if i is not None:
            cols[field] = i
    return cols


def _stem_symbol(path: str) -> str:
    base = os.path.basename(path)
    return re.split(r"[_.]", base, maxsplit=1)[0] or base


# -- values -------------------------------------------------------------------------------

def _number(text: str, where: str, col: str, field: str, kind: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise DataError(f"{where}: column {col!r}: not a number: {text!r}") from None
    if not math.isfinite(v):
        raise DataError(f"{where}: column {col!r}: not a finite number: {text!r}")
    if field in _PRICES and not (kind == "quotes" and v == 0.0):
        if v <= 0.0:
            raise DataError(f"{where}: column {col!r}: a price must be > 0, got {text!r}")
    elif v < 0.0:
        raise DataError(f"{where}: column {col!r}: must be >= 0, got {text!r}")
    return v


class _Table:
    """Rows of one file being converted: times, symbol names, TICK fields."""

    def __init__(self, kind: str):
        self.kind = kind
        self.t: list[int] = []
        self.sym: list[str] = []
        self.lines: list = []              # CSV line numbers (for sort errors), or record indices
        self.fields = {f: [] for f in ("price", "size", "bid", "ask", "bid_size", "ask_size")}


def _read_csv(path: str, kind: str, caller_symbols) -> _Table:
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    with f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise DataError(f"{path}: empty file (expected a header row)") from None
        except (csv.Error, UnicodeDecodeError) as e:
            raise DataError(f"{path}:1: not CSV text: {e}") from None
        kind = _detect_kind(header, path, kind)
        cols = _map_columns(header, kind, path)
        ti = _find(header, TIME_COLUMNS)
        if ti is None:
            raise DataError(f"{path}:1: missing the time column ('t', 'timestamp', 'time', 'datetime' or "
                            f"'date'); the columns are {header}")
        si = _find(header, SYMBOL_COLUMNS)
        fixed = None
        if si is None:
            if caller_symbols is not None and len(caller_symbols) > 1:
                raise DataError(f"{path}:1: no symbol column ('S', 'symbol' or 'ticker'), so the file holds one "
                                f"symbol, but {len(caller_symbols)} were asked for: {list(caller_symbols)}")
            fixed = caller_symbols[0] if caller_symbols else _stem_symbol(path)
        table = _Table(kind)
        parse_time = _TimeParser()
        names = {i: h for i, h in enumerate(header)}
        width = len(header)
        fields = [(field, i, _FIELDS[field]) for field, i in cols.items()]
        out = table.fields
        try:
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue                              # blank line
                where = f"{path}:{line}"
                if len(row) < width:
                    raise DataError(f"{where}: {len(row)} columns, the header has {width}")
                ts = row[ti].strip()
                t = parse_time(ts)
                if t is None:
                    raise DataError(f"{where}: column {names[ti]!r}: not a timestamp (RFC 3339 like "
                                    f"2024-01-02T14:30:00Z, or unix s/ms/us/ns): {ts!r}")
                vals = {"price": 0.0, "size": 0.0, "bid": 0.0, "ask": 0.0, "bid_size": 0.0, "ask_size": 0.0}
                for field, i, dest in fields:
                    cell = row[i].strip()
                    if cell == "" and field in _OPTIONAL:
                        continue
                    if cell == "":
                        raise DataError(f"{where}: column {names[i]!r}: empty")
                    vals[dest] = _number(cell, where, names[i], field, kind)
                if kind == "bars":
                    o, h, lo, c = vals["bid"], vals["ask"], vals["bid_size"], vals["price"]
                    if not (lo <= min(o, c) and max(o, c) <= h):
                        raise DataError(f"{where}: bar out of range: low {lo} <= open {o}, close {c} <= high {h} "
                                        f"does not hold")
                if si is not None:
                    sym = row[si].strip()
                    if not sym:
                        raise DataError(f"{where}: column {names[si]!r}: empty symbol")
                else:
                    sym = fixed
                table.t.append(t)
                table.sym.append(sym)
                table.lines.append(line)
                for k, v in vals.items():
                    out[k].append(v)
        except csv.Error as e:
            raise DataError(f"{path}:{reader.line_num}: bad CSV: {e}") from None
        except UnicodeDecodeError as e:
            raise DataError(f"{path}:{reader.line_num + 1}: not UTF-8 text: {e.reason}") from None
    return table


def _table_to_ticks(table: _Table) -> tuple[np.ndarray, list]:
    """TICK records of a converted file, ``sym`` = index into the returned local names."""
    n = len(table.t)
    ticks = np.zeros(n, TICK)
    local: dict = {}
    if n:
        t = np.array(table.t, np.int64)
        ticks["exch_ns"] = t
        ticks["recv_ns"] = t
        ticks["kind"] = _KIND_CODE[table.kind]
        for k, v in table.fields.items():
            ticks[k] = np.array(v, np.float64)
        ticks["sym"] = [local.setdefault(s, len(local)) for s in table.sym]
    return ticks, list(local)


# -- NumPy files ------------------------------------------------------------------------------

def _columnar(path: str, arrays: dict, kind: str, caller_symbols) -> _Table:
    header = list(arrays)
    kind = _detect_kind(header, path, kind)
    cols = _map_columns(header, kind, path)
    ti = _find(header, TIME_COLUMNS)
    if ti is None:
        raise DataError(f"{path}: no time column ('t', 'timestamp', ...) among {header}")
    tcol = arrays[header[ti]]
    if np.issubdtype(tcol.dtype, np.datetime64):
        t = tcol.astype("datetime64[ns]").astype(np.int64)
    elif np.issubdtype(tcol.dtype, np.integer):
        t = tcol.astype(np.int64)
        if len(t):
            t = t * unix_unit(int(t[0]))
    else:
        parse = _TimeParser()
        vals = []
        for i, x in enumerate(tcol.tolist()):
            v = parse(str(x))
            if v is None:
                raise DataError(f"{path}: record {i}: column {header[ti]!r}: not a timestamp: {x!r}")
            vals.append(v)
        t = np.array(vals, np.int64)
    n = len(t)
    table = _Table(kind)
    table.t = t.tolist()
    table.lines = [f"record {i}" for i in range(n)]
    si = _find(header, SYMBOL_COLUMNS)
    if si is not None:
        table.sym = [str(s) for s in arrays[header[si]].tolist()]
    else:
        if caller_symbols is not None and len(caller_symbols) > 1:
            raise DataError(f"{path}: no symbol column, so the file holds one symbol, but "
                            f"{len(caller_symbols)} were asked for")
        table.sym = [caller_symbols[0] if caller_symbols else _stem_symbol(path)] * n
    for field, i in cols.items():
        a = np.asarray(arrays[header[i]])
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{path}: column {header[i]!r}: not numbers ({a.dtype})") from None
        bad = ~np.isfinite(a)
        if field in _PRICES and kind != "quotes":
            bad |= a <= 0.0
        else:
            bad |= a < 0.0
        if bad.any():
            j = int(np.argmax(bad))
            raise DataError(f"{path}: record {j}: column {header[i]!r}: bad value {a[j]!r} "
                            f"({'a price must be > 0' if field in _PRICES else 'must be >= 0'})")
        table.fields[_FIELDS[field]] = a.tolist()
    for k in table.fields:
        if len(table.fields[k]) != n:
            table.fields[k] = [0.0] * n
    if kind == "bars" and n:
        o, h = np.array(table.fields["bid"]), np.array(table.fields["ask"])
        lo, c = np.array(table.fields["bid_size"]), np.array(table.fields["price"])
        bad = ~((lo <= np.minimum(o, c)) & (np.maximum(o, c) <= h))
        if bad.any():
            j = int(np.argmax(bad))
            raise DataError(f"{path}: record {j}: bar out of range (low <= open, close <= high does not hold)")
    return table


def _tick_file(path: str, ticks: np.ndarray, names, caller_symbols):
    """TICK records of a .npy/.npz, checked: ``(ticks, names of their ids)``."""
    if ticks.dtype != TICK:
        if set(ticks.dtype.names or ()) != set(TICK.names):
            raise DataError(f"{path}: not TICK records: fields {ticks.dtype.names}")
        ticks = ticks.astype(TICK)
    if ticks.ndim != 1:
        raise DataError(f"{path}: expected a 1-D array of TICK records, got shape {ticks.shape}")
    bad = ~np.isin(ticks["kind"], _TICK_KINDS)
    if bad.any():
        j = int(np.argmax(bad))
        raise DataError(f"{path}: record {j}: column 'kind': unknown tick kind {int(ticks['kind'][j])}")
    n_ids = int(ticks["sym"].max()) + 1 if len(ticks) else 0
    if names is None:
        if caller_symbols is not None:
            names = list(caller_symbols)
        elif n_ids <= 1:
            names = [_stem_symbol(path)]
        else:
            raise DataError(f"{path}: TICK records of {n_ids} symbol ids and no names: save them in a .npz "
                            f"with 'symbols', or pass symbols=(...) in id order")
    names = [str(s) for s in names]
    if n_ids > len(names):
        j = int(np.argmax(ticks["sym"] >= len(names)))
        raise DataError(f"{path}: record {j}: column 'sym': id {int(ticks['sym'][j])} has no name "
                        f"(names: {names})")
    return ticks, names


def _journal_symbols(path: str):
    """Symbol names from the JSON sidecar of a ``procs.journal`` tick journal, or None."""
    base = path[:-len(".part")] if path.endswith(".part") else path
    side = os.path.splitext(base)[0] + ".json"
    try:
        with open(side, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not str(doc.get("format", "")).startswith("pyrt-journal"):
        return None
    names = doc.get("symbols")
    return [str(s) for s in names] if isinstance(names, list) and names else None


def _read_numpy(path: str, kind: str, caller_symbols):
    """``(TICK records, names of their ids)``, or ``(_Table of converted columns, None)``."""
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        else:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            arrays = None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read as NumPy data: {e}") from None
    if arrays is not None and "ticks" in arrays:
        names = arrays.get("symbols")
        ticks, names = _tick_file(path, arrays["ticks"], None if names is None else names.tolist(), caller_symbols)
        return ticks, names
    if arrays is None:
        if arr.dtype.names is None:
            raise DataError(f"{path}: expected TICK records or a structured array of named columns, "
                            f"got a plain {arr.dtype} array")
        if set(arr.dtype.names) == set(TICK.names):
            if path.endswith(".part"):          # a journal cut short: its tail is zero-filled
                kinds = np.asarray(arr["kind"])
                arr = arr[:int(np.flatnonzero(kinds != 0)[-1]) + 1] if np.any(kinds != 0) else arr[:0]
            return _tick_file(path, arr, _journal_symbols(path), caller_symbols)
        arrays = {k: np.asarray(arr[k]) for k in arr.dtype.names}
    return _columnar(path, arrays, kind, caller_symbols), None


# -- loading ------------------------------------------------------------------------------------

def _check_order(t: np.ndarray, lines, path: str, sort: str) -> np.ndarray | None:
    """A stable sort permutation if ``t`` is out of order (None if it is in order)."""
    if len(t) < 2:
        return None
    back = np.flatnonzero(t[1:] < t[:-1])
    if len(back) == 0:
        return None
    j = int(back[0]) + 1
    if sort == "reject":
        where = f"{path}:{lines[j]}" if isinstance(lines[j], int) else f"{path}: {lines[j]}"
        prev = lines[j - 1]
        prev = f"line {prev}'s" if isinstance(prev, int) else f"{prev}'s"
        raise DataError(f"{where}: out of order: its time is earlier than {prev} (sort the file, or load "
                        f"it with sort='sort', --unsorted sort)")
    return np.argsort(t, kind="stable")


def load_ticks(paths, symbols=None, kind: str = "auto", sort: str = "sort") -> MarketData:
    """Load and merge market data files into time-ordered TICK records (see module doc).

    ``symbols``: keep only these symbols, in this order (ids 0..n-1); names a file's single
    symbol when it has no symbol column. Raises ``DataError`` for anything unusable.
    """
    if kind not in KINDS:
        raise DataError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if sort not in SORTS:
        raise DataError(f"sort (--unsorted) must be 'sort' or 'reject', got {sort!r}")
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise DataError("no data files given")
    if symbols is not None:
        symbols = tuple(str(s) for s in symbols)
        if len(set(symbols)) != len(symbols) or not all(symbols):
            raise DataError(f"symbols must be distinct non-empty names, got {list(symbols)}")
    parts, order = [], {}
    for path in paths:
        if not os.path.exists(path):
            raise DataError(f"{path}: no such file")
        if path.endswith((".npy", ".npz", ".npy.part")):
            got, local = _read_numpy(path, kind, symbols)
        else:
            got, local = _read_csv(path, kind, symbols), None
        if local is None:                                  # converted rows
            ticks, local = _table_to_ticks(got)
            lines = got.lines
        else:                                              # TICK records with ids into ``local``
            ticks = got
            if np.any(ticks["exch_ns"] == 0):              # no venue time: the receive stamp is the time
                ticks = np.array(ticks)
                z = ticks["exch_ns"] == 0
                ticks["exch_ns"][z] = ticks["recv_ns"][z]
            lines = _RecordLines()
        perm = _check_order(ticks["exch_ns"], lines, path, sort)
        if perm is not None:
            ticks = ticks[perm]
        for s in local:
            order.setdefault(s, len(order))
        parts.append((ticks, local))
    names = symbols if symbols is not None else tuple(order)
    ids = {s: i for i, s in enumerate(names)}
    if len(parts) == 1:
        ticks, local = parts[0]
        if isinstance(ticks, np.memmap) and tuple(local) == tuple(names):
            return MarketData(ticks, tuple(names), paths[0])   # already in replay form: no copy
    chunks = []
    for ticks, local in parts:
        lut = np.array([ids.get(s, -1) for s in local] or [-1], np.int64)
        gid = lut[ticks["sym"]]
        keep = gid >= 0
        t = np.array(ticks[keep])
        t["sym"] = gid[keep]
        chunks.append(t)
    ticks = np.concatenate(chunks)
    if len(chunks) > 1:
        ticks = ticks[np.argsort(ticks["exch_ns"], kind="stable")]
    if len(ticks) == 0:
        asked = f" for the symbols {list(symbols)}" if symbols is not None else ""
        raise DataError(f"{', '.join(paths)}: no data rows{asked}")
    present = set(np.unique(ticks["sym"]).tolist())
    missing = [s for i, s in enumerate(names) if i not in present]
    if missing:
        raise DataError(f"{', '.join(paths)}: no rows for the symbols {missing}")
    ticks["seq"] = np.arange(len(ticks), dtype=np.uint64)
    ticks["recv_ns"] = ticks["exch_ns"]
    return MarketData(ticks, tuple(names), ", ".join(paths))


def save_ticks(path, data: MarketData) -> str:
    """Write ``data`` as ``.npz`` (``ticks`` + ``symbols``) for fast reloading with ``load_ticks``
    (CSV parsing is pure Python; a converted file loads at memory speed). Returns the path."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
        raise DataError(f"{path}: save_ticks writes .npz files")
    np.savez(path, ticks=np.ascontiguousarray(data.ticks), symbols=np.array(data.symbols, dtype=str))
    return path


class _RecordLines:
    """``lines[i]`` of a NumPy file: ``"record i"`` (no list of millions of strings)."""

    def __getitem__(self, i):
        return f"record {i}"
