"""The ``forecasting`` head: PatchTST's flatten head (Nie et al., arXiv 2211.14730), de-normalised through RevIN.

Shapes: tokens of the time-series tokenizer, ``N`` real patch tokens per sequence (rows ``[B·C, N, D]`` for
channel-independent tokens, ``[B, N, D]`` for channel-mixing ones) -> forecasts ``[B, C, H]`` in the input's units.
Each channel's tokens are flattened ``[N·D]`` and a linear layer predicts the horizon ``H`` (one layer shared by
the channels, one per channel with ``channel_handling="individual"``, or ``[N·D] -> C·H`` for channel-mixing
tokens); loss MSE; metrics MSE and MAE.

Flatten order: the tokens ``[N, D]`` of a channel are flattened row-major, input ``n·D + d`` of the linear layer (as
Hugging Face's ``PatchTSTPredictionHead``, which flattens ``[C, N, D]``). The original PatchTST code's
``Flatten_Head`` flattens ``[d_model, patch_num]``, input ``d·N + n``: its weights do not load as they are.
:func:`convert_patchtst_head` (and :meth:`ForecastingHead.load_patchtst_head`) permute them so the head computes
the same forecast from the same tokens.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from polymodal.core.heads import Head, HeadConfig, check_value_target, mse_loss
from polymodal.core.tokens import Tokens
from polymodal.plugins.time_series.revin import SeriesMeta

__all__ = ["ForecastingHead", "ForecastingHeadConfig", "convert_patchtst_head"]


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
        ch = meta.channels
        b = (
            x.shape[0] if meta.channel_mode == "mixing" else x.shape[0] // ch
        )  # rows of B series (x C channels)
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

    def check_target(self, output: Tensor, target: Any) -> Tensor:
        """Finite values of the forecast's shape ``[B, C, H]``."""
        return check_value_target(output, target, self.name)

    def loss(self, output: Tensor, target: Any) -> Tensor:
        return mse_loss(output, target, self.name)

    @torch.no_grad()
    def load_patchtst_head(self, state: Mapping[str, Tensor]) -> ForecastingHead:
        """Load the weights of the original PatchTST code's ``Flatten_Head`` (``head.linear.*``, or
        ``head.linears.{i}.*`` for ``individual=True``; any key prefix, e.g. ``model.head.``), permuted from its
        ``d·N + n`` flatten order to this head's ``n·D + d`` (:func:`convert_patchtst_head`). ``num_patches`` must be
        PatchTST's ``patch_num`` (with its end padding patch). Returns ``self``."""
        c = self.config
        if c.channel_handling == "mixing":
            raise ValueError(
                "forecasting: PatchTST's heads read channel-independent tokens; channel_handling='mixing' has no "
                "PatchTST counterpart"
            )
        converted = convert_patchtst_head(state, c.num_patches, c.embed_dim)
        individual = "weight" in converted
        if individual != (c.channel_handling == "individual"):
            got = (
                f"an individual head ({converted['weight'].shape[0]} channels): configure "
                f"channel_handling='individual', channels={converted['weight'].shape[0]}"
                if individual
                else "a shared head: configure channel_handling='shared'"
            )
            raise ValueError(
                f"forecasting: channel_handling={c.channel_handling!r}, but the state dict holds {got}"
            )
        own = self.state_dict()
        if set(converted) != set(own):
            raise ValueError(
                f"forecasting: the PatchTST head gives {sorted(converted)}, this head needs {sorted(own)}"
            )
        wrong = [
            f"{k}: PatchTST {tuple(v.shape)} vs head {tuple(own[k].shape)}"
            for k, v in converted.items()
            if tuple(v.shape) != tuple(own[k].shape)
        ]
        if wrong:
            raise ValueError(f"forecasting: shape mismatch (horizon or channels differ): {'; '.join(wrong)}")
        for k, v in converted.items():
            own[k].copy_(v)
        return self

    # -- examples for polymodal.testing.check_head ---------------------------------------------------------------
    @classmethod
    def example_config(cls) -> dict[str, Any]:
        return {"horizon": 4, "num_patches": 3}

    def example_input(
        self, batch_size: int = 3, generator: torch.Generator | None = None
    ) -> tuple[Tokens, ...]:
        """Channel-independent tokens of one-channel series (no RevIN): ``num_patches`` real tokens behind [CLS]."""
        c = self.config
        channels = c.channels or 1
        rows = batch_size if c.channel_handling == "mixing" else batch_size * channels
        x = torch.randn(rows, 1 + c.num_patches, c.embed_dim, generator=generator)
        mode = "mixing" if c.channel_handling == "mixing" else "independent"
        meta = SeriesMeta(batch_size=batch_size, channels=channels, channel_mode=mode, revin=None)
        return (Tokens.full(x, self.config.modality or "time_series", series=meta).replace(prefix=1),)

    def example_target(self, tokens: Tokens, generator: torch.Generator | None = None) -> Tensor:
        meta = self._meta(tokens)
        return torch.randn(meta.batch_size, meta.channels, self.config.horizon, generator=generator)


def _patchtst_weight(weight: Tensor, num_patches: int, embed_dim: int, key: str) -> Tensor:
    """``[H, D·N]`` in PatchTST's ``d·N + n`` order -> ``[H, N·D]`` in ours (``n·D + d``)."""
    if weight.dim() != 2 or weight.shape[1] != num_patches * embed_dim:
        raise ValueError(
            f"{key}: expected a PatchTST head weight [H, d_model·patch_num] = [H, {embed_dim}·{num_patches}], got "
            f"{tuple(weight.shape)} (num_patches and embed_dim must be PatchTST's patch_num and d_model)"
        )
    h = weight.shape[0]
    return weight.reshape(h, embed_dim, num_patches).transpose(1, 2).reshape(h, num_patches * embed_dim)


def convert_patchtst_head(state: Mapping[str, Tensor], num_patches: int, embed_dim: int) -> dict[str, Tensor]:
    """The original PatchTST code's ``Flatten_Head`` weights as a :class:`ForecastingHead` state dict.

    PatchTST (github.com/yuqinie98/PatchTST) flattens ``z [bs, nvars, d_model, patch_num]`` (``nn.Flatten(-2)``), so
    its linear layer's input ``d·N + n`` is token ``n``'s feature ``d``; ours flattens ``[N, D]`` (``n·D + d``).
    The columns are permuted so the two compute the same forecast from the same tokens. ``linear.{weight,bias}``
    (shared head) -> ``fc.*``; ``linears.{i}.{weight,bias}`` (``individual=True``) -> ``weight [C, N·D, H]``,
    ``bias [C, H]``. Keys may share a prefix (``model.head.``); anything else in ``state`` is ignored.
    """
    shared = sorted(k[: -len("linear.weight")] for k in state if re.fullmatch(r"(?:.+\.)?linear\.weight", k))
    individual = sorted(
        {m.group(1) for k in state if (m := re.fullmatch(r"((?:.+\.)?)linears\.\d+\.weight", k))}
    )
    found = [("linear", p) for p in shared] + [("linears", p) for p in individual]
    if len(found) != 1:
        what = ", ".join(f"{p}{name}" for name, p in found) or "none"
        raise ValueError(
            f"expected one PatchTST Flatten_Head ('head.linear.weight' or 'head.linears.{{i}}.weight'), found: {what}"
        )
    name, prefix = found[0]
    if name == "linear":
        key = f"{prefix}linear.weight"
        out = {"fc.weight": _patchtst_weight(state[key], num_patches, embed_dim, key)}
        if f"{prefix}linear.bias" in state:
            out["fc.bias"] = state[f"{prefix}linear.bias"]
        return out
    count = 1 + max(
        int(m.group(1))
        for k in state
        if (m := re.fullmatch(rf"{re.escape(prefix)}linears\.(\d+)\.weight", k))
    )
    weights, biases = [], []
    for i in range(count):
        key = f"{prefix}linears.{i}.weight"
        if key not in state or f"{prefix}linears.{i}.bias" not in state:
            raise ValueError(
                f"PatchTST individual head: {key} or its bias is missing (channels 0..{count - 1})"
            )
        weights.append(_patchtst_weight(state[key], num_patches, embed_dim, key).T)
        biases.append(state[f"{prefix}linears.{i}.bias"])
    return {"weight": torch.stack(weights), "bias": torch.stack(biases)}
