"""Classification: one label per sample (softmax) or several (multi-label, sigmoid)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from polymodal.core.heads.base import (
    Head,
    HeadConfig,
    check_class_indices,
    check_multi_hot,
    pool_field,
    pool_tokens,
)
from polymodal.core.tokens import Tokens

__all__ = ["ClassificationHead", "ClassificationHeadConfig"]


class ClassificationHeadConfig(HeadConfig):
    type: str = "classification"
    num_classes: int = Field(..., ge=1, description="Number of classes (labels, for multi-label).")
    pool: Literal["cls", "mean"] = pool_field()
    multi_label: bool = Field(False, description="Independent sigmoid per label instead of one softmax.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the linear layer.")
    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="Label smoothing of the cross-entropy (single-label only)."
    )


class ClassificationHead(Head):
    """LayerNorm + linear classifier over a pooled token (cross-entropy, or BCE when multi-label).

    Metrics (the first is the main one): accuracy and macro-F1, with AUROC of class 1 for two classes and top-5
    accuracy for more than five; multi-label: micro-F1, macro-F1 over labels, accuracy over (sample, label)
    entries, and the macro AUROC and average precision over labels. Scores (:meth:`scores`): the softmax
    probabilities, per-label sigmoids when multi-label.
    """

    name: ClassVar[str] = "classification"
    config_class: ClassVar[type[ClassificationHeadConfig]] = ClassificationHeadConfig
    metrics: ClassVar[tuple[str, ...]] = ("accuracy", "macro_f1")

    def __init__(self, config: ClassificationHeadConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        self.norm = nn.LayerNorm(c.embed_dim)
        self.drop = nn.Dropout(c.dropout)
        self.fc = nn.Linear(c.embed_dim, c.num_classes)
        # per instance: they depend on the config (the class attribute lists those of 3 to 5 classes)
        self.metrics = self.metrics_for(c.num_classes, c.multi_label)

    @staticmethod
    def metrics_for(num_classes: int, multi_label: bool = False) -> tuple[str, ...]:
        """The metric names of a head with ``num_classes`` classes (labels, when ``multi_label``), main one first."""
        if multi_label:
            return ("micro_f1", "macro_f1", "accuracy", "auroc", "average_precision")
        if num_classes == 2:
            return ("accuracy", "macro_f1", "auroc")
        if num_classes > 5:
            return ("accuracy", "macro_f1", "top5_accuracy")
        return ("accuracy", "macro_f1")

    def forward(self, tokens: Tokens) -> Tensor:
        return self.fc(self.drop(self.norm(pool_tokens(tokens, self.config.pool))))

    def check_target(self, output: Tensor, target: Any) -> Tensor:
        """Class indices ``[B]`` in ``[0, num_classes)`` (``-100``: ignored; integral floats accepted), or multi-hot
        ``[B, num_classes]`` of 0 and 1 when ``multi_label``."""
        if self.config.multi_label:
            return check_multi_hot(target, self.name, tuple(output.shape))
        return check_class_indices(target, self.name, self.config.num_classes, (output.shape[0],))

    def loss(self, output: Tensor, target: Any) -> Tensor:
        target = self.check_target(output, target)
        if self.config.multi_label:
            return F.binary_cross_entropy_with_logits(output, target.to(output.dtype))
        return F.cross_entropy(output, target, label_smoothing=self.config.label_smoothing)

    def predict(self, output: Tensor) -> Tensor:
        if self.config.multi_label:
            return (output > 0).long()
        return output.argmax(dim=-1)

    def scores(self, output: Tensor) -> Tensor:
        """Probabilities ``[B, C]`` in float32: the softmax over classes, or each label's sigmoid when multi-label."""
        output = output.float()
        return output.sigmoid() if self.config.multi_label else output.softmax(dim=-1)

    def metric_params(self) -> dict[str, Any]:
        return {"num_classes": self.config.num_classes, "multi_label": self.config.multi_label}

    @classmethod
    def example_config(cls) -> dict[str, Any]:
        return {"num_classes": 3}

    def example_target(self, tokens: Tokens, generator: torch.Generator | None = None) -> Tensor:
        b, c = tokens.batch_size, self.config.num_classes
        if self.config.multi_label:
            return torch.randint(0, 2, (b, c), generator=generator).float()
        return torch.randint(0, c, (b,), generator=generator)
