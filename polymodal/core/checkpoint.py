"""Saving and loading whole models: ``config.json`` + ``model.safetensors``, local files only, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors.torch import load_file, save_file

if TYPE_CHECKING:
    from polymodal.core.model import MultimodalModel

__all__ = ["atomic_write", "from_pretrained", "save_pretrained"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers see the old file or the new one, never half."""
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


def save_pretrained(model: MultimodalModel, directory: str | Path) -> Path:
    directory = Path(directory)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    text = model.config_json()
    atomic_write(directory / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text))
    return directory


def from_pretrained(directory: str | Path, modalities: Sequence[str] | None = None) -> MultimodalModel:
    """Rebuild a model saved with ``save_pretrained`` (no network). ``modalities`` keeps only those inputs and
    the heads that read them."""
    from polymodal.core.model import MultimodalModel
    from polymodal.registry.config import ModelConfig

    directory = Path(directory)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory}: no {name} (expected a folder written by save_pretrained)")
    data = json.loads((directory / CONFIG_NAME).read_text())
    if modalities is not None:
        unknown = sorted(set(modalities) - set(data["tokenizers"]))
        if unknown:
            raise KeyError(
                f"{directory}: modalities {unknown} are not in the saved model {sorted(data['tokenizers'])}"
            )
        data["tokenizers"] = {k: v for k, v in data["tokenizers"].items() if k in modalities}
        data["heads"] = {
            t: h for t, h in data.get("heads", {}).items() if (h.get("modality") or t) in modalities
        }
    model = MultimodalModel(ModelConfig.model_validate(data))
    state = load_file(str(directory / WEIGHTS_NAME))
    wanted = model.state_dict()
    state = {k: v for k, v in state.items() if k in wanted}
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise KeyError(f"{directory / WEIGHTS_NAME} lacks {len(missing)} weights, e.g. {missing[:5]}")
    model.load_state_dict(state, strict=True)
    return model
