"""Farthest point sampling, k-nearest-neighbour grouping and normalisation of point clouds, batched over clouds.

The grouping of Point-BERT (Yu et al., arXiv 2111.14819) and Point-MAE (Pang et al., arXiv 2203.06604) that the
point-cloud tokenizer is built on: :func:`farthest_point_sample` picks ``G`` centres of ``[B, P, 3]`` clouds
(``[B, G]`` indices), :func:`knn_indices` finds each centre's ``k`` nearest points (``[B, G, k]``),
:func:`group_points` gathers them relative to their centre (``[B, G, k, 3 + C]``). Padded points (``mask``
``False``) are never picked nor anyone's neighbour. :func:`normalize_cloud` centres one cloud ``[P, 3]`` and
scales it into the unit sphere.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["farthest_point_sample", "group_points", "knn_indices", "normalize_cloud"]


# -- building blocks: sampling and grouping ---------------------------------------------------------------------
def _torch_cluster_fps(points: Tensor, start: Tensor, num_samples: int) -> Tensor | None:
    """``[B, G]`` FPS indices from ``torch_cluster`` (same start point), or ``None`` when it is unavailable."""
    try:
        from torch_cluster import fps
    except ImportError:
        return None
    b, p, _ = points.shape
    # torch_cluster starts at each cloud's first point (random_start=False): swap our start point to the front.
    perm = torch.arange(p, device=points.device).expand(b, p).clone()
    rows = torch.arange(b, device=points.device)
    perm[rows, 0], perm[rows, start] = start, 0
    swapped = torch.gather(points, 1, perm[..., None].expand(-1, -1, points.shape[-1]))
    batch = torch.arange(b, device=points.device).repeat_interleave(p)
    flat = fps(swapped.reshape(b * p, -1), batch, ratio=(num_samples - 0.5) / p, random_start=False)
    if flat.numel() != b * num_samples:
        return None
    local = flat.view(b, num_samples) - rows[:, None] * p
    return torch.gather(perm, 1, local)


def farthest_point_sample(
    points: Tensor, num_samples: int, mask: Tensor | None = None, *, use_torch_cluster: bool = False
) -> tuple[Tensor, Tensor]:
    """Farthest point sampling, batched over clouds.

    Args:
        points: ``[B, P, 3]`` coordinates.
        num_samples: ``G``, centres per cloud.
        mask: ``[B, P]`` bool, ``True`` for real points (padded points are never picked).
        use_torch_cluster: use ``torch_cluster.fps`` when importable and no cloud is padded.

    Returns:
        ``(indices [B, G] long, valid [B, G] bool)``. The first centre is the real point farthest from the
        centroid of the real points; each next one maximises the squared distance to the centres picked so far
        (ties go to the lower index). A cloud with ``n < G`` points has ``n`` valid centres; the rest repeat a
        picked point and are marked invalid.
    """
    b, p, _ = points.shape
    if mask is None:
        mask = torch.ones(b, p, dtype=torch.bool, device=points.device)
    counts = mask.sum(1)
    weights = mask.unsqueeze(-1).to(points.dtype)
    centroid = (points * weights).sum(1) / counts.clamp_min(1).unsqueeze(-1).to(points.dtype)
    farthest = _squared_distances(points.permute(2, 0, 1), centroid).masked_fill(~mask, -1.0).argmax(1)
    valid = torch.arange(num_samples, device=points.device).unsqueeze(0) < counts.unsqueeze(1)
    if use_torch_cluster and bool(mask.all()) and p >= num_samples:
        idx = _torch_cluster_fps(points, farthest, num_samples)
        if idx is not None:
            return idx, valid
    planar = points.permute(2, 0, 1).contiguous()  # [3, B, P]: 3 fused planes beat a sum over a last dim of 3
    rows = torch.arange(b, device=points.device)
    # padded points sit at -1 so that argmax never reaches them, even once every real point is picked (0)
    dist = torch.full((b, p), float("inf"), dtype=points.dtype, device=points.device).masked_fill(~mask, -1.0)
    idx = torch.empty(b, num_samples, dtype=torch.long, device=points.device)
    for i in range(num_samples):  # the loop over centres is inherent to FPS; each step is batched
        idx[:, i] = farthest
        torch.minimum(dist, _squared_distances(planar, points[rows, farthest]), out=dist)
        farthest = dist.argmax(1)
    return idx, valid


def _squared_distances(planar: Tensor, center: Tensor) -> Tensor:
    """``[B, P]`` squared distances of points ``[3, B, P]`` to one point per cloud ``[B, 3]``, summed as
    ``(dx² + dy²) + dz²``."""
    dx, dy, dz = (planar[j] - center[:, j : j + 1] for j in range(3))
    return dx * dx + dy * dy + dz * dz


def knn_indices(
    points: Tensor, centers: Tensor, k: int, mask: Tensor | None = None, *, chunk_elements: int = 1 << 24
) -> Tensor:
    """``[B, G, k]`` indices of the ``k`` nearest real points of each centre, nearest first.

    Distances are ``torch.cdist`` (exact, no matmul shortcut) and ``topk``, in chunks of centres so that at most
    ``chunk_elements`` distances exist at once. Where a cloud has fewer than ``k`` real points, the missing
    neighbours repeat the nearest one (which leaves a max-pool unchanged).
    """
    b, p, _ = points.shape
    g = centers.shape[1]
    kk = min(k, p)
    step = max(1, chunk_elements // max(1, b * p))
    found, dists = [], []
    for s in range(0, g, step):
        d = torch.cdist(centers[:, s : s + step], points, compute_mode="donot_use_mm_for_euclid_dist")
        if mask is not None:
            d = d.masked_fill(~mask.unsqueeze(1), float("inf"))
        top = d.topk(kk, dim=-1, largest=False, sorted=True)
        found.append(top.indices)
        dists.append(top.values)
    idx, dist = torch.cat(found, 1), torch.cat(dists, 1)
    idx = torch.where(torch.isinf(dist), idx[..., :1], idx)
    if kk < k:
        idx = torch.cat([idx, idx[..., :1].expand(-1, -1, k - kk)], dim=-1)
    return idx


def _gather(x: Tensor, idx: Tensor) -> Tensor:
    """``x [B, P, C]`` at ``idx [B, ...]`` -> ``[B, ..., C]``."""
    b = x.shape[0]
    flat = idx.reshape(b, -1)
    out = torch.gather(x, 1, flat.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    return out.view(*idx.shape, x.shape[-1])


def group_points(
    points: Tensor,
    features: Tensor | None,
    mask: Tensor | None,
    num_groups: int,
    group_size: int,
    *,
    chunk_elements: int = 1 << 24,
    use_torch_cluster: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """FPS + kNN grouping.

    Returns ``(centers [B, G, 3], valid [B, G] bool, groups [B, G, k, 3 + C])``: each group's neighbours in
    coordinates relative to its centre, followed by their features.
    """
    idx, valid = farthest_point_sample(points, num_groups, mask, use_torch_cluster=use_torch_cluster)
    centers = _gather(points, idx)
    nbrs = knn_indices(points, centers, group_size, mask, chunk_elements=chunk_elements)
    groups = _gather(points, nbrs) - centers.unsqueeze(2)
    if features is not None:
        groups = torch.cat([groups, _gather(features, nbrs)], dim=-1)
    return centers, valid, groups


def normalize_cloud(points: Tensor) -> Tensor:
    """Centre ``[P, 3]`` coordinates at their centroid and scale them into the unit sphere."""
    centred = points - points.mean(0, keepdim=True)
    radius = centred.norm(dim=-1).max().clamp_min(1e-12)
    return centred / radius
