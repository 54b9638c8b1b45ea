"""ArrayDataset for every registered modality: raw arrays in, checked at construction, fine-tuned with fit."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

import polymodal
from polymodal.data import ArrayDataset, SampleInputError, stratified_split

ENCODER = {"type": "vit", "embed_dim": 32, "depth": 2, "num_heads": 2}
# every registered modality (a plugin installed later included); the raw samples below are written for the
# built-in ones, and a modality without them is skipped here (its plugin's own tests cover its raw forms)
MODALITIES = polymodal.list_modalities()


def _graph(n: int, star: bool) -> Data:
    if star:
        src, dst = torch.zeros(n - 1, dtype=torch.long), torch.arange(1, n)
    else:
        src, dst = torch.arange(n - 1), torch.arange(1, n)
    ei = torch.stack([torch.cat([src, dst]), torch.cat([dst, src])])
    return Data(edge_index=ei, num_nodes=n)


def make_arrays(modality: str, n: int = 48, seed: int = 0) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """``(inputs, labels, tokenizer overrides)``: ``n`` raw samples of ``modality`` whose label (0/1) is easy to
    see (brightness, frequency, shape, sign)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    rng.shuffle(y)
    if modality == "text":
        words = [["great", "fine", "lovely"], ["awful", "bad", "poor"]]
        return [f"a {rng.choice(words[c])} day" for c in y], y, {"max_length": 32}
    if modality in ("image", "video"):
        shape = (n, 16, 16, 3) if modality == "image" else (n, 4, 16, 16, 3)
        x = rng.integers(0, 60, shape).astype(np.uint8)
        x[y == 1, ..., :8, :, :] += 150  # top half bright for class 1
        extra = {"patch_size": 8} if modality == "image" else {"patch_size": 8, "num_frames": 4}
        return x, y, extra
    if modality == "audio":
        t = np.arange(4000) / 16000
        f = np.where(y == 1, 2000.0, 300.0)[:, None]
        return (
            (0.5 * np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal((n, len(t)))).astype(np.float32),
            y,
            {},
        )
    if modality == "point_cloud":
        x = rng.standard_normal((n, 128, 3)).astype(np.float32)
        x[y == 1, :, 0] *= 4.0  # elongated along x
        return x, y, {"num_groups": 8, "group_size": 16}
    if modality == "infrared":
        x = rng.uniform(290.0, 295.0, (n, 16, 16)).astype(np.float32)
        x[y == 1, :8] += 20.0  # a hot upper half
        return x, y, {"patch_size": 8}
    if modality == "xray":
        x = rng.integers(500, 1500, (n, 32, 32)).astype(np.uint16)
        x[y == 1, 8:24, 8:24] += 2000  # a dense square
        return x, y, {"patch_size": 8, "img_size": 32, "resize": 32}
    if modality == "hyperspectral":
        slope = np.where(y == 1, 1.0, -1.0)[:, None, None, None] * np.linspace(0, 0.4, 16)
        x = (0.5 + slope + 0.05 * rng.standard_normal((n, 7, 7, 16))).astype(np.float32)
        return x, y, {"bands": 16, "band_group": 4, "patch_size": 7, "img_size": 7}
    if modality == "imu":
        t = np.arange(100) / 50
        f = np.where(y == 1, 8.0, 1.0)[:, None, None]
        x = np.sin(2 * np.pi * f * t + rng.uniform(0, 6, (n, 6, 1))) + 0.05 * rng.standard_normal((n, 6, 100))
        return x.astype(np.float32), y, {}
    if modality == "tabular":
        x = rng.standard_normal((n, 4))
        x[:, 0] = np.where(y == 1, 1.5, -1.5) + 0.3 * rng.standard_normal(n)
        return x, y, {}
    if modality == "graph":
        return [_graph(int(rng.integers(5, 9)), bool(c)) for c in y], y, {}
    if modality == "time_series":
        t = np.arange(64)
        f = np.where(y == 1, 1 / 4, 1 / 32)[:, None]
        x = np.sin(2 * np.pi * f * t + rng.uniform(0, 6, (n, 1))) + 0.05 * rng.standard_normal((n, 64))
        return x[:, None].astype(np.float32), y, {}
    pytest.skip(f"{modality}: no raw samples written for it here")


# one malformed input per modality and the words its error must contain
BAD = {
    "text": (lambda: [b"bytes", b"more"], "text: sample 0: expected a str (decode bytes first), got bytes"),
    "image": (lambda: np.zeros((2, 16, 16, 4), np.uint8), "image: sample 0: expected"),
    "video": (lambda: np.zeros((2, 4, 16, 16, 2), np.uint8), "video: sample 0: expected a clip (T, H, W, 3)"),
    "audio": (lambda: np.zeros((2, 4000, 2), np.float32), "audio: sample 0: expected"),
    "point_cloud": (
        lambda: np.zeros((2, 64, 4), np.float32),
        "point_cloud: sample 0: expected one cloud (P, 3)",
    ),
    "infrared": (lambda: np.zeros((2, 15, 16), np.float32), "infrared: sample 0: expected (B, 1, H, W)"),
    "xray": (lambda: np.zeros((2, 3, 3, 3, 3), np.uint16), "xray: sample 0: expected"),
    "hyperspectral": (lambda: np.zeros((2, 7, 7, 15), np.float32), "hyperspectral: sample 0: expected"),
    "imu": (lambda: np.zeros((2, 100, 6), np.float32), "transpose (T, channels) arrays"),
    "tabular": (lambda: np.zeros((2, 4, 2)), "tabular: sample 0: expected one row"),
    "graph": (lambda: [{"x": 1}, {"x": 2}], "graph: sample 0: expected a dict with 'edge_index'"),
    "time_series": (
        lambda: np.zeros((2, 2, 3, 64), np.float32),
        "time_series: sample 0: expected one series",
    ),
}


@pytest.mark.parametrize("modality", MODALITIES)
def test_wrong_shape_fails_at_construction(modality: str) -> None:
    _, _, extra = make_arrays(modality, 4)
    make, message = BAD[modality]
    with pytest.raises(SampleInputError) as info:
        ArrayDataset(modality, make(), [0, 1], tokenizer=extra)
    assert message in str(info.value)
    assert info.value.modality == modality


def test_bad_sample_in_a_list_is_named_by_index() -> None:
    good = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(
        SampleInputError, match=r"image: samples \[0, 3\]: expected samples of one shape to stack"
    ):
        ArrayDataset("image", [good, good, good, np.zeros((8, 16, 3), np.uint8)], [0, 1, 0, 1])
    with pytest.raises(SampleInputError, match=r"image: sample 2: expected finite pixel values, got 1 NaN"):
        bad = np.zeros((16, 16, 3), np.float32)
        bad[0, 0, 0] = np.nan
        ArrayDataset("image", [good, good, bad], [0, 1, 0])
    with pytest.raises(ValueError, match="image: 3 samples but 2 targets"):
        ArrayDataset("image", [good, good, good], [0, 1])


@pytest.mark.parametrize("modality", MODALITIES)
def test_fit_and_evaluate_each_modality(modality: str, tmp_path: Any) -> None:
    x, y, extra = make_arrays(modality)
    data = ArrayDataset(modality, x, y, tokenizer=extra)
    assert len(data) == 48 and data.task.kind == "classification" and data.task.num_classes == 2
    assert data.head_config() == {"type": "classification", "num_classes": 2}
    sample, target = data[0]
    assert int(target) == int(y[0])
    batch = data.tokenizer.collate([sample, data[1][0]])
    assert data.tokenizer(batch).batch_size >= 2
    train, val = stratified_split(data, 0.25)
    model = polymodal.build_model(
        encoder=ENCODER, tokenizers={modality: data.tokenizer_config}, heads={modality: data.head_config()}
    )
    result = polymodal.fit(
        model, train, val, epochs=2, batch_size=12, lr=2e-3, summary=False, log_interval=50
    )
    assert result.epochs_run == 2 and len(result.history) == 2
    metrics = polymodal.evaluate(result.model, val)
    assert set(metrics) == {f"{modality}/accuracy", f"{modality}/macro_f1", f"{modality}/auroc"}  # 2 classes
    assert 0.0 <= metrics[f"{modality}/accuracy"] <= 1.0
    assert math.isfinite(metrics[f"{modality}/macro_f1"])
    assert metrics[f"{modality}/accuracy"] == pytest.approx(result.metrics[f"{modality}/accuracy"])


@pytest.mark.parametrize("modality", ["image", "tabular", "time_series", "text"])
def test_easy_tasks_beat_chance(modality: str) -> None:
    x, y, extra = make_arrays(modality, 96)
    train, val = stratified_split(ArrayDataset(modality, x, y, tokenizer=extra), 0.25)
    model = polymodal.build_model(
        encoder=ENCODER, tokenizers={modality: train.tokenizer_config}, heads={modality: train.head_config()}
    )
    result = polymodal.fit(
        model, train, val, epochs=10, batch_size=16, lr=3e-3, summary=False, log_interval=50
    )
    accuracy = polymodal.evaluate(result.model, val)[f"{modality}/accuracy"]
    assert accuracy >= 0.8, f"{modality}: accuracy {accuracy} (chance 0.5)"


def test_series_of_several_channels_are_mixed_for_classification() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((12, 3, 32)).astype(np.float32), np.arange(12) % 2
    data = ArrayDataset("time_series", x, y)
    assert (data.tokenizer_config["channel_mode"], data.tokenizer_config["channels"]) == ("mixing", 3)
    assert data.tokens_per_sample() == 4  # one sequence of (32 + 8 - 16) / 8 + 1 patches, not one per channel
    model = polymodal.build_model(
        encoder=ENCODER,
        tokenizers={"time_series": data.tokenizer_config},
        heads={"time_series": data.head_config()},
    )
    result = polymodal.fit(model, data, epochs=1, batch_size=6, summary=False)
    assert result.epochs_run == 1
    assert set(polymodal.evaluate(model, data)) == {
        "time_series/accuracy",
        "time_series/macro_f1",
        "time_series/auroc",
    }
    independent = ArrayDataset("time_series", x, y, tokenizer={"channel_mode": "independent"})
    assert independent.tokenizer_config["channel_mode"] == "independent"  # what the user asks for wins
    forecast = ArrayDataset("time_series", x, x[:, :, :8])  # forecasting keeps channels apart (PatchTST)
    assert forecast.task.kind == "forecasting" and forecast.tokenizer_config["channel_mode"] == "independent"


def test_bad_targets_say_what_was_expected() -> None:
    images = np.zeros((4, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match=r"^image: expected class indices below 3 \(num_classes\), got 7$"):
        ArrayDataset("image", images, [0, 1, 2, 7], task={"kind": "classification", "num_classes": 3})
    with pytest.raises(ValueError, match=r"^image: expected class indices below 2 \(class_names\), got 2$"):
        ArrayDataset("image", images, [0, 1, 2, 1], class_names=["cat", "dog"])
    with pytest.raises(ValueError, match=r"^image: expected finite targets, got 1 NaN/Inf$"):
        ArrayDataset("image", images, [float("nan"), 1.0, 2.0, 0.5])
