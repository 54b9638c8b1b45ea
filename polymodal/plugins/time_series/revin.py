"""Reversible instance normalisation (RevIN, Kim et al., ICLR 2022, https://openreview.net/forum?id=cGDAkQo1C0p)
over variable-length series, as PatchTST (Nie et al., arXiv 2211.14730) uses it, and what a forecasting head needs
to undo it.

Shapes: series ``[B, C, L]`` with real lengths ``[B]`` -> normalised ``[B, C, L]`` (padding left as it is) and
statistics ``mean``, ``std`` ``[B, C]``; ``x̂ = (x - μ) / sqrt(σ² + eps)`` per series and channel, over the real
steps only (``· w_c + b_c`` with the learnable affine).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from polymodal.plugins._sequence import mask_beyond

__all__ = ["RevinStats", "SeriesMeta", "revin_normalize"]


@dataclass
class RevinStats:
    """Per-instance, per-channel statistics of RevIN: ``mean``, ``std`` ``[B, C]``; ``weight``, ``bias`` ``[C]``
    (the learnable affine, or ``None``); ``eps``."""

    mean: Tensor
    std: Tensor
    weight: Tensor | None
    bias: Tensor | None
    eps: float

    def normalize(self, x: Tensor) -> Tensor:
        """``x [B, C, ...]`` -> ``(x - mean) / std`` (``· weight + bias`` with the affine)."""
        shape = (*self.mean.shape, *([1] * (x.dim() - 2)))
        y = (x - self.mean.view(shape)) / self.std.view(shape)
        if self.weight is not None:
            c = (1, -1, *([1] * (x.dim() - 2)))
            y = y * self.weight.view(c) + self.bias.view(c)
        return y

    def denormalize(self, y: Tensor) -> Tensor:
        """Inverse of :meth:`normalize` for ``y [B, C, ...]`` (as PatchTST: ``/(weight + eps²)``)."""
        shape = (*self.mean.shape, *([1] * (y.dim() - 2)))
        if self.weight is not None:
            c = (1, -1, *([1] * (y.dim() - 2)))
            y = (y - self.bias.view(c)) / (self.weight.view(c) + self.eps * self.eps)
        return y * self.std.view(shape) + self.mean.view(shape)


def revin_normalize(
    x: Tensor, lengths: Tensor, eps: float = 1e-5, weight: Tensor | None = None, bias: Tensor | None = None
) -> tuple[Tensor, RevinStats]:
    """RevIN of ``x [B, C, L]`` over each sequence's real steps (``lengths [B]``): returns the normalised series
    (padding left as it is) and the statistics. ``std = sqrt(biased variance + eps)``."""
    real = mask_beyond(torch.ones_like(x[:, :1]), lengths)  # [B, 1, L], 1 at real steps
    count = lengths.to(x.dtype).view(-1, 1)
    mean = (x * real).sum(-1) / count
    var = (((x - mean.unsqueeze(-1)) * real) ** 2).sum(-1) / count
    stats = RevinStats(mean, torch.sqrt(var + eps), weight, bias, eps)
    return stats.normalize(x), stats


@dataclass
class SeriesMeta:
    """What a head needs to fold channel-independent rows back to ``[B, C, ...]`` and undo RevIN."""

    batch_size: int
    channels: int
    channel_mode: str
    revin: RevinStats | None

    def denormalize(self, y: Tensor) -> Tensor:
        """``y [B, C, ...]`` in normalised units -> the input's units (identity without RevIN)."""
        return y if self.revin is None else self.revin.denormalize(y)
