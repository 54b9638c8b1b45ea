"""The ``eeg`` tokenizer: per-channel temporal patches with electrode-position and time embeddings.

Follows BIOT (Yang et al., NeurIPS 2023, arXiv 2305.10351) and LaBraM (arXiv 2405.18765). Input: a recording
``[B, C, T]`` in µV, channels in the order of ``montage`` (10-20 electrodes), at ``sample_rate`` Hz; or a dict
``{"values": [B, C, T], "channel_mask": [B, C] bool}`` where ``False`` marks a bad or missing channel (its tokens
are padding and its values are ignored, NaN included). Each channel's mean is removed and the signal divided by
``scale`` µV; each channel is cut into patches of ``patch_length`` steps every ``stride`` steps,
``N = (T - patch_length) // stride + 1``; a patch becomes its log-magnitude spectrum ``log(1 + |FFT(hann · x)|)``
(``features="spectrum"``, BIOT's STFT tokens; ``"waveform"`` keeps the samples) and a linear layer maps it to
``D``; the token then gets an embedding of its electrode's 3-D position on the scalp (Fourier features of the
unit-sphere coordinates -> linear), so the encoder knows where the signal was recorded and any subset of
electrodes works, and a learned embedding of the patch's time index. Output: ``Tokens`` ``[B, C·N, D]``,
channel-major (token ``c·N + n`` is channel ``c``, patch ``n``). Default: 19 electrodes, 128 Hz, patches of 64
(0.5 s): a 2 s epoch -> 19 x 4 = 76 tokens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from polymodal import Tokenizer, TokenizerConfig, Tokens
from polymodal.core.tokenizer import check_tensor, describe
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from polymodal_eeg.montage import MONTAGE_10_20, canonical_electrode, canonical_montage, electrode_positions

__all__ = ["EegTokenizer", "EegTokenizerConfig", "resample_fft"]


def resample_fft(x: Tensor, orig: int, new: int) -> Tensor:
    """Resample ``x [..., T]`` from ``orig`` to ``new`` Hz by truncating or zero-padding its spectrum (band-limited,
    periodic; what ``scipy.signal.resample`` does). Output length ``round(T · new / orig)``."""
    if orig == new:
        return x
    t = x.shape[-1]
    m = max(1, round(t * new / orig))
    spec = torch.fft.rfft(x.double(), dim=-1)
    keep = min(spec.shape[-1], m // 2 + 1)
    out = torch.zeros((*spec.shape[:-1], m // 2 + 1), dtype=spec.dtype)
    out[..., :keep] = spec[..., :keep]
    return (torch.fft.irfft(out, n=m, dim=-1) * (m / t)).to(
        x.dtype if x.is_floating_point() else torch.float32
    )


# --8<-- [start:config]
class EegTokenizerConfig(TokenizerConfig):
    """Hyperparameters of the ``eeg`` tokenizer: declared once, with bounds and descriptions."""

    type: str = "eeg"
    montage: tuple[str, ...] = Field(
        MONTAGE_10_20,
        min_length=1,
        description="Electrodes (10-20 names) in the order of the input's channels.",
    )
    sample_rate: int = Field(
        128, gt=0, description="Rate (Hz) the tokenizer expects; preprocess resamples others."
    )
    patch_length: int = Field(64, gt=0, description="Steps per patch (64 at 128 Hz = 0.5 s).")
    stride: int = Field(64, gt=0, description="Steps between patch starts (< patch_length overlaps).")
    scale: float = Field(50.0, gt=0, description="µV divided by after removing each channel's mean.")
    max_patches: int = Field(
        64, gt=0, description="Time positions of the learned table; longer inputs resample it."
    )
    features: Literal["spectrum", "waveform"] = Field(
        "spectrum",
        description="What a patch's linear embedding sees: 'spectrum' = log(1 + |FFT|) of the Hann-windowed patch "
        "(BIOT's STFT tokens), 'waveform' = the raw samples.",
    )
    position_frequencies: int = Field(
        4, ge=0, description="Fourier frequencies of the electrode-position features (0: raw xyz only)."
    )

    @field_validator("montage")
    @classmethod
    def _known_electrodes(cls, montage: tuple[str, ...]) -> tuple[str, ...]:
        return canonical_montage(montage)

    @model_validator(mode="after")
    def _check_stride(self) -> EegTokenizerConfig:
        if self.stride > self.patch_length:
            raise ValueError(f"stride {self.stride} > patch_length {self.patch_length} would skip samples")
        return self


# --8<-- [end:config]


# --8<-- [start:class]
class EegTokenizer(Tokenizer):
    """Per-channel temporal patches + 10-20 electrode-position embedding + time embedding."""

    name: ClassVar[str] = "eeg"
    config_class: ClassVar[type[EegTokenizerConfig]] = EegTokenizerConfig
    input_form: ClassVar[str] = "epochs `[B, C, T]` in µV (+ `channel_mask [B, C]`)"  # for `polymodal list`
    # --8<-- [start:files]
    # one recording per file, for polymodal.data.from_folder / from_table (a column of paths)
    file_extensions: ClassVar[tuple[str, ...]] = (".npy", ".csv")

    @classmethod
    def read_file(cls, path: Any, config: TokenizerConfig, **options: Any) -> Any:
        """One recording: ``.npy`` ``(C, T)`` in the montage's order, or ``.csv`` with one column per electrode
        (named; time down the rows), read as ``{"values", "channels", "sample_rate"}`` so that ``preprocess``
        matches channels by name. ``sample_rate=`` (Hz) gives the file's rate (default the tokenizer's)."""
        rate = int(options.pop("sample_rate", config.sample_rate))
        if options:
            raise TypeError(f"eeg: read_file got unknown options {sorted(options)}")
        if str(path).lower().endswith(".csv"):
            import pandas as pd

            frame = pd.read_csv(path)
            return {"values": frame.to_numpy(np.float32).T, "channels": list(frame.columns), "sample_rate": rate}
        return {"values": np.load(path).astype(np.float32), "sample_rate": rate}

    # --8<-- [end:files]

    def __init__(self, config: EegTokenizerConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        width = c.patch_length // 2 + 1 if c.features == "spectrum" else c.patch_length
        self.patch_embed = nn.Linear(width, c.embed_dim)
        self.register_buffer("window", torch.hann_window(c.patch_length, periodic=False), persistent=False)
        xyz = electrode_positions(c.montage)  # [C, 3]
        freqs = torch.arange(1, c.position_frequencies + 1, dtype=torch.float32) * math.pi
        angles = (xyz[:, :, None] * freqs).flatten(1)  # [C, 3F]
        self.register_buffer(
            "position_features", torch.cat([xyz, angles.sin(), angles.cos()], 1), persistent=False
        )
        self.channel_embed = nn.Linear(self.position_features.shape[1], c.embed_dim)
        nn.init.trunc_normal_(self.channel_embed.weight, std=0.02)  # small, like ViT's position embeddings
        nn.init.zeros_(self.channel_embed.bias)
        self.time_embed = nn.Parameter(torch.zeros(c.max_patches, c.embed_dim))
        nn.init.trunc_normal_(self.time_embed, std=0.02)

    @property
    def channels(self) -> int:
        return len(self.config.montage)

    def num_tokens(self, num_steps: int) -> int:
        """Tokens of an epoch of ``num_steps`` steps with every channel good."""
        c = self.config
        return self.channels * ((num_steps - c.patch_length) // c.stride + 1)

    # --8<-- [end:class]

    # --8<-- [start:validate]
    def validate(self, batch: Any) -> tuple[Tensor, Tensor]:
        """``(values [B, C, T], channel_mask [B, C])`` from a tensor or a dict, or a ModalityInputError."""
        c, C = self.config, self.channels
        form = f"(B, {C}, T) in µV with T >= {c.patch_length}"
        if isinstance(batch, Mapping):
            if "values" not in batch:
                raise self.fail(
                    f"a dict with 'values' {form} and optional 'channel_mask' (B, {C})",
                    f"keys {sorted(batch)}",
                )
            values, channel_mask = batch["values"], batch.get("channel_mask")
        elif isinstance(batch, Tensor):
            values, channel_mask = batch, None
        else:
            raise self.fail(f"a tensor {form} or a dict {{'values', 'channel_mask'}}", batch)
        values = check_tensor(values, self.modality, form, 3, finite=False)
        if values.shape[1] != C or values.shape[2] < c.patch_length:
            raise self.fail(f"a tensor {form} (channels: {', '.join(c.montage)})", values)
        if channel_mask is None:
            channel_mask = torch.ones(values.shape[:2], dtype=torch.bool, device=values.device)
        if (
            not isinstance(channel_mask, Tensor)
            or channel_mask.dtype != torch.bool
            or channel_mask.shape != values.shape[:2]
        ):
            raise self.fail(f"a bool channel_mask of shape {tuple(values.shape[:2])}", channel_mask)
        if not bool(channel_mask.any(dim=1).all()):
            raise self.fail(
                "at least one good channel per recording", "a recording whose channels are all masked"
            )
        real = channel_mask[:, :, None].expand_as(values)
        if not bool(torch.isfinite(values[real]).all()):
            bad = int((~torch.isfinite(values[real])).sum())
            raise self.fail(
                "finite values in the good channels", f"{bad} NaN/Inf values in {describe(values)}"
            )
        return torch.where(
            real, values, torch.zeros((), dtype=values.dtype, device=values.device)
        ), channel_mask

    # --8<-- [end:validate]

    # --8<-- [start:forward]
    def forward(self, batch: Any) -> Tokens:
        values, channel_mask = self.validate(batch)
        c = self.config
        x = values.to(self.patch_embed.weight.dtype)
        x = (
            x - x.mean(dim=-1, keepdim=True)
        ) / c.scale  # remove each channel's offset, µV -> units of `scale`
        patches = x.unfold(-1, c.patch_length, c.stride)  # [B, C, N, patch_length]
        b, ch, n, _ = patches.shape
        if c.features == "spectrum":  # [B, C, N, patch_length // 2 + 1] log-magnitude spectrum per patch
            patches = torch.log1p(torch.fft.rfft(patches * self.window.to(x.dtype), dim=-1).abs())
        tokens = self.patch_embed(patches)  # [B, C, N, D]
        tokens = tokens + self.channel_embed(self.position_features.to(x.dtype))[None, :, None, :]
        time = self.time_embed
        if n > c.max_patches:  # longer than the table: resample it linearly
            time = nn.functional.interpolate(time.T[None], size=n, mode="linear", align_corners=True)[0].T
        tokens = tokens + time[:n].to(x.dtype)[None, None]
        mask = channel_mask[:, :, None].expand(b, ch, n).reshape(b, ch * n)
        tokens = tokens.reshape(b, ch * n, -1) * mask[..., None].to(x.dtype)
        return Tokens(tokens, mask, self.modality, {"patches_per_channel": n})

    # --8<-- [end:forward]

    def preprocess(self, raw: Any) -> dict[str, Tensor]:
        """One recording -> ``{"values": float32 [C, T'], "channel_mask": bool [C]}`` in the montage's order.

        ``raw`` is ``(C, T)`` (array or tensor, channels already in montage order) or a dict ``{"values": (C_raw,
        T), "channels": [names], "sample_rate": Hz}``: channels are matched by name (case-insensitive, 10-10 aliases
        such as T7 accepted), channels outside the montage (EOG, ECG, ...) are dropped, montage channels the file
        lacks are zeros with ``channel_mask`` False, and a recording at another rate is resampled.
        """
        c, C = self.config, self.channels
        names, rate = None, c.sample_rate
        if isinstance(raw, Mapping):
            if "values" not in raw:
                raise self.fail(
                    "a dict with 'values' (C, T) and optional 'channels', 'sample_rate'",
                    f"keys {sorted(raw)}",
                )
            names, rate = raw.get("channels"), raw.get("sample_rate", c.sample_rate)
            raw = raw["values"]
        x = torch.as_tensor(np.asarray(raw)) if not isinstance(raw, Tensor) else raw
        if x.dim() != 2 or x.dtype == torch.bool or x.shape[1] == 0:
            raise self.fail("one recording (C, T), channels first", describe(raw))
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
            raise self.fail("a positive integer sample rate (Hz)", repr(rate))
        x = x.double()
        mask = torch.ones(C, dtype=torch.bool)
        if names is not None:
            if len(names) != x.shape[0]:
                raise self.fail(f"one channel name per row ({x.shape[0]})", f"{len(names)} names")
            known = [(canonical_electrode(n), i) for i, n in enumerate(names)]
            row = {m: i for m, i in known if m is not None}
            twice = sorted({m for m, _ in known if m is not None and sum(k == m for k, _ in known) > 1})
            if twice:
                raise self.fail(
                    "each electrode once (10-10 aliases name the same electrode)", f"{twice} twice"
                )
            mask = torch.tensor([m in row for m in c.montage])
            if not bool(mask.any()):
                raise self.fail(
                    f"at least one channel of the montage ({', '.join(c.montage)})", f"channels {list(names)}"
                )
            picked = torch.zeros(C, x.shape[1], dtype=x.dtype)
            for j, m in enumerate(c.montage):
                if m in row:
                    picked[j] = x[row[m]]
            x = picked
        elif x.shape[0] != C:
            raise self.fail(
                f"({C}, T) with channels {', '.join(c.montage)} (or a dict naming them)", describe(raw)
            )
        x = resample_fft(x, int(rate), c.sample_rate).float()
        if x.shape[1] < c.patch_length:
            raise self.fail(f"at least {c.patch_length} steps at {c.sample_rate} Hz", f"{x.shape[1]} steps")
        return {"values": x, "channel_mask": mask}

    def collate(self, samples: Sequence[Any]) -> dict[str, Tensor]:
        """Epochs ``[C, T]`` (or dicts from ``preprocess``) of one length -> ``{"values": [B, C, T], "channel_mask"}``."""
        if len(samples) == 0:
            raise self.fail("at least one epoch to collate", "an empty list")
        items = [s if isinstance(s, Mapping) else {"values": s} for s in samples]
        values = [torch.as_tensor(s["values"]) for s in items]
        if any(v.dim() != 2 or v.shape[0] != self.channels for v in values):
            raise self.fail(
                f"epochs ({self.channels}, T)",
                describe(next(v for v in values if v.dim() != 2 or v.shape[0] != self.channels)),
            )
        lengths = sorted({v.shape[1] for v in values})
        if len(lengths) != 1:
            raise self.fail(
                "epochs of one length (cut recordings into fixed-length epochs)", f"lengths {lengths}"
            )
        masks = [s.get("channel_mask", torch.ones(self.channels, dtype=torch.bool)) for s in items]
        return {"values": torch.stack(values).float(), "channel_mask": torch.stack(masks)}

    # --8<-- [start:examples]
    def example_input(
        self, batch_size: int = 2, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """``batch_size`` epochs of 2 s of 20 µV noise; every second epoch has two bad channels."""
        c = self.config
        values = 20.0 * torch.randn(batch_size, self.channels, 2 * c.sample_rate, generator=generator)
        channel_mask = torch.ones(batch_size, self.channels, dtype=torch.bool)
        channel_mask[1::2, :2] = self.channels <= 2  # keep one channel when the montage is tiny
        return {"values": values, "channel_mask": channel_mask}

    def invalid_examples(self) -> list[Any]:
        C, T = self.channels, 2 * self.config.sample_rate
        return [
            torch.randn(C, T),  # no batch dimension
            torch.randn(2, C + 1, T),  # channels do not match the montage
            torch.randn(2, C, self.config.patch_length - 1),  # shorter than one patch
            torch.zeros(2, C, T, dtype=torch.long),  # integer
            torch.full((1, C, T), float("nan")),
            {"signal": torch.randn(2, C, T)},  # wrong key
            {"values": torch.randn(2, C, T), "channel_mask": torch.ones(2, C)},  # mask not bool
            {"values": torch.randn(2, C, T), "channel_mask": torch.zeros(2, C, dtype=torch.bool)},  # all bad
        ]

    # --8<-- [end:examples]
