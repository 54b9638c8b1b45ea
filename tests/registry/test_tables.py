"""Registry tables: register, duplicates, names, lookups with suggestions, list_* filters."""

from __future__ import annotations

from typing import ClassVar

import pytest

import polymodal
from polymodal.core.heads import ClassificationHead, HeadConfig
from polymodal.core.tokenizer import Tokenizer, TokenizerConfig
from polymodal.registry import tables
from polymodal.registry.errors import DuplicateNameError, InvalidComponentError, UnknownNameError


class _Cfg(TokenizerConfig):
    type: str = "toy_seq"


def _tokenizer_class(name: str) -> type[Tokenizer]:
    return type(f"Toy_{name}", (Tokenizer,), {"name": name, "config_class": _Cfg})


@pytest.fixture
def cleanup():
    added: list[tuple[str, str]] = []
    yield added
    for kind, name in added:
        tables.unregister(kind, name)


def test_register_routes_by_kind_and_is_found(cleanup) -> None:
    cls = _tokenizer_class("toy_seq")
    assert polymodal.register(cls) is cls
    cleanup.append(("tokenizer", "toy_seq"))
    assert polymodal.get("tokenizer", "toy_seq") is cls
    assert "toy_seq" in polymodal.list_tokenizers()
    assert "toy_seq" in polymodal.list_modalities()
    assert tables.TOKENIZERS.get("toy_seq") is cls
    assert "register() in" in tables.SOURCES[("tokenizer", "toy_seq")]


def test_duplicate_name_names_both_sources(cleanup) -> None:
    polymodal.register(_tokenizer_class("toy_dup"))
    cleanup.append(("tokenizer", "toy_dup"))
    with pytest.raises(DuplicateNameError) as exc:
        polymodal.register(_tokenizer_class("toy_dup"))
    msg = str(exc.value)
    assert "tokenizer 'toy_dup'" in msg
    assert msg.count("Toy_toy_dup") == 2 and "test_tables.py" in msg


def test_duplicate_of_builtin_names_the_plugin() -> None:
    with pytest.raises(DuplicateNameError, match=r"already registered by plugin 'image'"):
        polymodal.register(_tokenizer_class("image"))
    assert polymodal.get("tokenizer", "image").__module__ == "polymodal.plugins.image"


def test_registering_the_same_class_twice_is_idempotent(cleanup) -> None:
    cls = _tokenizer_class("toy_same")
    polymodal.register(cls)
    cleanup.append(("tokenizer", "toy_same"))
    polymodal.register(cls)
    assert polymodal.list_tokenizers("toy_same") == ["toy_same"]


@pytest.mark.parametrize("bad", ["Image", "1abc", "my.tok", "my-tok", "", "_x"])
def test_bad_names_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidComponentError, match=r"must match \^\[a-z\]"):
        polymodal.register(_tokenizer_class(bad))


def test_non_components_are_rejected() -> None:
    with pytest.raises(
        InvalidComponentError, match="expected a Tokenizer, Encoder, Head, DataSource or Metric subclass"
    ):
        polymodal.register(int)  # type: ignore[arg-type]

    class NoConfig(ClassificationHead):
        name: ClassVar[str] = "no_config"
        config_class = dict  # type: ignore[assignment]

    with pytest.raises(InvalidComponentError, match="config_class must be a ComponentConfig subclass"):
        polymodal.register(NoConfig)


def test_unknown_name_suggests_and_lists() -> None:
    with pytest.raises(UnknownNameError) as exc:
        polymodal.get("encoder", "vit_tinyy")
    msg = str(exc.value)
    assert msg.startswith("unknown encoder 'vit_tinyy'; did you mean 'vit_tiny'?")
    assert "Registered (5): vit, vit_base, vit_large, vit_small, vit_tiny" in msg
    assert exc.value.suggestions[0] == "vit_tiny"


def test_unknown_name_without_close_match_still_lists() -> None:
    with pytest.raises(UnknownNameError, match=r"^unknown head 'zzz' Registered \(\d+\): .*classification"):
        polymodal.get("head", "zzz")


def test_lookup_never_imports_dotted_paths() -> None:
    with pytest.raises(UnknownNameError):
        polymodal.get("tokenizer", "polymodal.plugins.image.ImageTokenizer")
    with pytest.raises(UnknownNameError, match="unknown component kind 'tokenizers'"):
        polymodal.get("tokenizers", "image")


def test_list_filters_are_fnmatch_with_natural_sort(cleanup) -> None:
    for n in ("toy10", "toy2", "toy1"):
        polymodal.register(_tokenizer_class(n))
        cleanup.append(("tokenizer", n))
    assert polymodal.list_tokenizers("toy*") == ["toy1", "toy2", "toy10"]
    assert polymodal.list_tokenizers("toy*", exclude_filters="toy1*") == ["toy2"]
    assert polymodal.list_tokenizers(["toy2", "toy10"]) == ["toy2", "toy10"]
    assert polymodal.list_encoders("vit_*") == ["vit_base", "vit_large", "vit_small", "vit_tiny"]
    assert polymodal.list_encoders("vit_*", exclude_filters=["*large"]) == [
        "vit_base",
        "vit_small",
        "vit_tiny",
    ]
    assert "classification" in polymodal.list_heads()
    assert "digits" in polymodal.list_data_sources()


def test_head_routing() -> None:
    class ToyHeadConfig(HeadConfig):
        type: str = "toy_head"

    class ToyHead(ClassificationHead):
        name: ClassVar[str] = "toy_head"

    ToyHead.config_class = ToyHeadConfig  # type: ignore[assignment]
    try:
        polymodal.register(ToyHead)
        assert polymodal.list_heads("toy_*") == ["toy_head"]
        assert "toy_head" not in polymodal.list_tokenizers()
    finally:
        tables.unregister("head", "toy_head")
