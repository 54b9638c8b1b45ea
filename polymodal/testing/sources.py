"""Conformance checks of data sources: splits of ``(sample, target)`` pairs that the modality's tokenizer takes,
a head that builds from ``task()``, a numeric baseline."""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import cached_property
from typing import Any

from polymodal.registry.lookup import get
from polymodal.testing._checks import Check, problem, run_checks

__all__ = ["check_data_source", "data_source_checks"]


class _Subject:
    def __init__(self, name: str) -> None:
        self.cls = get("data source", name)

    @cached_property
    def source(self) -> Any:
        return self.cls.from_config()

    @cached_property
    def splits(self) -> dict[str, Any]:
        return self.source.splits()


def data_source_checks(name: str, *, embed_dim: int = 32, num_samples: int = 4) -> Iterator[Check]:
    """The checks of data source ``name``, one :class:`~polymodal.testing.Check` each."""
    s = _Subject(name)

    def has_train_and_test_splits() -> None:
        if not {"train", "test"} <= set(s.splits):
            raise problem(f"splits() must give 'train' and 'test', got {sorted(s.splits)}")
        for split, data in s.splits.items():
            if len(data) < num_samples:
                raise problem(f"split {split!r} has {len(data)} samples, fewer than {num_samples}")

    def samples_are_pairs_the_tokenizer_takes() -> None:
        tok = get("tokenizer", s.cls.modality).from_config(
            {**s.source.tokenizer_config(), "embed_dim": embed_dim}
        )
        for split, data in s.splits.items():
            items = [data[i] for i in range(min(num_samples, len(data)))]
            if not all(isinstance(it, (tuple, list)) and len(it) == 2 for it in items):
                raise problem(f"split {split!r}: samples must be (sample, target) pairs")
            out = tok(tok.collate([x for x, _ in items]))
            if out.batch_size != len(items):
                raise problem(f"split {split!r}: a collated batch of {len(items)} gave {out.batch_size} rows")

    def task_builds_a_head() -> None:
        task = s.source.task()
        get("head", task["type"]).from_config({**task, "embed_dim": embed_dim})

    def baseline_is_a_number() -> None:
        baseline = s.source.baseline()
        if not isinstance(baseline, float) or not math.isfinite(baseline):
            raise problem(f"baseline() must be a finite float, got {baseline!r}")

    for fn in (
        has_train_and_test_splits,
        samples_are_pairs_the_tokenizer_takes,
        task_builds_a_head,
        baseline_is_a_number,
    ):
        yield Check("data source", name, fn.__name__, fn)


def check_data_source(name: str, *, embed_dim: int = 32, num_samples: int = 4) -> None:
    """Run every data-source check on the registered source ``name`` (train/test splits of ``(sample, target)``,
    samples that the modality's tokenizer collates and tokenizes into one row each, a head config from ``task()``
    that builds, a finite baseline). Raises :class:`~polymodal.testing.ConformanceError` naming the check."""
    run_checks(data_source_checks(name, embed_dim=embed_dim, num_samples=num_samples))
