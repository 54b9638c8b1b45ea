"""The point-cloud tokenizer: FPS + kNN groups -> mini-PointNet tokens, as Point-BERT (Yu et al., arXiv 2111.14819),
Point-MAE (Pang et al., arXiv 2203.06604) and Meta-Transformer (arXiv 2307.10802).

Input: ``[B, P, 3 + C]`` (coordinates, then ``C = in_features`` per-point features), a dict ``{"points": [B, P,
3], "features": [B, P, C], "mask": [B, P] bool}``, or a list of clouds ``[P_i, 3 + C]`` (collated with padding
and a point mask). Tokens: ``[B, G, D]``, ``G = num_groups``; ``meta["centers"]`` ``[B, G, 3]``. Files (PLY,
XYZ/text, ``.npy``, meshes) are read by :func:`~polymodal.plugins.point_cloud.files.read_points`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from polymodal.core.tokenizer import Tokenizer, TokenizerConfig, check_tensor, describe
from polymodal.core.tokens import Tokens
from polymodal.plugins.point_cloud.files import read_points
from polymodal.plugins.point_cloud.grouping import group_points, normalize_cloud

__all__ = ["MiniPointNet", "PointCloudTokenizer", "PointCloudTokenizerConfig"]


# -- building blocks ---------------------------------------------------------------------------------------------
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
    file_extensions: ClassVar[tuple[str, ...]] = (
        ".ply",
        ".xyz",
        ".pts",
        ".txt",
        ".npy",
        ".obj",
        ".off",
        ".stl",
    )

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

    # -- files ---------------------------------------------------------------------------------------------
    @classmethod
    def read_file(cls, path: str | Path, config: TokenizerConfig, **options: Any) -> np.ndarray:
        """One file -> a cloud ``(P, 3 + C)`` float32 (:func:`read_points`): coordinates only, or with every other
        vertex property or column (``features="all"``) when ``config.in_features`` is set; ``options`` go to
        :func:`read_points` (``features``, ``num_points``, ``seed``)."""
        return read_points(path, **{"features": "all" if config.in_features else None, **options})

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
