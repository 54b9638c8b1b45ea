"""Saving and loading whole models: ``config.json`` + ``model.safetensors``, local files only, written atomically.

``save_pretrained(model, dir)`` writes the files the config refers to, then the weights, then the config, each
through :func:`atomic_write` (temporary file in the same folder, ``fsync``, rename, ``fsync`` of the folder), so a
reader never sees half a file. The weights' metadata records the SHA-256 of the config's content (canonical JSON:
sorted keys, no whitespace, so re-indenting the file changes nothing) and of every copied file; ``from_pretrained``
checks them, so a folder whose files come from different saves (a kill between two renames, a hand-edited config)
is refused instead of silently loading mismatched weights.

A saved folder can be moved: every config field declared :data:`~polymodal.core.component.LocalFile` (a
vocabulary, ...) is copied into ``files/`` of the folder and stored relative to it; ``from_pretrained`` resolves it
against the folder.

``from_pretrained(dir, modalities=[...])`` rebuilds the model from the config (no network) and can keep only some
inputs: their tokenizers, the fusion groups made only of kept inputs, and the heads that read only kept inputs. It
refuses, with the file's path in the message, a config that is not a JSON object, weights that are not a
complete safetensors file, weights with other shapes than the config's model, keys the model does not have, and
weights holding NaN or Inf.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from pydantic import BaseModel, ValidationError
from safetensors import safe_open
from safetensors.torch import save_file

from polymodal.core.component import local_file_fields
from polymodal.model.config import ModelConfig
from polymodal.model.safe_load import install_safe_checkpoint_loaders
from polymodal.registry.config import resolve_config

if TYPE_CHECKING:
    from torch import nn

    M = TypeVar("M", bound=nn.Module)

__all__ = [
    "CONFIG_NAME",
    "FILES_DIR",
    "WEIGHTS_NAME",
    "atomic_write",
    "config_sha256",
    "load_pretrained",
    "save_pretrained",
    "select_modalities",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FILES_DIR = "files"
_CONFIG_HASH_KEY = "polymodal_config_sha256"
_FILES_HASH_KEY = "polymodal_files_sha256"
_MAX_LISTED = 10

# every checkpoint mmengine loads (load_from, resume, init_cfg=Pretrained) is read weights-only from here on
install_safe_checkpoint_loaders()


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


def _new_temp_file(path: Path) -> Path:
    # os.open with mode 0o666 lets the umask decide the permissions, as for any file a program writes
    # (tempfile.mkstemp would leave 0600 behind after the rename)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(
        f"{path.parent}: could not create a temporary file for {path.name}"
    )  # pragma: no cover


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers see the old file or the new one, never half.

    The temporary file lives in the target's folder (a rename within one file system is atomic), gets the
    permissions the umask gives a new file, is flushed to disk with ``fsync`` before the rename, and the folder is
    synced after it so the rename itself survives a power cut. On any error (or ``KeyboardInterrupt``) the
    temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp_file(path)
    mode = stat.S_IMODE(tmp.stat().st_mode)
    try:
        write(str(tmp))
        if stat.S_IMODE(tmp.stat().st_mode) != mode:  # a writer that replaced the file (safetensors does)
            os.chmod(tmp, mode)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def config_sha256(data: Any) -> str:
    """SHA-256 of a config's content: its canonical JSON (sorted keys, no whitespace), not its formatting."""
    return _sha256(json.dumps(data, sort_keys=True, separators=(",", ":")))


# -- files a config refers to ----------------------------------------------------------------------------------


def _file_refs(
    config: BaseModel, where: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], BaseModel, str]]:
    """``(path in the config, owning config, field name)`` of every :data:`LocalFile` field that is set, found
    through the nested configs, dicts and lists of ``config``."""
    marked = set(local_file_fields(config))
    for name in type(config).model_fields:
        value = getattr(config, name)
        if name in marked:
            if value:
                yield (*where, name), config, name
            continue
        yield from _nested_refs(value, (*where, name))


def _nested_refs(
    value: Any, where: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], BaseModel, str]]:
    if isinstance(value, BaseModel):
        yield from _file_refs(value, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _nested_refs(item, (*where, key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _nested_refs(item, (*where, i))


def _dotted(where: tuple[str | int, ...]) -> str:
    return ".".join(map(str, where))


def _set_in(data: Any, where: tuple[str | int, ...], value: Any) -> None:
    for key in where[:-1]:
        data = data[key]
    data[where[-1]] = value


def _copy_name(source: Path, taken: dict[str, Path]) -> str:
    """A name under ``files/`` for ``source``: its own file name, numbered when another file already has it."""
    stem, suffix = source.stem, source.suffix
    n = 1
    while True:
        name = f"{FILES_DIR}/{stem}{suffix}" if n == 1 else f"{FILES_DIR}/{stem}-{n}{suffix}"
        other = taken.get(name)
        if other is None or other == source:
            return name
        n += 1


def save_pretrained(model: Any, directory: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors`` of ``model`` into ``directory``; return the folder.

    Every file the config refers to (fields declared ``LocalFile``) is copied into ``directory/files/`` and the
    config stores its name relative to ``directory``, so the folder can be moved or copied elsewhere.
    """
    directory = Path(directory)
    data = json.loads(model.config_json())
    config = getattr(model, "config", None)
    copies: dict[str, Path] = {}
    for where, owner, field in _file_refs(config) if isinstance(config, BaseModel) else ():
        value = str(getattr(owner, field))
        source = Path(value).expanduser().resolve()
        if not source.is_file():
            raise FileNotFoundError(
                f"save_pretrained: {_dotted(where)} names {value!r}, which is not a file; expected a local file "
                f"to copy into {directory}"
            )
        name = _copy_name(source, copies)
        copies[name] = source
        _set_in(data, where, name)
    for name, source in copies.items():
        atomic_write(directory / name, lambda tmp, source=source: shutil.copyfile(source, tmp))
    text = json.dumps(data, indent=2)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"format": "pt", _CONFIG_HASH_KEY: config_sha256(data)}
    if copies:
        hashes = {name: _file_sha256(directory / name) for name in copies}
        metadata[_FILES_HASH_KEY] = json.dumps(hashes, sort_keys=True)
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


# -- loading ---------------------------------------------------------------------------------------------------


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", … and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


def _json_kind(value: Any) -> str:
    kinds = {
        list: "array",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
        type(None): "null",
    }
    return kinds.get(type(value), type(value).__name__)


def _read_config(path: Path) -> dict[str, Any]:
    """The JSON object of ``config.json``, or a clear error naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path}: expected the UTF-8 JSON model config written by save_pretrained, got bytes that are not "
            f"UTF-8 text (at byte {exc.start})"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path}: expected the JSON model config written by save_pretrained, got invalid JSON ({exc.msg} at "
            f"line {exc.lineno}, column {exc.colno}; the file may be truncated)"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: expected a JSON object (the model config written by save_pretrained), got a JSON "
            f"{_json_kind(data)}"
        )
    if not isinstance(data.get("tokenizers"), dict):
        got = "no 'tokenizers'" if "tokenizers" not in data else f"a JSON {_json_kind(data['tokenizers'])}"
        raise ValueError(f"{path}: expected 'tokenizers' to be an object (input key -> tokenizer), got {got}")
    return data


def _file_roots(directory: Path) -> tuple[Path, ...]:
    """Where the files of a saved folder may lie once links are followed: inside it, and for a snapshot in the
    Hugging Face cache (``models--org--name/snapshots/<commit>/``, what ``from_pretrained("org/name")`` reads) in
    that repo's ``blobs/``, which the snapshot's files link to."""
    blobs = directory.parent.parent / "blobs"
    if directory.parent.name == "snapshots" and blobs.is_dir():
        return directory.resolve(), blobs.resolve()
    return (directory.resolve(),)


def _resolve_files(config: ModelConfig, directory: Path, hashes: dict[str, str]) -> None:
    """Point every ``LocalFile`` field of ``config`` at the copy in ``directory`` (in place), checking each copy
    against the SHA-256 recorded with the weights."""
    roots = _file_roots(directory)
    for where, owner, field in _file_refs(config):
        value = str(getattr(owner, field))
        name = Path(value)
        path = name if name.is_absolute() else directory / name
        if not name.is_absolute() and not any(path.resolve().is_relative_to(r) for r in roots):
            raise ValueError(
                f"{directory / CONFIG_NAME}: {_dotted(where)} is {value!r}, which leads out of the folder; expected "
                "the name of a file inside it"
            )
        if not path.is_file():
            hint = (
                " (an absolute path: the folder was saved before polymodal copied such files into it; put the "
                "file there, or load the model where it was saved and save it again)"
                if name.is_absolute()
                else " (the folder was copied without it?)"
            )
            raise FileNotFoundError(
                f"{directory / CONFIG_NAME}: {_dotted(where)} names {value!r}, but {path} does not exist; expected "
                f"the file save_pretrained copied into the folder{hint}"
            )
        expected = hashes.get(value)
        if expected is not None and _file_sha256(path) != expected:
            raise ValueError(
                f"{path}: not the file saved with {directory / WEIGHTS_NAME} (its SHA-256 differs from the one "
                "recorded with the weights); save the model again"
            )
        setattr(owner, field, str(path))


def _open_weights(path: Path) -> Any:
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except Exception as exc:  # SafetensorError and OSError, whose message lacks the path
        raise ValueError(
            f"{path}: expected a complete safetensors file written by save_pretrained, got one that cannot be "
            f"read ({str(exc).strip() or type(exc).__name__}; the file may be truncated or damaged); save the "
            "model again"
        ) from None


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
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    full = _read_config(config_path)
    with _open_weights(weights_path) as f:
        metadata = f.metadata() or {}
        saved_hash = metadata.get(_CONFIG_HASH_KEY)
        # earlier saves hashed the config's text; a re-indented config has the same content and is accepted
        if saved_hash is not None and saved_hash not in (
            config_sha256(full),
            _sha256(config_path.read_text(encoding="utf-8")),
        ):
            raise ValueError(
                f"{directory}: {CONFIG_NAME} and {WEIGHTS_NAME} come from different saves (the config's SHA-256 "
                "does not match the one recorded with the weights); save the model again"
            )
        data = full
        if modalities is not None:
            try:
                data = select_modalities(full, modalities)
            except KeyError as exc:
                raise KeyError(f"{directory}: {exc.args[0]}") from None
        if isinstance(data.get("encoder"), dict) and data["encoder"].get("pretrained"):
            # The saved weights supersede the encoder's original checkpoint, which may no longer exist.
            data = {**data, "encoder": {**data["encoder"], "pretrained": None}}
        try:
            config = ModelConfig.model_validate(data)
        except ValidationError as exc:
            raise ValueError(f"{config_path}: not a valid model config: {exc}") from None
        _resolve_files(config, directory, json.loads(metadata.get(_FILES_HASH_KEY, "{}")))
        model = model_class(config)
        wanted = model.state_dict()
        keys = set(f.keys())
        missing = sorted(set(wanted) - keys)
        if missing:
            raise KeyError(
                f"{weights_path} lacks {len(missing)} weights the config's model needs, e.g. {missing[:5]}"
            )
        extra = sorted(_unexpected(keys - set(wanted), full, data))
        if extra:
            raise ValueError(
                f"{weights_path}: expected only the weights of the model in {CONFIG_NAME}, got {len(extra)} keys "
                f"it does not have: {_listed(extra)}"
            )
        mismatched = [
            f"{k}: file {tuple(shape)} vs model {tuple(wanted[k].shape)}"
            for k in wanted
            if tuple(shape := f.get_slice(k).get_shape()) != tuple(wanted[k].shape)
        ]
        if mismatched:
            raise ValueError(
                f"{weights_path}: expected the shapes of the model in {CONFIG_NAME}, got {len(mismatched)} "
                f"weights of other shapes: {_listed(mismatched)}"
            )
        state = {k: f.get_tensor(k) for k in wanted}
    not_finite = [
        f"{k} ({int(t.isnan().sum())} NaN, {int(t.isinf().sum())} Inf of {t.numel()})"
        for k, t in state.items()
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all())
    ]
    if not_finite:
        raise ValueError(
            f"{weights_path}: expected finite weights, got NaN or Inf in {len(not_finite)} tensors: "
            f"{_listed(not_finite)} (the file is damaged, or the training that wrote it diverged)"
        )
    model.load_state_dict(state, strict=True)
    if dtype is not None:
        model.to(dtype=dtype)
    if device is not None:
        model.to(device)
    return model.eval()


def _unexpected(unread: set[str], full: dict[str, Any], kept: dict[str, Any]) -> list[str]:
    """The keys of ``unread`` (in the file, not in the built model) that belong to no input, fusion group or task
    dropped by ``modalities``: a weight ``<part>.<name>.…`` of a dropped ``name`` is expected to be left unread."""
    names = ("tokenizers", "fusion", "heads")
    dropped = {n for s in names for n in (full.get(s) or {})} - {
        n for s in names for n in (kept.get(s) or {})
    }
    out = []
    for key in unread:
        parts = key.split(".")
        if len(parts) < 2 or parts[1] not in dropped:
            out.append(key)
    return out
