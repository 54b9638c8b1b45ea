"""Audio plugin: Kaldi log-Mel filter banks and 16 x 16 patches, as AST (Gong et al., arXiv 2104.01778) and
Meta-Transformer (arXiv 2307.10802).

Input: waveforms ``[B, S]`` (float, at ``sample_rate``, every sample real), a dict ``{"waveform": [B, S],
"lengths": [B], "sample_rate": int}`` (``lengths`` and ``sample_rate`` optional; ``collate`` makes it), or a list of
1-D clips of different lengths. Another ``sample_rate`` is resampled in torch (windowed sinc, as torchaudio).
Features: Kaldi-compatible log-Mel filter banks computed batched in torch (:func:`kaldi_fbank`; the numbers of
``torchaudio.compliance.kaldi.fbank``, no torchaudio needed): 25 ms frames every 10 ms (``snip_edges``), per-frame DC
removal, pre-emphasis 0.97, Povey window, power spectrum of a 512-point FFT, 64 triangular bins on the mel scale
``1127 ln(1 + f/700)`` from 20 Hz to Nyquist, natural log floored at float32 epsilon; then AST's normalisation
``(fbank - mean) / (2 · std)`` (AudioSet statistics by default).
Tokens: a Conv2d of kernel 16 and stride 16 over the spectrogram ``[B, 1, frames, mel]`` gives a grid of
``t = (frames - 16) // 16 + 1`` time columns by ``f = (64 - 16) // 16 + 1 = 4`` frequency rows; tokens are
``[B, t · f, D]`` in time-major order (token ``j · f + i`` is column ``j``, row ``i``), so a clip's real tokens come
first. A learned 2-D positional embedding is defined on the grid of ``max_frames`` (1024 frames: 64 x 4) and
linearly resampled along time, per clip, for clips longer than that. Column ``j`` of a clip is real (mask ``True``)
when its frames ``[16 j, 16 j + 16)`` are inside the clip's frames; a clip shorter than one patch (2,800 samples,
0.175 s at 16 kHz) is zero-padded to one. Default counts at 16 kHz: 1 s -> 98 frames -> 6 x 4 = 24 tokens; 10 s ->
998 frames -> 62 x 4 = 248 tokens.

The defaults are the setting that learns from small data (hundreds of clips): few, non-overlapping patches of a
64-bin spectrogram (spoken digits from espeak-ng, 500 clips, benchmarks/realdata: 0.63 against 0.51 for AST's
setting at 40 epochs, 4.5 times fewer tokens). AST's fine setting, ``num_mel_bins=128, stride_time=10,
stride_freq=10`` (1 s -> 9 x 12 = 108 overlapping patches), is the one to use with AST's AudioSet weights (its
positional grid, 101 x 12, is theirs) or with thousands of clips.

Data source ``synthetic_sounds``: synthetic 16 kHz clips of six sound classes (rising and falling chirps, low and
high harmonic tones, band-limited noise, amplitude-modulated tones) with random parameters, gain, fades and
background noise. A model can learn it: the classes differ in spectro-temporal shape (a sloped ridge, stacks of
partials at different pitch, a band of energy, a pulsing single partial), which the log-Mel patches show directly.

Files: WAV, FLAC, OGG, MP3, AIFF (:attr:`AudioTokenizer.file_extensions`), read by :func:`read_audio` into
``(waveform, sample_rate)``.

The package: :mod:`~polymodal.plugins.audio.fbank` (Kaldi filter banks), :mod:`~polymodal.plugins.audio.tokenizer`
(the tokenizer), :mod:`~polymodal.plugins.audio.files` (reading files), :mod:`~polymodal.plugins.audio.data` (the
data source).
"""

from __future__ import annotations

from polymodal.plugins.audio.data import (
    SOUND_CLASSES,
    SyntheticSoundsDataSource,
    SyntheticSoundsDataSourceConfig,
)
from polymodal.plugins.audio.fbank import FLOAT32_EPS, feature_window, kaldi_fbank, mel_banks, mel_scale
from polymodal.plugins.audio.files import AUDIO_EXTENSIONS, read_audio
from polymodal.plugins.audio.tokenizer import AST_MEAN, AST_STD, AudioTokenizer, AudioTokenizerConfig
from polymodal.registry.hookspecs import hookimpl

__all__ = [
    "AST_MEAN",
    "AST_STD",
    "AUDIO_EXTENSIONS",
    "FLOAT32_EPS",
    "SOUND_CLASSES",
    "AudioTokenizer",
    "AudioTokenizerConfig",
    "SyntheticSoundsDataSource",
    "SyntheticSoundsDataSourceConfig",
    "feature_window",
    "kaldi_fbank",
    "mel_banks",
    "mel_scale",
    "read_audio",
]


@hookimpl
def polymodal_components() -> list[type]:
    return [AudioTokenizer, SyntheticSoundsDataSource]
