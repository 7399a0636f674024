"""Risk limits: load ``config/risk_limits.toml``, validate every key at once, hand numba a record.

Where the limits come from (risk param ``limits``):

* absent: the repository's ``config/risk_limits.toml`` when it exists next to the package
  (a checkout or an editable install), else the built-in ``DEFAULTS`` below, which hold the
  same values (a test keeps the shipped file and ``DEFAULTS`` identical). An installed wheel
  has no ``config/`` directory, so the defaults live in code rather than in package data.
* a path: absolute, or relative to the current directory, else to the repository root.

``load_limits(path, symbols)`` returns a ``RiskLimits``; every error (unknown section or
key, wrong type, out of range, unknown symbol) is collected and raised together as one
``RiskLimitsError`` whose lines read ``<file>: <section>.<key>: <problem>``.
"""
from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(REPO_ROOT, "config", "risk_limits.toml")
BUILTIN = "<built-in risk limits>"

PNL_AVERAGE = 0
PNL_FIFO = 1
PNL_METHODS = {"average": PNL_AVERAGE, "fifo": PNL_FIFO}

#: section -> key -> (default, kind, lo, hi). kind: "float", "int", "bool", "method", "symbols".
SCHEMA = {
    "account": {
        "starting_equity": (1_000_000.0, "float", 0.0, None),
        "leverage": (4.0, "float", 0.0, None),
        "pnl_method": ("average", "method", None, None),
    },
    "orders": {
        "max_order_qty": (1000.0, "float", 0.0, None),
        "max_order_notional": (250_000.0, "float", 0.0, None),
        "max_open_orders": (256, "int", 1, 1 << 24),
        "rate_per_sec": (2000, "int", 0, 10**9),
        "rate_per_min": (60_000, "int", 0, 10**11),
        "price_collar_bps": (500.0, "float", 0.0, 10_000.0),
    },
    "positions": {
        "max_position": (500.0, "float", 0.0, None),
        "max_gross_exposure": (2_000_000.0, "float", 0.0, None),
        "max_net_exposure": (1_000_000.0, "float", 0.0, None),
        "max_concentration": (0.25, "float", 0.0, None),
        "restricted": ([], "symbols", None, None),
    },
    "loss": {
        "daily_loss_limit": (50_000.0, "float", 0.0, None),
        "max_drawdown": (100_000.0, "float", 0.0, None),
        "stop_loss_bps": (0.0, "float", 0.0, 10_000.0),
        "trailing_stop_bps": (0.0, "float", 0.0, 10_000.0),
        "auto_halt": (True, "bool", None, None),
    },
}
SYMBOL_KEYS = ("max_position", "max_order_qty")
#: Positive limits that must be > 0 (the others accept 0 = off or 0 = nothing allowed).
STRICTLY_POSITIVE = {("account", "starting_equity"), ("account", "leverage"),
                     ("orders", "max_order_qty"), ("orders", "max_order_notional")}

DEFAULTS = {sec: {k: v[0] for k, v in keys.items()} for sec, keys in SCHEMA.items()}

#: The record the jitted checks read (private to the risk stage, not shared memory).
LIMITS = np.dtype(
    [
        ("starting_equity", "<f8"), ("leverage", "<f8"), ("pnl_method", "<i8"),
        ("max_order_qty", "<f8"), ("max_order_notional", "<f8"), ("max_open_orders", "<i8"),
        ("rate_per_sec", "<f8"), ("rate_per_min", "<f8"), ("price_collar_bps", "<f8"),
        ("max_position", "<f8"), ("max_gross_exposure", "<f8"), ("max_net_exposure", "<f8"),
        ("max_concentration", "<f8"),
        ("daily_loss_limit", "<f8"), ("max_drawdown", "<f8"), ("stop_loss_bps", "<f8"),
        ("trailing_stop_bps", "<f8"), ("auto_halt", "<i8"),
    ],
    align=True,
)


class RiskLimitsError(ValueError):
    """Every problem of a limits file, one per line, each naming the file and the key."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("\n".join(errors))


@dataclass(frozen=True)
class RiskLimits:
    source: str
    values: dict                      #: section -> key -> value (validated, defaults filled in)
    symbols: tuple = ()
    per_symbol: dict = field(default_factory=dict)   #: symbol -> {key: value}

    def get(self, section: str, key: str):
        return self.values[section][key]

    def record(self) -> np.ndarray:
        """The limits as a 1-row ``LIMITS`` array for the jitted checks."""
        r = np.zeros(1, LIMITS)
        for sec, keys in self.values.items():
            for k, v in keys.items():
                if k == "restricted":
                    continue
                r[k] = PNL_METHODS[v] if k == "pnl_method" else v
        return r

    def per_symbol_array(self, key: str) -> np.ndarray:
        """``float64[n_symbols]``: the symbol's override of ``key`` or the global limit."""
        sec = "orders" if key == "max_order_qty" else "positions"
        out = np.full(len(self.symbols), float(self.values[sec][key]))
        for sym, over in self.per_symbol.items():
            if key in over:
                out[self.symbols.index(sym)] = over[key]
        return out

    def restricted_mask(self) -> np.ndarray:
        """``uint8[n_symbols]``: 1 for restricted symbols."""
        m = np.zeros(len(self.symbols), np.uint8)
        for s in self.values["positions"]["restricted"]:
            m[self.symbols.index(s)] = 1
        return m


def resolve_path(path: str | None) -> str | None:
    """The file to read for ``path`` (see module doc); None means the built-in defaults."""
    if path is None:
        return SHIPPED if os.path.exists(SHIPPED) else None
    if os.path.isabs(path) or os.path.exists(path):
        return path
    alt = os.path.join(REPO_ROOT, path)
    return alt if os.path.exists(alt) else path


def load_limits(path: str | None = None, symbols=()) -> RiskLimits:
    """Read and validate a limits file (``None``: the shipped file or the defaults)."""
    src = resolve_path(path)
    if src is None:
        raw, where = {}, BUILTIN
    else:
        where = src
        try:
            with open(src, "rb") as f:
                raw = tomllib.load(f)
        except FileNotFoundError:
            raise RiskLimitsError([f"{src}: risk limits file not found"]) from None
        except tomllib.TOMLDecodeError as e:
            raise RiskLimitsError([f"{src}: not valid TOML: {e}"]) from None
    return validate(raw, where, tuple(symbols))


def validate(raw: dict, where: str, symbols: tuple = ()) -> RiskLimits:
    errors: list[str] = []
    values = {sec: dict(keys) for sec, keys in DEFAULTS.items()}
    values["positions"]["restricted"] = []
    per_symbol: dict = {}
    for sec, body in raw.items():
        if sec == "symbols":
            _symbols_section(body, where, symbols, per_symbol, errors)
            continue
        if sec not in SCHEMA:
            errors.append(f"{where}: {sec}: unknown section (known: {', '.join(list(SCHEMA) + ['symbols'])})")
            continue
        if not isinstance(body, dict):
            errors.append(f"{where}: {sec}: must be a table")
            continue
        for key, v in body.items():
            spec = SCHEMA[sec].get(key)
            if spec is None:
                errors.append(f"{where}: {sec}.{key}: unknown key (known: {', '.join(SCHEMA[sec])})")
                continue
            ok, val = _check(where, sec, key, v, spec, symbols, errors)
            if ok:
                values[sec][key] = val
    if errors:
        raise RiskLimitsError(errors)
    return RiskLimits(where, values, symbols, per_symbol)


def _check(where, sec, key, v, spec, symbols, errors):
    _, kind, lo, hi = spec
    name = f"{where}: {sec}.{key}"
    if kind == "method":
        if v not in PNL_METHODS:
            errors.append(f"{name}: must be one of {', '.join(map(repr, PNL_METHODS))}, got {v!r}")
            return False, None
        return True, v
    if kind == "bool":
        if not isinstance(v, bool):
            errors.append(f"{name}: must be true or false, got {v!r}")
            return False, None
        return True, v
    if kind == "symbols":
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            errors.append(f"{name}: must be an array of symbol names, got {v!r}")
            return False, None
        unknown = [s for s in v if symbols and s not in symbols]
        if unknown:
            errors.append(f"{name}: unknown symbol(s) {unknown} (engine symbols: {list(symbols)})")
            return False, None
        return True, list(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        errors.append(f"{name}: must be a number, got {type(v).__name__} {v!r}")
        return False, None
    if kind == "int" and not isinstance(v, int):
        errors.append(f"{name}: must be an integer, got {v!r}")
        return False, None
    if not math.isfinite(v):
        errors.append(f"{name}: must be finite, got {v!r}")
        return False, None
    strict = (sec, key) in STRICTLY_POSITIVE
    if (lo is not None and (v <= lo if strict else v < lo)) or (hi is not None and v > hi):
        rule = (f"> {lo}" if strict else f">= {lo}") + (f" and <= {hi}" if hi is not None else "")
        errors.append(f"{name}: must be {rule}, got {v!r}")
        return False, None
    return True, (int(v) if kind == "int" else float(v))


def _symbols_section(body, where, symbols, per_symbol, errors):
    if not isinstance(body, dict):
        errors.append(f"{where}: symbols: must be a table of symbol tables")
        return
    for sym, over in body.items():
        if symbols and sym not in symbols:
            errors.append(f"{where}: symbols.{sym}: unknown symbol (engine symbols: {list(symbols)})")
            continue
        if not isinstance(over, dict):
            errors.append(f"{where}: symbols.{sym}: must be a table")
            continue
        got = {}
        for key, v in over.items():
            if key not in SYMBOL_KEYS:
                errors.append(f"{where}: symbols.{sym}.{key}: unknown key (known: {', '.join(SYMBOL_KEYS)})")
                continue
            sec = "orders" if key == "max_order_qty" else "positions"
            ok, val = _check(where, f"symbols.{sym}", key, v, SCHEMA[sec][key], symbols, errors)
            if ok:
                got[key] = val
        per_symbol[sym] = got
