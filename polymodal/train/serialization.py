"""Loading mmengine checkpoints with ``torch.load(weights_only=True)`` and an exact allow-list of safe types.

The implementation lives in :mod:`polymodal.model.safe_load` (so that building a model, with or without the
training package, already routes every mmengine checkpoint load through it); this module is its name on the
training side, where checkpoints are written and resumed.
"""

from __future__ import annotations

from polymodal.model.safe_load import (
    SAFE_CHECKPOINT_GLOBALS,
    CheckpointReadError,
    UnsafeCheckpointError,
    history_buffer_method,
    install_safe_checkpoint_loaders,
    load_checkpoint_file,
    safe_checkpoint_globals,
)

__all__ = [
    "SAFE_CHECKPOINT_GLOBALS",
    "CheckpointReadError",
    "UnsafeCheckpointError",
    "history_buffer_method",
    "install_safe_checkpoint_loaders",
    "load_checkpoint_file",
    "safe_checkpoint_globals",
]
