"""hyperspectral plugin: group-wise spectral tokens against a loop, neighbourhood extraction against a naive
reflect-padded loop, preprocessing, errors, the linear-mixing data sources and their demo settings, cube files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

import polymodal
from polymodal.core.component import ModalityInputError
from polymodal.plugins import hyperspectral
from polymodal.plugins._grid import resample_pos_embed_2d
from polymodal.plugins.hyperspectral import (
    HyperspectralTokenizer,
    MixedPatchesDataSource,
    MixedPixelsDataSource,
    endmember_spectra,
    extract_neighbourhoods,
    read_cube,
)
from polymodal.testing import check_data_source, check_tokenizer


def tokenizer(**overrides: object) -> HyperspectralTokenizer:
    torch.manual_seed(0)
    return HyperspectralTokenizer.from_config(**{"embed_dim": 8, **overrides}).eval()


def reflect(i: int, n: int) -> int:
    """numpy/torch 'reflect' padding index (the edge is not repeated)."""
    if i < 0:
        return -i
    if i >= n:
        return 2 * (n - 1) - i
    return i


def test_discovered_through_entry_point() -> None:
    assert "hyperspectral" in polymodal.list_modalities()
    assert next(p for p in polymodal.list_plugins() if p.name == "hyperspectral").status == "loaded"
    assert polymodal.get("tokenizer", "hyperspectral") is HyperspectralTokenizer
    assert polymodal.get("data source", "mixed_pixels") is MixedPixelsDataSource
    assert polymodal.get("data source", "mixed_patches") is MixedPatchesDataSource


def test_conformance() -> None:
    tokens = check_tokenizer("hyperspectral")
    assert tuple(tokens.embeddings.shape) == (2, 16, 32) and tokens.mask.all()
    assert tokens.meta["grid"] == (16, 1, 1)
    check_data_source("mixed_pixels")
    check_data_source("mixed_patches")


def test_default_token_counts() -> None:
    tok = tokenizer()
    assert tok(torch.zeros(1, 128, 7, 7)).num_tokens == 16  # a 7 x 7 neighbourhood, 128 bands in groups of 8
    assert tok(torch.zeros(1, 128, 14, 14)).num_tokens == 64  # a whole 14 x 14 patch: 2 x 2 cells
    assert tokenizer(band_group=1)(torch.zeros(1, 128, 7, 7)).num_tokens == 128  # one token per band


def test_forward_matches_loop_over_band_groups_and_cells() -> None:
    tok = tokenizer(bands=12, band_group=4, patch_size=3, img_size=6).double()
    x = torch.randn(2, 12, 3, 9, dtype=torch.float64)  # 1 x 3 cells (table: 2 x 2)
    out = tok(x)
    assert tuple(out.embeddings.shape) == (2, 3 * 1 * 3, 8) and out.meta["grid"] == (3, 1, 3)
    spatial = resample_pos_embed_2d(tok.pos_embed_spatial, (1, 3), (2, 2))[0]
    w, b = tok.proj.weight[:, 0], tok.proj.bias  # [D, g, k, k]
    ref = torch.empty(2, 9, 8, dtype=torch.float64)
    for n in range(2):
        for g in range(3):
            for j in range(3):
                block = x[n, 4 * g : 4 * g + 4, :, 3 * j : 3 * j + 3]
                ref[n, g * 3 + j] = (w * block).sum((1, 2, 3)) + b + tok.pos_embed_spectral[0, g] + spatial[j]
    assert torch.allclose(out.embeddings, ref, atol=1e-10)


def test_extract_neighbourhoods_against_a_reflect_padded_loop() -> None:
    cube = torch.randn(4, 6, 5, dtype=torch.float64)
    pixels = torch.tensor([[0, 0], [5, 4], [2, 3], [0, 4], [5, 0], [3, 1]])
    out = extract_neighbourhoods(cube, pixels, 5)
    assert tuple(out.shape) == (6, 4, 5, 5)
    for p, (r, c) in enumerate(pixels.tolist()):
        for a in range(5):
            for b in range(5):
                src = cube[:, reflect(r + a - 2, 6), reflect(c + b - 2, 5)]
                assert torch.equal(out[p, :, a, b], src)
    padded = np.pad(cube.numpy(), ((0, 0), (2, 2), (2, 2)), mode="reflect")  # numpy as a second reference
    for p, (r, c) in enumerate(pixels.tolist()):
        assert np.array_equal(out[p].numpy(), padded[:, r : r + 5, c : c + 5])


def test_preprocess_cube_and_pixel_neighbourhood() -> None:
    bands = 16
    mean = tuple(float(v) for v in np.linspace(100, 250, bands))
    tok = tokenizer(bands=bands, band_group=4, patch_size=3, img_size=3, scale=10.0, mean=mean, std=(2.0,))
    raw = np.random.default_rng(0).integers(0, 5000, (8, 9, bands)).astype(np.uint16)
    out = tok.preprocess(raw)
    ref = (raw.astype(np.float64) / 10.0 - np.array(mean)) / 2.0
    assert tuple(out.shape) == (bands, 8, 9) and np.allclose(out.permute(1, 2, 0).numpy(), ref, atol=1e-4)
    one = tok.preprocess((raw, (0, 8)))  # a corner pixel: reflect padding
    assert tuple(one.shape) == (bands, 3, 3)
    rows, cols = [1, 0, 1], [7, 8, 7]  # reflect(-1) = 1, reflect(9) = 7
    for a in range(3):
        for b in range(3):
            assert torch.allclose(one[:, a, b], out[:, rows[a], cols[b]])
    batch = tok.neighbourhoods(raw, np.array([[0, 8], [4, 4]]))
    assert tuple(batch.shape) == (2, bands, 3, 3) and torch.equal(batch[0], one)
    assert tok(batch).num_tokens == 4


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda t: t.preprocess(np.zeros((8, 8, 100))),
            "hyperspectral: expected a cube (H, W, 128) or a spectrum (128,) of numbers, got "
            "ndarray of shape (8, 8, 100) and dtype float64",
        ),
        (
            lambda t: t.preprocess(np.full((8, 8, 128), np.nan)),
            "hyperspectral: expected finite values, got 8192 "
            "NaN/Inf values in ndarray of shape (8, 8, 128) and dtype float64",
        ),
        (
            lambda t: t.neighbourhoods(np.zeros((8, 8, 128)), [[8, 0]]),
            "hyperspectral: expected pixel positions inside the 8 x 8 cube, got [[8, 0]]",
        ),
        (
            lambda t: t.neighbourhoods(np.zeros((8, 8, 128)), [[1.5, 0.0]]),
            "hyperspectral: expected integer pixel positions (P, 2), got list of 1 items",
        ),
        (
            lambda t: t.neighbourhoods(np.zeros((3, 8, 128)), [[1, 1]]),
            "hyperspectral: expected a cube larger than 3 "
            "pixels on each side for 7 x 7 neighbourhoods, got 3 x 8",
        ),
        (
            lambda t: t(torch.randn(2, 100, 7, 7)),
            "hyperspectral: expected (B, 128, H, W) with H and W divisible by 7, or spectra (B, 128), got (2, 100, 7, 7)",
        ),
        (
            lambda t: t(torch.randn(2, 128, 8, 7)),
            "hyperspectral: expected (B, 128, H, W) with H and W divisible by 7, or spectra (B, 128), got (2, 128, 8, 7)",
        ),
        (
            lambda t: t(torch.randn(2, 7, 7, 128)),
            "hyperspectral: expected (B, 128, H, W) with H and W divisible by 7, or spectra (B, 128), got (2, 7, 7, 128)",
        ),
        (
            lambda t: t(None),
            "hyperspectral: expected a tensor (B, 128, H, W) with H and W divisible by 7, or spectra (B, 128), got NoneType",
        ),
    ],
)
def test_errors(call: object, message: str) -> None:
    with pytest.raises(ModalityInputError) as exc:
        call(tokenizer())  # type: ignore[operator]
    assert str(exc.value) == message


def test_config_errors() -> None:
    assert HyperspectralTokenizer.from_config(bands=100).config.num_groups == 13  # the last group zero-padded
    with pytest.raises(ValidationError, match=r"mean needs 1 or 128 \(bands\) values, got 2"):
        HyperspectralTokenizer.from_config(mean=(0.0, 1.0))


def test_endmember_spectra_are_smooth_and_distinct() -> None:
    spectra = endmember_spectra(8, 64, np.random.default_rng(0), min_angle=0.15)
    assert spectra.shape == (8, 64) and spectra.min() >= 0.02 and spectra.max() <= 0.95
    unit = spectra / np.linalg.norm(spectra, axis=1, keepdims=True)
    angles = np.arccos(np.clip(unit @ unit.T, -1, 1))[~np.eye(8, dtype=bool)]
    assert angles.min() >= 0.15
    # smooth: small second differences when sampled finely (white noise in [0, 1] would give ~1.9)
    fine = endmember_spectra(8, 256, np.random.default_rng(0))
    assert np.abs(np.diff(fine, 2, axis=1)).max() < 0.02


def test_mixed_pixels_labels_are_the_centre_pixel_class() -> None:
    source = MixedPixelsDataSource.from_config(num_train=64, num_test=64, noise=0.0)
    splits = source.splits()
    x, y = splits["test"].tensors
    assert tuple(x.shape) == (64, 128, 7, 7) and x.dtype == torch.float32
    endmembers = endmember_spectra(6, 128, np.random.default_rng(0))  # the source's first draw
    centre = x[:, :, 3, 3].double().numpy() * 0.5 + 0.5  # undo the normalisation
    abundances = np.linalg.lstsq(endmembers.T, centre.T, rcond=None)[0].T  # unmixing the centre spectrum
    assert (abundances.argmax(1) == y.numpy()).mean() > 0.9  # border pixels are mixed
    counts = torch.bincount(y, minlength=6)
    assert source.baseline() == pytest.approx(float(counts.max()) / 64)
    assert source.task() == {"type": "classification", "num_classes": 6}


def test_mixed_patches_labels_are_the_majority_material() -> None:
    source = MixedPatchesDataSource.from_config(num_train=32, num_test=32, noise=0.0)
    x, y = source.splits()["train"].tensors
    assert tuple(x.shape) == (32, 128, 14, 14)
    endmembers = endmember_spectra(6, 128, np.random.default_rng(0))
    pixels = (x.double().numpy() * 0.5 + 0.5).transpose(0, 2, 3, 1).reshape(32, -1, 128)
    abundances = np.linalg.lstsq(endmembers.T, pixels.reshape(-1, 128).T, rcond=None)[0].T
    majority = np.array([np.bincount(a, minlength=6).argmax() for a in abundances.argmax(1).reshape(32, -1)])
    assert np.array_equal(majority, y.numpy())
    assert source.baseline() == pytest.approx(1 / 6)


def test_splits_are_pinned() -> None:
    patches = MixedPatchesDataSource.from_config(num_train=12, num_test=10, bands=32).splits()
    assert [int(patches["train"][i][1]) for i in range(8)] == [5, 5, 4, 5, 5, 0, 0, 5]
    assert [int(patches["test"][i][1]) for i in range(8)] == [5, 2, 3, 5, 5, 5, 0, 0]
    assert float(patches["train"][0][0].double().sum()) == pytest.approx(-1777.817, abs=0.01)
    assert float(patches["test"][0][0].double().sum()) == pytest.approx(-2130.248, abs=0.01)
    pixels = MixedPixelsDataSource.from_config(num_train=12, num_test=10, bands=32).splits()
    assert [int(pixels["train"][i][1]) for i in range(8)] == [3, 5, 3, 1, 2, 2, 4, 3]
    assert [int(pixels["test"][i][1]) for i in range(8)] == [1, 2, 2, 5, 1, 4, 0, 1]
    assert float(pixels["train"][0][0].double().sum()) == pytest.approx(-853.568, abs=0.01)
    assert float(pixels["test"][0][0].double().sum()) == pytest.approx(-170.064, abs=0.01)


def test_demo_settings_are_the_mixed_patches() -> None:
    from polymodal.demo import DemoStream, demo_streams

    demo = MixedPatchesDataSource.demo
    assert demo is not None and demo.fit is None and dict(demo.source) == {}
    assert dict(demo.tokenizer) == {"band_group": 16} and dict(demo.head) == {"pool": "mean"}
    assert MixedPixelsDataSource.demo is None
    assert demo_streams(["hyperspectral"])["hyperspectral"] == DemoStream(
        {"type": "mixed_patches"}, {"band_group": 16}, {"pool": "mean"}
    )


def test_the_package_re_exports_its_parts() -> None:
    from polymodal.plugins.hyperspectral import data, files, neighbourhoods
    from polymodal.plugins.hyperspectral import tokenizer as module

    parts = (data, files, neighbourhoods, module)
    for name in hyperspectral.__all__:
        assert any(getattr(m, name, None) is getattr(hyperspectral, name) for m in parts), name
    assert HyperspectralTokenizer.__module__ == "polymodal.plugins.hyperspectral.tokenizer"


# -- files ---------------------------------------------------------------------------------------------------
def test_cube_formats_read_back_equal(tmp_path: Path) -> None:
    from scipy import io as scipy_io

    cube = np.random.default_rng(4).random((4, 5, 6)).astype(np.float32)
    np.save(tmp_path / "c.npy", cube)
    np.savez(tmp_path / "c.npz", labels=np.zeros(3), cube=cube)
    scipy_io.savemat(tmp_path / "c.mat", {"indian_pines": cube})
    for suffix in ("npy", "npz", "mat"):
        assert np.array_equal(read_cube(tmp_path / f"c.{suffix}"), cube), suffix
    np.savez(tmp_path / "two.npz", a=cube, b=cube[::-1])
    assert np.array_equal(read_cube(tmp_path / "two.npz", key="b"), cube[::-1])
    with pytest.raises(
        ValueError, match=r"two.npz: expected one 3-D array \(or key=...\), found \['a', 'b'\]"
    ):
        read_cube(tmp_path / "two.npz")
    with pytest.raises(KeyError, match=r"c.npz: no array 'x'; it has \['cube', 'labels'\]"):
        read_cube(tmp_path / "c.npz", key="x")
    np.save(tmp_path / "flat.npy", cube[0])
    with pytest.raises(ValueError, match=r"expected a numeric cube \(H, W, bands\), got float32 \(5, 6\)"):
        read_cube(tmp_path / "flat.npy")
    (tmp_path / "c.tif").write_bytes(b"")
    with pytest.raises(ValueError, match=r"read_cube: expected a .npy, .npz or .mat file, got c.tif"):
        read_cube(tmp_path / "c.tif")


def test_file_extensions_and_read_file(tmp_path: Path) -> None:
    assert HyperspectralTokenizer.file_extensions == (".npy", ".npz", ".mat")
    cube = np.random.default_rng(5).integers(0, 10000, (7, 7, 16)).astype(np.uint16)
    np.savez(tmp_path / "scene.npz", a=cube, b=cube[:, :, :8])
    config = HyperspectralTokenizer.config_class(bands=16, scale=10000.0)
    read = HyperspectralTokenizer.read_file(tmp_path / "scene.npz", config, key="a")  # options: read_cube's
    assert read.dtype == np.uint16 and np.array_equal(read, cube)
    np.save(tmp_path / "scene.npy", cube)
    assert np.array_equal(HyperspectralTokenizer.read_file(tmp_path / "scene.npy", config), cube)
    tok = tokenizer(bands=16, scale=10000.0)
    ref = torch.from_numpy((cube.astype(np.float64) / 10000.0 - 0.5) / 0.5).permute(2, 0, 1).float()
    assert torch.allclose(tok.preprocess(read), ref, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda() -> None:
    tok = tokenizer().cuda()
    out = tok(torch.randn(2, 128, 14, 7, device="cuda"))
    assert out.embeddings.device.type == "cuda" and out.num_tokens == 32
    cube = torch.randn(128, 9, 9, device="cuda")
    assert extract_neighbourhoods(cube, torch.tensor([[0, 0]], device="cuda"), 7).device.type == "cuda"


# -- spectra [B, bands] ---------------------------------------------------------------------------------------------
def test_a_spectrum_is_tokenized_as_its_uniform_neighbourhood() -> None:
    tok = HyperspectralTokenizer(
        {"embed_dim": 16, "bands": 24, "band_group": 8, "patch_size": 3, "img_size": 6}
    )
    spectra = torch.randn(2, 24, generator=torch.Generator().manual_seed(0))
    cube = spectra[:, :, None, None].expand(-1, -1, 3, 3).contiguous()
    with torch.no_grad():
        a, b = tok(spectra), tok(cube)
    assert a.embeddings.shape == (2, 3, 16) and a.meta["grid"] == (3, 1, 1) and bool(a.mask.all())
    torch.testing.assert_close(a.embeddings, b.embeddings, atol=1e-5, rtol=1e-5)


def test_bands_not_divisible_by_the_group_are_zero_padded() -> None:
    cfg = {"embed_dim": 8, "bands": 100, "band_group": 8, "patch_size": 1, "img_size": 2}
    tok = HyperspectralTokenizer(cfg)
    assert tok.config.num_groups == 13 and tok.pos_embed_spectral.shape == (1, 13, 8)
    spectra = torch.randn(3, 100, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = tok(spectra).embeddings
        w = tok.proj.weight.sum(dim=(3, 4))[:, 0]  # [D, 8]
        spatial = resample_pos_embed_2d(tok.pos_embed_spatial, (1, 1), (2, 2))[0, 0]
        # the last token: bands 96-99 and four zero bands, which add nothing
        last = spectra[:, 96:] @ w[:, :4].t() + tok.proj.bias + tok.pos_embed_spectral[0, 12] + spatial
    torch.testing.assert_close(out[:, 12], last, atol=1e-5, rtol=1e-5)
    with pytest.raises(
        ModalityInputError, match=r"^hyperspectral: expected .* or spectra \(B, 100\), got \(3, 99\)"
    ):
        tok(torch.randn(3, 99))


def test_raw_spectra_preprocess_and_train_through_array_dataset() -> None:
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    x = rng.normal(0.5, 0.05, (40, 50)) + np.where(y == 1, 0.2, -0.2)[:, None] * np.linspace(0, 1, 50)
    tok = HyperspectralTokenizer(
        {"embed_dim": 8, "bands": 50, "band_group": 8, "patch_size": 1, "img_size": 2}
    )
    assert tok.preprocess(x[0].astype(np.float32)).shape == (50,)
    data = polymodal.ArrayDataset(
        "hyperspectral",
        x.astype(np.float32),
        y,
        tokenizer={"bands": 50, "band_group": 8, "patch_size": 1, "img_size": 2},
    )
    assert data.tokens_per_sample() == 7 and data.task.kind == "classification"
