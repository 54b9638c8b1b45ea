"""polymodal.fit / polymodal.evaluate: tasks, early stopping, the best checkpoint, and the checks of model vs data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import polymodal
from polymodal.data import ArrayDataset, stratified_split

from .test_arrays import ENCODER, make_arrays


def _model(data: ArrayDataset, **heads: dict) -> polymodal.MultimodalModel:
    return polymodal.build_model(
        encoder=ENCODER,
        tokenizers={data.modality: data.tokenizer_config},
        heads=heads or {data.modality: data.head_config()},
    )


def test_regression_from_a_dataframe_with_a_target_column() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.standard_normal(160), "b": rng.standard_normal(160), "kind": ["x", "y"] * 80})
    df["price"] = 2.0 * df["a"] - df["b"] + np.where(df["kind"] == "x", 1.0, -1.0)
    data = ArrayDataset("tabular", df, "price")
    assert data.task.kind == "regression" and data.task.inferred == "float targets (N,)"
    assert [c["name"] for c in data.tokenizer_config["numeric"]] == ["a", "b"]
    assert [c["name"] for c in data.tokenizer_config["categorical"]] == ["kind"]
    y = df["price"].to_numpy()
    assert data.head_config() == {
        "type": "regression",
        "out_dim": 1,
        "target_mean": [pytest.approx(y.mean(), rel=1e-6)],
        "target_std": [pytest.approx(y.std(), rel=1e-6)],
    }
    train, val = stratified_split(data, 0.25)
    result = polymodal.fit(_model(data), train, val, epochs=8, batch_size=16, lr=3e-3, summary=False)
    assert result.monitor == "tabular/mse" and result.rule == "less"
    variance = float(val.targets.var(unbiased=False))
    assert result.metrics["tabular/mse"] < 0.5 * variance  # beats predicting the mean
    assert set(polymodal.evaluate(result.model, val)) == {"tabular/mse", "tabular/rmse", "tabular/mae"}


def test_multilabel_images() -> None:
    rng = np.random.default_rng(1)
    n = 96
    labels = rng.integers(0, 2, (n, 2))
    x = rng.integers(0, 60, (n, 16, 16, 3)).astype(np.uint8)
    x[labels[:, 0] == 1, :8] += 150  # label 0: bright top half
    x[labels[:, 1] == 1, :, :8] += 40  # label 1: brighter left half
    data = ArrayDataset("image", x, labels, class_names=["top", "left"], tokenizer={"patch_size": 8})
    assert data.task.kind == "multilabel" and data.task.class_names == ["top", "left"]
    assert data.head_config() == {"type": "classification", "num_classes": 2, "multi_label": True}
    assert data.targets.dtype == torch.float32 and data.targets.shape == (n, 2)
    train, val = stratified_split(data, 0.25)
    result = polymodal.fit(_model(data), train, val, epochs=20, batch_size=16, lr=3e-3, summary=False)
    assert result.monitor == "image/micro_f1"
    metrics = polymodal.evaluate(result.model, val)
    assert list(metrics) == [
        "image/micro_f1",
        "image/macro_f1",
        "image/accuracy",
        "image/auroc",
        "image/average_precision",
    ]
    # 24 validation images x 2 labels: chance is 0.5 with a standard deviation of 0.07
    assert metrics["image/accuracy"] > 0.7  # per (sample, label)
    assert metrics["image/auroc"] > 0.7  # macro over the two labels


def test_forecasting_series() -> None:
    rng = np.random.default_rng(2)
    t = np.arange(80)
    phase = rng.uniform(0, 2 * np.pi, (64, 1))
    series = np.sin(2 * np.pi * t / 16 + phase) + 0.05 * rng.standard_normal((64, 80))
    context, future = series[:, :64].astype(np.float32), series[:, 64:].astype(np.float32)
    data = ArrayDataset("time_series", context, future)
    assert data.task.kind == "forecasting" and (data.task.horizon, data.task.channels) == (16, 1)
    assert data.head_config() == {"type": "forecasting", "horizon": 16, "num_patches": 8, "channels": 1}
    assert data.targets.shape == (64, 1, 16)
    train, val = stratified_split(data, 0.25)
    result = polymodal.fit(_model(data), train, val, epochs=10, batch_size=16, lr=3e-3, summary=False)
    naive = float(((val.targets - torch.stack([val[i][0][:, -1:] for i in range(len(val))])) ** 2).mean())
    assert result.metrics["time_series/mse"] < naive  # beats repeating the last value


def test_early_stopping_and_best_checkpoint(tmp_path: Path) -> None:
    x, y, extra = make_arrays("image", 64)
    train, val = stratified_split(ArrayDataset("image", x, y, tokenizer=extra), 0.25)
    # lr = 0: the metric never improves after the first validation, so patience 2 stops after epoch 3
    result = polymodal.fit(
        _model(train), train, val, epochs=10, lr=0.0, patience=2, work_dir=tmp_path, summary=False
    )
    assert result.epochs_run == 3 < 10
    assert result.best_epoch == 1 and len(result.history) == 3
    assert result.best_checkpoint is not None and result.best_checkpoint.is_file()
    assert result.best_checkpoint.name == "best_image_accuracy_epoch_1.pth"
    assert json.loads((tmp_path / "metrics.json").read_text())["last_val"]["epoch"] == 3


def test_best_weights_are_loaded(tmp_path: Path) -> None:
    x, y, extra = make_arrays("tabular", 96)
    train, val = stratified_split(ArrayDataset("tabular", x, y, tokenizer=extra), 0.25)
    result = polymodal.fit(
        _model(train), train, val, epochs=4, batch_size=8, lr=1e-2, work_dir=tmp_path, summary=False
    )
    scores = [e["tabular/accuracy"] for e in result.history]
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    assert result.best_epoch == best + 1
    assert result.metrics["tabular/accuracy"] == pytest.approx(scores[best])
    again = polymodal.evaluate(result.model, val)
    assert again["tabular/accuracy"] == pytest.approx(scores[best])
    assert again["tabular/macro_f1"] == pytest.approx(result.metrics["tabular/macro_f1"])
    saved = torch.load(result.best_checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    assert all(torch.equal(saved[k], v) for k, v in result.model.state_dict().items())
    assert str(result).startswith(f"best epoch {best + 1} of 4 by tabular/accuracy: tabular/accuracy")


def test_two_inputs_in_one_fit_and_no_validation() -> None:
    xi, yi, ei = make_arrays("image", 32)
    xt, yt, _ = make_arrays("tabular", 40)
    image = ArrayDataset("image", xi, yi, tokenizer=ei)
    table = ArrayDataset("tabular", xt, yt, task="regression")
    model = polymodal.build_model(
        encoder=ENCODER,
        tokenizers={"image": image.tokenizer_config, "tabular": table.tokenizer_config},
        heads={"image": image.head_config(), "tabular": table.head_config()},
    )
    result = polymodal.fit(model, {"image": image, "tabular": table}, epochs=1, batch_size=8, summary=False)
    assert result.epochs_run == 1 and result.metrics == {} and result.best_epoch is None
    metrics = polymodal.evaluate(model, {"image": image, "tabular": table})
    assert set(metrics) == {
        "image/accuracy",
        "image/macro_f1",
        "image/auroc",  # two classes
        "tabular/mse",
        "tabular/rmse",
        "tabular/mae",
    }


def test_fit_prints_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    x, y, extra = make_arrays("image", 24)
    train, val = stratified_split(
        ArrayDataset("image", x, y, class_names=["dark", "bright"], tokenizer=extra), 0.25
    )
    polymodal.fit(_model(train), train, val, epochs=1, log_interval=100)
    out = capsys.readouterr().out
    assert "image: 18 samples (+ 6 validation)" in out
    assert "task: classification, 2 classes (dark, bright)" in out
    assert "tokens per sample: min 4, median 4, max 4" in out


def test_model_and_data_must_agree() -> None:
    x, y, extra = make_arrays("image", 8)
    data = ArrayDataset("image", x, y, tokenizer=extra)
    with pytest.raises(
        ValueError, match=r"the model has no 'image' tokenizer for this data; its inputs: tabular"
    ):
        polymodal.fit(polymodal.build_model(encoder=ENCODER, modalities=["tabular"]), data, summary=False)
    wrong_size = polymodal.build_model(
        encoder=ENCODER,
        tokenizers={"image": data.tokenizer_config},
        heads={"image": {"type": "classification", "num_classes": 10}},
    )
    with pytest.raises(ValueError, match=r"needs a head with num_classes=2 \(the head has 10\)"):
        polymodal.fit(wrong_size, data, summary=False)
    regression = polymodal.build_model(
        encoder=ENCODER, tokenizers={"image": data.tokenizer_config}, heads={"image": {"type": "regression"}}
    )
    with pytest.raises(
        ValueError, match=r"needs a head with type='classification' \(the head has 'regression'\)"
    ):
        polymodal.fit(regression, data, summary=False)
    no_head = polymodal.build_model(encoder=ENCODER, tokenizers={"image": data.tokenizer_config})
    with pytest.raises(ValueError, match="no head of the model reads input 'image'"):
        polymodal.fit(no_head, data, summary=False)
    other_patches = polymodal.build_model(
        encoder=ENCODER, modalities=["image"], heads={"image": data.head_config()}
    )
    with pytest.raises(
        ValueError, match=r"preprocessed for a different 'image' tokenizer .*patch_size: data 8, model 16"
    ):
        polymodal.fit(other_patches, data, summary=False)
    with pytest.raises(ValueError, match=r"patience .* needs val_data"):
        polymodal.fit(other_patches, data, patience=2)
    with pytest.raises(TypeError, match=r"must be a dataset .* got ndarray"):
        polymodal.fit(other_patches, x)
