"""Spatial neighbourhoods of hyperspectral pixels, as SpectralFormer's patch-wise input (Hong et al., arXiv
2107.02988): the ``k x k`` window around each pixel, cut from a cube in one gather with reflect padding at the
borders (on the indices: the cube is never padded or copied).

Shapes: a cube ``[C, H, W]`` and pixels ``[P, 2]`` -> ``[P, C, k, k]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["extract_neighbourhoods"]


def extract_neighbourhoods(cube: Tensor, pixels: Tensor, size: int) -> Tensor:
    """The ``size x size`` neighbourhoods around ``pixels`` of a cube, in one gather.

    Args:
        cube: ``[C, H, W]`` (any dtype; a permuted view is fine, nothing is copied but the result).
        pixels: ``[P, 2]`` integer ``(row, col)`` positions inside the cube.
        size: neighbourhood side ``k`` (odd, centred on the pixel); needs ``k // 2 < H, W``.

    Returns:
        ``[P, C, k, k]``; entry ``[i, :, a, b]`` is the cube at ``(row_i + a - k//2, col_i + b - k//2)``, with
        reflect padding at the borders (as ``F.pad(mode="reflect")``: the edge is not repeated), done on the
        indices so the cube itself is never padded.
    """
    r = size // 2
    offsets = torch.arange(-r, size - r, device=pixels.device)
    rows = _reflect(pixels[:, 0, None] + offsets, cube.shape[1])  # [P, k]
    cols = _reflect(pixels[:, 1, None] + offsets, cube.shape[2])
    return cube[:, rows[:, :, None], cols[:, None, :]].permute(1, 0, 2, 3)  # [C, P, k, k] -> [P, C, k, k]


def _reflect(i: Tensor, n: int) -> Tensor:
    """Indices reflected into ``[0, n)`` about the edges (one reflection: ``-n < i < 2n - 1``)."""
    i = i.abs()
    return torch.where(i >= n, 2 * (n - 1) - i, i)
