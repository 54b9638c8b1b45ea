"""The shared encoder: packed forward == each sequence alone through timm blocks; freezing; lr decay; options."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from timm.layers import QuickGELU
from timm.models.vision_transformer import VisionTransformer
from torch import nn

import polymodal
from polymodal.core.encoders import (
    TransformerEncoder,
    VitBaseEncoder,
    VitLargeEncoder,
    VitSmallEncoder,
    VitTinyEncoder,
)
from polymodal.core.tokens import Tokens

SMALL = {"embed_dim": 32, "depth": 2, "num_heads": 4}


def _encoder(**overrides) -> TransformerEncoder:
    return TransformerEncoder({**SMALL, **overrides}).eval()


def _masked(b: int, n: int, lengths: list[int], name: str, d: int = 32, **meta) -> Tokens:
    mask = torch.arange(n)[None] < torch.tensor(lengths)[:, None]
    return Tokens(torch.randn(b, n, d), mask, name, meta)


def _alone(enc: TransformerEncoder, x: torch.Tensor) -> torch.Tensor:
    """One sequence ``[L, D]`` alone through the timm blocks (their own forward), as the reference."""
    x = enc.norm_pre(x[None])
    for block in enc.blocks:
        x = block(x)
    return enc.norm(x)[0]


def _max_diff_to_reference(enc: TransformerEncoder, tokens: list[Tokens], outs: list[Tokens]) -> float:
    worst = 0.0
    for t, o in zip(tokens, outs):
        for i in range(t.batch_size):
            ref = _alone(enc, t.embeddings[i, t.mask[i]])
            worst = max(worst, (o.embeddings[i, t.mask[i]] - ref).abs().max().item())
    return worst


def test_packed_equals_each_sequence_alone_for_mixed_lengths_and_several_inputs() -> None:
    enc = _encoder(pre_norm=True)
    holes = torch.tensor([[1, 0, 1, 1, 0, 1], [0, 1, 1, 1, 1, 1]], dtype=torch.bool)
    tokens = [
        _masked(3, 9, [9, 4, 1], "text", stat=torch.ones(3)),
        Tokens.full(torch.randn(2, 5, 32), "image", grid=(1, 5)).replace(prefix=1),
        Tokens(torch.randn(2, 6, 32), holes, "points"),
        _masked(4, 12, [12, 7, 4, 7], "audio"),
    ]
    outs = enc(tokens)
    assert [o.modality for o in outs] == ["text", "image", "points", "audio"]
    assert _max_diff_to_reference(enc, tokens, outs) <= 1e-5
    for t, o in zip(tokens, outs):
        assert o.embeddings.shape == t.embeddings.shape
        assert o.mask is t.mask and o.meta is t.meta and o.prefix == t.prefix
        assert not o.embeddings[~t.mask].any(), "padded positions must be zero"
    assert outs[1].prefix == 1 and outs[1].meta == {"grid": (1, 5)}


def test_packed_equals_alone_for_a_batch_of_one() -> None:
    enc = _encoder()
    tokens = [_masked(1, 8, [5], "text")]
    out = enc(tokens)
    assert _max_diff_to_reference(enc, tokens, out) <= 1e-5


def test_padding_never_changes_a_sequence_result() -> None:
    enc = _encoder()
    seq = torch.randn(6, 32)
    alone = enc([Tokens.full(seq[None], "text")])[0].embeddings[0]
    batch = torch.randn(3, 13, 32)
    batch[1, :6] = seq
    mask = torch.zeros(3, 13, dtype=torch.bool)
    mask[0, :13], mask[1, :6], mask[2, :2] = True, True, True
    padded = enc([Tokens(batch, mask, "text")])[0].embeddings[1, :6]
    assert (alone - padded).abs().max().item() <= 1e-5


def test_gradients_match_running_each_sequence_alone() -> None:
    enc = _encoder(pre_norm=True)
    ref_enc = _encoder(pre_norm=True)
    ref_enc.load_state_dict(enc.state_dict())
    tokens = [_masked(3, 7, [7, 3, 5], "a"), Tokens.full(torch.randn(2, 4, 32), "b")]
    inputs = [t.embeddings.clone().requires_grad_(True) for t in tokens]
    ref_inputs = [t.embeddings.clone().requires_grad_(True) for t in tokens]
    weights = [torch.randn_like(t.embeddings) for t in tokens]

    outs = enc([t.replace(embeddings=x) for t, x in zip(tokens, inputs)])
    sum((o.embeddings * w).sum() for o, w in zip(outs, weights)).backward()
    ref_loss = 0.0
    for t, x, w in zip(tokens, ref_inputs, weights):
        for i in range(t.batch_size):
            ref_loss = ref_loss + (_alone(ref_enc, x[i, t.mask[i]]) * w[i, t.mask[i]]).sum()
    ref_loss.backward()

    for x, rx in zip(inputs, ref_inputs):
        assert (x.grad - rx.grad).abs().max().item() <= 1e-5
    for (name, p), rp in zip(enc.named_parameters(), ref_enc.parameters()):
        assert (p.grad - rp.grad).abs().max().item() <= 1e-4 * max(1.0, rp.grad.abs().max().item()), name


def test_grad_checkpointing_gives_equal_outputs_and_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    import polymodal.core.encoders.vit as module

    calls = []
    original = module.checkpoint
    monkeypatch.setattr(module, "checkpoint", lambda *a, **k: calls.append(1) or original(*a, **k))
    plain, ckpt = _encoder(), _encoder(grad_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    tokens = [_masked(3, 7, [7, 3, 5], "a")]
    grads = []
    for enc in (plain, ckpt):
        x = tokens[0].embeddings.clone().requires_grad_(True)
        out = enc([tokens[0].replace(embeddings=x)])[0].embeddings
        (out**2).sum().backward()
        grads.append((out.detach(), x.grad, [p.grad for p in enc.parameters()]))
    (o1, x1, p1), (o2, x2, p2) = grads
    assert len(calls) == 2, "each of the two blocks must be checkpointed once"
    assert torch.allclose(o1, o2, atol=1e-6)
    assert torch.allclose(x1, x2, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(p1, p2))


def test_attention_backends_agree_on_cpu() -> None:
    grouped = _encoder(attention_backend="sdpa")
    per_segment = _encoder(attention_backend="sdpa_per_segment")
    per_segment.load_state_dict(grouped.state_dict())
    tokens = [_masked(5, 6, [6, 6, 2, 6, 2], "a")]
    diff = (grouped(tokens)[0].embeddings - per_segment(tokens)[0].embeddings).abs().max().item()
    assert diff <= 1e-6


def test_drop_path_is_active_in_training_and_off_in_eval() -> None:
    enc = _encoder(drop_path_rate=0.5)
    tokens = [_masked(4, 6, [6, 5, 4, 3], "a")]
    enc.train()
    a, b = enc(tokens)[0].embeddings, enc(tokens)[0].embeddings
    assert not torch.allclose(a, b)
    enc.eval()
    assert _max_diff_to_reference(enc, tokens, enc(tokens)) <= 1e-5


def test_frozen_encoder_has_no_grad_and_stays_in_eval_mode_inside_a_training_model() -> None:
    enc = TransformerEncoder(
        {**SMALL, "freeze": "frozen", "drop_path_rate": 0.5, "attn_drop_rate": 0.5, "proj_drop_rate": 0.5}
    )
    parent = nn.ModuleDict({"encoder": enc, "head": nn.Linear(32, 2)})
    parent.train()
    assert parent.training and parent["head"].training
    assert not any(m.training for m in enc.modules())
    assert not any(p.requires_grad for p in enc.parameters())
    tokens = [_masked(3, 5, [5, 2, 4], "a")]
    x = tokens[0].embeddings.clone().requires_grad_(True)
    out1 = enc([tokens[0].replace(embeddings=x)])[0].embeddings
    out2 = enc(tokens)[0].embeddings
    assert torch.equal(out1.detach(), out2), "dropout or drop-path ran in a frozen encoder"
    assert _max_diff_to_reference(enc, tokens, [tokens[0].replace(embeddings=out2)]) <= 1e-5
    out1.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0, "gradients must still reach the tokenizer"
    assert all(p.grad is None for p in enc.parameters())


def test_last_k_tunes_only_the_last_blocks_and_the_final_norm() -> None:
    enc = TransformerEncoder({**SMALL, "depth": 4, "pre_norm": True, "freeze": "last_k", "tuned_blocks": 2})
    enc.train()
    trainable = {
        n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("blocks") else "")
        for n, p in enc.named_parameters()
        if p.requires_grad
    }
    assert trainable == {"blocks.2", "blocks.3", "norm"}
    assert [b.training for b in enc.blocks] == [False, False, True, True]
    assert not enc.norm_pre.training and enc.norm.training and enc.training


def test_set_freeze_switches_policies() -> None:
    enc = _encoder(freeze="frozen")
    enc.train()
    enc.set_freeze("tuned")
    assert all(p.requires_grad for p in enc.parameters())
    assert all(m.training for m in enc.modules())
    assert enc.config.freeze == "tuned"
    enc.set_freeze("last_k", 1)
    assert [all(p.requires_grad for p in b.parameters()) for b in enc.blocks] == [False, True]


def test_config_validation() -> None:
    with pytest.raises(ValidationError, match="tuned_blocks 3 exceeds depth 2"):
        _encoder(freeze="last_k", tuned_blocks=3)
    with pytest.raises(ValidationError, match="tuned_blocks applies to freeze='last_k' only"):
        _encoder(tuned_blocks=1)
    with pytest.raises(ValidationError, match="embed_dim 32 is not divisible by num_heads 5"):
        _encoder(num_heads=5)
    with pytest.raises(ValidationError, match="act_layer"):
        _encoder(act_layer="relu")


def test_layer_lr_scales_follow_timm_layer_decay() -> None:
    enc = TransformerEncoder({**SMALL, "depth": 3, "pre_norm": True})
    assert enc.num_lr_layers == 5
    ids = enc.layer_ids()
    assert set(ids) == {n for n, _ in enc.named_parameters()}
    assert ids["norm_pre.weight"] == 0 and ids["blocks.0.attn.qkv.weight"] == 1
    assert ids["blocks.2.mlp.fc2.bias"] == 3 and ids["norm.bias"] == 4
    scales = enc.layer_lr_scales(0.5, prefix="encoder.")
    assert scales["encoder.norm_pre.bias"] == pytest.approx(0.0625)
    assert scales["encoder.blocks.0.norm1.weight"] == pytest.approx(0.125)
    assert scales["encoder.blocks.1.attn.proj.weight"] == pytest.approx(0.25)
    assert scales["encoder.blocks.2.mlp.fc1.weight"] == pytest.approx(0.5)
    assert scales["encoder.norm.weight"] == 1.0
    assert set(enc.layer_lr_scales(1.0).values()) == {1.0}
    with pytest.raises(ValueError, match=r"layer decay must be in \(0, 1\], got 1.5"):
        enc.layer_lr_scales(1.5)


def test_presets_have_timm_sizes() -> None:
    sizes = {
        cls.name: (c.embed_dim, c.depth, c.num_heads)
        for cls in (VitTinyEncoder, VitSmallEncoder, VitBaseEncoder, VitLargeEncoder)
        for c in [cls.default_config()]
    }
    assert sizes == {
        "vit_tiny": (192, 12, 3),
        "vit_small": (384, 12, 6),
        "vit_base": (768, 12, 12),
        "vit_large": (1024, 24, 16),
    }
    assert set(polymodal.list_encoders("vit*")) >= {"vit", "vit_tiny", "vit_small", "vit_base", "vit_large"}


def test_parameter_names_map_one_to_one_onto_timm_vision_transformer() -> None:
    enc = TransformerEncoder({**SMALL, "pre_norm": True})
    vit = VisionTransformer(img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=4, pre_norm=True)
    timm_keys = {k for k in vit.state_dict() if k.startswith(("blocks.", "norm.", "norm_pre."))}
    assert set(enc.state_dict()) == timm_keys
    for k, v in enc.state_dict().items():
        assert v.shape == vit.state_dict()[k].shape, k


def test_options_build_the_requested_blocks() -> None:
    enc = _encoder(act_layer="quick_gelu", norm_eps=1e-5, layer_scale_init=0.1, final_norm=False)
    block = enc.blocks[0]
    assert isinstance(block.mlp.act, QuickGELU)
    assert block.norm1.eps == 1e-5 and isinstance(enc.norm, nn.Identity)
    assert torch.allclose(block.ls1.gamma, torch.full((32,), 0.1))
    tokens = [_masked(2, 5, [5, 3], "a")]
    assert _max_diff_to_reference(enc, tokens, enc(tokens)) <= 1e-5


def test_autocast_flag_changes_nothing_on_cpu() -> None:
    plain, amp = _encoder(), _encoder(autocast=True)
    amp.load_state_dict(plain.state_dict())
    tokens = [_masked(2, 5, [5, 3], "a")]
    out = amp(tokens)[0].embeddings
    assert out.dtype == torch.float32
    assert torch.equal(out, plain(tokens)[0].embeddings)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_autocast_on_cuda_is_close_and_keeps_the_input_dtype() -> None:  # pragma: no cover - GPU only
    plain, amp = _encoder().cuda(), _encoder(autocast=True).cuda()
    amp.load_state_dict(plain.state_dict())
    tokens = [_masked(3, 40, [40, 17, 3], "a").to("cuda")]
    out, ref = amp(tokens)[0].embeddings, plain(tokens)[0].embeddings
    assert out.dtype == torch.float32
    assert (out - ref).abs().max().item() < 0.1


def test_width_mismatch_and_empty_input() -> None:
    enc = _encoder()
    with pytest.raises(ValueError, match="vit: expected tokens of width 32, got 8 from 'text'"):
        enc([Tokens.full(torch.randn(1, 3, 8), "text")])
    with pytest.raises(TypeError, match="vit: expected a list of Tokens, got a Tensor in it"):
        enc([torch.randn(1, 3, 32)])
    assert enc([]) == []


def test_model_passes_all_inputs_through_one_packed_encoder_call() -> None:
    model = polymodal.build_model(
        modalities=["image"],
        encoder={"type": "vit", **SMALL},
        heads={"image": {"type": "classification", "num_classes": 3}},
    )
    model.eval()
    images = torch.randn(2, 3, 32, 48)
    tokens = model.tokenize({"image": images})["image"]
    encoded = model.encode({"image": images})["image"]
    assert encoded.prefix == 1 and encoded.embeddings.shape == (2, 7, 32)
    assert _max_diff_to_reference(model.encoder, [tokens], [encoded]) <= 1e-5
    assert model({"image": images})["image"].shape == (2, 3)
