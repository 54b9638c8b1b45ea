"""Pretrained weights for the shared encoder, from local files or timm Hub ids: timm ViT, Meta-Transformer, OpenCLIP.

Three layouts are detected from the keys and mapped onto :class:`~polymodal.core.encoders.TransformerEncoder`'s
timm names (``norm_pre``, ``blocks.{i}.{norm1,attn.qkv,attn.proj,ls1,norm2,mlp.fc1,mlp.fc2,ls2}``, ``norm``):

- ``timm``: a timm ``VisionTransformer`` state dict (``blocks.{i}.…``), possibly nested under ``model`` /
  ``state_dict`` or with a key prefix (``module.``, ``encoder.``); patch/position embeddings, class/register
  tokens and heads are not encoder weights, and the report lists them. The file does not record the LayerNorm
  epsilon or the activation (timm's ViTs: 1e-6 and GELU; its CLIP ViTs: 1e-5, QuickGELU for OpenAI's weights):
  the encoder's ``norm_eps`` and ``act_layer`` are kept.
- ``meta_transformer``: Meta-Transformer's encoder files (arXiv 2307.10802): an ``nn.Sequential`` of timm blocks,
  ``{i}.norm1.{weight,bias}``, ``{i}.attn.qkv.{weight [3D, D],bias}``, ``{i}.attn.proj.*``, ``{i}.norm2.*``,
  ``{i}.mlp.fc1.*``, ``{i}.mlp.fc2.*`` (12 tensors per block, no final norm; Base: 12 blocks of 768 with 12
  heads, Large: 24 of 1024 with 16). Its code builds the blocks with ``norm_layer=nn.LayerNorm``, epsilon 1e-5:
  loading such a file sets the encoder's ``norm_eps`` to 1e-5 (reported).
- ``open_clip``: an OpenCLIP visual tower (``visual.transformer.resblocks.{i}.ln_1``, ``attn.in_proj_weight``
  = concat(q, k, v) ``[3D, D]``, ``attn.in_proj_bias``, ``attn.out_proj``, ``ln_2``, ``mlp.c_fc``,
  ``mlp.c_proj``, ``ls_1/ls_2.gamma``; ``visual.ln_pre`` -> ``norm_pre``, ``visual.ln_post`` -> ``norm``). OpenCLIP's
  LayerNorm has epsilon 1e-5: loading sets ``norm_eps`` to 1e-5 (reported). The activation is not in the file:
  OpenAI's original weights need ``act_layer='quick_gelu'``, OpenCLIP's own trainings GELU (the default). A text
  tower alone (``transformer.resblocks.*`` with no visual tower) is refused: it is a causal transformer.

A pre-norm or final norm in the file is never dropped: an encoder built without it (``pre_norm=False``,
``final_norm=False``) refuses the file, naming the keys and the setting. The number of heads is not stored in any
of these files; it comes from the encoder's config.

A whole ViT image model (patch embedding, class token, positions, blocks, norms) loads from a timm or OpenCLIP file
with :func:`load_vit_weights` (``MultimodalModel.load_pretrained_image``): :func:`read_vit_embeddings` reads the
embeddings, with the class token's position folded into the class token.

``.safetensors`` is preferred; ``.pt``/``.pth``/``.bin``/``.ckpt`` are read with ``torch.load(weights_only=True)``,
which refuses pickled code. Everything is validated before anything is copied.

A timm Hub id, ``hf-hub:org/name`` (optionally ``@revision``, e.g. ``hf-hub:timm/vit_tiny_patch16_224.augreg_in21k``),
names the repo's ``model.safetensors`` (``open_clip_model.safetensors`` for an OpenCLIP repo): it is resolved through
``huggingface_hub``'s cache (``HF_HUB_CACHE``, ``HF_TOKEN``) and downloaded only when missing and ``HF_HUB_OFFLINE``
is not set; then it loads like a local file. Pickled files are never fetched from the Hub.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

__all__ = [
    "LAYOUT_NORM_EPS",
    "Layout",
    "LoadReport",
    "PretrainedLoadError",
    "VitEmbeddings",
    "convert_state_dict",
    "detect_layout",
    "hub_error",
    "hub_offline",
    "load_encoder_weights",
    "load_vit_weights",
    "parse_hub_id",
    "read_checkpoint",
    "read_vit_embeddings",
    "resolve_checkpoint",
]

log = logging.getLogger(__name__)

Layout = Literal["timm", "meta_transformer", "open_clip"]

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
_NESTED = ("state_dict", "model", "module", "model_state_dict", "model_state", "encoder")
_MAX_LISTED = 20

_TIMM_BLOCK = re.compile(r"^(?P<prefix>(?:.+\.)?)blocks\.\d+\.")
_META_BLOCK = re.compile(r"^(?P<prefix>(?:.+\.)?)(?P<i>\d+)\.(?:norm1|norm2|attn|mlp|ls1|ls2)\.")
_CLIP_BLOCK = re.compile(r"^(?P<prefix>(?:.+\.)?)transformer\.resblocks\.\d+\.")
_CLIP_BLOCK_MAP = {
    "ln_1.weight": "norm1.weight",
    "ln_1.bias": "norm1.bias",
    "attn.in_proj_weight": "attn.qkv.weight",
    "attn.in_proj_bias": "attn.qkv.bias",
    "attn.out_proj.weight": "attn.proj.weight",
    "attn.out_proj.bias": "attn.proj.bias",
    "ls_1.gamma": "ls1.gamma",
    "ln_2.weight": "norm2.weight",
    "ln_2.bias": "norm2.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
    "ls_2.gamma": "ls2.gamma",
}
_CLIP_TOP_MAP = {"ln_pre.": "norm_pre.", "ln_post.": "norm."}
_ENCODER_TOP = ("norm_pre.", "norm.")
_TOP_NORMS = (  # (encoder prefix, config setting, what it is)
    ("norm_pre.", "pre_norm", "a LayerNorm before the first block"),
    ("norm.", "final_norm", "a LayerNorm after the last block"),
)

#: LayerNorm epsilon of the layouts that fix it: Meta-Transformer builds its blocks with ``nn.LayerNorm`` (1e-5, see
#: its README and modality code) and OpenCLIP's LayerNorm is torch's (1e-5). A timm file does not say (timm's ViTs use
#: 1e-6, its CLIP ViTs 1e-5), so loading one keeps the encoder's ``norm_eps``.
LAYOUT_NORM_EPS: dict[str, float] = {"meta_transformer": 1e-5, "open_clip": 1e-5}


class PretrainedLoadError(ValueError):
    """A checkpoint that cannot be loaded into the encoder; the message lists every offending key."""


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f", … and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else "")


@dataclass
class LoadReport:
    """What a load did: the layout found, the keys loaded, ignored (not encoder weights) and missing."""

    path: str
    layout: Layout
    loaded: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    checkpoint_depth: int = 0
    checkpoint_width: int = 0
    #: config fields the load changed because the layout fixes them: ``{field: (before, after)}``
    settings: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    #: what else a load did or could not check (embeddings loaded outside the encoder, settings not in the file)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No unexpected keys and no shape mismatches (missing keys are allowed when not strict)."""
        return not self.unexpected and not self.mismatched

    def __str__(self) -> str:
        lines = [
            f"{self.path}: {self.layout} layout, {self.checkpoint_depth} blocks of width {self.checkpoint_width}; "
            f"{len(self.loaded)} tensors map onto the encoder"
        ]
        if self.settings:
            changed = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in self.settings.items())
            lines.append(f"  set from the layout (what these weights were trained with): {changed}")
        if self.mismatched:
            items = [f"{k}: checkpoint {tuple(a)} vs encoder {tuple(b)}" for k, a, b in self.mismatched]
            lines.append(f"  shape mismatches ({len(items)}): {_listed(items)}")
        if self.unexpected:
            lines.append(
                f"  unexpected keys, not in this encoder ({len(self.unexpected)}): {_listed(self.unexpected)}"
            )
        if self.missing:
            lines.append(
                f"  missing keys, not in the checkpoint ({len(self.missing)}): {_listed(self.missing)}"
            )
        if self.ignored:
            lines.append(
                f"  ignored keys, not encoder weights ({len(self.ignored)}): {_listed(self.ignored)}"
            )
        lines.extend(f"  {note}" for note in self.notes)
        return "\n".join(lines)


# -- the Hugging Face Hub --------------------------------------------------------------------------------------

HUB_PREFIXES = ("hf-hub:", "hf_hub:")
#: the files a timm Hub id is read from, in this order (timm's, then OpenCLIP's): safetensors only
HUB_WEIGHT_FILES = ("model.safetensors", "open_clip_model.safetensors")
_TRUE = {"1", "ON", "YES", "TRUE"}


#: Why an encoder's ``hf-hub:`` id never downloads (:func:`resolve_checkpoint`).
ENCODER_CACHE_ONLY = "encoder weights named by hf-hub: ids are read from the cache only"


def hub_offline() -> bool:
    """Whether Hub downloads are off: ``HF_HUB_OFFLINE`` as set now (``1``/``true``/``yes``/``on``), else what
    ``huggingface_hub`` read when it was imported."""
    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().upper() in _TRUE
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def parse_hub_id(name: str | Path) -> tuple[str, str | None] | None:
    """``(repo_id, revision)`` of a timm Hub id ``hf-hub:org/name[@revision]``; ``None`` for anything else."""
    if not isinstance(name, str) or not name.startswith(HUB_PREFIXES):
        return None
    repo_id, _, revision = name.split(":", 1)[1].partition("@")
    return repo_id, revision or None


def hub_error(
    repo_id: str,
    revision: str | None,
    exc: Exception | None,
    *,
    offline: str | None,
    wanted: str = "its files",
    download: str = "",
    cache_dir: str | Path | None = None,
) -> Exception:
    """The error for a Hub repo that could not be read: which repo, what was wanted, why, and how to get it.

    Args:
        repo_id, revision: the repo asked for.
        exc: what ``huggingface_hub`` raised (``None``: not in the cache); returned unchanged when it is none of
            the cases below.
        offline: what turned downloads off (``"HF_HUB_OFFLINE is set"``, ``"local_files_only=True"``), or ``None``.
        wanted: the files that were looked for (``"model.safetensors"``).
        download: the ``hf download`` arguments that fetch them (``"org/name model.safetensors"``).
        cache_dir: the cache that was searched (default ``HF_HUB_CACHE``).
    """
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    at = f" at revision {revision!r}" if revision else ""
    where = f"Hub repo {repo_id!r}{at}"
    if isinstance(exc, GatedRepoError):
        return PermissionError(
            f"{where} is gated: accept its terms on the Hub, then log in (`hf auth login`) or pass a token"
        )
    if isinstance(exc, RepositoryNotFoundError):
        return FileNotFoundError(
            f"{where} does not exist, or is private (log in with `hf auth login`, set HF_TOKEN or pass a token)"
        )
    if isinstance(exc, RevisionNotFoundError):
        return FileNotFoundError(f"{where}: no such revision (expected a branch, tag or commit of the repo)")
    if exc is None or isinstance(exc, LocalEntryNotFoundError):
        if offline:
            why = f"downloads are off ({offline})"
            switch = (
                "HF_HUB_OFFLINE unset"
                if "HF_HUB_OFFLINE" in offline
                else "local_files_only=False"
                if "local_files_only" in offline
                else None
            )
            online = f"run once with downloads on ({switch}), or " if switch else ""
        else:
            why = f"the Hub could not be reached ({str(exc).splitlines()[0] if exc else 'no connection'})"
            online = "run again with network access, or "
        return FileNotFoundError(
            f"{where}: expected {wanted} in the Hugging Face cache ({cache_dir or constants.HF_HUB_CACHE}), got "
            f"none there, and {why}. To get it: {online}run `hf download {download or repo_id}` where the Hub is "
            "reachable and copy its cache folder here (HF_HUB_CACHE), or pass a local path instead"
        )
    return exc


def _cached_hub_file(repo_id: str, filename: str, revision: str | None) -> Path | None:
    """The cached copy of a Hub file, found without a network call (``None`` when it is not cached)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, revision=revision)
    return Path(found) if isinstance(found, str) else None


def resolve_checkpoint(path: str | Path) -> Path:
    """The local file behind ``path``: ``path`` itself, or for a timm Hub id ``hf-hub:org/name[@revision]`` the
    repo's ``model.safetensors`` (or ``open_clip_model.safetensors``) in the Hugging Face cache (``HF_HUB_CACHE``).

    Nothing is downloaded, ever: a config that names encoder weights must build the same model on a machine without
    network. A repo that is not cached is an error naming it and the ``hf download`` command that fetches it. Only
    safetensors are taken from the cache."""
    hub = parse_hub_id(path)
    if hub is None:
        return Path(path).expanduser()
    repo_id, revision = hub
    for filename in HUB_WEIGHT_FILES:
        found = _cached_hub_file(repo_id, filename, revision)
        if found is not None:
            return found
    raise hub_error(
        repo_id,
        revision,
        None,
        offline=ENCODER_CACHE_ONLY,
        wanted=" or ".join(HUB_WEIGHT_FILES),
        download=f"{repo_id} {HUB_WEIGHT_FILES[0]}" + (f" --revision {revision}" if revision else ""),
    )


# -- reading ---------------------------------------------------------------------------------------------------


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """Read a flat ``{name: tensor}`` from a local ``.safetensors`` or (``weights_only``) ``.pt``/``.pth`` file.

    Nested checkpoints (``{"model": {...}}``, ``{"state_dict": {...}}``) are unwrapped, and a prefix that every
    key shares from DDP (``module.``) is removed. A timm Hub id ``hf-hub:org/name[@revision]`` reads that repo's
    safetensors from the Hugging Face cache (:func:`resolve_checkpoint`).
    """
    p = resolve_checkpoint(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"pretrained checkpoint {str(p)!r} does not exist (only local files are read)"
        )
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        obj: Any = load_file(str(p), device="cpu")
    elif suffix in PICKLE_SUFFIXES:
        try:  # weights_only passed explicitly: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD cannot turn it off
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            names = ", ".join(dict.fromkeys(re.findall(r"GLOBAL ([\w.]+)", str(exc)))) or "not a plain pickle"
            raise PretrainedLoadError(
                f"{p}: refused to unpickle: expected only tensors and plain containers, got code or objects outside "
                f"that allow-list ({names}). Convert it to .safetensors, or re-save just the state dict, from a "
                "source you trust."
            ) from None
    else:
        raise PretrainedLoadError(
            f"{p}: unsupported checkpoint type {suffix!r}; expected .safetensors (preferred) or one of "
            f"{', '.join(PICKLE_SUFFIXES)}"
        )
    for _ in range(3):
        if isinstance(obj, Mapping) and not all(isinstance(v, Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _NESTED if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping):
        raise PretrainedLoadError(f"{p}: expected a state dict of tensors, got {type(obj).__name__}")
    state = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not state:
        raise PretrainedLoadError(f"{p}: no tensors found (top-level keys: {_listed(sorted(map(str, obj)))})")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


# -- layouts ---------------------------------------------------------------------------------------------------


def _prefixes(pattern: re.Pattern[str], keys: list[str]) -> set[str]:
    return {m.group("prefix") for k in keys if (m := pattern.match(k))}


def detect_layout(keys: list[str] | Mapping[str, Any]) -> tuple[Layout, str]:
    """``(layout, prefix)`` of a state dict's keys; raises :class:`PretrainedLoadError` if none fits.

    OpenCLIP blocks (``transformer.resblocks.{i}``) count as a visual tower under a ``visual.`` prefix or next to
    ``conv1.weight`` / ``class_embedding``; without a visual tower they are a text tower, which is refused.
    """
    keys = list(keys)
    keyset = set(keys)
    clip = _prefixes(_CLIP_BLOCK, keys)
    visual = sorted(
        (
            p
            for p in clip
            if p.endswith("visual.") or f"{p}conv1.weight" in keyset or f"{p}class_embedding" in keyset
        ),
        key=len,
    )
    if visual:
        return "open_clip", visual[0]
    if clip:
        text = sorted(clip, key=len)[0]
        marks = [
            k for k in ("token_embedding.weight", "ln_final.weight", "text_projection") if text + k in keyset
        ]
        found = f" with {', '.join(repr(text + k) for k in marks)}" if marks else ""
        raise PretrainedLoadError(
            f"an OpenCLIP text tower ('{text}transformer.resblocks.{{i}}.…'{found}) and no ViT visual tower: this "
            "encoder loads OpenCLIP visual towers ('visual.transformer.resblocks.{i}.…', next to 'visual.conv1.weight'). "
            "A text tower is a causal transformer (each token attends only to those before it, read at the "
            "end-of-text token), so its blocks would not compute in this bidirectional encoder what they were trained "
            "to; load the CLIP file that holds the visual tower (its text tower is then ignored)"
        )
    timm = sorted(_prefixes(_TIMM_BLOCK, keys), key=len)
    if timm:
        if len(timm) > 1:
            raise PretrainedLoadError(
                f"checkpoint holds several block stacks ({', '.join(repr(p + 'blocks') for p in timm)}); "
                "save the one to load on its own"
            )
        return "timm", timm[0]
    meta = sorted(_prefixes(_META_BLOCK, keys), key=len)
    if meta:
        return "meta_transformer", meta[0]
    raise PretrainedLoadError(
        "unrecognised checkpoint layout: expected timm ViT keys 'blocks.{i}.…', Meta-Transformer keys "
        "'{i}.norm1.weight', '{i}.attn.qkv.weight', … or OpenCLIP keys 'visual.transformer.resblocks.{i}.…'; "
        f"the checkpoint's first keys are: {_listed(keys)}"
    )


def _convert(
    state: Mapping[str, Tensor], layout: Layout, prefix: str
) -> tuple[dict[str, Tensor], dict[str, str], list[str], list[str]]:
    """:func:`convert_state_dict`, plus ``{encoder key: checkpoint key}`` of every mapped tensor."""
    mapped: dict[str, Tensor] = {}
    sources: dict[str, str] = {}
    ignored: list[str] = []
    unmapped: list[str] = []

    def put(name: str, key: str) -> None:
        mapped[name] = state[key]
        sources[name] = key

    for key in state:
        if not key.startswith(prefix):
            ignored.append(key)
            continue
        rest = key[len(prefix) :]
        if layout == "timm":
            if rest.startswith("blocks.") or rest.startswith(_ENCODER_TOP):
                put(rest, key)
            else:
                ignored.append(key)
        elif layout == "meta_transformer":
            m = re.match(r"^(\d+)\.(.+)$", rest)
            if m:
                put(f"blocks.{m.group(1)}.{m.group(2)}", key)
            elif rest.startswith(_ENCODER_TOP):
                put(rest, key)
            else:
                ignored.append(key)
        else:
            m = re.match(r"^transformer\.resblocks\.(\d+)\.(.+)$", rest)
            if m:
                sub = _CLIP_BLOCK_MAP.get(m.group(2))
                if sub is None:
                    unmapped.append(key)
                else:
                    put(f"blocks.{m.group(1)}.{sub}", key)
                continue
            top = next((t for t in _CLIP_TOP_MAP if rest.startswith(t)), None)
            if top is not None and rest[len(top) :] in ("weight", "bias"):
                put(_CLIP_TOP_MAP[top] + rest[len(top) :], key)
            elif rest.startswith("attn_pool."):
                unmapped.append(key)  # CoCa's pooler: ln_post then normalises its output, not the tokens
            else:
                ignored.append(key)
    return mapped, sources, ignored, unmapped


def convert_state_dict(
    state: Mapping[str, Tensor], layout: Layout, prefix: str = ""
) -> tuple[dict[str, Tensor], list[str], list[str]]:
    """Map a checkpoint onto encoder names. Returns ``(mapped, ignored, unmapped)``.

    ``ignored``: keys that are not encoder weights (patch/pos embeddings, tokens, heads, a text tower).
    ``unmapped``: keys inside a block of the checkpoint that have no encoder counterpart, and an OpenCLIP
    attentional pooler (reported as unexpected: loading without them would silently change the model).
    """
    mapped, _, ignored, unmapped = _convert(state, layout, prefix)
    return mapped, ignored, unmapped


def _checkpoint_dims(mapped: Mapping[str, Tensor]) -> tuple[int, int]:
    depth = 1 + max((int(k.split(".")[1]) for k in mapped if k.startswith("blocks.")), default=-1)
    norm = next((v for k, v in mapped.items() if k.endswith("norm1.weight")), None)
    return depth, int(norm.shape[0]) if norm is not None else 0


# -- ViT embeddings --------------------------------------------------------------------------------------------


class VitEmbeddings(NamedTuple):
    """A ViT's input embeddings, read from a timm or OpenCLIP state dict by :func:`read_vit_embeddings`.

    The model they come from computes ``cat([cls_token], patches(x) + pos_embed)``: the class token's own position
    is already added to ``cls_token`` (timm ``cls_token + pos_embed[:, 0]``, OpenCLIP ``class_embedding +
    positional_embedding[0]``).
    """

    layout: Layout
    prefix: str  # the keys' common prefix ("visual." in a whole CLIP file)
    weight: Tensor  # patch projection [D, C, p, p]
    bias: Tensor | None  # [D]; None where the projection has none (OpenCLIP's conv1)
    pos_embed: Tensor | None  # [1, h*w, D], the patches' positions only
    grid: tuple[int, int] | None  # (h, w) of pos_embed, taken as square
    cls_token: Tensor | None  # [1, 1, D] with its position added; None: the model has no class token
    num_registers: int  # timm register tokens (reg_token), which a polymodal model does not have
    keys: tuple[str, ...]  # the checkpoint keys read
    unsupported: tuple[str, ...]  # embedding keys with no counterpart here (timm patch_embed.norm.*)


def _keys_ending(state: Mapping[str, Any], suffix: str) -> list[str]:
    """Prefixes ``p`` ("" or ending in ".") with ``p + suffix`` a key of ``state``."""
    return sorted(
        k[: -len(suffix)] for k in state if k.endswith(suffix) and (k == suffix or k[-len(suffix) - 1] == ".")
    )


def _conv_weight(weight: Tensor, key: str) -> Tensor:
    if weight.dim() != 4:
        raise PretrainedLoadError(
            f"{key}: expected a Conv2d patch-embedding weight [D, C, p, p], got shape {tuple(weight.shape)}"
        )
    return weight


def _split_positions(
    pos: Tensor, key: str, prefix_counts: list[int]
) -> tuple[Tensor, Tensor, tuple[int, int]]:
    """``(prefix positions [1, k, D], grid positions [1, h*w, D], (h, w))`` for the first ``k`` of
    ``prefix_counts`` that leaves a square grid."""
    n = pos.shape[1]
    for k in prefix_counts:
        side = math.isqrt(max(n - k, 0))
        if side > 0 and side * side == n - k:
            return pos[:, :k], pos[:, k:], (side, side)
    counts = " or ".join(str(k) for k in prefix_counts)
    raise PretrainedLoadError(
        f"{key} with {n} positions is not a square grid after {counts} class/register positions"
    )


def read_vit_embeddings(state: Mapping[str, Tensor]) -> VitEmbeddings:
    """The patch embedding, positions and class token of the ViT in a timm or OpenCLIP state dict.

    - timm: ``patch_embed.proj.{weight,bias}``, ``cls_token [1, 1, D]``, ``reg_token [1, R, D]``, ``pos_embed
      [1, k + h·w, D]`` with ``k`` = class + register positions (0 for ``no_embed_class`` models).
    - OpenCLIP: ``conv1.weight`` (no bias), ``class_embedding [D]``, ``positional_embedding [1 + h·w, D]``.

    Keys may share a prefix (``visual.`` in a whole CLIP file, ``module.``). Raises ``KeyError`` when the state
    dict holds no patch embedding, :class:`PretrainedLoadError` when it holds several or they are malformed.
    """
    found = [("timm", p) for p in _keys_ending(state, "patch_embed.proj.weight")]
    found += [("open_clip", p) for p in _keys_ending(state, "conv1.weight") if f"{p}class_embedding" in state]
    if not found:
        raise KeyError(
            "no ViT patch embedding in the state dict: expected 'patch_embed.proj.weight' (timm) or 'conv1.weight' "
            f"with 'class_embedding' (OpenCLIP), got keys {_listed(sorted(state))}"
        )
    if len(found) > 1:
        names = ", ".join(f"{layout} at {p!r}" for layout, p in found)
        raise PretrainedLoadError(
            f"several ViT patch embeddings in the state dict ({names}); save one on its own"
        )
    layout, p = found[0]
    if layout == "timm":
        wkey, bkey = f"{p}patch_embed.proj.weight", f"{p}patch_embed.proj.bias"
        weight, bias = _conv_weight(state[wkey], wkey), state.get(bkey)
        cls, reg, pos = state.get(f"{p}cls_token"), state.get(f"{p}reg_token"), state.get(f"{p}pos_embed")
        registers = int(reg.shape[1]) if reg is not None else 0
        keys = [k for k in (wkey, bkey, f"{p}cls_token", f"{p}pos_embed") if k in state]
        unsupported = tuple(
            sorted(k for k in state if k.startswith(f"{p}patch_embed.") and k not in (wkey, bkey))
        )
        grid = None
        if pos is not None:
            key = f"{p}pos_embed"
            counts = [int(cls is not None) + registers, 0] if cls is not None or registers else [0, 1]
            head, pos, grid = _split_positions(pos, key, counts)
            if cls is not None and head.shape[1]:
                cls = cls.float() + head[:, :1].float()
        return VitEmbeddings(layout, p, weight, bias, pos, grid, cls, registers, tuple(keys), unsupported)
    wkey = f"{p}conv1.weight"
    weight, bias = _conv_weight(state[wkey], wkey), state.get(f"{p}conv1.bias")
    cls = state[f"{p}class_embedding"].reshape(1, 1, -1)
    keys = [
        k for k in (wkey, f"{p}conv1.bias", f"{p}class_embedding", f"{p}positional_embedding") if k in state
    ]
    pos, grid = state.get(f"{p}positional_embedding"), None
    if pos is not None:
        head, pos, grid = _split_positions(pos.reshape(1, -1, pos.shape[-1]), f"{p}positional_embedding", [1])
        cls = cls.float() + head.float()
    return VitEmbeddings(layout, p, weight, bias, pos, grid, cls, 0, tuple(keys), ())


# -- loading ---------------------------------------------------------------------------------------------------


def _set_norm_eps(encoder: nn.Module, eps: float) -> None:
    setter = getattr(encoder, "set_norm_eps", None)
    if callable(setter):
        setter(eps)
        return
    for m in encoder.modules():
        if isinstance(m, nn.LayerNorm):
            m.eps = eps


def _norm_eps(encoder: nn.Module) -> float | None:
    eps = getattr(getattr(encoder, "config", None), "norm_eps", None)
    if eps is None:
        eps = next((m.eps for m in encoder.modules() if isinstance(m, nn.LayerNorm)), None)
    return eps


def load_encoder_weights(encoder: nn.Module, path: str | Path, strict: bool = True) -> LoadReport:
    """Load a local checkpoint into ``encoder`` (a ``TransformerEncoder``), all or nothing.

    Raises :class:`PretrainedLoadError` naming every unexpected key and shape mismatch, and, when ``strict``,
    every missing key; in that case no parameter has changed. A pre-norm or final norm in the checkpoint that the
    encoder was built without (``pre_norm=False`` / ``final_norm=False``) is unexpected too: dropping it would change
    every feature. Otherwise copies the mapped tensors (cast to the parameters' dtype), sets the LayerNorm epsilon
    of a layout that fixes it (:data:`LAYOUT_NORM_EPS`, ``report.settings``), warns about missing keys if not
    strict, logs the report and returns it.
    """
    state = read_checkpoint(path)
    layout, prefix = detect_layout(state)
    mapped, sources, ignored, unmapped = _convert(state, layout, prefix)
    target = encoder.state_dict()
    c = getattr(encoder, "config", None)
    unexpected = sorted(set(unmapped) | {k for k in mapped if k not in target}, key=_natural)
    order = {k: i for i, k in enumerate(target)}
    mismatched = [
        (k, tuple(mapped[k].shape), tuple(v.shape))
        for k, v in target.items()
        if k in mapped and tuple(mapped[k].shape) != tuple(v.shape)
    ]
    missing = [k for k in target if k not in mapped]
    depth, width = _checkpoint_dims(mapped)
    report = LoadReport(
        path=str(path),
        layout=layout,
        loaded=sorted((k for k in mapped if k in target), key=order.__getitem__),
        ignored=sorted(ignored, key=_natural),
        missing=missing,
        unexpected=unexpected,
        mismatched=mismatched,
        checkpoint_depth=depth,
        checkpoint_width=width,
    )
    if not report.ok or (strict and missing):
        hints = []
        if c is not None and (depth != getattr(c, "depth", depth) or width != getattr(c, "embed_dim", width)):
            hints.append(
                f"the checkpoint has {depth} blocks of width {width}, the encoder {c.depth} blocks of width "
                f"{c.embed_dim}: pick a matching size (e.g. vit_base for Meta-Transformer Base)"
            )
        for top, setting, what in _TOP_NORMS:
            dropped = [sources[k] for k in unexpected if k.startswith(top) and k in sources]
            if dropped:
                hints.append(
                    f"the checkpoint has {what} ({', '.join(map(repr, dropped))} -> {top}*), the encoder was built "
                    f"with {setting}=False: set {setting}=True (it is never dropped: that changes every feature)"
                )
        pooler = [k for k in unexpected if k.startswith(f"{prefix}attn_pool.")]
        if layout == "open_clip" and pooler:
            hints.append(
                f"'{prefix}attn_pool.*' is an attentional pooler (CoCa) between the blocks and ln_post, so ln_post "
                "normalises the pooler's output, not the tokens: this encoder has no such pooler"
            )
        if strict and any(k.startswith(_ENCODER_TOP) for k in missing):
            hints.append(
                "the checkpoint has no final/pre norm: set final_norm=False / pre_norm=False (Meta-Transformer "
                "files have no final norm) or load with strict=False to keep them initialised"
            )
        hint = "".join(f"\n  hint: {h}" for h in hints)
        raise PretrainedLoadError(f"cannot load {report}{hint}\n  nothing was loaded")
    eps, current = LAYOUT_NORM_EPS.get(layout), _norm_eps(encoder)
    if eps is not None and current is not None and current != eps:
        report.settings["norm_eps"] = (current, eps)
    act = getattr(c, "act_layer", None)
    if layout == "open_clip" and act is not None:
        report.notes.append(
            f"activation not stored in the file: act_layer={act!r} kept (OpenAI's original CLIP weights need "
            "'quick_gelu', OpenCLIP's own trainings 'gelu')"
        )
    with torch.no_grad():
        for k in report.loaded:
            target[k].copy_(mapped[k])
    if "norm_eps" in report.settings:
        _set_norm_eps(encoder, report.settings["norm_eps"][1])
    if missing:
        warnings.warn(f"loaded with missing keys, kept at initialisation:\n{report}", stacklevel=2)
    log.info("%s", report)
    return report


def load_vit_weights(
    path: str | Path,
    *,
    tokenizer: nn.Module,
    encoder: nn.Module,
    cls_token: Tensor | None = None,
    modality_embedding: Tensor | None = None,
    strict: bool = True,
    name: str = "image",
) -> LoadReport:
    """Load a whole ViT image model from a local timm or OpenCLIP file, so that the tokens after the final norm
    equal the source model's (timm ``forward_features``; OpenCLIP's tokens after ``ln_post``).

    ``tokenizer`` (any module with ``load_patch_embed(state_dict)``, e.g. the ``image`` tokenizer) gets the patch
    embedding and positions (a projection without bias gets a zero bias); ``cls_token`` ``[1, 1, D]`` the class
    token with its position added (the model has no position for [CLS]); ``modality_embedding`` is set to zero
    (the source model has none); ``encoder`` the blocks and norms (:func:`load_encoder_weights`, with its checks
    of ``pre_norm`` / ``final_norm`` and its epsilon for OpenCLIP). The activation and, for timm, the epsilon are
    not in the file: they come from the encoder's config.

    Refused, before anything is copied (:class:`PretrainedLoadError`): a Meta-Transformer file (blocks only),
    register tokens, a norm inside the patch embedding, no positions, a class token in the file but not in the
    model (``cls_token=None``) or the reverse, other widths. A tokenizer grid or patch size other than the file's is
    resampled (then the features differ from the source model's), and the report says so.
    """
    load_patch_embed = getattr(tokenizer, "load_patch_embed", None)
    if not callable(load_patch_embed):
        raise TypeError(
            f"{name}: expected a tokenizer with load_patch_embed (a patch embedding, e.g. 'image'), got "
            f"{type(tokenizer).__name__}"
        )
    state = read_checkpoint(path)
    layout, prefix = detect_layout(state)
    if layout == "meta_transformer":
        raise PretrainedLoadError(
            f"{path}: a Meta-Transformer file holds the encoder's blocks only (no patch embedding, class token or "
            f"positions): load it with encoder.load_pretrained(path) and train the {name} tokenizer"
        )
    try:
        emb = read_vit_embeddings(state)
    except KeyError as exc:
        raise PretrainedLoadError(f"{path}: {layout} layout, but {exc.args[0]}") from None
    problems = []
    if emb.prefix != prefix:
        problems.append(
            f"the patch embedding ('{emb.prefix}…') and the blocks ('{prefix}…') are not under one prefix"
        )
    if emb.num_registers:
        problems.append(
            f"'{emb.prefix}reg_token': {emb.num_registers} register tokens, which this model does not have"
        )
    if emb.unsupported:
        problems.append(f"{_listed(list(emb.unsupported))}: not part of a patch embedding + positions")
    if emb.pos_embed is None:
        problems.append("no absolute positions in the file, while the tokenizer adds learned ones")
    width = int(emb.weight.shape[0])
    dims = {"the tokenizer": getattr(tokenizer, "embed_dim", width)}
    if cls_token is not None:
        dims["the [CLS] token"] = int(cls_token.shape[-1])
    wrong = {k: v for k, v in dims.items() if v != width}
    if wrong:
        problems.append(f"width {width} in the file, {', '.join(f'{v} in {k}' for k, v in wrong.items())}")
    cls_key = f"'{prefix}cls_token'" if layout == "timm" else f"'{prefix}class_embedding'"
    if emb.cls_token is not None and cls_token is None:
        problems.append(
            f"the file has a class token ({cls_key}), the model no [CLS]: build it with cls_token=True"
        )
    if emb.cls_token is None and cls_token is not None:
        problems.append(
            f"the file has no class token (timm class_token=False), the model prepends a [CLS] to {name}: build it "
            "with cls_token=False"
        )
    if problems:
        raise PretrainedLoadError(
            f"cannot load {path} ({layout} layout) as a whole ViT into {name}: "
            + "; ".join(problems)
            + "\n  nothing was loaded"
        )
    report = load_encoder_weights(encoder, path, strict=strict)  # all or nothing: raises before copying
    load_patch_embed(state)
    with torch.no_grad():
        if cls_token is not None and emb.cls_token is not None:
            cls_token.copy_(emb.cls_token.reshape(cls_token.shape))
        if modality_embedding is not None:
            modality_embedding.zero_()
    report.ignored = [k for k in report.ignored if k not in emb.keys]
    patch = [k for k in emb.keys if "cls_token" not in k and "class_embedding" not in k]
    report.notes.append(
        f"{name} tokenizer <- {', '.join(patch)} (patch embedding, {emb.grid[0]}x{emb.grid[1]} positions)"
    )
    if emb.bias is None:
        report.notes.append(f"{name} tokenizer: the file's projection has no bias; its bias is set to zero")
    if cls_token is not None:
        if layout == "open_clip":
            fold = "class_embedding + positional_embedding[0]"
        elif state[f"{prefix}pos_embed"].shape[1] > emb.pos_embed.shape[1]:
            fold = "cls_token + pos_embed[:, 0]"
        else:
            fold = "cls_token (no_embed_class: the class token has no position)"
        report.notes.append(f"[CLS] of {name} <- {prefix}{fold}")
    if modality_embedding is not None:
        report.notes.append(f"modality embedding of {name} set to zero (the source model has none)")
    grid = getattr(tokenizer, "grid_size", None)
    if grid is not None and tuple(grid) != emb.grid:
        report.notes.append(
            f"positions resampled from the file's {emb.grid[0]}x{emb.grid[1]} grid to the tokenizer's "
            f"{grid[0]}x{grid[1]}: features differ from the source model's"
        )
    patch_size = getattr(getattr(tokenizer, "config", None), "patch_size", None)
    if patch_size is not None and tuple(emb.weight.shape[-2:]) != (patch_size, patch_size):
        report.notes.append(
            f"patch filters resampled from {tuple(emb.weight.shape[-2:])} to ({patch_size}, {patch_size}): features "
            "differ from the source model's"
        )
    log.info("%s", report)
    return report


def _natural(key: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", key))
