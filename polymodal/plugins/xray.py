"""X-ray plugin: grayscale radiographs through a one-channel ViT patch embedding (arXiv 2010.11929), as the
X-ray branch of Meta-Transformer (arXiv 2307.10802).

Input: ``[B, 1, H, W]`` float tensors (already normalised), ``H`` and ``W`` divisible by the patch size ``p``
(16). ``preprocess`` takes one radiograph, 12- or 16-bit ``uint16`` (or any integer or float) pixel data as a
numpy array ``(H, W)``, a tensor or a PIL ``I;16`` image, and maps it to [0, 1] by a display window
(``center``/``width``, as a DICOM VOI LUT) or by per-image percentiles ``(0.5, 99.5)`` (the default, which
ignores the scanner's gain and offset), optionally inverts it (``MONOCHROME1`` data), resizes it to
``resize x resize`` if ``resize`` is set (not by default) and applies ``(x - mean) / std``.
Tokens: ``[B, (H/p)·(W/p), D]``, all real, with a 2-D positional embedding defined on ``img_size/p`` (14 x 14)
and resampled to other grids; the tokenizer *is* :class:`~polymodal.plugins.image.ImageTokenizer` with one
channel, so ``load_patch_embed(rgb_tokenizer)`` initialises it from RGB weights (filters summed over RGB).
Default: a radiograph keeps its size: a 64 x 64 one gives 4 x 4 = 16 tokens. (Up-sampling a small radiograph to a
large side, as 384 x 384 = 576 tokens of interpolated pixels did, costs about 38 times the compute and learned
nothing in the same number of epochs on small data; ``from_folder`` resizes files of many sizes to ``img_size``.)
Files: the image tokenizer's (PNG, TIFF, … through :func:`~polymodal.plugins._grid.read_image`), read as grey at
full depth (12- and 16-bit data keep their values) for one channel, as RGB otherwise.

Data source ``nodule_phantoms`` (synthetic): projection radiographs of a chest-like phantom. The phantom is a
set of ellipsoids (body, two lungs, heart, spine, ribs) with attenuation coefficients that add where they
overlap, as in the Shepp-Logan phantom; each pixel's value is the line integral of attenuation along the beam
(analytic chord length through each ellipsoid), turned into detected photons by Beer-Lambert
(``N = N0·exp(-∫μ)``) with Poisson noise, log-transformed back and stored as 12-bit data under a random
gain and offset. Anatomy is jittered per image. Label: whether a small dense nodule (a sphere inside a lung)
is present. A model can learn it because a nodule adds a compact round bump of line integral that none of the
other structures (smooth lungs, elongated ribs and spine) produce.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from polymodal.core.source import DataSource, DataSourceConfig, DemoSettings
from polymodal.plugins._grid import percentile_scale, window_scale
from polymodal.plugins.image import ImageTokenizer, ImageTokenizerConfig
from polymodal.registry.hookspecs import hookimpl

__all__ = [
    "NodulePhantomsDataSource",
    "NodulePhantomsDataSourceConfig",
    "XrayTokenizer",
    "XrayTokenizerConfig",
    "ellipsoid_chords",
    "normalize_radiograph",
]


# -- building blocks -----------------------------------------------------------------------------------------
def normalize_radiograph(
    x: Tensor,
    mode: Literal["window", "percentile"],
    *,
    center: float = 2048.0,
    width: float = 4096.0,
    percentiles: tuple[float, float] = (0.5, 99.5),
    invert: bool = False,
) -> Tensor:
    """Radiographs ``[..., C, H, W]`` (any numeric dtype) -> float in [0, 1] by a window or per-image
    percentiles; ``invert`` flips the result (``1 - x``) for data where dense is dark (``MONOCHROME1``)."""
    x = x.float() if not x.is_floating_point() else x
    y = window_scale(x, center, width) if mode == "window" else percentile_scale(x, *percentiles)
    return 1.0 - y if invert else y


def ellipsoid_chords(
    yy: np.ndarray, xx: np.ndarray, center: np.ndarray, axes: np.ndarray, depth: np.ndarray, angle: np.ndarray
) -> np.ndarray:
    """Chord length along the beam (z) through ellipsoids, at pixel coordinates ``yy, xx`` ``[H, W]``.

    Each ellipsoid has in-plane centre ``(y, x)`` ``[N, 2]``, in-plane semi-axes ``(a_y, a_x)`` ``[N, 2]``
    rotated by ``angle`` ``[N]`` (radians), and semi-axis ``depth`` ``[N]`` along z. Returns ``[N, H, W]``
    (float32): ``2·depth·sqrt(1 - r²)`` where the normalised in-plane radius ``r < 1``, else 0.
    """
    f = np.float32
    dy = yy.astype(f)[None] - center[:, 0, None, None].astype(f)
    dx = xx.astype(f)[None] - center[:, 1, None, None].astype(f)
    cos, sin = np.cos(angle).astype(f)[:, None, None], np.sin(angle).astype(f)[:, None, None]
    u = (cos * dy - sin * dx) / axes[:, 0, None, None].astype(f)
    v = (sin * dy + cos * dx) / axes[:, 1, None, None].astype(f)
    r = u * u
    r += v * v
    np.subtract(1.0, r, out=r)
    np.clip(r, 0.0, None, out=r)
    np.sqrt(r, out=r)
    r *= 2.0 * depth[:, None, None].astype(f)
    return r


# -- the tokenizer -------------------------------------------------------------------------------------------
class XrayTokenizerConfig(ImageTokenizerConfig):
    type: str = "xray"
    in_chans: int = Field(1, gt=0, description="Input channels (1 for a radiograph).")
    img_size: int = Field(224, gt=0, description="Side of the grid the positional embedding is defined on.")
    resize: int | None = Field(
        None,
        gt=0,
        description="Side preprocess resizes every radiograph to (bilinear, antialiased); None (the default) keeps "
        "each radiograph's size, which must then be divisible by patch_size.",
    )
    mean: tuple[float, ...] = Field((0.5,), description="Mean subtracted after the window / percentile step.")
    std: tuple[float, ...] = Field((0.5,), description="Std divided by after the window / percentile step.")
    normalization: Literal["window", "percentile"] = Field(
        "percentile", description="How preprocess maps raw pixel values to [0, 1]."
    )
    window_center: float = Field(
        2048.0, description="Window centre for 'window' (raw units; 12-bit mid-range)."
    )
    window_width: float = Field(4096.0, gt=0, description="Window width for 'window' (raw units).")
    percentiles: tuple[float, float] = Field(
        (0.5, 99.5),
        description="Per-image low and high percentiles (0-100) mapped to 0 and 1 by 'percentile'.",
    )
    invert: bool = Field(False, description="Flip to dense = bright after scaling (for MONOCHROME1 data).")

    @model_validator(mode="after")
    def _check_percentiles(self) -> XrayTokenizerConfig:
        lo, hi = self.percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")
        return self


class XrayTokenizer(ImageTokenizer):
    """One-channel ViT patch embedding for radiographs, with windowing or percentile normalisation."""

    name: ClassVar[str] = "xray"
    config_class: ClassVar[type[XrayTokenizerConfig]] = XrayTokenizerConfig
    input_form: ClassVar[str] = "radiographs `[B, 1, H, W]`"
    file_mode_otherwise: ClassVar[str | None] = "rgb"  # files: grey for one channel, RGB otherwise

    def to_unit_range(self, x: Tensor, raw: Any = None) -> Tensor:
        """Raw pixel data of one radiograph ``[C, H, W]`` -> [0, 1] by the configured window or
        percentiles."""
        c = self.config
        return normalize_radiograph(
            x,
            c.normalization,
            center=c.window_center,
            width=c.window_width,
            percentiles=c.percentiles,
            invert=c.invert,
        )


# -- data ----------------------------------------------------------------------------------------------------
class NodulePhantomsDataSourceConfig(DataSourceConfig):
    type: str = "nodule_phantoms"
    image_size: int = Field(64, ge=32, description="Side of the square radiographs (pixels).")
    nodule_fraction: float = Field(0.5, gt=0, lt=1, description="Share of radiographs with a nodule.")
    nodule_radius: tuple[float, float] = Field(
        (0.08, 0.12), description="Range of the nodule radius, as a fraction of the image half-width."
    )
    photons: float = Field(
        2e4, gt=0, description="Photons per pixel without attenuation (N0; sets the noise)."
    )


class NodulePhantomsDataSource(DataSource):
    """Synthetic chest-phantom radiographs; the label is whether a nodule is present (see the module
    docstring)."""

    name: ClassVar[str] = "nodule_phantoms"
    modality: ClassVar[str] = "xray"
    config_class: ClassVar[type[NodulePhantomsDataSourceConfig]] = NodulePhantomsDataSourceConfig
    # 32 x 32 radiographs kept at their size, as 16 patches of 8 x 8, mean-pooled; nodules of radius 0.2-0.3 of
    # the half-width instead of 0.08-0.12, which a randomly initialised encoder does not learn to find in the
    # demo's budget
    demo: ClassVar[DemoSettings | None] = DemoSettings(
        source={"image_size": 32, "nodule_radius": (0.2, 0.3)},
        tokenizer={"patch_size": 8, "img_size": 32, "resize": None},
        head={"pool": "mean"},
    )

    def raw_radiographs(self, num: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``num`` radiographs ``[num, S, S]`` uint16 (12-bit, dense = bright) and labels ``[num]`` (1 =
        nodule)."""
        c = self.config
        s = c.image_size
        coords = (np.arange(s) + 0.5) / s * 2.0 - 1.0  # pixel centres in [-1, 1]
        yy, xx = np.meshgrid(coords, coords, indexing="ij")
        scale = rng.uniform(0.85, 1.0, num)
        shift = rng.uniform(-0.05, 0.05, (num, 2))

        def jitter(lo: float, hi: float, shape: tuple[int, ...] = ()) -> np.ndarray:
            return rng.uniform(lo, hi, (num, *shape))

        # (centre y, x), (semi-axis y, x), depth, angle, attenuation per unit length; coefficients add up
        parts = [
            ((0.05, 0.0), (0.95, 0.85), 0.5, 0.0, 1.0),  # body (soft tissue)
            ((-0.05, -0.38), (0.55, 0.25), 0.3, 0.05, -0.8),  # right lung (air replaces tissue)
            ((-0.05, 0.38), (0.55, 0.25), 0.3, -0.05, -0.8),  # left lung
            ((0.25, 0.1), (0.25, 0.28), 0.25, 0.3, 0.3),  # heart
            ((0.0, 0.0), (0.85, 0.07), 0.1, 0.0, 2.0),  # spine
        ]
        for side in (-1.0, 1.0):  # ribs: thin tilted bony bands across each lung
            parts += [
                ((-0.5 + 0.25 * i, 0.38 * side), (0.025, 0.32), 0.05, 0.35 * side, 1.5) for i in range(4)
            ]
        total = np.zeros((num, s, s), dtype=np.float32)
        for (cy, cx), (
            ay,
            ax,
        ), depth, angle, mu in parts:  # a loop over a dozen ellipsoids, batched over images
            center = (np.array([cy, cx]) + jitter(-0.03, 0.03, (2,))) * scale[:, None] + shift
            axes = np.array([ay, ax]) * jitter(0.9, 1.1, (2,)) * scale[:, None]
            chords = ellipsoid_chords(yy, xx, center, axes, depth * scale, angle + jitter(-0.05, 0.05))
            total += (mu * jitter(0.9, 1.1)).astype(np.float32)[:, None, None] * chords
        # the nodule: a dense sphere inside one lung
        labels = (rng.random(num) < c.nodule_fraction).astype(np.int64)
        lung_x = np.where(rng.random(num) < 0.5, -0.38, 0.38)
        center = np.stack([rng.uniform(-0.4, 0.3, num), lung_x + rng.uniform(-0.12, 0.12, num)], 1)
        center = center * scale[:, None] + shift
        radius = rng.uniform(*c.nodule_radius, num)
        chords = ellipsoid_chords(yy, xx, center, np.stack([radius, radius], 1), radius, np.zeros(num))
        total += (labels * rng.uniform(2.0, 3.0, num)).astype(np.float32)[:, None, None] * chords
        # Beer-Lambert with Poisson photon noise, then the log transform a detector's processing applies
        gain = rng.uniform(900.0, 1300.0, (num, 1, 1))
        offset = rng.uniform(50.0, 400.0, (num, 1, 1))
        photons = rng.poisson(c.photons * np.exp(-total)).clip(1, None)
        line_integral = -np.log(photons / c.photons)
        values = np.clip(np.round(offset + gain * line_integral), 0, 4095).astype(np.uint16)
        return values, labels

    def splits(self) -> dict[str, Dataset]:
        c = self.config
        rng = np.random.default_rng(c.seed)
        defaults = XrayTokenizerConfig()
        out = {}
        for split, num in (("train", c.num_train), ("test", c.num_test)):
            values, labels = self.raw_radiographs(num, rng)
            x = normalize_radiograph(
                torch.from_numpy(values.astype(np.int64))[:, None],
                "percentile",
                percentiles=defaults.percentiles,
            )
            x = (x - defaults.mean[0]) / defaults.std[0]
            out[split] = TensorDataset(x.float(), torch.from_numpy(labels))
        return out

    def task(self) -> dict[str, Any]:
        return {"type": "classification", "num_classes": 2}

    def baseline(self) -> float:
        p = self.config.nodule_fraction
        return float(max(p, 1.0 - p))


@hookimpl
def polymodal_components() -> list[type]:
    return [XrayTokenizer, NodulePhantomsDataSource]
