"""Task heads ``h``: small modules that turn encoded :class:`Tokens` into predictions, with their loss.

Input: encoded ``Tokens`` ``[B, N, D]`` whose first ``tokens.prefix`` positions are model-added tokens ([CLS]).
Output: a tensor of predictions (``[B, num_classes]`` logits for classification).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from polymodal.core.component import Component, ComponentConfig
from polymodal.core.tokens import Tokens

__all__ = ["ClassificationHead", "ClassificationHeadConfig", "Head", "HeadConfig", "pool_tokens"]


class HeadConfig(ComponentConfig):
    """Fields every head has."""

    embed_dim: int = Field(
        768, gt=0, description="Input width D. Inside a model it is taken from the encoder."
    )
    modality: str | None = Field(
        None, description="Which input's tokens the head reads; defaults to the task's own key in the model."
    )
    loss_weight: float = Field(
        1.0, ge=0, description="Weight of this task's loss in the summed training loss."
    )


class Head(Component, nn.Module):
    """Base class of task heads: ``forward(tokens) -> output``, ``loss(output, target)``, ``predict(output)``."""

    kind: ClassVar[str] = "head"
    config_class: ClassVar[type[HeadConfig]] = HeadConfig
    metrics: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: HeadConfig | dict[str, Any] | None = None) -> None:
        nn.Module.__init__(self)
        self.config = self.coerce_config(config)

    def forward(self, tokens: Tokens) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, output: Tensor, target: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, output: Tensor) -> Tensor:
        """Turn the raw output into predictions (class indices, values, …)."""
        return output


def pool_tokens(tokens: Tokens, pool: Literal["cls", "mean"]) -> Tensor:
    """``[B, D]``: the first prefix token (``cls``) or the mean over real non-prefix tokens (``mean``)."""
    if pool == "cls":
        if tokens.prefix < 1:
            raise ValueError(f"{tokens.modality}: pool='cls' needs a [CLS] token, but the model adds none")
        return tokens.embeddings[:, 0]
    x, m = tokens.embeddings[:, tokens.prefix :], tokens.mask[:, tokens.prefix :]
    w = m.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


class ClassificationHeadConfig(HeadConfig):
    type: str = "classification"
    num_classes: int = Field(..., ge=1, description="Number of classes (labels, for multi-label).")
    pool: Literal["cls", "mean"] = Field(
        "cls", description="Read the [CLS] token or mean-pool the real tokens."
    )
    multi_label: bool = Field(False, description="Independent sigmoid per label instead of one softmax.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the linear layer.")


class ClassificationHead(Head):
    """LayerNorm + linear classifier over a pooled token (cross-entropy, or BCE when multi-label)."""

    name: ClassVar[str] = "classification"
    config_class: ClassVar[type[ClassificationHeadConfig]] = ClassificationHeadConfig
    metrics: ClassVar[tuple[str, ...]] = ("accuracy", "macro_f1")

    def __init__(self, config: ClassificationHeadConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        self.norm = nn.LayerNorm(c.embed_dim)
        self.drop = nn.Dropout(c.dropout)
        self.fc = nn.Linear(c.embed_dim, c.num_classes)

    def forward(self, tokens: Tokens) -> Tensor:
        return self.fc(self.drop(self.norm(pool_tokens(tokens, self.config.pool))))

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        if self.config.multi_label:
            return F.binary_cross_entropy_with_logits(output, target.to(output.dtype))
        return F.cross_entropy(output, target.long())

    def predict(self, output: Tensor) -> Tensor:
        if self.config.multi_label:
            return (output > 0).long()
        return output.argmax(dim=-1)


HEAD_CLASSES = (ClassificationHead,)
