"""A whole ViT image model from one timm or OpenCLIP file: ``MultimodalModel.load_pretrained_image``.

Each test builds the source model as its library does (timm's ``VisionTransformer``, OpenCLIP's CLIP), with random
weights, saves its state dict to a temporary file, loads it into a polymodal model of the same sizes and compares the
encoded tokens ([CLS] + patches after the final norm) with the source model's own forward on the same images.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

import polymodal
from polymodal.core.encoders.pretrained import PretrainedLoadError, read_vit_embeddings

D, HEADS = 32, 4


def _save(state: dict[str, Tensor], path: Path) -> Path:
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(path))
    return path


def _perturb(module: nn.Module, *names: str) -> nn.Module:
    """Give the named parameters (and every LayerNorm) values far from their init, so that a part loaded wrong
    (a class position dropped, a norm's bias left at zero) moves the features well past the tolerance."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name in names:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif name.endswith(("norm.weight", "norm_pre.weight", "ln_pre.weight", "ln_post.weight")):
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
            elif name.endswith(("norm.bias", "norm_pre.bias", "ln_pre.bias", "ln_post.bias")):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return module.eval()


def _model(img_size: int, patch_size: int, cls_token: bool = True, **encoder) -> polymodal.MultimodalModel:
    torch.manual_seed(0)
    return polymodal.build_model(
        tokenizers={"image": {"type": "image", "patch_size": patch_size, "img_size": img_size}},
        encoder={"type": "vit", **encoder},
        cls_token=cls_token,
    ).eval()


def _encoded(model: polymodal.MultimodalModel, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model.encode({"image": x})["image"].embeddings


# -- timm ------------------------------------------------------------------------------------------------------


def test_timm_vit_tiny_whole_model_equals_forward_features(tmp_path: Path) -> None:
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64)
    _perturb(vit, "cls_token", "pos_embed", "patch_embed.proj.bias")
    path = _save(vit.state_dict(), tmp_path / "vit_tiny.safetensors")
    model = _model(64, 16, embed_dim=192, depth=12, num_heads=3)
    report = model.load_pretrained_image(path)
    assert report.layout == "timm" and len(report.loaded) == 12 * 12 + 2 and not report.settings
    assert report.ignored == ["head.bias", "head.weight"]  # the embeddings went to the tokenizer and [CLS]
    text = str(report)
    assert "image tokenizer <- patch_embed.proj.weight, patch_embed.proj.bias, pos_embed" in text
    assert "[CLS] of image <- cls_token + pos_embed[:, 0]" in text
    assert "modality embedding of image set to zero" in text
    assert torch.equal(model.cls_tokens["image"], vit.cls_token + vit.pos_embed[:, :1])
    assert not model.modality_embeddings["image"].any()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = vit.forward_features(x)
    ours = _encoded(model, x)
    assert ours.shape == ref.shape == (2, 1 + 16, 192)
    assert (ours - ref).abs().max().item() <= 1e-5


def _small_vit(**kwargs) -> VisionTransformer:
    torch.manual_seed(1)
    vit = VisionTransformer(
        img_size=32, patch_size=8, embed_dim=D, depth=2, num_heads=HEADS, num_classes=0, **kwargs
    )
    return _perturb(vit, "cls_token", "pos_embed", "patch_embed.proj.bias")


@pytest.mark.parametrize(
    ("variant", "vit_kwargs", "encoder"),
    [
        # a CLIP-style timm ViT: norm before the blocks, torch LayerNorm (eps 1e-5), QuickGELU
        (
            "pre_norm",
            {"pre_norm": True, "norm_layer": partial(nn.LayerNorm, eps=1e-5), "act_layer": "quick_gelu"},
            {"pre_norm": True, "norm_eps": 1e-5, "act_layer": "quick_gelu"},
        ),
        # DeiT-3 / big_vision: positions for the patches only, the class token has none
        ("no_embed_class", {"no_embed_class": True}, {}),
    ],
)
def test_timm_vit_variants_equal_forward_features(
    tmp_path: Path, variant: str, vit_kwargs: dict, encoder: dict
) -> None:
    vit = _small_vit(**vit_kwargs)
    path = _save(vit.state_dict(), tmp_path / f"{variant}.safetensors")
    model = _model(32, 8, embed_dim=D, depth=2, num_heads=HEADS, **encoder)
    report = model.load_pretrained_image(path)
    if variant == "no_embed_class":
        assert vit.pos_embed.shape[1] == 16
        assert "[CLS] of image <- cls_token (no_embed_class" in str(report)
        assert torch.equal(model.cls_tokens["image"], vit.cls_token)
    else:
        assert "norm_pre.weight" in report.loaded
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ref = vit.forward_features(x)
    assert (_encoded(model, x) - ref).abs().max().item() <= 1e-5


def test_timm_vit_without_class_token_loads_into_a_model_without_cls(tmp_path: Path) -> None:
    vit = _small_vit(class_token=False, global_pool="avg", fc_norm=False)
    path = _save(vit.state_dict(), tmp_path / "gap.safetensors")
    with pytest.raises(
        PretrainedLoadError, match=r"the file has no class token .* build it with cls_token=False"
    ):
        _model(32, 8, embed_dim=D, depth=2, num_heads=HEADS).load_pretrained_image(path)
    model = _model(32, 8, cls_token=False, embed_dim=D, depth=2, num_heads=HEADS)
    model.load_pretrained_image(path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = vit.forward_features(x)
    assert ref.shape == (2, 16, D)
    assert (_encoded(model, x) - ref).abs().max().item() <= 1e-5


def test_whole_model_refusals_name_the_key_and_load_nothing(tmp_path: Path) -> None:
    model = _model(32, 8, embed_dim=D, depth=2, num_heads=HEADS)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def unchanged() -> bool:
        return all(torch.equal(v, before[k]) for k, v in model.state_dict().items())

    # a pre-norm in the file, none in the encoder: refused, never dropped
    path = _save(_small_vit(pre_norm=True).state_dict(), tmp_path / "pre.safetensors")
    with pytest.raises(PretrainedLoadError) as info:
        model.load_pretrained_image(path)
    message = str(info.value)
    assert "unexpected keys, not in this encoder (2): norm_pre.bias, norm_pre.weight" in message
    assert (
        "'norm_pre.bias', 'norm_pre.weight' -> norm_pre.*), the encoder was built with pre_norm=False"
        in message
    )
    assert "set pre_norm=True" in message and message.endswith("nothing was loaded")
    assert unchanged()
    # register tokens
    path = _save(_small_vit(reg_tokens=2).state_dict(), tmp_path / "reg.safetensors")
    with pytest.raises(
        PretrainedLoadError, match=r"'reg_token': 2 register tokens, which this model does not have"
    ):
        model.load_pretrained_image(path)
    # another width
    wide = VisionTransformer(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=HEADS, num_classes=0)
    path = _save(wide.state_dict(), tmp_path / "wide.safetensors")
    with pytest.raises(
        PretrainedLoadError, match=r"width 48 in the file, 32 in the tokenizer, 32 in the \[CLS\] token"
    ):
        model.load_pretrained_image(path)
    # a Meta-Transformer file has blocks only
    meta = {
        f"{k[len('blocks.') :]}": v for k, v in _small_vit().state_dict().items() if k.startswith("blocks.")
    }
    path = _save(meta, tmp_path / "meta.safetensors")
    with pytest.raises(PretrainedLoadError, match="a Meta-Transformer file holds the encoder's blocks only"):
        model.load_pretrained_image(path)
    with pytest.raises(KeyError, match=r"no input 'video'; this model has tokenizers for \['image'\]"):
        model.load_pretrained_image(path, key="video")
    assert unchanged()


def test_other_grid_and_patch_size_are_resampled_and_reported(tmp_path: Path) -> None:
    path = _save(_small_vit().state_dict(), tmp_path / "vit.safetensors")
    model = _model(64, 16, embed_dim=D, depth=2, num_heads=HEADS)  # 4 x 4 grid of 16-pixel patches
    report = model.load_pretrained_image(path)
    assert "patch filters resampled from (8, 8) to (16, 16)" in str(report)
    model = _model(64, 8, embed_dim=D, depth=2, num_heads=HEADS)  # 8 x 8 grid
    assert "positions resampled from the file's 4x4 grid to the tokenizer's 8x8" in str(
        model.load_pretrained_image(path)
    )


# -- OpenCLIP --------------------------------------------------------------------------------------------------


def _open_clip_model(quick_gelu: bool):
    open_clip = pytest.importorskip("open_clip")
    torch.manual_seed(2)
    clip = open_clip.CLIP(
        embed_dim=16,
        vision_cfg={"image_size": 32, "patch_size": 8, "width": D, "layers": 2, "head_width": D // HEADS},
        text_cfg={"context_length": 8, "vocab_size": 64, "width": D, "heads": HEADS, "layers": 1},
        quick_gelu=quick_gelu,
    )
    _perturb(clip.visual, "class_embedding", "positional_embedding")
    return clip.eval()


def _open_clip_tokens(visual: nn.Module, x: Tensor) -> Tensor:
    """OpenCLIP's tokens after ``ln_post`` ([CLS] first), through its public ``forward_intermediates``."""
    with torch.no_grad():
        out = visual.forward_intermediates(
            x, indices=1, normalize_intermediates=True, output_fmt="NLC", output_extra_tokens=True
        )
    return torch.cat([out["image_intermediates_prefix"][-1], out["image_intermediates"][-1]], dim=1)


@pytest.mark.parametrize("quick_gelu", [True, False])
def test_open_clip_whole_model_equals_tokens_after_ln_post(tmp_path: Path, quick_gelu: bool) -> None:
    clip = _open_clip_model(quick_gelu)
    v = clip.visual
    assert (
        v.ln_pre.eps == 1e-5 and not v.final_ln_after_pool and v.attn_pool is None
    )  # ln_post on every token
    path = _save(clip.state_dict(), tmp_path / "clip.safetensors")
    act = "quick_gelu" if quick_gelu else "gelu"
    model = _model(32, 8, embed_dim=D, depth=2, num_heads=HEADS, pre_norm=True, act_layer=act)
    report = model.load_pretrained_image(path)
    assert report.layout == "open_clip" and len(report.loaded) == 12 * 2 + 4
    assert report.settings == {"norm_eps": (1e-6, 1e-5)}
    assert model.encoder.config.norm_eps == model.config.encoder.norm_eps == 1e-5
    assert all(m.eps == 1e-5 for m in model.encoder.modules() if isinstance(m, nn.LayerNorm))
    text = str(report)
    assert "set from the layout (what these weights were trained with): norm_eps 1e-06 -> 1e-05" in text
    assert "image tokenizer <- visual.conv1.weight, visual.positional_embedding" in text
    assert "[CLS] of image <- visual.class_embedding + positional_embedding[0]" in text
    assert "its bias is set to zero" in text and not model.tokenizers["image"].proj.bias.any()
    assert "visual.proj" in report.ignored and "token_embedding.weight" in report.ignored
    x = torch.randn(2, 3, 32, 32)
    ref = _open_clip_tokens(v, x)
    ours = _encoded(model, x)
    assert ours.shape == ref.shape == (2, 1 + 16, D)
    assert (ours - ref).abs().max().item() <= 1e-5
    with torch.no_grad():  # OpenCLIP's image feature: the [CLS] token after ln_post, projected
        assert (ours[:, 0] @ v.proj - v(x)).abs().max().item() <= 1e-5


def test_open_clip_with_the_wrong_activation_differs(tmp_path: Path) -> None:
    clip = _open_clip_model(quick_gelu=True)
    path = _save(clip.state_dict(), tmp_path / "clip.safetensors")
    model = _model(32, 8, embed_dim=D, depth=2, num_heads=HEADS, pre_norm=True)  # gelu: not in the file
    report = model.load_pretrained_image(path)
    assert "activation not stored in the file: act_layer='gelu' kept" in str(report)
    x = torch.randn(2, 3, 32, 32)
    assert (_encoded(model, x) - _open_clip_tokens(clip.visual, x)).abs().max().item() > 1e-3


class _OpenClipVisual(nn.Module):
    """OpenCLIP's ViT visual tower written from its documented keys (runs without open_clip installed)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, D, 8, 8, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(D))
        self.positional_embedding = nn.Parameter(torch.randn(1 + 16, D))
        self.ln_pre = nn.LayerNorm(D)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList(
            nn.TransformerEncoderLayer(D, HEADS, 4 * D, dropout=0.0, activation="gelu", batch_first=True)
            for _ in range(2)
        )
        self.ln_post = nn.LayerNorm(D)

    def tokens(self, x: Tensor) -> Tensor:
        x = self.conv1(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + self.positional_embedding
        x = self.ln_pre(x)
        for block in self.transformer.resblocks:
            y = block.norm1(x)
            x = x + block.self_attn(y, y, y, need_weights=False)[0]
            x = x + block.linear2(block.activation(block.linear1(block.norm2(x))))
        return self.ln_post(x)

    def open_clip_state(self) -> dict[str, Tensor]:
        """The state dict under OpenCLIP's names (``ln_1``, ``attn.in_proj_weight``, ``mlp.c_fc``, …)."""
        names = {
            "norm1": "ln_1",
            "self_attn": "attn",
            "norm2": "ln_2",
            "linear1": "mlp.c_fc",
            "linear2": "mlp.c_proj",
        }
        out = {}
        for k, v in self.state_dict().items():
            for ours, theirs in names.items():
                k = k.replace(f".{ours}.", f".{theirs}.")
            out[f"visual.{k}"] = v
        return out


def test_open_clip_documented_keys_whole_model(tmp_path: Path) -> None:
    torch.manual_seed(3)
    visual = _perturb(_OpenClipVisual())
    state = visual.open_clip_state()
    assert "visual.transformer.resblocks.1.mlp.c_proj.weight" in state and "visual.conv1.bias" not in state
    path = _save(state, tmp_path / "clip.safetensors")
    model = _model(32, 8, embed_dim=D, depth=2, num_heads=HEADS, pre_norm=True)
    model.load_pretrained_image(path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = visual.tokens(x)
    assert (_encoded(model, x) - ref).abs().max().item() <= 1e-5
    # the epsilon the load set is in the model's config, so a saved model rebuilds with it
    model.save_pretrained(tmp_path / "saved")
    again = polymodal.from_pretrained(tmp_path / "saved")
    assert again.encoder.config.norm_eps == 1e-5 and again.encoder.blocks[1].norm2.eps == 1e-5
    assert (_encoded(again, x) - ref).abs().max().item() <= 1e-5


# -- the image tokenizer's patch embedding ---------------------------------------------------------------------


def test_load_patch_embed_reads_open_clip_and_zeroes_the_bias() -> None:
    torch.manual_seed(4)
    visual = _OpenClipVisual()
    state = visual.open_clip_state()
    tok = polymodal.get("tokenizer", "image").from_config(embed_dim=D, patch_size=8, img_size=32)
    assert tok.proj.bias.abs().sum() > 0  # a random bias before
    tok.load_patch_embed(state)
    assert torch.equal(tok.proj.bias, torch.zeros(D))
    assert torch.equal(tok.proj.weight, visual.conv1.weight)
    assert torch.equal(tok.pos_embed[0], visual.positional_embedding[1:])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = visual.conv1(x).flatten(2).transpose(1, 2) + visual.positional_embedding[1:]
        assert torch.allclose(tok(x).embeddings, ref, atol=1e-6)
    emb = read_vit_embeddings(state)
    assert emb.layout == "open_clip" and emb.prefix == "visual." and emb.bias is None and emb.grid == (4, 4)
    assert torch.equal(emb.cls_token, (visual.class_embedding + visual.positional_embedding[0]).view(1, 1, D))


def test_timm_class_token_keeps_its_position_and_a_missing_bias_is_zero() -> None:
    vit = _small_vit()
    state = vit.state_dict()
    emb = read_vit_embeddings(state)
    assert emb.layout == "timm" and emb.grid == (4, 4) and emb.num_registers == 0
    assert torch.equal(emb.cls_token, vit.cls_token + vit.pos_embed[:, :1])  # not dropped
    assert torch.equal(emb.pos_embed, vit.pos_embed[:, 1:])
    del state["patch_embed.proj.bias"]  # e.g. timm's CLIP ViTs: patch_bias=False
    tok = polymodal.get("tokenizer", "image").from_config(embed_dim=D, patch_size=8, img_size=32)
    tok.load_patch_embed(state)
    assert torch.equal(tok.proj.bias, torch.zeros(D))
    registers = read_vit_embeddings(_small_vit(reg_tokens=3).state_dict())
    assert registers.num_registers == 3 and registers.grid == (4, 4)
    with pytest.raises(PretrainedLoadError, match=r"several ViT patch embeddings in the state dict"):
        read_vit_embeddings(
            {
                **state,
                "visual.conv1.weight": torch.zeros(D, 3, 8, 8),
                "visual.class_embedding": torch.zeros(D),
            }
        )
