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

Targets are checked before a loss or a metric sees them (``Head.check_target``, called by the model in training and
in evaluation, and by the built-in heads' ``loss``): integral floats are accepted as class indices, and targets that
are not tensors (a list: convert it with ``torch.as_tensor``), non-integral class targets, labels out of range,
other shapes, NaN/Inf values and multi-label targets other than 0/1 raise a :class:`TargetError` naming the task, what was expected and what came
(``digits: expected class indices in [0, 3) (or -100 to ignore), got 7``).

Tokens whose ``rows_per_sample`` is above 1 (a tokenizer that makes one sequence per channel) are pooled per sample:
:func:`pool_tokens` averages the pooled rows of each sample, so the classification, regression and embedding heads
give one row per sample; the token classification head refuses such tokens.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from polymodal.core.component import Component, ComponentConfig
from polymodal.core.tokenizer import describe
from polymodal.core.tokens import Tokens

__all__ = [
    "IGNORE_INDEX",
    "Head",
    "HeadConfig",
    "TargetError",
    "check_class_indices",
    "check_multi_hot",
    "check_target_tensor",
    "check_value_target",
    "pool_field",
    "pool_tokens",
]

IGNORE_INDEX = -100


class TargetError(ValueError):
    """Targets a head cannot take. The message names the task (or the head, when a head is used on its own), what
    was expected and what came: ``digits: expected class indices in [0, 3) (or -100 to ignore), got 7``."""

    def __init__(self, task: str, expected: str, got: str) -> None:
        self.task, self.expected, self.got = task, expected, got
        super().__init__(f"{task}: expected {expected}, got {got}")

    def __reduce__(self) -> tuple[Any, ...]:  # pickles (e.g. out of a DataLoader worker) with its three parts
        return type(self), (self.task, self.expected, self.got)

    def for_task(self, task: str) -> TargetError:
        """The same error naming ``task`` (what the model re-raises: the head named itself)."""
        return self if self.task == task else TargetError(task, self.expected, self.got)


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
    (see :mod:`polymodal.train.metrics`; ranking metrics take ``scores(output)`` instead, and the first name is the
    task's main metric, used for model selection); ``requires_target`` is ``False`` for heads whose loss can do
    without targets (the embedding head).
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

    def scores(self, output: Tensor) -> Tensor | None:
        """Per-class scores of the raw output for ranking metrics (AUROC, average precision, top-k accuracy: metrics
        with ``uses_scores``), one row per sample, e.g. probabilities ``[B, C]``; ``None`` (the default) for a head
        without any."""
        return None

    def align_target(self, tokens: Tokens, target: Any) -> Any:
        """Bring a collated target in line with the encoded tokens before ``loss`` and metrics (for per-token
        targets: mark padded positions as ignored). The default returns ``target`` unchanged."""
        return target

    def check_target(self, output: Tensor, target: Any) -> Any:
        """Check a target (after :meth:`align_target`) against the head's ``output`` and return it in the form
        ``loss`` and the metrics take (a tensor); raise :class:`TargetError` naming the head otherwise. The model
        calls it in training and evaluation and re-raises the error naming the task. The default returns ``target``
        unchanged (a head whose targets are its own business)."""
        return target

    def metric_params(self) -> dict[str, Any]:
        """Plain values the metrics need (number of classes, multi-label, …)."""
        return {}

    # -- examples for the conformance checks (polymodal.testing.check_head) -------------------------------------
    @classmethod
    def example_config(cls) -> dict[str, Any]:
        """Values for the config's required fields (e.g. ``num_classes``) that make a small valid head."""
        return {}

    def example_input(
        self, batch_size: int = 3, generator: torch.Generator | None = None
    ) -> tuple[Tokens, ...]:
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
    """``[num_samples, D]``: per row the first prefix token (``cls``) or the mean over its real non-prefix tokens
    (``mean``); when ``tokens.rows_per_sample`` is above 1, the mean of the pooled rows of each sample (one per
    channel, say), so the result has one row per sample."""
    if pool == "cls":
        if tokens.prefix < 1:
            raise ValueError(f"{tokens.modality}: pool='cls' needs a [CLS] token, but the model adds none")
        pooled = tokens.embeddings[:, 0]
    else:
        x, m = tokens.embeddings[:, tokens.prefix :], tokens.mask[:, tokens.prefix :]
        w = m.to(x.dtype).unsqueeze(-1)
        pooled = (x * w).sum(1) / w.sum(1).clamp_min(1.0)
    r = tokens.rows_per_sample
    return pooled if r == 1 else pooled.reshape(-1, r, pooled.shape[-1]).mean(1)


def pool_field() -> Any:
    return Field("cls", description="Read the [CLS] token or mean-pool the real (non-prefix) tokens.")


# -- target checks (shared by the built-in heads and plugin heads) ---------------------------------------------------
def _values(t: Tensor, limit: int = 5) -> str:
    """A few distinct values of ``t`` for a message: ``7`` or ``[-1, 7, 9, ...]``."""
    vals = torch.unique(t.detach().reshape(-1).cpu())
    shown = [f"{v:.6g}" if isinstance(v, float) else repr(v) for v in (x.item() for x in vals[:limit])]
    if len(shown) == 1:
        return shown[0]
    return "[" + ", ".join(shown) + (", ...]" if len(vals) > limit else "]")


def check_target_tensor(target: Any, task: str, expected: str) -> Tensor:
    """``target`` if it is a real-valued tensor (what collation makes); anything else raises :class:`TargetError`
    (``task``: expected a tensor of ``expected``, got what came), a list or an array with a hint to convert it."""
    if isinstance(target, Tensor) and not (target.is_complex() or target.is_quantized):
        return target
    if isinstance(target, str):
        got = f"the string {target[:40]!r}"
    elif target is None:
        got = "None"
    else:
        got = describe(target)
        if isinstance(target, (list, tuple)) or hasattr(target, "__array__"):
            got += " (convert it with torch.as_tensor)"
    raise TargetError(task, f"a tensor of {expected}", got)


def check_class_indices(
    target: Any, task: str, num_classes: int, shape: tuple[int, ...], *, ignore: bool = True
) -> Tensor:
    """``target`` as ``long`` class indices of ``shape``, each in ``[0, num_classes)`` (or :data:`IGNORE_INDEX`
    when ``ignore``). Booleans and integral floats (``1.0``) are accepted; non-integral floats (truncating them
    would be silently wrong), NaN/Inf, other shapes and labels out of range raise :class:`TargetError`."""
    values = f"class indices in [0, {num_classes})" + (f" (or {IGNORE_INDEX} to ignore)" if ignore else "")
    t = check_target_tensor(target, task, f"{values} of shape {shape}")
    if tuple(t.shape) != tuple(shape):
        raise TargetError(task, f"class indices of shape {shape}", f"{tuple(t.shape)}")
    if t.is_floating_point():
        bad = ~torch.isfinite(t) | (t != t.round())
        if bool(bad.any()):
            raise TargetError(task, f"integer {values}", f"non-integer values {_values(t[bad])}")
    t = t.long()
    ok = (t >= 0) & (t < num_classes)
    if ignore:
        ok |= t == IGNORE_INDEX
    if not bool(ok.all()):
        raise TargetError(task, values, _values(t[~ok]))
    return t


def check_multi_hot(target: Any, task: str, shape: tuple[int, ...]) -> Tensor:
    """``target`` as float multi-hot labels of ``shape`` (``[B, labels]``), every value 0 or 1; raise
    :class:`TargetError` otherwise (NaN included)."""
    t = check_target_tensor(target, task, f"multi-hot targets of 0 and 1 of shape {shape}")
    if tuple(t.shape) != tuple(shape):
        raise TargetError(task, f"multi-hot targets of shape {shape}", f"{tuple(t.shape)}")
    ok = (t == 0) | (t == 1)
    if not bool(ok.all()):
        raise TargetError(task, "multi-hot targets of 0 and 1", f"values {_values(t[~ok])}")
    return t.float()


def check_value_target(output: Tensor, target: Any, task: str) -> Tensor:
    """``target`` as float values of the output's shape, all finite (targets of regression, forecasting, …); raise
    :class:`TargetError` otherwise. Integer targets become float; the dtype is otherwise kept."""
    shape = tuple(output.shape)
    t = check_target_tensor(target, task, f"numeric targets of shape {shape}")
    if tuple(t.shape) != shape:
        raise TargetError(task, f"targets of shape {shape}", f"{tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        raise TargetError(task, "finite targets", f"{int((~finite).sum())} NaN/Inf of {t.numel()} values")
    return t
