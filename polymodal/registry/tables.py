"""The name -> class tables (mmengine ``Registry``), one per kind of component, and all-or-nothing registration.

This module only stores names; plugin discovery (:mod:`polymodal.registry.plugins`) fills the tables, and the
lookups that trigger discovery on first use (``get``, ``register``, ``list_*``) are in
:mod:`polymodal.registry.lookup`. Names match ``^[a-z][a-z0-9_]*$`` (never dotted import paths).
"""

from __future__ import annotations

import inspect
import re
import threading
from collections.abc import Sequence
from typing import Any

from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

from polymodal.core.component import Component, ComponentConfig
from polymodal.registry.errors import DuplicateNameError, InvalidComponentError

__all__ = [
    "DATA_SOURCES",
    "ENCODERS",
    "HEADS",
    "MODELS",
    "NAME_PATTERN",
    "TABLES",
    "TOKENIZERS",
    "register_many",
    "unregister",
]

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")

TOKENIZERS = Registry("tokenizer", scope="polymodal")
ENCODERS = Registry("encoder", scope="polymodal")
HEADS = Registry("head", scope="polymodal")
DATA_SOURCES = Registry("data source", scope="polymodal")
METRICS = Registry("metric", scope="polymodal")
# Child of mmengine's root so that Runner builds `dict(type="MultimodalModel", ...)` with default_scope="polymodal".
MODELS = Registry(
    "model", parent=MMENGINE_MODELS, scope="polymodal", locations=["polymodal.model.multimodal"]
)

TABLES: dict[str, Registry] = {
    "tokenizer": TOKENIZERS,
    "encoder": ENCODERS,
    "head": HEADS,
    "data source": DATA_SOURCES,
    "metric": METRICS,
}
# (kind, name) -> where it came from, for duplicate errors and `polymodal list`.
SOURCES: dict[tuple[str, str], str] = {}
# config class -> the one component registered with it (None when several share it), so building from a validated
# config needs no second lookup by name.
CONFIG_OWNERS: dict[type, type | None] = {}
_lock = threading.RLock()


def _check_component(cls: Any) -> str:

    if not (inspect.isclass(cls) and issubclass(cls, Component)):
        raise InvalidComponentError(
            f"expected a Tokenizer, Encoder, Head, DataSource or Metric subclass, got {cls!r}"
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
                owner = CONFIG_OWNERS.get(cls.config_class, cls)
                CONFIG_OWNERS[cls.config_class] = cls if owner is cls else None
        return [name for _, name in seen]


def unregister(kind: str, name: str) -> None:
    """Remove a name (for tests and notebooks that re-define a class)."""
    with _lock:
        cls = TABLES[kind]._module_dict.pop(name, None)
        SOURCES.pop((kind, name), None)
        if cls is not None and CONFIG_OWNERS.get(cls.config_class, None) is cls:
            del CONFIG_OWNERS[cls.config_class]
