"""The ``synthetic_sounds`` data source: synthetic 16 kHz clips of six sound classes (rising and falling chirps, low
and high harmonic tones, band-limited noise, amplitude-modulated tones) with random parameters, gain, fades and
background noise. A model can learn it: the classes differ in spectro-temporal shape (a sloped ridge, stacks of
partials at different pitch, a band of energy, a pulsing single partial), which the log-Mel patches of the audio
tokenizer (AST, arXiv 2104.01778) show directly.

Shapes: samples float32 ``[samples]`` (0.5-1 s at 16 kHz by default), targets class indices in
``range(len(SOUND_CLASSES))``, classes balanced.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor

from polymodal.core.source import DataSource, DataSourceConfig, DemoSettings

__all__ = ["SOUND_CLASSES", "SyntheticSoundsDataSource", "SyntheticSoundsDataSourceConfig"]

SOUND_CLASSES = ("rising_chirp", "falling_chirp", "low_harmonic", "high_harmonic", "noise_band", "am_tone")


class SyntheticSoundsDataSourceConfig(DataSourceConfig):
    type: str = "synthetic_sounds"
    num_train: int = Field(480, gt=0, description="Training clips.")
    num_test: int = Field(240, gt=0, description="Test clips.")
    sample_rate: int = Field(16000, gt=0, description="Sample rate of the clips (Hz).")
    min_duration: float = Field(0.5, gt=0, description="Shortest clip (seconds).")
    max_duration: float = Field(1.0, gt=0, description="Longest clip (seconds).")
    snr_db: tuple[float, float] = Field(
        (10.0, 30.0), description="Range of the signal-to-background-noise ratio (dB)."
    )

    @model_validator(mode="after")
    def _check_durations(self) -> SyntheticSoundsDataSourceConfig:
        if self.max_duration < self.min_duration:
            raise ValueError(f"max_duration {self.max_duration} < min_duration {self.min_duration}")
        if self.snr_db[1] < self.snr_db[0]:
            raise ValueError(f"snr_db must be (low, high), got {self.snr_db}")
        return self


def _sound(kind: int, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One clean clip of class ``SOUND_CLASSES[kind]`` (peak about 1), ``n`` samples at ``sr`` Hz."""
    t = np.arange(n) / sr
    dur = n / sr
    name = SOUND_CLASSES[kind]
    if name in ("rising_chirp", "falling_chirp"):
        lo = rng.uniform(300.0, 800.0)
        hi = lo * rng.uniform(2.5, 5.0)
        f0, f1 = (lo, hi) if name == "rising_chirp" else (hi, lo)
        phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * dur))  # linear sweep f0 -> f1
        x = np.sin(phase)
    elif name in ("low_harmonic", "high_harmonic"):
        f0 = rng.uniform(100.0, 220.0) if name == "low_harmonic" else rng.uniform(500.0, 1000.0)
        k = np.arange(1, 7)[:, None]
        amps = rng.uniform(0.3, 1.0, size=(6, 1)) / k
        x = (amps * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi, size=(6, 1)))).sum(0)
    elif name == "noise_band":
        center = rng.uniform(800.0, 5000.0)
        spec = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1.0 / sr)
        spec[(freqs < center / 1.3) | (freqs > center * 1.3)] = 0
        x = np.fft.irfft(spec, n)
    else:  # am_tone
        carrier = rng.uniform(300.0, 2500.0)
        rate = rng.uniform(4.0, 12.0)
        depth = rng.uniform(0.7, 1.0)
        x = (1 - depth * 0.5 * (1 + np.cos(2 * np.pi * rate * t))) * np.sin(2 * np.pi * carrier * t)
    return x / (np.abs(x).max() + 1e-9)


class SyntheticSoundsDataSource(DataSource):
    """Synthetic 16 kHz clips of six sound classes (see the module docstring); target = class index."""

    name: ClassVar[str] = "synthetic_sounds"
    modality: ClassVar[str] = "audio"
    config_class: ClassVar[type[SyntheticSoundsDataSourceConfig]] = SyntheticSoundsDataSourceConfig
    num_classes: ClassVar[int] = len(SOUND_CLASSES)
    #: the demo: 64 mel bins cut into 32 x 32 patches without overlap (a few tokens per clip), mean pooling
    demo: ClassVar[DemoSettings | None] = DemoSettings(
        tokenizer={"num_mel_bins": 64, "patch_size": 32, "stride_time": 32, "stride_freq": 32},
        head={"pool": "mean"},
    )

    def generate(self, num: int, seed: int) -> list[tuple[Tensor, int]]:
        """``num`` clips ``(float32 [samples], class)``, classes balanced, in a seeded random order."""
        c = self.config
        rng = np.random.default_rng(seed)
        labels = rng.permutation(np.arange(num) % len(SOUND_CLASSES))
        out = []
        fade = int(0.01 * c.sample_rate)
        for label in labels:
            n = int(rng.uniform(c.min_duration, c.max_duration) * c.sample_rate)
            x = _sound(int(label), n, c.sample_rate, rng)
            ramp = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / max(fade, 1))
            x = x * ramp
            snr = rng.uniform(*c.snr_db)
            noise = rng.standard_normal(n) * np.sqrt(np.mean(x**2) / 10 ** (snr / 10))
            x = rng.uniform(0.1, 0.8) * (x + noise)
            out.append((torch.from_numpy(x.astype(np.float32)), int(label)))
        return out
