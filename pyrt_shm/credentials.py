"""Alpaca credentials: from the environment or a ``.env`` file, never from code or config.

``alpaca_credentials()`` returns ``Credentials(key_id, secret_key)`` read from
``APCA_API_KEY_ID`` / ``APCA_API_SECRET_KEY``. A variable missing from the environment is
looked up in a ``.env`` file (``KEY=value`` lines, ``#`` comments, optional ``export`` and
quotes; the current directory's unless a path is given). The environment wins over the file.

Secrets never leave this object: ``repr``/``str`` mask them, so a credentials object that
ends up in a log line, an exception or ``summary.json`` shows ``APCA_API_KEY_ID=PK…(20 chars)``
and nothing of the secret. Missing values raise ``MissingCredentials`` naming both variables
and where they were looked for.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

KEY_VAR = "APCA_API_KEY_ID"
SECRET_VAR = "APCA_API_SECRET_KEY"


class MissingCredentials(RuntimeError):
    """The Alpaca key id or secret is not set (message names the variables)."""


@dataclass(frozen=True)
class Credentials:
    key_id: str
    secret_key: str

    def __repr__(self) -> str:
        return f"Credentials({KEY_VAR}={mask(self.key_id)}, {SECRET_VAR}=***)"

    __str__ = __repr__


def mask(value: str) -> str:
    """A key id shown safely: its first two characters and its length."""
    return f"{value[:2]}…({len(value)} chars)" if value else "(empty)"


def read_dotenv(path: str) -> dict[str, str]:
    """``KEY=value`` pairs of a .env file ({} when it does not exist).

    Malformed lines raise ValueError naming the file and line; values are never echoed.
    """
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return out
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum():
            raise ValueError(f"{path}:{n}: expected KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key] = value
    return out


def alpaca_credentials(env: dict | None = None, dotenv_path: str | None = ".env") -> Credentials:
    """The Alpaca key pair from ``env`` (default ``os.environ``), then ``dotenv_path``."""
    env = os.environ if env is None else env
    found = {v: env.get(v, "") for v in (KEY_VAR, SECRET_VAR)}
    if not all(found.values()) and dotenv_path:
        file_vals = read_dotenv(dotenv_path)
        for v in found:
            found[v] = found[v] or file_vals.get(v, "")
    missing = [v for v, val in found.items() if not val]
    if missing:
        where = f"the environment or {os.path.abspath(dotenv_path)}" if dotenv_path else "the environment"
        raise MissingCredentials(
            f"Alpaca credentials missing: set {' and '.join(missing)} in {where} "
            f"(both {KEY_VAR} and {SECRET_VAR} are needed)")
    return Credentials(found[KEY_VAR], found[SECRET_VAR])
