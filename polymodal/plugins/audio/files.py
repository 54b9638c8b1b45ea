"""Audio files: WAV through the standard library (PCM 8/16/24/32-bit), FLAC, OGG, MP3, AIFF and float WAV through
soundfile (the optional extra ``polymodal[audio]``).

Shapes: one file -> ``(waveform, sample_rate)``, the waveform float32 ``(samples,)`` in [-1, 1) with the channels
mixed down to mono: the raw form :meth:`AudioTokenizer.preprocess <polymodal.plugins.audio.AudioTokenizer.preprocess>`
takes (it resamples to the tokenizer's rate).
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from polymodal.core.extras import require

__all__ = ["AUDIO_EXTENSIONS", "read_audio"]

#: Suffixes of the audio files ``polymodal.data.from_folder`` takes by default.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


def _read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        data = w.readframes(frames)
    if channels < 1 or rate < 1:
        raise ValueError(f"bad WAV header: {channels} channels at {rate} Hz")
    n = len(data) // (width * channels)
    if n == 0:
        raise ValueError("WAV file has no samples")
    data = data[: n * width * channels]
    if width == 1:  # unsigned 8-bit
        x = (np.frombuffer(data, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(data, "<i2").astype(np.float32) / 2.0**15
    elif width == 3:  # 24-bit: sign-extend three little-endian bytes into int32
        b = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / 2.0**23
    elif width == 4:
        x = (np.frombuffer(data, "<i4").astype(np.float64) / 2.0**31).astype(np.float32)
    else:
        raise ValueError(f"unsupported WAV sample width {width} bytes")
    return x.reshape(n, channels).mean(axis=1, dtype=np.float32), rate


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """One audio file -> ``(waveform, sample_rate)``: float32 ``(samples,)`` in [-1, 1), channels mixed down to
    mono. WAV (PCM 8/16/24/32-bit) is read by the standard library; other formats (FLAC, OGG, MP3 …) and float
    WAV through soundfile (``pip install 'polymodal[audio]'``). The audio tokenizer resamples the result to its
    ``sample_rate`` (band-limited windowed sinc)."""
    p = Path(path)
    if p.suffix.lower() in (".wav", ".wave"):
        try:
            return _read_wav(p)
        except (wave.Error, EOFError, RuntimeError) as exc:  # the wave module's ways to refuse a header
            if "unknown format" not in str(
                exc
            ):  # float or compressed WAV: soundfile reads them when installed
                raise ValueError(f"bad WAV file: {type(exc).__name__} {exc}".strip()) from exc
    sf = require("soundfile", "audio", f"reading {p.suffix or 'this'} audio")
    data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    if data.shape[0] == 0:
        raise ValueError("audio file has no samples")
    return data.mean(axis=1, dtype=np.float32), int(rate)
