"""Image plugin: ViT patch embedding (Dosovitskiy et al., arXiv 2010.11929), as in Meta-Transformer.

Input: ``[B, C, H, W]`` float tensors (already normalised; ``preprocess`` turns PIL images, ``HWC`` uint8 or
float arrays and ``CHW`` tensors into that), ``H`` and ``W`` divisible by the patch size ``p``.
Tokens: ``[B, (H/p)·(W/p), D]``, all real, row-major over the patch grid; a learned 2-D positional embedding
defined on an ``img_size/p x img_size/p`` grid and resampled (bicubic) to the input's grid, so any divisible
size works. Default: a 224 x 224 image gives 14 x 14 = 196 tokens.

Shared with the other pixel-grid plugins (infrared, xray, video, hyperspectral): :func:`adapt_patch_embed`
(timm's ``adapt_input_conv``: sum RGB filters for one channel, repeat and rescale for more),
:func:`resample_pos_embed_2d`, :func:`patch_embed_state` (read a patch embedding from a tokenizer, our state
dict or a timm ViT state dict), :func:`image_to_chw` (decode PIL / numpy / tensor images) and the intensity
scalers :func:`minmax_scale`, :func:`percentile_scale`, :func:`window_scale` used by single-channel sensors.

Data source ``digits``: scikit-learn's bundled handwritten digits (real data, 1,797 images of 8 x 8, 10
classes), upsampled to 32 x 32 and repeated over RGB.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from timm.layers import resample_abs_pos_embed, resample_patch_embed, trunc_normal_
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from polymodal.core.component import ModalityInputError
from polymodal.core.source import DataSource, DataSourceConfig
from polymodal.core.tokenizer import Tokenizer, TokenizerConfig, check_tensor, describe
from polymodal.core.tokens import Tokens
from polymodal.registry.hookspecs import hookimpl

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
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
    "resample_pos_embed_2d",
    "window_scale",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# -- shared building blocks ----------------------------------------------------------------------------------
def adapt_patch_embed(weight: Tensor, in_chans: int) -> Tensor:
    """Adapt patch-embedding filters ``[D, C, *kernel]`` to ``in_chans`` input channels (timm's
    ``adapt_input_conv``).

    One channel: the filters are summed over ``C`` (a grey image gets the response its RGB copy got). More
    channels: the ``C`` filters are repeated cyclically and scaled by ``C / in_chans`` (exact for a grey image
    when ``in_chans`` is a multiple of ``C``). Same ``C``: returned as is. Works for Conv2d and Conv3d
    weights.
    """
    if weight.dim() < 3:
        raise ValueError(
            f"adapt_patch_embed: expected a conv weight [D, C, *kernel], got shape {tuple(weight.shape)}"
        )
    if in_chans < 1:
        raise ValueError(f"adapt_patch_embed: in_chans must be positive, got {in_chans}")
    c = weight.shape[1]
    if in_chans == c:
        return weight
    w = weight.float()
    if in_chans == 1:
        w = w.sum(dim=1, keepdim=True)
    else:
        reps = [1, math.ceil(in_chans / c)] + [1] * (w.dim() - 2)
        w = w.repeat(*reps)[:, :in_chans] * (c / in_chans)
    return w.to(weight.dtype)


def resample_pos_embed_2d(pos_embed: Tensor, new_grid: tuple[int, int], old_grid: tuple[int, int]) -> Tensor:
    """``[1, h·w, D]`` positional embedding resampled (bicubic, antialiased) from ``old_grid`` to
    ``new_grid``."""
    if tuple(new_grid) == tuple(old_grid):
        return pos_embed
    return resample_abs_pos_embed(pos_embed, list(new_grid), list(old_grid), num_prefix_tokens=0)


class PatchEmbedState(NamedTuple):
    """A 2-D patch embedding read by :func:`patch_embed_state`."""

    weight: Tensor  # [D, C, p, p]
    bias: Tensor | None  # [D]
    pos_embed: Tensor | None  # [1, h*w, D], without [CLS]
    grid: tuple[int, int] | None  # (h, w) of pos_embed


def patch_embed_state(source: Any) -> PatchEmbedState:
    """Read a 2-D patch embedding from an :class:`ImageTokenizer`, our state dict (``proj.weight``,
    ``proj.bias``, ``pos_embed``) or a timm ViT state dict (``patch_embed.proj.weight``,
    ``patch_embed.proj.bias``, ``pos_embed`` with its [CLS] position, which is dropped). The positional grid
    is taken as square."""
    if isinstance(source, ImageTokenizer):
        return PatchEmbedState(
            source.proj.weight.detach(),
            source.proj.bias.detach(),
            source.pos_embed.detach(),
            source.grid_size,
        )
    if not isinstance(source, Mapping):
        raise TypeError(f"expected an ImageTokenizer or a state dict, got {type(source).__name__}")
    for prefix in ("", "patch_embed."):
        if f"{prefix}proj.weight" in source:
            weight, bias = source[f"{prefix}proj.weight"], source.get(f"{prefix}proj.bias")
            break
    else:
        raise KeyError(
            f"no patch embedding in the state dict: expected 'proj.weight' or 'patch_embed.proj.weight', "
            f"got keys {sorted(source)[:8]}"
        )
    if weight.dim() != 4:
        raise ValueError(
            f"expected a Conv2d patch-embedding weight [D, C, p, p], got shape {tuple(weight.shape)}"
        )
    pos, grid = source.get("pos_embed"), None
    if pos is not None:
        n = pos.shape[1]
        for prefix_tokens in (0, 1):
            side = math.isqrt(n - prefix_tokens)
            if side * side == n - prefix_tokens:
                pos, grid = pos[:, prefix_tokens:], (side, side)
                break
        else:
            raise ValueError(
                f"pos_embed with {n} positions is neither a square grid nor a square grid + [CLS]"
            )
    return PatchEmbedState(weight, bias, pos, grid)


def embed_tubelets(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Non-overlapping 3-D patch embedding: ``F.conv3d(x, weight, bias, stride=kernel)`` as one matmul.

    ``x [B, C, T, H, W]``, ``weight [D, C, t, p, q]`` (a Conv3d's) -> ``[B, T/t, H/p, W/q, D]`` (channels
    last, so ``flatten(1, 3)`` gives the tokens). On CPU this is many times faster than ``conv3d`` at these
    shapes.
    """
    b, c, t, h, w = x.shape
    kt, kh, kw = weight.shape[2:]
    x = x.reshape(b, c, t // kt, kt, h // kh, kh, w // kw, kw).permute(0, 2, 4, 6, 1, 3, 5, 7)
    return F.linear(x.reshape(b, t // kt, h // kh, w // kw, -1), weight.reshape(weight.shape[0], -1), bias)


def image_to_chw(raw: Any, in_chans: int, modality: str = "image") -> Tensor:
    """One image -> ``[C, H, W]`` tensor: uint8 stays uint8, other integers become int64, floats float32.

    Accepts a PIL image (16-bit and float modes keep their values when ``in_chans == 1``), a numpy array
    ``(H, W)`` / ``(H, W, C)``, or a tensor ``(H, W)`` / ``(C, H, W)``. A one-channel image given to a
    multi-channel tokenizer is repeated over the channels (grey -> RGB); another channel mismatch is an error.
    """
    if hasattr(raw, "convert") and hasattr(raw, "mode"):  # PIL.Image, without importing PIL
        keep = in_chans == 1 and raw.mode in {"L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
        raw = np.asarray(raw if keep else raw.convert("RGB" if in_chans == 3 else "L"))
    if isinstance(raw, np.ndarray):
        if raw.ndim not in (2, 3) or raw.size == 0:
            raise ModalityInputError(modality, f"an image array (H, W) or (H, W, {in_chans})", describe(raw))
        arr = raw[..., None] if raw.ndim == 2 else raw
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
        elif arr.dtype.kind in "iu" and arr.dtype != np.uint8:
            arr = arr.astype(np.int64)  # torch has no uint16/uint32 arithmetic on CPU
        elif arr.dtype != np.uint8:
            raise ModalityInputError(modality, "integer or float pixels", describe(raw))
        x = torch.from_numpy(np.array(arr, order="C")).permute(2, 0, 1)  # a copy: arrays may be read-only
        expected = f"an image array (H, W) or (H, W, {in_chans})"
    elif isinstance(raw, Tensor):
        if raw.dim() not in (2, 3) or raw.numel() == 0:
            raise ModalityInputError(modality, f"an image tensor (H, W) or ({in_chans}, H, W)", describe(raw))
        x = raw[None] if raw.dim() == 2 else raw
        if x.is_floating_point():
            x = x.float()
        elif x.dtype == torch.bool or x.is_complex():
            raise ModalityInputError(modality, "integer or float pixels", describe(raw))
        elif x.dtype != torch.uint8:
            x = x.long()
        expected = f"an image tensor (H, W) or ({in_chans}, H, W)"
    else:
        raise ModalityInputError(
            modality, "a PIL image, a numpy array (H, W, C) or a tensor (C, H, W)", describe(raw)
        )
    if x.shape[0] != in_chans:
        if x.shape[0] != 1:
            raise ModalityInputError(modality, expected, describe(raw))
        x = x.expand(in_chans, -1, -1)
    return x


def quantiles(x: Tensor, q: Tensor) -> Tensor:
    """``[..., len(q)]`` quantiles of ``x [..., N]`` over its last dim (linear interpolation, as
    ``np.percentile``).

    Sort-based, so unlike ``torch.quantile`` it has no input-size limit.
    """
    s = x.sort(dim=-1).values
    pos = q.to(s.dtype) * (s.shape[-1] - 1)
    lo = pos.floor().long().clamp(0, s.shape[-1] - 1)
    hi = (lo + 1).clamp(max=s.shape[-1] - 1)
    frac = pos - lo.to(s.dtype)
    lo_v, hi_v = s[..., lo], s[..., hi]
    return lo_v + (hi_v - lo_v) * frac


def minmax_scale(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Scale each image ``[..., C, H, W]`` per channel to [0, 1] by its own min and max (constant -> 0)."""
    x = x if x.is_floating_point() else x.float()
    flat = x.flatten(-2)
    lo, hi = flat.amin(-1)[..., None, None], flat.amax(-1)[..., None, None]
    return (x - lo) / (hi - lo).clamp_min(eps)


def percentile_scale(x: Tensor, low: float, high: float, *, clip: bool = True, eps: float = 1e-12) -> Tensor:
    """Map each image's per-channel ``low``-th and ``high``-th percentiles (0-100) of ``x [..., C, H, W]`` to
    0 and 1; clip to [0, 1] when ``clip``. Affine changes of the input (``a·x + b``, ``a > 0``) do not change
    it."""
    x = x if x.is_floating_point() else x.float()
    q = torch.tensor([low / 100.0, high / 100.0], dtype=torch.float64, device=x.device)
    bounds = quantiles(x.flatten(-2), q).to(x.dtype)
    lo, hi = bounds[..., 0, None, None], bounds[..., 1, None, None]
    y = (x - lo) / (hi - lo).clamp_min(eps)
    return y.clamp(0.0, 1.0) if clip else y


def window_scale(x: Tensor, center: float, width: float) -> Tensor:
    """Display window (DICOM VOI LUT, linear): ``clip((x - (center - width/2)) / width, 0, 1)``."""
    return ((x - (center - width / 2.0)) / width).clamp(0.0, 1.0)


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

    @torch.no_grad()
    def load_patch_embed(self, source: Any) -> ImageTokenizer:
        """Initialise from another patch embedding (an :class:`ImageTokenizer`, e.g. an RGB one for this
        one-channel tokenizer; our state dict; or a timm ViT state dict). Channels are adapted with
        :func:`adapt_patch_embed`, a different patch size is resampled (FlexiViT's ``resample_patch_embed``),
        the positional grid is resampled to this tokenizer's. Returns ``self``."""
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
