"""The token container every tokenizer produces and the shared encoder consumes.

Shapes: ``embeddings`` ``[B, N, D]`` (float), ``mask`` ``[B, N]`` (bool, ``True`` marks a real token; padding is
``False``). ``modality`` names the input the tokens came from. ``meta`` carries what a head may need from the
tokenizer (for example RevIN statistics for forecasting, or the number of nodes of each graph). ``prefix`` counts
the tokens the model put in front of the tokenizer's own (1 for a [CLS] token), so heads can tell them apart.
``rows_per_sample`` says how many consecutive rows make one sample (1 for most tokenizers; ``C`` for a tokenizer that
makes one sequence per channel, rows ``b·C .. b·C + C - 1`` being sample ``b``): heads about whole samples pool
those rows into one (:func:`polymodal.core.heads.pool_tokens`), so they give one output row per sample.
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
        rows_per_sample: consecutive rows that make one sample (``B`` must be a multiple of it); ``num_samples``
            is ``B // rows_per_sample``.
    """

    embeddings: Tensor
    mask: Tensor
    modality: str
    meta: dict[str, Any] = field(default_factory=dict)
    prefix: int = 0
    rows_per_sample: int = 1

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
        r = self.rows_per_sample
        if isinstance(r, bool) or not isinstance(r, int) or r < 1 or e.shape[0] % r:
            raise ValueError(
                f"{self.modality}: Tokens.rows_per_sample must be a positive integer dividing the {e.shape[0]} rows, "
                f"got {r!r}"
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
    def num_samples(self) -> int:
        """Samples in the batch: ``batch_size // rows_per_sample``."""
        return self.embeddings.shape[0] // self.rows_per_sample

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
