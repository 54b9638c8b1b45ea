"""Point-cloud plugin: FPS + kNN grouping + mini-PointNet tokens, as Point-BERT (Yu et al., arXiv 2111.14819),
Point-MAE (Pang et al., arXiv 2203.06604) and Meta-Transformer (arXiv 2307.10802).

Input: ``[B, P, 3]`` coordinates (or ``[B, P, 3 + C]``: coordinates then ``C = in_features`` per-point
features), a dict ``{"points": [B, P, 3], "features": [B, P, C], "mask": [B, P] bool}``, or a list of clouds
``[P_i, 3 + C]`` with different point counts (collated with padding and a point mask; padded points are never
sampled nor anyone's neighbour).
Tokens: ``[B, G, D]``, ``G = num_groups`` (64). Farthest point sampling picks ``G`` centres, starting at the
point farthest from the centroid, so the centres do not depend on point order; each centre groups its
``k = group_size`` (32) nearest neighbours, in coordinates relative to the centre; a mini-PointNet (shared MLP ->
max-pool -> shared MLP on [local, global] -> max-pool) turns each group into a token; an MLP of the centre
coordinates is the positional embedding. A cloud with fewer than ``G`` points gives as many real tokens as it
has points (mask ``False`` after). ``grouping="two_stage"`` is Meta-Transformer's progressive grouping: FPS to
``stage1_groups`` centres with PointNet features, then FPS + kNN over those centres to ``G`` tokens.
``meta["centers"]`` holds the ``[B, G, 3]`` centre coordinates.

Data source ``shape_clouds``: synthetic, ModelNet-like. Points sampled uniformly on the surfaces of seven
primitives (sphere, cube, cylinder, cone, torus, pyramid, octahedron) with a random rotation, anisotropic scale
and Gaussian jitter, and a random point count per cloud. A model can learn it because the classes differ in
surface geometry (curvature, flat faces, edges, holes) that survives rotation and mild stretching.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor, nn
from torch.utils.data import Dataset

from polymodal.core.source import DataSource, DataSourceConfig
from polymodal.core.tokenizer import Tokenizer, TokenizerConfig, check_tensor, describe
from polymodal.core.tokens import Tokens
from polymodal.registry.hookspecs import hookimpl

__all__ = [
    "SHAPE_CLASSES",
    "MiniPointNet",
    "PointCloudTokenizer",
    "PointCloudTokenizerConfig",
    "ShapeCloudsDataSource",
    "ShapeCloudsDataSourceConfig",
    "farthest_point_sample",
    "group_points",
    "knn_indices",
    "normalize_cloud",
]


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


class MiniPointNet(nn.Module):
    """Point-BERT's group encoder: shared MLP -> max-pool -> shared MLP on [point, group max] -> max-pool.

    ``[..., k, C_in]`` -> ``[..., C_out]``. LayerNorm replaces Point-BERT's BatchNorm so that a cloud's tokens
    never depend on the other clouds of the batch or on padding.
    """

    def __init__(self, in_dim: int, hidden: int, mid: int, out_dim: int) -> None:
        super().__init__()
        self.first = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, mid)
        )
        self.second = nn.Sequential(
            nn.Linear(2 * mid, 2 * mid), nn.LayerNorm(2 * mid), nn.ReLU(), nn.Linear(2 * mid, out_dim)
        )

    def forward(self, groups: Tensor) -> Tensor:
        f = self.first(groups)  # [..., k, mid]
        pooled = f.amax(dim=-2, keepdim=True).expand_as(f)
        return self.second(torch.cat([pooled, f], dim=-1)).amax(dim=-2)


def normalize_cloud(points: Tensor) -> Tensor:
    """Centre ``[P, 3]`` coordinates at their centroid and scale them into the unit sphere."""
    centred = points - points.mean(0, keepdim=True)
    radius = centred.norm(dim=-1).max().clamp_min(1e-12)
    return centred / radius


# -- tokenizer ---------------------------------------------------------------------------------------------------
class PointCloudTokenizerConfig(TokenizerConfig):
    type: str = "point_cloud"
    num_groups: int = Field(64, gt=0, description="G: centres picked by farthest point sampling = tokens.")
    group_size: int = Field(32, gt=0, description="k: nearest neighbours grouped around each centre.")
    in_features: int = Field(0, ge=0, description="C: per-point features after the 3 coordinates.")
    hidden_dim: int = Field(128, gt=0, description="Width of the mini-PointNet's first hidden layer.")
    mid_dim: int = Field(256, gt=0, description="Width of the per-point features max-pooled in between.")
    pos_hidden_dim: int = Field(128, gt=0, description="Hidden width of the centre-coordinate MLP.")
    grouping: Literal["single", "two_stage"] = Field(
        "single",
        description="'single': FPS + kNN on the points (Point-BERT); 'two_stage': Meta-Transformer's "
        "progressive grouping, first to stage1_groups centres, then over those to num_groups tokens.",
    )
    stage1_groups: int = Field(256, gt=0, description="two_stage: centres of the first stage.")
    stage1_group_size: int = Field(16, gt=0, description="two_stage: neighbours per first-stage centre.")
    stage1_dim: int = Field(128, gt=0, description="two_stage: feature width of the first-stage groups.")
    normalize: bool = Field(
        True, description="preprocess centres each cloud and scales it into the unit sphere."
    )
    knn_chunk_elements: int = Field(
        1 << 24, gt=0, description="Most centre-to-point distances held at once by kNN (chunks over centres)."
    )
    use_torch_cluster: bool = Field(
        True, description="Use torch_cluster.fps when it is installed and no cloud is padded (optional)."
    )

    @model_validator(mode="after")
    def _check(self) -> PointCloudTokenizerConfig:
        if self.grouping == "two_stage" and self.stage1_groups < self.num_groups:
            raise ValueError(
                f"point_cloud: stage1_groups ({self.stage1_groups}) must be at least num_groups "
                f"({self.num_groups}) with grouping='two_stage'"
            )
        return self


class PointCloudTokenizer(Tokenizer):
    """FPS + kNN groups -> mini-PointNet tokens + an MLP positional embedding of the centres."""

    name: ClassVar[str] = "point_cloud"
    config_class: ClassVar[type[PointCloudTokenizerConfig]] = PointCloudTokenizerConfig
    input_form: ClassVar[str] = "points `[B, P, 3 + C]`"

    def __init__(self, config: PointCloudTokenizerConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        if c.grouping == "two_stage":
            self.stage1 = MiniPointNet(3 + c.in_features, c.hidden_dim // 2, c.mid_dim // 2, c.stage1_dim)
            group_in = 3 + c.stage1_dim
        else:
            group_in = 3 + c.in_features
        self.encoder = MiniPointNet(group_in, c.hidden_dim, c.mid_dim, c.embed_dim)
        self.pos_embed = nn.Sequential(
            nn.Linear(3, c.pos_hidden_dim), nn.GELU(), nn.Linear(c.pos_hidden_dim, c.embed_dim)
        )

    # -- input handling ------------------------------------------------------------------------------------
    @property
    def _width(self) -> int:
        return 3 + self.config.in_features

    def validate(self, batch: Any) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Check a batch; return ``(points [B, P, 3], features [B, P, C] | None, mask [B, P] | None)``."""
        c = self.config
        if isinstance(batch, (list, tuple)):
            batch = self.collate(batch)
        if isinstance(batch, dict):
            unknown = sorted(set(batch) - {"points", "features", "mask"})
            if "points" not in batch or unknown:
                raise self.fail(
                    "a dict with 'points' and optional 'features' and 'mask'", f"keys {sorted(batch)}"
                )
            points = check_tensor(batch["points"], self.modality, "(B, P, 3)", 3)
            if points.shape[-1] != 3:
                raise self.fail("points (B, P, 3)", describe(points))
            features = batch.get("features")
            mask = batch.get("mask")
        else:
            x = check_tensor(
                batch, self.modality, f"(B, P, {self._width}) (3 coordinates + {c.in_features} features)", 3
            )
            if x.shape[-1] != self._width:
                raise self.fail(
                    f"(B, P, {self._width}) (3 coordinates + {c.in_features} features)", describe(x)
                )
            points, features, mask = x[..., :3], (x[..., 3:] if c.in_features else None), None
        b, p = points.shape[:2]
        if p == 0:
            raise self.fail("at least one point per cloud", describe(points))
        if c.in_features:
            if features is None:
                raise self.fail(f"per-point features (B, P, {c.in_features}) (in_features)", "none")
            features = check_tensor(features, self.modality, f"features (B, P, {c.in_features})", 3)
            if tuple(features.shape) != (b, p, c.in_features):
                raise self.fail(f"features ({b}, {p}, {c.in_features})", describe(features))
        elif features is not None:
            raise self.fail("no per-point features (in_features is 0)", describe(features))
        if mask is not None:
            if not isinstance(mask, Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != (b, p):
                raise self.fail(f"a bool point mask ({b}, {p})", describe(mask))
            if not bool(mask.any(1).all()):
                raise self.fail("at least one real point per cloud", "a cloud whose mask is all False")
        return points, features, mask

    # -- forward -------------------------------------------------------------------------------------------
    def forward(self, batch: Any) -> Tokens:
        points, features, mask = self.validate(batch)
        c = self.config
        dtype = self.pos_embed[0].weight.dtype
        points = points.to(dtype)
        features = features.to(dtype) if features is not None else None
        kw = {"chunk_elements": c.knn_chunk_elements, "use_torch_cluster": c.use_torch_cluster}
        if c.grouping == "two_stage":
            centers, valid, groups = group_points(
                points, features, mask, c.stage1_groups, c.stage1_group_size, **kw
            )
            stage1 = self.stage1(groups)  # [B, S1, stage1_dim]
            centers, valid, groups = group_points(centers, stage1, valid, c.num_groups, c.group_size, **kw)
        else:
            centers, valid, groups = group_points(points, features, mask, c.num_groups, c.group_size, **kw)
        x = self.encoder(groups) + self.pos_embed(centers)
        x = x * valid.unsqueeze(-1).to(x.dtype)  # padded tokens are zeros
        return Tokens(x, valid, self.modality, {"centers": centers})

    # -- preprocessing -------------------------------------------------------------------------------------
    def preprocess(self, raw: Any) -> Tensor:
        """One cloud (``[P, 3 + C]`` array/tensor, or a dict with ``points`` and ``features``) -> float
        ``[P, 3 + C]``, coordinates centred and scaled into the unit sphere (``normalize``)."""
        c = self.config
        expected = (
            f"one cloud (P, {self._width}) or a dict with 'points' (P, 3) and 'features' (P, {c.in_features})"
        )
        if isinstance(raw, dict):
            if "points" not in raw:
                raise self.fail(expected, f"a dict with keys {sorted(raw)}")
            parts = [raw["points"], *([raw["features"]] if raw.get("features") is not None else [])]
            parts = [torch.from_numpy(np.asarray(v)) if not isinstance(v, Tensor) else v for v in parts]
            if any(v.dim() != 2 for v in parts) or len({v.shape[0] for v in parts}) != 1:
                raise self.fail(expected, ", ".join(describe(v) for v in parts))
            raw = torch.cat([v.double() for v in parts], dim=-1)
        if isinstance(raw, np.ndarray):
            raw = torch.from_numpy(raw)
        if not isinstance(raw, Tensor):
            raise self.fail(expected, describe(raw))
        if raw.dim() != 2 or raw.shape[-1] != self._width or raw.shape[0] == 0:
            raise self.fail(expected, describe(raw))
        if raw.dtype == torch.bool or raw.is_complex():
            raise self.fail("real-valued coordinates", describe(raw))
        x = raw.double()
        if not bool(torch.isfinite(x).all()):
            raise self.fail("finite coordinates and features", f"NaN/Inf values in {describe(raw)}")
        if c.normalize:
            x = torch.cat([normalize_cloud(x[:, :3]), x[:, 3:]], dim=-1)
        return x.float()

    def collate(self, samples: Sequence[Any]) -> dict[str, Tensor]:
        """Clouds ``[P_i, 3 + C]`` -> ``{"points": [B, P, 3], "features": [B, P, C], "mask": [B, P]}``,
        zero-padded to the largest ``P_i``."""
        if len(samples) == 0:
            raise self.fail("at least one cloud to collate", "an empty list")
        bad = [describe(s) for s in samples if not isinstance(s, Tensor) or s.dim() != 2]
        if bad or {s.shape[-1] for s in samples} != {self._width}:
            got = bad[0] if bad else f"widths {sorted({s.shape[-1] for s in samples})}"
            raise self.fail(f"clouds (P_i, {self._width})", got)
        lengths = torch.tensor([s.shape[0] for s in samples])
        x = torch.nn.utils.rnn.pad_sequence(list(samples), batch_first=True)
        mask = torch.arange(x.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
        out = {"points": x[..., :3], "mask": mask.to(x.device)}
        if self.config.in_features:
            out["features"] = x[..., 3:]
        return out

    def example_input(self, batch_size: int = 2, generator: torch.Generator | None = None) -> Tensor:
        c = self.config
        p = max(2 * c.num_groups, c.group_size, 16)
        if c.grouping == "two_stage":
            p = max(p, c.stage1_groups)
        return torch.randn(batch_size, p, self._width, generator=generator)

    def invalid_examples(self) -> list[Any]:
        w = self._width
        return [
            torch.randn(2, 64, w + 1),  # wrong width
            torch.randn(64, w),  # rank
            torch.randint(0, 5, (2, 64, w)),  # integer coordinates
            torch.full((1, 64, w), float("nan")),
            torch.zeros(0, 64, w),  # empty batch
            torch.zeros(2, 0, w),  # no points
            {"points": torch.randn(2, 8, 3), "mask": torch.zeros(2, 8, dtype=torch.bool)},  # empty cloud
            {"points": torch.randn(2, 8, 3), "mask": torch.ones(2, 7, dtype=torch.bool)},  # mask shape
            {"coords": torch.randn(2, 8, 3)},  # wrong key
            [],  # empty list of clouds
        ]


# -- data source: synthetic ModelNet-like shapes ------------------------------------------------------------------
SHAPE_CLASSES = ("sphere", "cube", "cylinder", "cone", "torus", "pyramid", "octahedron")


def _triangles(kind: str) -> Tensor:
    """``[T, 3, 3]`` triangles of the flat-faced primitives (all inside [-1, 1]^3)."""
    if kind == "cube":
        v = torch.tensor([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)])
        quads = [(0, 1, 3, 2), (4, 5, 7, 6), (0, 1, 5, 4), (2, 3, 7, 6), (0, 2, 6, 4), (1, 3, 7, 5)]
        faces = [(a, b, c) for a, b, c, d in quads] + [(a, c, d) for a, b, c, d in quads]
    elif kind == "pyramid":
        v = torch.tensor(
            [[-1.0, -1.0, -1.0], [1.0, -1.0, -1.0], [1.0, 1.0, -1.0], [-1.0, 1.0, -1.0], [0, 0, 1.0]]
        )
        faces = [(0, 1, 2), (0, 2, 3), (0, 1, 4), (1, 2, 4), (2, 3, 4), (3, 0, 4)]
    else:  # octahedron
        v = torch.tensor([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0], [0, 0, 1.0], [0, 0, -1.0]])
        faces = [(a, b, c) for a in (0, 1) for b in (2, 3) for c in (4, 5)]
    return v[torch.tensor(faces)]


def _sample_surface(kind: str, n: int, p: int, g: torch.Generator) -> Tensor:
    """``[n, p, 3]`` points uniform on the surface of a unit-size primitive."""
    u = torch.rand(n, p, 3, generator=g)
    if kind == "sphere":
        x = torch.randn(n, p, 3, generator=g)
        return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    if kind in ("cube", "pyramid", "octahedron"):
        tri = _triangles(kind)
        area = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).norm(dim=-1)
        face = torch.multinomial(area, n * p, replacement=True, generator=g).view(n, p)
        a, b, c = tri[face, 0], tri[face, 1], tri[face, 2]
        s = u[..., :1].sqrt()
        return (1 - s) * a + s * (1 - u[..., 1:2]) * b + s * u[..., 1:2] * c
    theta = 2 * math.pi * u[..., 0]
    if kind == "cylinder":  # radius 1, z in [-1, 1]: side area 4π, caps π each
        part = torch.multinomial(torch.tensor([4.0, 1.0, 1.0]), n * p, replacement=True, generator=g).view(
            n, p
        )
        r = torch.where(part == 0, torch.ones_like(theta), u[..., 1].sqrt())
        z = torch.where(part == 0, 2 * u[..., 2] - 1, torch.where(part == 1, 1.0, -1.0))
        return torch.stack([r * theta.cos(), r * theta.sin(), z], dim=-1)
    if kind == "cone":  # base radius 1 at z=-1, apex at z=1: side area π√5, base π
        side = torch.rand(n, p, generator=g) < math.sqrt(5) / (math.sqrt(5) + 1)
        t = u[..., 1].sqrt()  # distance from the apex, as a fraction of the slant
        r = torch.where(side, t, u[..., 2].sqrt())
        z = torch.where(side, 1 - 2 * t, torch.full_like(t, -1.0))
        return torch.stack([r * theta.cos(), r * theta.sin(), z], dim=-1)
    # torus, R = 1, r = 0.35: the tube angle φ has density ∝ R + r cos φ (importance resampling)
    big, small = 1.0, 0.35
    phi = 2 * math.pi * torch.rand(n, 4 * p, generator=g)
    keep = torch.multinomial(big + small * phi.cos(), p, replacement=True, generator=g)
    phi = torch.gather(phi, 1, keep)
    ring = big + small * phi.cos()
    return torch.stack([ring * theta.cos(), ring * theta.sin(), small * phi.sin()], dim=-1)


def _random_rotations(n: int, g: torch.Generator, about_z: bool = False) -> Tensor:
    """``[n, 3, 3]`` rotations, uniform on SO(3) (QR of a Gaussian matrix, sign-corrected) or about z."""
    if about_z:
        a = 2 * math.pi * torch.rand(n, generator=g)
        cos, sin, zero, one = a.cos(), a.sin(), torch.zeros(n), torch.ones(n)
        return torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], dim=-1).view(n, 3, 3)
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=g))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    det = torch.linalg.det(q)
    q[:, :, 0] *= det.sign().unsqueeze(-1)
    return q


class ShapeCloudsDataSourceConfig(DataSourceConfig):
    type: str = "shape_clouds"
    num_train: int = Field(448, gt=0, description="Training clouds (balanced over the classes).")
    num_test: int = Field(224, gt=0, description="Test clouds.")
    num_points: int = Field(512, gt=0, description="Most points per cloud.")
    min_points: int = Field(
        384, gt=0, description="Fewest points per cloud (counts are uniform in [min_points, num_points])."
    )
    rotation: Literal["z", "so3"] = Field(
        "z",
        description="'z': a random rotation about the vertical axis (shapes stay upright, as in ModelNet); "
        "'so3': a uniformly random 3-D rotation (harder).",
    )
    scale_range: float = Field(0.3, ge=0, lt=1, description="Per-axis scale uniform in [1 - s, 1 + s].")
    jitter: float = Field(0.01, ge=0, description="Std of the Gaussian noise added to every coordinate.")

    @model_validator(mode="after")
    def _check(self) -> ShapeCloudsDataSourceConfig:
        if self.min_points > self.num_points:
            raise ValueError(f"min_points ({self.min_points}) exceeds num_points ({self.num_points})")
        return self


class _Clouds(Dataset):
    def __init__(self, clouds: list[Tensor], labels: Tensor) -> None:
        self.clouds, self.labels = clouds, labels

    def __len__(self) -> int:
        return len(self.clouds)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.clouds[i], self.labels[i]


class ShapeCloudsDataSource(DataSource):
    """Synthetic ModelNet-like clouds of 7 primitives, rotated, stretched and jittered (classification)."""

    name: ClassVar[str] = "shape_clouds"
    modality: ClassVar[str] = "point_cloud"
    config_class: ClassVar[type[ShapeCloudsDataSourceConfig]] = ShapeCloudsDataSourceConfig
    num_classes: ClassVar[int] = len(SHAPE_CLASSES)

    def _make(self, n: int, seed: int) -> _Clouds:
        c = self.config
        g = torch.Generator().manual_seed(seed)
        labels = (torch.arange(n) % len(SHAPE_CLASSES))[torch.randperm(n, generator=g)]
        points = torch.empty(n, c.num_points, 3)
        for k, kind in enumerate(SHAPE_CLASSES):  # one vectorised call per class
            rows = (labels == k).nonzero().squeeze(1)
            if len(rows):
                points[rows] = _sample_surface(kind, len(rows), c.num_points, g)
        scale = 1 + c.scale_range * (2 * torch.rand(n, 1, 3, generator=g) - 1)
        points = (points * scale) @ _random_rotations(n, g, about_z=c.rotation == "z").transpose(1, 2)
        points = points + c.jitter * torch.randn(points.shape, generator=g)
        counts = torch.randint(c.min_points, c.num_points + 1, (n,), generator=g).tolist()
        clouds = [normalize_cloud(points[i, : counts[i]]) for i in range(n)]
        return _Clouds(clouds, labels)

    def splits(self) -> dict[str, Dataset]:
        c = self.config
        return {"train": self._make(c.num_train, 2 * c.seed), "test": self._make(c.num_test, 2 * c.seed + 1)}


@hookimpl
def polymodal_components() -> list[type]:
    return [PointCloudTokenizer, ShapeCloudsDataSource]
