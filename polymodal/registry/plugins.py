"""Plugin discovery with pluggy, through the entry-point group ``polymodal.plugins``.

Discovery runs once, on the first lookup. ``POLYMODAL_BLOCK_PLUGINS=a,b`` blocks plugins by entry-point name, or
every plugin of a third-party distribution by its name (an unknown name warns);
``POLYMODAL_DISABLE_PLUGIN_AUTOLOAD=1`` loads only the plugins polymodal itself declares and neither loads nor
warns about any other. A plugin that raises on import (``SystemExit`` included) or returns something other than
component classes is reported (entry point, distribution, how to block it) with a ``PluginLoadWarning``, and the
others still load.

polymodal's own plugins load first and their names are reserved: a third party can take neither the entry-point
name of a built-in plugin nor the name of a built-in component, whether or not the built-in is blocked (the name
of a blocked built-in plugin is reserved for every kind of component).
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any

import pluggy

from polymodal.registry import hookspecs
from polymodal.registry.errors import PluginLoadWarning
from polymodal.registry.tables import register_many

__all__ = ["PluginInfo", "block_hint", "ensure_plugins_loaded", "list_plugins", "load_plugin", "plugin_manager"]

BLOCK_ENV = "POLYMODAL_BLOCK_PLUGINS"
NO_AUTOLOAD_ENV = "POLYMODAL_DISABLE_PLUGIN_AUTOLOAD"
HOST_DISTRIBUTION = "polymodal"


@dataclass
class PluginInfo:
    """What ``polymodal list plugins`` shows for one plugin."""

    name: str
    status: str  # "loaded" | "blocked" | "failed" | "not autoloaded"
    distribution: str = ""
    version: str = ""
    entry_point: str = ""
    components: list[str] = field(default_factory=list)
    error: str = ""


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.loaded = False
        self.loading = False
        self.infos: dict[str, PluginInfo] = {}
        self.reserved: dict[str, str] = {}  # component name -> the built-in that owns it
        self.pm = self._new_manager()

    @staticmethod
    def _new_manager() -> pluggy.PluginManager:
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        return pm


_state = _State()
# What plugin code may raise that must not end the host: any error, and SystemExit (a plugin calling sys.exit at
# import); KeyboardInterrupt still interrupts.
_PLUGIN_ERRORS = (Exception, SystemExit)


def plugin_manager() -> pluggy.PluginManager:
    """The pluggy plugin manager (after discovery)."""
    ensure_plugins_loaded()
    return _state.pm


def _blocked() -> set[str]:
    return {n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()}


def _autoload_disabled() -> bool:
    return os.environ.get(NO_AUTOLOAD_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _is_host(info: PluginInfo) -> bool:
    return info.distribution == HOST_DISTRIBUTION


def block_hint(info: PluginInfo, name_clash: bool = False) -> str:
    """How to skip a failing plugin: its entry-point name (unless it clashes with another plugin's, which blocking
    would block too) and, for a third party, its distribution's name."""
    options = [] if name_clash else [f"{BLOCK_ENV}={info.name}"]
    if info.distribution and not _is_host(info):
        options.append(f"{BLOCK_ENV}={info.distribution} (every plugin of that distribution)")
    return f"to skip it set {' or '.join(options)}" if options else "it cannot be blocked by name"


def _fail(info: PluginInfo, problem: str, name_clash: bool = False) -> None:
    info.status, info.error = "failed", problem
    where = f"entry point '{info.entry_point}'" if info.entry_point else "registered object"
    dist = f" of distribution {info.distribution} {info.version}".rstrip() if info.distribution else ""
    warnings.warn(
        f"polymodal plugin {info.name!r} ({where}{dist}) failed to load: {problem}. "
        f"The other plugins still work; {block_hint(info, name_clash)}",
        PluginLoadWarning,
        stacklevel=4,
    )


def _reserved_clash(classes: list[Any]) -> str | None:
    """The first component name a third party may not take: a built-in component's, or a built-in plugin's."""
    for cls in classes:
        name = getattr(cls, "name", None)
        owner = _state.reserved.get(name) if isinstance(name, str) else None
        if owner is not None:
            return f"{getattr(cls, 'kind', 'component')} name {name!r} is reserved by polymodal's built-in {owner}"
    return None


def _activate(name: str, plugin: Any, info: PluginInfo) -> None:
    """Register ``plugin`` with pluggy, call its hook through pluggy (alone, so what it returns is attributed to
    it) and register the classes it returns (all or nothing)."""
    pm = _state.pm
    try:
        pm.register(plugin, name=name)
    except Exception as exc:  # pluggy rejects duplicate names and malformed hookimpls
        _fail(info, f"{type(exc).__name__}: {exc}")
        return
    if not any(i.plugin_name == name for i in pm.hook.polymodal_components.get_hookimpls()):
        pm.unregister(name=name)
        _fail(info, "it defines no @hookimpl polymodal_components()")
        return
    others = [p for p in pm.get_plugins() if p is not plugin]
    try:
        results = pm.subset_hook_caller("polymodal_components", remove_plugins=others)()
        classes = results[0] if results else None  # pluggy leaves out a None result
        if not isinstance(classes, (list, tuple)):
            raise TypeError(
                f"polymodal_components() must return a list of classes, got {type(classes).__name__}"
            )
        clash = None if _is_host(info) else _reserved_clash(list(classes))
        if clash is not None:
            pm.unregister(name=name)
            _fail(info, clash)
            return
        info.components = register_many(list(classes), source=f"plugin {name!r}")
        info.status = "loaded"
        if _is_host(info):
            _state.reserved.update({c: f"plugin {name!r}" for c in info.components})
    except _PLUGIN_ERRORS as exc:
        pm.unregister(name=name)
        _fail(info, f"{type(exc).__name__}: {exc}")


def _load_entry_point(ep: EntryPoint) -> None:
    dist = ep.dist
    info = PluginInfo(
        name=ep.name,
        status="failed",
        distribution=dist.metadata["Name"] if dist is not None else "",
        version=dist.version if dist is not None else "",
        entry_point=f"{ep.name} = {ep.value}",
    )
    key = ep.name if ep.name not in _state.infos else f"{ep.name} ({info.distribution})"
    info.name = key  # listed apart from the plugin that has the name
    blocked = _blocked()
    if not _is_host(info) and (_autoload_disabled() or info.distribution in blocked):
        # neither loaded nor warned about
        info.status = "not autoloaded" if _autoload_disabled() else "blocked"
        _state.infos[key] = info
        return
    _state.infos[key] = info
    if key != ep.name:
        first = _state.infos[ep.name]
        whose = "polymodal's built-in plugin" if _is_host(first) else f"{first.entry_point} of {first.distribution}"
        _fail(info, f"the name {ep.name!r} is already taken by {whose}", name_clash=True)
        return
    if ep.name in blocked:
        _state.pm.set_blocked(ep.name)
        info.status = "blocked"
        if _is_host(info):  # its name stays reserved, whatever it would have registered
            _state.reserved.setdefault(ep.name, f"plugin {ep.name!r} (blocked)")
        return
    try:
        plugin = ep.load()
    except _PLUGIN_ERRORS as exc:
        _fail(info, f"importing {ep.value} raised {type(exc).__name__}: {exc}")
        return
    _activate(ep.name, plugin, info)


def _warn_unknown_blocked(eps: list[EntryPoint]) -> None:
    known = {ep.name for ep in eps} | {ep.dist.metadata["Name"] for ep in eps if ep.dist is not None}
    unknown = sorted(_blocked() - known)
    if unknown:
        warnings.warn(
            f"{BLOCK_ENV} names {', '.join(map(repr, unknown))}, which no installed plugin has (plugins: "
            f"{', '.join(sorted(ep.name for ep in eps))}; distributions can be named too)",
            PluginLoadWarning,
            stacklevel=4,
        )


def ensure_plugins_loaded() -> None:
    """Discover and load plugins once (called by every lookup)."""
    if _state.loaded:
        return
    with _state.lock:
        if _state.loaded or _state.loading:
            return
        _state.loading = True
        try:
            # The host's own plugins load first, so a third party can never take a built-in name.
            eps = sorted(
                entry_points(group=hookspecs.ENTRY_POINT_GROUP),
                key=lambda e: (e.dist is None or e.dist.metadata["Name"] != HOST_DISTRIBUTION, e.name),
            )
            if not any(ep.dist is not None and ep.dist.metadata["Name"] == HOST_DISTRIBUTION for ep in eps):
                warnings.warn(
                    "polymodal's own entry points were not found, so no built-in modality is available: "
                    "install the package (`pip install -e .` in a checkout) rather than importing it from a path",
                    PluginLoadWarning,
                    stacklevel=3,
                )
            for ep in eps:
                _load_entry_point(ep)
            _warn_unknown_blocked(eps)
        finally:
            _state.loading = False
            _state.loaded = True


def load_plugin(plugin: ModuleType | object, name: str | None = None) -> PluginInfo:
    """Load a plugin object that is not installed as a distribution (e.g. a module in a notebook).

    It goes through the same checks as an entry point; a failure raises instead of warning.
    """
    ensure_plugins_loaded()
    name = name or getattr(plugin, "__name__", type(plugin).__name__)
    with _state.lock:
        if name in _blocked():
            info = PluginInfo(name=name, status="blocked")
        else:
            info = PluginInfo(name=name, status="failed")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PluginLoadWarning)
                _activate(name, plugin, info)
            if info.status == "failed":
                raise RuntimeError(f"plugin {name!r} failed to load: {info.error}")
        _state.infos[name] = info
        return info


def list_plugins() -> list[PluginInfo]:
    """Every plugin seen, with its distribution, version, status, components and error (if it failed)."""
    ensure_plugins_loaded()
    return sorted(_state.infos.values(), key=lambda i: i.name)


def _reset() -> None:
    """Forget every plugin and every registered name (tests only)."""
    from polymodal.registry import tables

    with _state.lock:
        for table in tables.TABLES.values():
            table._module_dict.clear()
        tables.SOURCES.clear()
        tables.CONFIG_OWNERS.clear()
        _state.__init__()  # type: ignore[misc]
