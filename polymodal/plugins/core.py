"""The built-in plugin of the modality-agnostic components of :mod:`polymodal.core` (encoders, heads, metrics).

Declared in our pyproject as the entry point ``core = "polymodal.plugins.core"``: the host's own defaults take the
same path as any third-party plugin.
"""

from __future__ import annotations

from polymodal.core.encoders import ENCODER_CLASSES
from polymodal.core.heads import HEAD_CLASSES
from polymodal.core.metrics import METRIC_CLASSES
from polymodal.registry.hookspecs import hookimpl


@hookimpl
def polymodal_components() -> list[type]:
    return [*ENCODER_CLASSES, *HEAD_CLASSES, *METRIC_CLASSES]
