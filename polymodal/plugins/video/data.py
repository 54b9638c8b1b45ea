"""The ``moving_shapes`` data source (synthetic): clips of one shape (disk, square or diamond, random size and
colour) moving in a straight line at a random speed over a noisy background, in one of ``num_directions`` (8)
evenly spaced directions; label = the direction. A model can learn it because the direction is the displacement of
the only object between frames, which tubelets spanning two frames and attention across time both see; shape,
colour, speed and start position vary and carry no label information.

Shapes: samples ``[num_frames, 3, S, S]`` normalised float (ImageNet mean and std), targets long in
``[0, num_directions)``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import Tensor
from torch.utils.data import Dataset

from polymodal.core.source import DataSource, DataSourceConfig, DemoSettings
from polymodal.plugins._grid import IMAGENET_MEAN, IMAGENET_STD
from polymodal.plugins.video.frames import preprocess_clip

__all__ = ["MovingShapesDataSource", "MovingShapesDataSourceConfig"]


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
    # 8 frames of 16 x 16 as 4 tubelets of all 8 frames x 8 x 8 pixels, mean-pooled
    demo: ClassVar[DemoSettings | None] = DemoSettings(
        source={"num_frames": 8, "image_size": 16},
        tokenizer={"patch_size": 8, "img_size": 16, "num_frames": 8, "tubelet_size": 8},
        head={"pool": "mean"},
    )

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
