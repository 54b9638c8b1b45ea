"""Hyperspectral plugin: group-wise spectral embedding over a spatial neighbourhood (SpectralFormer, Hong et
al., arXiv 2107.02988; grouped channels x spatial patches as SatMAE, Cong et al., arXiv 2207.08051), as the
hyperspectral branch of Meta-Transformer (arXiv 2307.10802).

Input: ``[B, bands, H, W]`` float cubes (already normalised), ``bands`` = the configured band count (128),
``H`` and ``W`` divisible by the neighbourhood / spatial patch size ``k`` (7). Two uses:

- per-pixel classification: each sample is the ``k x k`` neighbourhood around a pixel (``H = W = k``);
  :func:`extract_neighbourhoods` / :meth:`HyperspectralTokenizer.neighbourhoods` cut them from a cube in one
  gather, with reflect padding at the borders;
- whole-patch classification: a larger patch, ``H, W`` multiples of ``k``.

Tokens: one token per group of ``g = band_group`` (8) adjacent bands per ``k x k`` spatial cell: a Conv3d over
``[B, 1, bands, H, W]`` with kernel = stride = ``g x k x k`` (computed as one matmul) projects each group of
bands over the neighbourhood to ``D`` (``band_group = 1``: one token per band).
``[B, (bands/g)·(H/k)·(W/k), D]``, all real, group-major (``meta["grid"] = (bands/g, H/k, W/k)``).
Positional embedding: a learned spectral table (one entry per band group) plus a learned spatial table on an
``img_size/k`` grid (2 x 2) resampled (bicubic) to the input's cells. Default: a 7 x 7 x 128 neighbourhood
gives 16 tokens; a 14 x 14 x 128 patch 16 x 4 = 64.

``preprocess`` takes a cube ``[H, W, bands]`` (numpy or tensor, float reflectance or integer counts), divides
it by ``scale`` and standardises it with ``mean``/``std`` (one value or one per band) -> ``[bands, H, W]``;
given ``(cube, (row, col))`` it returns that pixel's ``[bands, k, k]`` neighbourhood.

Data sources (synthetic), both from linear spectral mixing: each material (class) has a smooth endmember
spectrum over 400-2500 nm (a baseline plus a sum of Gaussian absorption/reflection features, redrawn until all
pairs differ by a clear spectral angle); a pixel's spectrum is the abundance-weighted sum of endmembers (its
class's endmember dominant, 60-95 %, the rest spread over the others, blurred across region borders so border
pixels are mixed), times a per-pixel illumination factor, plus Gaussian noise. ``mixed_pixels``: scenes with a
Voronoi label map; samples are ``k x k`` neighbourhoods of random pixels, the label is the centre pixel's
class (train and test pixels come from different scenes). ``mixed_patches``: ``2k x 2k`` patches of one
background material with a blob of another; the label is the background (majority) material. A model can learn
both because the endmembers differ in shape (not only in brightness), which survives mixing, illumination and
noise.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from timm.layers import trunc_normal_
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from polymodal.core.source import DataSource, DataSourceConfig
from polymodal.core.tokenizer import Tokenizer, TokenizerConfig, check_tensor, describe
from polymodal.core.tokens import Tokens
from polymodal.plugins.image import embed_tubelets, resample_pos_embed_2d
from polymodal.registry.hookspecs import hookimpl

__all__ = [
    "HyperspectralTokenizer",
    "HyperspectralTokenizerConfig",
    "MixedPatchesDataSource",
    "MixedPatchesDataSourceConfig",
    "MixedPixelsDataSource",
    "MixedPixelsDataSourceConfig",
    "endmember_spectra",
    "extract_neighbourhoods",
]


# -- building blocks -----------------------------------------------------------------------------------------
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


# -- the tokenizer -------------------------------------------------------------------------------------------
class HyperspectralTokenizerConfig(TokenizerConfig):
    type: str = "hyperspectral"
    bands: int = Field(128, gt=0, description="Spectral bands of the cubes (the input channels).")
    band_group: int = Field(
        8, gt=0, description="Adjacent bands per token (1 = one token per band); must divide bands."
    )
    patch_size: int = Field(
        7,
        gt=0,
        description="Side k of the spatial neighbourhood a token spans (Conv3d spatial kernel = stride).",
    )
    img_size: int = Field(
        14, gt=0, description="Side of the spatial grid the spatial positions are defined on."
    )
    scale: float = Field(1.0, gt=0, description="preprocess divides raw values by this (e.g. 10000 for DN).")
    mean: tuple[float, ...] = Field(
        (0.5,), description="Mean subtracted in preprocess: one value or one per band."
    )
    std: tuple[float, ...] = Field(
        (0.5,), description="Std divided by in preprocess: one value or one per band."
    )

    @model_validator(mode="after")
    def _check(self) -> HyperspectralTokenizerConfig:
        if self.bands % self.band_group:
            raise ValueError(f"bands {self.bands} is not divisible by band_group {self.band_group}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not divisible by patch_size {self.patch_size}")
        for field in ("mean", "std"):
            if len(getattr(self, field)) not in (1, self.bands):
                raise ValueError(
                    f"{field} needs 1 or {self.bands} (bands) values, got {len(getattr(self, field))}"
                )
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        return self


class HyperspectralTokenizer(Tokenizer):
    """Group-wise spectral embedding (bands/g tokens per k x k cell) with spectral + spatial positions."""

    name: ClassVar[str] = "hyperspectral"
    config_class: ClassVar[type[HyperspectralTokenizerConfig]] = HyperspectralTokenizerConfig
    input_form: ClassVar[str] = "cubes `[B, bands, H, W]`"

    def __init__(self, config: HyperspectralTokenizerConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        kernel = (c.band_group, c.patch_size, c.patch_size)
        self.proj = nn.Conv3d(1, c.embed_dim, kernel_size=kernel, stride=kernel)
        g = c.img_size // c.patch_size
        self.pos_embed_spectral = nn.Parameter(torch.zeros(1, c.bands // c.band_group, c.embed_dim))
        self.pos_embed_spatial = nn.Parameter(torch.zeros(1, g * g, c.embed_dim))
        trunc_normal_(self.pos_embed_spectral, std=0.02)
        trunc_normal_(self.pos_embed_spatial, std=0.02)

    @property
    def grid_size(self) -> tuple[int, int]:
        g = self.config.img_size // self.config.patch_size
        return g, g

    def validate(self, x: Any) -> Tensor:
        c = self.config
        k = c.patch_size
        expected = f"(B, {c.bands}, H, W) with H and W divisible by {k}"
        x = check_tensor(x, self.modality, expected, 4)
        if x.shape[1] != c.bands or x.shape[2] % k or x.shape[3] % k or 0 in x.shape[2:]:
            raise self.fail(expected, f"{tuple(x.shape)}")
        return x

    def forward(self, batch: Tensor) -> Tokens:
        x = self.validate(batch)
        x = embed_tubelets(x[:, None].to(self.proj.weight.dtype), self.proj.weight, self.proj.bias)
        ng, h, w = x.shape[1:4]  # x: [B, bands/g, H/k, W/k, D]
        x = x.flatten(1, 3)  # [B, ng*h*w, D], group-major
        spatial = resample_pos_embed_2d(self.pos_embed_spatial, (h, w), self.grid_size)
        pos = (self.pos_embed_spectral[:, :, None, :] + spatial[:, None, :, :]).flatten(1, 2)
        return Tokens.full(x + pos.to(x.dtype), self.modality, grid=(ng, h, w))

    def _raw_cube(self, raw: Any) -> Tensor:
        """A raw cube ``[H, W, bands]`` (numpy or tensor of numbers) as a tensor, in its own dtype, not copied."""
        c = self.config
        expected = f"a cube (H, W, {c.bands}) of numbers"
        if isinstance(raw, np.ndarray) and raw.dtype.kind in "uif":
            x = torch.from_numpy(raw if raw.flags.writeable else raw.copy())
        elif isinstance(raw, Tensor) and not (raw.dtype == torch.bool or raw.is_complex()):
            x = raw
        else:
            raise self.fail(expected, describe(raw))
        if x.dim() != 3 or x.shape[-1] != c.bands or 0 in x.shape:
            raise self.fail(expected, describe(raw))
        return x

    def _normalise(self, x: Tensor, raw: Any) -> Tensor:
        """Raw values ``[..., bands, h, w]`` -> ``(x / scale - mean) / std`` per band, as float."""
        c = self.config
        x = x.float()
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise self.fail("finite values", f"{bad} NaN/Inf values in {describe(raw)}")
        mean = torch.tensor(c.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(c.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return (x / c.scale - mean) / std

    def neighbourhoods(self, raw_cube: Any, pixels: Any) -> Tensor:
        """The preprocessed ``[P, bands, k, k]`` neighbourhoods of ``pixels`` (``[P, 2]`` rows and columns) of
        one raw cube ``[H, W, bands]``, reflect-padded at the borders: a batch ``forward`` takes. Only the
        gathered values are converted and normalised."""
        cube = self._raw_cube(raw_cube)
        k = self.config.patch_size
        idx = torch.as_tensor(pixels)
        if idx.dim() != 2 or idx.shape[-1] != 2 or idx.is_floating_point() or idx.dtype == torch.bool:
            raise self.fail("integer pixel positions (P, 2)", describe(pixels))
        idx = idx.to(device=cube.device, dtype=torch.long)
        h, w = cube.shape[:2]
        if k // 2 >= min(h, w):
            raise self.fail(
                f"a cube larger than {k // 2} pixels on each side for {k} x {k} neighbourhoods", f"{h} x {w}"
            )
        outside = ((idx < 0) | (idx >= torch.tensor([h, w], device=idx.device))).any(1)
        if bool(outside.any()):
            raise self.fail(f"pixel positions inside the {h} x {w} cube", f"{idx[outside][:3].tolist()}")
        return self._normalise(extract_neighbourhoods(cube.permute(2, 0, 1), idx, k), raw_cube)

    def preprocess(self, raw: Any) -> Tensor:
        """A cube ``[H, W, bands]`` -> ``[bands, H, W]``; ``(cube, (row, col))`` -> that pixel's
        ``[bands, k, k]`` neighbourhood. Values are divided by ``scale``, standardised by ``mean``/``std``."""
        if isinstance(raw, tuple) and len(raw) == 2:
            return self.neighbourhoods(raw[0], torch.as_tensor(raw[1]).reshape(1, 2))[0]
        return self._normalise(self._raw_cube(raw).permute(2, 0, 1), raw).contiguous()

    def example_input(self, batch_size: int = 2, generator: torch.Generator | None = None) -> Tensor:
        c = self.config
        return torch.randn(batch_size, c.bands, c.patch_size, c.patch_size, generator=generator)

    def invalid_examples(self) -> list[Any]:
        c = self.config
        k, b = c.patch_size, c.bands
        return [
            torch.randn(2, b + c.band_group, k, k),  # bands
            torch.randn(2, k, k, b),  # channels-last cube, not preprocessed
            torch.randn(2, b, k + 1, k),  # not divisible
            torch.randn(b, k, k),  # rank
            torch.full((1, b, k, k), float("nan")),
            torch.zeros(0, b, k, k),  # empty batch
            torch.zeros(1, b, k, k, dtype=torch.int64),  # not preprocessed
        ]


# -- data ----------------------------------------------------------------------------------------------------
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


@hookimpl
def polymodal_components() -> list[type]:
    return [HyperspectralTokenizer, MixedPixelsDataSource, MixedPatchesDataSource]
