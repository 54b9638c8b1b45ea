"""ModelConfig: registry-backed resolution, nested error paths, JSON round trip, width wiring."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest
from pydantic import ValidationError

import polymodal
from polymodal.core.tokenizer import Tokenizer, TokenizerConfig
from polymodal.model.config import ModelConfig
from polymodal.plugins.image import ImageTokenizerConfig
from polymodal.registry import tables
from polymodal.registry.config import resolve_config

BASE = {
    "encoder": "vit_tiny",
    "tokenizers": {"image": {"type": "image", "patch_size": 8}},
    "heads": {"image": {"type": "classification", "num_classes": 10}},
}


def errors(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[str, str]]:
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in exc.value.errors()]


def test_names_and_dicts_resolve_to_the_registered_config_classes() -> None:
    cfg = ModelConfig.model_validate(BASE)
    assert type(cfg.tokenizers["image"]) is ImageTokenizerConfig
    assert cfg.tokenizers["image"].patch_size == 8
    assert cfg.encoder.type == "vit_tiny" and cfg.encoder.embed_dim == 192 and cfg.encoder.num_heads == 3
    # widths follow the encoder unless set
    assert cfg.tokenizers["image"].embed_dim == 192 and cfg.heads["image"].embed_dim == 192


def test_nested_errors_keep_their_path() -> None:
    bad = {**BASE, "tokenizers": {"image": {"type": "image", "patch_size": 0}}}
    with pytest.raises(ValidationError) as exc:
        ModelConfig.model_validate(bad)
    assert errors(exc) == [("tokenizers.image.patch_size", "Input should be greater than 0")]
    assert "tokenizers.image.patch_size\n  Input should be greater than 0" in str(exc.value)


def test_unknown_fields_and_names_are_errors_with_paths() -> None:
    with pytest.raises(ValidationError) as exc:
        ModelConfig.model_validate({**BASE, "tokenizers": {"image": {"type": "image", "patch": 8}}})
    assert errors(exc) == [("tokenizers.image.patch", "Extra inputs are not permitted")]
    with pytest.raises(ValidationError) as exc:
        ModelConfig.model_validate({**BASE, "encoder": "vit_tinny"})
    ((loc, msg),) = errors(exc)
    assert loc == "encoder"
    assert msg.startswith("Value error, unknown encoder 'vit_tinny'; did you mean 'vit_tiny'?")
    with pytest.raises(ValidationError) as exc:
        ModelConfig.model_validate({**BASE, "heads": {"image": {"num_classes": 3}}})
    assert errors(exc)[0][0] == "heads.image"
    assert "a head entry needs a 'type'" in errors(exc)[0][1]
    with pytest.raises(ValidationError) as exc:
        ModelConfig.model_validate({**BASE, "unknown": 1})
    assert errors(exc) == [("unknown", "Extra inputs are not permitted")]


def test_json_round_trip_keeps_subclass_fields() -> None:
    cfg = ModelConfig.model_validate(BASE)
    text = cfg.model_dump_json()
    data = json.loads(text)
    assert data["tokenizers"]["image"]["patch_size"] == 8
    assert data["encoder"]["depth"] == 12
    assert data["heads"]["image"]["num_classes"] == 10
    again = ModelConfig.model_validate_json(text)
    assert again == cfg
    assert again.model_dump_json() == text


def test_a_component_registered_later_is_accepted() -> None:
    class LateConfig(TokenizerConfig):
        type: str = "late_tok"
        width: int = 3

    class LateTokenizer(Tokenizer):
        name: ClassVar[str] = "late_tok"
        config_class = LateConfig

    with pytest.raises(ValidationError, match="unknown tokenizer 'late_tok'"):
        ModelConfig.model_validate({"encoder": "vit_tiny", "tokenizers": {"x": {"type": "late_tok"}}})
    polymodal.register(LateTokenizer)
    try:
        cfg = ModelConfig.model_validate(
            {"encoder": "vit_tiny", "tokenizers": {"x": {"type": "late_tok", "width": 5}}}
        )
        assert isinstance(cfg.tokenizers["x"], LateConfig) and cfg.tokenizers["x"].width == 5
        assert ModelConfig.model_validate_json(cfg.model_dump_json()) == cfg
    finally:
        tables.unregister("tokenizer", "late_tok")


def test_explicit_width_must_match_the_encoder() -> None:
    bad = {**BASE, "tokenizers": {"image": {"type": "image", "embed_dim": 384}}}
    with pytest.raises(
        ValidationError, match=r"tokenizers.image.embed_dim is 384 but the encoder 'vit_tiny' has width 192"
    ):
        ModelConfig.model_validate(bad)
    ok = {**BASE, "tokenizers": {"image": {"type": "image", "embed_dim": 192}}}
    assert ModelConfig.model_validate(ok).tokenizers["image"].embed_dim == 192


def test_head_must_read_an_existing_input() -> None:
    bad = {**BASE, "heads": {"digits": {"type": "classification", "num_classes": 10}}}
    with pytest.raises(
        ValidationError,
        match=r"heads.digits reads inputs \['digits'\], which have no tokenizer; inputs: image",
    ):
        ModelConfig.model_validate(bad)
    ok = {**BASE, "heads": {"digits": {"type": "classification", "num_classes": 10, "modality": "image"}}}
    cfg = ModelConfig.model_validate(ok)
    assert cfg.input_of("digits") == "image"


def test_config_objects_are_accepted_and_checked() -> None:
    tok = ImageTokenizerConfig(patch_size=4)
    cfg = ModelConfig(encoder="vit_tiny", tokenizers={"image": tok})  # type: ignore[arg-type]
    assert cfg.tokenizers["image"].patch_size == 4 and cfg.tokenizers["image"].embed_dim == 192
    assert (
        tok.embed_dim == 768 and "embed_dim" not in tok.model_fields_set
    )  # the caller's object is untouched
    assert resolve_config("encoder", "vit_small").embed_dim == 384


def test_a_bool_is_refused_where_a_config_wants_a_number() -> None:
    bad = {**BASE, "heads": {"image": {"type": "classification", "num_classes": True}}}
    with pytest.raises(ValidationError) as exc:
        ModelConfig.model_validate(bad)
    assert errors(exc) == [
        ("heads.image.num_classes", "Value error, num_classes: expected an integer, got the bool True")
    ]
    with pytest.raises(
        ValidationError
    ) as exc:  # every component config: int | None, float, tuple[float, ...]
        ModelConfig.model_validate(
            {
                **BASE,
                "tokenizers": {
                    "image": {"type": "image", "patch_size": False, "mean": (True, 0.5, 0.5)},
                    "series": {"type": "time_series", "channels": True},
                },
                "heads": {"image": {"type": "classification", "num_classes": 3, "dropout": False}},
            }
        )
    assert sorted(errors(exc)) == [
        ("heads.image.dropout", "Value error, dropout: expected a number, got the bool False"),
        (
            "tokenizers.image.mean",
            "Value error, mean: expected a number at position 0, got a bool in (True, 0.5, 0.5)",
        ),
        ("tokenizers.image.patch_size", "Value error, patch_size: expected an integer, got the bool False"),
        ("tokenizers.series.channels", "Value error, channels: expected an integer, got the bool True"),
    ]
    tok = ImageTokenizerConfig(patch_size=4)
    with pytest.raises(ValidationError, match="patch_size: expected an integer, got the bool True"):
        tok.patch_size = True  # assignments are validated too
    # bools stay bools, numbers stay numbers, and JSON round trips are untouched
    cfg = ModelConfig.model_validate(
        {**BASE, "heads": {"image": {"type": "classification", "num_classes": 2, "multi_label": True}}}
    )
    assert cfg.heads["image"].multi_label is True and cfg.heads["image"].num_classes == 2
    assert ModelConfig.model_validate_json(cfg.model_dump_json()) == cfg
    assert ImageTokenizerConfig(mean=[0.5, 0.5, 0.5]).mean == (
        0.5,
        0.5,
        0.5,
    )  # lax lists for tuples still work
