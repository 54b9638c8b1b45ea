"""Video plugin: tubelet embedding (ViViT, Arnab et al., arXiv 2103.15691; VideoMAE, Tong et al., arXiv
2203.12602), as the video branch of Meta-Transformer (arXiv 2307.10802).

Input: ``[B, T, C, H, W]`` float clips (already normalised), ``T`` divisible by the tubelet length ``t`` (2)
and ``H``, ``W`` by the patch size ``p`` (16). ``preprocess`` takes one clip as the decoders give it, uint8
(or float in [0, 1]) ``[T, H, W, C]`` from a numpy array or tensor, or a list of frames (PIL images / ``HWC``
arrays), samples ``num_frames`` (16) frames uniformly (the middle frame of each of ``num_frames`` equal
segments), can resize them, and normalises with ``mean``/``std``.
Tokens: ``[B, (T/t)·(H/p)·(W/p), D]``, all real, time-major (``meta["grid"] = (T/t, H/p, W/p)``). A Conv3d
with kernel = stride = ``t x p x p`` embeds each tubelet (computed as one matmul,
:func:`~polymodal.plugins.image.embed_tubelets`); the positional embedding is separable: a spatial table on
an ``img_size/p`` grid resampled (bicubic) like the image tokenizer's, plus a temporal table of
``num_frames/t`` entries interpolated (linear) to ``T/t``. Default: 16 frames of 224 x 224 give
8 x 14 x 14 = 1,568 tokens; the demo's 8 frames of 32 x 32 give 4 x 2 x 2 = 16.

Weight reuse: ``load_patch_embed(image_tokenizer)`` inflates a 2-D patch embedding to the tubelet (I3D,
Carreira and Zisserman, arXiv 1705.07750): ``average`` copies the filter into every one of the ``t`` frames
divided by ``t``, ``centre`` puts it in frame ``t // 2`` only; channels are adapted with
:func:`~polymodal.plugins.image.adapt_patch_embed`, the spatial positions are the image's, the temporal ones
zero. Either way a clip of identical frames gives the image tokens of that frame at every time step.

Data source ``moving_shapes`` (synthetic): clips of one shape (disk, square or diamond, random size and
colour) moving in a straight line at a random speed over a noisy background, in one of ``num_directions`` (8)
evenly spaced directions; label = the direction. A model can learn it because the direction is the
displacement of the only object between frames, which tubelets spanning two frames and attention across time
both see; shape, colour, speed and start position vary and carry no label information.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from timm.layers import resample_patch_embed, trunc_normal_
from torch import Tensor, nn
from torch.utils.data import Dataset

from polymodal.core.source import DataSource, DataSourceConfig
from polymodal.core.tokenizer import Tokenizer, check_tensor, describe
from polymodal.core.tokens import Tokens
from polymodal.plugins.image import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageTokenizerConfig,
    adapt_patch_embed,
    embed_tubelets,
    image_to_chw,
    patch_embed_state,
    resample_pos_embed_2d,
)
from polymodal.registry.hookspecs import hookimpl

__all__ = [
    "MovingShapesDataSource",
    "MovingShapesDataSourceConfig",
    "VideoTokenizer",
    "VideoTokenizerConfig",
    "inflate_patch_embed",
    "preprocess_clip",
    "uniform_frame_indices",
]


# -- building blocks -----------------------------------------------------------------------------------------
def uniform_frame_indices(total: int, num: int) -> Tensor:
    """Indices of ``num`` frames sampled uniformly from ``total``: the middle frame of each of ``num`` equal
    segments, ``floor((i + 0.5) · total / num)``. Fewer frames than ``num`` repeat frames."""
    return (
        ((torch.arange(num, dtype=torch.float64) + 0.5) * (total / num)).floor().long().clamp_max(total - 1)
    )


def inflate_patch_embed(
    weight: Tensor, tubelet: int, mode: Literal["average", "centre"] = "average"
) -> Tensor:
    """Inflate Conv2d filters ``[D, C, p, p]`` to Conv3d filters ``[D, C, t, p, p]`` (I3D).

    ``average``: the filter in every frame, divided by ``t``; ``centre``: the filter in frame ``t // 2``,
    zeros elsewhere. Both give a clip of ``t`` identical frames the response of the 2-D filter to one frame.
    """
    if weight.dim() != 4:
        raise ValueError(
            f"inflate_patch_embed: expected Conv2d weights [D, C, p, p], got {tuple(weight.shape)}"
        )
    if mode == "average":
        return weight[:, :, None].expand(-1, -1, tubelet, -1, -1) / tubelet
    if mode == "centre":
        out = weight.new_zeros(weight.shape[0], weight.shape[1], tubelet, *weight.shape[2:])
        out[:, :, tubelet // 2] = weight
        return out
    raise ValueError(f"inflate_patch_embed: mode must be 'average' or 'centre', got {mode!r}")


def preprocess_clip(
    clip: Tensor,
    num_frames: int,
    mean: Sequence[float],
    std: Sequence[float],
    resize: int | None = None,
) -> Tensor:
    """One clip ``[T, H, W, C]`` (uint8, or float in [0, 1]) -> normalised float ``[num_frames, C, H', W']``:
    uniform temporal sampling, ``/255`` for uint8, optional square resize (bilinear, antialiased), then
    ``(x - mean) / std`` per channel."""
    x = clip[uniform_frame_indices(clip.shape[0], num_frames)]
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    x = x.permute(0, 3, 1, 2)  # [T, C, H, W]
    if resize is not None:
        x = F.interpolate(x, size=(resize, resize), mode="bilinear", antialias=True)
    mean_t = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean_t) / std_t


# -- the tokenizer -------------------------------------------------------------------------------------------
class VideoTokenizerConfig(ImageTokenizerConfig):
    type: str = "video"
    num_frames: int = Field(
        16,
        gt=0,
        description="Frames preprocess samples per clip; the temporal table has num_frames/tubelet_size.",
    )
    tubelet_size: int = Field(2, gt=0, description="Frames per tubelet (Conv3d temporal kernel = stride).")
    inflation: Literal["average", "centre"] = Field(
        "average", description="How load_patch_embed inflates 2-D image filters over the tubelet's frames."
    )

    @model_validator(mode="after")
    def _check_video(self) -> VideoTokenizerConfig:
        if self.num_frames % self.tubelet_size:
            raise ValueError(
                f"num_frames {self.num_frames} is not divisible by tubelet_size {self.tubelet_size}"
            )
        return self


class VideoTokenizer(Tokenizer):
    """Tubelet (Conv3d) embedding with a separable space + time positional embedding."""

    name: ClassVar[str] = "video"
    config_class: ClassVar[type[VideoTokenizerConfig]] = VideoTokenizerConfig
    input_form: ClassVar[str] = "clips `[B, T, C, H, W]`"

    def __init__(self, config: VideoTokenizerConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        kernel = (c.tubelet_size, c.patch_size, c.patch_size)
        self.proj = nn.Conv3d(c.in_chans, c.embed_dim, kernel_size=kernel, stride=kernel)
        g = c.img_size // c.patch_size
        self.pos_embed_spatial = nn.Parameter(torch.zeros(1, g * g, c.embed_dim))
        self.pos_embed_temporal = nn.Parameter(torch.zeros(1, c.num_frames // c.tubelet_size, c.embed_dim))
        trunc_normal_(self.pos_embed_spatial, std=0.02)
        trunc_normal_(self.pos_embed_temporal, std=0.02)

    @property
    def grid_size(self) -> tuple[int, int]:
        g = self.config.img_size // self.config.patch_size
        return g, g

    def validate(self, x: Any) -> Tensor:
        c = self.config
        t, p = c.tubelet_size, c.patch_size
        expected = f"(B, T, {c.in_chans}, H, W) with T divisible by {t} and H and W divisible by {p}"
        x = check_tensor(x, self.modality, expected, 5)
        _, frames, chans, h, w = x.shape
        if chans != c.in_chans or frames % t or h % p or w % p or 0 in (frames, h, w):
            raise self.fail(expected, f"{tuple(x.shape)}")
        return x

    def forward(self, batch: Tensor) -> Tokens:
        x = self.validate(batch)
        x = embed_tubelets(x.transpose(1, 2).to(self.proj.weight.dtype), self.proj.weight, self.proj.bias)
        nt, h, w = x.shape[1:4]  # x: [B, T/t, h, w, D]
        x = x.flatten(1, 3)  # [B, nt*h*w, D], time-major
        return Tokens.full(x + self.pos_embed_for(nt, h, w).to(x.dtype), self.modality, grid=(nt, h, w))

    def pos_embed_for(self, nt: int, h: int, w: int) -> Tensor:
        """``[1, nt·h·w, D]``: the temporal entry of each time step plus the spatial entry of each patch."""
        spatial = resample_pos_embed_2d(self.pos_embed_spatial, (h, w), self.grid_size)  # [1, h*w, D]
        temporal = self.pos_embed_temporal
        if temporal.shape[1] != nt:
            temporal = F.interpolate(temporal.transpose(1, 2), size=nt, mode="linear", align_corners=False)
            temporal = temporal.transpose(1, 2)
        return (temporal[:, :, None, :] + spatial[:, None, :, :]).flatten(1, 2)

    @torch.no_grad()
    def load_patch_embed(
        self, source: Any, inflation: Literal["average", "centre"] | None = None
    ) -> VideoTokenizer:
        """Initialise from a 2-D patch embedding (an image tokenizer, our image state dict, or a timm ViT
        state dict) by inflation (``inflation``, default the config's). Channels are adapted, a different
        patch size is resampled, the spatial positions are the image's resampled to this grid, the temporal
        ones zero. Returns ``self``."""
        state = patch_embed_state(source)
        if state.weight.shape[0] != self.embed_dim:
            raise ValueError(
                f"video: source width {state.weight.shape[0]} differs from embed_dim {self.embed_dim}"
            )
        c = self.config
        weight = adapt_patch_embed(state.weight, c.in_chans)
        if tuple(weight.shape[-2:]) != (c.patch_size, c.patch_size):
            weight = resample_patch_embed(weight.float(), [c.patch_size, c.patch_size]).to(weight.dtype)
        self.proj.weight.copy_(inflate_patch_embed(weight, c.tubelet_size, inflation or c.inflation))
        if state.bias is not None:
            self.proj.bias.copy_(state.bias)
        if state.pos_embed is not None:
            self.pos_embed_spatial.copy_(resample_pos_embed_2d(state.pos_embed, self.grid_size, state.grid))
            self.pos_embed_temporal.zero_()
        return self

    def preprocess(self, raw: Any) -> Tensor:
        """One clip -> normalised float ``[num_frames, C, H, W]``.

        ``raw``: uint8 or float (in [0, 1]) ``[T, H, W, C]`` as a numpy array or tensor (what torchvision's
        ``read_video``, decord and PyAV give), or a list of frames (PIL images, ``HWC`` arrays).
        """
        c = self.config
        expected = f"a clip (T, H, W, {c.in_chans}) of uint8 or float pixels, or a list of frames"
        # only the sampled frames are decoded / copied
        if isinstance(raw, (list, tuple)) and raw:
            keep = uniform_frame_indices(len(raw), c.num_frames).tolist()
            frames = [image_to_chw(raw[i], c.in_chans, self.modality) for i in keep]
            if len({(f.shape, f.dtype) for f in frames}) != 1:
                raise self.fail("frames of one size and dtype", f"{len(raw)} frames of different sizes")
            x = torch.stack(frames).permute(0, 2, 3, 1)
        elif isinstance(raw, (np.ndarray, Tensor)):
            shape, dtype = tuple(raw.shape), raw.dtype
            ok_dtype = dtype in (np.uint8, torch.uint8) or (
                raw.dtype.kind == "f" if isinstance(raw, np.ndarray) else raw.is_floating_point()
            )
            if len(shape) != 4 or shape[-1] != c.in_chans or 0 in shape or not ok_dtype:
                raise self.fail(expected, describe(raw))
            keep = uniform_frame_indices(shape[0], c.num_frames)
            x = torch.from_numpy(raw[keep.numpy()]) if isinstance(raw, np.ndarray) else raw[keep]
        else:
            raise self.fail(expected, describe(raw))
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise self.fail(
                "finite pixel values", f"{bad} NaN/Inf values in the {c.num_frames} sampled frames"
            )
        return preprocess_clip(x, c.num_frames, c.mean, c.std, c.resize)

    def example_input(self, batch_size: int = 2, generator: torch.Generator | None = None) -> Tensor:
        c = self.config
        return torch.randn(
            batch_size,
            2 * c.tubelet_size,
            c.in_chans,
            2 * c.patch_size,
            2 * c.patch_size,
            generator=generator,
        )

    def invalid_examples(self) -> list[Any]:
        c = self.config
        t, p, ch = c.tubelet_size, c.patch_size, c.in_chans
        return [
            torch.randn(2, ch, p, p),  # rank: an image batch
            torch.randn(2, t, ch + 1, p, p),  # channels
            torch.randn(2, t, p, p, ch),  # channels-last clip, not preprocessed
            torch.randn(2, t + 1, ch, p, p) if t > 1 else torch.randn(2, t, ch, p + 1, p),  # frames
            torch.randn(2, t, ch, p + 1, p),  # height
            torch.full((1, t, ch, p, p), float("nan")),
            torch.zeros(0, t, ch, p, p),  # empty batch
            torch.zeros(1, t, ch, p, p, dtype=torch.uint8),  # not normalised
        ]


# -- data ----------------------------------------------------------------------------------------------------
class MovingShapesDataSourceConfig(DataSourceConfig):
    type: str = "moving_shapes"
    num_frames: int = Field(8, ge=2, description="Frames per clip.")
    image_size: int = Field(32, ge=16, description="Side of the square frames (pixels).")
    num_directions: int = Field(
        8, ge=2, le=16, description="Evenly spaced directions of motion (the classes)."
    )
    speed: tuple[float, float] = Field((1.0, 2.0), description="Range of the speed, in pixels per frame.")
    noise: float = Field(0.05, ge=0, description="Std of the Gaussian pixel noise (pixel range [0, 1]).")


class _ClipDataset(Dataset):
    """uint8 clips ``[N, T, H, W, 3]`` preprocessed on access (as a DataLoader worker would)."""

    def __init__(self, clips: Tensor, labels: Tensor, num_frames: int) -> None:
        self.clips, self.labels, self.num_frames = clips, labels, num_frames

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return preprocess_clip(self.clips[i], self.num_frames, IMAGENET_MEAN, IMAGENET_STD), self.labels[i]


class MovingShapesDataSource(DataSource):
    """Synthetic clips of a shape moving in one of several directions; the label is the direction."""

    name: ClassVar[str] = "moving_shapes"
    modality: ClassVar[str] = "video"
    config_class: ClassVar[type[MovingShapesDataSourceConfig]] = MovingShapesDataSourceConfig

    def raw_clips(self, num: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``num`` uint8 clips ``[num, T, S, S, 3]`` and their direction labels ``[num]``."""
        c = self.config
        s, frames = c.image_size, c.num_frames
        labels = rng.integers(0, c.num_directions, size=num)
        angle = labels * (2 * math.pi / c.num_directions)
        speed = rng.uniform(*c.speed, size=num)
        velocity = np.stack([-np.sin(angle), np.cos(angle)], 1) * speed[:, None]  # (dy, dx); 0 = rightwards
        radius = rng.uniform(0.1, 0.18, size=num) * s
        # the path's midpoint is chosen so that the whole path stays inside the frame
        half = np.abs(velocity) * (frames - 1) / 2 + radius[:, None] + 1
        mid = rng.uniform(np.minimum(half, s / 2), np.maximum(s - half, s / 2))  # [num, 2]
        steps = np.arange(frames) - (frames - 1) / 2
        pos = mid[:, None] + steps[None, :, None] * velocity[:, None]  # [num, T, 2]
        yy, xx = np.meshgrid(np.arange(s) + 0.5, np.arange(s) + 0.5, indexing="ij")
        dy = (yy - pos[..., 0, None, None]) / radius[:, None, None, None]  # [num, T, S, S]
        dx = (xx - pos[..., 1, None, None]) / radius[:, None, None, None]
        shape = rng.integers(0, 3, size=num)[:, None, None, None]
        dist = np.where(shape == 0, np.sqrt(dy**2 + dx**2), np.maximum(np.abs(dy), np.abs(dx)))
        dist = np.where(shape == 2, np.abs(dy) + np.abs(dx), dist)
        inside = (dist <= 1.0)[..., None]
        background = rng.uniform(0.0, 0.35, size=(num, 1, 1, 1, 3)).astype(np.float32)
        colour = rng.uniform(0.55, 1.0, size=(num, 1, 1, 1, 3)).astype(np.float32)
        clips = rng.standard_normal((num, frames, s, s, 3), dtype=np.float32) * np.float32(c.noise)
        clips += np.where(inside, colour, background)
        return np.clip(np.round(clips * 255), 0, 255).astype(np.uint8), labels

    def splits(self) -> dict[str, Dataset]:
        c = self.config
        rng = np.random.default_rng(c.seed)
        out = {}
        for split, num in (("train", c.num_train), ("test", c.num_test)):
            clips, labels = self.raw_clips(num, rng)
            out[split] = _ClipDataset(torch.from_numpy(clips), torch.from_numpy(labels), c.num_frames)
        return out

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return self.config.num_directions


@hookimpl
def polymodal_components() -> list[type]:
    return [VideoTokenizer, MovingShapesDataSource]
