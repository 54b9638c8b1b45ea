"""Task inference, stratified splits, the data summary and lazily read files (FileDataset) with bad items."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from polymodal.data import ArrayDataset, FileDataset, SampleReadError, infer_task, stratified_split, summarize


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (n, 16, 16, 3)).astype(np.uint8)


def test_infer_task() -> None:
    task, y = infer_task(np.array(["dog", "cat", "dog", "fox"]), "image")
    assert (task.kind, task.num_classes, task.class_names) == ("classification", 3, ["cat", "dog", "fox"])
    assert y.tolist() == [1, 0, 1, 2] and y.dtype == torch.long
    assert task.inferred == "3 distinct string labels"
    task, y = infer_task(["b", "a"], "image", class_names=["b", "a", "c"])
    assert y.tolist() == [0, 1] and task.num_classes == 3 and task.inferred is None
    assert infer_task(np.array([True, False]), "image")[0].kind == "classification"
    task, y = infer_task(np.array([0.5, 1.5]), "image")
    assert (task.kind, task.num_outputs, y.dtype) == ("regression", 1, torch.float32)
    task, y = infer_task(np.array([[0, 1, 1], [1, 0, 0]]), "image")
    assert (task.kind, task.num_classes, y.dtype) == ("multilabel", 3, torch.float32)
    assert infer_task(np.array([[0.5, 1.0], [0.0, 2.0]]), "image")[0].num_outputs == 2
    task, y = infer_task(np.zeros((4, 2, 12)), "time_series")
    assert (task.kind, task.channels, task.horizon) == ("forecasting", 2, 12)
    assert infer_task(np.zeros((4, 3)), "time_series", task="regression")[0].num_outputs == 3
    task, _ = infer_task([0, 1], "image", task={"kind": "classification", "num_classes": 5})
    assert task.num_classes == 5
    with pytest.raises(ValueError, match=r"image: labels \['cow'\] are not in class_names \['cat', 'dog'\]"):
        infer_task(["cat", "cow"], "image", class_names=["cat", "dog"])
    with pytest.raises(ValueError, match=r"image: expected class indices below 3 \(num_classes\), got 7"):
        infer_task([0, 7], "image", task={"kind": "classification", "num_classes": 3})
    with pytest.raises(ValueError, match="image: expected finite targets, got 1 NaN/Inf"):
        infer_task([0.5, float("nan")], "image")
    with pytest.raises(ValueError, match="task must be 'classification', 'multilabel'"):
        infer_task([0, 1], "image", task="segmentation")


def test_stratified_split_keeps_class_proportions_exactly() -> None:
    labels = np.array([0] * 50 + [1] * 30 + [2] * 10 + [3] * 3)
    data = ArrayDataset("image", _images(len(labels)), labels, tokenizer={"patch_size": 8}, check=2)
    train, val = stratified_split(data, val_fraction=0.2, seed=0)
    assert torch.bincount(val.targets, minlength=4).tolist() == [10, 6, 2, 1]  # round(n_c * 0.2), at least 1
    assert torch.bincount(train.targets, minlength=4).tolist() == [40, 24, 8, 2]
    assert sorted(train.indices.tolist() + val.indices.tolist()) == list(range(len(labels)))
    assert train.task == data.task and val.tokenizer_config == data.tokenizer_config
    for i in range(3):  # items of a split are the parent's items
        j = int(val.indices[i])
        assert torch.equal(val[i][0], data[j][0]) and int(val[i][1]) == int(labels[j])
    again, _ = stratified_split(data, val_fraction=0.2, seed=0)
    other, _ = stratified_split(data, val_fraction=0.2, seed=1)
    assert torch.equal(again.indices, train.indices) and not torch.equal(other.indices, train.indices)
    _, sub_val = stratified_split(train, 0.5)  # splits of a split index the original
    assert sub_val.parent is data and torch.bincount(sub_val.targets, minlength=4).tolist() == [20, 12, 4, 1]


def test_split_errors_and_random_split_for_regression() -> None:
    data = ArrayDataset("image", _images(5), [0, 0, 1, 1, 2], tokenizer={"patch_size": 8})
    with pytest.raises(ValueError, match=r"classes \[2\] have a single sample; each class needs at least 2"):
        stratified_split(data)
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\), got 1.5"):
        stratified_split(data, 1.5)
    reg = ArrayDataset("image", _images(10), np.linspace(0, 1, 10), tokenizer={"patch_size": 8})
    train, val = stratified_split(reg, 0.3)
    assert (len(train), len(val)) == (7, 3) and val.task.kind == "regression"


def test_summary_reports_counts_lengths_and_oddities() -> None:
    texts = ["short", "a much longer sentence here", "mid length", "x"] * 3 + ["only one"]
    labels = ["pos", "neg", "pos", "pos"] * 3 + ["neu"]
    data = ArrayDataset("text", texts, labels)
    train, val = data.subset(range(12)), data.subset([12, 0])
    s = summarize(train, val)
    assert (s.num_samples, s.val_samples) == (12, 2)
    assert s.class_counts == {"neg": 3, "neu": 0, "pos": 9} and s.val_class_counts == {
        "neg": 0,
        "neu": 1,
        "pos": 1,
    }
    assert s.token_lengths == (1, 7.5, 27)  # bytes of "x", median of {5, 27, 10, 1} x 3, longest
    text = str(s)
    assert "text: 12 samples (+ 2 validation)" in text
    assert "task: classification, 3 classes (neg, neu, pos) - inferred from 3 distinct string labels" in text
    assert "    neg  3 / 0" in text
    assert "warning: classes with no training samples: neu" in text
    assert "warning: classes missing from the validation split: neg" in text
    assert "tokens per sample: min 1, median 7.5, max 27 (of 12 samples)" in text

    rows = np.random.default_rng(0).standard_normal((24, 3))
    rows[:, 2] = 4.0  # a constant feature
    rows[5, 0] = np.nan  # a missing value
    table = summarize(ArrayDataset("tabular", rows, [0] * 20 + [1] * 4, tokenizer={}))
    assert table.token_lengths == (3, 3.0, 3)
    assert "1 NaN (missing) values in 'numeric' of 24 examined samples" in table.warnings
    assert "1 of 3 features of 'numeric' never change (columns [2])" in table.warnings
    assert "class imbalance: '0' has 20 samples, '1' only 4 (5.0x)" not in table.warnings  # 5x is the limit
    skewed = summarize(ArrayDataset("tabular", rows, [0] * 21 + [1] * 3, tokenizer={}))
    assert "class imbalance: '0' has 21 samples, '1' only 3 (7.0x)" in skewed.warnings
    reg = summarize(ArrayDataset("tabular", rows[:, :2], np.arange(24.0), tokenizer={}))
    assert reg.targets == pytest.approx(
        {"mean": 11.5, "std": float(np.arange(24.0).std(ddof=1)), "min": 0, "max": 23}
    )


def test_file_dataset_reads_lazily_and_names_bad_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = []
    for i in range(6):
        p = tmp_path / f"{i}.npy"
        np.save(p, np.full((16, 16, 3), 40 * i, dtype=np.uint8))
        paths.append(p)
    paths[4].write_bytes(b"not an array")  # corrupt
    reads: list[Path] = []

    def reader(path: Path) -> np.ndarray:
        reads.append(path)
        return np.load(path)

    data = FileDataset(paths, [0, 1, 0, 1, 0, 1], "image", reader, tokenizer={"patch_size": 8})
    assert reads == [paths[0], paths[1]]  # made: only the first two were read (checked)
    assert torch.allclose(data[3][0], data.tokenizer.preprocess(np.full((16, 16, 3), 120, np.uint8)))
    with pytest.raises(SampleReadError, match=f"cannot read sample 4 from {paths[4]}: "):
        data[4]
    with caplog.at_level(logging.WARNING, logger="polymodal.data"):
        skipping = FileDataset(
            paths, [0, 1, 0, 1, 0, 1], "image", reader, on_error="skip", tokenizer={"patch_size": 8}
        )
    assert len(skipping) == 5 and skipping.targets.tolist() == [0, 1, 0, 1, 1]
    assert [p for p, _ in skipping.skipped] == [str(paths[4])]
    assert (
        f"image: skipped 1 of 6 files that could not be read:\n  {paths[4]}: cannot read sample 4"
        in caplog.text
    )
    assert f"1 unreadable files were skipped, e.g. {paths[4]}" in summarize(skipping).warnings
    with pytest.raises(ValueError, match="image: none of the 1 files could be read"):
        FileDataset([paths[4]], [0], "image", reader, on_error="skip")
