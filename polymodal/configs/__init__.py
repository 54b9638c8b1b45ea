"""The config files shipped with polymodal, and how ``polymodal train`` / ``eval`` find and check config files.

The ``.py`` files beside this one are mmengine configs (``_base_`` inheritance: ``_base_/`` holds the runtime, the
AdamW schedule and the multi-task loaders). They are package data, installed with the wheel, and named
``polymodal::<name>``::

    polymodal list configs                                  # the shipped ones, with their first comment line
    polymodal train polymodal::image_digits.py              # one modality, a few minutes on a CPU
    _base_ = ["polymodal::_base_/default_runtime.py", ...]  # a config of your own, inheriting from them

- :func:`list_configs` names the shipped configs; :func:`resolve_config` turns ``polymodal::NAME`` or a path into
  the file to read (:class:`ConfigNotFoundError` lists the shipped ones for an unknown name);
- :func:`shipped_bases` lets mmengine read ``polymodal::`` in ``_base_`` while a config is read;
- :func:`check_overrides` refuses a ``--cfg-options`` key that is a near miss of an existing one
  (``train_cfg.max_epoch``) and text where the config holds a number (``train_cfg.max_epochs=abc``);
- :func:`follow_max_epochs` resizes epoch-based parameter schedules to a changed ``train_cfg.max_epochs``.

This package imports nothing of polymodal: :func:`polymodal.train.load_config` and the CLI use it.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import fnmatch
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "CONFIG_DIR",
    "PREFIX",
    "ConfigError",
    "ConfigNotFoundError",
    "check_overrides",
    "config_summary",
    "follow_max_epochs",
    "list_configs",
    "resolve_config",
    "shipped_bases",
]

PREFIX = "polymodal::"
CONFIG_DIR = Path(__file__).resolve().parent
_CLOSE = 0.85  # difflib ratio above which an unknown --cfg-options key is taken for a typo of an existing one
_MISSING = object()


class ConfigError(ValueError):
    """A config file or a command-line override that cannot run; the message names it and says what was expected."""


class ConfigNotFoundError(ConfigError, FileNotFoundError):
    """No such config file, or no shipped config of that name (the message lists the shipped ones)."""


def list_configs(pattern: str = "*") -> list[str]:
    """File names of the shipped configs that train (``image_digits.py``, …; not the ``_base_`` parts), sorted,
    matching the fnmatch ``pattern`` (with or without ``polymodal::``)."""
    pattern = pattern.removeprefix(PREFIX)
    names = sorted(p.name for p in CONFIG_DIR.glob("*.py") if not p.name.startswith("_"))
    return [n for n in names if fnmatch.fnmatchcase(n, pattern) or fnmatch.fnmatchcase(n[:-3], pattern)]


def config_summary(path: str | Path) -> str:
    """The first comment line of a config file (what it trains), without the ``#``."""
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def _shipped_listing() -> str:
    names = list_configs()
    return f"shipped ({len(names)}): {', '.join(PREFIX + n for n in names)}"


def resolve_config(config: str | Path) -> Path:
    """The config file to read: ``polymodal::NAME`` is a shipped config (``NAME`` with or without ``.py``, or a
    part such as ``_base_/default_runtime.py``); anything else is a path, which must be a file.

    Raises:
        ConfigNotFoundError: an unknown shipped name (with the closest one and the list), or a missing file.
    """
    text = str(config)
    if text.startswith(PREFIX):
        name = text[len(PREFIX) :]
        for candidate in (name,) if name.endswith(".py") else (f"{name}.py", name):
            path = (CONFIG_DIR / candidate).resolve()
            if (
                path.is_file()
                and path.suffix == ".py"
                and path.name != "__init__.py"
                and path.is_relative_to(CONFIG_DIR)
            ):
                return path
        names = list_configs()
        close = difflib.get_close_matches(name if name.endswith(".py") else f"{name}.py", names, n=1)
        hint = f"; did you mean '{PREFIX}{close[0]}'? S" if close else "; s"
        raise ConfigNotFoundError(f"unknown config {text!r}{hint}{_shipped_listing()[1:]}")
    path = Path(text)
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigNotFoundError(
            f"config {text!r} is a folder; expected a config file (.py), e.g. {PREFIX}image_digits.py"
        )
    shipped = path.name if path.name in list_configs() else None
    hint = (
        f"; the shipped config of that name is {PREFIX}{shipped}"
        if shipped
        else f"; give a config file's path, or a shipped config as {PREFIX}NAME ({_shipped_listing()})"
    )
    raise ConfigNotFoundError(f"config file {text!r} not found (relative to {Path.cwd()}){hint}")


def _shipped_part(path: str) -> str:
    """A hint naming the shipped part a missing ``_base_`` path looks like (``.../configs/_base_/x.py``)."""
    parts = Path(path).parts
    if "_base_" not in parts:
        return ""
    rest = Path(*parts[len(parts) - 1 - parts[::-1].index("_base_") :])
    if not (CONFIG_DIR / rest).is_file():
        return ""
    return f"; the shipped one is {PREFIX}{rest.as_posix()}"


@contextlib.contextmanager
def shipped_bases() -> Iterator[None]:
    """While open, mmengine's ``Config.fromfile`` reads ``_base_`` entries ``polymodal::<part>`` as the shipped
    files (``_base_ = ["polymodal::_base_/default_runtime.py"]``), as ``mmdet::`` works for OpenMMLab packages."""
    from mmengine.config import Config

    original = Config.__dict__["_get_cfg_path"]

    def get_cfg_path(cfg_path: str, filename: str) -> tuple[str, str | None]:
        if cfg_path.startswith(PREFIX):
            return str(resolve_config(cfg_path)), None
        path, scope = original.__func__(cfg_path, filename)
        if scope is None and not Path(path).is_file():
            raise ConfigNotFoundError(f"{filename}: _base_ file {cfg_path!r} not found{_shipped_part(path)}")
        return path, scope

    Config._get_cfg_path = staticmethod(get_cfg_path)  # type: ignore[method-assign]
    try:
        yield
    finally:
        Config._get_cfg_path = original  # type: ignore[method-assign]


# -- --cfg-options ------------------------------------------------------------------------------------------------
def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "True or False"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    return None


def check_overrides(config: Mapping[str, Any], options: Mapping[str, Any]) -> None:
    """Check ``--cfg-options`` (``{"train_cfg.max_epochs": 2, …}``) against the config they change.

    A key that is not in the config may add a new entry, unless a part of it is a near miss of an existing key at
    its level (``train_cfg.max_epoch`` when ``train_cfg`` holds ``max_epochs``): that is a typo, refused with the
    suggestion. Text for an entry that holds a number or a bool (``max_epochs=abc``) is refused too.

    Raises:
        ConfigError: naming the option, what was expected and what came.
    """
    for key, value in options.items():
        parts = str(key).split(".")
        node: Any = config
        for depth, part in enumerate(parts):
            if isinstance(node, Mapping) and part in node:
                node = node[part]
                continue
            if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
                continue
            if isinstance(node, Mapping):
                siblings = [str(k) for k in node if not str(k).startswith("_")]
                close = difflib.get_close_matches(part, siblings, n=1, cutoff=_CLOSE)
                if close:
                    where = ".".join(parts[: depth + 1])
                    meant = ".".join([*parts[:depth], close[0], *parts[depth + 1 :]])
                    parent = ".".join(parts[:depth])
                    keys = (
                        f" (keys of {parent!r}: {', '.join(sorted(siblings))})"
                        if parent and len(siblings) <= 12
                        else ""
                    )
                    raise ConfigError(
                        f"--cfg-options {key}={value}: the config has no {where!r}; did you mean {meant!r}?{keys}"
                    )
            node = _MISSING
            break
        if node is _MISSING:
            continue
        expected = _kind(node)
        if expected is not None and isinstance(value, str):
            raise ConfigError(
                f"--cfg-options {key}={value}: expected {expected} (the config has {node!r}), got {value!r}"
            )


# -- schedules ----------------------------------------------------------------------------------------------------
def follow_max_epochs(schedulers: Any, old: int, new: int) -> tuple[Any, list[str]]:
    """``param_scheduler`` resized from ``old`` to ``new`` training epochs, and what changed, in words.

    Each epoch-based entry (``by_epoch``, mmengine's default) that ended with training (``end == old``) ends at
    ``new``, and its ``T_max`` follows when it spanned the entry's whole window (``T_max == end - begin``) or the
    old epoch count; an entry whose window is then empty (``begin >= new``, e.g. a cosine decay after a one-epoch
    warm-up in a one-epoch run) is dropped. Iteration-based entries and others are kept as they are.
    """
    single = isinstance(schedulers, Mapping)
    entries = [schedulers] if single else list(schedulers or [])
    out, changes = [], []
    for entry in entries:
        entry = copy.deepcopy(dict(entry))
        name = entry.get("type", "scheduler")
        if not entry.get("by_epoch", True) or entry.get("end") != old:
            out.append(entry)
            continue
        begin = int(entry.get("begin", 0))
        if begin >= new:
            changes.append(f"{name} (epochs {begin}-{old}) dropped: training now ends at epoch {new}")
            continue
        said = [f"end {old} -> {new}"]
        entry["end"] = new
        t_max = entry.get("T_max")
        if t_max is not None and t_max in (old - begin, old):
            entry["T_max"] = new - begin if t_max == old - begin else new
            said.append(f"T_max {t_max} -> {entry['T_max']}")
        changes.append(f"{name}: {', '.join(said)}")
        out.append(entry)
    return (out[0] if single and out else out), changes
