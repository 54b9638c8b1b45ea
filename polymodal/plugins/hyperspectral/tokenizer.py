"""The hyperspectral tokenizer: group-wise spectral embedding over a spatial neighbourhood (SpectralFormer, Hong
et al., arXiv 2107.02988; grouped channels x spatial patches as SatMAE, Cong et al., arXiv 2207.08051).

Shapes: ``[B, bands, H, W]`` normalised float cubes, ``H`` and ``W`` divisible by ``patch_size`` ``k`` ->
:class:`~polymodal.core.tokens.Tokens` ``[B, G·(H/k)·(W/k), D]`` with ``G = ceil(bands / g)`` groups of
``g = band_group`` adjacent bands (a last group of fewer bands is zero-padded: padded bands add nothing to its
token), all real, group-major (``meta["grid"] = (G, H/k, W/k)``). Spectra ``[B, bands]`` (one spectrum per sample:
a point spectrometer, NIR spectroscopy) give ``[B, G, D]``: a spectrum is tokenized as the uniform ``k x k``
neighbourhood of that spectrum would be (the spatial kernel summed), with the spectral positions.
``preprocess``: a raw cube ``[H, W, bands]`` -> ``[bands, H, W]``, a raw spectrum ``[bands]`` -> ``[bands]``, or
``(cube, (row, col))`` -> that pixel's ``[bands, k, k]`` neighbourhood; ``read_file``: a ``.npy``/``.npz``/``.mat``
file -> ``(H, W, bands)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, model_validator
from timm.layers import trunc_normal_
from torch import Tensor, nn

from polymodal.core.tokenizer import Tokenizer, TokenizerConfig, check_tensor, describe
from polymodal.core.tokens import Tokens
from polymodal.plugins._grid import embed_tubelets, resample_pos_embed_2d
from polymodal.plugins.hyperspectral.files import CUBE_EXTENSIONS, read_cube
from polymodal.plugins.hyperspectral.neighbourhoods import extract_neighbourhoods

__all__ = ["HyperspectralTokenizer", "HyperspectralTokenizerConfig"]


class HyperspectralTokenizerConfig(TokenizerConfig):
    type: str = "hyperspectral"
    bands: int = Field(128, gt=0, description="Spectral bands of the cubes (the input channels).")
    band_group: int = Field(
        8,
        gt=0,
        description="Adjacent bands per token (1 = one token per band); when it does not divide bands, the last "
        "token's group is zero-padded.",
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

    @property
    def num_groups(self) -> int:
        """Band groups (spectral tokens per spatial cell): ``ceil(bands / band_group)``."""
        return -(-self.bands // self.band_group)


class HyperspectralTokenizer(Tokenizer):
    """Group-wise spectral embedding (bands/g tokens per k x k cell) with spectral + spatial positions."""

    name: ClassVar[str] = "hyperspectral"
    config_class: ClassVar[type[HyperspectralTokenizerConfig]] = HyperspectralTokenizerConfig
    input_form: ClassVar[str] = "cubes `[B, bands, H, W]` or spectra `[B, bands]`"
    file_extensions: ClassVar[tuple[str, ...]] = CUBE_EXTENSIONS

    def __init__(self, config: HyperspectralTokenizerConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        kernel = (c.band_group, c.patch_size, c.patch_size)
        self.proj = nn.Conv3d(1, c.embed_dim, kernel_size=kernel, stride=kernel)
        g = c.img_size // c.patch_size
        self.pos_embed_spectral = nn.Parameter(torch.zeros(1, c.num_groups, c.embed_dim))
        self.pos_embed_spatial = nn.Parameter(torch.zeros(1, g * g, c.embed_dim))
        trunc_normal_(self.pos_embed_spectral, std=0.02)
        trunc_normal_(self.pos_embed_spatial, std=0.02)

    @classmethod
    def read_file(cls, path: str | Path, config: TokenizerConfig, **options: Any) -> Any:
        """One cube file -> ``(H, W, bands)`` as stored (:func:`read_cube`; ``options``: its ``key``), what
        :meth:`preprocess` takes; the config does not change how it is read."""
        return read_cube(path, **options)

    @property
    def grid_size(self) -> tuple[int, int]:
        g = self.config.img_size // self.config.patch_size
        return g, g

    def validate(self, x: Any) -> Tensor:
        c = self.config
        k = c.patch_size
        expected = f"(B, {c.bands}, H, W) with H and W divisible by {k}, or spectra (B, {c.bands})"
        x = check_tensor(x, self.modality, expected, (2, 4))
        if x.shape[1] != c.bands or (x.dim() == 4 and (x.shape[2] % k or x.shape[3] % k or 0 in x.shape[2:])):
            raise self.fail(expected, f"{tuple(x.shape)}")
        return x

    def _padded_bands(self, x: Tensor) -> Tensor:
        """``x [B, bands, ...]`` zero-padded along the bands to ``num_groups · band_group``."""
        extra = self.config.num_groups * self.config.band_group - self.config.bands
        if not extra:
            return x
        return torch.cat([x, x.new_zeros(x.shape[0], extra, *x.shape[2:])], dim=1)

    def forward(self, batch: Tensor) -> Tokens:
        x = self._padded_bands(self.validate(batch).to(self.proj.weight.dtype))
        if x.dim() == 2:  # spectra: a uniform k x k neighbourhood of each, so the spatial kernel sums
            weight = self.proj.weight.sum(dim=(3, 4))  # [D, 1, g]
            groups = x.view(x.shape[0], self.config.num_groups, self.config.band_group)
            tokens = groups @ weight[:, 0].t() + self.proj.bias  # [B, G, D]
            spatial = resample_pos_embed_2d(self.pos_embed_spatial, (1, 1), self.grid_size)
            pos = self.pos_embed_spectral + spatial
            return Tokens.full(tokens + pos.to(tokens.dtype), self.modality, grid=(self.config.num_groups, 1, 1))
        x = embed_tubelets(x[:, None], self.proj.weight, self.proj.bias)
        ng, h, w = x.shape[1:4]  # x: [B, groups, H/k, W/k, D]
        x = x.flatten(1, 3)  # [B, ng*h*w, D], group-major
        spatial = resample_pos_embed_2d(self.pos_embed_spatial, (h, w), self.grid_size)
        pos = (self.pos_embed_spectral[:, :, None, :] + spatial[:, None, :, :]).flatten(1, 2)
        return Tokens.full(x + pos.to(x.dtype), self.modality, grid=(ng, h, w))

    def _raw_cube(self, raw: Any) -> Tensor:
        """A raw cube ``[H, W, bands]`` or spectrum ``[bands]`` (numpy or tensor of numbers) as a tensor, in its own
        dtype, not copied."""
        c = self.config
        expected = f"a cube (H, W, {c.bands}) or a spectrum ({c.bands},) of numbers"
        if isinstance(raw, np.ndarray) and raw.dtype.kind in "uif":
            x = torch.from_numpy(raw if raw.flags.writeable else raw.copy())
        elif isinstance(raw, Tensor) and not (raw.dtype == torch.bool or raw.is_complex()):
            x = raw
        else:
            raise self.fail(expected, describe(raw))
        if x.dim() not in (1, 3) or x.shape[-1] != c.bands or 0 in x.shape:
            raise self.fail(expected, describe(raw))
        return x

    def _normalise(self, x: Tensor, raw: Any) -> Tensor:
        """Raw values ``[..., bands, h, w]`` -> ``(x / scale - mean) / std`` per band, as float."""
        c = self.config
        x = x.float()
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise self.fail("finite values", f"{bad} NaN/Inf values in {describe(raw)}")
        shape = (-1, 1, 1) if x.dim() >= 3 else (-1,)  # cubes [..., bands, h, w]; spectra [bands]
        mean = torch.tensor(c.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(c.std, dtype=x.dtype, device=x.device).view(shape)
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
        """A cube ``[H, W, bands]`` -> ``[bands, H, W]``; a spectrum ``[bands]`` -> ``[bands]``; ``(cube, (row,
        col))`` -> that pixel's ``[bands, k, k]`` neighbourhood. Values are divided by ``scale``, standardised by
        ``mean``/``std``."""
        if isinstance(raw, tuple) and len(raw) == 2:
            return self.neighbourhoods(raw[0], torch.as_tensor(raw[1]).reshape(1, 2))[0]
        x = self._raw_cube(raw)
        return self._normalise(x if x.dim() == 1 else x.permute(2, 0, 1), raw).contiguous()

    def example_input(self, batch_size: int = 2, generator: torch.Generator | None = None) -> Tensor:
        c = self.config
        return torch.randn(batch_size, c.bands, c.patch_size, c.patch_size, generator=generator)

    def invalid_examples(self) -> list[Any]:
        c = self.config
        k, b = c.patch_size, c.bands
        return [
            torch.randn(2, b + c.band_group, k, k),  # bands
            torch.randn(2, b + 1),  # a spectrum of other bands
            torch.randn(2, k, k, b),  # channels-last cube, not preprocessed
            torch.randn(2, b, k + 1, k),  # not divisible
            torch.randn(b, k, k),  # rank
            torch.full((1, b, k, k), float("nan")),
            torch.zeros(0, b, k, k),  # empty batch
            torch.zeros(1, b, k, k, dtype=torch.int64),  # not preprocessed
        ]
