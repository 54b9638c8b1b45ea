"""Pretrained weights for the shared encoder, from local files only: timm ViT, Meta-Transformer and OpenCLIP.

Three layouts are detected from the keys and mapped onto :class:`~polymodal.core.encoders.TransformerEncoder`'s
timm names (``norm_pre``, ``blocks.{i}.{norm1,attn.qkv,attn.proj,ls1,norm2,mlp.fc1,mlp.fc2,ls2}``, ``norm``):

- ``timm``: a timm ``VisionTransformer`` state dict (``blocks.{i}.…``), possibly nested under ``model`` /
  ``state_dict`` or with a key prefix (``module.``, ``encoder.``); patch/position embeddings, class/register
  tokens and heads are ignored, and the report lists them.
- ``meta_transformer``: Meta-Transformer's encoder files (arXiv 2307.10802): an ``nn.Sequential`` of timm blocks,
  ``{i}.norm1.{weight,bias}``, ``{i}.attn.qkv.{weight [3D, D],bias}``, ``{i}.attn.proj.*``, ``{i}.norm2.*``,
  ``{i}.mlp.fc1.*``, ``{i}.mlp.fc2.*`` (12 tensors per block, no final norm; Base: 12 blocks of 768 with 12
  heads, Large: 24 of 1024 with 16).
- ``open_clip``: an OpenCLIP visual tower (``visual.transformer.resblocks.{i}.ln_1``, ``attn.in_proj_weight``
  = concat(q, k, v) ``[3D, D]``, ``attn.in_proj_bias``, ``attn.out_proj``, ``ln_2``, ``mlp.c_fc``,
  ``mlp.c_proj``, ``ls_1/ls_2.gamma``; ``visual.ln_pre`` -> ``norm_pre``, ``visual.ln_post`` -> ``norm``). The text
  tower and the patch embedding are ignored. OpenCLIP uses LayerNorm eps 1e-5 and OpenAI's original weights use
  QuickGELU: set ``norm_eps=1e-5``, ``act_layer='quick_gelu'``, ``pre_norm=True`` on the encoder.

The number of heads is not stored in any of these files; it comes from the encoder's config.
``.safetensors`` is preferred; ``.pt``/``.pth``/``.bin``/``.ckpt`` are read with ``torch.load(weights_only=True)``,
which refuses pickled code. Everything is validated before anything is copied.
"""

from __future__ import annotations

import logging
import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

__all__ = [
    "Layout",
    "LoadReport",
    "PretrainedLoadError",
    "convert_state_dict",
    "detect_layout",
    "load_encoder_weights",
    "read_checkpoint",
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

    @property
    def ok(self) -> bool:
        """No unexpected keys and no shape mismatches (missing keys are allowed when not strict)."""
        return not self.unexpected and not self.mismatched

    def __str__(self) -> str:
        lines = [
            f"{self.path}: {self.layout} layout, {self.checkpoint_depth} blocks of width {self.checkpoint_width}; "
            f"{len(self.loaded)} tensors map onto the encoder"
        ]
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
        return "\n".join(lines)


# -- reading ---------------------------------------------------------------------------------------------------


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """Read a flat ``{name: tensor}`` from a local ``.safetensors`` or (``weights_only``) ``.pt``/``.pth`` file.

    Nested checkpoints (``{"model": {...}}``, ``{"state_dict": {...}}``) are unwrapped, and a prefix that every
    key shares from DDP (``module.``) is removed.
    """
    p = Path(path).expanduser()
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
    """``(layout, prefix)`` of a state dict's keys; raises :class:`PretrainedLoadError` if none fits."""
    keys = list(keys)
    clip = _prefixes(_CLIP_BLOCK, keys)
    visual = sorted(p for p in clip if p.endswith("visual.") or p == "visual.")
    if visual:
        return "open_clip", visual[0]
    if "" in clip and any(k in ("conv1.weight", "class_embedding") for k in keys):
        return "open_clip", ""  # a visual tower saved on its own
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


def convert_state_dict(
    state: Mapping[str, Tensor], layout: Layout, prefix: str = ""
) -> tuple[dict[str, Tensor], list[str], list[str]]:
    """Map a checkpoint onto encoder names. Returns ``(mapped, ignored, unmapped)``.

    ``ignored``: keys that are not encoder weights (patch/pos embeddings, tokens, heads, a text tower).
    ``unmapped``: keys inside a block of the checkpoint that have no encoder counterpart (reported as
    unexpected: loading without them would silently change the model).
    """
    mapped: dict[str, Tensor] = {}
    ignored: list[str] = []
    unmapped: list[str] = []
    for key, value in state.items():
        if not key.startswith(prefix):
            ignored.append(key)
            continue
        rest = key[len(prefix) :]
        if layout == "timm":
            if rest.startswith("blocks.") or rest.startswith(_ENCODER_TOP):
                mapped[rest] = value
            else:
                ignored.append(key)
        elif layout == "meta_transformer":
            m = re.match(r"^(\d+)\.(.+)$", rest)
            if m:
                mapped[f"blocks.{m.group(1)}.{m.group(2)}"] = value
            elif rest.startswith(_ENCODER_TOP):
                mapped[rest] = value
            else:
                ignored.append(key)
        else:
            m = re.match(r"^transformer\.resblocks\.(\d+)\.(.+)$", rest)
            if m:
                sub = _CLIP_BLOCK_MAP.get(m.group(2))
                if sub is None:
                    unmapped.append(key)
                else:
                    mapped[f"blocks.{m.group(1)}.{sub}"] = value
                continue
            top = next((t for t in _CLIP_TOP_MAP if rest.startswith(t)), None)
            if top is not None and rest[len(top) :] in ("weight", "bias"):
                mapped[_CLIP_TOP_MAP[top] + rest[len(top) :]] = value
            else:
                ignored.append(key)
    return mapped, ignored, unmapped


def _checkpoint_dims(mapped: Mapping[str, Tensor]) -> tuple[int, int]:
    depth = 1 + max((int(k.split(".")[1]) for k in mapped if k.startswith("blocks.")), default=-1)
    norm = next((v for k, v in mapped.items() if k.endswith("norm1.weight")), None)
    return depth, int(norm.shape[0]) if norm is not None else 0


# -- loading ---------------------------------------------------------------------------------------------------


def load_encoder_weights(encoder: nn.Module, path: str | Path, strict: bool = True) -> LoadReport:
    """Load a local checkpoint into ``encoder`` (a ``TransformerEncoder``), all or nothing.

    Raises :class:`PretrainedLoadError` naming every unexpected key and shape mismatch, and, when ``strict``,
    every missing key; in that case no parameter has changed. Otherwise copies the mapped tensors (cast to the
    parameters' dtype), warns about missing keys if not strict, logs the report and returns it.
    """
    state = read_checkpoint(path)
    layout, prefix = detect_layout(state)
    mapped, ignored, unmapped = convert_state_dict(state, layout, prefix)
    target = encoder.state_dict()
    c = getattr(encoder, "config", None)
    unexpected = sorted(set(unmapped) | {k for k in mapped if k not in target}, key=_natural)
    # A checkpoint's final/pre norm is not an error when the encoder is configured without one.
    for key in list(unexpected):
        if key.startswith(_ENCODER_TOP) and key not in target:
            unexpected.remove(key)
            ignored.append(f"{key} (encoder has no {key.split('.')[0]}: see final_norm / pre_norm)")
            mapped.pop(key)
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
        if strict and any(k.startswith(_ENCODER_TOP) for k in missing):
            hints.append(
                "the checkpoint has no final/pre norm: set final_norm=False / pre_norm=False (Meta-Transformer "
                "files have no final norm) or load with strict=False to keep them initialised"
            )
        hint = "".join(f"\n  hint: {h}" for h in hints)
        raise PretrainedLoadError(f"cannot load {report}{hint}\n  nothing was loaded")
    with torch.no_grad():
        for k in report.loaded:
            target[k].copy_(mapped[k])
    if missing:
        warnings.warn(f"loaded with missing keys, kept at initialisation:\n{report}", stacklevel=2)
    log.info("%s", report)
    return report


def _natural(key: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", key))
