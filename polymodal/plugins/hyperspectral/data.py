"""Synthetic hyperspectral data sources, both from linear spectral mixing (the linear mixing model of spectral
unmixing, Bioucas-Dias et al., arXiv 1202.6294).

Each material (class) has a smooth endmember spectrum over 400-2500 nm (:func:`endmember_spectra`: a baseline plus
a sum of Gaussian absorption/reflection features, redrawn until all pairs differ by a clear spectral angle); a
pixel's spectrum is the abundance-weighted sum of endmembers (its class's endmember dominant, 60-95 %, the rest
spread over the others, blurred across region borders so border pixels are mixed), times a per-pixel illumination
factor, plus Gaussian noise. ``mixed_pixels``: scenes with a Voronoi label map; samples are ``k x k``
neighbourhoods of random pixels, the label is the centre pixel's class (train and test pixels come from different
scenes). ``mixed_patches``: ``2k x 2k`` patches of one background material with a blob of another; the label is
the background (majority) material.

Shapes: samples ``[bands, k, k]`` (``mixed_pixels``) or ``[bands, cells·k, cells·k]`` (``mixed_patches``),
normalised float; targets long class indices.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch.utils.data import Dataset, TensorDataset

from polymodal.core.source import DataSource, DataSourceConfig, DemoSettings
from polymodal.plugins.hyperspectral.neighbourhoods import extract_neighbourhoods

__all__ = [
    "MixedPatchesDataSource",
    "MixedPatchesDataSourceConfig",
    "MixedPixelsDataSource",
    "MixedPixelsDataSourceConfig",
    "endmember_spectra",
]


def endmember_spectra(num: int, bands: int, rng: np.random.Generator, min_angle: float = 0.15) -> np.ndarray:
    """``[num, bands]`` smooth reflectance spectra over 400-2500 nm: a sloped baseline plus 3-5 Gaussian
    features each; a candidate is redrawn until its spectral angle to every kept one is at least ``min_angle``
    radians."""
    lam = np.linspace(0.4, 2.5, bands)  # µm
    kept: list[np.ndarray] = []
    while len(kept) < num:  # a few dozen draws at most
        k = rng.integers(3, 6)
        centres, widths = rng.uniform(0.4, 2.5, k), rng.uniform(0.05, 0.3, k)
        amps = rng.uniform(-0.25, 0.35, k)
        base = rng.uniform(0.15, 0.4) + rng.uniform(-0.08, 0.08) * (lam - 1.45)
        spec = base + (amps[:, None] * np.exp(-0.5 * ((lam - centres[:, None]) / widths[:, None]) ** 2)).sum(
            0
        )
        spec = np.clip(spec, 0.02, 0.95)
        unit = spec / np.linalg.norm(spec)
        if all(np.arccos(np.clip(unit @ (o / np.linalg.norm(o)), -1, 1)) >= min_angle for o in kept):
            kept.append(spec)
    return np.stack(kept)


# -- data sources --------------------------------------------------------------------------------------------
class _MixingConfig(DataSourceConfig):
    bands: int = Field(128, gt=0, description="Spectral bands (as the tokenizer's bands).")
    num_classes: int = Field(6, ge=2, le=16, description="Materials (endmembers), one class each.")
    patch_size: int = Field(
        7, gt=0, description="Neighbourhood / cell side k (as the tokenizer's patch_size)."
    )
    noise: float = Field(0.01, ge=0, description="Std of the Gaussian noise added to reflectance.")
    normalize_mean: float = Field(
        0.5, description="Mean subtracted from reflectance (as the tokenizer's mean)."
    )
    normalize_std: float = Field(0.5, gt=0, description="Std divided by (as the tokenizer's std).")


def _mix(labels: np.ndarray, endmembers: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Reflectance ``[N, bands, H, W]`` (float32) of label maps ``[N, H, W]`` by linear mixing with noise."""
    n, h, w = labels.shape
    e = endmembers.shape[0]
    dominant = rng.uniform(0.6, 0.95, (n, 1, h, w))
    rest = rng.dirichlet(np.ones(e), size=(n, h, w)).transpose(0, 3, 1, 2)  # [N, E, H, W]
    onehot = np.eye(e)[labels].transpose(0, 3, 1, 2)
    abundance = torch.from_numpy(onehot * dominant + (1 - onehot) * rest * (1 - dominant)).float()
    # mixed pixels at region borders: a 3 x 3 box blur of the abundances (reflect padding keeps the sums 1)
    abundance = F.avg_pool2d(F.pad(abundance, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
    abundance = abundance / abundance.sum(1, keepdim=True)
    illumination = torch.from_numpy(rng.uniform(0.8, 1.2, (n, 1, h, w))).float()
    spectra = torch.einsum("nehw,eb->nbhw", abundance, torch.from_numpy(endmembers).float()) * illumination
    return (spectra + noise * torch.from_numpy(rng.standard_normal(spectra.shape, dtype=np.float32))).numpy()


class MixedPixelsDataSourceConfig(_MixingConfig):
    type: str = "mixed_pixels"
    scene_size: int = Field(48, ge=8, description="Side of each synthetic scene the pixels are drawn from.")
    regions: int = Field(12, ge=2, description="Voronoi regions per scene (each of a random class).")


class MixedPixelsDataSource(DataSource):
    """Per-pixel classification from ``k x k`` neighbourhoods of linearly mixed synthetic scenes."""

    name: ClassVar[str] = "mixed_pixels"
    modality: ClassVar[str] = "hyperspectral"
    config_class: ClassVar[type[MixedPixelsDataSourceConfig]] = MixedPixelsDataSourceConfig

    def splits(self) -> dict[str, Dataset]:
        c = self.config
        rng = np.random.default_rng(c.seed)
        endmembers = endmember_spectra(c.num_classes, c.bands, rng)
        s = c.scene_size
        out = {}
        for split, num in (("train", c.num_train), ("test", c.num_test)):
            scenes = max(4, -(-num // 64))  # at most 64 samples per scene: many independent scenes
            seeds = rng.uniform(0, s, (scenes, c.regions, 2))
            yy, xx = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
            dist = (yy[None, None] - seeds[..., 0, None, None]) ** 2 + (
                xx[None, None] - seeds[..., 1, None, None]
            ) ** 2
            region_class = rng.integers(0, c.num_classes, (scenes, c.regions))
            labels = np.take_along_axis(region_class, dist.argmin(1).reshape(scenes, -1), 1).reshape(
                scenes, s, s
            )
            cubes = torch.from_numpy(
                (_mix(labels, endmembers, c.noise, rng) - c.normalize_mean) / c.normalize_std
            )
            which = rng.integers(0, scenes, num)
            pix = torch.from_numpy(rng.integers(0, s, (num, 2)))
            x = torch.empty(num, c.bands, c.patch_size, c.patch_size)
            for i in range(scenes):  # a loop over a few scenes; pixels are gathered in one call per scene
                sel = torch.from_numpy(np.flatnonzero(which == i))
                x[sel] = extract_neighbourhoods(cubes[i], pix[sel], c.patch_size)
            y = torch.from_numpy(labels[which, pix[:, 0].numpy(), pix[:, 1].numpy()]).long()
            out[split] = TensorDataset(x, y)
        self._test_targets = out["test"].tensors[1]
        return out

    def task(self) -> dict[str, Any]:
        return {"type": "classification", "num_classes": self.config.num_classes}

    def baseline(self) -> float:
        """Majority-class rate of the test split (Voronoi regions make classes unequal)."""
        targets = getattr(self, "_test_targets", None)
        if targets is None:
            targets = self.splits()["test"].tensors[1]
        return float(torch.bincount(targets, minlength=self.config.num_classes).max()) / len(targets)


class MixedPatchesDataSourceConfig(_MixingConfig):
    type: str = "mixed_patches"
    cells: int = Field(2, ge=1, description="Patch side in cells of k pixels (a patch is cells·k square).")


class MixedPatchesDataSource(DataSource):
    """Whole-patch classification: the majority material of a linearly mixed synthetic patch."""

    name: ClassVar[str] = "mixed_patches"
    modality: ClassVar[str] = "hyperspectral"
    config_class: ClassVar[type[MixedPatchesDataSourceConfig]] = MixedPatchesDataSourceConfig
    # a 14 x 14 x 128 patch as 8 band groups of 16 x 4 cells of 7 x 7 = 32 tokens, mean-pooled
    demo: ClassVar[DemoSettings | None] = DemoSettings(tokenizer={"band_group": 16}, head={"pool": "mean"})

    def splits(self) -> dict[str, Dataset]:
        c = self.config
        rng = np.random.default_rng(c.seed)
        endmembers = endmember_spectra(c.num_classes, c.bands, rng)
        s = c.cells * c.patch_size
        yy, xx = np.meshgrid(np.arange(s) + 0.5, np.arange(s) + 0.5, indexing="ij")
        out = {}
        for split, num in (("train", c.num_train), ("test", c.num_test)):
            labels = rng.integers(0, c.num_classes, num)
            other = (labels + rng.integers(1, c.num_classes, num)) % c.num_classes
            centre = rng.uniform(0, s, (num, 2, 1, 1))
            radius = rng.uniform(0.15, 0.3, (num, 1, 1)) * s  # the blob covers at most ~28 % of the patch
            blob = (yy - centre[:, 0]) ** 2 + (xx - centre[:, 1]) ** 2 <= radius**2
            label_map = np.where(blob, other[:, None, None], labels[:, None, None])
            x = (_mix(label_map, endmembers, c.noise, rng) - c.normalize_mean) / c.normalize_std
            out[split] = TensorDataset(torch.from_numpy(x), torch.from_numpy(labels).long())
        return out

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return self.config.num_classes
