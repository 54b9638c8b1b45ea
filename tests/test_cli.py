"""The polymodal command line."""

from __future__ import annotations

import json

import pytest

from polymodal.cli import main


def test_list_plugins_shows_entry_point_plugins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "plugins"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("image "))
    assert line.split()[:4] == ["image", "loaded", "polymodal", "0.1.0"]
    assert "image, digits" in line


def test_list_encoders_with_filter(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "encoders", "vit_*"]) == 0
    names = [ln.split()[0] for ln in capsys.readouterr().out.splitlines()]
    assert names == ["vit_base", "vit_large", "vit_small", "vit_tiny"]


def test_list_modalities_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["modality", "tokenizers", "data", "sources"]
    assert any(ln.split()[:3] == ["image", "image", "digits"] for ln in out)


def test_info_prints_fields_and_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "image"]) == 0
    out = capsys.readouterr().out
    assert "tokenizer 'image': polymodal.plugins.image.ImageTokenizer" in out
    row = next(ln for ln in out.splitlines() if ln.strip().startswith("patch_size"))
    assert row.split()[:3] == ["patch_size", "int", "16"]


def test_info_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "vit_tiny", "--kind", "encoders", "--json"]) == 0
    out = capsys.readouterr().out
    schema = json.loads(out[out.index("{") :])
    assert schema["properties"]["embed_dim"]["default"] == 192
    assert schema["additionalProperties"] is False


def test_info_unknown_name_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "imge"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("polymodal: unknown component 'imge'; did you mean 'image'?")
    assert main(["info", "vit_tiny", "--kind", "heads"]) == 2
    assert "unknown head 'vit_tiny' Registered" in capsys.readouterr().err
