"""The time-series tokenizer: PatchTST tokens (Nie et al., arXiv 2211.14730) with reversible instance normalisation
(RevIN, Kim et al., ICLR 2022).

Input: ``[B, C, L]`` float series (every step real), a dict ``{"values": [B, C, L], "lengths": [B]}`` (zero-padded,
what ``collate`` makes), or a list of ``[C, L_i]`` series. Output: tokens ``[B·C, N, D]`` (channel-independent, row
``b·C + c``; ``Tokens.rows_per_sample = C``, so classification, regression and embedding heads average a series'
channels into one row per series) or ``[B, N, D]`` (channel-mixing), ``N = (L + stride - patch_length) // stride + 1``,
with ``meta["series"]`` (:class:`SeriesMeta`) and ``meta["num_patches"]``.

What the modality's data looks like: files (:attr:`TimeSeriesTokenizer.file_extensions`, :func:`read_series`),
tables (:meth:`TimeSeriesTokenizer.dataset_from_table`: forecasting windows, long format, one series per row),
float targets ``(N, H)`` / ``(N, C, H)`` mean forecasting (:meth:`TimeSeriesTokenizer.implied_task`), and a task
about whole series mixes the channels of multichannel series (:meth:`TimeSeriesTokenizer.config_for_data`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
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
    parse_sequence_batch,
    patch_sequences,
    ragged_example,
    sequence_positions,
)
from polymodal.plugins.time_series.files import SERIES_EXTENSIONS, read_series
from polymodal.plugins.time_series.revin import SeriesMeta, revin_normalize
from polymodal.plugins.time_series.tables import series_table

__all__ = ["TimeSeriesTokenizer", "TimeSeriesTokenizerConfig", "num_patches"]


def num_patches(length: int, patch_length: int = 16, stride: int = 8, pad_end: bool = True) -> int:
    """Patch tokens of one channel of a series of ``length`` steps (PatchTST: 336 -> 42)."""
    length = max(length + (stride if pad_end else 0), patch_length)
    return (length - patch_length) // stride + 1


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
    file_extensions: ClassVar[tuple[str, ...]] = SERIES_EXTENSIONS

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

    # -- what the modality's data looks like -------------------------------------------------------------------
    @classmethod
    def read_file(cls, path: str | Path, config: TokenizerConfig, **options: Any) -> np.ndarray:
        """One series file -> ``(C, L)`` float32 (:func:`read_series`; ``options``: its ``columns``), what
        :meth:`preprocess` takes; the config does not change how it is read."""
        return read_series(path, **options)

    @classmethod
    def dataset_from_table(
        cls,
        frame: Any,
        *,
        modality: Any,
        target: str | Sequence[str] | None,
        columns: list[str] | None,
        tokenizer: Any,
        window: int | None = None,
        horizon: int | None = None,
        stride: int = 1,
        id_column: str | None = None,
        task: Any = None,
        class_names: Sequence[str] | None = None,
        **options: Any,
    ) -> Any:
        """Series from the table's rows (:func:`~polymodal.plugins.time_series.tables.series_table`): with
        ``window`` and ``horizon``, forecasting windows every ``stride`` rows over the ``target`` (or ``columns``)
        channels; with ``id_column``, the long format (the rows of one id make one series labelled by its constant
        ``target``); otherwise one single-channel series over ``columns`` per row (UCR style). Channels default to
        every numeric column but time-like ones, ``id_column`` and the target. ``options`` (``on_error``, reader
        options) do not apply."""
        from polymodal.data.dataset import tokenizer_config

        config = tokenizer_config(modality, tokenizer)
        kwargs = {"task": task, "class_names": class_names}
        return series_table(
            cls, frame, config, target, columns, window, horizon, stride, id_column, tokenizer, kwargs
        )

    @classmethod
    def implied_task(cls, targets: Any) -> tuple[str, str] | None:
        """Float targets ``(N, H)`` or ``(N, C, H)`` of a time series are forecasts (``"forecasting"``); integer
        ``(N, K)`` targets are ``K`` regression values (never multi-label 0/1 columns, which a series is not given);
        anything else (one target per series, strings) is left to the generic rules."""
        y = np.asarray(targets)
        if y.dtype.kind in "OUS" or y.ndim not in (2, 3):
            return None
        if y.dtype.kind not in "biu":
            return "forecasting", f"float targets {('(N, H)', '(N, C, H)')[y.ndim - 2]} of a time series"
        if y.ndim == 2:
            return "regression", f"targets (N, {y.shape[1]})"
        return None

    @classmethod
    def config_for_data(cls, data: Any, task: str, explicit: Collection[str]) -> dict[str, Any]:
        """For a task about whole series (not ``"forecasting"``), series of ``C >= 2`` channels are mixed into one
        sequence: ``{"channels": C, "channel_mode": "mixing"}`` from the first sample ``(C, L)``, since a
        channel-independent tokenizer gives one sequence per channel, which a classification or regression head
        cannot take. Nothing when the user set ``channel_mode`` (in ``explicit``); ``channels`` is left out when
        the user set it.

        ``data``: the samples (a sequence, an array or tensor with the sample first, or a DataFrame of rows); only
        the first one is looked at (pass ``[sample]`` for a single sample, e.g. the first file of a folder)."""
        if task == "forecasting" or "channel_mode" in explicit:
            return {}
        try:
            first = data.iloc[0] if hasattr(data, "iloc") else data[0]
            shape = np.shape(first.detach().cpu() if isinstance(first, Tensor) else first)
        except (
            IndexError,
            KeyError,
            TypeError,
            ValueError,
        ):  # no samples, or ragged nested lists: checks will say
            return {}
        if len(shape) != 2 or shape[0] < 2:
            return {}
        implied = {"channels": int(shape[0]), "channel_mode": "mixing"}
        return {k: v for k, v in implied.items() if k not in explicit}

    # -- tokens ---------------------------------------------------------------------------------------------------
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
        # whole-series heads pool the C rows of a sample into one
        rows = ch if c.channel_mode == "independent" else 1
        return Tokens(x, mask, self.modality, {"series": meta, "num_patches": counts}, rows_per_sample=rows)

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
        values, lengths = collate_ragged(
            samples,
            self.modality,
            noun="series",
            expected="series (C, L_i) with one C",
            ndim=2,
            floating="float series",
        )
        return {"values": values, "lengths": lengths}

    def example_input(
        self, batch_size: int = 2, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        c = self.config
        # one channel unless configured: channel-independent tokens have B·C rows
        values, lengths = ragged_example(
            batch_size,
            (c.channels or 1,),
            c.patch_length + 3 * c.stride,
            c.stride,
            generator,
            scale=2.0,
            offset=3.0,
        )
        return {"values": values, "lengths": lengths}

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
