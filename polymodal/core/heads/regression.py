"""Regression: ``out_dim`` values per sample, mean squared error."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from polymodal.core.heads.base import (
    Head,
    HeadConfig,
    check_value_target,
    pool_field,
    pool_tokens,
)
from polymodal.core.tokens import Tokens

__all__ = ["RegressionHead", "RegressionHeadConfig", "mse_loss"]


def mse_loss(output: Tensor, target: Any, head: str) -> Tensor:
    """Mean squared error of ``output`` against ``target`` of the same shape (the loss of every head that predicts
    values); another shape or NaN/Inf targets are a :class:`~polymodal.core.heads.TargetError` naming the
    ``head`` (:func:`~polymodal.core.heads.check_value_target`)."""
    return F.mse_loss(output, check_value_target(output, target, head).to(output.dtype))


class RegressionHeadConfig(HeadConfig):
    type: str = "regression"
    out_dim: int = Field(1, ge=1, description="Number of values predicted per sample.")
    pool: Literal["cls", "mean"] = pool_field()
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the linear layer.")


class RegressionHead(Head):
    """LayerNorm + linear regressor over a pooled token, trained with mean squared error."""

    name: ClassVar[str] = "regression"
    config_class: ClassVar[type[RegressionHeadConfig]] = RegressionHeadConfig
    metrics: ClassVar[tuple[str, ...]] = ("mse", "mae")

    def __init__(self, config: RegressionHeadConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        self.norm = nn.LayerNorm(c.embed_dim)
        self.drop = nn.Dropout(c.dropout)
        self.fc = nn.Linear(c.embed_dim, c.out_dim)

    def forward(self, tokens: Tokens) -> Tensor:
        return self.fc(self.drop(self.norm(pool_tokens(tokens, self.config.pool))))

    def align_target(self, tokens: Tokens, target: Any) -> Any:
        if isinstance(target, Tensor) and target.dim() == 1 and self.config.out_dim == 1:
            return target.unsqueeze(1)
        return target

    def check_target(self, output: Tensor, target: Any) -> Tensor:
        """Finite values of the output's shape ``[B, out_dim]``."""
        return check_value_target(output, target, self.name)

    def loss(self, output: Tensor, target: Any) -> Tensor:
        return mse_loss(output, target, self.name)

    def example_target(self, tokens: Tokens, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(tokens.batch_size, self.config.out_dim, generator=generator)
