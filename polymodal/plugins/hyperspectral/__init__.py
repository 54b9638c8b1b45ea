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

Files: ``.npy``, ``.npz`` and ``.mat`` cubes ``(H, W, bands)`` (:attr:`HyperspectralTokenizer.file_extensions`,
read by :func:`read_cube`; MATLAB files through scipy).

The package: :mod:`~polymodal.plugins.hyperspectral.tokenizer` (the tokenizer),
:mod:`~polymodal.plugins.hyperspectral.neighbourhoods` (pixel neighbourhoods),
:mod:`~polymodal.plugins.hyperspectral.files` (reading files), :mod:`~polymodal.plugins.hyperspectral.data` (the
data sources).
"""

from __future__ import annotations

from polymodal.plugins.hyperspectral.data import (
    MixedPatchesDataSource,
    MixedPatchesDataSourceConfig,
    MixedPixelsDataSource,
    MixedPixelsDataSourceConfig,
    endmember_spectra,
)
from polymodal.plugins.hyperspectral.files import CUBE_EXTENSIONS, read_cube
from polymodal.plugins.hyperspectral.neighbourhoods import extract_neighbourhoods
from polymodal.plugins.hyperspectral.tokenizer import HyperspectralTokenizer, HyperspectralTokenizerConfig
from polymodal.registry.hookspecs import hookimpl

__all__ = [
    "CUBE_EXTENSIONS",
    "HyperspectralTokenizer",
    "HyperspectralTokenizerConfig",
    "MixedPatchesDataSource",
    "MixedPatchesDataSourceConfig",
    "MixedPixelsDataSource",
    "MixedPixelsDataSourceConfig",
    "endmember_spectra",
    "extract_neighbourhoods",
    "read_cube",
]


@hookimpl
def polymodal_components() -> list[type]:
    return [HyperspectralTokenizer, MixedPixelsDataSource, MixedPatchesDataSource]
