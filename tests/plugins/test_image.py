"""image plugin: patch embedding against a loop, positional resampling, preprocessing of every input form,
weight adaptation (timm's adapt_input_conv idea, timm ViT state dicts), errors, the digits data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

import polymodal
from polymodal.core.component import ModalityInputError
from polymodal.plugins.image import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DigitsDataSource,
    ImageTokenizer,
    adapt_patch_embed,
    embed_tubelets,
    minmax_scale,
    patch_embed_state,
    percentile_scale,
    quantiles,
    resample_pos_embed_2d,
    window_scale,
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


def test_embed_tubelets_equals_conv3d() -> None:
    x = torch.randn(2, 3, 4, 8, 12, dtype=torch.float64)
    w = torch.randn(5, 3, 2, 4, 4, dtype=torch.float64)
    b = torch.randn(5, dtype=torch.float64)
    ref = F.conv3d(x, w, b, stride=(2, 4, 4)).permute(0, 2, 3, 4, 1)
    assert torch.allclose(embed_tubelets(x, w, b), ref, atol=1e-12)


def test_intensity_scalers_against_numpy() -> None:
    x = torch.from_numpy(np.random.default_rng(2).normal(size=(2, 3, 7, 5)) * 100)
    q = torch.tensor([0.0, 0.013, 0.5, 0.99, 1.0], dtype=torch.float64)
    ref = np.percentile(x.flatten(-2).numpy(), q.numpy() * 100, axis=-1).transpose(1, 2, 0)
    assert np.allclose(quantiles(x.flatten(-2), q).numpy(), ref, atol=1e-9)
    lo, hi = np.percentile(x[1, 2].numpy(), [2, 98])
    ref = np.clip((x[1, 2].numpy() - lo) / (hi - lo), 0, 1)
    assert np.allclose(percentile_scale(x, 2, 98)[1, 2].numpy(), ref, atol=1e-9)
    ch = x[0, 1]
    assert torch.allclose(minmax_scale(x)[0, 1], (ch - ch.min()) / (ch.max() - ch.min()))
    assert torch.equal(minmax_scale(torch.full((1, 2, 2), 7.0)), torch.zeros(1, 2, 2))  # constant -> 0
    vals = torch.tensor([0.0, 1000.0, 1500.0, 2000.0, 5000.0])
    assert window_scale(vals, center=1500.0, width=1000.0).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_digits_source() -> None:
    source = DigitsDataSource.from_config(num_train=100, num_test=50, image_size=16)
    splits = source.splits()
    x, y = splits["train"][0]
    assert tuple(x.shape) == (3, 16, 16) and 0 <= int(y) < 10
    assert len(splits["train"]) == 100 and len(splits["test"]) == 50
    assert source.task() == {"type": "classification", "num_classes": 10} and source.baseline() == 0.1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda() -> None:
    tok = tokenizer().cuda()
    out = tok(torch.randn(2, 3, 32, 48, device="cuda"))
    assert out.embeddings.device.type == "cuda" and out.mask.device.type == "cuda" and out.num_tokens == 6
