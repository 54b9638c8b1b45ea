"""The video tokenizer: tubelet embedding (ViViT, Arnab et al., arXiv 2103.15691; VideoMAE, Tong et al., arXiv
2203.12602) with a separable space + time positional embedding, and I3D inflation (Carreira and Zisserman, arXiv
1705.07750) of 2-D patch embeddings into tubelets.

Shapes: ``[B, T, C, H, W]`` normalised float clips, ``T`` divisible by ``tubelet_size`` ``t`` and ``H``, ``W`` by
``patch_size`` ``p`` -> :class:`~polymodal.core.tokens.Tokens` ``[B, (T/t)·(H/p)·(W/p), D]``, all real,
time-major (``meta["grid"] = (T/t, H/p, W/p)``). ``preprocess``: one clip ``[T, H, W, C]`` or a list of frames ->
``[num_frames, C, H, W]``; ``read_file``: a video file -> ``(num_frames, H, W, 3)`` uint8.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from timm.layers import resample_patch_embed, trunc_normal_
from torch import Tensor, nn

from polymodal.core.tokenizer import Tokenizer, TokenizerConfig, check_tensor, describe
from polymodal.core.tokens import Tokens
from polymodal.plugins._grid import (
    adapt_patch_embed,
    embed_tubelets,
    float_pixel_range,
    image_to_chw,
    patch_embed_state,
    resample_pos_embed_2d,
)
from polymodal.plugins.image import ImageTokenizerConfig
from polymodal.plugins.video.files import VIDEO_EXTENSIONS, read_video
from polymodal.plugins.video.frames import preprocess_clip, uniform_frame_indices

__all__ = ["VideoTokenizer", "VideoTokenizerConfig", "inflate_patch_embed"]


# -- building blocks -----------------------------------------------------------------------------------------
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
    file_extensions: ClassVar[tuple[str, ...]] = VIDEO_EXTENSIONS

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

    @classmethod
    def read_file(cls, path: str | Path, config: TokenizerConfig, **options: Any) -> Any:
        """One video file -> ``(num_frames, H, W, 3)`` uint8 frames (:func:`read_video`, the config's
        ``num_frames`` unless ``options`` give it), what :meth:`preprocess` takes."""
        return read_video(path, **{"num_frames": config.num_frames, **options})

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
        else:  # a source without a bias (OpenCLIP's conv1): no random one left behind
            self.proj.bias.zero_()
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
        problem = float_pixel_range(x)
        if problem is not None:
            raise self.fail("float pixels in [0, 1] (or uint8 0-255)", problem)
        total = len(raw)
        if total < c.num_frames:  # said, not silent: uniform sampling repeats frames of a short clip
            warnings.warn(
                f"video: a clip of {total} frames is stretched to num_frames={c.num_frames} by repeating frames; "
                f"set num_frames={total} (or fewer) to use each frame once",
                UserWarning,
                stacklevel=2,
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
