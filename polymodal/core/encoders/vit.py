"""The shared encoder ``g``: one stack of transformer blocks that encodes every modality's tokens.

Follows ViT (arXiv 2010.11929) and Meta-Transformer (arXiv 2307.10802): pre-norm multi-head self-attention +
MLP blocks, here timm's ``Block`` (so timm, Meta-Transformer and OpenCLIP weights load, see
:mod:`polymodal.core.encoders.pretrained`). Input: a list of :class:`Tokens` (one per input of the step), each
``[B_m, N_m, D]`` with a mask; output: the same list, encoded, with the same masks, ``meta`` and ``prefix``, and
zeros at padded positions.

The forward is *packed* (:mod:`polymodal.core.encoders.packing`): the real tokens of every sequence of every input form
one stream ``[T, D]``; each block runs once over it, with attention restricted to each sequence. No FLOPs go to
padding, attention never crosses sequences, and padding never changes a sequence's result.
"""

from __future__ import annotations

import contextlib
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from timm.layers import LayerNorm, get_act_layer
from timm.models.vision_transformer import Block, init_weights_vit_timm
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from polymodal.core.encoders.base import Encoder, EncoderConfig
from polymodal.core.encoders.blocks import packed_block_forward
from polymodal.core.encoders.packing import AttentionBackend, PackedLayout

if TYPE_CHECKING:
    from pathlib import Path

    from polymodal.core.encoders.pretrained import LoadReport

__all__ = [
    "ENCODER_CLASSES",
    "PackedBlock",
    "TransformerEncoder",
    "TransformerEncoderConfig",
    "VitBaseEncoder",
    "VitLargeEncoder",
    "VitSmallEncoder",
    "VitTinyEncoder",
]


class TransformerEncoderConfig(EncoderConfig):
    """A ViT-style stack of pre-norm transformer blocks."""

    type: str = "vit"
    depth: int = Field(12, gt=0, description="Number of transformer blocks.")
    num_heads: int = Field(12, gt=0, description="Attention heads per block; must divide embed_dim.")
    mlp_ratio: float = Field(4.0, gt=0, description="Hidden width of the MLP as a multiple of embed_dim.")
    qkv_bias: bool = Field(True, description="Bias in the query/key/value projection.")
    drop_path_rate: float = Field(
        0.0, ge=0, lt=1, description="Stochastic depth rate, linearly increasing; dropped per sequence."
    )
    attn_drop_rate: float = Field(0.0, ge=0, lt=1, description="Dropout on attention weights.")
    proj_drop_rate: float = Field(
        0.0, ge=0, lt=1, description="Dropout after the attention and MLP projections."
    )
    final_norm: bool = Field(
        True, description="LayerNorm after the last block (timm 'norm', CLIP 'ln_post')."
    )
    pre_norm: bool = Field(
        False, description="LayerNorm before the first block (timm 'norm_pre', CLIP 'ln_pre')."
    )
    norm_eps: float = Field(
        1e-6,
        gt=0,
        description="LayerNorm epsilon: 1e-6 for timm ViT, 1e-5 for Meta-Transformer and OpenCLIP (loading their "
        "files sets it).",
    )
    act_layer: Literal["gelu", "quick_gelu", "gelu_tanh"] = Field(
        "gelu",
        description="MLP activation: 'gelu' (ViT, Meta-Transformer, most OpenCLIP models), 'quick_gelu' "
        "(x * sigmoid(1.702 x): OpenAI's original CLIP weights), 'gelu_tanh'.",
    )
    layer_scale_init: float | None = Field(
        None, gt=0, description="LayerScale initial value (CaiT/DINOv2 style); None: no layer scale."
    )
    attention_backend: AttentionBackend = Field(
        "auto",
        description="Packed attention kernel: 'auto' (flash varlen on CUDA with fp16/bf16, else batched SDPA per "
        "run of equal lengths), 'sdpa', 'sdpa_per_segment', 'torch_varlen', 'flash_attn'.",
    )
    grad_checkpointing: bool = Field(
        False, description="Recompute each block in the backward pass instead of storing its activations."
    )
    autocast: bool = Field(
        False,
        description="Run the blocks under bf16 autocast on CUDA (ignored on CPU); outputs keep the input dtype.",
    )
    freeze: Literal["tuned", "frozen", "last_k"] = Field(
        "tuned",
        description="'tuned': everything trains; 'frozen': no gradients and always eval mode (no dropout or "
        "drop-path); 'last_k': only the last `tuned_blocks` blocks and the final norm train.",
    )
    tuned_blocks: int = Field(0, ge=0, description="With freeze='last_k': how many of the last blocks train.")
    pretrained: str | None = Field(
        None,
        description="Checkpoint loaded when the encoder is built: a local file (.safetensors, or .pth/.pt with "
        "weights_only=True) of a timm ViT, Meta-Transformer encoder or OpenCLIP visual tower, or a timm Hub id "
        "'hf-hub:org/name[@revision]' (its model.safetensors from the Hugging Face cache; nothing is downloaded: "
        "fetch it once with `hf download org/name model.safetensors`).",
    )
    pretrained_strict: bool = Field(
        True,
        description="Fail if the checkpoint lacks an encoder weight (else keep it initialised and warn).",
    )

    @model_validator(mode="after")
    def _check(self) -> TransformerEncoderConfig:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.freeze == "last_k" and self.tuned_blocks > self.depth:
            raise ValueError(f"tuned_blocks {self.tuned_blocks} exceeds depth {self.depth}")
        if self.freeze != "last_k" and self.tuned_blocks:
            raise ValueError(f"tuned_blocks applies to freeze='last_k' only, got freeze={self.freeze!r}")
        return self


class PackedBlock(Block):
    """timm's ViT ``Block`` (same modules, so the same state-dict names) whose ``forward`` also runs packed.

    ``block(x, layout, backend)`` runs the block over a packed stream ``[T, D]``
    (:func:`~polymodal.core.encoders.blocks.packed_block_forward`: attention within each sequence of ``layout``,
    stochastic depth per sequence); ``block(x)`` with ``x`` ``[B, N, D]`` is timm's own ``forward``. The encoder
    calls each block through ``__call__``, so hooks on the block fire: FSDP and ``fully_shard`` units of one block
    gather its parameters there (:func:`polymodal.train.component_wrap_policy`), and activation checkpointing can
    wrap it.
    """

    def forward(
        self,
        x: Tensor,
        layout: PackedLayout | None = None,
        backend: AttentionBackend = "auto",
        *,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Tensor:
        if layout is None:
            return super().forward(x, attn_mask=attn_mask, is_causal=is_causal)
        if attn_mask is not None or is_causal:
            raise ValueError(
                "PackedBlock: a packed stream takes its attention pattern from its layout; expected no attn_mask "
                f"or is_causal with a layout, got attn_mask={'a tensor' if attn_mask is not None else None}, "
                f"is_causal={is_causal}"
            )
        return packed_block_forward(self, x, layout, backend)


class TransformerEncoder(Encoder):
    """Shared transformer encoder built from timm ViT blocks, run packed over all inputs of a step.

    Parameter names follow timm's ``VisionTransformer`` (``norm_pre``, ``blocks.{i}.…``, ``norm``), so a timm
    state dict's block keys map 1:1. The blocks are :class:`PackedBlock` (timm's ``Block``, called with the packed
    layout), one FSDP unit each under :func:`polymodal.train.component_wrap_policy`.
    """

    name: ClassVar[str] = "vit"
    config_class: ClassVar[type[TransformerEncoderConfig]] = TransformerEncoderConfig

    def __init__(self, config: TransformerEncoderConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        norm_layer = partial(LayerNorm, eps=c.norm_eps)
        dpr = torch.linspace(0, c.drop_path_rate, c.depth).tolist()
        self.norm_pre = norm_layer(c.embed_dim) if c.pre_norm else nn.Identity()
        self.blocks = nn.ModuleList(
            PackedBlock(
                c.embed_dim,
                c.num_heads,
                mlp_ratio=c.mlp_ratio,
                qkv_bias=c.qkv_bias,
                proj_drop=c.proj_drop_rate,
                attn_drop=c.attn_drop_rate,
                init_values=c.layer_scale_init,
                drop_path=dpr[i],
                act_layer=get_act_layer(c.act_layer),
                norm_layer=norm_layer,
            )
            for i in range(c.depth)
        )
        self.norm = norm_layer(c.embed_dim) if c.final_norm else nn.Identity()
        self.apply(init_weights_vit_timm)
        self._train_requested = True
        self.set_freeze(c.freeze, c.tuned_blocks)
        if c.pretrained is not None:
            self.load_pretrained(c.pretrained, strict=c.pretrained_strict)

    # -- forward ------------------------------------------------------------------------------------------------
    def encode_packed(self, x: Tensor, layout: PackedLayout) -> Tensor:
        """Run the blocks over a packed stream ``[T, D]`` (see :func:`polymodal.core.encoders.packing.pack`), under
        bf16 autocast on CUDA when ``autocast`` is set."""
        amp = self.config.autocast and x.device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext():
            backend = self.config.attention_backend
            x = self.norm_pre(x)
            recompute = self.config.grad_checkpointing and torch.is_grad_enabled()
            for block in self.blocks:  # through __call__: a block's hooks (an FSDP unit's) fire
                if recompute:
                    x = checkpoint(block, x, layout, backend, use_reentrant=False)
                else:
                    x = block(x, layout, backend)
            return self.norm(x)

    @classmethod
    def example_config(cls) -> dict[str, Any]:
        return {"depth": 2}

    # -- freezing -----------------------------------------------------------------------------------------------
    def frozen_modules(self) -> list[nn.Module]:
        """The submodules the freeze policy holds fixed (no grad, eval mode)."""
        c = self.config
        if c.freeze == "tuned":
            return []
        if c.freeze == "frozen":
            return [self]
        return [self.norm_pre, *self.blocks[: c.depth - c.tuned_blocks]]

    def set_freeze(self, freeze: Literal["tuned", "frozen", "last_k"], tuned_blocks: int = 0) -> None:
        """Change the freeze policy (e.g. linear probing, then fine-tuning); updates ``config`` too."""
        data = {**self.config.model_dump(), "freeze": freeze, "tuned_blocks": tuned_blocks}
        self.config = type(self.config).model_validate(data)
        self.requires_grad_(True)
        for m in self.frozen_modules():
            m.requires_grad_(False)
        self.train(self._train_requested)

    def train(self, mode: bool = True) -> TransformerEncoder:
        """Set train/eval mode; frozen parts stay in eval mode (dropout and drop-path off) whatever ``mode``."""
        self._train_requested = mode
        super().train(mode)
        for m in self.frozen_modules():
            nn.Module.train(m, False)  # the base method: not this override, so no recursion for `self`
        return self

    # -- optimiser support --------------------------------------------------------------------------------------
    @property
    def num_lr_layers(self) -> int:
        """Layers for layer-wise lr decay: 0 = below the blocks, ``i + 1`` = block ``i``, ``depth + 1`` = top."""
        return self.config.depth + 2

    def layer_ids(self, prefix: str = "") -> dict[str, int]:
        """``{prefix + parameter name: layer id}`` as in timm/BEiT: ``norm_pre`` 0, ``blocks.{i}`` ``i + 1``,
        the final ``norm`` ``depth + 1``."""
        top = self.config.depth + 1
        ids = {}
        for name, _ in self.named_parameters():
            if name.startswith("blocks."):
                ids[prefix + name] = int(name.split(".", 2)[1]) + 1
            elif name.startswith("norm_pre."):
                ids[prefix + name] = 0
            else:
                ids[prefix + name] = top
        return ids

    def layer_lr_scales(self, decay: float, prefix: str = "") -> dict[str, float]:
        """``{prefix + parameter name: lr multiplier}`` for layer-wise lr decay: ``decay ** (depth + 1 - id)``.

        Block ``i`` gets ``decay ** (depth - i)``, the final norm 1. Parameters below the encoder (tokenizers,
        [CLS], modality embeddings) belong to layer 0, ``decay ** (depth + 1)``; heads to the top, 1. Frozen
        parameters are listed too; an optimiser skips those without ``requires_grad``.
        """
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"{self.name}: layer decay must be in (0, 1], got {decay}")
        top = self.config.depth + 1
        return {name: decay ** (top - i) for name, i in self.layer_ids(prefix).items()}

    # -- pretrained weights -------------------------------------------------------------------------------------
    def load_pretrained(self, path: str | Path, strict: bool | None = None) -> LoadReport:
        """Load a timm / Meta-Transformer / OpenCLIP checkpoint into the blocks (and norms): a local file, or a timm
        Hub id ``hf-hub:org/name[@revision]`` (:func:`~polymodal.core.encoders.pretrained.resolve_checkpoint`).

        Everything is validated before anything is copied: unexpected keys (a pre-norm or final norm in the file
        that this encoder was built without among them), shape mismatches and (with ``strict``, default
        ``config.pretrained_strict``) missing keys raise one
        :class:`~polymodal.core.encoders.pretrained.PretrainedLoadError` naming them, and nothing is loaded. A
        Meta-Transformer or OpenCLIP file sets ``norm_eps`` to 1e-5, what its weights were trained with. Returns the
        report (loaded, ignored, missing keys, settings changed).
        """
        from polymodal.core.encoders.pretrained import load_encoder_weights

        return load_encoder_weights(
            self, path, strict=self.config.pretrained_strict if strict is None else strict
        )

    def set_norm_eps(self, eps: float) -> None:
        """Set the epsilon of every LayerNorm (``norm_pre``, the blocks' ``norm1``/``norm2``, ``norm``) and
        ``config.norm_eps``; loading a file whose layout fixes it does this."""
        self.config.norm_eps = eps  # validated (> 0)
        for m in self.modules():
            if isinstance(m, nn.LayerNorm):
                m.eps = float(eps)


def _preset(name: str, embed_dim: int, depth: int, num_heads: int) -> type[TransformerEncoder]:
    config_class = type(
        f"{name.title().replace('_', '')}Config",
        (TransformerEncoderConfig,),
        {
            "__annotations__": {"type": str, "embed_dim": int, "depth": int, "num_heads": int},
            "type": name,
            "embed_dim": Field(
                embed_dim, gt=0, description="Token width D (every tokenizer and head uses it)."
            ),
            "depth": Field(depth, gt=0, description="Number of transformer blocks."),
            "num_heads": Field(
                num_heads, gt=0, description="Attention heads per block; must divide embed_dim."
            ),
            "__doc__": f"{name}: {depth} blocks of width {embed_dim} with {num_heads} heads (timm's sizes).",
            "__module__": __name__,
        },
    )
    return type(
        f"{name.title().replace('_', '')}Encoder",
        (TransformerEncoder,),
        {"name": name, "config_class": config_class, "__doc__": config_class.__doc__, "__module__": __name__},
    )


# Registered sizes, matching timm's vit_{tiny,small,base,large}_patch16 widths, depths and heads.
VitTinyEncoder = _preset("vit_tiny", 192, 12, 3)
VitSmallEncoder = _preset("vit_small", 384, 12, 6)
VitBaseEncoder = _preset("vit_base", 768, 12, 12)
VitLargeEncoder = _preset("vit_large", 1024, 24, 16)

ENCODER_CLASSES = (TransformerEncoder, VitTinyEncoder, VitSmallEncoder, VitBaseEncoder, VitLargeEncoder)
