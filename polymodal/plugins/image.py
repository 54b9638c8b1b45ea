"""Image plugin: ViT patch embedding (Dosovitskiy et al., arXiv 2010.11929), as in Meta-Transformer.

Input: ``[B, C, H, W]`` float tensors (already normalised; ``preprocess`` turns PIL images, ``HWC`` uint8 or
float arrays and ``CHW`` tensors into that), ``H`` and ``W`` divisible by the patch size ``p``.
Tokens: ``[B, (H/p)·(W/p), D]``, all real, row-major over the patch grid; a learned 2-D positional embedding
defined on an ``img_size/p x img_size/p`` grid and resampled (bicubic) to the input's grid, so any divisible
size works. Default: a 224 x 224 image gives 14 x 14 = 196 tokens.

Files: PNG, JPEG, TIFF, BMP, WebP (:attr:`ImageTokenizer.file_extensions`), read by
:func:`~polymodal.plugins._grid.read_image` as RGB for three channels and grey for one.

The building blocks shared with the other pixel-grid plugins (infrared, xray, video, hyperspectral) live in
:mod:`polymodal.plugins._grid` and are re-exported here: :func:`adapt_patch_embed` (timm's ``adapt_input_conv``:
sum RGB filters for one channel, repeat and rescale for more), :func:`resample_pos_embed_2d`,
:func:`patch_embed_state` (read a patch embedding from a tokenizer, our state dict, a timm ViT or OpenCLIP state dict),
:func:`embed_tubelets`, :func:`image_to_chw` (decode PIL / numpy / tensor images), :func:`read_image` and the
intensity scalers :func:`minmax_scale`, :func:`percentile_scale`, :func:`window_scale` used by single-channel
sensors.

Data source ``digits``: scikit-learn's bundled handwritten digits (real data, 1,797 images of 8 x 8, 10
classes), upsampled to 32 x 32 and repeated over RGB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from timm.layers import resample_patch_embed, trunc_normal_
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from polymodal.core.source import DataSource, DataSourceConfig, DemoSettings
from polymodal.core.tokenizer import Tokenizer, TokenizerConfig, check_tensor, describe
from polymodal.core.tokens import Tokens
from polymodal.plugins._grid import (
    IMAGE_EXTENSIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PatchEmbedState,
    adapt_patch_embed,
    embed_tubelets,
    float_pixel_range,
    image_to_chw,
    minmax_scale,
    patch_embed_state,
    percentile_scale,
    quantiles,
    read_image,
    resample_pos_embed_2d,
    window_scale,
)
from polymodal.registry.hookspecs import hookimpl

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "DigitsDataSource",
    "DigitsDataSourceConfig",
    "ImageTokenizer",
    "ImageTokenizerConfig",
    "PatchEmbedState",
    "adapt_patch_embed",
    "embed_tubelets",
    "image_to_chw",
    "minmax_scale",
    "patch_embed_state",
    "percentile_scale",
    "quantiles",
    "read_image",
    "resample_pos_embed_2d",
    "window_scale",
]


# -- the tokenizer -------------------------------------------------------------------------------------------
class ImageTokenizerConfig(TokenizerConfig):
    type: str = "image"
    patch_size: int = Field(16, gt=0, description="Side of the square patches (Conv2d kernel = stride).")
    in_chans: int = Field(3, gt=0, description="Input channels.")
    img_size: int = Field(224, gt=0, description="Side of the grid the positional embedding is defined on.")
    mean: tuple[float, ...] = Field(IMAGENET_MEAN, description="Per-channel mean subtracted in preprocess.")
    std: tuple[float, ...] = Field(IMAGENET_STD, description="Per-channel std divided by in preprocess.")
    resize: int | None = Field(
        None,
        gt=0,
        description="If set, preprocess resizes every image to resize x resize (bilinear, antialiased); "
        "otherwise it keeps the size, which must then be divisible by patch_size.",
    )

    @model_validator(mode="after")
    def _check_image(self) -> ImageTokenizerConfig:
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            got = f"{len(self.mean)} and {len(self.std)}"
            raise ValueError(f"mean and std need {self.in_chans} values (in_chans), got {got}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not divisible by patch_size {self.patch_size}")
        return self


class ImageTokenizer(Tokenizer):
    """ViT patch embedding with a 2-D positional embedding resampled to any grid.

    Subclasses for other pixel sensors (infrared, xray) keep ``forward`` and override :meth:`to_unit_range`,
    the per-image intensity step of ``preprocess``.
    """

    name: ClassVar[str] = "image"
    config_class: ClassVar[type[ImageTokenizerConfig]] = ImageTokenizerConfig
    input_form: ClassVar[str] = "images `[B, C, H, W]`"
    file_extensions: ClassVar[tuple[str, ...]] = IMAGE_EXTENSIONS
    #: How :meth:`read_file` reads a file for ``in_chans`` other than 3 (RGB) and 1 (grey): a
    #: :func:`read_image` mode, ``None`` keeping what is stored.
    file_mode_otherwise: ClassVar[str | None] = None

    def __init__(self, config: ImageTokenizerConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        self.proj = nn.Conv2d(c.in_chans, c.embed_dim, kernel_size=c.patch_size, stride=c.patch_size)
        grid = c.img_size // c.patch_size
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, c.embed_dim))
        trunc_normal_(self.pos_embed, std=0.02)

    @property
    def grid_size(self) -> tuple[int, int]:
        g = self.config.img_size // self.config.patch_size
        return g, g

    def validate(self, x: Any) -> Tensor:
        c = self.config
        expected = f"(B, {c.in_chans}, H, W) with H and W divisible by {c.patch_size}"
        x = check_tensor(x, self.modality, expected, 4)
        h, w = x.shape[2], x.shape[3]
        if x.shape[1] != c.in_chans or h % c.patch_size or w % c.patch_size or h == 0 or w == 0:
            raise self.fail(expected, f"{tuple(x.shape)}")
        return x

    def forward(self, batch: Tensor) -> Tokens:
        x = self.validate(batch)
        x = self.proj(x.to(self.proj.weight.dtype))  # [B, D, h, w]
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # [B, h*w, D]
        return Tokens.full(x + self.pos_embed_for(h, w).to(x.dtype), self.modality, grid=(h, w))

    def pos_embed_for(self, h: int, w: int) -> Tensor:
        """``[1, h*w, D]`` positional embedding for an ``h x w`` patch grid."""
        return resample_pos_embed_2d(self.pos_embed, (h, w), self.grid_size)

    @classmethod
    def read_file(cls, path: str | Path, config: TokenizerConfig, **options: Any) -> Any:
        """One image file -> the array :meth:`preprocess` takes (:func:`read_image`): ``(H, W, 3)`` uint8 for a
        three-channel config, ``(H, W)`` at the stored depth for one channel, else as
        :attr:`file_mode_otherwise` says; ``options`` (e.g. ``mode``) go to :func:`read_image`."""
        mode = {3: "rgb", 1: "gray"}.get(config.in_chans, cls.file_mode_otherwise)
        return read_image(path, **{"mode": mode, **options})

    def patch_embed_state(self) -> PatchEmbedState:
        """This tokenizer's patch embedding (what :func:`patch_embed_state` reads from it), detached."""
        return PatchEmbedState(
            self.proj.weight.detach(), self.proj.bias.detach(), self.pos_embed.detach(), self.grid_size
        )

    @torch.no_grad()
    def load_patch_embed(self, source: Any) -> ImageTokenizer:
        """Initialise from another patch embedding (an :class:`ImageTokenizer`, e.g. an RGB one for this
        one-channel tokenizer; our state dict; a timm ViT or OpenCLIP state dict, see :func:`patch_embed_state`).
        Channels are adapted with :func:`adapt_patch_embed`, a different patch size is resampled (FlexiViT's
        ``resample_patch_embed``), the positional grid is resampled to this tokenizer's. A source without a bias
        (OpenCLIP's ``conv1``) sets the bias to zero. The class token is not this tokenizer's: a whole ViT loads with
        ``MultimodalModel.load_pretrained_image``. Returns ``self``."""
        state = patch_embed_state(source)
        if state.weight.shape[0] != self.embed_dim:
            width = state.weight.shape[0]
            raise ValueError(f"{self.modality}: source width {width} differs from embed_dim {self.embed_dim}")
        weight = adapt_patch_embed(state.weight, self.config.in_chans)
        p = self.config.patch_size
        if tuple(weight.shape[-2:]) != (p, p):
            weight = resample_patch_embed(weight.float(), [p, p]).to(weight.dtype)
        self.proj.weight.copy_(weight)
        if state.bias is not None:
            self.proj.bias.copy_(state.bias)
        else:
            self.proj.bias.zero_()  # the source computes without one
        if state.pos_embed is not None:
            self.pos_embed.copy_(resample_pos_embed_2d(state.pos_embed, self.grid_size, state.grid))
        return self

    def to_unit_range(self, x: Tensor, raw: Any = None) -> Tensor:
        """Pixel values of one ``[C, H, W]`` image -> float in [0, 1]: uint8 / 255; floats are taken as
        already in [0, 1]; other integer types are refused (their range is unknown). ``raw`` (the input as
        the user gave it) is named in errors."""
        if x.dtype == torch.uint8:
            return x.float() / 255.0
        if x.is_floating_point():
            problem = float_pixel_range(x)
            if problem is not None:
                raise self.fail("float pixels in [0, 1] (or uint8 0-255)", problem)
            return x
        raise self.fail("uint8 or float pixels", describe(x if raw is None else raw))

    def preprocess(self, raw: Any) -> Tensor:
        """One image (PIL, ``HWC`` array, or ``CHW`` tensor) -> normalised float ``[C, H, W]``.

        Steps: decode (:func:`image_to_chw`), :meth:`to_unit_range`, resize if ``resize`` is set, then
        ``(x - mean) / std`` per channel.
        """
        c = self.config
        x = image_to_chw(raw, c.in_chans, self.modality)
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise self.fail("finite pixel values", f"{bad} NaN/Inf values in {describe(raw)}")
        x = self.to_unit_range(x, raw)
        if c.resize is not None:
            x = F.interpolate(x[None], size=(c.resize, c.resize), mode="bilinear", antialias=True)[0]
        mean = torch.tensor(c.mean, dtype=x.dtype).view(-1, 1, 1)
        std = torch.tensor(c.std, dtype=x.dtype).view(-1, 1, 1)
        return (x - mean) / std

    def example_input(self, batch_size: int = 2, generator: torch.Generator | None = None) -> Tensor:
        p = self.config.patch_size
        return torch.randn(batch_size, self.config.in_chans, 2 * p, 3 * p, generator=generator)

    def invalid_examples(self) -> list[Any]:
        c = self.config
        p = c.patch_size
        return [
            torch.randn(2, c.in_chans, p + 1, p),  # not divisible
            torch.randn(2, c.in_chans + 1, p, p),  # channels
            torch.randn(c.in_chans, p, p),  # rank
            torch.full((1, c.in_chans, p, p), float("nan")),
            torch.full((1, c.in_chans, p, p), float("inf")),
            torch.zeros(0, c.in_chans, p, p),  # empty batch
            torch.zeros(1, c.in_chans, p, p, dtype=torch.uint8),  # not normalised
            np.zeros((1, c.in_chans, p, p), dtype=np.float32),  # not a tensor
        ]


# -- data ----------------------------------------------------------------------------------------------------
class DigitsDataSourceConfig(DataSourceConfig):
    type: str = "digits"
    image_size: int = Field(32, gt=8, description="Side the 8 x 8 digits are upsampled to (bilinear).")
    num_train: int = Field(1200, gt=0, le=1797, description="Training images (of 1,797).")
    num_test: int = Field(500, gt=0, le=1797, description="Test images (disjoint from training).")


class DigitsDataSource(DataSource):
    """scikit-learn's handwritten digits (UCI, 8 x 8, 10 classes), upsampled and normalised for ``image``."""

    name: ClassVar[str] = "digits"
    modality: ClassVar[str] = "image"
    config_class: ClassVar[type[DigitsDataSourceConfig]] = DigitsDataSourceConfig
    num_classes: ClassVar[int] = 10
    # 16 x 16 digits as 4 patches of 8 x 8, mean-pooled
    demo: ClassVar[DemoSettings | None] = DemoSettings(
        source={"image_size": 16}, tokenizer={"patch_size": 8, "img_size": 16}, head={"pool": "mean"}
    )

    def splits(self) -> dict[str, Dataset]:
        from sklearn.datasets import load_digits

        c = self.config
        if c.num_train + c.num_test > 1797:
            raise ValueError(
                f"digits: num_train + num_test must be at most 1797, got {c.num_train + c.num_test}"
            )
        digits = load_digits()
        images = torch.from_numpy(digits.images).float().div(16.0)[:, None]  # [N, 1, 8, 8] in [0, 1]
        images = F.interpolate(
            images, size=(c.image_size, c.image_size), mode="bilinear", align_corners=False
        )
        images = images.expand(-1, 3, -1, -1)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        images = ((images - mean) / std).contiguous()
        labels = torch.from_numpy(digits.target).long()
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(c.seed))
        train, test = order[: c.num_train], order[c.num_train : c.num_train + c.num_test]
        return {
            "train": TensorDataset(images[train], labels[train]),
            "test": TensorDataset(images[test], labels[test]),
        }


@hookimpl
def polymodal_components() -> list[type]:
    return [ImageTokenizer, DigitsDataSource]
