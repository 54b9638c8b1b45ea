"""Time-series plugin: PatchTST tokens (Nie et al., arXiv 2211.14730) with reversible instance normalisation
(RevIN, Kim et al., ICLR 2022), and PatchTST's flatten head for forecasting.

Input: ``[B, C, L]`` float series (every step real), a dict ``{"values": [B, C, L], "lengths": [B]}``
(zero-padded, what ``collate`` makes), or a list of ``[C, L_i]`` series.
Tokens: RevIN normalises each series and channel by its own mean and std over its real steps,
``x̂ = (x - μ) / sqrt(σ² + eps)`` (then ``· w_c + b_c`` with ``revin_affine``); each sequence is extended by repeating
its last value ``stride`` times (``pad_end``, PatchTST's ``padding_patch="end"``) and cut into patches of
``patch_length`` every ``stride`` steps: ``N = (L + stride - patch_length) // stride + 1`` (L = 96 -> 12,
L = 336 -> 42, L = 512 -> 64 with 16 / 8). ``channel_mode="independent"`` (PatchTST): every channel is its own
sequence, a linear layer maps each patch ``[patch_length] -> D`` and tokens are ``[B·C, N, D]`` (row ``b·C + c``);
``"mixing"``: one patch ``[C, patch_length]`` of all channels -> ``D``, tokens ``[B, N, D]``. A learned 1-D
positional embedding of ``max_patches`` positions is added (linearly resampled, per sequence, for longer ones).
``Tokens.meta``: ``"series"`` (a :class:`SeriesMeta`: batch size, channels, mode and the RevIN statistics, which
``denormalize`` inverts) and ``"num_patches"`` ``[rows]``.

Head ``forecasting`` (PatchTST's flatten head): the ``N`` patch tokens of each channel are flattened ``[N·D]`` and
a linear layer predicts the horizon ``H`` (one layer shared by the channels, one per channel with
``channel_handling="individual"``, or ``[N·D] -> C·H`` for channel-mixing tokens); the output is de-normalised with
the RevIN statistics, ``[B, C, H]`` in the input's units; loss MSE; metrics MSE and MAE.

Data sources (synthetic; none ships with our dependencies):
``seasonal_series`` (forecasting): per channel a level, a linear trend, two seasonal components (periods 24 and 7,
random amplitudes and phases) and AR(1) noise; the model sees ``context_length`` steps and predicts the next
``horizon``. Learnable because trend and seasonality continue into the horizon; baseline: the MSE of repeating the
last observed value. ``signal_shapes`` (classification): univariate series of five shapes (sine, square, sawtooth,
sparse spikes, random walk) with random frequency, phase, amplitude, offset, noise and length. Learnable because
RevIN removes amplitude and offset and the shapes differ in waveform.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from timm.layers import trunc_normal_
from torch import Tensor, nn
from torch.utils.data import Dataset

from polymodal.core.heads import Head, HeadConfig
from polymodal.core.source import DataSource, DataSourceConfig
from polymodal.core.tokenizer import Tokenizer, TokenizerConfig, describe
from polymodal.core.tokens import Tokens
from polymodal.plugins._sequence import (
    SampleList,
    as_tensor,
    mask_beyond,
    pad_sequences,
    parse_sequence_batch,
    patch_sequences,
    sequence_positions,
)
from polymodal.registry.hookspecs import hookimpl

__all__ = [
    "SHAPE_CLASSES",
    "ForecastingHead",
    "ForecastingHeadConfig",
    "RevinStats",
    "SeasonalSeriesDataSource",
    "SeasonalSeriesDataSourceConfig",
    "SeriesMeta",
    "SignalShapesDataSource",
    "SignalShapesDataSourceConfig",
    "TimeSeriesTokenizer",
    "TimeSeriesTokenizerConfig",
    "num_patches",
    "revin_normalize",
]


def num_patches(length: int, patch_length: int = 16, stride: int = 8, pad_end: bool = True) -> int:
    """Patch tokens of one channel of a series of ``length`` steps (PatchTST: 336 -> 42)."""
    length = max(length + (stride if pad_end else 0), patch_length)
    return (length - patch_length) // stride + 1


# -- RevIN ------------------------------------------------------------------------------------------------------
@dataclass
class RevinStats:
    """Per-instance, per-channel statistics of RevIN: ``mean``, ``std`` ``[B, C]``; ``weight``, ``bias`` ``[C]``
    (the learnable affine, or ``None``); ``eps``."""

    mean: Tensor
    std: Tensor
    weight: Tensor | None
    bias: Tensor | None
    eps: float

    def normalize(self, x: Tensor) -> Tensor:
        """``x [B, C, ...]`` -> ``(x - mean) / std`` (``· weight + bias`` with the affine)."""
        shape = (*self.mean.shape, *([1] * (x.dim() - 2)))
        y = (x - self.mean.view(shape)) / self.std.view(shape)
        if self.weight is not None:
            c = (1, -1, *([1] * (x.dim() - 2)))
            y = y * self.weight.view(c) + self.bias.view(c)
        return y

    def denormalize(self, y: Tensor) -> Tensor:
        """Inverse of :meth:`normalize` for ``y [B, C, ...]`` (as PatchTST: ``/(weight + eps²)``)."""
        shape = (*self.mean.shape, *([1] * (y.dim() - 2)))
        if self.weight is not None:
            c = (1, -1, *([1] * (y.dim() - 2)))
            y = (y - self.bias.view(c)) / (self.weight.view(c) + self.eps * self.eps)
        return y * self.std.view(shape) + self.mean.view(shape)


def revin_normalize(
    x: Tensor, lengths: Tensor, eps: float = 1e-5, weight: Tensor | None = None, bias: Tensor | None = None
) -> tuple[Tensor, RevinStats]:
    """RevIN of ``x [B, C, L]`` over each sequence's real steps (``lengths [B]``): returns the normalised series
    (padding left as it is) and the statistics. ``std = sqrt(biased variance + eps)``."""
    real = mask_beyond(torch.ones_like(x[:, :1]), lengths)  # [B, 1, L], 1 at real steps
    count = lengths.to(x.dtype).view(-1, 1)
    mean = (x * real).sum(-1) / count
    var = (((x - mean.unsqueeze(-1)) * real) ** 2).sum(-1) / count
    stats = RevinStats(mean, torch.sqrt(var + eps), weight, bias, eps)
    return stats.normalize(x), stats


@dataclass
class SeriesMeta:
    """What a head needs to fold channel-independent rows back to ``[B, C, ...]`` and undo RevIN."""

    batch_size: int
    channels: int
    channel_mode: str
    revin: RevinStats | None

    def denormalize(self, y: Tensor) -> Tensor:
        """``y [B, C, ...]`` in normalised units -> the input's units (identity without RevIN)."""
        return y if self.revin is None else self.revin.denormalize(y)


# -- the tokenizer ----------------------------------------------------------------------------------------------
class TimeSeriesTokenizerConfig(TokenizerConfig):
    type: str = "time_series"
    channels: int | None = Field(
        None,
        gt=0,
        description="Variables C; required for channel_mode='mixing' and revin_affine, else any C.",
    )
    channel_mode: Literal["independent", "mixing"] = Field(
        "independent", description="'independent': each channel its own sequence (PatchTST); 'mixing': one."
    )
    patch_length: int = Field(16, gt=0, description="Steps per patch.")
    stride: int = Field(8, gt=0, description="Steps between patch starts.")
    pad_end: bool = Field(
        True, description="Repeat the last value `stride` times before patching (PatchTST)."
    )
    revin: bool = Field(True, description="Reversible instance normalisation per series and channel.")
    revin_affine: bool = Field(False, description="Learnable per-channel affine after RevIN.")
    revin_eps: float = Field(1e-5, gt=0, description="Added to the variance inside the square root.")
    max_patches: int = Field(
        64,
        gt=0,
        description="Positions of the positional table; longer sequences resample it (per sequence).",
    )

    @model_validator(mode="after")
    def _check_channels(self) -> TimeSeriesTokenizerConfig:
        if self.channels is None and (self.channel_mode == "mixing" or (self.revin and self.revin_affine)):
            raise ValueError("channels must be set for channel_mode='mixing' or revin_affine")
        return self


class TimeSeriesTokenizer(Tokenizer):
    """RevIN, PatchTST patches (channel-independent or channel-mixing), linear projection, 1-D positions."""

    name: ClassVar[str] = "time_series"
    config_class: ClassVar[type[TimeSeriesTokenizerConfig]] = TimeSeriesTokenizerConfig
    input_form: ClassVar[str] = "series `[B, C, L]` (or a list of `[C, L_i]`)"

    def __init__(self, config: TimeSeriesTokenizerConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        width = c.patch_length * (c.channels if c.channel_mode == "mixing" else 1)
        self.proj = nn.Linear(width, c.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, c.max_patches, c.embed_dim))
        trunc_normal_(self.pos_embed, std=0.02)
        if c.revin and c.revin_affine:
            self.revin_weight = nn.Parameter(torch.ones(c.channels))
            self.revin_bias = nn.Parameter(torch.zeros(c.channels))
        else:
            self.revin_weight = self.revin_bias = None

    def num_tokens(self, length: int) -> int:
        """Patch tokens per channel (independent) or per series (mixing) of a series of ``length`` steps."""
        c = self.config
        return num_patches(length, c.patch_length, c.stride, c.pad_end)

    def validate(self, batch: Any) -> tuple[Tensor, Tensor]:
        c = self.config

        def channels(x: Tensor) -> str | None:
            return None if c.channels is None or x.shape[1] == c.channels else describe(x)

        shape = f"(B, {c.channels if c.channels is not None else 'C'}, L)"
        values, lengths, _ = parse_sequence_batch(
            batch,
            self.modality,
            key="values",
            expected=shape,
            ndim=3,
            collate=self.collate,
            check_shape=channels,
        )
        return values, lengths

    def forward(self, batch: Any) -> Tokens:
        values, lengths = self.validate(batch)
        c = self.config
        x = values.to(self.proj.weight.dtype)
        b, ch = x.shape[:2]
        stats = None
        if c.revin:
            x, stats = revin_normalize(x, lengths, c.revin_eps, self.revin_weight, self.revin_bias)
        patches, counts, mask = patch_sequences(
            x, lengths, c.patch_length, c.stride, c.stride if c.pad_end else 0
        )
        if c.channel_mode == "independent":  # [B, N, C, P] -> [B·C, N, P]
            patches = patches.permute(0, 2, 1, 3).reshape(b * ch, -1, c.patch_length)
            counts, mask = counts.repeat_interleave(ch), mask.repeat_interleave(ch, dim=0)
        else:
            patches = patches.flatten(2)
        x = self.proj(patches)
        x = x + sequence_positions(self.pos_embed[0], counts, x.shape[1])
        x = x * mask.unsqueeze(-1).to(x.dtype)
        meta = SeriesMeta(b, ch, c.channel_mode, stats)
        return Tokens(x, mask, self.modality, {"series": meta, "num_patches": counts})

    def preprocess(self, raw: Any) -> Tensor:
        """One series ``(C, L)`` or ``(L,)`` (one channel), array or tensor -> float32 ``[C, L]``."""
        c = self.config
        expected = f"one series ({c.channels if c.channels is not None else 'C'}, L) or (L,)"
        x = as_tensor(raw)
        if x is None or x.dim() not in (1, 2) or x.shape[-1] == 0 or x.dtype == torch.bool:
            raise self.fail(expected, describe(raw))
        x = x.float().reshape(-1, x.shape[-1]) if x.dim() == 2 else x.float()[None]
        if c.channels is not None and x.shape[0] != c.channels:
            raise self.fail(expected, describe(raw))
        if not bool(torch.isfinite(x).all()):
            raise self.fail(
                "finite values", f"{int((~torch.isfinite(x)).sum())} NaN/Inf values in {describe(raw)}"
            )
        return x

    def collate(self, samples: Sequence[Any]) -> dict[str, Tensor]:
        """Series ``[C, L_i]`` -> ``{"values": [B, C, max L_i] zero-padded, "lengths": [B]}``."""
        if len(samples) == 0:
            raise self.fail("at least one series to collate", "an empty list")
        xs = [as_tensor(s) for s in samples]
        bad = [s for s, x in zip(samples, xs) if x is None or x.dim() != 2 or x.shape[1] == 0]
        if bad or len({x.shape[0] for x in xs}) != 1:
            got = describe(bad[0]) if bad else f"channel counts {sorted({x.shape[0] for x in xs})}"
            raise self.fail("series (C, L_i) with one C", got)
        if not all(x.is_floating_point() for x in xs):
            raise self.fail("float series", describe(next(x for x in xs if not x.is_floating_point())))
        values, lengths = pad_sequences([x.float() for x in xs])
        return {"values": values, "lengths": lengths}

    def example_input(
        self, batch_size: int = 2, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        c = self.config
        longest = c.patch_length + 3 * c.stride
        lengths = torch.tensor([longest - (i % 2) * c.stride for i in range(batch_size)])
        # one channel unless configured: channel-independent tokens have B·C rows
        values = 3.0 + 2.0 * torch.randn(batch_size, c.channels or 1, longest, generator=generator)
        return {"values": mask_beyond(values, lengths), "lengths": lengths}

    def invalid_examples(self) -> list[Any]:
        c = self.config
        ch, t = c.channels or 2, c.patch_length
        bad = [
            torch.randn(ch, t),  # rank 2
            torch.zeros(0, ch, t),  # empty batch
            torch.zeros(2, ch, 0),  # no steps
            torch.zeros(2, ch, t, dtype=torch.long),
            torch.full((1, ch, t), float("nan")),
            torch.full((1, ch, t), float("inf")),
            {"values": torch.randn(2, ch, t), "lengths": torch.tensor([t, 0])},
            {"series": torch.randn(2, ch, t)},
            [],
            [torch.randn(ch, t), torch.randn(ch + 1, t)],  # channel counts differ
        ]
        if c.channels is not None:
            bad.append(torch.randn(2, ch + 1, t))
        return bad


# -- the forecasting head -----------------------------------------------------------------------------------------
class ForecastingHeadConfig(HeadConfig):
    type: str = "forecasting"
    horizon: int = Field(..., gt=0, description="Steps H to forecast.")
    num_patches: int = Field(
        ...,
        gt=0,
        description="Patch tokens per channel for the context length (see time_series.num_patches).",
    )
    channel_handling: Literal["shared", "individual", "mixing"] = Field(
        "shared",
        description="Channel-independent tokens: one linear for all channels ('shared', PatchTST's default) or one "
        "per channel ('individual'); 'mixing': channel-mixing tokens, one linear to C x H.",
    )
    channels: int | None = Field(
        None, gt=0, description="Variables C; required for 'individual' and 'mixing'."
    )
    dropout: float = Field(
        0.0, ge=0, lt=1, description="Dropout before the linear layer (PatchTST head_dropout)."
    )

    @model_validator(mode="after")
    def _check_channels(self) -> ForecastingHeadConfig:
        if self.channel_handling != "shared" and self.channels is None:
            raise ValueError(f"channel_handling={self.channel_handling!r} needs channels")
        return self


class ForecastingHead(Head):
    """PatchTST's flatten head: ``[N·D]`` per channel -> ``H``, de-normalised through RevIN -> ``[B, C, H]``."""

    name: ClassVar[str] = "forecasting"
    config_class: ClassVar[type[ForecastingHeadConfig]] = ForecastingHeadConfig
    metrics: ClassVar[tuple[str, ...]] = ("mse", "mae")

    def __init__(self, config: ForecastingHeadConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        width = c.num_patches * c.embed_dim
        self.drop = nn.Dropout(c.dropout)
        if c.channel_handling == "individual":
            self.weight = nn.Parameter(torch.empty(c.channels, width, c.horizon))
            self.bias = nn.Parameter(torch.zeros(c.channels, c.horizon))
            nn.init.uniform_(self.weight, -1 / math.sqrt(width), 1 / math.sqrt(width))
        else:
            self.fc = nn.Linear(width, c.horizon * (c.channels if c.channel_handling == "mixing" else 1))

    def _meta(self, tokens: Tokens) -> SeriesMeta:
        meta = tokens.meta.get("series")
        if not isinstance(meta, SeriesMeta):
            raise ValueError(
                f"forecasting: expected tokens of the time_series tokenizer (meta['series']), got {tokens.modality!r} "
                f"tokens with meta keys {sorted(tokens.meta)}"
            )
        c = self.config
        mixing = c.channel_handling == "mixing"
        if mixing != (meta.channel_mode == "mixing"):
            raise ValueError(
                f"forecasting: channel_handling={c.channel_handling!r} does not fit tokens made with "
                f"channel_mode={meta.channel_mode!r}"
            )
        if c.channels is not None and meta.channels != c.channels:
            raise ValueError(f"forecasting: expected series of {c.channels} channels, got {meta.channels}")
        return meta

    def forward(self, tokens: Tokens) -> Tensor:
        meta = self._meta(tokens)
        c = self.config
        x, mask = tokens.embeddings[:, tokens.prefix :], tokens.mask[:, tokens.prefix :]
        if x.shape[1] != c.num_patches or not bool(mask.all()):
            got = f"{x.shape[1]} positions, {int(mask.sum(1).min())}-{int(mask.sum(1).max())} real"
            raise ValueError(
                f"forecasting: expected {c.num_patches} real patch tokens per sequence (num_patches; series of one "
                f"length), got {got}"
            )
        b, ch = meta.batch_size, meta.channels
        x = self.drop(x.flatten(1))  # [rows, N·D]
        if c.channel_handling == "individual":
            y = torch.einsum("bcw,cwh->bch", x.view(b, ch, -1), self.weight) + self.bias
        else:
            y = self.fc(x).view(b, ch, c.horizon)
        return meta.denormalize(y)

    def align_target(self, tokens: Tokens, target: Any) -> Any:
        if isinstance(target, Tensor) and target.dim() == 2:  # [B, H] for one channel
            return target.unsqueeze(1)
        return target

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        if tuple(target.shape) != tuple(output.shape):
            raise ValueError(
                f"forecasting: expected targets of shape {tuple(output.shape)}, got {tuple(target.shape)}"
            )
        return F.mse_loss(output, target.to(output.dtype))


# -- data: seasonal forecasting ----------------------------------------------------------------------------------
class SeasonalSeriesDataSourceConfig(DataSourceConfig):
    type: str = "seasonal_series"
    channels: int = Field(
        1, gt=0, description="Variables per series (1 by default: channel-independent tokens have B·C rows)."
    )
    context_length: int = Field(96, gt=0, description="Steps the model sees.")
    horizon: int = Field(24, gt=0, description="Steps to forecast.")
    periods: tuple[float, ...] = Field((24.0, 7.0), description="Seasonal periods (steps).")
    noise: float = Field(0.1, ge=0, description="Std of the AR(1) noise relative to the seasonal amplitude.")


class SeasonalSeriesDataSource(DataSource):
    """Synthetic multi-seasonal series for forecasting: sample ``[C, context_length]``, target ``[C, horizon]``.

    Channel ``c`` of a series: ``level + slope·t + Σ_k a_k sin(2π t / period_k + φ_k) + e_t`` with
    ``e_t = 0.5 e_{t-1} + noise·scale·ε_t``, all parameters random per series and channel (``scale`` in [0.5, 2]).
    """

    name: ClassVar[str] = "seasonal_series"
    modality: ClassVar[str] = "time_series"
    config_class: ClassVar[type[SeasonalSeriesDataSourceConfig]] = SeasonalSeriesDataSourceConfig

    def generate(self, num: int, seed: int) -> tuple[Tensor, Tensor]:
        """``(contexts [num, C, L], targets [num, C, H])``."""
        c = self.config
        rng = np.random.default_rng(seed)
        shape = (num, c.channels, 1)
        n = c.context_length + c.horizon
        t = np.arange(n)[None, None] + rng.uniform(0, 1000, size=(num, 1, 1))
        scale = rng.uniform(0.5, 2.0, size=shape)
        x = rng.normal(0, 2, size=shape) + rng.normal(0, 0.01, size=shape) * scale * (t - t[..., :1])
        for period in c.periods:
            amp = scale * rng.uniform(0.3, 1.0, size=shape)
            x = x + amp * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi, size=shape))
        eps = rng.standard_normal((num, c.channels, n)) * c.noise * scale
        e = np.zeros_like(eps)
        e[..., 0] = eps[..., 0]
        for i in range(1, n):  # AR(1) recursion over time steps
            e[..., i] = 0.5 * e[..., i - 1] + eps[..., i]
        x = torch.from_numpy(x + e).float()
        return x[..., : c.context_length].contiguous(), x[..., c.context_length :].contiguous()

    def _split(self, num: int, seed: int) -> SampleList:
        ctx, tgt = self.generate(num, seed)
        return SampleList(list(zip(ctx, tgt)))

    def splits(self) -> dict[str, Dataset]:
        c = self.config
        return {
            "train": self._split(c.num_train, c.seed),
            "test": self._split(c.num_test, c.seed + 1_000_003),
        }

    def task(self) -> dict[str, Any]:
        c = self.config
        return {
            "type": "forecasting",
            "horizon": c.horizon,
            "num_patches": num_patches(c.context_length),
            "channels": c.channels,
        }

    def baseline(self) -> float:
        """MSE of the naive forecast (repeat the last observed value) on the test split."""
        ctx, tgt = self.generate(self.config.num_test, self.config.seed + 1_000_003)
        return float(((tgt - ctx[..., -1:]) ** 2).mean())


# -- data: shape classification ------------------------------------------------------------------------------------
SHAPE_CLASSES = ("sine", "square", "sawtooth", "spikes", "random_walk")


class SignalShapesDataSourceConfig(DataSourceConfig):
    type: str = "signal_shapes"
    min_length: int = Field(96, gt=0, description="Shortest series.")
    max_length: int = Field(128, gt=0, description="Longest series.")
    noise: float = Field(0.2, ge=0, description="Largest noise std relative to the amplitude.")

    @model_validator(mode="after")
    def _check_lengths(self) -> SignalShapesDataSourceConfig:
        if self.max_length < self.min_length:
            raise ValueError(f"max_length {self.max_length} < min_length {self.min_length}")
        return self


class SignalShapesDataSource(DataSource):
    """Synthetic univariate shape classification: sample ``[1, L_i]``, target = shape index (see module doc)."""

    name: ClassVar[str] = "signal_shapes"
    modality: ClassVar[str] = "time_series"
    config_class: ClassVar[type[SignalShapesDataSourceConfig]] = SignalShapesDataSourceConfig
    num_classes: ClassVar[int] = len(SHAPE_CLASSES)

    def generate(self, num: int, seed: int) -> list[tuple[Tensor, int]]:
        c = self.config
        rng = np.random.default_rng(seed)
        labels = rng.permutation(np.arange(num) % len(SHAPE_CLASSES))
        n = c.max_length
        t = np.arange(n)[None] / n
        cycles = rng.uniform(2.0, 6.0, size=(num, 1))
        phase = cycles * t + rng.uniform(0, 1, size=(num, 1))  # in cycles
        shapes = {
            "sine": np.sin(2 * np.pi * phase),
            "square": np.sign(np.sin(2 * np.pi * phase)),
            "sawtooth": 2 * (phase % 1.0) - 1,
            "spikes": (rng.random((num, n)) < rng.uniform(0.03, 0.08, size=(num, 1)))
            * rng.uniform(2, 4, (num, n)),
            "random_walk": np.cumsum(rng.standard_normal((num, n)), axis=1) / np.sqrt(n / 8),
        }
        x = np.stack([shapes[name] for name in SHAPE_CLASSES])[labels, np.arange(num)]  # [num, n]
        amp = rng.uniform(0.5, 5.0, size=(num, 1))
        noise = rng.uniform(0.02, c.noise, size=(num, 1)) * rng.standard_normal((num, n))
        x = amp * (x + noise) + rng.normal(0, 3, size=(num, 1))
        lengths = rng.integers(c.min_length, c.max_length + 1, size=num)
        data = torch.from_numpy(x).float()
        return [(data[i, : lengths[i]].reshape(1, -1).clone(), int(labels[i])) for i in range(num)]

    def splits(self) -> dict[str, Dataset]:
        c = self.config
        return {
            "train": SampleList(self.generate(c.num_train, c.seed)),
            "test": SampleList(self.generate(c.num_test, c.seed + 1_000_003)),
        }


@hookimpl
def polymodal_components() -> list[type]:
    return [TimeSeriesTokenizer, ForecastingHead, SeasonalSeriesDataSource, SignalShapesDataSource]
