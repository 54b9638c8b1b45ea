"""polymodal.plugins._sequence, the building blocks the sequence plugins share: collating ragged samples (values,
lengths, each modality's error wording), example batches, and reading channels and targets from tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from polymodal.core.component import ModalityInputError
from polymodal.data import column_list, table_targets
from polymodal.plugins._sequence import collate_ragged, numeric_columns, ragged_example

SERIES = dict(noun="series", expected="series (C, L_i) with one C", ndim=2, floating="float series")


def test_collate_ragged_pads_with_zeros_and_counts_lengths() -> None:
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    b = torch.tensor([[7.0], [8.0]])
    values, lengths = collate_ragged([a, b], "time_series", **SERIES)
    assert values.dtype == torch.float32 and lengths.tolist() == [3, 1]
    assert values.tolist() == [[[0, 1, 2], [3, 4, 5]], [[7, 0, 0], [8, 0, 0]]]
    clips, n = collate_ragged(
        [torch.ones(2), np.full(4, 0.5, np.float32)],
        "audio",
        noun="clip",
        expected="clips as 1-D float arrays (samples,)",
        ndim=1,
        floating="float clips",
    )
    assert clips.tolist() == [[1, 1, 0, 0], [0.5, 0.5, 0.5, 0.5]] and n.tolist() == [2, 4]


@pytest.mark.parametrize(
    ("samples", "kwargs", "message"),
    [
        ([], SERIES, "time_series: expected at least one series to collate, got an empty list"),
        (
            [torch.zeros(2, 3), torch.zeros(3, 3)],
            SERIES,
            "time_series: expected series (C, L_i) with one C, got channel counts [2, 3]",
        ),
        (
            [torch.zeros(2, 3), torch.zeros(2, 0)],
            SERIES,
            "time_series: expected series (C, L_i) with one C, got tensor of shape (2, 0) and dtype float32",
        ),
        (
            [torch.zeros(2, 3), "abc"],
            SERIES,
            "time_series: expected series (C, L_i) with one C, got str",
        ),
        (
            [torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.int64)],
            SERIES,
            "time_series: expected float series, got tensor of shape (2, 3) and dtype int64",
        ),
        (
            [torch.zeros(6, 3), torch.zeros(3, 3)],
            dict(noun="recording", expected="recordings (6, T_i)", ndim=2, channels=6, floating="float"),
            "imu: expected recordings (6, T_i), got tensor of shape (3, 3) and dtype float32",
        ),
        (
            [np.zeros((2, 3))],
            dict(noun="clip", expected="clips as 1-D float arrays (samples,)", ndim=1, floating="float"),
            "audio: expected clips as 1-D float arrays (samples,), got ndarray of shape (2, 3) and dtype float64",
        ),
    ],
)
def test_collate_ragged_errors(samples: list, kwargs: dict, message: str) -> None:
    modality = message.split(":")[0]
    with pytest.raises(ModalityInputError) as info:
        collate_ragged(samples, modality, **kwargs)
    assert str(info.value) == message


def test_ragged_example_alternates_lengths_and_zeroes_the_padding() -> None:
    values, lengths = ragged_example(3, (2,), 7, 3, torch.Generator().manual_seed(5), scale=2.0, offset=1.0)
    assert lengths.tolist() == [7, 4, 7] and tuple(values.shape) == (3, 2, 7)
    expected = 1.0 + 2.0 * torch.randn(3, 2, 7, generator=torch.Generator().manual_seed(5))
    expected[1, :, 4:] = 0
    assert torch.equal(values, expected)


def test_tables_give_columns_and_targets() -> None:
    frame = pd.DataFrame({"Time": [0, 1, 2], "a": [1.0, 2.0, 3.0], "b": [4, 5, 6], "label": ["x", "y", "x"]})
    assert column_list("a") == ["a"] and column_list(("a", "b")) == ["a", "b"] and column_list(None) is None
    values = numeric_columns(frame, None, ("time",), "f.csv")
    assert values.dtype == np.float32 and values.tolist() == [[1, 2, 3], [4, 5, 6]]  # Time is left out
    assert numeric_columns(frame, ["b", "a"], (), "f.csv").tolist() == [[4, 5, 6], [1, 2, 3]]
    with pytest.raises(KeyError, match=r"f\.csv: no columns \['c'\]; it has \['Time', 'a', 'b', 'label'\]"):
        numeric_columns(frame, ["c"], (), "f.csv")
    with pytest.raises(ValueError, match=r"f\.csv: no numeric columns"):
        numeric_columns(frame[["label"]], None, (), "f.csv")
    with pytest.raises(ValueError, match=r"f\.csv: the file has no rows"):
        numeric_columns(frame.iloc[:0], ["a"], (), "f.csv")
    assert table_targets(frame, "label", "text").tolist() == ["x", "y", "x"]
    assert table_targets(frame, ["a", "b"], "text").tolist() == [[1, 4], [2, 5], [3, 6]]
    with pytest.raises(KeyError, match=r"text: target column\(s\) \['z'\] not in the table; columns: "):
        table_targets(frame, ["a", "z"], "text")
