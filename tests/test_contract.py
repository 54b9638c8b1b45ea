"""Registry-driven contract tests (timm's test_models.py is the model): every registered tokenizer and data
source passes polymodal.testing's checks; every built-in plugin loads."""

from __future__ import annotations

import pytest

import polymodal
from polymodal.testing import check_data_source, check_tokenizer

BUILTIN_MODALITIES = [
    "audio",
    "graph",
    "hyperspectral",
    "image",
    "imu",
    "infrared",
    "point_cloud",
    "tabular",
    "text",
    "time_series",
    "video",
    "xray",
]


def test_every_builtin_plugin_loads() -> None:
    infos = {p.name: p for p in polymodal.list_plugins()}
    failed = {n: i.error for n, i in infos.items() if i.distribution == "polymodal" and i.status != "loaded"}
    assert not failed
    assert sorted(polymodal.list_modalities()) == BUILTIN_MODALITIES


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


@pytest.mark.parametrize("name", polymodal.list_encoders())
def test_encoder_configs_round_trip(name: str) -> None:
    cls = polymodal.get("encoder", name)
    cfg = cls.default_config()
    assert cls.config_class.model_validate_json(cfg.model_dump_json()) == cfg
    assert cfg.embed_dim % cfg.num_heads == 0
