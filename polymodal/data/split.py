"""Train / validation splits of a :class:`~polymodal.data.dataset.SampleDataset` that keep its task.

Classification data are split per class (stratified): class ``c`` with ``n_c`` samples puts
``round(n_c * val_fraction)`` of them (at least one, and leaving at least one) in validation, chosen by a seeded
permutation; other tasks are split at random, ``round(N * val_fraction)`` in validation.
"""

from __future__ import annotations

import math

import torch

from polymodal.data.dataset import SampleDataset

__all__ = ["stratified_split"]


def _round(x: float) -> int:
    return math.floor(x + 0.5)


def stratified_split(
    dataset: SampleDataset, val_fraction: float = 0.2, seed: int = 0
) -> tuple[SampleDataset, SampleDataset]:
    """``(train, val)`` views of ``dataset``, sharing its task and tokenizer config.

    Raises:
        ValueError: ``val_fraction`` outside (0, 1), or a class with fewer than two samples (it could not be in
            both parts).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n = len(dataset)
    if n < 2:
        raise ValueError(f"cannot split {n} sample(s) into train and validation")
    g = torch.Generator().manual_seed(seed)
    labels = dataset.labels()
    if labels is None:
        order = torch.randperm(n, generator=g)
        k = min(max(_round(n * val_fraction), 1), n - 1)
        val, train = order[:k], order[k:]
    else:
        names = dataset.task.class_names
        counts = torch.bincount(labels, minlength=dataset.task.num_classes or 0)
        few = [c for c, k in enumerate(counts.tolist()) if k == 1]
        if few:
            shown = [names[c] if names else c for c in few[:10]]
            raise ValueError(
                f"stratified_split: classes {shown} have a single sample; each class needs at least 2 to be in "
                "both train and validation (collect more, or drop those classes)"
            )
        train_parts, val_parts = [], []
        for c, k in enumerate(counts.tolist()):
            if k == 0:
                continue
            idx = torch.nonzero(labels == c).flatten()
            idx = idx[torch.randperm(k, generator=g)]
            m = min(max(_round(k * val_fraction), 1), k - 1)
            val_parts.append(idx[:m])
            train_parts.append(idx[m:])
        train, val = torch.cat(train_parts), torch.cat(val_parts)
        train, val = (
            train[torch.randperm(len(train), generator=g)],
            val[torch.randperm(len(val), generator=g)],
        )
    return dataset.subset(train), dataset.subset(val)
