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

Files (``.ply``, ``.xyz``, ``.pts``, ``.txt``, ``.npy``, and meshes ``.obj``/``.off``/``.stl`` sampled on their
surface): :func:`read_points` gives ``(P, 3 + C)`` float32, what ``preprocess`` takes.

Data source ``shape_clouds``: synthetic, ModelNet-like. Points sampled uniformly on the surfaces of seven
primitives (sphere, cube, cylinder, cone, torus, pyramid, octahedron) with a random rotation, anisotropic scale
and Gaussian jitter, and a random point count per cloud. A model can learn it because the classes differ in
surface geometry (curvature, flat faces, edges, holes) that survives rotation and mild stretching.

Modules: :mod:`.grouping` (FPS, kNN, grouping), :mod:`.tokenizer`, :mod:`.files` (readers), :mod:`.data`.
"""

from __future__ import annotations

from polymodal.plugins.point_cloud.data import (
    SHAPE_CLASSES,
    ShapeCloudsDataSource,
    ShapeCloudsDataSourceConfig,
)
from polymodal.plugins.point_cloud.files import read_ply, read_points, sample_surface
from polymodal.plugins.point_cloud.grouping import (
    farthest_point_sample,
    group_points,
    knn_indices,
    normalize_cloud,
)
from polymodal.plugins.point_cloud.tokenizer import (
    MiniPointNet,
    PointCloudTokenizer,
    PointCloudTokenizerConfig,
)
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
    "polymodal_components",
    "read_ply",
    "read_points",
    "sample_surface",
]


@hookimpl
def polymodal_components() -> list[type]:
    return [PointCloudTokenizer, ShapeCloudsDataSource]
