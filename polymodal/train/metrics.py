"""Metrics per task through mmengine's evaluator: :class:`MultiTaskMetric` reports ``"<task>/<metric>"``.

The model's ``val_step`` gives, per batch and task, ``pred`` (``head.predict(output)``), ``score``
(``head.scores(output)``, float32 ``[B, C]`` on the CPU, when a metric of the head ranks scores; else ``None``), the
aligned ``target``, the head's metric names (``head.metrics``) and parameters (``head.metric_params()``).
:class:`MultiTaskMetric` collects these (across processes too), concatenates them per task and computes each named
metric, a registered component (:mod:`polymodal.core.metrics`; ``polymodal.list_metrics()``), so a plugin's head can
name its own. A metric with ``uses_scores`` (``auroc``, ``average_precision``, ``top5_accuracy``) gets the
concatenated scores where the others get the predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from mmengine.evaluator import BaseMetric
from torch import Tensor

from polymodal.registry.lookup import get
from polymodal.train.registry import METRICS

__all__ = ["MultiTaskMetric", "compute_task_metrics"]


def _concat(parts: Sequence[Tensor]) -> Tensor:
    """Concatenate along the batch dimension; flatten first when the trailing shapes differ (per-token outputs of
    batches padded to different lengths)."""
    if len({tuple(p.shape[1:]) for p in parts}) == 1:
        return torch.cat(list(parts))
    return torch.cat([p.reshape(-1) for p in parts])


def compute_task_metrics(
    preds: Sequence[Tensor],
    targets: Sequence[Tensor | None],
    names: Sequence[str],
    params: dict[str, Any],
    scores: Sequence[Tensor | None] | None = None,
) -> dict[str, float]:
    """Metrics ``names`` of one task from its per-batch predictions, targets and (for metrics with
    ``uses_scores``) scores."""
    pred = _concat(preds)
    have = [t for t in targets if t is not None]
    if have and len(have) != len(targets):
        raise ValueError("some batches of a task have targets and some do not")
    target = _concat(have) if have else None
    if target is not None and pred.dim() == 1 and target.dim() == 1 and pred.numel() != target.numel():
        raise ValueError(f"{pred.numel()} predictions for {target.numel()} targets")
    # an unknown name is an error listing the registered ones
    metrics = [get("metric", name) for name in names]
    score = None
    ranking = [m.name for m in metrics if m.uses_scores]
    if ranking:
        missing = len(preds) if scores is None else sum(s is None for s in scores)
        if missing or len(scores or ()) != len(preds):
            raise ValueError(
                f"metrics {ranking} rank the head's scores (Head.scores), but {missing or len(preds)} of "
                f"{len(preds)} batches have none"
            )
        score = _concat([s for s in scores if s is not None])
        if score.shape[0] != pred.shape[0]:
            raise ValueError(f"{score.shape[0]} rows of scores for {pred.shape[0]} predictions")
    return {m.name: m.compute(score if m.uses_scores else pred, target, params) for m in metrics}


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
                [r["pred"] for r in rs],
                [r["target"] for r in rs],
                rs[0]["metrics"],
                rs[0]["params"],
                scores=[r.get("score") for r in rs],
            )
            metrics.update({f"{task}/{name}": v for name, v in values.items()})
        return metrics
