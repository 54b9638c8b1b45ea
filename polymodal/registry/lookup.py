"""Lookups by name: ``get``, ``register`` and ``list_*``. The first lookup discovers the plugins.

One table per kind of component (:mod:`polymodal.registry.tables`); plugins and users go through the same
``register(cls)``. ``list_*`` take fnmatch filters and sort naturally, as timm's ``list_models``.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from polymodal.core.component import ComponentConfig
from polymodal.registry.errors import UnknownNameError
from polymodal.registry.plugins import ensure_plugins_loaded
from polymodal.registry.tables import CONFIG_OWNERS, TABLES, register_many

__all__ = [
    "component_class",
    "get",
    "list_data_sources",
    "list_encoders",
    "list_heads",
    "list_metrics",
    "list_modalities",
    "list_names",
    "list_tokenizers",
    "register",
]

T = TypeVar("T", bound=type)


def register(cls: T) -> T:
    """Register a component class under ``cls.name`` in the table for its kind; usable as a decorator.

    Raises ``DuplicateNameError`` (naming both sources) if the name is taken by another class.
    """
    ensure_plugins_loaded()
    caller = sys._getframe(1)
    register_many([cls], source=f"register() in {caller.f_code.co_filename}:{caller.f_lineno}")
    return cls


def get(kind: str, name: str) -> Any:
    """The class registered as ``name`` in the ``kind`` table, or an ``UnknownNameError`` with suggestions."""
    if kind not in TABLES:
        raise UnknownNameError("component kind", kind, TABLES)
    ensure_plugins_loaded()
    table = TABLES[kind]
    if not isinstance(name, str) or name not in table.module_dict:
        raise UnknownNameError(kind, str(name), table.module_dict)
    return table.module_dict[name]


def component_class(kind: str, config: ComponentConfig) -> Any:
    """The class to build a validated ``config`` of ``kind`` with: the component registered with its config class
    (linked by ``register``), or, when several share that class, the one registered under ``config.type``."""
    owner = CONFIG_OWNERS.get(type(config))
    if owner is not None and owner.kind == kind and owner.name == config.type:
        return owner
    return get(kind, config.type)


def _natural_key(s: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _filter(
    names: Iterable[str], filter: str | Sequence[str], exclude_filters: str | Sequence[str]
) -> list[str]:
    include = [filter] if isinstance(filter, str) else list(filter)
    exclude = [exclude_filters] if isinstance(exclude_filters, str) else list(exclude_filters)
    out = {n for n in names if any(fnmatch.fnmatchcase(n, f) for f in include)}
    out = {n for n in out if not any(fnmatch.fnmatchcase(n, f) for f in exclude)}
    return sorted(out, key=_natural_key)


def _names(kind: str) -> list[str]:
    ensure_plugins_loaded()
    if kind not in TABLES:
        raise UnknownNameError("component kind", kind, TABLES)
    return list(TABLES[kind].module_dict)


Filter = str | Sequence[str]


def list_names(kind: str, filter: Filter = "*", exclude_filters: Filter = ()) -> list[str]:
    """Registered names of ``kind`` (``"tokenizer"``, ``"encoder"``, …) matching fnmatch ``filter`` and none of
    ``exclude_filters``, in natural order (``vit_2`` before ``vit_10``)."""
    return _filter(_names(kind), filter, exclude_filters)


def list_tokenizers(filter: Filter = "*", exclude_filters: Filter = ()) -> list[str]:
    """Registered tokenizer names, e.g. ``list_tokenizers('*image*')``."""
    return list_names("tokenizer", filter, exclude_filters)


def list_encoders(filter: Filter = "*", exclude_filters: Filter = ()) -> list[str]:
    """Registered encoder names, e.g. ``list_encoders('vit_*')``."""
    return list_names("encoder", filter, exclude_filters)


def list_heads(filter: Filter = "*", exclude_filters: Filter = ()) -> list[str]:
    """Registered head names."""
    return list_names("head", filter, exclude_filters)


def list_data_sources(filter: Filter = "*", exclude_filters: Filter = ()) -> list[str]:
    """Registered data source names."""
    return list_names("data source", filter, exclude_filters)


def list_metrics(filter: Filter = "*", exclude_filters: Filter = ()) -> list[str]:
    """Registered metric names."""
    return list_names("metric", filter, exclude_filters)


def list_modalities(filter: Filter = "*", exclude_filters: Filter = ()) -> list[str]:
    """Modalities that have at least one registered tokenizer."""
    modalities = {get("tokenizer", n).modality for n in _names("tokenizer")}
    return _filter(modalities, filter, exclude_filters)
