"""Token classification: one label per token the tokenizer made (nodes, points, words)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from polymodal.core.heads.base import (
    IGNORE_INDEX,
    Head,
    HeadConfig,
    TargetError,
    check_class_indices,
    check_target_tensor,
)
from polymodal.core.tokens import Tokens

__all__ = ["TokenClassificationHead", "TokenClassificationHeadConfig"]


class TokenClassificationHeadConfig(HeadConfig):
    type: str = "token_classification"
    num_classes: int = Field(..., ge=1, description="Number of classes per token.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the linear layer.")


class TokenClassificationHead(Head):
    """LayerNorm + linear classifier on every token the tokenizer made (model-added prefix tokens excluded).

    Targets are ``[B, N_tokens]`` class indices in the tokenizer's token order, ``-100`` where there is nothing to
    predict; padded token positions (mask ``False``) are ignored whatever their target says.

    Tokens with several rows per sample (``Tokens.rows_per_sample > 1``: a tokenizer that makes one sequence per
    channel) are refused with a clear error rather than given one output row per channel: configure the tokenizer
    to make one sequence per sample.
    """

    name: ClassVar[str] = "token_classification"
    config_class: ClassVar[type[TokenClassificationHeadConfig]] = TokenClassificationHeadConfig
    metrics: ClassVar[tuple[str, ...]] = ("accuracy", "macro_f1")

    def __init__(self, config: TokenClassificationHeadConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        self.norm = nn.LayerNorm(c.embed_dim)
        self.drop = nn.Dropout(c.dropout)
        self.fc = nn.Linear(c.embed_dim, c.num_classes)

    def forward(self, tokens: Tokens) -> Tensor:
        if tokens.rows_per_sample != 1:
            raise ValueError(
                f"{tokens.modality}: token_classification expects one token sequence per sample, got "
                f"{tokens.rows_per_sample} rows per sample (the tokenizer makes one sequence per channel); configure "
                "the tokenizer to make one sequence per sample"
            )
        return self.fc(self.drop(self.norm(tokens.embeddings[:, tokens.prefix :])))

    def align_target(self, tokens: Tokens, target: Any) -> Any:
        expected = (tokens.batch_size, tokens.num_tokens - tokens.prefix)
        what = f"targets of shape {expected} (one per token of {tokens.modality!r}, -100 = ignore)"
        t = check_target_tensor(target, self.name, what)
        if tuple(t.shape) != expected:
            raise TargetError(self.name, what, f"{tuple(t.shape)}")
        if t.dtype == torch.bool:
            t = t.long()
        real = tokens.mask[:, tokens.prefix :].to(t.device)
        return t.masked_fill(~real, IGNORE_INDEX)  # float targets keep their dtype: check_target refuses 0.7

    def check_target(self, output: Tensor, target: Any) -> Tensor:
        """Class indices ``[B, N_tokens]`` in ``[0, num_classes)`` or ``-100`` (integral floats accepted)."""
        return check_class_indices(target, self.name, self.config.num_classes, tuple(output.shape[:2]))

    def loss(self, output: Tensor, target: Any) -> Tensor:
        target = self.check_target(output, target)
        valid = target != IGNORE_INDEX
        if not bool(valid.any()):
            return output.sum() * 0.0  # keeps the graph (and DDP) intact when a batch has nothing to predict
        return F.cross_entropy(output[valid], target[valid])

    def predict(self, output: Tensor) -> Tensor:
        return output.argmax(dim=-1)

    def metric_params(self) -> dict[str, Any]:
        return {"num_classes": self.config.num_classes, "multi_label": False}

    @classmethod
    def example_config(cls) -> dict[str, Any]:
        return {"num_classes": 3}

    def example_target(self, tokens: Tokens, generator: torch.Generator | None = None) -> Tensor:
        shape = (tokens.batch_size, tokens.num_tokens - tokens.prefix)
        return torch.randint(0, self.config.num_classes, shape, generator=generator)
