"""The defaults of the DataSource base class."""

from __future__ import annotations

from typing import ClassVar

import pytest
from torch.utils.data import Dataset

import polymodal
from polymodal.core.source import DataSource


class _Balanced(DataSource):
    name: ClassVar[str] = "balanced_test_source"
    modality: ClassVar[str] = "image"
    num_classes: ClassVar[int] = 4

    def splits(self) -> dict[str, Dataset]:
        return {}


class _Bare(_Balanced):
    name: ClassVar[str] = "bare_test_source"
    num_classes: ClassVar[int] = 0


def test_num_classes_gives_a_classification_task_and_its_chance_level() -> None:
    source = _Balanced()
    assert source.task() == {"type": "classification", "num_classes": 4}
    assert source.baseline() == 0.25


def test_a_property_reading_the_config_works_like_the_attribute() -> None:
    source = polymodal.get("data source", "topic_sentences").from_config({"num_topics": 5})
    assert source.task() == {"type": "classification", "num_classes": 5}
    assert source.baseline() == pytest.approx(0.2)


def test_without_num_classes_the_error_says_what_to_define() -> None:
    with pytest.raises(
        NotImplementedError, match=r"'bare_test_source': set num_classes .* or override task\(\)"
    ):
        _Bare().task()
    with pytest.raises(NotImplementedError, match=r"override baseline\(\)"):
        _Bare().baseline()
