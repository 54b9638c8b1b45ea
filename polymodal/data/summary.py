"""A readable summary of a dataset before training: samples, samples per class, token lengths, oddities.

``summarize(train, val)`` reads up to ``max_samples`` samples (spread over the dataset), tokenizes them with the
dataset's tokenizer to count their tokens, and warns about anything odd: classes with no samples or missing from
the validation split, class imbalance, NaN (missing) feature values, features that never change, samples with no
tokens, files skipped as unreadable. :func:`polymodal.fit` prints it before training.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from polymodal.data.dataset import SampleDataset

__all__ = ["DatasetSummary", "summarize"]

IMBALANCE_RATIO = 5.0  # largest / smallest class above this is reported


@dataclass
class DatasetSummary:
    """What :func:`summarize` found; ``str()`` gives the printed form."""

    modality: str
    num_samples: int
    task: str
    class_counts: dict[str, int] | None = None
    val_samples: int | None = None
    val_class_counts: dict[str, int] | None = None
    targets: dict[str, float] | None = None
    token_lengths: tuple[int, float, int] | None = None
    examined: int = 0
    warnings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"{self.modality}: {self.num_samples} samples"
            + (f" (+ {self.val_samples} validation)" if self.val_samples is not None else ""),
            f"  task: {self.task}",
        ]
        if self.class_counts is not None:
            width = max(len(k) for k in self.class_counts)
            lines.append("  samples per class" + (" (train / val):" if self.val_class_counts else ":"))
            for k, v in self.class_counts.items():
                extra = f" / {self.val_class_counts.get(k, 0)}" if self.val_class_counts is not None else ""
                lines.append(f"    {k:<{width}}  {v}{extra}")
        if self.targets is not None:
            lines.append("  targets: " + ", ".join(f"{k} {v:.4g}" for k, v in self.targets.items()))
        if self.token_lengths is not None:
            lo, med, hi = self.token_lengths
            lines.append(
                f"  tokens per sample: min {lo}, median {med:g}, max {hi} (of {self.examined} samples)"
            )
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _class_counts(ds: SampleDataset) -> dict[str, int] | None:
    t = ds.task
    if t.kind == "classification":
        counts = torch.bincount(ds.targets.long(), minlength=t.num_classes or 0).tolist()
    elif t.kind == "multilabel":
        counts = ds.targets.sum(0).long().tolist()
    else:
        return None
    names = t.class_names or [str(i) for i in range(len(counts))]
    return {names[i]: int(c) for i, c in enumerate(counts)}


def _tensors(sample: Any, prefix: str = "") -> dict[str, Tensor]:
    if isinstance(sample, Tensor):
        return {prefix or "input": sample}
    if isinstance(sample, Mapping):
        out: dict[str, Tensor] = {}
        for k, v in sample.items():
            out.update(_tensors(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {}


def summarize(
    dataset: SampleDataset, val: SampleDataset | None = None, *, max_samples: int = 128
) -> DatasetSummary:
    """Summarize ``dataset`` (and, if given, its validation split ``val``); see the module docstring."""
    t = dataset.task
    s = DatasetSummary(dataset.modality, len(dataset), t.describe())
    if t.inferred:
        s.task += f" - inferred from {t.inferred} (pass task=... to change it)"
    s.class_counts = _class_counts(dataset)
    if val is not None:
        s.val_samples = len(val)
        s.val_class_counts = _class_counts(val)
        if val.task.kind != t.kind or val.task.num_classes != t.num_classes:
            s.warnings.append(
                f"the validation data's task ({val.task.describe()}) differs from {t.describe()}"
            )
    if s.class_counts is not None:
        empty = [k for k, v in s.class_counts.items() if v == 0]
        if empty:
            s.warnings.append(f"classes with no training samples: {', '.join(empty[:10])}")
        if s.val_class_counts is not None:
            missing = [k for k, v in s.val_class_counts.items() if v == 0 and s.class_counts.get(k)]
            if missing:
                s.warnings.append(f"classes missing from the validation split: {', '.join(missing[:10])}")
        present = {k: v for k, v in s.class_counts.items() if v > 0}
        if len(present) > 1:
            hi, lo = max(present, key=present.get), min(present, key=present.get)  # type: ignore[arg-type]
            if present[hi] > IMBALANCE_RATIO * present[lo]:
                s.warnings.append(
                    f"class imbalance: {hi!r} has {present[hi]} samples, {lo!r} only {present[lo]} "
                    f"({present[hi] / present[lo]:.1f}x)"
                )
    elif t.kind in ("regression", "forecasting"):
        y = dataset.targets.double()
        s.targets = {
            "mean": float(y.mean()),
            "std": float(y.std()) if y.numel() > 1 else 0.0,
            "min": float(y.min()),
            "max": float(y.max()),
        }
        if y.numel() > 1 and float(y.std()) == 0.0:
            s.warnings.append("every target has the same value")
    skipped = getattr(dataset, "skipped", None)
    if skipped:
        s.warnings.append(f"{len(skipped)} unreadable files were skipped, e.g. {skipped[0][0]}")
    _examine(dataset, s, max_samples)
    return s


def _examine(dataset: SampleDataset, s: DatasetSummary, max_samples: int) -> None:
    n = len(dataset)
    k = min(n, max_samples)
    picks = torch.linspace(0, n - 1, k).round().long().unique().tolist()
    samples = [dataset.sample(i) for i in picks]
    s.examined = len(samples)
    per = dataset.tokenizer.token_lengths(samples)
    s.token_lengths = (int(per.min()), float(per.float().quantile(0.5)), int(per.max()))
    if int(per.min()) == 0:
        s.warnings.append(f"{int((per == 0).sum())} examined samples have no tokens")
    fields = [_tensors(x) for x in samples]
    for key in fields[0] if fields else []:
        values = [f.get(key) for f in fields]
        if any(v is None or not v.is_floating_point() for v in values):
            continue
        nan = sum(int(torch.isnan(v).sum()) for v in values)
        if nan:
            s.warnings.append(f"{nan} NaN (missing) values in '{key}' of {len(values)} examined samples")
        shapes = {tuple(v.shape) for v in values}
        if len(values) > 1 and len(shapes) == 1:
            x = torch.stack(values).double()
            if x.dim() == 2 and x.shape[1] > 0:  # feature vectors: one column per feature
                const = [
                    j for j in range(x.shape[1]) if bool((x[:, j].nan_to_num() == x[0, j].nan_to_num()).all())
                ]
                if const:
                    s.warnings.append(
                        f"{len(const)} of {x.shape[1]} features of '{key}' never change (columns {const[:10]})"
                    )
            elif bool((x == x[:1]).all()):
                s.warnings.append(f"all {len(values)} examined samples are identical")
