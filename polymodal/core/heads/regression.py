"""Regression: ``out_dim`` values per sample, trained with the mean squared error of standardised targets.

The head standardises its targets itself: ``target_mean`` and ``target_std`` (one value per output, fitted on the
training targets by :func:`target_stats`; ``polymodal.fit`` fills them when the head has none, and
``ArrayDataset.head_config()`` gives them for a regression dataset) live in the head's config, so they travel with
the model (``config.json``) and round-trip through JSON. The linear layer predicts a standardised value ``z``;
``forward`` returns ``z * target_std + target_mean``, so outputs, predictions and metrics are in the targets' own
units, and the loss is the mean squared *standardised* residual ``((output - target) / target_std) ** 2``. A head
without them behaves as one with mean 0 and std 1 (the raw targets). Output ``[B, out_dim]``, target
``[B, out_dim]`` (``[B]`` when ``out_dim == 1``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from polymodal.core.heads.base import (
    Head,
    HeadConfig,
    check_value_target,
    pool_field,
    pool_tokens,
)
from polymodal.core.tokens import Tokens

__all__ = ["RegressionHead", "RegressionHeadConfig", "mse_loss", "target_stats"]


def mse_loss(output: Tensor, target: Any, head: str) -> Tensor:
    """Mean squared error of ``output`` against ``target`` of the same shape (the loss of every head that predicts
    values); another shape or NaN/Inf targets are a :class:`~polymodal.core.heads.TargetError` naming the
    ``head`` (:func:`~polymodal.core.heads.check_value_target`)."""
    return F.mse_loss(output, check_value_target(output, target, head).to(output.dtype))


def target_stats(targets: Any) -> tuple[list[float], list[float]]:
    """``(mean, std)`` per output of regression targets ``[N]`` or ``[N, K]`` (computed in float64; the population
    standard deviation). An output whose targets never change gets std 1 (it cannot be scaled)."""
    t = torch.as_tensor(targets).detach().cpu().double()
    if t.dim() == 1:
        t = t.unsqueeze(1)
    if t.dim() != 2 or t.shape[0] == 0:
        raise ValueError(
            f"target_stats: expected targets (N,) or (N, K) with N >= 1, got shape {tuple(t.shape)}"
        )
    if not bool(torch.isfinite(t).all()):
        raise ValueError(
            f"target_stats: expected finite targets, got {int((~torch.isfinite(t)).sum())} NaN/Inf"
        )
    mean = t.mean(0)
    std = t.std(0, unbiased=False)
    std = torch.where(std > 1e-12 * (1.0 + mean.abs()), std, torch.ones_like(std))
    return [float(v) for v in mean], [float(v) for v in std]


class RegressionHeadConfig(HeadConfig):
    type: str = "regression"
    out_dim: int = Field(1, ge=1, description="Number of values predicted per sample.")
    pool: Literal["cls", "mean"] = pool_field()
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the linear layer.")
    target_mean: list[float] | None = Field(
        None,
        description="Mean of the training targets, one per output: predictions are z * target_std + target_mean "
        "(None: 0). Filled by polymodal.fit from the training data when neither statistic is set.",
    )
    target_std: list[float] | None = Field(
        None,
        description="Standard deviation of the training targets, one per output (> 0): the loss is the MSE of "
        "(output - target) / target_std (None: 1).",
    )

    @model_validator(mode="after")
    def _check_stats(self) -> RegressionHeadConfig:
        for name in ("target_mean", "target_std"):
            values = getattr(self, name)
            if values is None:
                continue
            if len(values) != self.out_dim:
                raise ValueError(f"{name}: expected {self.out_dim} values (out_dim), got {len(values)}")
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"{name}: expected finite values, got {values}")
        if self.target_std is not None and min(self.target_std) <= 0:
            raise ValueError(f"target_std: expected values > 0, got {self.target_std}")
        return self

    @property
    def has_target_stats(self) -> bool:
        """Whether either statistic is set (``fit`` fills them only when neither is)."""
        return self.target_mean is not None or self.target_std is not None


class RegressionHead(Head):
    """LayerNorm + linear regressor over a pooled token, in the targets' units, trained on standardised targets
    (see the module docstring). Metrics: MSE (the main one), RMSE and MAE, in the targets' units."""

    name: ClassVar[str] = "regression"
    config_class: ClassVar[type[RegressionHeadConfig]] = RegressionHeadConfig
    metrics: ClassVar[tuple[str, ...]] = ("mse", "rmse", "mae")

    def __init__(self, config: RegressionHeadConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        self.norm = nn.LayerNorm(c.embed_dim)
        self.drop = nn.Dropout(c.dropout)
        self.fc = nn.Linear(c.embed_dim, c.out_dim)
        self._stats_cache: tuple[Any, Tensor, Tensor] | None = None

    def set_target_stats(self, mean: list[float] | None, std: list[float] | None) -> None:
        """Set (or, with ``None``, clear) the target statistics in the head's config (validated)."""
        updated = self.config.model_validate(
            {**self.config.model_dump(), "target_mean": mean, "target_std": std}
        )
        # field by field, on the config object itself: the model's config holds the same object
        self.config.target_mean = None
        self.config.target_std = updated.target_std
        self.config.target_mean = updated.target_mean

    def _stats(self, like: Tensor) -> tuple[Tensor, Tensor] | None:
        """``(mean, std)`` as float32 tensors on ``like``'s device, or ``None`` when the head has no statistics."""
        c = self.config
        if not c.has_target_stats:
            return None
        key = (tuple(c.target_mean or ()), tuple(c.target_std or ()), like.device)
        if self._stats_cache is None or self._stats_cache[0] != key:
            mean = torch.tensor(c.target_mean or [0.0] * c.out_dim, dtype=torch.float32, device=like.device)
            std = torch.tensor(c.target_std or [1.0] * c.out_dim, dtype=torch.float32, device=like.device)
            self._stats_cache = (key, mean, std)
        return self._stats_cache[1], self._stats_cache[2]

    def forward(self, tokens: Tokens) -> Tensor:
        z = self.fc(self.drop(self.norm(pool_tokens(tokens, self.config.pool))))
        stats = self._stats(z)
        if stats is None:
            return z
        mean, std = stats
        return z.float() * std + mean

    def align_target(self, tokens: Tokens, target: Any) -> Any:
        if isinstance(target, Tensor) and target.dim() == 1 and self.config.out_dim == 1:
            return target.unsqueeze(1)
        return target

    def check_target(self, output: Tensor, target: Any) -> Tensor:
        """Finite values of the output's shape ``[B, out_dim]``."""
        return check_value_target(output, target, self.name)

    def loss(self, output: Tensor, target: Any) -> Tensor:
        """Mean squared standardised residual ``((output - target) / target_std) ** 2`` (the plain MSE without
        statistics)."""
        stats = self._stats(output)
        if stats is None:
            return mse_loss(output, target, self.name)
        t = check_value_target(output, target, self.name)
        std = stats[1]
        return F.mse_loss(output.float() / std, t.float() / std)

    def example_target(self, tokens: Tokens, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(tokens.batch_size, self.config.out_dim, generator=generator)
