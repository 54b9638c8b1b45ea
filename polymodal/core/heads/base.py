"""Task heads ``h``: small modules that turn encoded :class:`Tokens` into predictions, with their loss and metrics.

Input: encoded ``Tokens`` ``[B, N, D]`` whose first ``tokens.prefix`` positions are model-added tokens ([CLS]).
Outputs and targets per head:

============================  ==========================================  ============================================
head                          output                                      target
============================  ==========================================  ============================================
``classification``            ``[B, C]`` logits                           ``[B]`` long, or ``[B, C]`` multi-hot
``regression``                ``[B, out_dim]`` values                     ``[B, out_dim]`` float (``[B]`` if 1-D)
``token_classification``      ``[B, N - prefix, C]`` per-token logits     ``[B, N - prefix]`` long, ``-100`` = ignore
``embedding``                 ``[B, E]``, or ``[B, 2, E]`` when paired    none, or ``[B]`` labels (``positives="label"``)
============================  ==========================================  ============================================

Each head declares its loss (``loss``), how raw outputs become predictions (``predict``) and the names of its
metrics (``metrics``, computed by :mod:`polymodal.train.metrics` from predictions and targets). The embedding head
contrasts two paired inputs with a symmetric InfoNCE loss (CLIP, Radford et al., arXiv 2103.00020).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from polymodal.core.component import Component, ComponentConfig
from polymodal.core.tokens import Tokens

__all__ = ["IGNORE_INDEX", "Head", "HeadConfig", "pool_field", "pool_tokens"]

IGNORE_INDEX = -100


class HeadConfig(ComponentConfig):
    """Fields every head has."""

    embed_dim: int = Field(
        768, gt=0, description="Input width D. Inside a model it is taken from the encoder."
    )
    modality: str | None = Field(
        None, description="Which input's tokens the head reads; defaults to the task's own key in the model."
    )

    def inputs(self, task: str) -> tuple[str, ...]:
        """The model inputs whose encoded tokens the head's ``forward`` takes, in order (``modality``, default the
        task's own key; heads that read more inputs add them)."""
        return (self.modality or task,)
    loss_weight: float = Field(
        1.0, ge=0, description="Weight of this task's loss in the summed training loss."
    )


class Head(Component, nn.Module):
    """Base class of task heads: ``forward(tokens) -> output``, ``loss(output, target)``, ``predict(output)``.

    Class attributes: ``metrics`` names the metrics computed on ``(predict(output), target)`` during evaluation
    (see :mod:`polymodal.train.metrics`); ``requires_target`` is ``False`` for heads whose loss can do without
    targets (the embedding head).
    """

    kind: ClassVar[str] = "head"
    config_class: ClassVar[type[HeadConfig]] = HeadConfig
    metrics: ClassVar[tuple[str, ...]] = ()
    requires_target: ClassVar[bool] = True

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

    def align_target(self, tokens: Tokens, target: Any) -> Any:
        """Bring a collated target in line with the encoded tokens before ``loss`` and metrics (for per-token
        targets: mark padded positions as ignored). The default returns ``target`` unchanged."""
        return target

    def metric_params(self) -> dict[str, Any]:
        """Plain values the metrics need (number of classes, multi-label, …)."""
        return {}

    # -- examples for the conformance checks (polymodal.testing.check_head) -------------------------------------
    @classmethod
    def example_config(cls) -> dict[str, Any]:
        """Values for the config's required fields (e.g. ``num_classes``) that make a small valid head."""
        return {}

    def example_input(self, batch_size: int = 3, generator: torch.Generator | None = None) -> tuple[Tokens, ...]:
        """Encoded tokens for ``forward``, one :class:`Tokens` per input the head reads: a [CLS] prefix and real
        lengths that differ between rows (the last row padded)."""
        lengths = torch.tensor([5 + (i % 3) for i in range(batch_size)])
        n = 1 + int(lengths.max())
        mask = torch.arange(n)[None] < (1 + lengths)[:, None]
        out = []
        for key in self.config.inputs("task"):
            x = torch.randn(batch_size, n, self.config.embed_dim, generator=generator) * mask[..., None]
            out.append(Tokens(x, mask, key, prefix=1))
        return tuple(out)

    def example_target(self, tokens: Tokens, generator: torch.Generator | None = None) -> Any:
        """A valid target for the output on ``tokens`` (``None`` for heads that need none)."""
        return None


def pool_tokens(tokens: Tokens, pool: Literal["cls", "mean"]) -> Tensor:
    """``[B, D]``: the first prefix token (``cls``) or the mean over real non-prefix tokens (``mean``)."""
    if pool == "cls":
        if tokens.prefix < 1:
            raise ValueError(f"{tokens.modality}: pool='cls' needs a [CLS] token, but the model adds none")
        return tokens.embeddings[:, 0]
    x, m = tokens.embeddings[:, tokens.prefix :], tokens.mask[:, tokens.prefix :]
    w = m.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


def pool_field() -> Any:
    return Field("cls", description="Read the [CLS] token or mean-pool the real (non-prefix) tokens.")
