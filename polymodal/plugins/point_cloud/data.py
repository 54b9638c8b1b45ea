"""Data source ``shape_clouds``: synthetic, ModelNet-like point clouds (classification of 7 primitives).

Points sampled uniformly on the surfaces of seven primitives (sphere, cube, cylinder, cone, torus, pyramid,
octahedron) with a random rotation, anisotropic scale and Gaussian jitter, and a random point count per cloud.
A model can learn it because the classes differ in surface geometry (curvature, flat faces, edges, holes) that
survives rotation and mild stretching. Samples: clouds ``[P_i, 3]`` float32, centred and scaled into the unit
sphere, ``P_i`` uniform in ``[min_points, num_points]``; targets: class indices (0-d long tensors).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor
from torch.utils.data import Dataset

from polymodal.core.source import DataSource, DataSourceConfig, DemoSettings, SampleList
from polymodal.plugins.point_cloud.grouping import normalize_cloud

__all__ = ["SHAPE_CLASSES", "ShapeCloudsDataSource", "ShapeCloudsDataSourceConfig"]

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


class ShapeCloudsDataSource(DataSource):
    """Synthetic ModelNet-like clouds of 7 primitives, rotated, stretched and jittered (classification)."""

    name: ClassVar[str] = "shape_clouds"
    modality: ClassVar[str] = "point_cloud"
    config_class: ClassVar[type[ShapeCloudsDataSourceConfig]] = ShapeCloudsDataSourceConfig
    num_classes: ClassVar[int] = len(SHAPE_CLASSES)

    demo: ClassVar[DemoSettings | None] = DemoSettings(
        source={"num_points": 128, "min_points": 96},
        tokenizer={"num_groups": 8, "group_size": 32, "hidden_dim": 64, "mid_dim": 128, "pos_hidden_dim": 64},
        head={"pool": "mean"},
    )

    def generate(self, num: int, seed: int) -> list[tuple[Tensor, Tensor]]:
        """``num`` clouds ``[P_i, 3]`` with their class (0-d long tensor), balanced over the classes in a seeded
        order."""
        c = self.config
        g = torch.Generator().manual_seed(seed)
        labels = (torch.arange(num) % len(SHAPE_CLASSES))[torch.randperm(num, generator=g)]
        points = torch.empty(num, c.num_points, 3)
        for k, kind in enumerate(SHAPE_CLASSES):  # one vectorised call per class
            rows = (labels == k).nonzero().squeeze(1)
            if len(rows):
                points[rows] = _sample_surface(kind, len(rows), c.num_points, g)
        scale = 1 + c.scale_range * (2 * torch.rand(num, 1, 3, generator=g) - 1)
        points = (points * scale) @ _random_rotations(num, g, about_z=c.rotation == "z").transpose(1, 2)
        points = points + c.jitter * torch.randn(points.shape, generator=g)
        counts = torch.randint(c.min_points, c.num_points + 1, (num,), generator=g).tolist()
        return [(normalize_cloud(points[i, : counts[i]]), labels[i]) for i in range(num)]

    def splits(self) -> dict[str, Dataset]:
        """Its own seeds (``2 seed`` for training, ``2 seed + 1`` for testing), not the default
        ``seed + TEST_SEED_OFFSET``, so that the clouds stay those it has always drawn."""
        c = self.config
        return {
            "train": SampleList(self.generate(c.num_train, 2 * c.seed)),
            "test": SampleList(self.generate(c.num_test, 2 * c.seed + 1)),
        }
