"""Image plugin: ViT patch embedding (Dosovitskiy et al., arXiv 2010.11929), as in Meta-Transformer.

Input: ``[B, C, H, W]`` float tensors (already normalised; ``preprocess`` turns PIL images, ``HWC`` uint8 or
float arrays and ``CHW`` tensors into that), ``H`` and ``W`` divisible by the patch size ``p``.
Tokens: ``[B, (H/p)·(W/p), D]``, all real; a learned 2-D positional embedding defined on a
``img_size/p x img_size/p`` grid and resampled (bicubic) to the input's grid, so any divisible size works.

Data source ``digits``: scikit-learn's bundled handwritten digits (real data, 1,797 images of 8 x 8, 10
classes), upsampled to 32 x 32 and repeated over RGB.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from timm.layers import resample_abs_pos_embed, trunc_normal_
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from polymodal.core.data import DataSource, DataSourceConfig
from polymodal.core.tokenizer import Tokenizer, TokenizerConfig, check_tensor, describe
from polymodal.core.tokens import Tokens
from polymodal.registry.hookspecs import hookimpl

__all__ = ["DigitsDataSource", "DigitsDataSourceConfig", "ImageTokenizer", "ImageTokenizerConfig"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageTokenizerConfig(TokenizerConfig):
    type: str = "image"
    patch_size: int = Field(16, gt=0, description="Side of the square patches (Conv2d kernel = stride).")
    in_chans: int = Field(3, gt=0, description="Input channels.")
    img_size: int = Field(224, gt=0, description="Side of the grid the positional embedding is defined on.")
    mean: tuple[float, ...] = Field(IMAGENET_MEAN, description="Per-channel mean subtracted in preprocess.")
    std: tuple[float, ...] = Field(IMAGENET_STD, description="Per-channel std divided by in preprocess.")


class ImageTokenizer(Tokenizer):
    """ViT patch embedding with a 2-D positional embedding resampled to any grid."""

    name: ClassVar[str] = "image"
    config_class: ClassVar[type[ImageTokenizerConfig]] = ImageTokenizerConfig

    def __init__(self, config: ImageTokenizerConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        if len(c.mean) != c.in_chans or len(c.std) != c.in_chans:
            raise ValueError(
                f"image: mean and std need {c.in_chans} values (in_chans), got {len(c.mean)} and {len(c.std)}"
            )
        if c.img_size % c.patch_size:
            raise ValueError(f"image: img_size {c.img_size} is not divisible by patch_size {c.patch_size}")
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
        if x.shape[1] != c.in_chans or x.shape[2] % c.patch_size or x.shape[3] % c.patch_size:
            raise self.fail(expected, f"{tuple(x.shape)}")
        return x

    def forward(self, batch: Tensor) -> Tokens:
        x = self.validate(batch)
        x = self.proj(x.to(self.proj.weight.dtype))  # [B, D, h, w]
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # [B, h*w, D]
        return Tokens.full(x + self.pos_embed_for(h, w), self.modality, grid=(h, w))

    def pos_embed_for(self, h: int, w: int) -> Tensor:
        """``[1, h*w, D]`` positional embedding for an ``h x w`` patch grid."""
        if (h, w) == self.grid_size:
            return self.pos_embed
        return resample_abs_pos_embed(self.pos_embed, [h, w], list(self.grid_size), num_prefix_tokens=0)

    def preprocess(self, raw: Any) -> Tensor:
        """One image (PIL, ``HWC`` uint8/float array, or ``CHW`` tensor) -> normalised float ``[C, H, W]``.

        uint8 input is scaled to [0, 1]; float arrays/tensors are taken as already in [0, 1].
        """
        c = self.config
        if hasattr(raw, "convert") and hasattr(raw, "size"):  # PIL.Image, without importing PIL
            raw = np.asarray(raw.convert("RGB" if c.in_chans == 3 else "L"))
        if isinstance(raw, np.ndarray):
            arr = raw[..., None] if raw.ndim == 2 else raw
            if arr.ndim != 3 or arr.shape[-1] != c.in_chans:
                raise self.fail(f"an image array (H, W, {c.in_chans}) or (H, W)", describe(raw))
            x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
        elif isinstance(raw, Tensor):
            x = raw[None] if raw.dim() == 2 else raw
            if x.dim() != 3 or x.shape[0] != c.in_chans:
                raise self.fail(f"an image tensor ({c.in_chans}, H, W)", describe(raw))
        else:
            raise self.fail("a PIL image, a numpy array (H, W, C) or a tensor (C, H, W)", describe(raw))
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        elif x.is_floating_point():
            x = x.float()
        else:
            raise self.fail("uint8 or float pixels", describe(raw))
        mean = torch.tensor(c.mean).view(-1, 1, 1)
        std = torch.tensor(c.std).view(-1, 1, 1)
        return check_tensor((x - mean) / std, self.modality, "(C, H, W)", 3)

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
            torch.zeros(0, c.in_chans, p, p),  # empty batch
        ]


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

    def task(self) -> dict[str, Any]:
        return {"type": "classification", "num_classes": 10}

    def baseline(self) -> float:
        return 0.1


@hookimpl
def polymodal_components() -> list[type]:
    return [ImageTokenizer, DigitsDataSource]
