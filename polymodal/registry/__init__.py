"""Names -> classes (mmengine registries), plugin discovery (pluggy) and configs (pydantic)."""

from polymodal.registry.errors import (
    DuplicateNameError,
    InvalidComponentError,
    PluginLoadWarning,
    UnknownNameError,
)
from polymodal.registry.hookspecs import ENTRY_POINT_GROUP, hookimpl
from polymodal.registry.lookup import (
    component_class,
    get,
    list_data_sources,
    list_encoders,
    list_heads,
    list_metrics,
    list_modalities,
    list_names,
    list_tokenizers,
    register,
)
from polymodal.registry.plugins import PluginInfo, ensure_plugins_loaded, list_plugins, load_plugin
from polymodal.registry.tables import DATA_SOURCES, ENCODERS, HEADS, METRICS, MODELS, TOKENIZERS

__all__ = [
    "DATA_SOURCES",
    "ENCODERS",
    "ENTRY_POINT_GROUP",
    "HEADS",
    "METRICS",
    "MODELS",
    "TOKENIZERS",
    "DuplicateNameError",
    "InvalidComponentError",
    "PluginInfo",
    "PluginLoadWarning",
    "UnknownNameError",
    "component_class",
    "ensure_plugins_loaded",
    "get",
    "hookimpl",
    "list_data_sources",
    "list_encoders",
    "list_heads",
    "list_metrics",
    "list_modalities",
    "list_names",
    "list_plugins",
    "list_tokenizers",
    "load_plugin",
    "register",
]
