"""Data sources: the small, documented datasets each plugin ships for tests and the demo.

A data source is a registered component (``kind = "data source"``) whose ``splits()`` gives torch datasets of
``(sample, target)`` pairs, ``sample`` already in the per-sample form its tokenizer's ``collate`` takes. It says
which head solves its task (``task()``) and the chance level or naive baseline a model must beat. A generated
source implements ``generate(num, seed)`` and gets its splits from it (the test split with its own seed); a
source declares how ``polymodal demo`` trains it (:class:`DemoSettings`), so the demo knows no modality by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor
from torch.utils.data import Dataset

from polymodal.core.component import Component, ComponentConfig

__all__ = ["TEST_SEED_OFFSET", "DataSource", "DataSourceConfig", "DemoSettings", "SampleList"]

#: The test split of a generated source is drawn with ``seed + TEST_SEED_OFFSET``, disjoint from training.
TEST_SEED_OFFSET = 1_000_003


class SampleList(Dataset):
    """A map-style dataset over a list of ``(sample, target)`` pairs (what generated sources make)."""

    def __init__(self, items: Sequence[tuple[Any, Any]]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return self.items[index]


@dataclass(frozen=True)
class DemoSettings:
    """How ``polymodal demo`` trains a data source, sized for a CPU step (few, rich tokens per sample).

    Attributes:
        source: overrides of the source's config (the demo sets ``num_train``/``num_test`` unless given here).
        tokenizer: overrides of the tokenizer config (over the source's own :meth:`DataSource.tokenizer_config`).
        head: overrides of the head config (over the source's :meth:`DataSource.task`).
        fit: optional ``fit(source, folder) -> tokenizer settings`` fitted on the training split (it may write
            files, such as a vocabulary, into ``folder``).
    """

    source: Mapping[str, Any] = field(default_factory=dict)
    tokenizer: Mapping[str, Any] = field(default_factory=dict)
    head: Mapping[str, Any] = field(default_factory=dict)
    fit: Callable[[Any, Path], Mapping[str, Any]] | None = None


class DataSourceConfig(ComponentConfig):
    num_train: int = Field(512, gt=0, description="Number of training samples.")
    num_test: int = Field(256, gt=0, description="Number of held-out test samples.")
    seed: int = Field(0, description="Seed of the generator (or of the split, for real data).")


class DataSource(Component):
    """Base class of data sources. Subclasses set ``name``, ``modality`` (a tokenizer name) and ``config_class``."""

    kind: ClassVar[str] = "data source"
    modality: ClassVar[str] = ""
    config_class: ClassVar[type[DataSourceConfig]] = DataSourceConfig
    #: Classes of a classification source with balanced classes (or a property reading the config): the default
    #: :meth:`task` and :meth:`baseline` follow from it.
    num_classes: ClassVar[int] = 0
    #: How ``polymodal demo`` trains this source; ``None``: the demo uses it only for a modality with no source
    #: that has settings, with the defaults of its tokenizer and task.
    demo: ClassVar[DemoSettings | None] = None

    def __init__(self, config: DataSourceConfig | dict[str, Any] | None = None) -> None:
        self.config = self.coerce_config(config)

    def generate(self, num: int, seed: int) -> Sequence[tuple[Any, Any]]:
        """``num`` generated ``(sample, target)`` pairs drawn with ``seed`` (for generated sources)."""
        raise NotImplementedError(f"data source {self.name!r}: implement splits() or generate(num, seed)")

    def splits(self) -> dict[str, Dataset]:
        """``{"train": ..., "test": ...}``: datasets of ``(sample, target)``. By default generated: ``num_train``
        pairs with ``seed``, ``num_test`` with ``seed +`` :data:`TEST_SEED_OFFSET`."""
        c = self.config
        return {
            "train": SampleList(self.generate(c.num_train, c.seed)),
            "test": SampleList(self.generate(c.num_test, c.seed + TEST_SEED_OFFSET)),
        }

    def tokenizer_config(self) -> dict[str, Any]:
        """Tokenizer settings this source's samples need, without ``embed_dim`` (e.g. a column schema fitted on
        the training split); empty (the default) when the tokenizer's defaults fit."""
        return {}

    def collate_targets(self, targets: Sequence[Any]) -> Tensor:
        """Batch the targets of ``len(targets)`` samples (override for ragged targets, e.g. per-node labels
        padded with ``-100``)."""
        return torch.stack([torch.as_tensor(t) for t in targets])

    def task(self) -> dict[str, Any]:
        """The head config that solves this task, e.g. ``{"type": "classification", "num_classes": 4}``; by
        default a classification over :attr:`num_classes` classes."""
        return {"type": "classification", "num_classes": self._num_classes("task")}

    def baseline(self) -> float:
        """Chance level or naive-baseline value of the task's main metric on the test split; by default the chance
        level of :attr:`num_classes` balanced classes (override for unbalanced classes or other tasks)."""
        return 1.0 / self._num_classes("baseline")

    def _num_classes(self, method: str) -> int:
        n = int(self.num_classes)
        if n < 1:
            raise NotImplementedError(
                f"data source {self.name!r}: set num_classes (a class attribute or property) or override {method}()"
            )
        return n
