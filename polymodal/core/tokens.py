"""The token container every tokenizer produces and the shared encoder consumes.

Shapes: ``embeddings`` ``[B, N, D]`` (float), ``mask`` ``[B, N]`` (bool, ``True`` marks a real token; padding is
``False``). ``modality`` names the input the tokens came from. ``meta`` carries what a head may need from the
tokenizer (for example RevIN statistics for forecasting, or the number of nodes of each graph). ``prefix`` counts
the tokens the model put in front of the tokenizer's own (1 for a [CLS] token), so heads can tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

__all__ = ["Tokens"]


@dataclass
class Tokens:
    """A batch of token sequences of one modality, with a padding mask.

    Args:
        embeddings: ``[B, N, D]`` floating-point token embeddings.
        mask: ``[B, N]`` boolean; ``True`` where a token is real, ``False`` for padding.
        modality: the name of the input these tokens came from (e.g. ``"image"``).
        meta: extra per-batch values a head may need (not touched by the encoder).
        prefix: number of leading tokens added by the model (e.g. 1 for [CLS]); always real (mask ``True``).
    """

    embeddings: Tensor
    mask: Tensor
    modality: str
    meta: dict[str, Any] = field(default_factory=dict)
    prefix: int = 0

    def __post_init__(self) -> None:
        e, m = self.embeddings, self.mask
        if not isinstance(e, Tensor) or e.dim() != 3 or not e.is_floating_point():
            got = tuple(e.shape) if isinstance(e, Tensor) else type(e).__name__
            raise ValueError(
                f"{self.modality}: Tokens.embeddings must be a float tensor [B, N, D], got {got}"
            )
        if not isinstance(m, Tensor) or m.dtype != torch.bool or tuple(m.shape) != tuple(e.shape[:2]):
            got = (tuple(m.shape), m.dtype) if isinstance(m, Tensor) else type(m).__name__
            raise ValueError(
                f"{self.modality}: Tokens.mask must be a bool tensor of shape {tuple(e.shape[:2])}, got {got}"
            )

    @classmethod
    def full(cls, embeddings: Tensor, modality: str, **meta: Any) -> Tokens:
        """Tokens with every position real (no padding)."""
        mask = torch.ones(embeddings.shape[:2], dtype=torch.bool, device=embeddings.device)
        return cls(embeddings, mask, modality, dict(meta))

    @property
    def batch_size(self) -> int:
        return self.embeddings.shape[0]

    @property
    def num_tokens(self) -> int:
        return self.embeddings.shape[1]

    @property
    def dim(self) -> int:
        return self.embeddings.shape[2]

    @property
    def lengths(self) -> Tensor:
        """``[B]`` number of real tokens per sequence."""
        return self.mask.sum(dim=1)

    def replace(self, **changes: Any) -> Tokens:
        """A copy with some fields changed (shapes are checked again)."""
        return replace(self, **changes)

    def to(self, device: torch.device | str) -> Tokens:
        """The same tokens on another device (the mask stays bool)."""
        return self.replace(embeddings=self.embeddings.to(device), mask=self.mask.to(device))
