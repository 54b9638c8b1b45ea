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

import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from polymodal.core.component import Component, ComponentConfig
from polymodal.core.tokens import Tokens

__all__ = [
    "HEAD_CLASSES",
    "ClassificationHead",
    "ClassificationHeadConfig",
    "EmbeddingHead",
    "EmbeddingHeadConfig",
    "Head",
    "HeadConfig",
    "RegressionHead",
    "RegressionHeadConfig",
    "TokenClassificationHead",
    "TokenClassificationHeadConfig",
    "info_nce",
    "pool_tokens",
]

IGNORE_INDEX = -100


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

    def input_keys(self, task: str) -> tuple[str, ...]:
        """The model inputs whose encoded tokens ``forward`` takes, in order (one for most heads)."""
        return (self.config.modality or task,)

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


def pool_tokens(tokens: Tokens, pool: Literal["cls", "mean"]) -> Tensor:
    """``[B, D]``: the first prefix token (``cls``) or the mean over real non-prefix tokens (``mean``)."""
    if pool == "cls":
        if tokens.prefix < 1:
            raise ValueError(f"{tokens.modality}: pool='cls' needs a [CLS] token, but the model adds none")
        return tokens.embeddings[:, 0]
    x, m = tokens.embeddings[:, tokens.prefix :], tokens.mask[:, tokens.prefix :]
    w = m.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


def _pool_field() -> Any:
    return Field("cls", description="Read the [CLS] token or mean-pool the real (non-prefix) tokens.")


# -- classification ---------------------------------------------------------------------------------------------
class ClassificationHeadConfig(HeadConfig):
    type: str = "classification"
    num_classes: int = Field(..., ge=1, description="Number of classes (labels, for multi-label).")
    pool: Literal["cls", "mean"] = _pool_field()
    multi_label: bool = Field(False, description="Independent sigmoid per label instead of one softmax.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the linear layer.")
    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="Label smoothing of the cross-entropy (single-label only)."
    )


class ClassificationHead(Head):
    """LayerNorm + linear classifier over a pooled token (cross-entropy, or BCE when multi-label).

    Metrics: accuracy and macro-F1; multi-label: accuracy over (sample, label) entries, micro-F1 (the main one)
    and macro-F1 over labels.
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
        if c.multi_label:  # per instance: the class attribute lists the single-label metrics
            self.metrics = ("micro_f1", "macro_f1", "accuracy")

    def forward(self, tokens: Tokens) -> Tensor:
        return self.fc(self.drop(self.norm(pool_tokens(tokens, self.config.pool))))

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        c = self.config
        if c.multi_label:
            if tuple(target.shape) != tuple(output.shape):
                raise ValueError(
                    f"classification: expected multi-hot targets of shape {tuple(output.shape)}, "
                    f"got {tuple(target.shape)}"
                )
            return F.binary_cross_entropy_with_logits(output, target.to(output.dtype))
        if target.dim() != 1 or target.shape[0] != output.shape[0]:
            raise ValueError(
                f"classification: expected class indices of shape ({output.shape[0]},), got {tuple(target.shape)}"
            )
        return F.cross_entropy(output, target.long(), label_smoothing=c.label_smoothing)

    def predict(self, output: Tensor) -> Tensor:
        if self.config.multi_label:
            return (output > 0).long()
        return output.argmax(dim=-1)

    def metric_params(self) -> dict[str, Any]:
        return {"num_classes": self.config.num_classes, "multi_label": self.config.multi_label}


# -- regression -------------------------------------------------------------------------------------------------
class RegressionHeadConfig(HeadConfig):
    type: str = "regression"
    out_dim: int = Field(1, ge=1, description="Number of values predicted per sample.")
    pool: Literal["cls", "mean"] = _pool_field()
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

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        if tuple(target.shape) != tuple(output.shape):
            raise ValueError(
                f"regression: expected targets of shape {tuple(output.shape)}, got {tuple(target.shape)}"
            )
        return F.mse_loss(output, target.to(output.dtype))


# -- token classification ---------------------------------------------------------------------------------------
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


# -- embedding / retrieval --------------------------------------------------------------------------------------
class EmbeddingHeadConfig(HeadConfig):
    type: str = "embedding"
    out_dim: int = Field(128, ge=1, description="Width E of the normalised embedding.")
    pool: Literal["cls", "mean"] = _pool_field()
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

    def input_keys(self, task: str) -> tuple[str, ...]:
        first = self.config.modality or task
        return (first,) if self.config.pair is None else (first, self.config.pair)

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
        if pair.batch_size != tokens.batch_size:
            raise ValueError(
                f"embedding: paired inputs {tokens.modality!r} and {pair.modality!r} need one row per sample, got "
                f"batches of {tokens.batch_size} and {pair.batch_size}"
            )
        return torch.stack([a, self._embed(pair, second=True)], dim=1)

    def loss(self, output: Tensor, target: Tensor | None = None) -> Tensor:
        if output.dim() != 3 or output.shape[1] != 2:
            raise ValueError(
                "embedding: the contrastive loss needs paired embeddings [B, 2, E]; set the head's 'pair' to the "
                f"input key of the second view (got output of shape {tuple(output.shape)})"
            )
        labels = target if self.config.positives == "label" else None
        if self.config.positives == "label" and target is None:
            raise ValueError("embedding: positives='label' needs target labels [B]")
        scale = self.logit_scale.clamp(max=math.log(100.0)).exp()
        return info_nce(output[:, 0], output[:, 1], scale, labels)

    def metric_params(self) -> dict[str, Any]:
        return {"positives": self.config.positives}


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


HEAD_CLASSES = (ClassificationHead, RegressionHead, TokenClassificationHead, EmbeddingHead)
