"""Registry-driven contract tests (timm's test_models.py is the model): every registered tokenizer, data source,
encoder and head passes polymodal.testing's checks (one test case per check for encoders and heads); every
built-in plugin loads."""

from __future__ import annotations

import pytest

import polymodal
from polymodal.testing import Check, check_data_source, check_tokenizer, encoder_checks, head_checks


def test_every_builtin_plugin_loads_and_each_modality_plugin_brings_a_tokenizer_and_data() -> None:
    builtins = [p for p in polymodal.list_plugins() if p.distribution == "polymodal"]
    failed = {p.name: p.error for p in builtins if p.status != "loaded"}
    assert not failed
    modality_plugins = [p for p in builtins if any(c in polymodal.list_tokenizers() for c in p.components)]
    assert len(modality_plugins) >= 12  # the built-in modalities, each declared as an entry point
    for plugin in modality_plugins:
        kinds = {
            kind
            for c in plugin.components
            for kind in ("tokenizer", "data source")
            if c in polymodal.registry.list_names(kind)
        }
        assert kinds == {"tokenizer", "data source"}, plugin.name


@pytest.mark.parametrize("name", polymodal.list_tokenizers())
def test_tokenizer_contract(name: str) -> None:
    tokens = check_tokenizer(name)
    assert tokens.embeddings.shape[-1] == 32


# a data source of the user's own data (a required config field, e.g. the folder of ``files``) has no defaults
# to check; tests/data checks it on files the tests write
DEFAULT_SOURCES = [
    name
    for name in polymodal.list_data_sources()
    if not any(f.is_required() for f in polymodal.get("data source", name).config_class.model_fields.values())
]


@pytest.mark.parametrize("name", DEFAULT_SOURCES)
def test_data_source_contract(name: str) -> None:
    check_data_source(name)


@pytest.mark.parametrize(
    "check", [c for name in polymodal.list_encoders() for c in encoder_checks(name)], ids=repr
)
def test_encoder_contract(check: Check) -> None:
    check()


@pytest.mark.parametrize("check", [c for name in polymodal.list_heads() for c in head_checks(name)], ids=repr)
def test_head_contract(check: Check) -> None:
    check()
