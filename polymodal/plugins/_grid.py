"""Building blocks shared by the pixel-grid plugins (image, infrared, xray, video, hyperspectral): patch
embeddings (ViT, Dosovitskiy et al., arXiv 2010.11929) and their reuse across channel counts, patch sizes and grids,
tubelet embedding as one matmul, decoding of image inputs and files, and per-image intensity scalers. Not a plugin
(no entry point, no hook).

Shapes: a Conv2d patch embedding is ``weight [D, C, p, p]``, ``bias [D]`` and a positional table ``[1, h·w, D]``
on an ``h x w`` patch grid (:class:`PatchEmbedState`); a Conv3d one is ``[D, C, t, p, q]``. Images are ``[C, H,
W]`` tensors (:func:`image_to_chw`), batches ``[..., C, H, W]`` for the scalers; :func:`read_image` gives numpy
``(H, W)`` or ``(H, W, 3)``.

- :func:`adapt_patch_embed`: filters for another channel count (timm's ``adapt_input_conv``).
- :func:`resample_pos_embed_2d`: a positional table on another grid (bicubic, antialiased; timm).
- :func:`patch_embed_state`: a patch embedding read from a tokenizer (its ``patch_embed_state()``), our state dict,
  a timm ViT or an OpenCLIP state dict.
- :func:`embed_tubelets`: non-overlapping Conv3d as one matmul, channels last.
- :func:`image_to_chw`, :func:`read_image`: one image (PIL, numpy, tensor; a file) -> pixels.
- :func:`quantiles`, :func:`minmax_scale`, :func:`percentile_scale`, :func:`window_scale`: per-image intensity
  scaling of single-channel sensors (thermal counts, radiographs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from torch import Tensor

from polymodal.core.component import ModalityInputError
from polymodal.core.encoders.pretrained import read_vit_embeddings
from polymodal.core.tokenizer import describe

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "PatchEmbedState",
    "adapt_patch_embed",
    "embed_tubelets",
    "float_pixel_range",
    "image_to_chw",
    "minmax_scale",
    "patch_embed_state",
    "percentile_scale",
    "quantiles",
    "read_image",
    "resample_pos_embed_2d",
    "window_scale",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Suffixes of the image files :func:`read_image` reads (Pillow).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


# -- patch embeddings ----------------------------------------------------------------------------------------
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
    bias: Tensor | None  # [D]; None: the source projection has none (a loader then zeroes its own)
    pos_embed: Tensor | None  # [1, h*w, D], without [CLS]
    grid: tuple[int, int] | None  # (h, w) of pos_embed
    cls_token: Tensor | None = None  # [1, 1, D], the source ViT's class token with its position added


def patch_embed_state(source: Any) -> PatchEmbedState:
    """Read a 2-D patch embedding from an :class:`~polymodal.plugins.image.ImageTokenizer` (any object with a
    ``patch_embed_state()`` method giving its own :class:`PatchEmbedState`), our state dict (``proj.weight``,
    ``proj.bias``, ``pos_embed``), a timm ViT state dict (``patch_embed.proj.weight``, ``patch_embed.proj.bias``,
    ``cls_token``, ``pos_embed`` with its class position) or an OpenCLIP one (``conv1.weight``, no bias,
    ``class_embedding``, ``positional_embedding`` with its class position; a whole CLIP file's ``visual.`` keys), read
    by :func:`~polymodal.core.encoders.pretrained.read_vit_embeddings`. ``pos_embed`` keeps the patches' positions;
    the class token, with its position added, is ``cls_token``. The positional grid is taken as square."""
    own = getattr(source, "patch_embed_state", None)
    if callable(own):
        return own()
    if not isinstance(source, Mapping):
        raise TypeError(f"expected an ImageTokenizer or a state dict, got {type(source).__name__}")
    if "proj.weight" not in source:
        try:
            emb = read_vit_embeddings(source)
        except KeyError:
            raise KeyError(
                "no patch embedding in the state dict: expected 'proj.weight' (ours), 'patch_embed.proj.weight' "
                f"(timm) or 'conv1.weight' with 'class_embedding' (OpenCLIP), got keys {sorted(source)[:8]}"
            ) from None
        return PatchEmbedState(emb.weight, emb.bias, emb.pos_embed, emb.grid, emb.cls_token)
    weight, bias = source["proj.weight"], source.get("proj.bias")
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


# -- images in -----------------------------------------------------------------------------------------------
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


_GREY_DEEP = {"I;16": np.uint16, "I;16L": np.uint16, "I;16B": np.uint16, "I;16N": np.uint16, "I": np.int32}


def read_image(path: str | Path, mode: str | None = None) -> np.ndarray:
    """One image file -> a numpy array, rotated upright by its EXIF orientation.

    ``mode``: ``None`` keeps what is stored (greyscale ``(H, W)`` at its depth: uint8, 16-bit as uint16, 32-bit
    integer as int32, float as float32; colour, palette, CMYK and alpha images as RGB ``(H, W, 3)`` uint8);
    ``"gray"`` gives ``(H, W)`` (greyscale kept at full depth, colour converted to 8-bit luminance); ``"rgb"``
    gives ``(H, W, 3)`` uint8 (16-bit greyscale scaled to 8 bits, not clipped).
    """
    if mode not in (None, "gray", "rgb"):
        raise ValueError(f"read_image: mode must be None, 'gray' or 'rgb', got {mode!r}")
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        img.load()
    grey = img.mode in ("1", "L", "F") or img.mode in _GREY_DEEP
    if grey:
        if img.mode == "1":
            arr = np.asarray(img.convert("L"))
        elif img.mode in _GREY_DEEP:
            arr = np.asarray(img).astype(_GREY_DEEP[img.mode])
        else:
            arr = np.asarray(img)
        if mode != "rgb":
            return np.ascontiguousarray(arr)
        if arr.dtype != np.uint8:  # to 8 bits by the type's range (floats are taken as [0, 1])
            if arr.dtype.kind == "f":
                arr = np.clip(arr, 0.0, 1.0) * 255.0
            else:
                arr = arr.astype(np.float64) * (255.0 / np.iinfo(arr.dtype).max)
            arr = np.round(arr).clip(0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=-1)
    rgb = img.convert("RGB")
    return np.asarray(rgb.convert("L") if mode == "gray" else rgb).copy()


# -- intensity scaling ---------------------------------------------------------------------------------------
def float_pixel_range(x: Tensor) -> str | None:
    """``None`` when float pixels look like the [0, 1] range they are taken in, else what came: values up to
    255 (0-255 floats, which would be taken as 255 times too bright) or far below 0 (already normalised).
    Small overshoot from resampling is accepted."""
    if not x.is_floating_point() or x.numel() == 0:
        return None
    lo, hi = float(x.min()), float(x.max())
    if hi > 1.5 or lo < -0.5:
        return f"float pixels in [{lo:.3g}, {hi:.3g}] (divide 0-255 values by 255, or pass uint8)"
    return None


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
