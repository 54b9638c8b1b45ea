"""The name -> class tables (mmengine ``Registry``), ``register``, lookups and ``list_*``.

One table per kind of component. Plugins and users go through the same ``register(cls)``. Lookups take names
only (``^[a-z][a-z0-9_]*$``), never dotted import paths, and trigger plugin discovery the first time.
"""

from __future__ import annotations

import fnmatch
import inspect
import re
import sys
import threading
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

from polymodal.registry.errors import DuplicateNameError, InvalidComponentError, UnknownNameError

__all__ = [
    "DATA_SOURCES",
    "ENCODERS",
    "HEADS",
    "MODELS",
    "TOKENIZERS",
    "get",
    "list_data_sources",
    "list_encoders",
    "list_heads",
    "list_modalities",
    "list_tokenizers",
    "register",
]

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")

TOKENIZERS = Registry("tokenizer", scope="polymodal")
ENCODERS = Registry("encoder", scope="polymodal")
HEADS = Registry("head", scope="polymodal")
DATA_SOURCES = Registry("data source", scope="polymodal")
# Child of mmengine's root so that Runner builds `dict(type="MultimodalModel", ...)` with default_scope="polymodal".
MODELS = Registry("model", parent=MMENGINE_MODELS, scope="polymodal", locations=["polymodal.core.model"])

TABLES: dict[str, Registry] = {
    "tokenizer": TOKENIZERS,
    "encoder": ENCODERS,
    "head": HEADS,
    "data source": DATA_SOURCES,
}
# (kind, name) -> where it came from, for duplicate errors and `polymodal list`.
SOURCES: dict[tuple[str, str], str] = {}
_lock = threading.RLock()

T = TypeVar("T", bound=type)


def _check_component(cls: Any) -> str:
    from polymodal.core.component import Component, ComponentConfig

    if not (inspect.isclass(cls) and issubclass(cls, Component)):
        raise InvalidComponentError(
            f"expected a Tokenizer, Encoder, Head or DataSource subclass, got {cls!r}"
        )
    if cls.kind not in TABLES:
        raise InvalidComponentError(f"{cls.__qualname__}: kind {cls.kind!r} is not one of {sorted(TABLES)}")
    if not isinstance(cls.name, str) or not NAME_PATTERN.match(cls.name):
        raise InvalidComponentError(
            f"{cls.__qualname__}: name {cls.name!r} must match {NAME_PATTERN.pattern} (lower case, digits, '_')"
        )
    if not (inspect.isclass(cls.config_class) and issubclass(cls.config_class, ComponentConfig)):
        raise InvalidComponentError(f"{cls.__qualname__}: config_class must be a ComponentConfig subclass")
    return cls.kind


def _describe_source(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_many(classes: Sequence[type], source: str) -> list[str]:
    """Register several classes all-or-nothing; return their names. Used by plugin loading and ``register``."""
    with _lock:
        seen: dict[tuple[str, str], type] = {}
        for cls in classes:
            key = (_check_component(cls), cls.name)
            if key in SOURCES and TABLES[key[0]].get(key[1]) is not cls:
                raise DuplicateNameError(
                    f"{key[0]} {key[1]!r} from {source} ({_describe_source(cls)}) is already registered by "
                    f"{SOURCES[key]}"
                )
            if key in seen and seen[key] is not cls:
                raise DuplicateNameError(
                    f"{key[0]} {key[1]!r} is defined twice by {source}: {_describe_source(seen[key])} and "
                    f"{_describe_source(cls)}"
                )
            seen[key] = cls
        for (kind, name), cls in seen.items():
            if (kind, name) not in SOURCES:
                TABLES[kind].register_module(name=name, module=cls)
                SOURCES[(kind, name)] = f"{source} ({_describe_source(cls)})"
        return [name for _, name in seen]


def register(cls: T) -> T:
    """Register a component class under ``cls.name`` in the table for its kind; usable as a decorator.

    Raises ``DuplicateNameError`` (naming both sources) if the name is taken by another class.
    """
    from polymodal.registry.plugins import ensure_plugins_loaded

    ensure_plugins_loaded()
    caller = sys._getframe(1)
    register_many([cls], source=f"register() in {caller.f_code.co_filename}:{caller.f_lineno}")
    return cls


def unregister(kind: str, name: str) -> None:
    """Remove a name (for tests and notebooks that re-define a class)."""
    with _lock:
        TABLES[kind]._module_dict.pop(name, None)
        SOURCES.pop((kind, name), None)


def get(kind: str, name: str) -> Any:
    """The class registered as ``name`` in the ``kind`` table, or an ``UnknownNameError`` with suggestions."""
    from polymodal.registry.plugins import ensure_plugins_loaded

    if kind not in TABLES:
        raise UnknownNameError("component kind", kind, TABLES)
    ensure_plugins_loaded()
    table = TABLES[kind]
    if not isinstance(name, str) or name not in table.module_dict:
        raise UnknownNameError(kind, str(name), table.module_dict)
    return table.module_dict[name]


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
    from polymodal.registry.plugins import ensure_plugins_loaded

    ensure_plugins_loaded()
    return list(TABLES[kind].module_dict)


def list_tokenizers(
    filter: str | Sequence[str] = "*", exclude_filters: str | Sequence[str] = ()
) -> list[str]:
    """Registered tokenizer names matching fnmatch ``filter`` (and none of ``exclude_filters``), sorted."""
    return _filter(_names("tokenizer"), filter, exclude_filters)


def list_encoders(filter: str | Sequence[str] = "*", exclude_filters: str | Sequence[str] = ()) -> list[str]:
    """Registered encoder names, e.g. ``list_encoders('vit_*')``."""
    return _filter(_names("encoder"), filter, exclude_filters)


def list_heads(filter: str | Sequence[str] = "*", exclude_filters: str | Sequence[str] = ()) -> list[str]:
    """Registered head names."""
    return _filter(_names("head"), filter, exclude_filters)


def list_data_sources(
    filter: str | Sequence[str] = "*", exclude_filters: str | Sequence[str] = ()
) -> list[str]:
    """Registered data source names."""
    return _filter(_names("data source"), filter, exclude_filters)


def list_modalities(
    filter: str | Sequence[str] = "*", exclude_filters: str | Sequence[str] = ()
) -> list[str]:
    """Modalities that have at least one registered tokenizer."""
    modalities = {get("tokenizer", n).modality for n in _names("tokenizer")}
    return _filter(modalities, filter, exclude_filters)
