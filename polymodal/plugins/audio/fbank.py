"""Kaldi-compatible log-Mel filter banks in torch, batched (the features of AST, Gong et al., arXiv 2104.01778, and
of Meta-Transformer's audio branch, arXiv 2307.10802): the numbers of ``torchaudio.compliance.kaldi.fbank``, no
torchaudio needed.

Shapes: waveforms ``[B, S]`` -> ``[B, frames, num_mel_bins]`` with ``frames = 1 + (S - win) // shift`` (25 ms
frames every 10 ms by default: 1 s at 16 kHz -> 98 frames). Per frame: DC removal, pre-emphasis 0.97, Povey window,
power spectrum of an FFT rounded up to a power of two, triangular bins on the mel scale ``1127 ln(1 + f/700)``,
natural log floored at float32 epsilon.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

__all__ = ["FLOAT32_EPS", "feature_window", "kaldi_fbank", "mel_banks", "mel_scale"]

FLOAT32_EPS = float(torch.finfo(torch.float32).eps)  # Kaldi's (and torchaudio's) log floor


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
