"""Synthetic time-series data sources (none ships with our dependencies).

``seasonal_series`` (forecasting): per channel a level, a linear trend, two seasonal components (periods 24 and 7,
random amplitudes and phases) and AR(1) noise; the model sees ``context_length`` steps and predicts the next
``horizon``. Learnable because trend and seasonality continue into the horizon; baseline: the MSE of repeating the
last observed value. ``signal_shapes`` (classification): univariate series of five shapes (sine, square, sawtooth,
sparse spikes, random walk) with random frequency, phase, amplitude, offset, noise and length. Learnable because
RevIN (the time-series tokenizer's normalisation, PatchTST arXiv 2211.14730) removes amplitude and offset and the
shapes differ in waveform.

Shapes: ``seasonal_series`` samples ``[C, context_length]`` with targets ``[C, horizon]`` (float);
``signal_shapes`` samples ``[1, L_i]`` with targets class indices in ``range(len(SHAPE_CLASSES))``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor

from polymodal.core.source import TEST_SEED_OFFSET, DataSource, DataSourceConfig, DemoSettings
from polymodal.plugins.time_series.tokenizer import num_patches

__all__ = [
    "SHAPE_CLASSES",
    "SeasonalSeriesDataSource",
    "SeasonalSeriesDataSourceConfig",
    "SignalShapesDataSource",
    "SignalShapesDataSourceConfig",
]


# -- seasonal forecasting ---------------------------------------------------------------------------------------
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
    demo: ClassVar[DemoSettings | None] = DemoSettings()  # the tokenizer's defaults and the forecasting head

    def generate(self, num: int, seed: int) -> list[tuple[Tensor, Tensor]]:
        """``num`` pairs ``(context [C, context_length], target [C, horizon])`` drawn with ``seed``."""
        return list(zip(*self._series(num, seed)))

    def _series(self, num: int, seed: int) -> tuple[Tensor, Tensor]:
        """All ``num`` series at once: ``(contexts [num, C, context_length], targets [num, C, horizon])``."""
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
        ctx, tgt = self._series(self.config.num_test, self.config.seed + TEST_SEED_OFFSET)
        return float(((tgt - ctx[..., -1:]) ** 2).mean())


# -- shape classification ------------------------------------------------------------------------------------
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
        """``num`` series ``(float32 [1, L_i], shape index)``, classes balanced, in a seeded random order."""
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
