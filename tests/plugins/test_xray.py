"""xray plugin: windowing and percentile normalisation by hand, default resolution, ellipsoid chords against
geometry, weights from an RGB tokenizer, errors, the nodule-phantom data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import polymodal
from polymodal.core.component import ModalityInputError
from polymodal.plugins._grid import read_image
from polymodal.plugins.image import ImageTokenizer
from polymodal.plugins.xray import (
    NodulePhantomsDataSource,
    XrayTokenizer,
    ellipsoid_chords,
    normalize_radiograph,
)
from polymodal.testing import check_data_source, check_tokenizer


def tokenizer(**overrides: object) -> XrayTokenizer:
    torch.manual_seed(0)
    return XrayTokenizer.from_config(**{"embed_dim": 8, **overrides}).eval()


def radiograph(seed: int = 0, shape: tuple[int, int] = (48, 32)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4096, shape).astype(np.uint16)


def test_discovered_through_entry_point() -> None:
    assert "xray" in polymodal.list_modalities()
    assert next(p for p in polymodal.list_plugins() if p.name == "xray").status == "loaded"
    assert polymodal.get("tokenizer", "xray") is XrayTokenizer
    assert polymodal.get("data source", "nodule_phantoms") is NodulePhantomsDataSource


def test_conformance() -> None:
    tokens = check_tokenizer("xray")
    assert tuple(tokens.embeddings.shape) == (2, 6, 32) and tokens.mask.all()
    check_data_source("nodule_phantoms")


def test_default_resolution_and_token_count() -> None:
    tok = tokenizer()  # keeps each radiograph's size (no up-sampling of small ones)
    x = tok.preprocess(radiograph(0, (256, 320)))
    assert tuple(x.shape) == (1, 256, 320)
    out = tok(x[None])
    assert out.num_tokens == 16 * 20 and out.meta["grid"] == (16, 20)
    assert tok.pos_embed_for(14, 14) is tok.pos_embed  # the table: a 224 / 16 = 14 x 14 grid
    assert tok(torch.zeros(1, 1, 64, 64)).num_tokens == 16
    sized = tokenizer(resize=384)  # a fixed side for files of many sizes
    assert tuple(sized.preprocess(radiograph(0, (250, 300))).shape) == (1, 384, 384)


def test_window_by_hand() -> None:
    raw = np.array([[0, 1000, 1500], [2000, 2500, 4095]], dtype=np.uint16)
    tok = tokenizer(resize=None, normalization="window", window_center=1500.0, window_width=1000.0)
    unit = np.array([[0.0, 0.0, 0.5], [1.0, 1.0, 1.0]])  # clip((v - 1000) / 1000, 0, 1)
    assert np.allclose(tok.preprocess(raw)[0].numpy(), (unit - 0.5) / 0.5)
    inverted = tokenizer(
        resize=None, normalization="window", window_center=1500.0, window_width=1000.0, invert=True
    )
    assert np.allclose(inverted.preprocess(raw)[0].numpy(), (0.5 - unit) / 0.5)
    default = tokenizer(resize=None, normalization="window")  # 12-bit full range: v / 4096
    assert np.allclose(default.preprocess(raw)[0].numpy(), (raw / 4096.0 - 0.5) / 0.5, atol=1e-6)


def test_percentile_by_hand_and_gain_offset_invariance() -> None:
    raw = radiograph(1)
    lo, hi = np.percentile(raw.astype(np.float64), [0.5, 99.5])
    ref = (np.clip((raw - lo) / (hi - lo), 0, 1) - 0.5) / 0.5
    tok = tokenizer(resize=None)
    out = tok.preprocess(raw)
    assert np.allclose(out[0].numpy(), ref, atol=1e-5)
    sixteen_bit = (raw.astype(np.int64) * 15 + 100).astype(np.uint16)  # same image stored as 16-bit
    assert (tok.preprocess(sixteen_bit) - out).abs().max() <= 1e-5
    assert (tok(tok.preprocess(sixteen_bit)[None]).embeddings - tok(out[None]).embeddings).abs().max() <= 1e-5
    batch = normalize_radiograph(
        torch.from_numpy(np.stack([raw, raw // 2]).astype(np.int64))[:, None], "percentile"
    )
    assert torch.allclose(batch[0], batch[1], atol=2e-3)  # per image: halving (with rounding) barely matters


def test_ellipsoid_chords_against_geometry() -> None:
    coords = np.linspace(-1, 1, 41)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    sphere = ellipsoid_chords(
        yy, xx, np.array([[0.0, 0.0]]), np.array([[0.5, 0.5]]), np.array([0.5]), np.zeros(1)
    )
    assert sphere[0, 20, 20] == pytest.approx(1.0)  # the diameter through the centre
    assert sphere[0, 20, 26] == pytest.approx(2 * math.sqrt(0.25 - 0.3**2), abs=1e-6)
    assert sphere[0, 0, 0] == 0.0
    # a rotated ellipse against a per-pixel loop
    center, axes, depth, angle = (
        np.array([[0.1, -0.2]]),
        np.array([[0.6, 0.2]]),
        np.array([0.3]),
        np.array([0.7]),
    )
    out = ellipsoid_chords(yy, xx, center, axes, depth, angle)[0]
    for i in range(0, 41, 5):
        for j in range(0, 41, 3):
            dy, dx = yy[i, j] - 0.1, xx[i, j] + 0.2
            u = (math.cos(0.7) * dy - math.sin(0.7) * dx) / 0.6
            v = (math.sin(0.7) * dy + math.cos(0.7) * dx) / 0.2
            assert out[i, j] == pytest.approx(0.6 * math.sqrt(max(0.0, 1 - u * u - v * v)), abs=1e-6)


def test_single_channel_from_rgb_weights() -> None:
    rgb = ImageTokenizer.from_config(embed_dim=8, img_size=64).eval()
    tok = tokenizer().load_patch_embed(rgb)
    assert tok.pos_embed.shape == (1, 196, 8)  # the 4 x 4 grid resampled to 14 x 14
    x = torch.randn(1, 1, 32, 32)
    assert torch.allclose(tok.proj(x), rgb.proj(x.expand(-1, 3, -1, -1)), atol=1e-5)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (
            torch.randn(2, 1, 40, 32),
            "xray: expected (B, 1, H, W) with H and W divisible by 16, got (2, 1, 40, 32)",
        ),
        (
            torch.randn(2, 3, 32, 32),
            "xray: expected (B, 1, H, W) with H and W divisible by 16, got (2, 3, 32, 32)",
        ),
        (
            torch.full((1, 1, 16, 16), float("nan")),
            "xray: expected finite values (B, 1, H, W) with H and W divisible "
            "by 16, got 256 NaN/Inf values in tensor of shape (1, 1, 16, 16) and dtype float32",
        ),
        (
            torch.zeros(0, 1, 16, 16),
            "xray: expected a non-empty batch (B, 1, H, W) with H and W divisible by 16, got "
            "tensor of shape (0, 1, 16, 16) and dtype float32",
        ),
    ],
)
def test_forward_errors(batch: object, message: str) -> None:
    with pytest.raises(ModalityInputError) as exc:
        tokenizer()(batch)
    assert str(exc.value) == message


def test_preprocess_errors() -> None:
    with pytest.raises(ModalityInputError) as exc:
        tokenizer().preprocess(np.zeros((2, 8, 8), np.uint16))
    assert str(exc.value) == (
        "xray: expected an image array (H, W) or (H, W, 1), got ndarray of shape (2, 8, 8) and dtype uint16"
    )
    with pytest.raises(ModalityInputError, match=r"^xray: expected a PIL image, a numpy array"):
        tokenizer().preprocess([[1, 2], [3, 4]])


def test_nodule_phantoms_data() -> None:
    source = NodulePhantomsDataSource.from_config(num_train=64, num_test=32)
    values, labels = source.raw_radiographs(64, np.random.default_rng(0))
    assert values.dtype == np.uint16 and values.shape == (64, 64, 64) and int(values.max()) <= 4095
    assert 20 < labels.sum() < 44
    # the phantom is brighter (denser) in the middle than outside the body, where nothing attenuates
    assert np.all(values[:, 28:36, 28:36].mean((1, 2)) > values[:, :3, :3].mean((1, 2)) + 500)
    # a nodule adds a compact bright bump: the same phantom with and without one differs there only
    with_nodule = NodulePhantomsDataSource.from_config(nodule_fraction=0.999, photons=1e12)
    without = NodulePhantomsDataSource.from_config(nodule_fraction=0.001, photons=1e12)
    a, la = with_nodule.raw_radiographs(4, np.random.default_rng(1))
    b, lb = without.raw_radiographs(4, np.random.default_rng(1))
    assert la.tolist() == [1, 1, 1, 1] and lb.tolist() == [0, 0, 0, 0]
    diff = a.astype(np.int64) - b.astype(np.int64)
    assert np.all(diff >= 0) and np.all(diff.max((1, 2)) > 100)
    assert np.all((diff > 0).sum((1, 2)) < 0.05 * 64 * 64)  # a small region
    splits = source.splits()
    x, y = splits["train"][0]
    assert (
        int(y) in (0, 1)
        and tuple(x.shape) == (1, 64, 64)
        and float(x.min()) == -1.0
        and float(x.max()) == 1.0
    )
    assert source.task() == {"type": "classification", "num_classes": 2} and source.baseline() == 0.5


def test_nodule_phantoms_splits_are_pinned() -> None:
    splits = NodulePhantomsDataSource.from_config(num_train=12, num_test=10, image_size=32).splits()
    assert [int(splits["train"][i][1]) for i in range(8)] == [0, 0, 0, 1, 0, 0, 0, 1]
    assert [int(splits["test"][i][1]) for i in range(8)] == [0, 0, 0, 0, 1, 0, 1, 1]
    assert float(splits["train"][0][0].double().sum()) == pytest.approx(-585.353, abs=0.01)
    assert float(splits["test"][0][0].double().sum()) == pytest.approx(-519.829, abs=0.01)


def test_files_are_read_as_grey_at_full_depth(tmp_path: Path) -> None:
    from PIL import Image

    assert XrayTokenizer.file_extensions == (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
    values = radiograph()
    Image.fromarray(values).save(tmp_path / "chest.png")
    config = XrayTokenizer.default_config()
    read = XrayTokenizer.read_file(tmp_path / "chest.png", config)
    assert read.dtype == np.uint16 and np.array_equal(read, values)  # 12-bit data kept
    assert torch.allclose(tokenizer().preprocess(read), tokenizer().preprocess(values))
    rgb = XrayTokenizer.config_class(in_chans=3, mean=(0.5,) * 3, std=(0.5,) * 3)
    expected = read_image(tmp_path / "chest.png", mode="rgb")
    assert np.array_equal(XrayTokenizer.read_file(tmp_path / "chest.png", rgb), expected)
    two = XrayTokenizer.config_class(in_chans=2, mean=(0.5,) * 2, std=(0.5,) * 2)  # RGB (image: as stored)
    assert XrayTokenizer.read_file(tmp_path / "chest.png", two).shape == (*values.shape, 3)
    assert np.array_equal(XrayTokenizer.read_file(tmp_path / "chest.png", config, mode="rgb"), expected)


def test_nodule_phantoms_demo_settings() -> None:
    from polymodal.demo import DemoStream, demo_streams

    demo = NodulePhantomsDataSource.demo
    assert demo is not None and demo.fit is None
    # 32 x 32 radiographs kept at their size; nodules large enough to learn in the demo's budget
    assert dict(demo.source) == {"image_size": 32, "nodule_radius": (0.2, 0.3)}
    assert dict(demo.tokenizer) == {"patch_size": 8, "img_size": 32, "resize": None}
    assert dict(demo.head) == {"pool": "mean"}
    assert demo_streams(["xray"])["xray"] == DemoStream(
        {"type": "nodule_phantoms", "image_size": 32, "nodule_radius": (0.2, 0.3)},
        {"patch_size": 8, "img_size": 32, "resize": None},
        {"pool": "mean"},
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda() -> None:
    tok = tokenizer().cuda()
    out = tok(torch.randn(2, 1, 64, 48, device="cuda"))
    assert out.embeddings.device.type == "cuda" and out.num_tokens == 12
    raw = torch.from_numpy(radiograph().astype(np.int64)).cuda()
    assert normalize_radiograph(raw[None], "percentile").device.type == "cuda"
