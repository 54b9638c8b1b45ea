"""Saving and loading whole models: ``config.json`` + ``model.safetensors``, local files only, written atomically.

``save_pretrained(model, dir)`` writes the weights first, then the config, each through :func:`atomic_write`
(temporary file in the same folder, ``fsync``, rename, ``fsync`` of the folder), so a reader never sees half a
file. The weights' metadata records the SHA-256 of the config text they were saved with; ``from_pretrained``
checks it, so a folder whose two files come from different saves (a kill between the two renames) is refused
instead of silently loading mismatched weights.

``from_pretrained(dir, modalities=[...])`` rebuilds the model from the config (no network) and can keep only some
inputs: their tokenizers, the fusion groups made only of kept inputs, and the heads that read only kept inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from polymodal.model.config import ModelConfig
from polymodal.registry.config import resolve_config

if TYPE_CHECKING:
    from torch import nn

    M = TypeVar("M", bound=nn.Module)

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "atomic_write",
    "load_pretrained",
    "save_pretrained",
    "select_modalities",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_CONFIG_HASH_KEY = "polymodal_config_sha256"


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers see the old file or the new one, never half.

    The temporary file lives in the target's folder (a rename within one file system is atomic), is flushed to
    disk with ``fsync`` before the rename, and the folder is synced after it so the rename itself survives a
    power cut. On any error (or ``KeyboardInterrupt``) the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def save_pretrained(model: Any, directory: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors`` of ``model`` into ``directory``; return the folder."""
    directory = Path(directory)
    text = model.config_json()
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"format": "pt", _CONFIG_HASH_KEY: _sha256(text)}
    atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata=metadata))
    atomic_write(directory / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text))
    return directory


def select_modalities(config: dict[str, Any], modalities: Sequence[str]) -> dict[str, Any]:
    """A model config (plain dict) reduced to the inputs ``modalities``: their tokenizers, the fusion groups all
    of whose members are kept, and the heads all of whose inputs are kept."""
    keep = list(dict.fromkeys(modalities))
    unknown = sorted(set(keep) - set(config["tokenizers"]))
    if unknown:
        raise KeyError(f"modalities {unknown} are not in the model; it has {sorted(config['tokenizers'])}")
    if not keep:
        raise ValueError("modalities: expected at least one input to keep, got an empty list")
    out = dict(config)
    out["tokenizers"] = {k: v for k, v in config["tokenizers"].items() if k in keep}
    fusion = {k: m for k, m in config.get("fusion", {}).items() if all(x in keep for x in m)}
    if "fusion" in config:
        out["fusion"] = fusion
    available = set(keep) | set(fusion)

    def reads(task: str, head: Any) -> set[str]:
        return set(resolve_config("head", head).inputs(task))

    out["heads"] = {t: h for t, h in config.get("heads", {}).items() if reads(t, h) <= available}
    return out


def load_pretrained(
    model_class: Callable[[ModelConfig], M],
    directory: str | Path,
    modalities: Sequence[str] | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> M:
    """Rebuild a model saved with ``save_pretrained`` (local files, no network): ``model_class(config)``, then its
    weights.

    Args:
        model_class: builds the model from its :class:`~polymodal.model.config.ModelConfig`.
        directory: the folder holding ``config.json`` and ``model.safetensors``.
        modalities: keep only these inputs (and the heads and fusion groups that read only them); only their
            weights are read from the file.
        device: where to put the model (default CPU).
        dtype: cast floating-point weights to this dtype (default: as saved).

    The model is returned in eval mode.
    """
    directory = Path(directory)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory}: no {name} (expected a folder written by save_pretrained)")
    text = (directory / CONFIG_NAME).read_text()
    data = json.loads(text)
    if modalities is not None:
        try:
            data = select_modalities(data, modalities)
        except KeyError as exc:
            raise KeyError(f"{directory}: {exc.args[0]}") from None
    if isinstance(data.get("encoder"), dict) and data["encoder"].get("pretrained"):
        # The saved weights supersede the encoder's original checkpoint, which may no longer exist.
        data["encoder"]["pretrained"] = None
    model = model_class(ModelConfig.model_validate(data))
    wanted = model.state_dict()
    with safe_open(str(directory / WEIGHTS_NAME), framework="pt", device="cpu") as f:
        saved_hash = (f.metadata() or {}).get(_CONFIG_HASH_KEY)
        if saved_hash is not None and saved_hash != _sha256(text):
            raise ValueError(
                f"{directory}: {CONFIG_NAME} and {WEIGHTS_NAME} come from different saves (the config's SHA-256 "
                "does not match the one recorded with the weights); save the model again"
            )
        keys = set(f.keys())
        missing = sorted(set(wanted) - keys)
        if missing:
            raise KeyError(f"{directory / WEIGHTS_NAME} lacks {len(missing)} weights, e.g. {missing[:5]}")
        state = {k: f.get_tensor(k) for k in wanted}
    model.load_state_dict(state, strict=True)
    if dtype is not None:
        model.to(dtype=dtype)
    if device is not None:
        model.to(device)
    return model.eval()
