"""IMU plugin: inertial signals cut into time patches, each projected linearly over all channels, as
Meta-Transformer's IMU tokenizer (arXiv 2307.10802) and patch-based sensor transformers.

Input: ``[B, C, T]`` float signals (``C = channels``, default 6: accelerometer x y z in m/s², gyroscope x y z in
rad/s; 3 or 9 with a magnetometer in µT work too) at ``sample_rate`` Hz, every step real; a dict ``{"values":
[B, C, T], "lengths": [B]}`` (zero-padded, what ``collate`` makes); or a list of ``[C, T_i]`` recordings.
``preprocess`` resamples a recording given with another rate (windowed sinc).
Tokens: per-channel normalisation ``(x - mean_c) / std_c``; windows of ``patch_length`` steps every ``stride``
steps (the partial window at the end is dropped; a recording shorter than one window is extended by repeating its
last step); each window ``[C, patch_length]`` is flattened and projected by one linear layer to ``D``; a learned 1-D
positional embedding of ``max_patches`` positions is added (linearly resampled, per recording, for longer ones).
``[B, N, D]`` with ``N = (T - patch_length) // stride + 1``; window ``w`` is real when its steps are inside the
recording. Default (50 Hz, windows of 16 every 8): 2.56 s (128 steps) -> 15 tokens, 10 s -> 61 tokens.

Files: CSV, TSV or Parquet tables with one column per axis (:attr:`ImuTokenizer.file_extensions`), read by
:func:`read_imu` into ``(C, T)`` (or ``{"values": (C, T), "sample_rate": Hz}`` with a time column).

Data source ``activities``: synthetic, documented in :class:`ActivitiesDataSource`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, model_validator
from timm.layers import trunc_normal_
from torch import Tensor, nn

from polymodal.core.source import DataSource, DataSourceConfig, DemoSettings
from polymodal.core.tokenizer import Tokenizer, TokenizerConfig, describe
from polymodal.core.tokens import Tokens
from polymodal.plugins._sequence import (
    as_tensor,
    collate_ragged,
    numeric_columns,
    parse_sequence_batch,
    patch_sequences,
    ragged_example,
    resample,
    sequence_positions,
)
from polymodal.registry.hookspecs import hookimpl

__all__ = [
    "ACTIVITIES",
    "GRAVITY",
    "IMU_COLUMNS",
    "IMU_EXTENSIONS",
    "ActivitiesDataSource",
    "ActivitiesDataSourceConfig",
    "ImuTokenizer",
    "ImuTokenizerConfig",
    "default_imu_scales",
    "read_imu",
]

GRAVITY = 9.80665
#: Column names :func:`read_imu` takes by default: accelerometer x y z, gyroscope x y z.
IMU_COLUMNS = ("acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z")
#: Suffixes of the recording files ``polymodal.data.from_folder`` takes by default.
IMU_EXTENSIONS = (".csv", ".tsv", ".parquet")


def default_imu_scales(channels: int) -> tuple[float, ...]:
    """Default per-channel std: accelerometer (channels 0-2) in g, gyroscope (3-5) in rad/s, magnetometer (6-8)
    in units of 50 µT, anything further unscaled."""
    scales = (GRAVITY,) * 3 + (1.0,) * 3 + (50.0,) * 3
    return tuple(scales[i] if i < len(scales) else 1.0 for i in range(channels))


# -- files ------------------------------------------------------------------------------------------------------
def read_imu(
    path: str | Path,
    columns: Sequence[str] = IMU_COLUMNS,
    time_column: str | None = None,
    time_unit: float = 1.0,
) -> np.ndarray | dict[str, Any]:
    """One IMU recording from a CSV with named axis columns -> ``(C, T)`` float32 in ``columns`` order.

    With ``time_column`` (timestamps in units of ``time_unit`` seconds, e.g. ``1e-3`` for milliseconds) the
    result is ``{"values": (C, T), "sample_rate": Hz}``, the rate from the median time step, and the IMU tokenizer
    resamples it to its own rate; without, the recording is taken to be at the tokenizer's rate."""
    from polymodal.data.readers import read_table

    p = Path(path)
    frame = read_table(p)
    values = numeric_columns(frame, columns, (), p.name)
    if time_column is None:
        return values
    if time_column not in frame.columns:
        raise KeyError(f"{p.name}: no time column {time_column!r}; it has {list(frame.columns)}")
    t = frame[time_column].to_numpy(dtype=np.float64) * time_unit
    dt = np.median(np.diff(t)) if len(t) > 1 else 0.0
    if not dt > 0:
        raise ValueError(f"{p.name}: timestamps in {time_column!r} do not increase")
    return {"values": values, "sample_rate": round(1.0 / dt)}


# -- the tokenizer ----------------------------------------------------------------------------------------------
class ImuTokenizerConfig(TokenizerConfig):
    type: str = "imu"
    channels: int = Field(6, gt=0, description="Sensor channels (6: accelerometer xyz + gyroscope xyz).")
    sample_rate: int = Field(
        50, gt=0, description="Rate (Hz) the tokenizer expects; preprocess resamples others."
    )
    patch_length: int = Field(16, gt=0, description="Steps per patch (window).")
    stride: int = Field(8, gt=0, description="Steps between patch starts (< patch_length overlaps).")
    mean: tuple[float, ...] | None = Field(None, description="Per-channel mean subtracted; None: zeros.")
    std: tuple[float, ...] | None = Field(
        None,
        description="Per-channel std divided by; None: accelerometer in g, gyroscope in rad/s, magnetometer / 50.",
    )
    max_patches: int = Field(
        128,
        gt=0,
        description="Positions of the positional table; longer recordings resample it (per recording).",
    )

    @model_validator(mode="after")
    def _check_stats(self) -> ImuTokenizerConfig:
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and len(value) != self.channels:
                raise ValueError(f"{name} needs {self.channels} values (channels), got {len(value)}")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        return self

    @property
    def channel_mean(self) -> tuple[float, ...]:
        return self.mean if self.mean is not None else (0.0,) * self.channels

    @property
    def channel_std(self) -> tuple[float, ...]:
        return self.std if self.std is not None else default_imu_scales(self.channels)


class ImuTokenizer(Tokenizer):
    """Per-channel normalisation, time patches over all channels, linear projection, 1-D positions."""

    name: ClassVar[str] = "imu"
    config_class: ClassVar[type[ImuTokenizerConfig]] = ImuTokenizerConfig
    input_form: ClassVar[str] = "signals `[B, C, T]` (or a list of `[C, T_i]`)"
    file_extensions: ClassVar[tuple[str, ...]] = IMU_EXTENSIONS

    def __init__(self, config: ImuTokenizerConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        self.proj = nn.Linear(c.channels * c.patch_length, c.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, c.max_patches, c.embed_dim))
        trunc_normal_(self.pos_embed, std=0.02)

    @classmethod
    def read_file(
        cls, path: str | Path, config: TokenizerConfig, **options: Any
    ) -> np.ndarray | dict[str, Any]:
        """One recording file -> ``(C, T)`` (or with its rate, given ``time_column``): :func:`read_imu` with
        ``options`` (``columns``, ``time_column``, ``time_unit``), what :meth:`preprocess` takes; the config does not
        change how it is read."""
        return read_imu(path, **options)

    def num_tokens(self, num_steps: int) -> int:
        """Real tokens of a recording of ``num_steps`` steps."""
        c = self.config
        return (max(num_steps, c.patch_length) - c.patch_length) // c.stride + 1

    def validate(self, batch: Any) -> tuple[Tensor, Tensor]:
        c = self.config

        def channels(x: Tensor) -> str | None:
            return None if x.shape[1] == c.channels else describe(x)

        values, lengths, _ = parse_sequence_batch(
            batch,
            self.modality,
            key="values",
            expected=f"(B, {c.channels}, T)",
            ndim=3,
            collate=self.collate,
            check_shape=channels,
        )
        return values, lengths

    def forward(self, batch: Any) -> Tokens:
        values, lengths = self.validate(batch)
        c = self.config
        x = values.to(self.proj.weight.dtype)
        mean = torch.tensor(c.channel_mean, dtype=x.dtype, device=x.device).view(1, -1, 1)
        std = torch.tensor(c.channel_std, dtype=x.dtype, device=x.device).view(1, -1, 1)
        patches, counts, mask = patch_sequences((x - mean) / std, lengths, c.patch_length, c.stride)
        x = self.proj(patches.flatten(2))  # [B, N, C * patch] -> [B, N, D]
        x = x + sequence_positions(self.pos_embed[0], counts, x.shape[1])
        x = x * mask.unsqueeze(-1).to(x.dtype)
        return Tokens(x, mask, self.modality, {"num_patches": counts})

    def preprocess(self, raw: Any) -> Tensor:
        """One recording ``(channels, T)`` (array or tensor), or ``(recording, sample_rate)``, or a dict
        ``{"values": …, "sample_rate": …}`` -> float32 ``[channels, T']`` at ``sample_rate``."""
        c = self.config
        expected = f"one recording ({c.channels}, T) (channels first), optionally with its sample rate"
        rate: Any = None
        if isinstance(raw, Mapping):
            if "values" not in raw:
                raise self.fail(f"{expected}: a dict with 'values'", f"a dict with keys {sorted(raw)}")
            rate = raw.get("sample_rate")
            raw = raw["values"]
        elif isinstance(raw, tuple) and len(raw) == 2:
            raw, rate = raw
        if rate is None:
            if "sample_rate" not in c.model_fields_set:  # a 10 Hz recording would silently pass as 50 Hz
                warnings.warn(
                    f"imu: a recording without its sample rate is taken as {c.sample_rate} Hz (the tokenizer's "
                    "default sample_rate); pass (values, rate) or {'values': ..., 'sample_rate': ...}, or set "
                    "sample_rate in the tokenizer config",
                    UserWarning,
                    stacklevel=2,
                )
            rate = c.sample_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) or rate <= 0:
            raise self.fail("a positive integer sample rate (Hz)", repr(rate))
        if int(rate) != rate:
            raise self.fail("a positive integer sample rate (Hz)", repr(rate))
        x = as_tensor(raw)
        if x is None or x.dim() != 2 or x.shape[1] == 0 or x.dtype == torch.bool:
            raise self.fail(expected, describe(raw))
        if x.shape[0] != c.channels:
            hint = "; transpose (T, channels) arrays" if x.shape[1] == c.channels else ""
            raise self.fail(expected + hint, describe(raw))
        x = x.float()
        if not bool(torch.isfinite(x).all()):
            raise self.fail(
                "finite values", f"{int((~torch.isfinite(x)).sum())} NaN/Inf values in {describe(raw)}"
            )
        return resample(x, int(rate), c.sample_rate).contiguous()

    def collate(self, samples: Sequence[Any]) -> dict[str, Tensor]:
        """Recordings ``[C, T_i]`` -> ``{"values": [B, C, max T_i] zero-padded, "lengths": [B]}``."""
        c = self.config
        values, lengths = collate_ragged(
            samples,
            self.modality,
            noun="recording",
            expected=f"recordings ({c.channels}, T_i)",
            ndim=2,
            channels=c.channels,
            floating="float recordings",
        )
        return {"values": values, "lengths": lengths}

    def example_input(
        self, batch_size: int = 2, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        c = self.config
        values, lengths = ragged_example(
            batch_size, (c.channels,), c.patch_length + 3 * c.stride, c.stride, generator
        )
        return {"values": values, "lengths": lengths}

    def invalid_examples(self) -> list[Any]:
        c = self.config
        t = c.patch_length
        return [
            torch.randn(c.channels, t),  # rank 2
            torch.randn(2, c.channels + 1, t),  # channels
            torch.zeros(0, c.channels, t),  # empty batch
            torch.zeros(2, c.channels, 0),  # no steps
            torch.zeros(2, c.channels, t, dtype=torch.long),  # integer
            torch.full((1, c.channels, t), float("nan")),
            torch.full((1, c.channels, t), float("inf")),
            {"values": torch.randn(2, c.channels, t), "lengths": torch.tensor([t, t + 1])},
            {"values": torch.randn(2, c.channels, t), "lengths": torch.tensor([t])},  # lengths shape
            {"signal": torch.randn(2, c.channels, t)},  # wrong key
            [],
            [torch.randn(c.channels + 1, t)],  # a recording with other channels
        ]


# -- data: simulated activities ------------------------------------------------------------------------------------
ACTIVITIES = ("standing", "lying", "walking", "running", "jumping", "cycling")


class ActivitiesDataSourceConfig(DataSourceConfig):
    type: str = "activities"
    sample_rate: int = Field(50, gt=0, description="Sample rate of the recordings (Hz).")
    min_duration: float = Field(2.0, gt=0, description="Shortest recording (seconds).")
    max_duration: float = Field(3.0, gt=0, description="Longest recording (seconds).")
    mount_angle: float = Field(
        20.0, ge=0, le=45, description="Largest random sensor-mounting rotation (degrees)."
    )
    accel_noise: float = Field(0.15, ge=0, description="Largest accelerometer noise std (m/s²).")
    gyro_noise: float = Field(0.04, ge=0, description="Largest gyroscope noise std (rad/s).")

    @model_validator(mode="after")
    def _check_durations(self) -> ActivitiesDataSourceConfig:
        if self.max_duration < self.min_duration:
            raise ValueError(f"max_duration {self.max_duration} < min_duration {self.min_duration}")
        return self


def _axis_angle(axis: Tensor, angle: Tensor) -> Tensor:
    """Rodrigues: rotations ``[N, 3, 3]`` about unit ``axis [N, 3]`` by ``angle [N]``."""
    k = torch.zeros(axis.shape[0], 3, 3, dtype=axis.dtype)
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - k.transpose(1, 2)
    a = angle.view(-1, 1, 1)
    return torch.eye(3, dtype=axis.dtype) + a.sin() * k + (1 - a.cos()) * (k @ k)


class ActivitiesDataSource(DataSource):
    """Simulated 6-axis IMU recordings of six activities, from a sensor strapped to the thigh (target = activity).

    Model (world frame z up; sensor-to-world rotation ``R(t) = Rz(heading(t)) · Ry(pitch(t)) · R_mount``):
    the accelerometer measures the specific force ``R(t)ᵀ (a(t) + g ẑ)`` (gravity plus the body's linear
    acceleration ``a``, given along the walking heading), the gyroscope the body rate ``ω`` with
    ``[ω]× = R(t)ᵀ dR/dt`` (exact, from the analytic pitch and heading rates); both get Gaussian noise and the
    gyroscope a constant bias.
    Per activity: thigh pitch (0 = upright) and its swing, and the periodic acceleration:

    - standing: upright, slow sway of 1-3° at 0.2-0.4 Hz, no acceleration;
    - lying: thigh horizontal (pitch ~90°), small drift;
    - walking: stride 0.8-1.1 Hz, swing 20-30°, vertical bounce 1.5-3 m/s² at the step rate (2x stride);
    - running: stride 1.3-1.6 Hz, swing 35-50°, bounce 6-10 m/s², forward 2-4 m/s²;
    - jumping: 1.5-2.2 Hz, landing impacts of 15-25 m/s² (a sharp periodic pulse), small knee swing;
    - cycling: cadence 1.0-1.5 Hz, thigh around 60° with a 20-30° pedalling swing, little bounce.

    Each recording also gets a random mounting rotation (up to ``mount_angle``), a random heading that turns slowly,
    random phase and a random duration. A model can learn it: gravity's direction separates postures, and the
    rhythm's frequency, amplitude and shape separate the movements. Synthetic: no IMU data set ships with our
    dependencies.
    """

    name: ClassVar[str] = "activities"
    modality: ClassVar[str] = "imu"
    config_class: ClassVar[type[ActivitiesDataSourceConfig]] = ActivitiesDataSourceConfig
    num_classes: ClassVar[int] = len(ACTIVITIES)
    demo: ClassVar[DemoSettings | None] = DemoSettings(head={"pool": "mean"})

    def generate(self, num: int, seed: int) -> list[tuple[Tensor, int]]:
        """``num`` recordings ``(float32 [6, T_i], activity)``, classes balanced, in a seeded random order."""
        c = self.config
        g = torch.Generator().manual_seed(seed)

        def u(lo: float, hi: float, shape: tuple[int, ...] = ()) -> Tensor:
            return lo + (hi - lo) * torch.rand((num, *shape), generator=g, dtype=torch.float64)

        labels = torch.randperm(num, generator=g) % len(ACTIVITIES)
        lengths = (u(c.min_duration, c.max_duration) * c.sample_rate).long()
        t = torch.arange(int(lengths.max()), dtype=torch.float64).unsqueeze(0) / c.sample_rate  # [1, T]

        # per-activity ranges (rows: standing, lying, walking, running, jumping, cycling)
        def pick(lo: Sequence[float], hi: Sequence[float]) -> Tensor:
            lo_t, hi_t = torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64)
            return (lo_t[labels] + (hi_t[labels] - lo_t[labels]) * u(0.0, 1.0)).unsqueeze(1)  # [N, 1]

        freq = pick((0.2, 0.05, 0.8, 1.3, 1.5, 1.0), (0.4, 0.1, 1.1, 1.6, 2.2, 1.5))
        pitch0 = pick((-5.0, 85.0, -5.0, 5.0, 0.0, 55.0), (5.0, 95.0, 5.0, 15.0, 10.0, 65.0))
        swing = pick((1.0, 0.5, 20.0, 35.0, 5.0, 20.0), (3.0, 1.5, 30.0, 50.0, 12.0, 30.0))
        bounce = pick((0.0, 0.0, 1.5, 6.0, 15.0, 0.3), (0.0, 0.0, 3.0, 10.0, 25.0, 0.8))
        forward = pick((0.0, 0.0, 0.5, 2.0, 0.5, 0.2), (0.0, 0.0, 1.5, 4.0, 1.5, 0.5))
        cycle = 2 * math.pi * freq * t + u(0.0, 2 * math.pi).unsqueeze(1)  # [N, T]
        pitch = torch.deg2rad(pitch0 + swing * cycle.sin())
        pitch_rate = torch.deg2rad(swing) * 2 * math.pi * freq * cycle.cos()
        turn_rate = u(-0.3, 0.3).unsqueeze(1).expand_as(cycle)  # heading changes slowly (rad/s)
        a_up = bounce * (2 * cycle).cos()  # walking/running bounce at the step rate (2x stride)
        pulse = cycle.cos().clamp_min(0) ** 8  # jumping: landing impacts
        jumping = (labels == ACTIVITIES.index("jumping")).unsqueeze(1)
        a_up = torch.where(jumping, bounce * (pulse - pulse.mean(dim=1, keepdim=True)), a_up)
        a_fwd = forward * cycle.sin()

        # specific force in the heading frame (Rz(heading)ᵀ removes the heading), then Ry(pitch)ᵀ, then mountᵀ
        cp, sp = pitch.cos(), pitch.sin()
        f_up = a_up + GRAVITY
        accel = torch.stack([cp * a_fwd - sp * f_up, torch.zeros_like(a_fwd), sp * a_fwd + cp * f_up], -1)
        # body rate: Ry(pitch)ᵀ (0, 0, heading rate) + (0, pitch rate, 0), then mountᵀ
        gyro = torch.stack([-sp * turn_rate, pitch_rate, cp * turn_rate], -1)  # [N, T, 3]
        axis = torch.nn.functional.normalize(torch.randn(num, 3, generator=g, dtype=torch.float64), dim=1)
        mount = _axis_angle(axis, torch.deg2rad(u(0.0, c.mount_angle)))  # [N, 3, 3] sensor -> body
        accel = torch.einsum("nji,ntj->nti", mount, accel)
        gyro = torch.einsum("nji,ntj->nti", mount, gyro)
        noise_a = u(0.02, c.accel_noise).view(-1, 1, 1) * torch.randn(
            accel.shape, generator=g, dtype=torch.float64
        )
        noise_g = u(0.005, c.gyro_noise).view(-1, 1, 1) * torch.randn(
            gyro.shape, generator=g, dtype=torch.float64
        )
        gyro = gyro + noise_g + u(-0.02, 0.02, (1, 3))  # constant bias per recording
        signals = torch.cat([accel + noise_a, gyro], -1).transpose(1, 2).float()  # [N, 6, T]
        return [(signals[i, :, : int(lengths[i])].clone(), int(labels[i])) for i in range(num)]


@hookimpl
def polymodal_components() -> list[type]:
    return [ImuTokenizer, ActivitiesDataSource]
