"""Data sources: the small, documented datasets each plugin ships for tests and the demo.

A data source is a registered component (``kind = "data source"``) whose ``splits()`` gives torch datasets of
``(sample, target)`` pairs, ``sample`` already in the per-sample form its tokenizer's ``collate`` takes. It says
which head solves its task (``task()``) and the chance level or naive baseline a model must beat.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor
from torch.utils.data import Dataset

from polymodal.core.component import Component, ComponentConfig

__all__ = ["DataSource", "DataSourceConfig"]


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

    def __init__(self, config: DataSourceConfig | dict[str, Any] | None = None) -> None:
        self.config = self.coerce_config(config)

    def splits(self) -> dict[str, Dataset]:  # pragma: no cover - abstract
        """``{"train": ..., "test": ...}``: datasets of ``(sample, target)``."""
        raise NotImplementedError

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
