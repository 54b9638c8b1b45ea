"""Optional packages: import one on first use, or say which ``polymodal[extra]`` installs it."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(ImportError):
    """An optional package a reader or component needs is not installed; the message names the extra."""


def require(module: str, extra: str | None, what: str) -> Any:
    """Import ``module``, or raise :class:`MissingExtraError`: ``"<what> needs the '<package>' package: pip
    install 'polymodal[<extra>]'"``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0]
        hint = f"pip install 'polymodal[{extra}]'" if extra else f"pip install {package}"
        raise MissingExtraError(f"{what} needs the '{package}' package: {hint} ({exc})") from exc
