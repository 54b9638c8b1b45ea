"""Audio plugin: Kaldi log-Mel filter banks and overlapping 16 x 16 patches, as AST (Gong et al., arXiv 2104.01778)
and Meta-Transformer (arXiv 2307.10802).

Input: waveforms ``[B, S]`` (float, at ``sample_rate``, every sample real), a dict ``{"waveform": [B, S],
"lengths": [B], "sample_rate": int}`` (``lengths`` and ``sample_rate`` optional; ``collate`` makes it), or a list of
1-D clips of different lengths. Another ``sample_rate`` is resampled in torch (windowed sinc, as torchaudio).
Features: Kaldi-compatible log-Mel filter banks computed batched in torch (:func:`kaldi_fbank`; the numbers of
``torchaudio.compliance.kaldi.fbank``, no torchaudio needed): 25 ms frames every 10 ms (``snip_edges``), per-frame DC
removal, pre-emphasis 0.97, Povey window, power spectrum of a 512-point FFT, 128 triangular bins on the mel scale
``1127 ln(1 + f/700)`` from 20 Hz to Nyquist, natural log floored at float32 epsilon; then AST's normalisation
``(fbank - mean) / (2 · std)`` (AudioSet statistics by default).
Tokens: a Conv2d of kernel 16 and stride 10 over the spectrogram ``[B, 1, frames, mel]`` gives a grid of
``t = (frames - 16) // 10 + 1`` time columns by ``f = (128 - 16) // 10 + 1 = 12`` frequency rows; tokens are
``[B, t · f, D]`` in time-major order (token ``j · f + i`` is column ``j``, row ``i``), so a clip's real tokens come
first. A learned 2-D positional embedding is defined on AST's grid (1024 frames: 101 x 12) and linearly resampled
along time, per clip, for clips longer than that. Column ``j`` of a clip is real (mask ``True``) when its frames
``[10 j, 10 j + 16)`` are inside the clip's frames; a clip shorter than one patch (2,800 samples, 0.175 s at 16 kHz)
is zero-padded to one. Default counts at 16 kHz: 1 s -> 98 frames -> 9 x 12 = 108 tokens; 10 s -> 998 frames ->
99 x 12 = 1188 tokens.

Data source ``synthetic_sounds``: synthetic 16 kHz clips of six sound classes (rising and falling chirps, low and
high harmonic tones, band-limited noise, amplitude-modulated tones) with random parameters, gain, fades and
background noise. A model can learn it: the classes differ in spectro-temporal shape (a sloped ridge, stacks of
partials at different pitch, a band of energy, a pulsing single partial), which the log-Mel patches show directly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from timm.layers import trunc_normal_
from torch import Tensor, nn
from torch.utils.data import Dataset

from polymodal.core.source import DataSource, DataSourceConfig
from polymodal.core.tokenizer import Tokenizer, TokenizerConfig, describe
from polymodal.core.tokens import Tokens
from polymodal.plugins._sequence import (
    SampleList,
    as_tensor,
    mask_beyond,
    num_windows,
    pad_sequences,
    parse_sequence_batch,
    resample,
    resampled_length,
    sequence_positions,
    window_mask,
)
from polymodal.registry.hookspecs import hookimpl

__all__ = [
    "AST_MEAN",
    "AST_STD",
    "SOUND_CLASSES",
    "AudioTokenizer",
    "AudioTokenizerConfig",
    "SyntheticSoundsDataSource",
    "SyntheticSoundsDataSourceConfig",
    "feature_window",
    "kaldi_fbank",
    "mel_banks",
    "mel_scale",
]

AST_MEAN = -4.2677393  # AudioSet log-Mel statistics used by AST
AST_STD = 4.5689974
FLOAT32_EPS = float(torch.finfo(torch.float32).eps)  # Kaldi's (and torchaudio's) log floor
WindowType = Literal["povey", "hanning", "hamming", "rectangular", "blackman"]


# -- Kaldi filter banks -----------------------------------------------------------------------------------------
def mel_scale(freq: Tensor | float) -> Any:
    """Kaldi's mel scale ``1127 ln(1 + f / 700)``."""
    if isinstance(freq, Tensor):
        return 1127.0 * torch.log1p(freq / 700.0)
    return 1127.0 * math.log1p(freq / 700.0)


@lru_cache(maxsize=16)
def mel_banks(
    num_bins: int, padded_window: int, sample_rate: float, low_freq: float, high_freq: float
) -> Tensor:
    """``[num_bins, padded_window // 2 + 1]`` triangular mel filters (float64), as Kaldi's ``MelBanks``.

    Bin ``m`` rises from mel ``low + m·Δ`` to ``low + (m+1)·Δ`` and falls to ``low + (m+2)·Δ``, with
    ``Δ = (mel(high) - mel(low)) / (num_bins + 1)``, evaluated at the mel of each FFT bin's frequency; the Nyquist
    bin gets weight 0. ``high_freq <= 0`` means Nyquist + ``high_freq``.
    """
    nyquist = 0.5 * sample_rate
    high = high_freq + nyquist if high_freq <= 0 else high_freq
    mel_low, mel_high = mel_scale(low_freq), mel_scale(high)
    delta = (mel_high - mel_low) / (num_bins + 1)
    m = torch.arange(num_bins, dtype=torch.float64).unsqueeze(1)
    left, center, right = mel_low + m * delta, mel_low + (m + 1) * delta, mel_low + (m + 2) * delta
    fft_mel = mel_scale(sample_rate / padded_window * torch.arange(padded_window // 2, dtype=torch.float64))
    up = (fft_mel - left) / (center - left)
    down = (right - fft_mel) / (right - center)
    banks = torch.minimum(up, down).clamp_min(0.0)
    return torch.cat([banks, banks.new_zeros(num_bins, 1)], dim=1)


@lru_cache(maxsize=16)
def feature_window(window_type: str, size: int) -> Tensor:
    """Kaldi's frame window of ``size`` samples (float64): ``povey`` = symmetric Hann ** 0.85."""
    if window_type == "povey":
        return torch.hann_window(size, periodic=False, dtype=torch.float64).pow(0.85)
    if window_type == "hanning":
        return torch.hann_window(size, periodic=False, dtype=torch.float64)
    if window_type == "hamming":
        return torch.hamming_window(size, periodic=False, alpha=0.54, beta=0.46, dtype=torch.float64)
    if window_type == "rectangular":
        return torch.ones(size, dtype=torch.float64)
    if window_type == "blackman":
        a = 2 * math.pi / (size - 1)
        n = torch.arange(size, dtype=torch.float64)
        return 0.42 - 0.5 * torch.cos(a * n) + 0.08 * torch.cos(2 * a * n)
    raise ValueError(f"unknown window_type {window_type!r}")


def kaldi_fbank(
    waveform: Tensor,
    sample_rate: float = 16000,
    *,
    num_mel_bins: int = 128,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    window_type: str = "povey",
    preemphasis: float = 0.97,
    remove_dc_offset: bool = True,
    dither: float = 0.0,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    log_floor: float = FLOAT32_EPS,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Log-Mel filter banks of ``waveform [B, S]`` -> ``[B, frames, num_mel_bins]``, batched, in its dtype.

    Kaldi's ``compute-fbank-feats`` with ``snip_edges=true``, ``use_energy=false``, power spectrum and the FFT size
    rounded up to a power of two: ``frames = 1 + (S - win) // shift`` (``win``, ``shift`` in samples); per frame:
    optional dither (Gaussian, scaled by ``dither``), DC removal, pre-emphasis ``x[i] -= p · x[i-1]`` (``x[0] -= p ·
    x[0]``), window, ``|rfft|²``, mel filters, ``log(max(·, log_floor))``.
    """
    win = int(sample_rate * frame_length_ms * 0.001)
    shift = int(sample_rate * frame_shift_ms * 0.001)
    if waveform.shape[-1] < win:
        raise ValueError(f"kaldi_fbank: needs at least {win} samples (one frame), got {waveform.shape[-1]}")
    padded = 1 << (win - 1).bit_length()
    frames = waveform.unfold(-1, win, shift)  # [B, M, win]
    if dither > 0:
        noise = torch.randn(frames.shape, generator=generator, dtype=frames.dtype, device=frames.device)
        frames = frames + dither * noise
    if remove_dc_offset:
        frames = frames - frames.mean(dim=-1, keepdim=True)
    if preemphasis != 0:
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
        frames = frames - preemphasis * previous
    frames = frames * feature_window(window_type, win).to(device=frames.device, dtype=frames.dtype)
    power = torch.fft.rfft(frames, n=padded).abs().pow(2)  # [B, M, padded/2 + 1]
    banks = mel_banks(num_mel_bins, padded, float(sample_rate), float(low_freq), float(high_freq))
    mel = power @ banks.to(device=power.device, dtype=power.dtype).t()
    return mel.clamp_min(log_floor).log()


# -- preprocessing helpers --------------------------------------------------------------------------------------
def _pcm_to_float(x: Tensor) -> Tensor | None:
    """Integer PCM to float32 in [-1, 1): int16 / 2^15, int32 / 2^31, uint8 (x - 128) / 128; floats to float32."""
    if x.is_floating_point():
        return x.float()
    scale = {torch.int16: 32768.0, torch.int32: 2147483648.0}.get(x.dtype)
    if scale is not None:
        return x.double().div(scale).float()
    if x.dtype == torch.uint8:
        return (x.float() - 128.0) / 128.0
    return None


# -- the tokenizer ----------------------------------------------------------------------------------------------
class AudioTokenizerConfig(TokenizerConfig):
    type: str = "audio"
    sample_rate: int = Field(
        16000, gt=0, description="Rate (Hz) the features are computed at; others are resampled."
    )
    num_mel_bins: int = Field(128, gt=0, description="Mel filter banks per frame (AST: 128).")
    frame_length_ms: float = Field(25.0, gt=0, description="Frame (window) length in milliseconds.")
    frame_shift_ms: float = Field(10.0, gt=0, description="Hop between frames in milliseconds.")
    window_type: WindowType = Field(
        "povey", description="Kaldi frame window ('hanning' is what AST's code uses)."
    )
    preemphasis: float = Field(0.97, ge=0, le=1, description="Pre-emphasis coefficient (0 disables it).")
    remove_dc_offset: bool = Field(True, description="Subtract each frame's mean before pre-emphasis.")
    dither: float = Field(
        0.0, ge=0, description="Gaussian dither added to frames, in training mode only (Kaldi)."
    )
    low_freq: float = Field(20.0, ge=0, description="Low edge (Hz) of the first mel bin.")
    high_freq: float = Field(
        0.0, description="High edge (Hz) of the last mel bin; <= 0 means Nyquist + high_freq."
    )
    log_floor: float = Field(FLOAT32_EPS, gt=0, description="Floor of the mel energies before the log.")
    mean: float = Field(AST_MEAN, description="Log-Mel mean subtracted (AST's AudioSet value).")
    std: float = Field(
        AST_STD, gt=0, description="Log-Mel std; features are divided by 2 * std, as AST does."
    )
    patch_size: int = Field(16, gt=0, description="Side of the square patches over (frames, mel bins).")
    stride_time: int = Field(10, gt=0, description="Patch stride along time (frames); < patch_size overlaps.")
    stride_freq: int = Field(10, gt=0, description="Patch stride along frequency (mel bins).")
    max_frames: int = Field(
        1024,
        gt=0,
        description="Frames the positional table covers (AST: 1024); longer clips resample it along time.",
    )

    @model_validator(mode="after")
    def _check_audio(self) -> AudioTokenizerConfig:
        if self.num_mel_bins < self.patch_size:
            raise ValueError(f"num_mel_bins {self.num_mel_bins} is smaller than patch_size {self.patch_size}")
        if self.max_frames < self.patch_size:
            raise ValueError(f"max_frames {self.max_frames} is smaller than patch_size {self.patch_size}")
        if self.window_samples < 2 or self.shift_samples < 1:
            raise ValueError(
                f"frames of {self.frame_length_ms} ms every {self.frame_shift_ms} ms at {self.sample_rate} Hz are "
                f"{self.window_samples} and {self.shift_samples} samples; need at least 2 and 1"
            )
        high = self.high_freq + self.sample_rate / 2 if self.high_freq <= 0 else self.high_freq
        if not self.low_freq < high <= self.sample_rate / 2:
            raise ValueError(
                f"mel range must satisfy low_freq < high <= Nyquist ({self.sample_rate / 2} Hz), got "
                f"low_freq={self.low_freq}, high={high}"
            )
        return self

    @property
    def window_samples(self) -> int:
        return int(self.sample_rate * self.frame_length_ms * 0.001)

    @property
    def shift_samples(self) -> int:
        return int(self.sample_rate * self.frame_shift_ms * 0.001)

    @property
    def min_samples(self) -> int:
        """Samples of the shortest clip that fills one patch column (shorter clips are zero-padded to it)."""
        return self.window_samples + (self.patch_size - 1) * self.shift_samples


class AudioTokenizer(Tokenizer):
    """Waveforms -> Kaldi log-Mel filter banks -> AST patches with a per-clip mask."""

    name: ClassVar[str] = "audio"
    config_class: ClassVar[type[AudioTokenizerConfig]] = AudioTokenizerConfig
    input_form: ClassVar[str] = "waveforms `[B, S]` (or a list of `[S_i]`)"

    def __init__(self, config: AudioTokenizerConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        p = c.patch_size
        self.proj = nn.Conv2d(1, c.embed_dim, kernel_size=p, stride=(c.stride_time, c.stride_freq))
        t0, f0 = self.grid_size
        self.pos_embed = nn.Parameter(torch.zeros(1, t0 * f0, c.embed_dim))  # time-major, like the tokens
        trunc_normal_(self.pos_embed, std=0.02)

    @property
    def grid_size(self) -> tuple[int, int]:
        """(time columns, frequency rows) of the positional table: AST's 101 x 12 by default."""
        c = self.config
        columns = (c.max_frames - c.patch_size) // c.stride_time + 1
        return columns, (c.num_mel_bins - c.patch_size) // c.stride_freq + 1

    # -- counting -----------------------------------------------------------------------------------------------
    def num_frames(self, num_samples: Tensor) -> Tensor:
        """Filter-bank frames of clips of ``num_samples`` (after padding short clips to ``min_samples``)."""
        c = self.config
        return num_windows(num_samples.clamp_min(c.min_samples), c.window_samples, c.shift_samples)

    def num_tokens(self, num_samples: int) -> int:
        """Real tokens of a clip of ``num_samples`` samples at ``sample_rate``."""
        c = self.config
        frames = self.num_frames(torch.tensor([num_samples]))
        return int(num_windows(frames, c.patch_size, c.stride_time)[0]) * self.grid_size[1]

    # -- forward ------------------------------------------------------------------------------------------------
    def validate(self, batch: Any) -> tuple[Tensor, Tensor, int]:
        """``(waveform [B, S], lengths [B], sample_rate)`` of a batch, or :class:`ModalityInputError`."""
        wave, lengths, extra = parse_sequence_batch(
            batch, self.modality, key="waveform", expected="(B, samples)", ndim=2, collate=self.collate
        )
        rate = extra.get("sample_rate", self.config.sample_rate)
        if isinstance(rate, Tensor) and rate.numel() == 1:
            rate = rate.item()
        if (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float, np.number))
            or rate <= 0
            or rate != int(rate)
        ):
            raise self.fail("a positive integer sample_rate", repr(rate))
        return wave, lengths, int(rate)

    def forward(self, batch: Any) -> Tokens:
        wave, lengths, rate = self.validate(batch)
        c = self.config
        dtype = torch.float64 if wave.dtype == torch.float64 else torch.float32
        wave = mask_beyond(wave.to(dtype), lengths)  # padding is silence, whatever the caller put there
        if rate != c.sample_rate:
            lengths = resampled_length(lengths, rate, c.sample_rate)
            wave = mask_beyond(resample(wave, rate, c.sample_rate), lengths)  # drop the filter's tails too
        if wave.shape[-1] < c.min_samples:
            wave = nn.functional.pad(wave, (0, c.min_samples - wave.shape[-1]))
        with torch.autocast(device_type=wave.device.type, enabled=False):
            fbank = kaldi_fbank(
                wave,
                c.sample_rate,
                num_mel_bins=c.num_mel_bins,
                frame_length_ms=c.frame_length_ms,
                frame_shift_ms=c.frame_shift_ms,
                window_type=c.window_type,
                preemphasis=c.preemphasis,
                remove_dc_offset=c.remove_dc_offset,
                dither=c.dither if self.training else 0.0,
                low_freq=c.low_freq,
                high_freq=c.high_freq,
                log_floor=c.log_floor,
            )
            fbank = (fbank - c.mean) / (2.0 * c.std)
        x = self.proj(fbank.unsqueeze(1).to(self.proj.weight.dtype))  # [B, D, t, f]
        t, f = x.shape[-2:]
        frames = self.num_frames(lengths)
        columns = num_windows(frames, c.patch_size, c.stride_time)
        pos = self.pos_embed.view(*self.grid_size, -1)  # [T0, F0, D]
        x = x.permute(0, 2, 3, 1) + sequence_positions(pos, columns, t).to(x.dtype)  # [B, t, f, D]
        mask = window_mask(columns, t).unsqueeze(-1).expand(-1, -1, f).reshape(x.shape[0], t * f)
        x = x.reshape(x.shape[0], t * f, -1) * mask.unsqueeze(-1).to(x.dtype)
        return Tokens(x, mask, self.modality, {"grid": (t, f), "frames": frames, "columns": columns})

    # -- preprocessing ------------------------------------------------------------------------------------------
    def preprocess(self, raw: Any) -> Tensor:
        """One clip -> float32 ``[samples]`` at ``sample_rate``.

        Accepts a 1-D array or tensor (taken to be at ``sample_rate``), ``(channels, samples)`` (averaged to mono,
        as torchaudio.load gives it), a tuple ``(waveform, sample_rate)``, or a dict ``{"array" | "waveform": …,
        "sampling_rate" | "sample_rate": …}`` (Hugging Face datasets' audio). Integer PCM is scaled to [-1, 1)
        (int16 / 2^15, int32 / 2^31, uint8 (x - 128) / 128). Another rate is resampled (windowed sinc).
        """
        c = self.config
        expected = "one clip (samples,) or (channels, samples), optionally with its sample rate"
        rate: Any = c.sample_rate
        if isinstance(raw, Mapping):
            wave_key = next((k for k in ("array", "waveform") if k in raw), None)
            if wave_key is None:
                raise self.fail(
                    f"{expected}: a dict with 'array' or 'waveform'", f"a dict with keys {sorted(raw)}"
                )
            rate = raw.get("sampling_rate", raw.get("sample_rate", c.sample_rate))
            raw = raw[wave_key]
        elif isinstance(raw, tuple) and len(raw) == 2:
            raw, rate = raw
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) or rate <= 0:
            raise self.fail("a positive sample rate", repr(rate))
        if int(rate) != rate:
            raise self.fail("an integer sample rate (Hz)", repr(rate))
        x = as_tensor(raw)
        if x is None or x.dim() not in (1, 2) or x.numel() == 0:
            raise self.fail(expected, describe(raw))
        if x.dim() == 2 and x.shape[0] > x.shape[1]:
            raise self.fail(f"{expected}; transpose (samples, channels) arrays", describe(raw))
        y = _pcm_to_float(x)
        if y is None:
            raise self.fail("float, int16, int32 or uint8 samples", describe(raw))
        if y.dim() == 2:
            y = y.mean(dim=0)
        if not bool(torch.isfinite(y).all()):
            raise self.fail(
                "finite samples", f"{int((~torch.isfinite(y)).sum())} NaN/Inf values in {describe(raw)}"
            )
        return resample(y, int(rate), c.sample_rate).contiguous()

    def collate(self, samples: Sequence[Any]) -> dict[str, Tensor]:
        """Clips ``[S_i]`` at ``sample_rate`` -> ``{"waveform": [B, max S_i] zero-padded, "lengths": [B]}``."""
        if len(samples) == 0:
            raise self.fail("at least one clip to collate", "an empty list")
        clips = [as_tensor(s) for s in samples]
        bad = [s for s, x in zip(samples, clips) if x is None or x.dim() != 1 or x.numel() == 0]
        if bad:
            raise self.fail("clips as 1-D float arrays (samples,)", describe(bad[0]))
        if not all(x.is_floating_point() for x in clips):
            raise self.fail("float clips (preprocess converts integer PCM)", describe(clips[0]))
        waveform, lengths = pad_sequences([x.float() for x in clips])
        return {"waveform": waveform, "lengths": lengths}

    def example_input(
        self, batch_size: int = 2, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        c = self.config
        longest = c.min_samples + 2 * c.stride_time * c.shift_samples  # three patch columns
        lengths = torch.tensor(
            [longest - (i % 2) * c.stride_time * c.shift_samples for i in range(batch_size)]
        )
        wave = 0.1 * torch.randn(batch_size, longest, generator=generator)
        return {"waveform": mask_beyond(wave, lengths), "lengths": lengths}

    def invalid_examples(self) -> list[Any]:
        s = self.config.min_samples
        return [
            torch.randn(s),  # rank 1
            torch.randn(2, 1, s),  # rank 3
            torch.zeros(0, s),  # empty batch
            torch.zeros(2, 0),  # no samples
            torch.zeros(2, s, dtype=torch.int16),  # integer PCM in forward
            torch.full((1, s), float("nan")),
            torch.full((1, s), float("inf")),
            {"waveform": torch.randn(2, s), "lengths": torch.tensor([s, s + 1])},  # longer than padded
            {"waveform": torch.randn(2, s), "lengths": torch.tensor([s, 0])},  # empty clip
            {"waveform": torch.randn(2, s), "lengths": torch.tensor([1.0, 2.0])},  # float lengths
            {"waveform": torch.randn(2, s), "sample_rate": 0},
            {"wave": torch.randn(2, s)},  # wrong key
            [],  # empty list
            [np.zeros((2, 3))],  # a 2-D clip in a list
        ]


# -- data: synthetic sound classes --------------------------------------------------------------------------------
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

    def splits(self) -> dict[str, Dataset]:
        c = self.config
        return {
            "train": SampleList(self.generate(c.num_train, c.seed)),
            "test": SampleList(self.generate(c.num_test, c.seed + 1_000_003)),
        }


@hookimpl
def polymodal_components() -> list[type]:
    return [AudioTokenizer, SyntheticSoundsDataSource]
