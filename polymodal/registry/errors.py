"""Errors of the registry: unknown and duplicate names, plugin failures. Each says what to do next."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["DuplicateNameError", "InvalidComponentError", "PluginLoadWarning", "UnknownNameError"]


class UnknownNameError(KeyError):
    """A name that is not registered; the message suggests close matches and lists what is."""

    def __init__(self, kind: str, name: str, registered: Iterable[str]) -> None:
        names = sorted(registered)
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        listing = ", ".join(names) if names else "none"
        self.kind, self.name, self.suggestions = kind, name, close
        self.message = f"unknown {kind} {name!r}{hint} Registered ({len(names)}): {listing}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class DuplicateNameError(ValueError):
    """A name registered twice; the message names both sources."""


class InvalidComponentError(TypeError):
    """Something that cannot be registered (not a component class, bad name, no config class)."""


class PluginLoadWarning(UserWarning):
    """A plugin failed to load; the others still work."""
