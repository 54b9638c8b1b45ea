"""Metrics: registered components, named by heads (``Head.metrics``) and computed on ``(predictions, targets)``.

A metric is a class with a ``name``, a direction (``higher_is_better``, which model selection and the demo read)
and ``compute(pred, target, params) -> float`` over the whole evaluation set of one task (``pred`` from the
head's ``predict``, ``target`` aligned by the head, ``params`` from ``head.metric_params()``). Metrics are
registered like tokenizers and heads: the built-in ones through the ``core`` plugin, a plugin's own through its
``polymodal_components()`` hook, a notebook's through ``polymodal.register``.

Definitions (``target == -100`` marks an ignored position for class metrics):

- ``accuracy``: fraction of correct predictions; multi-label: fraction of correct (sample, label) entries.
- ``macro_f1``: unweighted mean over classes of ``2 TP / (2 TP + FP + FN)``, over the classes that occur in the
  targets or predictions (scikit-learn's default); multi-label: over the labels, each a binary problem, skipping
  labels never present nor predicted.
- ``micro_f1``: ``2 TP / (2 TP + FP + FN)`` with the counts summed over all classes / labels (multi-label: every
  (sample, label) entry; single-label it equals accuracy).
- ``mse``, ``mae``, ``rmse``: over all predicted values.
- ``recall_at_1``: paired embeddings ``[N, 2, E]``: how often the nearest (cosine) item of the other input is the
  sample's own pair (``positives="pair"``) or has the same label (``positives="label"``), averaged over both
  directions.

Ranking metrics (``uses_scores = True``) take the head's scores (``Head.scores(output)``: probabilities ``[N, C]``,
softmax or per-label sigmoid) in place of ``pred``, and the same targets. Their columns: two classes (one label per
sample): the positive class 1 only (``[N]`` scores are that column); more classes: each class against the rest;
multi-label: each label. Rows whose class target is ``-100`` are dropped (multi-label: entries, per label).

- ``auroc``: area under the ROC curve, equal to the probability that a positive scores above a negative with ties
  counted one half (scikit-learn's ``roc_auc_score``; exact with ties). Macro mean over the columns that have both
  a positive and a negative target; a column without one (a class absent from the evaluation set) is left out,
  where scikit-learn would return NaN for the whole mean; NaN when no column has both.
- ``average_precision``: ``sum_k (R_k - R_(k-1)) P_k`` over the distinct score thresholds, ties one threshold
  (scikit-learn's ``average_precision_score``, not the interpolated area). Macro mean over the columns with at
  least one positive target (scikit-learn would count a column without positives); NaN when there is none.
- ``top5_accuracy`` (:class:`TopKAccuracy` with ``k = 5``): fraction of samples whose class is among the ``k``
  highest scores; among equal scores the larger class index ranks first (scikit-learn's ``top_k_accuracy_score``).
  With ``k`` or fewer classes it is 1.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from polymodal.core.component import Component, ComponentConfig

__all__ = [
    "AUROC",
    "MAE",
    "METRIC_CLASSES",
    "MSE",
    "RMSE",
    "Accuracy",
    "AveragePrecision",
    "MacroF1",
    "Metric",
    "MetricConfig",
    "MicroF1",
    "RecallAt1",
    "Top5Accuracy",
    "TopKAccuracy",
]

IGNORE_INDEX = -100


class MetricConfig(ComponentConfig):
    """Metrics have no settings of their own; a head passes what they need as ``params``."""


class Metric(Component):
    """Base class of metrics. Subclasses set ``name``, ``higher_is_better`` and implement :meth:`compute`."""

    kind: ClassVar[str] = "metric"
    config_class: ClassVar[type[MetricConfig]] = MetricConfig
    #: Whether a larger value is a better model (accuracy) or a smaller one (an error such as MSE).
    higher_is_better: ClassVar[bool] = True
    #: Whether the metric needs targets (retrieval of paired inputs does not).
    needs_target: ClassVar[bool] = True
    #: Whether ``compute`` takes the head's scores (``Head.scores(output)``, e.g. probabilities ``[N, C]``) as
    #: ``pred`` instead of its predictions (ranking metrics: AUROC, average precision, top-k accuracy).
    uses_scores: ClassVar[bool] = False

    @classmethod
    def compute(cls, pred: Tensor, target: Tensor | None, params: dict[str, Any]) -> float:
        """The metric of one task over its whole evaluation set."""
        if cls.needs_target and target is None:
            raise ValueError(f"metric {cls.name!r} needs targets, but the batches had none")
        return cls._compute(pred, target, params)

    @classmethod
    def _compute(cls, pred: Tensor, target: Any, params: dict[str, Any]) -> float:  # pragma: no cover
        raise NotImplementedError


def _class_pairs(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    p, t = pred.reshape(-1).long(), target.reshape(-1).long()
    if p.shape != t.shape:
        raise ValueError(f"class metrics: {p.numel()} predictions for {t.numel()} targets")
    valid = t != IGNORE_INDEX
    return p[valid], t[valid]


def _multi_label_counts(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    p, t = pred.long().bool(), target.long().bool()
    return (p & t).sum(0), (p & ~t).sum(0), (~p & t).sum(0)


class Accuracy(Metric):
    """Fraction of correct predictions (multi-label: of correct (sample, label) entries)."""

    name: ClassVar[str] = "accuracy"

    @classmethod
    def _compute(cls, pred: Tensor, target: Tensor, params: dict[str, Any]) -> float:
        if params.get("multi_label"):
            return float((pred.long() == target.long()).float().mean())
        p, t = _class_pairs(pred, target)
        return float((p == t).float().mean()) if t.numel() else float("nan")


class MacroF1(Metric):
    """Unweighted mean of the per-class (per-label) F1 over the classes present in targets or predictions."""

    name: ClassVar[str] = "macro_f1"

    @classmethod
    def _compute(cls, pred: Tensor, target: Tensor, params: dict[str, Any]) -> float:
        if params.get("multi_label"):
            tp, fp, fn = _multi_label_counts(pred, target)
        else:
            p, t = _class_pairs(pred, target)
            if t.numel() == 0:
                return float("nan")
            c = int(params.get("num_classes") or int(torch.cat([p, t]).max()) + 1)
            # rows: target, columns: prediction
            conf = torch.bincount(t * c + p, minlength=c * c).reshape(c, c)
            tp = conf.diag()
            fp, fn = conf.sum(0) - tp, conf.sum(1) - tp
        denom = 2 * tp + fp + fn
        present = denom > 0
        if not bool(present.any()):
            return float("nan")
        return float((2 * tp[present].double() / denom[present].double()).mean())


class MicroF1(Metric):
    """F1 of the counts summed over all classes (labels); single-label it equals accuracy."""

    name: ClassVar[str] = "micro_f1"

    @classmethod
    def _compute(cls, pred: Tensor, target: Tensor, params: dict[str, Any]) -> float:
        if params.get("multi_label"):
            tp, fp, fn = (int(x.sum()) for x in _multi_label_counts(pred, target))
            return float(2 * tp / (2 * tp + fp + fn)) if 2 * tp + fp + fn else float("nan")
        p, t = _class_pairs(pred, target)  # one label per sample: every error is one FP and one FN
        return float((p == t).float().mean()) if t.numel() else float("nan")


class _ErrorMetric(Metric):
    higher_is_better: ClassVar[bool] = False

    @classmethod
    def _errors(cls, pred: Tensor, target: Tensor) -> Tensor:
        if pred.shape != target.shape:
            raise ValueError(
                f"metric {cls.name!r}: predictions {tuple(pred.shape)} and targets {tuple(target.shape)} differ"
            )
        return pred.double() - target.double()


class MSE(_ErrorMetric):
    """Mean squared error over all predicted values."""

    name: ClassVar[str] = "mse"

    @classmethod
    def _compute(cls, pred: Tensor, target: Tensor, params: dict[str, Any]) -> float:
        return float(cls._errors(pred, target).pow(2).mean())


class RMSE(_ErrorMetric):
    """Root mean squared error over all predicted values (in the targets' units)."""

    name: ClassVar[str] = "rmse"

    @classmethod
    def _compute(cls, pred: Tensor, target: Tensor, params: dict[str, Any]) -> float:
        return float(cls._errors(pred, target).pow(2).mean().sqrt())


class MAE(_ErrorMetric):
    """Mean absolute error over all predicted values."""

    name: ClassVar[str] = "mae"

    @classmethod
    def _compute(cls, pred: Tensor, target: Tensor, params: dict[str, Any]) -> float:
        return float(cls._errors(pred, target).abs().mean())


class RecallAt1(Metric):
    """Retrieval between paired embeddings ``[N, 2, E]``: how often the nearest item of the other input is the
    sample's own pair (or, with ``positives="label"``, has its label), averaged over both directions."""

    name: ClassVar[str] = "recall_at_1"
    needs_target: ClassVar[bool] = False

    @classmethod
    def _compute(cls, pred: Tensor, target: Tensor | None, params: dict[str, Any]) -> float:
        if pred.dim() != 3 or pred.shape[1] != 2:
            raise ValueError(f"recall_at_1: expected paired embeddings [N, 2, E], got {tuple(pred.shape)}")
        a, b = pred[:, 0].double(), pred[:, 1].double()
        sim = a @ b.t()
        hits = []
        for s in (sim, sim.t()):
            nearest = s.argmax(dim=1)
            if params.get("positives") == "label" and target is not None:
                labels = target.reshape(-1)
                hits.append((labels[nearest] == labels).double().mean())
            else:
                hits.append((nearest == torch.arange(len(nearest))).double().mean())
        return float(sum(hits) / 2)


# -- ranking metrics on scores ----------------------------------------------------------------------------------
_CHUNK = 1 << 22  # values per block of columns: bounds the float64 work arrays of many labels / classes


def _score_columns(name: str, score: Tensor, target: Tensor, params: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """``(scores, labels)``, both ``[N, K]``: the float64 scores of each column a ranking metric averages over and
    its targets as 1 (positive), 0 (negative) or -1 (ignored). See the module docstring for the columns."""
    if not bool(torch.isfinite(score).all()):
        raise ValueError(f"metric {name!r}: expected finite scores, got NaN/Inf")
    if params.get("multi_label"):
        if score.shape != target.shape:
            raise ValueError(
                f"metric {name!r}: multi-label scores {tuple(score.shape)} and targets {tuple(target.shape)} differ"
            )
        t = target.long()
        return score.double(), torch.where(t == IGNORE_INDEX, -1, (t != 0).long())
    t = target.reshape(-1).long()
    if score.dim() not in (1, 2) or score.shape[0] != t.numel():
        raise ValueError(
            f"metric {name!r}: expected scores [N] or [N, C] for {t.numel()} targets, got {tuple(score.shape)}"
        )
    keep = t != IGNORE_INDEX
    s, t = score[keep].double(), t[keep]
    if s.dim() == 1 or s.shape[1] == 2:  # binary: the scores of the positive class 1
        return (s if s.dim() == 2 else s[:, None])[:, -1:], (t == 1).long()[:, None]
    return s, (t[:, None] == torch.arange(s.shape[1])).long()


def _tie_groups(sorted_scores: Tensor) -> tuple[Tensor, Tensor]:
    """Per position of column-wise sorted scores ``[N, K]``: the first and last position of its run of equal
    scores (its tie group)."""
    n = sorted_scores.shape[0]
    idx = torch.arange(n)[:, None].expand_as(sorted_scores)
    differs = sorted_scores[1:] != sorted_scores[:-1]
    edge = torch.ones(1, sorted_scores.shape[1], dtype=torch.bool)
    first = torch.cat([edge, differs])
    last = torch.cat([differs, edge])
    start = torch.where(first, idx, 0).cummax(0).values
    end = torch.where(last, idx, n - 1).flip(0).cummin(0).values.flip(0)
    return start, end


def _column_macro(values: Tensor, defined: Tensor) -> float:
    return float(values[defined].mean()) if bool(defined.any()) else float("nan")


def _column_blocks(score: Tensor, labels: Tensor) -> list[tuple[Tensor, Tensor]]:
    step = max(1, _CHUNK // max(1, score.shape[0]))
    return [(score[:, i : i + step], labels[:, i : i + step]) for i in range(0, score.shape[1], step)]


class AUROC(Metric):
    """Area under the ROC curve (ties count one half): binary on class 1, one-vs-rest macro over classes, macro over
    labels; columns without both a positive and a negative target are left out."""

    name: ClassVar[str] = "auroc"
    uses_scores: ClassVar[bool] = True

    @classmethod
    def _compute(cls, pred: Tensor, target: Tensor, params: dict[str, Any]) -> float:
        score, labels = _score_columns(cls.name, pred, target, params)
        values, defined = [], []
        for s, y in _column_blocks(score, labels):
            s, order = s.sort(dim=0)  # ascending
            y = y.gather(0, order)
            pos, neg = (y == 1).double(), (y == 0).double()
            start, end = _tie_groups(s)
            below = neg.cumsum(0)  # negatives at or below each position
            zero = torch.zeros(1, s.shape[1], dtype=below.dtype)
            before = torch.cat([zero, below]).gather(0, start)  # negatives strictly below the tie group
            tied = below.gather(0, end) - before  # negatives in the tie group
            n_pos, n_neg = pos.sum(0), neg.sum(0)
            wins = (pos * (before + 0.5 * tied)).sum(0)
            values.append(wins / (n_pos * n_neg).clamp_min(1))
            defined.append((n_pos > 0) & (n_neg > 0))
        return _column_macro(torch.cat(values), torch.cat(defined))


class AveragePrecision(Metric):
    """Average precision (scikit-learn's step-wise sum over thresholds): binary on class 1, one-vs-rest macro over
    classes, macro over labels; columns without a positive target are left out."""

    name: ClassVar[str] = "average_precision"
    uses_scores: ClassVar[bool] = True

    @classmethod
    def _compute(cls, pred: Tensor, target: Tensor, params: dict[str, Any]) -> float:
        score, labels = _score_columns(cls.name, pred, target, params)
        values, defined = [], []
        for s, y in _column_blocks(score, labels):
            s, order = s.sort(dim=0, descending=True)
            y = y.gather(0, order)
            pos = (y == 1).double()
            tp, fp = pos.cumsum(0), (y == 0).double().cumsum(0)
            _, end = _tie_groups(s)
            tp_end, fp_end = tp.gather(0, end), fp.gather(0, end)
            precision = tp_end / (tp_end + fp_end).clamp_min(1)  # at the threshold of each position's score
            n_pos = pos.sum(0)
            values.append((pos * precision).sum(0) / n_pos.clamp_min(1))  # each positive adds 1/P of recall
            defined.append(n_pos > 0)
        return _column_macro(torch.cat(values), torch.cat(defined))


class TopKAccuracy(Metric):
    """Fraction of samples whose class is among the ``k`` highest scores (ties: the larger class index first, as
    scikit-learn). Not registered itself: subclass it with a ``name`` and ``k`` (``top5_accuracy`` is one)."""

    name: ClassVar[str] = ""
    uses_scores: ClassVar[bool] = True
    k: ClassVar[int] = 5

    @classmethod
    def _compute(cls, pred: Tensor, target: Tensor, params: dict[str, Any]) -> float:
        if params.get("multi_label"):
            raise ValueError(
                f"metric {cls.name!r}: defined for one class per sample, not for multi-label tasks"
            )
        t = target.reshape(-1).long()
        if pred.dim() != 2 or pred.shape[0] != t.numel():
            raise ValueError(
                f"metric {cls.name!r}: expected scores [N, C] for {t.numel()} targets, got {tuple(pred.shape)}"
            )
        keep = t != IGNORE_INDEX
        s, t = pred[keep], t[keep]
        if t.numel() == 0:
            return float("nan")
        own = s.gather(1, t[:, None])
        later = torch.arange(s.shape[1])[None] > t[:, None]
        ahead = (s > own).sum(1) + ((s == own) & later).sum(1)
        return float((ahead < cls.k).double().mean())


class Top5Accuracy(TopKAccuracy):
    """Fraction of samples whose class is among the 5 highest scores."""

    name: ClassVar[str] = "top5_accuracy"
    k: ClassVar[int] = 5


METRIC_CLASSES = (
    Accuracy,
    MacroF1,
    MicroF1,
    MSE,
    RMSE,
    MAE,
    RecallAt1,
    AUROC,
    AveragePrecision,
    Top5Accuracy,
)
