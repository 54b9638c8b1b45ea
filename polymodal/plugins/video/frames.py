"""Frames of a clip: uniform temporal sampling (the middle frame of each of ``num`` equal segments, as VideoMAE's
and ViViT's evaluation sampling, arXiv 2203.12602 / 2103.15691) and the clip preprocessing shared by the video
tokenizer, the file reader and the ``moving_shapes`` data source.

Shapes: a clip ``[T, H, W, C]`` (uint8, or float in [0, 1]) -> ``[num_frames, C, H', W']`` normalised float.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["preprocess_clip", "uniform_frame_indices"]


def uniform_frame_indices(total: int, num: int) -> Tensor:
    """Indices of ``num`` frames sampled uniformly from ``total``: the middle frame of each of ``num`` equal
    segments, ``floor((i + 0.5) · total / num)``. Fewer frames than ``num`` repeat frames."""
    return (
        ((torch.arange(num, dtype=torch.float64) + 0.5) * (total / num)).floor().long().clamp_max(total - 1)
    )


def preprocess_clip(
    clip: Tensor,
    num_frames: int,
    mean: Sequence[float],
    std: Sequence[float],
    resize: int | None = None,
) -> Tensor:
    """One clip ``[T, H, W, C]`` (uint8, or float in [0, 1]) -> normalised float ``[num_frames, C, H', W']``:
    uniform temporal sampling, ``/255`` for uint8, optional square resize (bilinear, antialiased), then
    ``(x - mean) / std`` per channel."""
    x = clip[uniform_frame_indices(clip.shape[0], num_frames)]
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    x = x.permute(0, 3, 1, 2)  # [T, C, H, W]
    if resize is not None:
        x = F.interpolate(x, size=(resize, resize), mode="bilinear", antialias=True)
    mean_t = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean_t) / std_t
