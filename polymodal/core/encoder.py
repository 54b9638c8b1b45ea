"""The shared encoder ``g``: one stack of transformer blocks that encodes every modality's tokens.

Follows ViT (arXiv 2010.11929) and Meta-Transformer (arXiv 2307.10802): pre-norm multi-head self-attention +
MLP blocks, here timm's ``Block``. Input: a list of :class:`Tokens` (one per modality of the step), each
``[B_m, N_m, D]`` with a mask; output: the same list, encoded, with the same masks. Attention never crosses
sequences, and padding never changes a sequence's result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from pydantic import Field
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from polymodal.core.component import Component, ComponentConfig
from polymodal.core.tokens import Tokens

__all__ = [
    "Encoder",
    "EncoderConfig",
    "TransformerEncoder",
    "TransformerEncoderConfig",
]


class EncoderConfig(ComponentConfig):
    """Fields every encoder has."""

    embed_dim: int = Field(768, gt=0, description="Token width D (every tokenizer and head uses it).")


class Encoder(Component, nn.Module):
    """Base class of shared encoders: ``forward(list[Tokens]) -> list[Tokens]`` (same order, same masks)."""

    kind: ClassVar[str] = "encoder"
    config_class: ClassVar[type[EncoderConfig]] = EncoderConfig

    def __init__(self, config: EncoderConfig | dict[str, Any] | None = None) -> None:
        nn.Module.__init__(self)
        self.config = self.coerce_config(config)

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    def forward(self, tokens: Sequence[Tokens]) -> list[Tokens]:  # pragma: no cover - abstract
        raise NotImplementedError


class TransformerEncoderConfig(EncoderConfig):
    """A ViT-style stack of pre-norm transformer blocks."""

    type: str = "vit"
    depth: int = Field(12, gt=0, description="Number of transformer blocks.")
    num_heads: int = Field(12, gt=0, description="Attention heads per block; must divide embed_dim.")
    mlp_ratio: float = Field(4.0, gt=0, description="Hidden width of the MLP as a multiple of embed_dim.")
    qkv_bias: bool = Field(True, description="Bias in the query/key/value projection.")
    drop_path_rate: float = Field(0.0, ge=0, lt=1, description="Stochastic depth rate, linearly increasing.")
    final_norm: bool = Field(True, description="LayerNorm after the last block.")


class TransformerEncoder(Encoder):
    """Shared transformer encoder built from timm ViT blocks."""

    name: ClassVar[str] = "vit"
    config_class: ClassVar[type[TransformerEncoderConfig]] = TransformerEncoderConfig

    def __init__(self, config: TransformerEncoderConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        if c.embed_dim % c.num_heads:
            raise ValueError(
                f"{self.name}: embed_dim {c.embed_dim} is not divisible by num_heads {c.num_heads}"
            )
        dpr = torch.linspace(0, c.drop_path_rate, c.depth).tolist()
        self.blocks = nn.ModuleList(
            Block(c.embed_dim, c.num_heads, mlp_ratio=c.mlp_ratio, qkv_bias=c.qkv_bias, drop_path=dpr[i])
            for i in range(c.depth)
        )
        self.norm = nn.LayerNorm(c.embed_dim, eps=1e-6) if c.final_norm else nn.Identity()

    def forward(self, tokens: Sequence[Tokens]) -> list[Tokens]:
        return [t.replace(embeddings=self._encode(t.embeddings, t.mask)) for t in tokens]

    def _encode(self, x: Tensor, mask: Tensor) -> Tensor:
        # Key-padding mask [B, 1, 1, N]: a query attends only to real keys of its own sequence.
        attn_mask = None if bool(mask.all()) else mask[:, None, None, :]
        for block in self.blocks:
            x = block(x, attn_mask=attn_mask)
        return self.norm(x)


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
