"""The plugin of :mod:`polymodal.data`: the ``files`` data source (the user's own files in config files).

Declared in our pyproject as the entry point ``data = "polymodal.data.plugin"``, like every built-in.
"""

from __future__ import annotations

from polymodal.data.source import FilesDataSource
from polymodal.registry.hookspecs import hookimpl

__all__ = ["polymodal_components"]


@hookimpl
def polymodal_components() -> list[type]:
    return [FilesDataSource]
