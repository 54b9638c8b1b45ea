"""Loading local checkpoints in the timm, Meta-Transformer and OpenCLIP layouts into the shared encoder.

Each test builds a small synthetic checkpoint (random tensors, the layout's real keys and shapes), loads it and
compares the encoder's output with a reference model carrying the same weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from timm.models.vision_transformer import Block, VisionTransformer
from torch import Tensor, nn

from polymodal.core.encoders import TransformerEncoder
from polymodal.core.encoders.pretrained import PretrainedLoadError, detect_layout, read_checkpoint
from polymodal.core.tokens import Tokens

D, DEPTH, HEADS = 32, 2, 4


def _randomize(module: nn.Module) -> nn.Module:
    with torch.no_grad():
        for name, p in module.named_parameters():
            one = 1.0 if p.dim() == 1 and name.endswith("weight") else 0.0  # LayerNorm scales around 1
            p.copy_(one + 0.2 * torch.randn_like(p))
    return module.eval()


def _tokens() -> list[Tokens]:
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    return [Tokens(torch.randn(2, 7, D), mask, "a"), Tokens.full(torch.randn(1, 4, D), "b")]


def _max_diff(enc: TransformerEncoder, reference, tokens: list[Tokens]) -> float:
    """Packed encoder output vs ``reference([1, L, D]) -> [1, L, D]`` on each sequence alone."""
    worst = 0.0
    with torch.no_grad():
        for t, o in zip(tokens, enc(tokens)):
            for i in range(t.batch_size):
                ref = reference(t.embeddings[i : i + 1, t.mask[i]])[0]
                worst = max(worst, (o.embeddings[i, t.mask[i]] - ref).abs().max().item())
    return worst


def _encoder(**overrides) -> TransformerEncoder:
    return TransformerEncoder({"embed_dim": D, "depth": DEPTH, "num_heads": HEADS, **overrides}).eval()


def _timm_vit(width: int = D, depth: int = DEPTH) -> VisionTransformer:
    vit = VisionTransformer(
        img_size=32, patch_size=16, embed_dim=width, depth=depth, num_heads=HEADS, num_classes=5
    )
    return _randomize(vit)


def _timm_reference(vit: VisionTransformer):
    def run(x: Tensor) -> Tensor:
        for block in vit.blocks:
            x = block(x)
        return vit.norm(x)

    return run


# -- timm ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_timm_vit_checkpoint_loads_and_matches_timm_blocks(tmp_path: Path, suffix: str) -> None:
    vit = _timm_vit()
    path = tmp_path / f"vit{suffix}"
    state = {k: v.contiguous() for k, v in vit.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    enc = _encoder()
    report = enc.load_pretrained(path)
    assert report.layout == "timm"
    assert len(report.loaded) == 12 * DEPTH + 2 and not report.missing
    assert set(report.ignored) == {
        "cls_token",
        "pos_embed",
        "patch_embed.proj.weight",
        "patch_embed.proj.bias",
        "head.weight",
        "head.bias",
    }
    assert (
        "ignored keys, not encoder weights (6): cls_token, head.bias, head.weight, patch_embed.proj.bias"
        in str(report)
    )
    assert _max_diff(enc, _timm_reference(vit), _tokens()) <= 1e-5


def test_nested_and_prefixed_timm_checkpoint(tmp_path: Path) -> None:
    vit = _timm_vit()
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "model": {f"module.{k}": v for k, v in vit.state_dict().items()}}, path)
    enc = _encoder()
    assert enc.load_pretrained(path).layout == "timm"
    assert _max_diff(enc, _timm_reference(vit), _tokens()) <= 1e-5


def test_config_pretrained_path_loads_at_build_and_keeps_freezing(tmp_path: Path) -> None:
    vit = _timm_vit()
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))
    enc = _encoder(pretrained=str(path), freeze="frozen")
    assert not any(p.requires_grad for p in enc.parameters())
    assert _max_diff(enc, _timm_reference(vit), _tokens()) <= 1e-5


# -- Meta-Transformer ------------------------------------------------------------------------------------------


def _meta_transformer_encoder() -> nn.Sequential:
    """Meta-Transformer's encoder as its README and modality code build it: ``nn.Sequential`` of timm blocks with
    ``norm_layer=nn.LayerNorm`` (eps 1e-5), ``act_layer=nn.GELU``, no final norm."""
    blocks = [
        Block(D, HEADS, mlp_ratio=4.0, qkv_bias=True, norm_layer=nn.LayerNorm, act_layer=nn.GELU)
        for _ in range(DEPTH)
    ]
    return _randomize(nn.Sequential(*blocks))


def test_meta_transformer_checkpoint_loads_and_matches(tmp_path: Path) -> None:
    ref = _meta_transformer_encoder()
    assert ref[0].norm1.eps == 1e-5
    state = ref.state_dict()
    assert len(state) == 12 * DEPTH and state["0.attn.qkv.weight"].shape == (3 * D, D)
    path = tmp_path / "Meta-Transformer_tiny_encoder.pth"
    torch.save(state, path)
    enc = _encoder(final_norm=False)
    report = enc.load_pretrained(path)
    assert report.layout == "meta_transformer" and report.checkpoint_depth == DEPTH
    assert len(report.loaded) == 12 * DEPTH and not report.ignored and not report.missing
    assert _max_diff(enc, ref, _tokens()) <= 1e-5


def test_meta_transformer_sets_eps_1e5_and_matches_small_scale_tokens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ref = _meta_transformer_encoder()
    path = tmp_path / "meta.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    enc = _encoder(final_norm=False)
    assert enc.config.norm_eps == 1e-6 and enc.blocks[0].norm1.eps == 1e-6
    with caplog.at_level(logging.INFO, logger="polymodal.core.encoders.pretrained"):
        report = enc.load_pretrained(path)
    assert report.settings == {"norm_eps": (1e-6, 1e-5)}
    assert "set from the layout (what these weights were trained with): norm_eps 1e-06 -> 1e-05" in str(
        report
    )
    assert "norm_eps 1e-06 -> 1e-05" in caplog.text
    assert enc.config.norm_eps == 1e-5
    assert all(m.eps == 1e-5 for m in enc.modules() if isinstance(m, nn.LayerNorm))
    # tokens of small scale, where the epsilon is not negligible against their variance
    small = [t.replace(embeddings=t.embeddings * 1e-3) for t in _tokens()]
    assert _max_diff(enc, ref, small) <= 1e-5
    enc.set_norm_eps(1e-6)  # what the load did before: off by far more than float rounding
    assert _max_diff(enc, ref, small) > 1e-2
    # a second load has nothing to change
    assert _encoder(final_norm=False, norm_eps=1e-5).load_pretrained(path).settings == {}


def test_missing_final_norm_fails_strict_and_warns_otherwise(tmp_path: Path) -> None:
    ref = _meta_transformer_encoder()
    path = tmp_path / "meta.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    enc = _encoder()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    with pytest.raises(PretrainedLoadError) as info:
        enc.load_pretrained(path)
    message = str(info.value)
    assert "missing keys, not in the checkpoint (2): norm.weight, norm.bias" in message
    assert "set final_norm=False" in message and "nothing was loaded" in message
    assert all(torch.equal(v, before[k]) for k, v in enc.state_dict().items())
    with pytest.warns(UserWarning, match="loaded with missing keys"):
        report = enc.load_pretrained(path, strict=False)
    assert report.missing == ["norm.weight", "norm.bias"]
    assert torch.equal(enc.norm.weight, before["norm.weight"])
    assert torch.equal(enc.blocks[1].mlp.fc2.weight, ref[1].mlp.fc2.weight)


# -- OpenCLIP --------------------------------------------------------------------------------------------------


class _QuickGELU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class _OpenClipBlock(nn.Module):
    """OpenCLIP's ResidualAttentionBlock: torch MultiheadAttention (in_proj = concat(q, k, v)), c_fc/c_proj."""

    def __init__(self) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(D)  # eps 1e-5, as OpenCLIP
        self.attn = nn.MultiheadAttention(D, HEADS, batch_first=True)
        self.ln_2 = nn.LayerNorm(D)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(D, 4 * D))
        self.mlp.add_module("gelu", _QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(4 * D, D))

    def forward(self, x: Tensor) -> Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class _OpenClipVisual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, D, 16, 16, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(D))
        self.positional_embedding = nn.Parameter(torch.randn(5, D))
        self.ln_pre = nn.LayerNorm(D)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList(_OpenClipBlock() for _ in range(DEPTH))
        self.ln_post = nn.LayerNorm(D)
        self.proj = nn.Parameter(torch.randn(D, 16))

    def encode_tokens(self, x: Tensor) -> Tensor:
        x = self.ln_pre(x)
        for block in self.transformer.resblocks:
            x = block(x)
        return self.ln_post(x)


def _open_clip_checkpoint(visual: _OpenClipVisual) -> dict[str, Tensor]:
    state = {f"visual.{k}": v for k, v in visual.state_dict().items()}
    # The text tower of a full CLIP checkpoint sits at the top level, with the same block names.
    state.update(
        {
            "token_embedding.weight": torch.randn(10, D),
            "positional_embedding": torch.randn(8, D),
            "transformer.resblocks.0.ln_1.weight": torch.randn(D),
            "transformer.resblocks.0.attn.in_proj_weight": torch.randn(3 * D, D),
            "ln_final.weight": torch.randn(D),
            "text_projection": torch.randn(D, 16),
            "logit_scale": torch.tensor(4.6),
        }
    )
    return state


def test_open_clip_visual_tower_loads_and_matches_open_clip_blocks(tmp_path: Path) -> None:
    visual = _randomize(_OpenClipVisual())
    state = _open_clip_checkpoint(visual)
    assert state["visual.transformer.resblocks.1.attn.in_proj_weight"].shape == (3 * D, D)
    path = tmp_path / "open_clip.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    enc = _encoder(pre_norm=True, norm_eps=1e-5, act_layer="quick_gelu")
    report = enc.load_pretrained(path)
    assert report.layout == "open_clip"
    assert len(report.loaded) == 12 * DEPTH + 4 and not report.missing
    assert "transformer.resblocks.0.ln_1.weight" in report.ignored  # the text tower's, not the visual one
    assert {"visual.conv1.weight", "visual.class_embedding", "visual.proj", "logit_scale"} <= set(
        report.ignored
    )
    assert _max_diff(enc, visual.encode_tokens, _tokens()) <= 1e-5


def test_open_clip_default_gelu_differs_from_quick_gelu(tmp_path: Path) -> None:
    visual = _randomize(_OpenClipVisual())
    path = tmp_path / "open_clip.safetensors"
    save_file({k: v.contiguous() for k, v in _open_clip_checkpoint(visual).items()}, str(path))
    enc = _encoder(pre_norm=True, norm_eps=1e-5)  # act_layer="gelu": not what these weights were trained with
    enc.load_pretrained(path)
    assert _max_diff(enc, visual.encode_tokens, _tokens()) > 1e-3


def test_unknown_open_clip_block_key_is_unexpected(tmp_path: Path) -> None:
    visual = _randomize(_OpenClipVisual())
    state = _open_clip_checkpoint(visual)
    state["visual.transformer.resblocks.0.attn.ln_inner.weight"] = torch.ones(D)
    path = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(
        PretrainedLoadError,
        match=r"unexpected keys, not in this encoder \(1\): "
        r"visual\.transformer\.resblocks\.0\.attn\.ln_inner\.weight",
    ):
        _encoder(pre_norm=True, norm_eps=1e-5).load_pretrained(path)


def _saved(state: dict[str, Tensor], path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def test_a_norm_in_the_file_is_never_dropped(tmp_path: Path) -> None:
    visual = _randomize(_OpenClipVisual())
    path = _saved(_open_clip_checkpoint(visual), tmp_path / "clip.safetensors")
    for overrides, keys, setting in [
        ({}, "'visual.ln_pre.bias', 'visual.ln_pre.weight' -> norm_pre.*", "pre_norm"),
        (
            {"pre_norm": True, "final_norm": False},
            "'visual.ln_post.bias', 'visual.ln_post.weight' -> norm.*",
            "final_norm",
        ),
    ]:
        enc = _encoder(norm_eps=1e-5, act_layer="quick_gelu", **overrides)
        before = {k: v.clone() for k, v in enc.state_dict().items()}
        with pytest.raises(PretrainedLoadError) as info:
            enc.load_pretrained(path)
        message = str(info.value)
        assert f"({keys}), the encoder was built with {setting}=False: set {setting}=True" in message
        assert message.endswith("nothing was loaded")
        assert all(torch.equal(v, before[k]) for k, v in enc.state_dict().items())
    # the same for a timm file's final norm
    path = _saved(_timm_vit().state_dict(), tmp_path / "vit.safetensors")
    with pytest.raises(
        PretrainedLoadError,
        match=r"unexpected keys, not in this encoder \(2\): norm\.bias, norm\.weight(.|\n)*"
        r"\('norm\.bias', 'norm\.weight' -> norm\.\*\), the encoder was built with final_norm=False: set final_norm=True",
    ):
        _encoder(final_norm=False).load_pretrained(path)


def test_open_clip_text_tower_alone_is_refused(tmp_path: Path) -> None:
    visual = _randomize(_OpenClipVisual())
    text = {k: v for k, v in _open_clip_checkpoint(visual).items() if not k.startswith("visual.")}
    path = _saved(text, tmp_path / "text.safetensors")
    expected = (
        r"an OpenCLIP text tower \('transformer\.resblocks\.\{i\}\.…' with 'token_embedding\.weight', "
        r"'ln_final\.weight', 'text_projection'\) and no ViT visual tower: this encoder loads OpenCLIP visual towers"
    )
    with pytest.raises(PretrainedLoadError, match=expected):
        _encoder(pre_norm=True).load_pretrained(path)
    with pytest.raises(PretrainedLoadError, match="a causal transformer"):
        detect_layout(["transformer.resblocks.0.ln_1.weight", "token_embedding.weight"])
    # a visual tower saved on its own, under any prefix, is one
    assert detect_layout(["tower.transformer.resblocks.0.ln_1.weight", "tower.conv1.weight"]) == (
        "open_clip",
        "tower.",
    )


def test_open_clip_attentional_pooler_is_refused(tmp_path: Path) -> None:
    visual = _randomize(_OpenClipVisual())
    state = _open_clip_checkpoint(visual)
    state["visual.attn_pool.query"] = torch.randn(4, D)
    path = _saved(state, tmp_path / "coca.safetensors")
    with pytest.raises(PretrainedLoadError) as info:
        _encoder(pre_norm=True).load_pretrained(path)
    message = str(info.value)
    assert "unexpected keys, not in this encoder (1): visual.attn_pool.query" in message
    assert "so ln_post normalises the pooler's output, not the tokens" in message


# -- errors: nothing loads half-way ----------------------------------------------------------------------------


def test_shape_mismatch_names_every_key_and_loads_nothing(tmp_path: Path) -> None:
    path = tmp_path / "wide.safetensors"
    save_file({k: v.contiguous() for k, v in _timm_vit(width=48).state_dict().items()}, str(path))
    enc = _encoder()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    with pytest.raises(PretrainedLoadError) as info:
        enc.load_pretrained(path)
    message = str(info.value)
    assert "shape mismatches (26): blocks.0.norm1.weight: checkpoint (48,) vs encoder (32,)" in message
    assert "blocks.0.attn.qkv.weight: checkpoint (144, 48) vs encoder (96, 32)" in message
    assert "the checkpoint has 2 blocks of width 48, the encoder 2 blocks of width 32" in message
    assert message.rstrip().endswith("nothing was loaded")
    assert all(torch.equal(v, before[k]) for k, v in enc.state_dict().items())


def test_extra_blocks_are_unexpected(tmp_path: Path) -> None:
    path = tmp_path / "deep.safetensors"
    save_file({k: v.contiguous() for k, v in _timm_vit(depth=3).state_dict().items()}, str(path))
    enc = _encoder()
    before = enc.blocks[0].attn.qkv.weight.clone()
    with pytest.raises(
        PretrainedLoadError,
        match=r"unexpected keys, not in this encoder \(12\): blocks\.2\.attn\.proj\.bias, ",
    ):
        enc.load_pretrained(path)
    assert torch.equal(enc.blocks[0].attn.qkv.weight, before)


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "unsafe.pth"
    torch.save({"blocks.0.norm1.weight": torch.ones(D), "config": _QuickGELU()}, path)
    with pytest.raises(PretrainedLoadError, match=r"unsafe\.pth: refused to unpickle"):
        read_checkpoint(path)


def test_bad_paths_suffixes_and_layouts(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _encoder().load_pretrained(tmp_path / "nope.safetensors")
    odd = tmp_path / "weights.npz"
    odd.write_bytes(b"0")
    with pytest.raises(PretrainedLoadError, match=r"unsupported checkpoint type '\.npz'"):
        read_checkpoint(odd)
    with pytest.raises(
        PretrainedLoadError, match=r"unrecognised checkpoint layout.*first keys are: fc\.weight"
    ):
        detect_layout(["fc.weight", "fc.bias"])
    assert detect_layout(["encoder.blocks.0.norm1.weight"]) == ("timm", "encoder.")
    assert detect_layout(["11.mlp.fc2.bias"]) == ("meta_transformer", "")
    assert detect_layout(["visual.transformer.resblocks.0.ln_1.weight"]) == ("open_clip", "visual.")
