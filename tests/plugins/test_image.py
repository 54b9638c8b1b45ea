"""image plugin: patch embedding against a loop, positional resampling, preprocessing of every input form,
weights from timm ViT state dicts, errors, files, the digits data and its demo settings; the shared grid helpers
are tested in test_grid.py and re-exported here."""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

import polymodal
from polymodal.core.component import ModalityInputError
from polymodal.plugins import _grid, image
from polymodal.plugins.image import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DigitsDataSource,
    ImageTokenizer,
    patch_embed_state,
    read_image,
    resample_pos_embed_2d,
)
from polymodal.testing import check_data_source, check_tokenizer


def tokenizer(**overrides: object) -> ImageTokenizer:
    torch.manual_seed(0)
    return ImageTokenizer.from_config(**{"embed_dim": 8, **overrides}).eval()


def naive_patch_tokens(tok: ImageTokenizer, x: torch.Tensor) -> torch.Tensor:
    """Tokens by an explicit loop over patches: weight · patch + bias + the positional entry."""
    p = tok.config.patch_size
    b, _, h, w = x.shape
    gh, gw = h // p, w // p
    pos = tok.pos_embed_for(gh, gw)[0]
    out = torch.empty(b, gh * gw, tok.embed_dim, dtype=x.dtype)
    for n in range(b):
        for i in range(gh):
            for j in range(gw):
                patch = x[n, :, i * p : (i + 1) * p, j * p : (j + 1) * p]
                out[n, i * gw + j] = (
                    (tok.proj.weight * patch).sum((1, 2, 3)) + tok.proj.bias + pos[i * gw + j]
                )
    return out


def test_discovered_through_entry_point() -> None:
    assert "image" in polymodal.list_modalities()
    assert next(p for p in polymodal.list_plugins() if p.name == "image").status == "loaded"
    assert polymodal.get("tokenizer", "image") is ImageTokenizer
    assert polymodal.get("data source", "digits") is DigitsDataSource


def test_conformance() -> None:
    tokens = check_tokenizer("image")
    assert tuple(tokens.embeddings.shape) == (2, 6, 32) and tokens.mask.all()
    assert tokens.meta["grid"] == (2, 3)
    check_data_source("digits")


def test_forward_matches_loop_over_patches_on_a_non_square_input() -> None:
    tok = tokenizer(patch_size=4, img_size=16).double()
    x = torch.randn(2, 3, 8, 12, dtype=torch.float64)
    out = tok(x)
    assert tuple(out.embeddings.shape) == (2, 6, 8) and out.meta["grid"] == (2, 3)
    assert torch.allclose(out.embeddings, naive_patch_tokens(tok, x), atol=1e-10)


def test_default_token_counts() -> None:
    tok = tokenizer()
    assert tok(torch.zeros(1, 3, 224, 224)).num_tokens == 196
    assert tok(torch.zeros(1, 3, 384, 224)).num_tokens == 24 * 14


def test_pos_embed_is_the_parameter_at_the_native_grid_and_resampled_elsewhere() -> None:
    tok = tokenizer(patch_size=4, img_size=16)
    assert tok.pos_embed_for(4, 4) is tok.pos_embed
    x = torch.randn(1, 3, 16, 16)
    proj = tok.proj(x).flatten(2).transpose(1, 2)
    assert torch.allclose(tok(x).embeddings, proj + tok.pos_embed, atol=1e-6)
    # a 3 x 5 grid: bicubic, antialiased resampling of the 4 x 4 table (reference: F.interpolate directly)
    grid = tok.pos_embed.detach().reshape(1, 4, 4, 8).permute(0, 3, 1, 2)
    ref = (
        F.interpolate(grid, size=(3, 5), mode="bicubic", antialias=True).permute(0, 2, 3, 1).reshape(1, 15, 8)
    )
    assert torch.allclose(tok.pos_embed_for(3, 5), ref, atol=1e-6)
    assert torch.allclose(resample_pos_embed_2d(tok.pos_embed, (3, 5), (4, 4)), ref, atol=1e-6)
    assert tok(torch.randn(2, 3, 12, 20)).num_tokens == 15


def expected_normalised(pixels: np.ndarray) -> torch.Tensor:
    """Hand computation: ``(v / 255 - mean) / std`` per channel of an ``HWC`` uint8 array, as ``CHW``."""
    out = np.empty((3, *pixels.shape[:2]), dtype=np.float64)
    for ch in range(3):
        out[ch] = (pixels[..., ch] / 255.0 - IMAGENET_MEAN[ch]) / IMAGENET_STD[ch]
    return torch.from_numpy(out).float()


def test_preprocess_every_input_form_against_hand_computation() -> None:
    from PIL import Image

    tok = tokenizer()
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    ref = expected_normalised(pixels)
    forms = {
        "pil": Image.fromarray(pixels),
        "hwc_uint8": pixels,
        "hwc_float": pixels.astype(np.float64) / 255.0,
        "chw_uint8_tensor": torch.from_numpy(pixels).permute(2, 0, 1),
        "chw_float_tensor": torch.from_numpy(pixels).permute(2, 0, 1).double() / 255.0,
    }
    for name, raw in forms.items():
        out = tok.preprocess(raw)
        assert out.dtype == torch.float32 and tuple(out.shape) == (3, 5, 7), name
        assert torch.allclose(out, ref, atol=1e-5), name
    # grey input is repeated over RGB; a PIL image in another mode is converted to RGB
    grey = pixels[..., 0]
    assert torch.allclose(
        tok.preprocess(grey), expected_normalised(np.repeat(grey[..., None], 3, -1)), atol=1e-5
    )
    assert torch.allclose(tok.preprocess(Image.fromarray(grey)), tok.preprocess(grey), atol=1e-6)
    rgba = Image.fromarray(np.concatenate([pixels, np.full((5, 7, 1), 255, np.uint8)], -1))
    assert torch.allclose(tok.preprocess(rgba), ref, atol=1e-5)
    # a one-channel tokenizer keeps grey values
    one = tokenizer(in_chans=1, mean=(0.5,), std=(0.25,))
    ref = torch.from_numpy((grey / 255.0 - 0.5) / 0.25).float()[None]
    assert torch.allclose(one.preprocess(grey), ref, atol=1e-5)


def test_preprocess_resize_and_collate() -> None:
    tok = tokenizer(resize=32)
    flat = np.full((50, 70, 3), 128, dtype=np.uint8)
    out = tok.preprocess(flat)
    assert tuple(out.shape) == (3, 32, 32)
    assert torch.allclose(out, expected_normalised(flat[:32, :32]), atol=1e-5)  # constant stays constant
    batch = tok.collate([out, out])
    assert tuple(batch.shape) == (2, 3, 32, 32) and tok(batch).num_tokens == 4
    with pytest.raises(ModalityInputError, match=r"^image: expected samples of one shape to stack"):
        tok.collate([out, out[:, :16]])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            np.zeros((4, 4, 4), np.uint8),
            "image: expected an image array (H, W) or (H, W, 3), got ndarray of shape "
            "(4, 4, 4) and dtype uint8",
        ),
        (
            np.zeros((4, 4, 3), np.uint16),
            "image: expected uint8 or float pixels, got ndarray of shape (4, 4, 3) and dtype uint16",
        ),
        (
            np.full((4, 4, 3), np.nan),
            "image: expected finite pixel values, got 48 NaN/Inf values in ndarray of shape "
            "(4, 4, 3) and dtype float64",
        ),
        (
            torch.zeros(2, 3, 4, 4),
            "image: expected an image tensor (H, W) or (3, H, W), got tensor of shape "
            "(2, 3, 4, 4) and dtype float32",
        ),
        (
            np.zeros((4, 4, 3), bool),
            "image: expected integer or float pixels, got ndarray of shape (4, 4, 3) and dtype bool",
        ),
        ("image.png", "image: expected a PIL image, a numpy array (H, W, C) or a tensor (C, H, W), got str"),
    ],
)
def test_preprocess_errors(raw: object, message: str) -> None:
    with pytest.raises(ModalityInputError) as exc:
        tokenizer().preprocess(raw)
    assert str(exc.value) == message


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (
            torch.randn(2, 3, 30, 32),
            "image: expected (B, 3, H, W) with H and W divisible by 16, got (2, 3, 30, 32)",
        ),
        (
            torch.randn(2, 1, 32, 32),
            "image: expected (B, 3, H, W) with H and W divisible by 16, got (2, 1, 32, 32)",
        ),
        (
            torch.randn(3, 32, 32),
            "image: expected a tensor (B, 3, H, W) with H and W divisible by 16, got tensor of "
            "shape (3, 32, 32) and dtype float32",
        ),
        (
            torch.zeros(2, 3, 32, 32, dtype=torch.uint8),
            "image: expected a floating-point tensor (B, 3, H, W) with H "
            "and W divisible by 16, got tensor of shape (2, 3, 32, 32) and dtype uint8",
        ),
        (
            torch.zeros(0, 3, 32, 32),
            "image: expected a non-empty batch (B, 3, H, W) with H and W divisible by 16, "
            "got tensor of shape (0, 3, 32, 32) and dtype float32",
        ),
        (
            torch.full((1, 3, 16, 16), float("inf")),
            "image: expected finite values (B, 3, H, W) with H and W "
            "divisible by 16, got 768 NaN/Inf values in tensor of shape (1, 3, 16, 16) and dtype float32",
        ),
        (None, "image: expected a tensor (B, 3, H, W) with H and W divisible by 16, got NoneType"),
    ],
)
def test_forward_errors(batch: object, message: str) -> None:
    with pytest.raises(ModalityInputError) as exc:
        tokenizer()(batch)
    assert str(exc.value) == message


def test_config_errors() -> None:
    with pytest.raises(ValidationError, match="mean and std need 1 values \\(in_chans\\), got 3 and 3"):
        ImageTokenizer.from_config(in_chans=1)
    with pytest.raises(ValidationError, match="img_size 100 is not divisible by patch_size 16"):
        ImageTokenizer.from_config(img_size=100)
    with pytest.raises(ValidationError, match="resize\n  Input should be greater than 0"):
        ImageTokenizer.from_config(resize=0)


def test_load_patch_embed_from_a_timm_vit_state_dict() -> None:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(1)
    vit = VisionTransformer(
        img_size=32, patch_size=8, embed_dim=8, depth=1, num_heads=2, num_classes=0
    ).eval()
    state = vit.state_dict()
    assert patch_embed_state(state).grid == (4, 4)  # the [CLS] position is dropped
    tok = tokenizer(patch_size=8, img_size=32).load_patch_embed(state)
    x = torch.randn(2, 3, 32, 32)
    ref = vit.patch_embed(x) + vit.pos_embed[:, 1:]
    assert torch.allclose(tok(x).embeddings, ref, atol=1e-6)
    # a different grid resamples the positions; a different patch size resamples the filters
    bigger = tokenizer(patch_size=8, img_size=64).load_patch_embed(state)
    assert torch.allclose(bigger.pos_embed, resample_pos_embed_2d(vit.pos_embed[:, 1:], (8, 8), (4, 4)))
    assert tuple(tokenizer(patch_size=4, img_size=32).load_patch_embed(state).proj.weight.shape) == (
        8,
        3,
        4,
        4,
    )
    with pytest.raises(ValueError, match="image: source width 8 differs from embed_dim 16"):
        ImageTokenizer.from_config(embed_dim=16, patch_size=8, img_size=32).load_patch_embed(state)
    with pytest.raises(KeyError, match="no patch embedding in the state dict"):
        tok.load_patch_embed({"blocks.0.norm1.weight": torch.zeros(8)})


SHARED = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "PatchEmbedState",
    "adapt_patch_embed",
    "embed_tubelets",
    "image_to_chw",
    "minmax_scale",
    "patch_embed_state",
    "percentile_scale",
    "quantiles",
    "read_image",
    "resample_pos_embed_2d",
    "window_scale",
]


def test_the_shared_grid_helpers_are_re_exported() -> None:
    for name in SHARED:
        assert getattr(image, name) is getattr(_grid, name), name
        assert name in image.__all__ and name in _grid.__all__, name
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)


def test_own_patch_embed_state_round_trips_through_load_patch_embed() -> None:
    src = tokenizer(patch_size=4, img_size=16)
    state = src.patch_embed_state()
    assert state.grid == (4, 4) and state.weight.data_ptr() == src.proj.weight.data_ptr()
    assert not state.weight.requires_grad and state.pos_embed.data_ptr() == src.pos_embed.data_ptr()
    assert patch_embed_state(src).grid == (4, 4)
    dst = ImageTokenizer.from_config(embed_dim=8, patch_size=4, img_size=16).load_patch_embed(src)
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(dst(x).embeddings, src(x).embeddings, atol=1e-6)


def test_file_extensions_and_read_file(tmp_path: Path) -> None:
    from PIL import Image

    assert ImageTokenizer.file_extensions == (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
    rgb = np.random.default_rng(3).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    grey16 = np.array([[0, 4095, 65535], [1, 2, 3]], dtype=np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g.png")
    config = ImageTokenizer.default_config()
    assert np.array_equal(ImageTokenizer.read_file(tmp_path / "c.png", config), rgb)  # RGB for 3 channels
    grey_as_rgb = ImageTokenizer.read_file(tmp_path / "g.png", config)
    assert grey_as_rgb.shape == (2, 3, 3) and np.array_equal(
        grey_as_rgb, read_image(tmp_path / "g.png", mode="rgb")
    )
    one = ImageTokenizer.config_class(in_chans=1, mean=(0.5,), std=(0.5,))
    assert np.array_equal(ImageTokenizer.read_file(tmp_path / "g.png", one), grey16)  # grey, full depth
    assert np.array_equal(
        ImageTokenizer.read_file(tmp_path / "c.png", one), read_image(tmp_path / "c.png", mode="gray")
    )
    two = ImageTokenizer.config_class(in_chans=2, mean=(0.5, 0.5), std=(0.5, 0.5))
    assert ImageTokenizer.read_file(tmp_path / "g.png", two).dtype == np.uint16  # as stored
    assert np.array_equal(ImageTokenizer.read_file(tmp_path / "c.png", one, mode=None), rgb)  # options win
    out = ImageTokenizer.from_config(embed_dim=8, resize=16).preprocess(
        ImageTokenizer.read_file(tmp_path / "c.png", config)
    )
    assert tuple(out.shape) == (3, 16, 16)
    worker = pickle.loads(pickle.dumps(functools.partial(ImageTokenizer.read_file, config=one)))  # DataLoader
    assert np.array_equal(worker(tmp_path / "g.png"), grey16)


def test_no_table_form_and_no_data_rules() -> None:
    assert (
        ImageTokenizer.dataset_from_table(None, modality="image", target="y", columns=None, tokenizer=None)
        is None
    )
    assert ImageTokenizer.implied_task(np.zeros(3, dtype=np.float32)) is None
    assert ImageTokenizer.config_for_data(np.zeros((2, 3, 8, 8)), "classification", ()) == {}


def test_digits_demo_settings() -> None:
    from polymodal.demo import DemoStream, demo_streams

    demo = DigitsDataSource.demo
    assert demo is not None and demo.fit is None
    assert dict(demo.source) == {"image_size": 16}  # 16 x 16 digits as 4 patches of 8 x 8
    assert dict(demo.tokenizer) == {"patch_size": 8, "img_size": 16}
    assert dict(demo.head) == {"pool": "mean"}
    assert demo_streams(["image"])["image"] == DemoStream(
        {"type": "digits", "image_size": 16}, {"patch_size": 8, "img_size": 16}, {"pool": "mean"}
    )


def test_digits_source() -> None:
    source = DigitsDataSource.from_config(num_train=100, num_test=50, image_size=16)
    splits = source.splits()
    x, y = splits["train"][0]
    assert tuple(x.shape) == (3, 16, 16) and 0 <= int(y) < 10
    assert len(splits["train"]) == 100 and len(splits["test"]) == 50
    assert source.task() == {"type": "classification", "num_classes": 10} and source.baseline() == 0.1


def test_digits_splits_are_pinned() -> None:
    splits = DigitsDataSource.from_config(num_train=50, num_test=20).splits()
    assert [int(splits["train"][i][1]) for i in range(8)] == [6, 5, 5, 7, 9, 9, 8, 4]
    assert [int(splits["test"][i][1]) for i in range(8)] == [1, 3, 4, 5, 2, 6, 7, 2]
    assert float(splits["train"][0][0].double().sum()) == pytest.approx(-2198.047, abs=0.01)
    assert float(splits["test"][0][0].double().sum()) == pytest.approx(-1613.923, abs=0.01)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda() -> None:
    tok = tokenizer().cuda()
    out = tok(torch.randn(2, 3, 32, 48, device="cuda"))
    assert out.embeddings.device.type == "cuda" and out.mask.device.type == "cuda" and out.num_tokens == 6
