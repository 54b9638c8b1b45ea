"""The audio tokenizer: Kaldi log-Mel filter banks and overlapping 16 x 16 patches, as AST (Gong et al., arXiv
2104.01778) and Meta-Transformer (arXiv 2307.10802).

Input: waveforms ``[B, S]`` (float, at ``sample_rate``, every sample real), a dict ``{"waveform": [B, S],
"lengths": [B], "sample_rate": int}`` (``lengths`` and ``sample_rate`` optional; ``collate`` makes it), or a list of
1-D clips of different lengths. Output: tokens ``[B, t · f, D]`` in time-major order with a per-clip mask (see the
package docstring for the counts). Files: :attr:`AudioTokenizer.file_extensions`, read by :func:`read_audio`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from timm.layers import trunc_normal_
from torch import Tensor, nn

from polymodal.core.tokenizer import Tokenizer, TokenizerConfig, describe
from polymodal.core.tokens import Tokens
from polymodal.plugins._sequence import (
    as_tensor,
    collate_ragged,
    mask_beyond,
    num_windows,
    parse_sequence_batch,
    ragged_example,
    resample,
    resampled_length,
    sequence_positions,
    window_mask,
)
from polymodal.plugins.audio.fbank import FLOAT32_EPS, kaldi_fbank
from polymodal.plugins.audio.files import AUDIO_EXTENSIONS, read_audio

__all__ = ["AST_MEAN", "AST_STD", "AudioTokenizer", "AudioTokenizerConfig"]

AST_MEAN = -4.2677393  # AudioSet log-Mel statistics used by AST
AST_STD = 4.5689974
WindowType = Literal["povey", "hanning", "hamming", "rectangular", "blackman"]


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
    num_mel_bins: int = Field(
        64, gt=0, description="Mel filter banks per frame (64; AST and its AudioSet weights: 128)."
    )
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
    stride_time: int = Field(
        16,
        gt=0,
        description="Patch stride along time (frames); < patch_size overlaps (AST: 10, with 128 mel bins).",
    )
    stride_freq: int = Field(16, gt=0, description="Patch stride along frequency (mel bins; AST: 10).")
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
    file_extensions: ClassVar[tuple[str, ...]] = AUDIO_EXTENSIONS

    def __init__(self, config: AudioTokenizerConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        p = c.patch_size
        self.proj = nn.Conv2d(1, c.embed_dim, kernel_size=p, stride=(c.stride_time, c.stride_freq))
        t0, f0 = self.grid_size
        self.pos_embed = nn.Parameter(torch.zeros(1, t0 * f0, c.embed_dim))  # time-major, like the tokens
        trunc_normal_(self.pos_embed, std=0.02)

    @classmethod
    def read_file(cls, path: str | Path, config: TokenizerConfig, **options: Any) -> tuple[np.ndarray, int]:
        """One audio file -> ``(waveform (samples,) float32, sample_rate)`` (:func:`read_audio`), what
        :meth:`preprocess` takes (it resamples to ``config.sample_rate``); the config does not change how it is
        read, and :func:`read_audio` takes no options."""
        return read_audio(path, **options)

    @property
    def grid_size(self) -> tuple[int, int]:
        """(time columns, frequency rows) of the positional table: 64 x 4 by default (AST's setting: 101 x 12)."""
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
        waveform, lengths = collate_ragged(
            samples,
            self.modality,
            noun="clip",
            expected="clips as 1-D float arrays (samples,)",
            ndim=1,
            floating="float clips (preprocess converts integer PCM)",
        )
        return {"waveform": waveform, "lengths": lengths}

    def example_input(
        self, batch_size: int = 2, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        c = self.config
        column = c.stride_time * c.shift_samples  # samples per patch column
        wave, lengths = ragged_example(
            batch_size, (), c.min_samples + 2 * column, column, generator, scale=0.1
        )  # three patch columns, and two
        return {"waveform": wave, "lengths": lengths}

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
