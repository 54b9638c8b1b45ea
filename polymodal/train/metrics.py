"""Metrics per task, through mmengine's evaluator: accuracy, macro/micro-F1, MSE/MAE/RMSE, retrieval recall@1.

The model's ``val_step`` gives, per batch and task, ``pred`` (``head.predict(output)``), the aligned ``target``,
the head's metric names (``head.metrics``) and parameters (``head.metric_params()``). :class:`MultiTaskMetric`
collects these (across processes too), concatenates them per task and reports ``"<task>/<metric>"``.

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

A plugin head can use any name registered here; :func:`register_metric` adds new ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from mmengine.evaluator import BaseMetric
from torch import Tensor

from polymodal.train.registry import METRICS

__all__ = ["METRIC_FUNCTIONS", "MultiTaskMetric", "compute_task_metrics", "register_metric"]

MetricFn = Callable[[Tensor, Tensor | None, dict[str, Any]], float]
METRIC_FUNCTIONS: dict[str, MetricFn] = {}
IGNORE_INDEX = -100


def register_metric(name: str) -> Callable[[MetricFn], MetricFn]:
    """Register ``fn(pred, target, params) -> float`` under ``name`` (a head lists it in ``metrics``)."""

    def deco(fn: MetricFn) -> MetricFn:
        if name in METRIC_FUNCTIONS and METRIC_FUNCTIONS[name] is not fn:
            raise ValueError(f"metric {name!r} is already registered ({METRIC_FUNCTIONS[name].__qualname__})")
        METRIC_FUNCTIONS[name] = fn
        return fn

    return deco


def _need_target(name: str, target: Tensor | None) -> Tensor:
    if target is None:
        raise ValueError(f"metric {name!r} needs targets, but the batches had none")
    return target


def _class_pairs(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    p, t = pred.reshape(-1).long(), target.reshape(-1).long()
    if p.shape != t.shape:
        raise ValueError(f"class metrics: {p.numel()} predictions for {t.numel()} targets")
    valid = t != IGNORE_INDEX
    return p[valid], t[valid]


@register_metric("accuracy")
def accuracy(pred: Tensor, target: Tensor | None, params: dict[str, Any]) -> float:
    target = _need_target("accuracy", target)
    if params.get("multi_label"):
        return float((pred.long() == target.long()).float().mean())
    p, t = _class_pairs(pred, target)
    return float((p == t).float().mean()) if t.numel() else float("nan")


@register_metric("macro_f1")
def macro_f1(pred: Tensor, target: Tensor | None, params: dict[str, Any]) -> float:
    target = _need_target("macro_f1", target)
    if params.get("multi_label"):
        p, t = pred.long().bool(), target.long().bool()
        tp, fp, fn = (p & t).sum(0), (p & ~t).sum(0), (~p & t).sum(0)
    else:
        p, t = _class_pairs(pred, target)
        c = int(params.get("num_classes") or int(torch.cat([p, t]).max()) + 1)
        if t.numel() == 0:
            return float("nan")
        conf = torch.bincount(t * c + p, minlength=c * c).reshape(c, c)  # rows: target, columns: prediction
        tp = conf.diag()
        fp, fn = conf.sum(0) - tp, conf.sum(1) - tp
    denom = 2 * tp + fp + fn
    present = denom > 0
    if not bool(present.any()):
        return float("nan")
    return float((2 * tp[present].double() / denom[present].double()).mean())


@register_metric("micro_f1")
def micro_f1(pred: Tensor, target: Tensor | None, params: dict[str, Any]) -> float:
    target = _need_target("micro_f1", target)
    if params.get("multi_label"):
        p, t = pred.long().bool(), target.long().bool()
        tp, fp, fn = int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())
        return float(2 * tp / (2 * tp + fp + fn)) if 2 * tp + fp + fn else float("nan")
    p, t = _class_pairs(pred, target)  # one label per sample: every error is one FP and one FN
    return float((p == t).float().mean()) if t.numel() else float("nan")


def _values(name: str, pred: Tensor, target: Tensor | None) -> Tensor:
    target = _need_target(name, target)
    if pred.shape != target.shape:
        raise ValueError(
            f"metric {name!r}: predictions {tuple(pred.shape)} and targets {tuple(target.shape)} differ"
        )
    return pred.double() - target.double()


@register_metric("mse")
def mse(pred: Tensor, target: Tensor | None, params: dict[str, Any]) -> float:
    return float(_values("mse", pred, target).pow(2).mean())


@register_metric("rmse")
def rmse(pred: Tensor, target: Tensor | None, params: dict[str, Any]) -> float:
    return float(_values("rmse", pred, target).pow(2).mean().sqrt())


@register_metric("mae")
def mae(pred: Tensor, target: Tensor | None, params: dict[str, Any]) -> float:
    return float(_values("mae", pred, target).abs().mean())


@register_metric("recall_at_1")
def recall_at_1(pred: Tensor, target: Tensor | None, params: dict[str, Any]) -> float:
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


def _concat(parts: Sequence[Tensor]) -> Tensor:
    """Concatenate along the batch dimension; flatten first when the trailing shapes differ (per-token outputs of
    batches padded to different lengths)."""
    if len({tuple(p.shape[1:]) for p in parts}) == 1:
        return torch.cat(list(parts))
    return torch.cat([p.reshape(-1) for p in parts])


def compute_task_metrics(
    preds: Sequence[Tensor], targets: Sequence[Tensor | None], names: Sequence[str], params: dict[str, Any]
) -> dict[str, float]:
    """Metrics ``names`` of one task from its per-batch predictions and targets."""
    pred = _concat(preds)
    have = [t for t in targets if t is not None]
    if have and len(have) != len(targets):
        raise ValueError("some batches of a task have targets and some do not")
    target = _concat(have) if have else None
    if target is not None and pred.dim() == 1 and target.dim() == 1 and pred.numel() != target.numel():
        raise ValueError(f"{pred.numel()} predictions for {target.numel()} targets")
    out = {}
    for name in names:
        fn = METRIC_FUNCTIONS.get(name)
        if fn is None:
            raise KeyError(f"unknown metric {name!r}; registered: {', '.join(sorted(METRIC_FUNCTIONS))}")
        out[name] = fn(pred, target, params)
    return out


@METRICS.register_module()
class MultiTaskMetric(BaseMetric):
    """mmengine metric over every task of a :class:`~polymodal.model.multimodal.MultimodalModel`: ``"<task>/<metric>"``.

    Args:
        tasks: report only these tasks (default: every task the batches had).
        collect_device: ``"cpu"`` or ``"gpu"``, how results are gathered across processes.
        prefix: optional prefix of every key (``"<prefix>/<task>/<metric>"``).
    """

    default_prefix: str | None = None

    def __init__(
        self, tasks: Sequence[str] | None = None, collect_device: str = "cpu", prefix: str | None = None
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.tasks = None if tasks is None else list(tasks)

    def process(self, data_batch: Any, data_samples: Sequence[dict[str, dict[str, Any]]]) -> None:
        for result in data_samples:
            if not isinstance(result, dict):
                raise TypeError(
                    "MultiTaskMetric: expected the per-task dicts of MultimodalModel.val_step, got "
                    f"{type(result).__name__}"
                )
            keep = {t: r for t, r in result.items() if self.tasks is None or t in self.tasks}
            if keep:
                self.results.append(
                    keep
                )  # one entry per batch: mmengine truncates results to the dataset size

    def compute_metrics(self, results: list[dict[str, dict[str, Any]]]) -> dict[str, float]:
        per_task: dict[str, list[dict[str, Any]]] = {}
        for batch in results:
            for task, r in batch.items():
                per_task.setdefault(task, []).append(r)
        metrics: dict[str, float] = {}
        for task in sorted(per_task):
            rs = per_task[task]
            values = compute_task_metrics(
                [r["pred"] for r in rs], [r["target"] for r in rs], rs[0]["metrics"], rs[0]["params"]
            )
            metrics.update({f"{task}/{name}": v for name, v in values.items()})
        return metrics
