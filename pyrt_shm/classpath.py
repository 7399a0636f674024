"""Import ``"package.module:ClassName"`` paths named in the topology, with clear errors."""
from __future__ import annotations

import importlib


def import_class(path: str, where: str):
    """Import the class at ``path``; ``where`` names the config key for error messages."""
    module, _, name = path.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{where}: cannot import module {module!r}: {e}") from None
    try:
        return getattr(mod, name)
    except AttributeError:
        raise ImportError(f"{where}: module {module!r} has no {name!r}") from None
