"""Token classification: one label per token the tokenizer made (nodes, points, words)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from polymodal.core.heads.base import IGNORE_INDEX, Head, HeadConfig
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
        return self.fc(self.drop(self.norm(tokens.embeddings[:, tokens.prefix :])))

    def align_target(self, tokens: Tokens, target: Any) -> Any:
        expected = (tokens.batch_size, tokens.num_tokens - tokens.prefix)
        if not isinstance(target, Tensor) or tuple(target.shape) != expected:
            got = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
            raise ValueError(
                f"token_classification: expected targets of shape {expected} (one per token of "
                f"{tokens.modality!r}, -100 = ignore), got {got}"
            )
        real = tokens.mask[:, tokens.prefix :].to(target.device)
        return target.long().masked_fill(~real, IGNORE_INDEX)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
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
