"""infrared plugin: per-image radiometric normalisation (gain and offset drop out), Planck band radiance,
weights from an RGB tokenizer, errors, the thermal-scenes data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from scipy import ndimage

import polymodal
from polymodal.core.component import ModalityInputError
from polymodal.plugins._grid import read_image
from polymodal.plugins.image import ImageTokenizer
from polymodal.plugins.infrared import (
    InfraredTokenizer,
    ThermalScenesDataSource,
    band_radiance,
    normalize_thermal,
)
from polymodal.testing import check_data_source, check_tokenizer

STEFAN_BOLTZMANN = 5.670374419e-8


def tokenizer(**overrides: object) -> InfraredTokenizer:
    torch.manual_seed(0)
    return InfraredTokenizer.from_config(**{"embed_dim": 8, **overrides}).eval()


def raw_counts(seed: int = 0, shape: tuple[int, int] = (32, 48)) -> np.ndarray:
    return np.random.default_rng(seed).integers(3000, 9000, shape).astype(np.uint16)


def test_discovered_through_entry_point() -> None:
    assert "infrared" in polymodal.list_modalities()
    assert next(p for p in polymodal.list_plugins() if p.name == "infrared").status == "loaded"
    assert polymodal.get("tokenizer", "infrared") is InfraredTokenizer
    assert polymodal.get("data source", "thermal_scenes") is ThermalScenesDataSource


def test_conformance() -> None:
    tokens = check_tokenizer("infrared")
    assert tuple(tokens.embeddings.shape) == (2, 6, 32) and tokens.mask.all()
    check_data_source("thermal_scenes")


def test_default_token_counts() -> None:
    tok = tokenizer()
    assert tok.config.in_chans == 1
    assert tok(torch.zeros(1, 1, 224, 224)).num_tokens == 196
    assert tok(torch.zeros(1, 1, 512, 640)).num_tokens == 32 * 40


@pytest.mark.parametrize("mode", ["minmax", "percentile"])
def test_scaling_and_offsetting_raw_counts_gives_the_same_tokens(mode: str) -> None:
    tok = tokenizer(normalization=mode)
    raw = raw_counts()
    variants = [
        raw,
        (raw.astype(np.int64) * 3 + 1000).astype(np.uint16),  # another gain and offset, still 16-bit
        raw.astype(np.float64) * 0.01 - 273.15,  # float "temperatures"
        torch.from_numpy(raw.astype(np.int32)) * 7 - 5,  # a tensor
    ]
    ref = tok(tok.collate([tok.preprocess(raw)])).embeddings
    for v in variants[1:]:
        x = tok.preprocess(v)
        assert tuple(x.shape) == (1, 32, 48)
        assert (x - tok.preprocess(raw)).abs().max() <= 1e-5
        assert (tok(x[None]).embeddings - ref).abs().max() <= 1e-5


def test_preprocess_minmax_and_percentile_by_hand() -> None:
    raw = raw_counts(1, (16, 16))
    lo, hi = raw.min(), raw.max()
    ref = ((raw - lo) / (hi - lo) - 0.5) / 0.5
    assert np.allclose(tokenizer(normalization="minmax").preprocess(raw)[0].numpy(), ref, atol=1e-6)
    p1, p99 = np.percentile(raw.astype(np.float64), [1, 99])
    ref = (np.clip((raw - p1) / (p99 - p1), 0, 1) - 0.5) / 0.5
    assert np.allclose(tokenizer().preprocess(raw)[0].numpy(), ref, atol=1e-5)
    eight_bit = raw_counts(2, (16, 16)).astype(np.uint8)  # 8-bit frames: same per-image scaling
    lo, hi = eight_bit.min(), eight_bit.max()
    ref = ((eight_bit - lo) / (hi - lo) - 0.5) / 0.5
    assert np.allclose(tokenizer(normalization="minmax").preprocess(eight_bit)[0].numpy(), ref, atol=1e-6)


def test_preprocess_pil_16_bit() -> None:
    from PIL import Image

    raw = raw_counts(3, (16, 32))
    img = Image.fromarray(raw)  # mode I;16
    assert torch.allclose(tokenizer().preprocess(img), tokenizer().preprocess(raw), atol=1e-6)
    assert tuple(tokenizer(resize=32).preprocess(img).shape) == (1, 32, 32)


def test_normalize_thermal_is_per_image() -> None:
    frames = torch.from_numpy(np.stack([raw_counts(4, (8, 8)), raw_counts(5, (8, 8)) * 2]).astype(np.int64))
    out = normalize_thermal(frames[:, None], "minmax")
    for i in range(2):
        assert float(out[i].min()) == 0.0 and float(out[i].max()) == 1.0


def test_band_radiance_integrates_planck() -> None:
    # over (nearly) all wavelengths the band radiance is the Stefan-Boltzmann radiance sigma T^4 / pi
    for t in (250.0, 300.0, 400.0):
        total = band_radiance(t, (0.5e-6, 2000e-6), 400001)
        assert abs(total / (STEFAN_BOLTZMANN * t**4 / np.pi) - 1) < 2e-3
    lwir = band_radiance(np.array([280.0, 300.0, 320.0]))
    assert np.all(np.diff(lwir) > 0) and 45 < lwir[1] < 60  # ~37 % of sigma T^4 / pi at 300 K


def test_single_channel_from_rgb_weights_sums_channels() -> None:
    rgb = ImageTokenizer.from_config(embed_dim=8).eval()
    tok = tokenizer().load_patch_embed(rgb)
    assert torch.allclose(tok.proj.weight, rgb.proj.weight.sum(1, keepdim=True))
    x = torch.randn(2, 1, 32, 48)
    assert torch.allclose(tok(x).embeddings, rgb(x.expand(-1, 3, -1, -1)).embeddings, atol=1e-5)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (
            torch.randn(2, 3, 32, 32),
            "infrared: expected (B, 1, H, W) with H and W divisible by 16, got (2, 3, 32, 32)",
        ),
        (
            torch.randn(2, 32, 32),
            "infrared: expected a tensor (B, 1, H, W) with H and W divisible by 16, got tensor "
            "of shape (2, 32, 32) and dtype float32",
        ),
        (
            torch.zeros(1, 1, 16, 16, dtype=torch.int16),
            "infrared: expected a floating-point tensor (B, 1, H, W) with "
            "H and W divisible by 16, got tensor of shape (1, 1, 16, 16) and dtype int16",
        ),
        (object(), "infrared: expected a tensor (B, 1, H, W) with H and W divisible by 16, got object"),
    ],
)
def test_forward_errors(batch: object, message: str) -> None:
    with pytest.raises(ModalityInputError) as exc:
        tokenizer()(batch)
    assert str(exc.value) == message


def test_preprocess_and_config_errors() -> None:
    with pytest.raises(ModalityInputError) as exc:
        tokenizer().preprocess(np.zeros((8, 8, 3), np.uint16))
    assert str(exc.value) == (
        "infrared: expected an image array (H, W) or (H, W, 1), got ndarray of shape (8, 8, 3) "
        "and dtype uint16"
    )
    with pytest.raises(ModalityInputError, match=r"^infrared: expected finite pixel values, got 1 NaN/Inf"):
        tokenizer().preprocess(np.array([[1.0, np.nan], [2.0, 3.0]]))
    with pytest.raises(
        ValidationError, match=r"percentiles must satisfy 0 <= low < high <= 100, got \(99.0, 1.0\)"
    ):
        InfraredTokenizer.from_config(percentiles=(99.0, 1.0))


def test_thermal_scenes_hot_objects_match_the_label() -> None:
    source = ThermalScenesDataSource.from_config()
    scene = source.scenes(48, np.random.default_rng(0))
    labels = scene["labels"]
    assert set(labels.tolist()) == {0, 1, 2, 3}
    for hot, label in zip(scene["hot"], labels):
        assert ndimage.label(hot)[1] == label  # one connected blob per hot object, none touching
    excess = scene["temperature"] - scene["ambient"]
    assert np.all(
        excess[scene["hot"]] > 6.0 - 1.5 * np.sqrt(2)
    )  # at least 6 K above the ambient (minus gradient)
    counts, labels2 = source.raw_frames(48, np.random.default_rng(0))
    assert counts.dtype == np.uint16 and int(counts.max()) < 2**14 and np.array_equal(labels, labels2)
    # the hottest pixels of a frame with hot objects lie inside them
    for frame, hot, label in zip(counts, scene["hot"], labels):
        if label:
            assert hot.flat[np.argmax(frame)]


def test_thermal_scenes_splits() -> None:
    source = ThermalScenesDataSource.from_config(num_train=16, num_test=8, max_objects=2)
    splits = source.splits()
    x, y = splits["train"][0]
    assert tuple(x.shape) == (1, 32, 32) and float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert 0 <= int(y) <= 2 and len(splits["test"]) == 8
    assert source.task() == {"type": "classification", "num_classes": 3}
    assert source.baseline() == pytest.approx(1 / 3)


def test_thermal_scenes_splits_are_pinned() -> None:
    splits = ThermalScenesDataSource.from_config(num_train=12, num_test=10).splits()
    assert [int(splits["train"][i][1]) for i in range(8)] == [3, 2, 2, 1, 1, 0, 0, 0]
    assert [int(splits["test"][i][1]) for i in range(8)] == [1, 3, 3, 2, 2, 2, 2, 1]
    assert float(splits["train"][0][0].double().sum()) == pytest.approx(-822.1, abs=0.01)
    assert float(splits["test"][0][0].double().sum()) == pytest.approx(-253.806, abs=0.01)


def test_files_are_read_as_grey_counts(tmp_path: Path) -> None:
    from PIL import Image

    assert InfraredTokenizer.file_extensions == (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
    counts = raw_counts()
    Image.fromarray(counts).save(tmp_path / "frame.tiff")
    config = InfraredTokenizer.default_config()
    read = InfraredTokenizer.read_file(tmp_path / "frame.tiff", config)
    assert read.dtype == np.uint16 and np.array_equal(read, counts)  # 14-bit counts kept
    assert torch.allclose(tokenizer().preprocess(read), tokenizer().preprocess(counts))
    rgb = InfraredTokenizer.config_class(in_chans=3, mean=(0.5,) * 3, std=(0.5,) * 3)
    expected = read_image(tmp_path / "frame.tiff", mode="rgb")
    assert np.array_equal(InfraredTokenizer.read_file(tmp_path / "frame.tiff", rgb), expected)
    two = InfraredTokenizer.config_class(
        in_chans=2, mean=(0.5,) * 2, std=(0.5,) * 2
    )  # RGB (image: as stored)
    assert InfraredTokenizer.read_file(tmp_path / "frame.tiff", two).shape == (*counts.shape, 3)
    assert np.array_equal(InfraredTokenizer.read_file(tmp_path / "frame.tiff", config, mode="rgb"), expected)


def test_thermal_scenes_demo_settings() -> None:
    from polymodal.demo import DemoStream, demo_streams

    demo = ThermalScenesDataSource.demo
    assert demo is not None and demo.fit is None and dict(demo.source) == {}
    assert dict(demo.tokenizer) == {"patch_size": 8, "img_size": 32}  # 32 x 32 frames as 16 patches
    assert dict(demo.head) == {"pool": "mean"}
    assert demo_streams(["infrared"])["infrared"] == DemoStream(
        {"type": "thermal_scenes"}, {"patch_size": 8, "img_size": 32}, {"pool": "mean"}
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda() -> None:
    tok = tokenizer().cuda()
    out = tok(torch.randn(2, 1, 32, 48, device="cuda"))
    assert out.embeddings.device.type == "cuda" and out.num_tokens == 6
    frames = torch.from_numpy(raw_counts().astype(np.int64)).cuda()[None, None]
    assert normalize_thermal(frames, "percentile").device.type == "cuda"
