"""The optimiser constructor: freezing, layer-wise lr decay, no weight decay on norms/biases/embeddings."""

from __future__ import annotations

import pytest
import torch

import polymodal
from polymodal.train.optim import PolymodalOptimWrapperConstructor, layer_lr_scales, param_groups

ENCODER = {"type": "vit", "embed_dim": 32, "depth": 3, "num_heads": 2}
HEADS = {"image": {"type": "classification", "num_classes": 4}}


def _model(**encoder: object) -> polymodal.MultimodalModel:
    return polymodal.build_model(encoder={**ENCODER, **encoder}, modalities=["image"], heads=HEADS)


def _lr_of(groups: list[dict]) -> dict[str, tuple[float, float]]:
    return {n: (g["lr"], g["weight_decay"]) for g in groups for n in g["names"]}


def test_layer_decay_scales_by_depth() -> None:
    model = _model()
    lrs = _lr_of(param_groups(model, lr=1.0, weight_decay=0.1, layer_decay=0.5))
    assert set(lrs) == {n for n, _ in model.named_parameters()}
    for i in range(3):  # block i of 3: 0.5 ** (3 - i)
        assert lrs[f"encoder.blocks.{i}.mlp.fc1.weight"] == (pytest.approx(0.5 ** (3 - i)), 0.1)
        assert lrs[f"encoder.blocks.{i}.mlp.fc1.bias"] == (
            pytest.approx(0.5 ** (3 - i)),
            0.0,
        )  # 1-D: no decay
    assert lrs["encoder.norm.weight"] == (1.0, 0.0)
    assert lrs["heads.image.fc.weight"] == (1.0, 0.1)
    assert lrs["tokenizers.image.proj.weight"] == (pytest.approx(0.5**4), 0.1)  # below the first block
    assert lrs["tokenizers.image.pos_embed"] == (pytest.approx(0.5**4), 0.0)  # embeddings: no weight decay
    assert lrs["cls_tokens.image"] == (pytest.approx(0.5**4), 0.0)
    assert lrs["modality_embeddings.image"] == (pytest.approx(0.5**4), 0.0)


def test_fallback_from_parameter_names_matches_the_encoder_method(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model()
    expected = layer_lr_scales(model, 0.7)
    monkeypatch.delattr(type(model.encoder).__mro__[0], "layer_lr_scales", raising=False)
    for cls in type(model.encoder).__mro__:
        if "layer_lr_scales" in cls.__dict__:
            monkeypatch.delattr(cls, "layer_lr_scales")
    assert not hasattr(model.encoder, "layer_lr_scales")
    assert layer_lr_scales(model, 0.7) == pytest.approx(expected)


def test_frozen_parameters_are_left_out() -> None:
    frozen = _model(freeze="frozen")
    names = {n for g in param_groups(frozen, lr=1.0, weight_decay=0.0) for n in g["names"]}
    assert names and not any(n.startswith("encoder.") for n in names)
    last = _model(freeze="last_k", tuned_blocks=1)
    names = {n for g in param_groups(last, lr=1.0, weight_decay=0.0) for n in g["names"]}
    assert any(n.startswith("encoder.blocks.2.") for n in names)
    assert not any(n.startswith(("encoder.blocks.0.", "encoder.blocks.1.")) for n in names)
    model = _model()
    names = {n for g in param_groups(model, 1.0, 0.0, freeze=["tokenizers.*"]) for n in g["names"]}
    assert not any(n.startswith("tokenizers.") for n in names)
    assert not model.tokenizers["image"].proj.weight.requires_grad
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(_model(), 1.0, 0.0, freeze=["*"])


def test_constructor_builds_an_optim_wrapper_with_lr_mult() -> None:
    model = _model()
    constructor = PolymodalOptimWrapperConstructor(
        dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=0.01, weight_decay=0.05)),
        dict(layer_decay=0.5, lr_mult={"heads.*": 10.0}),
    )
    wrapper = constructor(model)
    assert isinstance(wrapper.optimizer, torch.optim.AdamW)
    groups = wrapper.optimizer.param_groups
    assert groups[0]["lr"] == pytest.approx(0.1)  # the heads, largest lr first (mmengine logs group 0)
    head_weight = model.heads["image"].fc.weight
    (group,) = [g for g in groups if any(p is head_weight for p in g["params"])]
    assert group["lr"] == pytest.approx(0.1) and group["weight_decay"] == 0.05
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    with pytest.raises(ValueError, match=r"paramwise_cfg: unknown keys \['decay'\]"):
        PolymodalOptimWrapperConstructor(dict(optimizer=dict(type="SGD", lr=0.1)), dict(decay=0.5))
    with pytest.raises(ValueError, match=r"layer_decay must be in \(0, 1\], got 1.5"):
        layer_lr_scales(model, 1.5)
