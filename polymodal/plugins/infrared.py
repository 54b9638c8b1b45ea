"""Infrared plugin: single-channel thermal images through a ViT patch embedding (arXiv 2010.11929), as the
infrared branch of Meta-Transformer (arXiv 2307.10802).

Input: ``[B, 1, H, W]`` float tensors (already normalised), ``H`` and ``W`` divisible by the patch size ``p``
(16). ``preprocess`` takes one raw frame, radiometric ``uint16`` counts (e.g. 14-bit), 8-bit, or float
temperatures, as a numpy array ``(H, W)``, a tensor, or a PIL ``I;16``/``L`` image, and rescales it *per
image* (min-max, or percentiles ``(1, 99)`` clipped to [0, 1]) before ``(x - mean) / std``: the sensor's gain
and offset drop out, so one model serves cameras with different radiometric ranges.
Tokens: ``[B, (H/p)·(W/p), D]``, all real, with the image tokenizer's resampled 2-D positional embedding; the
tokenizer *is* :class:`~polymodal.plugins.image.ImageTokenizer` with one channel, so
``load_patch_embed(rgb_tokenizer)`` initialises it from RGB weights (filters summed over RGB). Default: a
224 x 224 frame gives 196 tokens; a 640 x 512 frame 40 x 32 = 1,280.
Files: the image tokenizer's (PNG, TIFF, … through :func:`~polymodal.plugins._grid.read_image`), read as grey at
full depth (16-bit TIFF / PNG counts stay counts) for one channel, as RGB otherwise.

Data source ``thermal_scenes`` (synthetic): long-wave infrared frames of warm objects on a background. Each
pixel's radiance is Planck's law integrated over 8-14 µm at its temperature (background 275-305 K with a
gradient; 0-3 hot objects 6-25 K warmer; up to 2 cool patches 4-10 K colder), weighted by emissivity plus
reflected ambient, blurred by the optics, with NETD-scaled sensor noise, and stored as 14-bit counts under a
random per-frame gain and offset. Label: the number of hot objects (0-3). A model can learn it because hot
objects are compact regions brighter than anything else in the per-image-normalised frame, and each class
adds one such blob, whatever the absolute temperatures and the camera's gain.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from polymodal.core.source import DataSource, DataSourceConfig, DemoSettings
from polymodal.plugins._grid import minmax_scale, percentile_scale
from polymodal.plugins.image import ImageTokenizer, ImageTokenizerConfig
from polymodal.registry.hookspecs import hookimpl

__all__ = [
    "InfraredTokenizer",
    "InfraredTokenizerConfig",
    "ThermalScenesDataSource",
    "ThermalScenesDataSourceConfig",
    "band_radiance",
    "normalize_thermal",
]

H_PLANCK = 6.62607015e-34  # J s
C_LIGHT = 2.99792458e8  # m / s
K_BOLTZMANN = 1.380649e-23  # J / K


# -- building blocks -----------------------------------------------------------------------------------------
def band_radiance(
    temperature: np.ndarray | float, band: tuple[float, float] = (8e-6, 14e-6), num: int = 241
) -> np.ndarray:
    """Blackbody radiance ``∫ B_λ(T) dλ`` over ``band`` (metres) in W·sr⁻¹·m⁻², for any array of temperatures
    (K).

    ``B_λ(T) = 2hc² / λ⁵ / (exp(hc / (λ k T)) - 1)`` (Planck), integrated with the trapezoid rule on ``num``
    wavelengths.
    """
    t = np.asarray(temperature, dtype=np.float64)[..., None]
    lam = np.linspace(band[0], band[1], num)
    b = 2.0 * H_PLANCK * C_LIGHT**2 / lam**5 / np.expm1(H_PLANCK * C_LIGHT / (lam * K_BOLTZMANN * t))
    return np.trapezoid(b, lam, axis=-1) if hasattr(np, "trapezoid") else np.trapz(b, lam, axis=-1)


def normalize_thermal(
    x: Tensor, mode: Literal["minmax", "percentile"], percentiles: tuple[float, float] = (1.0, 99.0)
) -> Tensor:
    """Per-image rescaling of thermal frames ``[..., C, H, W]`` (any numeric dtype) to [0, 1] floats.

    ``minmax``: each frame's own min and max map to 0 and 1. ``percentile``: its ``percentiles`` map to 0 and
    1, clipped (robust to dead or saturated pixels). Either way ``a·x + b`` (``a > 0``) gives the same result.
    """
    x = x.float() if not x.is_floating_point() else x
    return minmax_scale(x) if mode == "minmax" else percentile_scale(x, *percentiles)


# -- the tokenizer -------------------------------------------------------------------------------------------
class InfraredTokenizerConfig(ImageTokenizerConfig):
    type: str = "infrared"
    in_chans: int = Field(1, gt=0, description="Input channels (1 for a thermal camera).")
    mean: tuple[float, ...] = Field(
        (0.5,), description="Per-channel mean subtracted after per-image scaling."
    )
    std: tuple[float, ...] = Field((0.5,), description="Per-channel std divided by after per-image scaling.")
    normalization: Literal["minmax", "percentile"] = Field(
        "percentile", description="Per-image rescaling of the raw values to [0, 1] in preprocess."
    )
    percentiles: tuple[float, float] = Field(
        (1.0, 99.0), description="Low and high percentiles (0-100) mapped to 0 and 1 by 'percentile'."
    )

    @model_validator(mode="after")
    def _check_percentiles(self) -> InfraredTokenizerConfig:
        lo, hi = self.percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")
        return self


class InfraredTokenizer(ImageTokenizer):
    """One-channel ViT patch embedding for thermal frames, with per-image radiometric normalisation."""

    name: ClassVar[str] = "infrared"
    config_class: ClassVar[type[InfraredTokenizerConfig]] = InfraredTokenizerConfig
    input_form: ClassVar[str] = "thermal frames `[B, 1, H, W]`"
    file_mode_otherwise: ClassVar[str | None] = "rgb"  # files: grey for one channel, RGB otherwise

    def to_unit_range(self, x: Tensor, raw: Any = None) -> Tensor:
        """Raw counts, 8-bit values or temperatures of one frame ``[C, H, W]`` -> [0, 1], per image."""
        c = self.config
        return normalize_thermal(x, c.normalization, c.percentiles)


# -- data ----------------------------------------------------------------------------------------------------
class ThermalScenesDataSourceConfig(DataSourceConfig):
    type: str = "thermal_scenes"
    image_size: int = Field(32, ge=16, description="Side of the square frames (pixels).")
    max_objects: int = Field(
        3, ge=1, le=8, description="Hot objects per frame: 0..max_objects (the classes)."
    )
    netd: float = Field(0.05, ge=0, description="Noise-equivalent temperature difference of the sensor (K).")
    normalization: Literal["minmax", "percentile"] = Field(
        "percentile", description="Per-image rescaling applied to the raw counts (as the tokenizer's)."
    )


class ThermalScenesDataSource(DataSource):
    """Synthetic 8-14 µm thermal frames; the label is the number of hot objects (see the module docstring)."""

    name: ClassVar[str] = "thermal_scenes"
    modality: ClassVar[str] = "infrared"
    config_class: ClassVar[type[ThermalScenesDataSourceConfig]] = ThermalScenesDataSourceConfig
    # 32 x 32 frames as 16 patches of 8 x 8, mean-pooled
    demo: ClassVar[DemoSettings | None] = DemoSettings(
        tokenizer={"patch_size": 8, "img_size": 32}, head={"pool": "mean"}
    )

    def scenes(self, num: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``num`` scenes: ``temperature`` and ``emissivity`` ``[num, S, S]``, ``ambient`` ``[num, 1, 1]``
        (K), ``hot`` ``[num, S, S]`` (bool, inside a hot object) and ``labels`` ``[num]``."""
        c = self.config
        s, k = c.image_size, c.max_objects
        yy, xx = np.meshgrid(np.arange(s) + 0.5, np.arange(s) + 0.5, indexing="ij")
        labels = rng.integers(0, k + 1, size=num)
        # background: ambient temperature with a linear gradient (sun and shade)
        t_bg = rng.uniform(275.0, 305.0, size=(num, 1, 1))
        grad = rng.uniform(-3.0, 3.0, size=(num, 2, 1, 1))
        temp = t_bg + (grad[:, 0] * (yy / s - 0.5) + grad[:, 1] * (xx / s - 0.5))
        emis = np.full((num, s, s), 0.95)
        # objects sit in distinct cells of a 4 x 4 grid (never overlap): hot ones first, then cool distractors
        cells = 4
        cell = s / cells
        order = np.argsort(rng.random((num, cells * cells)), axis=1)
        num_cold = rng.integers(0, 3, size=num)
        slots = k + 2
        cy = (order[:, :slots] // cells + rng.uniform(0.3, 0.7, (num, slots))) * cell  # [num, slots]
        cx = (order[:, :slots] % cells + rng.uniform(0.3, 0.7, (num, slots))) * cell
        ry = rng.uniform(0.22, 0.4, (num, slots)) * cell
        rx = rng.uniform(0.22, 0.4, (num, slots)) * cell
        inside = ((yy - cy[..., None, None]) / ry[..., None, None]) ** 2 + (
            (xx - cx[..., None, None]) / rx[..., None, None]
        ) ** 2 <= 1.0  # [num, slots, s, s]
        slot = np.arange(slots)
        hot = slot[None] < labels[:, None]
        cold = (slot[None] >= k) & (slot[None] < k + num_cold[:, None])
        delta = np.where(hot, rng.uniform(6.0, 25.0, (num, slots)), 0.0)
        delta = np.where(cold, -rng.uniform(4.0, 10.0, (num, slots)), delta)
        inside &= (hot | cold)[..., None, None]
        temp = temp + (inside * delta[..., None, None]).sum(1)
        obj_emis = rng.uniform(0.92, 0.98, (num, slots))
        emis = np.where(inside.any(1), (inside * obj_emis[..., None, None]).max(1), emis)
        hot_mask = (inside & hot[..., None, None]).any(1)
        return {"temperature": temp, "emissivity": emis, "ambient": t_bg, "hot": hot_mask, "labels": labels}

    def raw_frames(self, num: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``num`` raw frames ``[num, S, S]`` uint16 (14-bit counts) of :meth:`scenes` and their labels."""
        c = self.config
        scene = self.scenes(num, rng)
        temp, emis, t_bg = scene["temperature"], scene["emissivity"], scene["ambient"]
        # radiance: emitted + reflected ambient, through a lookup table of the band integral
        grid = np.arange(200.0, 400.0, 0.05)
        table = band_radiance(grid)
        radiance = emis * np.interp(temp, grid, table) + (1.0 - emis) * np.interp(t_bg, grid, table)
        # optics blur (Gaussian, sigma 0.7 px), separable
        r = np.arange(-2, 3)
        kernel = np.exp(-0.5 * (r / 0.7) ** 2)
        kernel /= kernel.sum()
        img = torch.from_numpy(radiance).float()[:, None]
        kt = torch.from_numpy(kernel).float()
        img = F.conv2d(F.pad(img, (2, 2, 0, 0), mode="replicate"), kt.view(1, 1, 1, 5))
        img = F.conv2d(F.pad(img, (0, 0, 2, 2), mode="replicate"), kt.view(1, 1, 5, 1))[:, 0].double().numpy()
        # sensor noise: NETD converted to radiance at the background temperature
        dl_dt = (np.interp(t_bg + 0.5, grid, table) - np.interp(t_bg - 0.5, grid, table)) / 1.0
        img = img + rng.standard_normal(img.shape) * c.netd * dl_dt
        # 14-bit counts under a random per-frame gain and offset (the normalisation must remove them)
        gain = rng.uniform(0.6, 1.4, (num, 1, 1)) * 8000.0 / table[np.searchsorted(grid, 330.0)]
        offset = rng.uniform(500.0, 3000.0, (num, 1, 1))
        counts = np.clip(np.round(offset + gain * img), 0, 2**14 - 1).astype(np.uint16)
        return counts, scene["labels"]

    def splits(self) -> dict[str, Dataset]:
        c = self.config
        rng = np.random.default_rng(c.seed)
        out = {}
        for split, num in (("train", c.num_train), ("test", c.num_test)):
            counts, labels = self.raw_frames(num, rng)
            x = normalize_thermal(torch.from_numpy(counts.astype(np.int64))[:, None], c.normalization)
            mean, std = InfraredTokenizerConfig().mean[0], InfraredTokenizerConfig().std[0]
            out[split] = TensorDataset(((x - mean) / std).float(), torch.from_numpy(labels).long())
        return out

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return self.config.max_objects + 1


@hookimpl
def polymodal_components() -> list[type]:
    return [InfraredTokenizer, ThermalScenesDataSource]
