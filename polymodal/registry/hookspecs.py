"""The plugin hook. A plugin is a module (or object) with a ``@hookimpl`` function of this name.

Plugins are found through the entry-point group ``polymodal.plugins``::

    [project.entry-points."polymodal.plugins"]
    eeg = "polymodal_eeg"
"""

from __future__ import annotations

import pluggy

__all__ = ["ENTRY_POINT_GROUP", "PROJECT", "hookimpl", "hookspec", "polymodal_components"]

PROJECT = "polymodal"
ENTRY_POINT_GROUP = "polymodal.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def polymodal_components() -> list[type]:  # type: ignore[empty-body]
    """Return the component classes (tokenizers, encoders, heads, data sources) this plugin provides.

    Must have no side effects: the host registers the classes through ``polymodal.register``.
    """
