"""Registries of one shape: a name -> object table that every extension point of aows
uses (search spaces, ops, solvers, timing backends, importance criteria).

``register`` adds (also as a decorator), ``names`` lists, ``get`` looks up, and an unknown
name is one clear error that lists the known ones. A registry is a ``dict``, so ``in``,
indexing and iteration work as on any mapping; ``get(name, default)`` returns the default
for an unknown name as ``dict.get`` does, and ``get(name)`` raises instead of returning
None.
"""

from __future__ import annotations

from typing import Any, TypeVar

from aows.errors import AowsError

__all__ = ["Registry"]

T = TypeVar("T")
_MISSING = object()


class Registry(dict):
    """A named table of ``kind`` (e.g. "solver").

    Args:
        kind: what the entries are, for messages.
        error: the error class of an unknown name (an ``AowsError``).
    """

    def __init__(self, kind: str, error: type[AowsError] = AowsError):
        super().__init__()
        self.kind, self.error = kind, error

    def register(self, name: str, obj: Any = _MISSING) -> Any:
        """Add ``obj`` under ``name`` and return it; without ``obj``, a decorator that
        adds what it decorates. A name registered again is replaced (a user's override)."""
        if obj is _MISSING:
            def add(fn: T) -> T:
                self[name] = fn
                return fn
            return add
        self[name] = obj
        return obj

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self)

    def get(self, name: str, default: Any = _MISSING) -> Any:
        """The entry of ``name``; an unknown name is ``default`` when given, else one
        clear error listing the known names."""
        if name in self:
            return self[name]
        if default is not _MISSING:
            return default
        raise self.error(f"unknown {self.kind} '{name}'; known: {', '.join(self.names())}")

