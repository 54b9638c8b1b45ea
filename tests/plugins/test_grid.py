"""polymodal.plugins._grid: patch-embedding reuse (timm's adapt_input_conv idea, timm ViT state dicts), tubelets
against conv3d, intensity scalers against numpy, image files read back to the values written; a shared module that
imports no plugin and is no plugin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from polymodal.core.component import ModalityInputError
from polymodal.plugins._grid import (
    IMAGE_EXTENSIONS,
    PatchEmbedState,
    adapt_patch_embed,
    embed_tubelets,
    image_to_chw,
    minmax_scale,
    patch_embed_state,
    percentile_scale,
    quantiles,
    read_image,
    resample_pos_embed_2d,
    window_scale,
)

RNG = np.random.default_rng(0)


def test_a_shared_module_that_imports_no_plugin_and_is_none() -> None:
    code = (
        "import sys, polymodal.plugins._grid as g; "
        "print(sorted(m for m in sys.modules if m.startswith('polymodal.plugins.')), "
        "hasattr(g, 'polymodal_components'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['polymodal.plugins._grid'] False"
    assert IMAGE_EXTENSIONS == (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


# -- patch embeddings ----------------------------------------------------------------------------------------
def test_adapt_patch_embed_one_channel_sums_and_more_channels_repeat_and_rescale() -> None:
    w = torch.randn(4, 3, 2, 2)
    one = adapt_patch_embed(w, 1)
    assert torch.equal(one, w.sum(1, keepdim=True))
    grey = torch.randn(1, 1, 4, 4)
    assert torch.allclose(
        F.conv2d(grey, one, stride=2), F.conv2d(grey.expand(-1, 3, -1, -1), w, stride=2), atol=1e-6
    )
    five = adapt_patch_embed(w, 5)
    assert torch.allclose(five, torch.cat([w, w[:, :2]], 1) * 3 / 5)
    six = adapt_patch_embed(w, 6)  # a multiple of 3: a grey image gives the same response
    assert torch.allclose(
        F.conv2d(grey.expand(-1, 6, -1, -1), six, stride=2),
        F.conv2d(grey.expand(-1, 3, -1, -1), w, stride=2),
        atol=1e-5,
    )
    assert adapt_patch_embed(w, 3) is w
    w3d = torch.randn(4, 3, 2, 2, 2)  # Conv3d weights work too
    assert torch.equal(adapt_patch_embed(w3d, 1), w3d.sum(1, keepdim=True))
    with pytest.raises(ValueError, match=r"expected a conv weight \[D, C, \*kernel\], got shape \(4, 3\)"):
        adapt_patch_embed(torch.zeros(4, 3), 1)
    with pytest.raises(ValueError, match="in_chans must be positive, got 0"):
        adapt_patch_embed(w, 0)


def test_resample_pos_embed_2d_is_bicubic_antialiased_and_the_identity_on_its_grid() -> None:
    pos = torch.randn(1, 16, 8)
    assert resample_pos_embed_2d(pos, (4, 4), (4, 4)) is pos
    grid = pos.reshape(1, 4, 4, 8).permute(0, 3, 1, 2)
    ref = (
        F.interpolate(grid, size=(3, 5), mode="bicubic", antialias=True).permute(0, 2, 3, 1).reshape(1, 15, 8)
    )
    assert torch.allclose(resample_pos_embed_2d(pos, (3, 5), (4, 4)), ref, atol=1e-6)


def test_patch_embed_state_from_state_dicts() -> None:
    weight, bias = torch.randn(8, 3, 4, 4), torch.randn(8)
    pos = torch.randn(1, 1 + 9, 8)  # a timm ViT's: [CLS] first, then a 3 x 3 grid
    timm_state = {"patch_embed.proj.weight": weight, "patch_embed.proj.bias": bias, "pos_embed": pos}
    state = patch_embed_state(timm_state)
    assert isinstance(state, PatchEmbedState) and state.grid == (3, 3)
    assert state.weight is weight and state.bias is bias and torch.equal(state.pos_embed, pos[:, 1:])
    ours = patch_embed_state({"proj.weight": weight, "pos_embed": pos[:, 1:]})  # no [CLS], no bias
    assert ours.bias is None and ours.grid == (3, 3) and torch.equal(ours.pos_embed, pos[:, 1:])
    assert patch_embed_state({"proj.weight": weight}) == PatchEmbedState(weight, None, None, None)
    with pytest.raises(ValueError, match="pos_embed with 7 positions is neither a square grid"):
        patch_embed_state({"proj.weight": weight, "pos_embed": torch.zeros(1, 7, 8)})
    with pytest.raises(
        ValueError, match=r"expected a Conv2d patch-embedding weight \[D, C, p, p\], got shape"
    ):
        patch_embed_state({"proj.weight": torch.zeros(8, 3, 2, 4, 4)})
    with pytest.raises(KeyError, match="no patch embedding in the state dict"):
        patch_embed_state({"blocks.0.norm1.weight": torch.zeros(8)})


def test_patch_embed_state_from_a_tokenizer_that_gives_its_own() -> None:
    import polymodal

    torch.manual_seed(0)
    image = polymodal.get("tokenizer", "image").from_config(embed_dim=8, patch_size=4, img_size=12)
    state = patch_embed_state(image)
    assert state.grid == (3, 3) and torch.equal(state.weight, image.proj.weight)
    assert torch.equal(state.bias, image.proj.bias) and torch.equal(state.pos_embed, image.pos_embed)
    assert not state.weight.requires_grad  # detached

    class Own:  # any object with a patch_embed_state() method (a third party's 2-D tokenizer)
        def patch_embed_state(self) -> PatchEmbedState:
            return PatchEmbedState(torch.ones(2, 1, 2, 2), None, None, None)

    assert torch.equal(patch_embed_state(Own()).weight, torch.ones(2, 1, 2, 2))
    video = polymodal.get("tokenizer", "video").from_config(embed_dim=8)  # a tubelet embedding is no 2-D one
    with pytest.raises(TypeError, match="expected an ImageTokenizer or a state dict, got VideoTokenizer"):
        patch_embed_state(video)


def test_embed_tubelets_equals_conv3d() -> None:
    x = torch.randn(2, 3, 4, 8, 12, dtype=torch.float64)
    w = torch.randn(5, 3, 2, 4, 4, dtype=torch.float64)
    b = torch.randn(5, dtype=torch.float64)
    ref = F.conv3d(x, w, b, stride=(2, 4, 4)).permute(0, 2, 3, 4, 1)
    assert torch.allclose(embed_tubelets(x, w, b), ref, atol=1e-12)
    assert torch.allclose(embed_tubelets(x, w, None), ref - b, atol=1e-12)


# -- images in -----------------------------------------------------------------------------------------------
def test_image_to_chw_dtypes_and_channels() -> None:
    grey16 = np.array([[0, 4095], [65535, 7]], dtype=np.uint16)
    out = image_to_chw(grey16, 1)
    assert out.dtype == torch.int64 and out.tolist() == [[[0, 4095], [65535, 7]]]
    rgb = image_to_chw(np.zeros((2, 3), np.uint8), 3)  # grey repeated over RGB
    assert rgb.dtype == torch.uint8 and tuple(rgb.shape) == (3, 2, 3)
    pil16 = Image.fromarray(grey16)  # mode I;16: values kept for one channel
    assert torch.equal(image_to_chw(pil16, 1), out)
    with pytest.raises(ModalityInputError, match=r"^xray: expected an image array \(H, W\) or \(H, W, 1\)"):
        image_to_chw(np.zeros((2, 2, 3), np.uint8), 1, "xray")


def test_png_reads_back_the_written_pixels(tmp_path: Path) -> None:
    rgb = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and np.array_equal(out, rgb)
    grey = read_image(tmp_path / "a.png", mode="gray")
    assert grey.shape == (5, 7) and np.array_equal(grey, np.asarray(Image.fromarray(rgb).convert("L")))
    rgba = np.concatenate([rgb, np.full((5, 7, 1), 128, np.uint8)], axis=-1)
    Image.fromarray(rgba).save(tmp_path / "b.png")
    assert np.array_equal(read_image(tmp_path / "b.png"), rgb)  # alpha dropped
    with pytest.raises(ValueError, match="read_image: mode must be None, 'gray' or 'rgb', got 'RGB'"):
        read_image(tmp_path / "a.png", mode="RGB")


@pytest.mark.parametrize("suffix", [".png", ".tiff"])
def test_16_bit_greyscale_keeps_its_depth(tmp_path: Path, suffix: str) -> None:
    values = np.array([[0, 255, 256, 4095], [30000, 65535, 1, 1000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / f"x{suffix}")
    out = read_image(tmp_path / f"x{suffix}")
    assert out.dtype == np.uint16 and np.array_equal(out, values)
    assert np.array_equal(read_image(tmp_path / f"x{suffix}", mode="gray"), values)
    rgb = read_image(tmp_path / f"x{suffix}", mode="rgb")  # scaled to 8 bits, not clipped at 255
    expected = np.round(values.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert rgb.shape == (2, 4, 3) and np.array_equal(rgb[..., 1], expected)


def test_float_and_bilevel_greyscale(tmp_path: Path) -> None:
    values = np.array([[0.0, 0.25], [1.0, 2.0]], dtype=np.float32)
    Image.fromarray(values).save(tmp_path / "f.tiff")
    out = read_image(tmp_path / "f.tiff")
    assert out.dtype == np.float32 and np.array_equal(out, values)
    rgb = read_image(tmp_path / "f.tiff", mode="rgb")  # floats taken as [0, 1]
    assert rgb[..., 0].tolist() == [[0, 64], [255, 255]]
    Image.fromarray(np.array([[True, False]])).save(tmp_path / "b.png")
    assert read_image(tmp_path / "b.png").tolist() == [[255, 0]]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "r.png", exif=exif)
    assert np.array_equal(read_image(tmp_path / "r.png"), np.rot90(pixels, k=-1))


# -- intensity scaling ---------------------------------------------------------------------------------------
def test_intensity_scalers_against_numpy() -> None:
    x = torch.from_numpy(np.random.default_rng(2).normal(size=(2, 3, 7, 5)) * 100)
    q = torch.tensor([0.0, 0.013, 0.5, 0.99, 1.0], dtype=torch.float64)
    ref = np.percentile(x.flatten(-2).numpy(), q.numpy() * 100, axis=-1).transpose(1, 2, 0)
    assert np.allclose(quantiles(x.flatten(-2), q).numpy(), ref, atol=1e-9)
    lo, hi = np.percentile(x[1, 2].numpy(), [2, 98])
    ref = np.clip((x[1, 2].numpy() - lo) / (hi - lo), 0, 1)
    assert np.allclose(percentile_scale(x, 2, 98)[1, 2].numpy(), ref, atol=1e-9)
    unclipped = percentile_scale(x, 2, 98, clip=False)[1, 2].numpy()
    assert np.allclose(unclipped, (x[1, 2].numpy() - lo) / (hi - lo), atol=1e-9) and unclipped.max() > 1
    ch = x[0, 1]
    assert torch.allclose(minmax_scale(x)[0, 1], (ch - ch.min()) / (ch.max() - ch.min()))
    assert torch.equal(minmax_scale(torch.full((1, 2, 2), 7.0)), torch.zeros(1, 2, 2))  # constant -> 0
    vals = torch.tensor([0.0, 1000.0, 1500.0, 2000.0, 5000.0])
    assert window_scale(vals, center=1500.0, width=1000.0).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
