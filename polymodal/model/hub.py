"""Whole models on the Hugging Face Hub: ``model.push_to_hub("org/name")`` and ``polymodal.from_pretrained("org/name")``.

A Hub repo of a polymodal model holds what :func:`~polymodal.model.checkpoint.save_pretrained` writes
(``config.json``, ``model.safetensors``, and the files the config refers to under ``files/``) and a model card,
``README.md``, generated from the model (:func:`model_card`): its inputs and their tokenizers, the encoder, the heads
with their classes and metrics, and the Hub's ``library_name`` and tags.

Reading a name (:func:`resolve_pretrained`): a local folder is always its first meaning. Otherwise a string
``"org/name"`` is a Hub repo id, resolved by ``huggingface_hub.snapshot_download`` into the standard cache
(``HF_HUB_CACHE``, or ``cache_dir``) at ``revision``, fetching only ``config.json``, ``model.safetensors`` and
``files/`` (never a pickle, nor any other file of the repo). Nothing is fetched unless the caller asks with
``local_files_only=False`` (and ``HF_HUB_OFFLINE`` is not set): by default the cache must hold the repo, as
polymodal never downloads on its own. The snapshot then goes through the same checks as a local
folder (:func:`~polymodal.model.checkpoint.load_pretrained`: safetensors only, the SHA-256 of the config and the
files recorded with the weights, shapes, keys, finite values).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from polymodal.core.component import local_file_fields
from polymodal.core.encoders.pretrained import hub_error, hub_offline
from polymodal.model.checkpoint import CONFIG_NAME, FILES_DIR, WEIGHTS_NAME, save_pretrained
from polymodal.registry.errors import UnknownNameError
from polymodal.registry.lookup import get

__all__ = ["CARD_NAME", "HUB_FILES", "LIBRARY_NAME", "model_card", "push_to_hub", "resolve_pretrained"]

LIBRARY_NAME = "polymodal"
CARD_NAME = "README.md"
#: the files of a Hub repo that loading fetches: nothing else (no pickle) is downloaded
HUB_FILES = (CONFIG_NAME, WEIGHTS_NAME, f"{FILES_DIR}/*")
_TAGS = ("polymodal", "multimodal", "meta-transformer")
_MAX_VALUE = 60


# -- reading ---------------------------------------------------------------------------------------------------


def _is_repo_id(name: str) -> bool:
    """``org/name`` as the Hub spells a repo id (a bare ``name`` is taken for a local folder only)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if name.count("/") != 1:
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def resolve_pretrained(
    name_or_path: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = True,
) -> Path:
    """The local folder holding the model ``name_or_path``: the folder itself, or a Hub repo's cached snapshot.

    Args:
        name_or_path: a folder written by ``save_pretrained`` (its first meaning, whenever it exists), or a Hub repo
            id ``"org/name"``.
        revision: a branch, tag or commit of the Hub repo (default: its main branch).
        cache_dir: the Hugging Face cache to use (default ``HF_HUB_CACHE``, ``~/.cache/huggingface/hub``).
        token: a Hub token for private or gated repos (default: the one ``hf auth login`` stored, or ``HF_TOKEN``).
        local_files_only: ``True`` (the default): the cache only, never the network; ``False`` fetches what the
            cache lacks (unless ``HF_HUB_OFFLINE=1``).

    Only ``config.json``, ``model.safetensors`` and ``files/`` are fetched. Errors name the repo and say how to get
    it when it is not cached and downloads are off.
    """
    path = Path(name_or_path).expanduser()
    text = str(name_or_path)
    if path.exists() or isinstance(name_or_path, Path) or not _is_repo_id(text):
        if revision is not None and path.is_dir():
            raise ValueError(
                f"{text}: a local folder, but revision={revision!r} was given, which picks a version of a Hub repo "
                "(a name that exists on disk is always that folder); leave revision unset to read the folder, or "
                "load the repo from a working folder without that path"
            )
        if not path.exists():
            raise FileNotFoundError(
                f"{text}: no such folder; expected a folder written by save_pretrained, or a Hub repo id "
                "'org/name'"
            )
        return path
    from huggingface_hub import snapshot_download

    offline = (
        "HF_HUB_OFFLINE is set" if hub_offline() else "local_files_only=True" if local_files_only else None
    )
    try:
        folder = Path(
            snapshot_download(
                text,
                revision=revision,
                cache_dir=cache_dir,
                token=token,
                local_files_only=offline is not None,
                allow_patterns=list(HUB_FILES),
                library_name=LIBRARY_NAME,
            )
        )
    except Exception as exc:
        error = hub_error(
            text,
            revision,
            exc,
            offline=offline,
            wanted=f"{CONFIG_NAME} and {WEIGHTS_NAME} (no local folder {text!r} either)",
            download=text + (f" --revision {revision}" if revision else ""),
            cache_dir=cache_dir,
        )
        if error is exc:
            raise
        raise error from None
    missing = [name for name in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Hub repo {text!r}: expected {CONFIG_NAME} and {WEIGHTS_NAME} (a repo written by a polymodal model's "
            f"push_to_hub), got no {' and no '.join(missing)} in {folder} (only safetensors weights are read; a timm "
            f"image model's repo loads into the encoder with pretrained='hf-hub:{text}')"
        )
    return folder


# -- the model card --------------------------------------------------------------------------------------------


def _value(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    if len(text) <= _MAX_VALUE:
        return text
    if isinstance(value, list):
        return f"[{len(value)} items]"
    if isinstance(value, dict):
        return f"{{{len(value)} entries}}"
    return text[: _MAX_VALUE - 1] + "…"


def _settings(config: BaseModel, data: Mapping[str, Any], skip: tuple[str, ...]) -> str:
    """``name=value`` of a component's settings (saved values; a file is shown by its name, never its local path)."""
    files = set(local_file_fields(config))
    out = []
    for name, value in data.items():
        if name in skip or value is None:
            continue
        if name in files and isinstance(value, str) and Path(value).is_absolute():
            value = Path(value).name
        out.append(f"`{name}={_value(value)}`".replace("|", "\\|"))
    return ", ".join(out) or "defaults"


def _metric(name: str) -> str:
    try:
        higher = get("metric", name).higher_is_better
    except UnknownNameError:
        return name
    return f"{name} {'↑' if higher else '↓'}"


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}K" if n >= 1e3 else str(n)


def model_card(
    model: Any,
    *,
    repo_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    saved_config: Mapping[str, Any] | None = None,
) -> str:
    """The Hub model card (``README.md``) of a :class:`~polymodal.model.MultimodalModel`.

    Args:
        model: the model.
        repo_id: the repo it goes to (its title and the loading example).
        metadata: more of the card's YAML header (``license``, ``datasets``, ``language``, more ``tags``, …).
        saved_config: the ``config.json`` that goes with it (its files named as saved); default: the model's config.

    The header gives ``library_name: polymodal`` and the tags ``polymodal``, ``multimodal``, ``meta-transformer`` and
    each tokenizer's type. The body: how to load it, a table of the inputs (tokenizer type and settings), the fusion
    groups, the encoder, a table of the heads (type, inputs, classes, metrics and their direction), the parameter
    counts and the files.
    """
    from huggingface_hub import ModelCardData

    config = model.config
    data = dict(saved_config) if saved_config is not None else json.loads(model.config_json())
    extra = dict(metadata or {})
    tags = list(
        dict.fromkeys([*_TAGS, *(t.type for t in config.tokenizers.values()), *extra.pop("tags", [])])
    )
    header = ModelCardData(library_name=LIBRARY_NAME, tags=tags, **extra).to_yaml()
    title = repo_id.rsplit("/", 1)[-1] if repo_id else "polymodal model"
    total = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lines = [
        "---",
        header,
        "---",
        "",
        f"# {title}",
        "",
        "A [polymodal](https://pypi.org/project/polymodal/) model (Meta-Transformer, arXiv 2307.10802): a tokenizer "
        "per input turns it into tokens, one shared transformer encoder encodes every input, and a head per task "
        f"predicts. {_count(total)} parameters ({_count(trained)} trainable when saved).",
        "",
        "## Use",
        "",
        "```python",
        "import polymodal",
        "",
        f'model = polymodal.from_pretrained("{repo_id or "org/name"}")  # reads safetensors only, checks the files',
        "outputs = model({" + ", ".join(f'"{k}": ...' for k in config.tokenizers) + "})  # {task: output}",
        "```",
        "",
        "## Inputs",
        "",
        "| input | tokenizer | settings |",
        "|---|---|---|",
    ]
    for key, cfg in config.tokenizers.items():
        settings = _settings(cfg, data["tokenizers"][key], ("type", "embed_dim"))
        lines.append(f"| `{key}` | `{cfg.type}` | {settings} |")
    if config.fusion:
        lines += ["", "## Fusion", "", "| fused input | members, in order |", "|---|---|"]
        lines += [f"| `{k}` | {', '.join(f'`{m}`' for m in ms)} |" for k, ms in config.fusion.items()]
    encoder = model.encoder.config
    changed = encoder.model_dump(mode="json", exclude_defaults=True)
    changed.pop("type", None)
    lines += [
        "",
        "## Encoder",
        "",
        f"`{encoder.type}`, width {encoder.embed_dim}"
        + "".join(
            f", {getattr(encoder, f)} {label}{'s' if getattr(encoder, f) != 1 else ''}"
            for f, label in (("depth", "block"), ("num_heads", "attention head"))
            if hasattr(encoder, f)
        )
        + f"; settings other than the `{encoder.type}` defaults: {_settings(encoder, changed, ())}.",
    ]
    if config.heads:
        lines += [
            "",
            "## Heads",
            "",
            "| task | head | reads | classes | metrics | settings |",
            "|---|---|---|---|---|---|",
        ]
        skip = ("type", "embed_dim", "modality", "num_classes")
        for task, cfg in config.heads.items():
            classes = getattr(cfg, "num_classes", None)
            if classes is not None and getattr(cfg, "multi_label", False):
                classes = f"{classes} labels (multi-label)"
            metrics = ", ".join(_metric(m) for m in model.heads[task].metrics) or "—"
            reads = ", ".join(f"`{k}`" for k in cfg.inputs(task))
            settings = _settings(cfg, data["heads"][task], skip)
            lines.append(
                f"| `{task}` | `{cfg.type}` | {reads} | {classes if classes is not None else '—'} | {metrics} | "
                f"{settings} |"
            )
        lines += ["", "Metrics: ↑ higher is better, ↓ lower is better."]
    lines += [
        "",
        "## Files",
        "",
        f"- `{CONFIG_NAME}`: the model config (`polymodal.ModelConfig`).",
        f"- `{WEIGHTS_NAME}`: the weights; they record the SHA-256 of the config and of every file in `{FILES_DIR}/`, "
        "which loading checks.",
    ]
    if any(k.startswith(f"{FILES_DIR}/") for k in _saved_files(data)):
        lines.append(f"- `{FILES_DIR}/`: the files the config refers to (vocabularies, …).")
    return "\n".join(lines) + "\n"


def _saved_files(data: Any) -> list[str]:
    """Every string of the saved config that names a file under ``files/``."""
    if isinstance(data, str):
        return [data] if data.startswith(f"{FILES_DIR}/") else []
    if isinstance(data, Mapping):
        data = list(data.values())
    if isinstance(data, list):
        return [name for item in data for name in _saved_files(item)]
    return []


# -- writing ---------------------------------------------------------------------------------------------------


def push_to_hub(
    model: Any,
    repo_id: str,
    *,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    card_metadata: Mapping[str, Any] | None = None,
) -> Any:
    """Upload ``model`` to the Hub repo ``repo_id`` (created if missing); return the ``CommitInfo``.

    The commit holds what ``save_pretrained`` writes (``config.json``, ``model.safetensors``, ``files/``) and the
    model card ``README.md`` (:func:`model_card`, with ``card_metadata`` in its header); files left in ``files/`` by
    an earlier push are deleted.

    Args:
        repo_id: ``"org/name"``.
        commit_message: default ``"Upload polymodal model"``.
        private: visibility of a repo created now (default: the Hub's).
        token: a token with write access (default: the one ``hf auth login`` stored, or ``HF_TOKEN``).
        revision: the branch to push to (created from the main branch if missing).
        create_pr: open a pull request instead of committing to the branch.
        card_metadata: more of the card's YAML header (``license``, ``datasets``, ``tags``, …).
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token, library_name=LIBRARY_NAME)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if revision is not None and not create_pr:
        api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
    with tempfile.TemporaryDirectory(prefix="polymodal-push-") as tmp:
        folder = save_pretrained(model, tmp)
        saved = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        card = model_card(model, repo_id=repo_id, metadata=card_metadata, saved_config=saved)
        (folder / CARD_NAME).write_text(card, encoding="utf-8")
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            repo_type="model",
            commit_message=commit_message or "Upload polymodal model",
            revision=revision,
            create_pr=create_pr,
            delete_patterns=[f"{FILES_DIR}/*"],
        )
