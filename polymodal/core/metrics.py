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
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from polymodal.core.component import Component, ComponentConfig

__all__ = [
    "MAE",
    "METRIC_CLASSES",
    "MSE",
    "RMSE",
    "Accuracy",
    "MacroF1",
    "Metric",
    "MetricConfig",
    "MicroF1",
    "RecallAt1",
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
            conf = torch.bincount(t * c + p, minlength=c * c).reshape(c, c)  # rows: target, columns: prediction
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


METRIC_CLASSES = (Accuracy, MacroF1, MicroF1, MSE, RMSE, MAE, RecallAt1)
