"""imu plugin: normalisation + time patches against a loop, masks and padding invariance, per-recording positional
resampling, preprocessing (resampling, channel order), errors, the simulated activities."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import polymodal
from polymodal.core.component import ModalityInputError
from polymodal.plugins._sequence import resample
from polymodal.plugins.imu import (
    ACTIVITIES,
    GRAVITY,
    IMU_COLUMNS,
    IMU_EXTENSIONS,
    ActivitiesDataSource,
    ImuTokenizer,
    default_imu_scales,
    read_imu,
)
from polymodal.testing import check_data_source, check_tokenizer


def tokenizer(**overrides: object) -> ImuTokenizer:
    torch.manual_seed(0)
    return ImuTokenizer.from_config(**{"embed_dim": 8, **overrides}).eval()


def naive_tokens(tok: ImuTokenizer, x: torch.Tensor) -> torch.Tensor:
    """One recording ``[C, T]`` (T >= patch_length): a loop over windows of the normalised signal."""
    c = tok.config
    mean = torch.tensor(c.channel_mean, dtype=x.dtype)[:, None]
    std = torch.tensor(c.channel_std, dtype=x.dtype)[:, None]
    z = (x - mean) / std
    n = (x.shape[1] - c.patch_length) // c.stride + 1
    out = []
    for w in range(n):
        patch = z[:, w * c.stride : w * c.stride + c.patch_length].reshape(-1)  # channel-major, as [C, P]
        out.append(tok.proj.weight @ patch + tok.proj.bias + tok.pos_embed[0, w])
    return torch.stack(out)


def test_discovered_through_entry_point() -> None:
    assert "imu" in polymodal.list_modalities()
    assert next(p for p in polymodal.list_plugins() if p.name == "imu").status == "loaded"
    assert polymodal.get("tokenizer", "imu") is ImuTokenizer
    assert polymodal.get("data source", "activities") is ActivitiesDataSource


def test_conformance() -> None:
    tokens = check_tokenizer("imu")
    assert tuple(tokens.embeddings.shape) == (2, 4, 32) and tokens.mask.sum(1).tolist() == [4, 3]
    check_data_source("activities")


def test_forward_matches_a_loop_over_windows() -> None:
    tok = tokenizer(patch_length=5, stride=3, mean=(1.0, 0.0, -1.0, 0.5, 0.0, 0.0)).double()
    x = torch.randn(2, 6, 23, dtype=torch.float64)
    out = tok(x)
    assert tuple(out.embeddings.shape) == (2, 7, 8) and bool(out.mask.all())  # (23 - 5) // 3 + 1
    for b in range(2):
        assert torch.allclose(out.embeddings[b], naive_tokens(tok, x[b]), atol=1e-10)


def test_default_token_counts_and_scales() -> None:
    tok = tokenizer()
    assert [tok.num_tokens(n) for n in (128, 500, 3)] == [15, 61, 1]
    assert tok(torch.zeros(1, 6, 128)).num_tokens == 15 and tok(torch.zeros(1, 6, 500)).num_tokens == 61
    assert tok.config.channel_std == (GRAVITY,) * 3 + (1.0,) * 3 and tok.config.channel_mean == (0.0,) * 6
    assert default_imu_scales(9) == (GRAVITY,) * 3 + (1.0,) * 3 + (50.0,) * 3
    assert default_imu_scales(2) == (GRAVITY, GRAVITY)
    assert tokenizer(channels=3).proj.in_features == 3 * 16


def test_padding_never_changes_a_recording() -> None:
    tok = tokenizer(max_patches=8)  # the 200-step recording (24 windows) resamples the table
    recs = [torch.randn(6, n) for n in (9, 40, 200)]
    batch = tok(recs)
    assert batch.meta["num_patches"].tolist() == [1, 4, 24]  # 9 < 16 -> one window (last step repeated)
    assert batch.mask.sum(1).tolist() == [1, 4, 24] and batch.num_tokens == 24
    for b, rec in enumerate(recs):
        alone = tok(rec[None])
        assert (alone.embeddings[0] - batch.embeddings[b][batch.mask[b]]).abs().max() <= 1e-5
    assert bool((batch.embeddings[~batch.mask] == 0).all())
    # the short recording's one window repeats its last step
    short = recs[0]
    padded = torch.cat([short, short[:, -1:].expand(-1, 7)], dim=1)
    assert torch.allclose(tok(padded[None]).embeddings, tok(short[None]).embeddings, atol=1e-6)
    # the long one: the positional table linearly resampled to its own 24 windows
    table = tok.pos_embed.detach()[0]
    ref = F.interpolate(table.t()[None], size=24, mode="linear", align_corners=True)[0].t()
    x = recs[2][None] / torch.tensor(tok.config.channel_std).view(1, 6, 1)
    proj = tok.proj(x.unfold(-1, 16, 8).permute(0, 2, 1, 3).flatten(2))
    assert torch.allclose(batch.embeddings[2] - proj[0], ref, atol=1e-5)


def test_preprocess_resamples_and_checks_channel_order() -> None:
    tok = tokenizer()
    rec = np.random.default_rng(0).standard_normal((6, 200)).astype(np.float32)
    assert torch.equal(tok.preprocess(rec), torch.from_numpy(rec))
    out = tok.preprocess((rec, 100))
    assert tuple(out.shape) == (6, 100)
    assert torch.allclose(out, resample(torch.from_numpy(rec), 100, 50))
    assert torch.allclose(tok.preprocess({"values": rec, "sample_rate": 100}), out)
    with pytest.raises(ModalityInputError) as info:
        tok.preprocess(rec.T)
    assert str(info.value) == (
        "imu: expected one recording (6, T) (channels first), optionally with its sample rate; transpose (T, "
        "channels) arrays, got ndarray of shape (200, 6) and dtype float32"
    )
    with pytest.raises(
        ModalityInputError, match=r"^imu: expected a positive integer sample rate \(Hz\), got 0$"
    ):
        tok.preprocess((rec, 0))
    batch = tok.collate([out, out[:, :30]])
    assert tuple(batch["values"].shape) == (2, 6, 100) and batch["lengths"].tolist() == [100, 30]


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (torch.zeros(2, 3, 20), "imu: expected (B, 6, T), got tensor of shape (2, 3, 20) and dtype float32"),
        (
            torch.zeros(6, 20),
            "imu: expected a tensor (B, 6, T), got tensor of shape (6, 20) and dtype float32",
        ),
        (
            torch.zeros(1, 6, 20, dtype=torch.int32),
            "imu: expected a floating-point tensor (B, 6, T), got tensor of shape (1, 6, 20) and dtype int32",
        ),
        (
            {"values": torch.zeros(2, 6, 20), "lengths": torch.tensor([20])},
            "imu: expected integer lengths of shape (2,), got tensor of shape (1,) and dtype int64",
        ),
        (
            {"signal": torch.zeros(2, 6, 20)},
            "imu: expected a tensor (B, 6, T) or a dict with 'values' and "
            "'lengths', got a dict with keys ['signal']",
        ),
        (
            [torch.zeros(3, 20)],
            "imu: expected recordings (6, T_i), got tensor of shape (3, 20) and dtype float32",
        ),
        (object(), "imu: expected a tensor (B, 6, T), got object"),
    ],
)
def test_errors(batch: object, message: str) -> None:
    with pytest.raises(ModalityInputError) as info:
        tokenizer()(batch)
    assert str(info.value) == message


def test_config_errors() -> None:
    with pytest.raises(ValueError, match=r"mean needs 6 values \(channels\), got 3"):
        ImuTokenizer.default_config(mean=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="std must be positive"):
        ImuTokenizer.default_config(channels=1, std=(0.0,))


def test_activities_follow_the_sensor_model() -> None:
    source = ActivitiesDataSource.from_config(num_train=240, num_test=12)
    train = source.splits()["train"]
    labels = np.array([y for _, y in train])
    assert np.bincount(labels).tolist() == [40] * 6
    lengths = [x.shape[1] for x, _ in train]
    assert min(lengths) >= 100 and max(lengths) <= 150 and all(x.shape[0] == 6 for x, _ in train)
    assert torch.equal(
        train[0][0], ActivitiesDataSource.from_config(num_train=240, num_test=12).splits()["train"][0][0]
    )
    by = {a: [x for x, y in train if ACTIVITIES[y] == a] for a in ACTIVITIES}
    # at rest the accelerometer reads gravity only: |mean specific force| = g
    for a in ("standing", "lying"):
        g = torch.stack([x[:3].mean(1).norm() for x in by[a]])
        assert (g - GRAVITY).abs().max() < 0.1, a

    # thigh pitch from gravity's direction (mounting adds up to 20 degrees): upright, horizontal, about 60
    def pitch(x: torch.Tensor) -> float:
        f = x[:3].mean(1)
        return float(torch.rad2deg(torch.atan2(f[:2].norm(), f[2])))

    assert max(pitch(x) for x in by["standing"]) < 30
    assert min(pitch(x) for x in by["lying"]) > 60
    assert 30 < np.median([pitch(x) for x in by["cycling"]]) < 80
    # movement energy: rotation rate and acceleration grow from standing to walking to running; jumps hit hardest
    gyro = {a: float(np.mean([x[3:].norm(dim=0).mean() for x in by[a]])) for a in ACTIVITIES}
    peak = {a: float(np.mean([x[:3].norm(dim=0).max() for x in by[a]])) for a in ACTIVITIES}
    assert gyro["standing"] < 0.2 < gyro["walking"] < gyro["running"]
    assert peak["jumping"] > peak["running"] > peak["walking"] > peak["standing"]
    assert source.baseline() == pytest.approx(1 / 6)


def test_activities_splits_come_from_generate() -> None:
    source = ActivitiesDataSource.from_config(num_train=12, num_test=6)
    splits = source.splits()
    assert [y for _, y in splits["train"]] == [2, 0, 5, 3, 1, 4, 2, 4, 3, 1, 5, 0]
    assert [y for _, y in splits["test"]] == [4, 1, 0, 3, 2, 5]
    assert [x.shape[1] for x, _ in splits["train"]][:4] == [110, 117, 107, 120]
    assert splits["train"][0][0][:, 0].tolist() == pytest.approx(
        [-4.0738850, 0.5390710, 8.2582159, 0.0390908, 1.1989110, 0.0960668], abs=1e-5
    )
    test = source.generate(6, 1_000_003)  # the test split: seed + TEST_SEED_OFFSET
    assert all(torch.equal(a, b) and y == t for (a, y), (b, t) in zip(splits["test"], test))
    assert "splits" not in ActivitiesDataSource.__dict__  # the base class makes them


def test_demo_settings() -> None:
    demo = ActivitiesDataSource.demo
    assert demo is not None and demo.fit is None
    assert (dict(demo.source), dict(demo.tokenizer), dict(demo.head)) == ({}, {}, {"pool": "mean"})


def test_collate_pads_recordings_and_names_what_is_wrong() -> None:
    tok = tokenizer(channels=2, mean=None)
    batch = tok.collate([np.ones((2, 3), np.float32), torch.zeros(2, 1)])
    assert batch["lengths"].tolist() == [3, 1] and batch["values"].tolist() == [
        [[1, 1, 1]] * 2,
        [[0, 0, 0]] * 2,
    ]
    messages = []
    for samples in ([], [torch.zeros(3, 4)], [torch.zeros(2, 4), torch.zeros(2, 4, dtype=torch.int32)]):
        with pytest.raises(ModalityInputError) as info:
            tok.collate(samples)
        messages.append(str(info.value))
    assert messages == [
        "imu: expected at least one recording to collate, got an empty list",
        "imu: expected recordings (2, T_i), got tensor of shape (3, 4) and dtype float32",
        "imu: expected float recordings, got tensor of shape (2, 4) and dtype int32",
    ]


def test_files(tmp_path: Path) -> None:
    assert ImuTokenizer.file_extensions == IMU_EXTENSIONS == (".csv", ".tsv", ".parquet")
    assert IMU_COLUMNS == ("acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z")
    rows = ["time,gyr_z,acc_x,acc_y,acc_z,gyr_x,gyr_y,note"]
    rows += [f"{10 * i},{i},{i + 0.5},0,{GRAVITY},0,0,x" for i in range(4)]
    path = tmp_path / "walk.csv"
    path.write_text("\n".join(rows) + "\n")
    config = ImuTokenizer.default_config()
    values = ImuTokenizer.read_file(path, config)  # the axis columns in IMU_COLUMNS order
    assert values.dtype == np.float32 and values.shape == (6, 4)
    assert values[0].tolist() == [0.5, 1.5, 2.5, 3.5] and values[5].tolist() == [0, 1, 2, 3]
    assert np.array_equal(values, read_imu(path))
    timed = ImuTokenizer.read_file(path, config, time_column="time", time_unit=1e-3)  # 10 ms steps: 100 Hz
    assert timed["sample_rate"] == 100 and np.array_equal(timed["values"], values)
    assert tuple(ImuTokenizer.from_config(embed_dim=8).preprocess(timed).shape) == (6, 2)  # to 50 Hz
    picked = ImuTokenizer.read_file(path, config, columns=["acc_z", "gyr_z"])
    assert picked.tolist() == [[pytest.approx(GRAVITY)] * 4, [0, 1, 2, 3]]
    with pytest.raises(KeyError, match=r"walk\.csv: no time column 'stamp'"):
        ImuTokenizer.read_file(path, config, time_column="stamp")


def test_a_recording_without_its_rate_is_said_to_be_taken_at_the_default() -> None:
    tok = ImuTokenizer({"embed_dim": 8})
    x = np.zeros((6, 100), np.float32)
    with pytest.warns(UserWarning, match=r"imu: a recording without its sample rate is taken as 50 Hz"):
        tok.preprocess(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tok.preprocess((x, 10)).shape == (6, 500)  # 10 Hz given: resampled to 50 Hz, no warning
        assert ImuTokenizer({"embed_dim": 8, "sample_rate": 10}).preprocess(x).shape == (6, 100)  # set: no warning
