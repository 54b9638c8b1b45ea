"""time_series plugin: RevIN round trips and masked statistics, PatchTST patches against a loop, channel
independence, padding invariance, the forecasting head (folding, de-normalisation, equivariance to scaling and
shifting through a whole model), errors, the synthetic data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import polymodal
from polymodal.core.component import ModalityInputError
from polymodal.core.tokens import Tokens
from polymodal.data import from_table
from polymodal.plugins.time_series import (
    SERIES_EXTENSIONS,
    SHAPE_CLASSES,
    ForecastingHead,
    RevinStats,
    SeasonalSeriesDataSource,
    SeriesMeta,
    SignalShapesDataSource,
    TimeSeriesTokenizer,
    num_patches,
    read_series,
    revin_normalize,
)
from polymodal.testing import check_data_source, check_tokenizer


def tokenizer(**overrides: object) -> TimeSeriesTokenizer:
    torch.manual_seed(0)
    return TimeSeriesTokenizer.from_config(**{"embed_dim": 8, **overrides}).eval()


def test_discovered_through_entry_point() -> None:
    assert "time_series" in polymodal.list_modalities()
    assert next(p for p in polymodal.list_plugins() if p.name == "time_series").status == "loaded"
    assert polymodal.get("tokenizer", "time_series") is TimeSeriesTokenizer
    assert polymodal.get("head", "forecasting") is ForecastingHead
    assert polymodal.get("data source", "seasonal_series") is SeasonalSeriesDataSource
    assert polymodal.get("data source", "signal_shapes") is SignalShapesDataSource
    # the entry point names the package; its classes live in the package's modules
    assert TimeSeriesTokenizer.__module__ == "polymodal.plugins.time_series.tokenizer"
    assert ForecastingHead.__module__ == "polymodal.plugins.time_series.head"
    assert SeasonalSeriesDataSource.__module__ == "polymodal.plugins.time_series.data"


def test_conformance() -> None:
    tokens = check_tokenizer("time_series")
    assert tuple(tokens.embeddings.shape) == (2, 5, 32) and tokens.mask.sum(1).tolist() == [5, 4]
    check_data_source("seasonal_series")
    check_data_source("signal_shapes")


@pytest.mark.parametrize("affine", [False, True])
def test_revin_round_trips(affine: bool) -> None:
    x = 100.0 + 30.0 * torch.randn(3, 4, 50, dtype=torch.float64)
    weight = torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=torch.float64) if affine else None
    bias = torch.tensor([0.1, -1.0, 0.0, 2.0], dtype=torch.float64) if affine else None
    z, stats = revin_normalize(x, torch.full((3,), 50), 1e-5, weight, bias)
    assert (stats.denormalize(z) - x).abs().max() < 1e-5
    if not affine:
        assert z.mean(-1).abs().max() < 1e-10 and (z.var(-1, unbiased=False) - 1).abs().max() < 1e-5


def test_revin_statistics_use_only_real_steps() -> None:
    x = torch.randn(2, 3, 40, dtype=torch.float64)
    x[1, :, 25:] = 1e6  # padding garbage
    z, stats = revin_normalize(x, torch.tensor([40, 25]))
    short = x[1:, :, :25]
    assert torch.allclose(stats.mean[1], short.mean(-1)[0])
    assert torch.allclose(stats.std[1], torch.sqrt(short.var(-1, unbiased=False) + 1e-5)[0])
    assert (stats.denormalize(z)[1, :, :25] - short[0]).abs().max() < 1e-8


def naive_tokens(tok: TimeSeriesTokenizer, x: torch.Tensor) -> torch.Tensor:
    """One univariate series ``[L]`` (channel-independent): RevIN, repeat the last value ``stride`` times, loop."""
    c = tok.config
    z = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + c.revin_eps)
    z = torch.cat([z, z[-1:].expand(c.stride)])
    n = (len(z) - c.patch_length) // c.stride + 1
    rows = [
        tok.proj.weight @ z[w * c.stride : w * c.stride + c.patch_length]
        + tok.proj.bias
        + tok.pos_embed[0, w]
        for w in range(n)
    ]
    return torch.stack(rows)


def test_channel_independent_patches_match_a_loop_per_channel() -> None:
    tok = tokenizer().double()
    x = 5.0 + 2.0 * torch.randn(2, 3, 40, dtype=torch.float64)
    out = tok(x)
    n = num_patches(40)
    assert n == 5 and tuple(out.embeddings.shape) == (6, n, 8) and bool(out.mask.all())
    meta = out.meta["series"]
    assert isinstance(meta, SeriesMeta) and (meta.batch_size, meta.channels, meta.channel_mode) == (
        2,
        3,
        "independent",
    )
    assert tuple(meta.revin.mean.shape) == (2, 3)
    for b in range(2):
        for ch in range(3):
            ref = naive_tokens(tok, x[b, ch])
            assert torch.allclose(out.embeddings[b * 3 + ch], ref, atol=1e-10)  # row b·C + c
            # independence: the same channel alone gives the same tokens
            alone = tok(x[b : b + 1, ch : ch + 1])
            assert torch.allclose(alone.embeddings[0], ref, atol=1e-10)


def test_channel_mixing_patches() -> None:
    tok = tokenizer(channel_mode="mixing", channels=2, pad_end=False, revin=False).double()
    x = torch.randn(1, 2, 32, dtype=torch.float64)
    out = tok(x)
    assert tuple(out.embeddings.shape) == (1, 3, 8)  # (32 - 16) // 8 + 1
    assert out.meta["series"].revin is None and tok.proj.in_features == 32
    for w in range(3):
        patch = x[0, :, 8 * w : 8 * w + 16].reshape(-1)
        ref = tok.proj.weight @ patch + tok.proj.bias + tok.pos_embed[0, w]
        assert torch.allclose(out.embeddings[0, w], ref, atol=1e-10)


def test_token_counts() -> None:
    assert [num_patches(n) for n in (96, 336, 512, 3)] == [12, 42, 64, 1]
    assert num_patches(32, pad_end=False) == 3
    tok = tokenizer()
    assert tok.num_tokens(336) == 42 and tok(torch.randn(1, 1, 336)).num_tokens == 42


def test_padding_never_changes_a_series() -> None:
    tok = tokenizer(max_patches=8)  # the 120-step series (15 patches) resamples the table
    series = [torch.randn(2, n) * 3 + 1 for n in (5, 40, 120)]
    batch = tok(series)
    assert batch.meta["num_patches"].tolist() == [1, 1, 5, 5, 15, 15]
    for b, s in enumerate(series):
        alone = tok([s])
        for ch in range(2):
            row = batch.embeddings[2 * b + ch][batch.mask[2 * b + ch]]
            assert (alone.embeddings[ch] - row).abs().max() <= 1e-5
    assert bool((batch.embeddings[~batch.mask] == 0).all())
    assert torch.allclose(batch.meta["series"].revin.mean[1], series[1].mean(-1), atol=1e-5)


def tiny_model(head: dict, **tokenizer: object) -> polymodal.MultimodalModel:
    torch.manual_seed(0)
    model = polymodal.build_model(
        encoder={"type": "vit", "embed_dim": 16, "depth": 1, "num_heads": 2},
        tokenizers={"time_series": {"type": "time_series", **tokenizer}},
        heads={"forecast": {"type": "forecasting", "modality": "time_series", **head}},
    )
    return model.eval()


@pytest.mark.parametrize(
    ("handling", "tokenizer_kw"),
    [("shared", {}), ("individual", {}), ("mixing", {"channel_mode": "mixing", "channels": 3})],
)
def test_forecasts_scale_and_shift_with_the_input(handling: str, tokenizer_kw: dict) -> None:
    head = {"horizon": 6, "num_patches": num_patches(48), "channel_handling": handling, "channels": 3}
    model = tiny_model(head, **tokenizer_kw)
    x = torch.randn(2, 3, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model({"time_series": x})["forecast"]
        a = torch.tensor([3.0, 0.5, 10.0]).view(1, 3, 1)
        b = torch.tensor([-7.0, 100.0, 2.0]).view(1, 3, 1)
        y2 = model({"time_series": a * x + b})["forecast"]
    assert tuple(y.shape) == (2, 3, 6)
    assert (y2 - (a * y + b)).abs().max() < 1e-3 * (1 + (a * y + b).abs().max())
    # predict returns the same de-normalised forecast; the loss is its MSE against the target
    target = torch.randn(2, 3, 6)
    with torch.no_grad():
        assert torch.allclose(model({"time_series": x}, mode="predict")["forecast"], y)
        loss = model({"time_series": x}, {"forecast": target}, mode="loss")["loss_forecast"]
    assert torch.allclose(loss, ((y - target) ** 2).mean(), atol=1e-6)


def test_forecasting_head_is_the_flatten_head_denormalised() -> None:
    torch.manual_seed(0)
    head = ForecastingHead.from_config(
        embed_dim=4, horizon=3, num_patches=2, channel_handling="individual", channels=2
    )
    emb = torch.randn(4, 3, 4)  # B·C = 2·2 rows, [CLS] + 2 patch tokens
    mean = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    std = torch.tensor([[2.0, 1.0], [0.5, 3.0]])
    stats = RevinStats(mean, std, None, None, 1e-5)
    tokens = Tokens(
        emb,
        torch.ones(4, 3, dtype=torch.bool),
        "time_series",
        {"series": SeriesMeta(2, 2, "independent", stats)},
        prefix=1,
    )
    out = head(tokens)
    for b in range(2):
        for c in range(2):
            flat = emb[b * 2 + c, 1:].reshape(-1)
            ref = (flat @ head.weight[c] + head.bias[c]) * std[b, c] + mean[b, c]
            assert torch.allclose(out[b, c], ref, atol=1e-6)
    assert head.metrics == ("mse", "mae")
    assert head.align_target(tokens, torch.zeros(2, 3)).shape == (2, 1, 3)


def test_forecasting_head_errors() -> None:
    model = tiny_model({"horizon": 4, "num_patches": 12})
    with pytest.raises(
        ValueError, match=r"forecasting: expected 12 real patch tokens per sequence \(num_patches"
    ):
        model({"time_series": torch.randn(2, 1, 40)})
    with pytest.raises(ValueError, match="forecasting: expected 12 real patch tokens"):
        model({"time_series": [torch.randn(1, 96), torch.randn(1, 80)]})  # padded: lengths differ
    with pytest.raises(ValueError, match="channel_handling='individual' needs channels"):
        ForecastingHead.default_config(horizon=4, num_patches=12, channel_handling="individual")
    mixing = tiny_model({"horizon": 4, "num_patches": 12, "channel_handling": "mixing", "channels": 1})
    with pytest.raises(
        ValueError, match="channel_handling='mixing' does not fit tokens made with channel_mode='independent'"
    ):
        mixing({"time_series": torch.randn(2, 1, 96)})
    head = ForecastingHead.from_config(embed_dim=16, horizon=4, num_patches=12)
    with pytest.raises(
        ValueError, match=r"forecasting: expected tokens of the time_series tokenizer \(meta\['series'\]\)"
    ):
        head(Tokens.full(torch.randn(2, 12, 16), "imu"))


@pytest.mark.parametrize(
    ("batch", "config", "message"),
    [
        (
            torch.randn(2, 40),
            {},
            "time_series: expected a tensor (B, C, L), got tensor of shape (2, 40) and dtype float32",
        ),
        (
            torch.randn(2, 3, 40),
            {"channel_mode": "mixing", "channels": 2},
            "time_series: expected (B, 2, L), got tensor of shape (2, 3, 40) and dtype float32",
        ),
        (
            {"values": torch.randn(2, 1, 40), "lengths": torch.tensor([40, 0])},
            {},
            "time_series: expected lengths between 1 and 40 (the padded length), got lengths [40, 0]",
        ),
        (
            [torch.randn(1, 9), torch.randn(2, 9)],
            {},
            "time_series: expected series (C, L_i) with one C, got channel counts [1, 2]",
        ),
        (
            torch.full((1, 1, 20), float("nan")),
            {},
            "time_series: expected finite values (B, C, L), got 20 NaN/Inf "
            "values in tensor of shape (1, 1, 20) and dtype float32",
        ),
    ],
)
def test_errors(batch: object, config: dict, message: str) -> None:
    with pytest.raises(ModalityInputError) as info:
        tokenizer(**config)(batch)
    assert str(info.value) == message


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="channels must be set for channel_mode='mixing' or revin_affine"):
        TimeSeriesTokenizer.default_config(channel_mode="mixing")
    tok = tokenizer(revin_affine=True, channels=2)
    assert (
        tok.revin_weight.shape == (2,)
        and tok(torch.randn(1, 2, 30)).meta["series"].revin.weight is tok.revin_weight
    )


def test_preprocess() -> None:
    tok = tokenizer()
    assert tuple(tok.preprocess(np.arange(10.0)).shape) == (1, 10)
    assert tuple(tok.preprocess(torch.zeros(3, 7, dtype=torch.float64)).shape) == (3, 7)
    with pytest.raises(
        ModalityInputError, match=r"^time_series: expected one series \(2, L\) or \(L,\), got"
    ):
        tokenizer(channel_mode="mixing", channels=2).preprocess(np.zeros((3, 7)))


def test_seasonal_series_and_its_naive_baseline() -> None:
    source = SeasonalSeriesDataSource.from_config(num_train=32, num_test=16, channels=2)
    splits = source.splits()
    x, y = splits["test"][0]
    assert tuple(x.shape) == (2, 96) and tuple(y.shape) == (2, 24)
    ctx = torch.stack([s for s, _ in splits["test"]])
    tgt = torch.stack([t for _, t in splits["test"]])
    assert source.baseline() == pytest.approx(float(((tgt - ctx[..., -1:]) ** 2).mean()))
    assert source.baseline() > 0.3  # seasonality makes "repeat the last value" clearly wrong
    assert source.task() == {"type": "forecasting", "horizon": 24, "num_patches": 12, "channels": 2}
    assert torch.equal(splits["train"][3][0], source.splits()["train"][3][0])  # seeded
    # the seasonal components continue into the horizon: the period-24 pattern repeats
    full = torch.cat([ctx, tgt], -1)
    lagged = (full[..., 24:] - full[..., :-24]).var()
    assert lagged < full.var()


def test_signal_shapes() -> None:
    source = SignalShapesDataSource.from_config(num_train=100, num_test=10)
    train = source.splits()["train"]
    assert np.bincount([y for _, y in train]).tolist() == [20] * 5
    assert all(s.shape[0] == 1 and 96 <= s.shape[1] <= 128 for s, _ in train)
    assert source.baseline() == pytest.approx(0.2) and source.task()["num_classes"] == len(SHAPE_CLASSES)
    # spikes stand far out of their baseline (peak / median absolute deviation); sines and sawtooths do not
    for s, y in train:
        dev = (s[0] - s[0].median()).abs()
        peak = float(dev.max() / dev.median())
        if SHAPE_CLASSES[y] == "spikes":
            assert peak > 5
        elif SHAPE_CLASSES[y] in ("sine", "sawtooth"):
            assert peak < 4


# -- generated splits and the demo ----------------------------------------------------------------------------------
def test_seasonal_series_generate_gives_the_pairs_of_the_splits() -> None:
    source = SeasonalSeriesDataSource.from_config(num_train=12, num_test=6, channels=2)
    pairs = source.generate(12, 0)
    assert isinstance(pairs, list) and len(pairs) == 12
    splits = source.splits()
    assert all(torch.equal(a, b) and torch.equal(y, t) for (a, y), (b, t) in zip(splits["train"], pairs))
    x, y = splits["train"][0]
    assert tuple(x.shape) == (2, 96) and tuple(y.shape) == (2, 24)
    np.testing.assert_allclose(
        x[:, :3], [[-0.8679723, -0.0171839, 0.5906546], [-0.3240301, -0.2046432, -0.3459139]], atol=1e-6
    )
    np.testing.assert_allclose(
        splits["test"][0][1][:, :2], [[0.0160920, -1.3337739], [-1.9116625, -2.4767601]], atol=1e-6
    )
    assert source.baseline() == pytest.approx(2.3747396, rel=1e-6)  # on the test split (seed + 1_000_003)
    assert (
        "splits" not in SeasonalSeriesDataSource.__dict__ and "splits" not in SignalShapesDataSource.__dict__
    )


def test_signal_shapes_splits_come_from_generate() -> None:
    splits = SignalShapesDataSource.from_config(num_train=12, num_test=6).splits()
    assert [y for _, y in splits["train"]] == [4, 2, 2, 4, 0, 1, 0, 3, 1, 0, 3, 1]
    assert [y for _, y in splits["test"]] == [0, 3, 4, 2, 1, 0]
    assert [x.shape[1] for x, _ in splits["train"]][:4] == [101, 101, 111, 113]
    assert splits["train"][0][0][0, :3].tolist() == pytest.approx(
        [-0.9432256, -1.1457063, -1.3628886], abs=1e-6
    )


def test_demo_settings() -> None:
    demo = SeasonalSeriesDataSource.demo  # the forecasting source, with the tokenizer's defaults
    assert demo is not None and demo.fit is None
    assert (dict(demo.source), dict(demo.tokenizer), dict(demo.head)) == ({}, {}, {})
    assert SignalShapesDataSource.demo is None


def test_collate_names_what_is_wrong() -> None:
    messages = []
    for samples in ([], [torch.zeros(1, 4), torch.zeros(1, 4, dtype=torch.int64)]):
        with pytest.raises(ModalityInputError) as info:
            tokenizer().collate(samples)
        messages.append(str(info.value))
    assert messages == [
        "time_series: expected at least one series to collate, got an empty list",
        "time_series: expected float series, got tensor of shape (1, 4) and dtype int64",
    ]


# -- files, tables, tasks -------------------------------------------------------------------------------------------
def test_files(tmp_path: Path) -> None:
    assert TimeSeriesTokenizer.file_extensions == SERIES_EXTENSIONS == (".csv", ".tsv", ".parquet", ".npy")
    config = TimeSeriesTokenizer.default_config()
    (tmp_path / "s.csv").write_text("Timestamp,u,v,name\n0,1,10,a\n1,2,20,b\n2,3,30,c\n")
    series = TimeSeriesTokenizer.read_file(tmp_path / "s.csv", config)  # time-like and text columns left out
    assert series.dtype == np.float32 and series.tolist() == [[1, 2, 3], [10, 20, 30]]
    assert np.array_equal(series, read_series(tmp_path / "s.csv"))
    assert TimeSeriesTokenizer.read_file(tmp_path / "s.csv", config, columns=["v"]).tolist() == [[10, 20, 30]]
    np.save(tmp_path / "s.npy", np.arange(5.0))
    assert TimeSeriesTokenizer.read_file(tmp_path / "s.npy", config).tolist() == [[0, 1, 2, 3, 4]]
    np.save(tmp_path / "bad.npy", np.zeros((2, 2, 2)))
    with pytest.raises(
        ValueError, match=r"bad\.npy: expected a series \(C, L\) or \(L,\), got shape \(2, 2, 2\)"
    ):
        TimeSeriesTokenizer.read_file(tmp_path / "bad.npy", config)


def from_frame(frame: pd.DataFrame, **kwargs: object) -> object:
    """The plugin's dataset of a table, called as polymodal.data.from_table calls it."""
    given = {"target": None, "columns": None, "tokenizer": None, **kwargs}
    return TimeSeriesTokenizer.dataset_from_table(frame, modality="time_series", on_error="raise", **given)


def assert_same_dataset(ours: object, theirs: object) -> None:
    assert len(ours) == len(theirs) and ours.task == theirs.task
    assert ours.tokenizer_config == theirs.tokenizer_config and torch.equal(ours.targets, theirs.targets)
    for i in range(len(ours)):
        assert torch.equal(ours[i][0], theirs[i][0])


def test_table_forecasting_windows() -> None:
    frame = pd.DataFrame({"time": range(20), "load": np.arange(20.0) ** 2, "temp": -np.arange(20.0)})
    data = from_frame(frame, target="load", window=6, horizon=2, stride=3)
    assert (
        len(data) == 5
        and data.task.kind == "forecasting"
        and (data.task.horizon, data.task.channels) == (2, 1)
    )
    assert data[1][0].tolist() == [[9.0, 16.0, 25.0, 36.0, 49.0, 64.0]]  # rows 3..8
    assert data.targets[1].tolist() == [[81.0, 100.0]]  # rows 9, 10
    assert data.tokenizer_config["channel_mode"] == "independent"
    assert_same_dataset(data, from_table(frame, "time_series", target="load", window=6, horizon=2, stride=3))
    both = from_frame(frame, window=6, horizon=2, stride=3)  # every numeric column but time
    assert tuple(both[0][0].shape) == (2, 6) and tuple(both.targets.shape) == (5, 2, 2)
    with pytest.raises(ValueError, match="time_series: 20 rows are fewer than window \\+ horizon = 24"):
        from_frame(frame, target="load", window=20, horizon=4)
    with pytest.raises(ValueError, match="forecasting predicts every input channel; columns"):
        from_frame(frame, target="load", columns=["temp"], window=6, horizon=2)


def test_table_long_format_mixes_the_channels() -> None:
    frame = pd.DataFrame(
        {
            "id": ["b", "b", "b", "a", "a", "a", "a", "c", "c", "c"],
            "t": range(10),
            "x": np.arange(10.0),
            "y": np.arange(10.0) * 10,
            "label": [1, 1, 1, 0, 0, 0, 0, 1, 1, 1],
        }
    )
    data = from_frame(frame, target="label", id_column="id")
    assert len(data) == 3 and data.targets.tolist() == [1, 0, 1]  # ids in order of appearance
    assert data[0][0].tolist() == [[0, 1, 2], [0, 10, 20]] and tuple(data[1][0].shape) == (2, 4)
    assert (data.tokenizer_config["channels"], data.tokenizer_config["channel_mode"]) == (2, "mixing")
    assert_same_dataset(data, from_table(frame, "time_series", target="label", id_column="id"))
    kept = from_frame(frame, target="label", id_column="id", tokenizer={"channel_mode": "independent"})
    assert kept.tokenizer_config["channel_mode"] == "independent"
    assert_same_dataset(
        kept,
        from_table(
            frame, "time_series", target="label", id_column="id", tokenizer={"channel_mode": "independent"}
        ),
    )
    frame.loc[0, "label"] = 0
    with pytest.raises(ValueError, match="time_series: series 'b' has several target values in 'label'"):
        from_frame(frame, target="label", id_column="id")


def test_table_one_series_per_row() -> None:
    frame = pd.DataFrame(np.arange(12.0).reshape(3, 4), columns=["s0", "s1", "s2", "s3"]).assign(
        kind=["u", "v", "u"]
    )
    data = from_frame(frame, target="kind", columns=["s0", "s1", "s2", "s3"])
    assert data.class_names == ["u", "v"] and data.targets.tolist() == [0, 1, 0]
    assert data[1][0].tolist() == [[4, 5, 6, 7]]
    assert_same_dataset(
        data, from_table(frame, "time_series", target="kind", columns=["s0", "s1", "s2", "s3"])
    )
    with pytest.raises(ValueError, match=r"time_series: pass target= \(a column\), or window= and horizon="):
        from_frame(frame)


def test_implied_task() -> None:
    implied = TimeSeriesTokenizer.implied_task
    assert implied(np.zeros((4, 24), np.float32)) == ("forecasting", "float targets (N, H) of a time series")
    assert implied(np.zeros((4, 2, 24))) == ("forecasting", "float targets (N, C, H) of a time series")
    assert implied(np.ones((4, 3), np.int64)) == ("regression", "targets (N, 3)")  # never multi-label
    assert implied(np.zeros((4, 3), bool)) == ("regression", "targets (N, 3)")
    assert (
        implied(np.zeros(4)) is None
        and implied(np.arange(4)) is None
        and implied(np.array(["a", "b"])) is None
    )
    assert implied(np.zeros((4, 2, 3), np.int64)) is None


def test_config_for_data_mixes_channels_for_whole_series_tasks() -> None:
    for_data = TimeSeriesTokenizer.config_for_data
    three = [np.zeros((3, 40)), np.zeros((3, 50))]
    assert for_data(three, "classification", set()) == {"channels": 3, "channel_mode": "mixing"}
    assert for_data(torch.zeros(5, 2, 40), "regression", ()) == {"channels": 2, "channel_mode": "mixing"}
    assert for_data(three, "classification", {"channels"}) == {"channel_mode": "mixing"}
    assert for_data(three, "classification", {"channel_mode"}) == {}
    assert for_data(three, "forecasting", set()) == {}
    assert for_data(np.zeros((5, 40)), "classification", set()) == {}  # univariate samples (L,)
    assert for_data([np.zeros((1, 40))], "classification", set()) == {}  # one channel: nothing to mix
    assert for_data(pd.DataFrame(np.zeros((3, 4))), "classification", set()) == {}  # rows are (L,) series
    assert for_data([[[0.0, 1.0], [2.0]]], "classification", set()) == {}  # ragged: the checks will say
    assert for_data([], "classification", set()) == {}


def test_channel_independent_tokens_give_one_row_per_series_to_whole_series_heads() -> None:
    tok = tokenizer()
    x = torch.randn(2, 3, 40, generator=torch.Generator().manual_seed(0))
    assert tok(x).rows_per_sample == 3 and tok(x).num_samples == 2  # rows b·C + c: sample b
    assert tokenizer(channels=3, channel_mode="mixing")(x).rows_per_sample == 1
    torch.manual_seed(0)
    model = polymodal.build_model(
        encoder={"type": "vit", "embed_dim": 8, "depth": 1, "num_heads": 2},
        tokenizers={"time_series": "time_series"},
        heads={
            "time_series": {"type": "classification", "num_classes": 4, "pool": "mean"},
            "level": {"type": "regression", "modality": "time_series", "out_dim": 2},
        },
    ).eval()
    with torch.no_grad():
        out = model({"time_series": x})
        pred = model({"time_series": x}, mode="predict")
        encoded = model.encode({"time_series": x})["time_series"]
    assert out["time_series"].shape == (2, 4) and pred["time_series"].shape == (2,)
    assert out["level"].shape == (2, 2)
    # reference: each channel's row pooled on its own, the 3 rows of a series averaged, then the head's layers
    head = model.heads["time_series"]
    rows = encoded.replace(rows_per_sample=1)
    per_row = (rows.embeddings[:, 1:] * rows.mask[:, 1:, None]).sum(1) / rows.mask[:, 1:].sum(1, keepdim=True)
    reference = head.fc(head.norm(per_row.view(2, 3, -1).mean(1)))
    assert torch.allclose(out["time_series"], reference, atol=1e-6)
    targets = {"time_series": torch.tensor([0, 3]), "level": torch.zeros(2, 2)}
    loss = model({"time_series": x}, targets, mode="loss")["loss_time_series"]
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(reference, torch.tensor([0, 3])), atol=1e-6)


def test_token_classification_refuses_channel_independent_tokens() -> None:
    model = polymodal.build_model(
        encoder={"type": "vit", "embed_dim": 8, "depth": 1, "num_heads": 2},
        tokenizers={"time_series": "time_series"},
        heads={"time_series": {"type": "token_classification", "num_classes": 2}},
    )
    with pytest.raises(
        ValueError,
        match=r"^time_series: token_classification expects one token sequence per sample, got 3 rows per sample",
    ):
        model({"time_series": torch.randn(2, 3, 40)})
    assert model({"time_series": torch.randn(2, 1, 40)})["time_series"].shape == (2, 5, 2)  # one channel: fine


def test_fit_and_evaluate_with_channel_independent_tokens() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 3, 32)).astype(np.float32), np.arange(8) % 2
    data = polymodal.ArrayDataset("time_series", x, y, tokenizer={"channel_mode": "independent"})
    model = polymodal.build_model(
        encoder={"type": "vit", "embed_dim": 8, "depth": 1, "num_heads": 2},
        tokenizers={"time_series": data.tokenizer_config},
        heads={"time_series": data.head_config()},
    )
    assert polymodal.fit(model, data, epochs=1, batch_size=4, summary=False).epochs_run == 1
    assert model({"time_series": torch.as_tensor(x)}, mode="predict")["time_series"].shape == (8,)
    assert set(polymodal.evaluate(model, data)) == {
        "time_series/accuracy",
        "time_series/macro_f1",
        "time_series/auroc",
    }
