"""Optimiser construction: the encoder's freezing policy, layer-wise lr decay, no weight decay on norms and biases.

:class:`PolymodalOptimWrapperConstructor` is an mmengine optimiser-wrapper constructor
(``optim_wrapper=dict(..., constructor="PolymodalOptimWrapperConstructor", paramwise_cfg=dict(...))``):

- parameters without ``requires_grad`` (frozen by the encoder's ``freeze`` policy, or by ``freeze`` patterns here)
  are left out;
- ``layer_decay`` (BEiT, Bao et al., arXiv 2106.08254): block ``i`` of a depth-``L`` encoder gets
  ``lr * decay ** (L - i)``, the final norm and the heads ``lr``, and everything below the blocks (tokenizers,
  [CLS] and modality embeddings) ``lr * decay ** (L + 1)``. Scales come from the encoder's
  ``layer_lr_scales(decay, prefix)``; encoders without it get ids from their parameter names (``blocks.{i}.``);
- weight decay is 0 for 1-D parameters (biases, norms, scales) and for embeddings named in ``no_decay``;
- ``lr_mult``: extra multipliers by fnmatch pattern of the parameter name, e.g. ``{"heads.*": 10.0}``.

Parameters with equal (lr, weight decay) share one param group.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from typing import Any

from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS, OPTIMIZERS
from torch import nn

from polymodal.train.registry import OPTIM_WRAPPER_CONSTRUCTORS

__all__ = ["PolymodalOptimWrapperConstructor", "clean_name", "layer_lr_scales", "param_groups"]

_WRAPPER_SEGMENTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")
NO_DECAY = ("*cls_tokens*", "*modality_embeddings*", "*pos_embed*", "*logit_scale*")
_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")


def clean_name(name: str) -> str:
    """A parameter name without the segments FSDP, activation checkpointing and ``torch.compile`` insert."""
    for segment in _WRAPPER_SEGMENTS:
        name = name.replace(segment, "")
    return name


def layer_lr_scales(model: nn.Module, decay: float) -> dict[str, float]:
    """``{parameter name: lr scale}`` for layer-wise lr decay over a :class:`MultimodalModel`'s parameters."""
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {decay}")
    encoder = getattr(model, "encoder", None)
    names = [clean_name(n) for n, _ in model.named_parameters()]
    if encoder is not None and hasattr(encoder, "layer_lr_scales") and hasattr(encoder, "num_lr_layers"):
        enc = {clean_name(k): v for k, v in encoder.layer_lr_scales(decay, prefix="encoder.").items()}
        bottom = decay ** (encoder.num_lr_layers - 1)
    else:  # an encoder without the method: ids from `blocks.{i}.` in the names (0 below, depth + 1 on top)
        enc_names = [n for n in names if n.startswith("encoder.")]
        ids = {n: int(m.group(1)) + 1 for n in enc_names if (m := _BLOCK.search(n))}
        depth = max(ids.values(), default=0)
        low = ("norm_pre", "pos_embed", "patch_embed", "cls_token")
        top = {n: 0 if any(k in n for k in low) else depth + 1 for n in enc_names}
        enc = {n: decay ** (depth + 1 - ids.get(n, top[n])) for n in enc_names}
        bottom = decay ** (depth + 1)
    scales = {}
    for n in names:
        if n in enc:
            scales[n] = enc[n]
        elif n.startswith("heads."):
            scales[n] = 1.0
        else:  # tokenizers, [CLS] and modality embeddings sit below the first block
            scales[n] = bottom
    return scales


def _match(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def param_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    layer_decay: float = 1.0,
    no_decay: Sequence[str] = NO_DECAY,
    lr_mult: Mapping[str, float] | None = None,
    freeze: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Param groups ``{"params", "lr", "weight_decay", "lr_scale", "names"}`` (see the module docstring)."""
    for name, p in model.named_parameters():
        if _match(clean_name(name), freeze):
            p.requires_grad_(False)
    scales = layer_lr_scales(model, layer_decay)
    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for raw_name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        name = clean_name(raw_name)
        scale = scales[name]
        for pattern, mult in (lr_mult or {}).items():
            if fnmatch.fnmatchcase(name, pattern):
                scale *= float(mult)
        wd = 0.0 if p.ndim <= 1 or _match(name, no_decay) else weight_decay
        group = groups.setdefault(
            (scale, wd), {"params": [], "lr": lr * scale, "weight_decay": wd, "lr_scale": scale, "names": []}
        )
        group["params"].append(p)
        group["names"].append(name)
    if not groups:
        raise ValueError("no trainable parameters: everything is frozen")
    # the group with the largest lr first: mmengine logs the first group's lr
    return sorted(groups.values(), key=lambda g: (-g["lr_scale"], g["weight_decay"]))


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class PolymodalOptimWrapperConstructor:
    """Build an optimiser wrapper with freezing, layer-wise lr decay and no-decay rules (module docstring).

    ``paramwise_cfg`` keys: ``layer_decay`` (float in (0, 1], default 1 = off), ``no_decay`` (fnmatch patterns,
    default: [CLS]/modality/positional embeddings and the logit scale; 1-D parameters never decay), ``lr_mult``
    (``{pattern: multiplier}``), ``freeze`` (fnmatch patterns of parameters to freeze, e.g. ``"tokenizers.*"``).
    """

    KEYS = ("layer_decay", "no_decay", "lr_mult", "freeze")

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None) -> None:
        if not isinstance(optim_wrapper_cfg, dict):
            raise TypeError(f"optim_wrapper_cfg should be a dict, got {type(optim_wrapper_cfg).__name__}")
        if "optimizer" not in optim_wrapper_cfg:
            raise ValueError("optim_wrapper_cfg needs an 'optimizer'")
        self.optim_wrapper_cfg = dict(optim_wrapper_cfg)
        self.optimizer_cfg = dict(self.optim_wrapper_cfg.pop("optimizer"))
        self.paramwise_cfg = dict(paramwise_cfg or {})
        unknown = sorted(set(self.paramwise_cfg) - set(self.KEYS))
        if unknown:
            raise ValueError(f"paramwise_cfg: unknown keys {unknown}; expected some of {list(self.KEYS)}")

    def __call__(self, model: nn.Module) -> OptimWrapper:
        module = model.module if is_model_wrapper(model) else model
        cfg = dict(self.optimizer_cfg)
        if "lr" not in cfg:
            raise ValueError("optimizer config needs an 'lr'")
        pw = self.paramwise_cfg
        cfg["params"] = [
            {k: v for k, v in g.items() if k != "names"}
            for g in param_groups(
                module,
                lr=float(cfg["lr"]),
                weight_decay=float(cfg.get("weight_decay", 0.0)),
                layer_decay=float(pw.get("layer_decay", 1.0)),
                no_decay=tuple(pw.get("no_decay", NO_DECAY)),
                lr_mult=pw.get("lr_mult"),
                freeze=tuple(pw.get("freeze", ())),
            )
        ]
        optimizer = OPTIMIZERS.build(cfg)
        wrapper_cfg = dict(self.optim_wrapper_cfg)
        wrapper_cfg.setdefault("type", "OptimWrapper")
        return OPTIM_WRAPPERS.build(wrapper_cfg, default_args=dict(optimizer=optimizer))
