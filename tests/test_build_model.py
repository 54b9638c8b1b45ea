"""build_model from registry names, a dict, a ModelConfig and an mmengine config file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmengine.model import BaseModel
from pydantic import ValidationError

import polymodal
from polymodal.core.component import ModalityInputError
from polymodal.model.config import ModelConfig

SMALL = {"type": "vit", "embed_dim": 32, "depth": 2, "num_heads": 2}
HEADS = {"image": {"type": "classification", "num_classes": 10}}


def _check(model: polymodal.MultimodalModel, dim: int) -> None:
    assert isinstance(model, BaseModel)
    assert list(model.tokenizers) == ["image"] and list(model.heads) == ["image"]
    out = model({"image": torch.randn(2, 3, 32, 32)})
    assert set(out) == {"image"} and out["image"].shape == (2, 10)
    assert model.tokenizers["image"].proj.out_channels == dim


def test_from_registry_names() -> None:
    model = polymodal.build_model(modalities=["image"], encoder="vit_tiny", heads=HEADS)
    _check(model, 192)
    assert len(model.encoder.blocks) == 12


def test_from_dict_and_model_config() -> None:
    cfg = {"encoder": SMALL, "tokenizers": {"image": "image"}, "heads": HEADS}
    _check(polymodal.build_model(cfg), 32)
    _check(polymodal.build_model(ModelConfig.model_validate(cfg)), 32)
    # keyword arguments override the config
    model = polymodal.build_model(cfg, encoder={**SMALL, "embed_dim": 64})
    _check(model, 64)


def test_from_config_file(tmp_path: Path) -> None:
    base = tmp_path / "base.py"
    base.write_text(
        f"model = dict(type='MultimodalModel', encoder={SMALL!r}, tokenizers=dict(image='image'))\n"
    )
    child = tmp_path / "child.py"
    child.write_text(
        "_base_ = ['./base.py']\n"
        "model = dict(heads=dict(image=dict(type='classification', num_classes=10)))\n"
    )
    _check(polymodal.build_model(child), 32)
    _check(polymodal.build_model(str(child)), 32)


def test_bad_configs_fail_with_paths() -> None:
    with pytest.raises(
        ValidationError, match=r"tokenizers.image.patch_size\n  Input should be greater than 0"
    ):
        polymodal.build_model(modalities=["image"], tokenizers={"image": {"type": "image", "patch_size": 0}})
    with pytest.raises(ValidationError, match=r"unknown tokenizer 'imag'; did you mean 'image'\?"):
        polymodal.build_model(modalities=["imag"], encoder="vit_tiny")


def test_model_forward_errors_name_the_modality() -> None:
    model = polymodal.build_model(encoder=SMALL, modalities=["image"], heads=HEADS)
    with pytest.raises(
        ModalityInputError, match=r"^image: expected .*divisible by 16, got \(2, 3, 30, 32\)$"
    ):
        model({"image": torch.randn(2, 3, 30, 32)})
    with pytest.raises(KeyError, match=r"inputs: expected keys among \['image'\] .*got unknown \['audio'\]"):
        model({"audio": torch.randn(2, 100)})


def test_runner_registry_builds_the_model() -> None:
    from mmengine.registry import MODELS, DefaultScope

    with DefaultScope.overwrite_default_scope("polymodal"):
        model = MODELS.build(
            dict(type="MultimodalModel", encoder=SMALL, tokenizers={"image": "image"}, heads=HEADS)
        )
    _check(model, 32)


def test_from_pretrained_does_not_reread_the_encoders_original_checkpoint(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    encoder = polymodal.get("encoder", "vit").from_config(SMALL)
    ckpt = tmp_path / "enc.safetensors"
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, str(ckpt))
    model = polymodal.build_model(encoder={**SMALL, "pretrained": str(ckpt)}, modalities=["image"], heads=HEADS)
    model.save_pretrained(tmp_path / "saved")
    ckpt.unlink()
    again = polymodal.from_pretrained(tmp_path / "saved")
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(model.eval()({"image": x})["image"], again({"image": x})["image"])
