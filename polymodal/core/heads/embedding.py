"""Embeddings and retrieval: an L2-normalised projection; paired inputs contrasted with symmetric InfoNCE (CLIP,
Radford et al., arXiv 2103.00020)."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from polymodal.core.heads.base import (
    Head,
    HeadConfig,
    TargetError,
    check_target_tensor,
    pool_field,
    pool_tokens,
)
from polymodal.core.tokens import Tokens

__all__ = ["EmbeddingHead", "EmbeddingHeadConfig", "info_nce"]


class EmbeddingHeadConfig(HeadConfig):
    type: str = "embedding"
    out_dim: int = Field(128, ge=1, description="Width E of the normalised embedding.")
    pool: Literal["cls", "mean"] = pool_field()
    pair: str | None = Field(
        None,
        description="Input key of the paired input: row i of `modality` and row i of `pair` are one sample's two "
        "views, contrasted against the other rows of the batch (symmetric InfoNCE). None: no loss, embeddings only.",
    )
    shared_projection: bool = Field(
        False,
        description="One projection for both inputs instead of one per input (CLIP uses one per input).",
    )
    temperature: float = Field(0.07, gt=0, description="Initial softmax temperature of the contrastive loss.")
    learnable_temperature: bool = Field(True, description="Learn the temperature (as CLIP's logit scale).")
    positives: Literal["pair", "label"] = Field(
        "pair",
        description="'pair': only row i of the other input is a positive; 'label': every row with the same target "
        "label is (for pairs formed by class, e.g. an image and a sound of one digit).",
    )

    def inputs(self, task: str) -> tuple[str, ...]:
        first = self.modality or task
        return (first,) if self.pair is None else (first, self.pair)


class EmbeddingHead(Head):
    """Projection to an L2-normalised vector; with ``pair`` set, a symmetric InfoNCE loss between the two inputs.

    Output: ``[B, E]`` for one input, ``[B, 2, E]`` (``[:, 0]`` the ``modality`` input, ``[:, 1]`` the ``pair``)
    when paired. Logits are ``exp(s) * a @ b.T`` with ``s = log(1 / temperature)`` clamped to ``log(100)``.
    """

    name: ClassVar[str] = "embedding"
    config_class: ClassVar[type[EmbeddingHeadConfig]] = EmbeddingHeadConfig
    metrics: ClassVar[tuple[str, ...]] = ("recall_at_1",)
    requires_target: ClassVar[bool] = False

    def __init__(self, config: EmbeddingHeadConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        self.norm = nn.LayerNorm(c.embed_dim)
        self.proj = nn.Linear(c.embed_dim, c.out_dim, bias=False)
        if c.pair is not None and not c.shared_projection:
            self.pair_norm = nn.LayerNorm(c.embed_dim)
            self.pair_proj = nn.Linear(c.embed_dim, c.out_dim, bias=False)
        scale = torch.tensor(math.log(1.0 / c.temperature))
        if c.learnable_temperature:
            self.logit_scale = nn.Parameter(scale)
        else:
            self.register_buffer("logit_scale", scale)

    def _embed(self, tokens: Tokens, second: bool) -> Tensor:
        norm, proj = (
            (self.pair_norm, self.pair_proj)
            if second and hasattr(self, "pair_proj")
            else (
                self.norm,
                self.proj,
            )
        )
        return F.normalize(proj(norm(pool_tokens(tokens, self.config.pool))), dim=-1)

    def forward(self, tokens: Tokens, pair: Tokens | None = None) -> Tensor:
        a = self._embed(tokens, second=False)
        if pair is None:
            return a
        if pair.num_samples != tokens.num_samples:
            raise ValueError(
                f"embedding: paired inputs {tokens.modality!r} and {pair.modality!r} need one row per sample, got "
                f"batches of {tokens.num_samples} and {pair.num_samples}"
            )
        return torch.stack([a, self._embed(pair, second=True)], dim=1)

    def check_target(self, output: Tensor, target: Any) -> Any:
        """With ``positives="label"``: integer labels ``[B]`` (integral floats accepted); otherwise targets are not
        used and pass unchanged."""
        if self.config.positives != "label":
            return target
        what = f"integer labels of shape ({output.shape[0]},) (positives='label')"
        t = check_target_tensor(target, self.name, what)
        if tuple(t.shape) != (output.shape[0],):
            raise TargetError(self.name, what, f"{tuple(t.shape)}")
        if t.is_floating_point() and not bool((torch.isfinite(t) & (t == t.round())).all()):
            raise TargetError(self.name, what, "non-integer or NaN/Inf values")
        return t.long()

    def loss(self, output: Tensor, target: Tensor | None = None) -> Tensor:
        if output.dim() != 3 or output.shape[1] != 2:
            raise ValueError(
                "embedding: the contrastive loss needs paired embeddings [B, 2, E]; set the head's 'pair' to the "
                f"input key of the second view (got output of shape {tuple(output.shape)})"
            )
        labels = None
        if self.config.positives == "label":
            if target is None:
                raise TargetError(self.name, f"target labels [{output.shape[0]}] (positives='label')", "None")
            labels = self.check_target(output, target)
        scale = self.logit_scale.clamp(max=math.log(100.0)).exp()
        return info_nce(output[:, 0], output[:, 1], scale, labels)

    def metric_params(self) -> dict[str, Any]:
        return {"positives": self.config.positives}

    @classmethod
    def example_config(cls) -> dict[str, Any]:
        return {"out_dim": 8, "pair": "second"}

    def example_target(self, tokens: Tokens, generator: torch.Generator | None = None) -> Tensor | None:
        if self.config.positives != "label":
            return None
        return torch.randint(0, 2, (tokens.batch_size,), generator=generator)


def info_nce(a: Tensor, b: Tensor, scale: Tensor | float, labels: Tensor | None = None) -> Tensor:
    """Symmetric InfoNCE between row-aligned embeddings ``a`` and ``b`` ``[B, E]``.

    Without ``labels`` row i of ``b`` is the one positive of row i of ``a`` (cross-entropy against the diagonal,
    both directions, averaged). With ``labels`` ``[B]`` every ``b`` row of the same label is a positive and the
    target distribution is uniform over them.
    """
    logits = scale * a @ b.t()
    if labels is None:
        idx = torch.arange(a.shape[0], device=a.device)
        return 0.5 * (F.cross_entropy(logits, idx) + F.cross_entropy(logits.t(), idx))
    labels = labels.reshape(-1).to(a.device)
    pos = (labels[:, None] == labels[None, :]).to(logits.dtype)
    pos = pos / pos.sum(1, keepdim=True)
    loss_a = -(pos * F.log_softmax(logits, dim=1)).sum(1).mean()
    loss_b = -(pos * F.log_softmax(logits.t(), dim=1)).sum(1).mean()  # pos is symmetric
    return 0.5 * (loss_a + loss_b)
