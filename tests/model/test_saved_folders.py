"""Folders written by save_pretrained, read back by from_pretrained when they are damaged, edited, tampered with,
moved, or hold files the config refers to: every refusal names the file and says what was expected."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import polymodal
from polymodal.core.component import local_file_fields
from polymodal.model.checkpoint import atomic_write, config_sha256

from .conftest import TableConfig

SMALL = {"type": "vit", "embed_dim": 16, "depth": 1, "num_heads": 2}


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def _table(path: Path, values: list[float]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(map(str, values)) + "\n")
    return path


def _model(a: Path, b: Path | None = None) -> polymodal.MultimodalModel:
    tokenizers: dict[str, Any] = {"a": {"type": "test_lookup", "table_file": str(a), "notes": str(a)}}
    heads: dict[str, Any] = {"a": {"type": "classification", "num_classes": 3}}
    if b is not None:
        tokenizers["b"] = {"type": "test_lookup", "table_file": str(b)}
        heads["b"] = {"type": "regression"}
    return polymodal.build_model({"encoder": SMALL, "tokenizers": tokenizers, "heads": heads}).eval()


def _saved(tmp_path: Path) -> tuple[Path, polymodal.MultimodalModel]:
    model = _model(_table(tmp_path / "src" / "table.txt", [1.0, 2.0, 3.0, 4.0]))
    return model.save_pretrained(tmp_path / "saved"), model


def _rewrite_weights(folder: Path, change: Any = None, **metadata: str | None) -> None:
    """Rewrite model.safetensors with ``change(state)`` applied and its metadata updated (``None``: removed)."""
    path = folder / "model.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta = {**f.metadata(), **metadata}
        state = {k: f.get_tensor(k) for k in f.keys()}
    if change is not None:
        change(state)
    save_file(state, str(path), metadata={k: v for k, v in meta.items() if v is not None})


def test_local_file_fields_are_found_through_the_marker() -> None:
    assert local_file_fields(TableConfig) == ["table_file"]  # not 'notes', although it holds a path too


# -- item 4: a saved folder is portable ----------------------------------------------------------------------


def test_files_a_config_refers_to_are_copied_and_the_folder_can_move(tmp_path: Path) -> None:
    src_a = _table(tmp_path / "src" / "a" / "table.txt", [1.0, 2.0, 3.0, 4.0])
    src_b = _table(tmp_path / "src" / "b" / "table.txt", [0.5, 0.25, 2.0])  # same file name, other content
    model = _model(src_a, src_b)
    ids = {"a": torch.tensor([[0, 3, 1]]), "b": torch.tensor([[2, 1]])}
    expected = model(ids)
    saved = model.save_pretrained(tmp_path / "out" / "model")
    config = json.loads((saved / "config.json").read_text())
    assert config["tokenizers"]["a"]["table_file"] == "files/table.txt"
    assert config["tokenizers"]["b"]["table_file"] == "files/table-2.txt"
    assert config["tokenizers"]["a"]["notes"] == str(src_a)  # only LocalFile fields are rewritten
    assert (saved / "files" / "table.txt").read_text() == src_a.read_text()
    assert (saved / "files" / "table-2.txt").read_text() == src_b.read_text()
    assert str(model.config.tokenizers["a"].table_file) == str(src_a)  # the live model's config is untouched

    shutil.move(tmp_path / "out", tmp_path / "elsewhere")
    shutil.rmtree(tmp_path / "src")  # the original files are gone
    moved = tmp_path / "elsewhere" / "model"
    again = polymodal.from_pretrained(moved)
    assert again.config.tokenizers["a"].table_file == str(moved / "files" / "table.txt")
    out = again(ids)
    assert all(torch.equal(out[k], expected[k]) for k in expected)
    only_b = polymodal.from_pretrained(moved, modalities=["b"])
    assert torch.equal(only_b({"b": ids["b"]})["b"], expected["b"])

    # saved again from the moved copy (into its own folder): the files stay, the names stay relative
    again.save_pretrained(moved)
    assert (
        json.loads((moved / "config.json").read_text())["tokenizers"]["a"]["table_file"] == "files/table.txt"
    )
    assert torch.equal(polymodal.from_pretrained(moved)(ids)["a"], expected["a"])


def test_a_copied_file_that_was_changed_or_removed_is_refused(tmp_path: Path) -> None:
    saved, _ = _saved(tmp_path)
    copy = saved / "files" / "table.txt"
    copy.write_text("9\n9\n9\n9\n")
    with pytest.raises(
        ValueError, match=r"table\.txt: not the file saved with .*model\.safetensors \(its SHA-256"
    ):
        polymodal.from_pretrained(saved)
    copy.unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"config\.json: tokenizers\.a\.table_file names 'files/table\.txt', but .*table\.txt does not "
        r"exist; expected the file save_pretrained copied into the folder",
    ):
        polymodal.from_pretrained(saved)


def test_a_file_name_leading_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    saved, _ = _saved(tmp_path)
    config = json.loads((saved / "config.json").read_text())
    config["tokenizers"]["a"]["table_file"] = "../src/table.txt"
    (saved / "config.json").write_text(json.dumps(config))
    _rewrite_weights(saved, polymodal_config_sha256=config_sha256(config))  # consistent, but hostile
    with pytest.raises(
        ValueError,
        match=r"tokenizers\.a\.table_file is '\.\./src/table\.txt', which leads out of the folder; expected the "
        "name of a file inside it",
    ):
        polymodal.from_pretrained(saved)


def test_saving_a_config_whose_file_is_missing_names_the_field(tmp_path: Path) -> None:
    src = _table(tmp_path / "table.txt", [1.0, 2.0])
    model = _model(src)
    src.unlink()
    with pytest.raises(
        FileNotFoundError, match=r"save_pretrained: tokenizers\.a\.table_file names .*table\.txt"
    ):
        model.save_pretrained(tmp_path / "saved")


def test_text_vocabulary_moves_with_the_model(tmp_path: Path) -> None:
    # what `polymodal demo` saves: a text tokenizer with a word vocabulary file written next to the run
    pytest.importorskip("tokenizers")
    if "text" not in polymodal.list_tokenizers():
        pytest.skip("the text plugin is blocked")
    vocab = tmp_path / "run" / "text_vocab.txt"
    vocab.parent.mkdir()
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[SEP]", "the", "cat", "sat"]) + "\n")
    model = polymodal.build_model(
        {
            "encoder": SMALL,
            "tokenizers": {"text": {"type": "text", "vocabulary": "wordpiece", "vocab_file": str(vocab)}},
            "heads": {"text": {"type": "classification", "num_classes": 2}},
        }
    ).eval()
    expected = model({"text": ["the cat sat", "sat"]})["text"]
    model.save_pretrained(tmp_path / "demo_out" / "model")
    shutil.move(tmp_path / "demo_out", tmp_path / "moved")
    shutil.rmtree(tmp_path / "run")
    again = polymodal.from_pretrained(tmp_path / "moved" / "model")
    assert torch.equal(again({"text": ["the cat sat", "sat"]})["text"], expected)


def test_files_get_the_permissions_of_the_umask(tmp_path: Path, umask_022: None) -> None:
    saved, _ = _saved(tmp_path)
    for name in ("config.json", "model.safetensors", "files/table.txt"):
        assert stat.S_IMODE((saved / name).stat().st_mode) == 0o644, name
    atomic_write(tmp_path / "x.bin", lambda tmp: Path(tmp).write_bytes(b"x"))
    assert stat.S_IMODE((tmp_path / "x.bin").stat().st_mode) == 0o644
    os.umask(0o077)
    atomic_write(tmp_path / "private.bin", lambda tmp: Path(tmp).write_bytes(b"x"))
    assert stat.S_IMODE((tmp_path / "private.bin").stat().st_mode) == 0o600


# -- item 3: the config's content, not its formatting; weights the config's model does not have --------------


def test_a_reindented_config_loads_and_a_changed_one_is_refused(tmp_path: Path) -> None:
    saved, model = _saved(tmp_path)
    ids = {"a": torch.tensor([[0, 1, 2]])}
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps(config, indent=4, sort_keys=True) + "\n")
    assert torch.equal(polymodal.from_pretrained(saved)(ids)["a"], model(ids)["a"])
    (saved / "config.json").write_text(json.dumps(config, separators=(",", ":")))
    assert torch.equal(polymodal.from_pretrained(saved)(ids)["a"], model(ids)["a"])
    config["heads"]["a"]["dropout"] = 0.5  # same shapes, other content
    (saved / "config.json").write_text(json.dumps(config, indent=2))
    with pytest.raises(ValueError, match=r"config\.json and model\.safetensors come from different saves"):
        polymodal.from_pretrained(saved)


def test_a_folder_saved_with_the_text_hash_still_loads(tmp_path: Path) -> None:
    saved, model = _saved(tmp_path)
    text = (saved / "config.json").read_text()
    _rewrite_weights(
        saved, polymodal_config_sha256=hashlib.sha256(text.encode()).hexdigest()
    )  # earlier saves
    ids = {"a": torch.tensor([[3, 2]])}
    assert torch.equal(polymodal.from_pretrained(saved)(ids)["a"], model(ids)["a"])


def test_nan_and_inf_weights_are_refused_naming_the_tensors(tmp_path: Path) -> None:
    saved, _ = _saved(tmp_path)

    def poison(state: dict[str, torch.Tensor]) -> None:
        state["heads.a.fc.weight"] = state["heads.a.fc.weight"].clone()
        state["heads.a.fc.weight"][0, :2] = torch.tensor([float("nan"), float("inf")])
        state["encoder.norm.bias"] = torch.full_like(state["encoder.norm.bias"], float("-inf"))

    keys = set(polymodal.from_pretrained(saved).state_dict())
    assert {"heads.a.fc.weight", "encoder.norm.bias"} <= keys
    _rewrite_weights(saved, poison)
    with pytest.raises(ValueError) as info:
        polymodal.from_pretrained(saved)
    message = str(info.value)
    assert message.startswith(
        f"{saved / 'model.safetensors'}: expected finite weights, got NaN or Inf in 2 tensors:"
    )
    assert (
        "encoder.norm.bias (0 NaN, 16 Inf of 16)" in message
        and "heads.a.fc.weight (1 NaN, 1 Inf of 48)" in message
    )


def test_weights_the_model_does_not_have_are_refused(tmp_path: Path) -> None:
    src = _table(tmp_path / "src" / "table.txt", [1.0, 2.0, 3.0])
    saved = _model(src, src).save_pretrained(tmp_path / "saved")

    def add(state: dict[str, torch.Tensor]) -> None:
        state["encoder.blocks.7.attn.qkv.weight"] = torch.zeros(48, 16)
        state["stowaway"] = torch.zeros(1)

    _rewrite_weights(saved, add)
    pattern = (
        r"model\.safetensors: expected only the weights of the model in config\.json, got 2 keys it does not "
        r"have: encoder\.blocks\.7\.attn\.qkv\.weight, stowaway"
    )
    with pytest.raises(ValueError, match=pattern):
        polymodal.from_pretrained(saved)
    # keeping only input 'a': the weights of 'b' are expected to be left unread, the others are still extra
    with pytest.raises(ValueError, match=pattern):
        polymodal.from_pretrained(saved, modalities=["a"])
    _rewrite_weights(saved, lambda s: [s.pop("stowaway"), s.pop("encoder.blocks.7.attn.qkv.weight")])
    only_a = polymodal.from_pretrained(saved, modalities=["a"])
    assert list(only_a.tokenizers) == ["a"]


def test_weights_of_other_shapes_are_refused_naming_them(tmp_path: Path) -> None:
    saved, _ = _saved(tmp_path)
    _rewrite_weights(saved, lambda s: s.__setitem__("heads.a.fc.weight", torch.zeros(5, 16)))
    with pytest.raises(
        ValueError,
        match=r"model\.safetensors: expected the shapes of the model in config\.json, got 1 weights of other "
        r"shapes: heads\.a\.fc\.weight: file \(5, 16\) vs model \(3, 16\)",
    ):
        polymodal.from_pretrained(saved)


# -- item 2: damaged files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0, 5, 60, 0.5, -1])
def test_a_truncated_weights_file_is_named(tmp_path: Path, keep: float) -> None:
    saved, _ = _saved(tmp_path)
    path = saved / "model.safetensors"
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else (len(data) + keep if keep < 0 else keep)
    path.write_bytes(data[:n])
    with pytest.raises(
        ValueError,
        match=rf"^{re.escape(str(path))}: expected a complete safetensors file written by save_pretrained, got one that cannot be "
        r"read \(.+; the file may be truncated or damaged\); save the model again$",
    ):
        polymodal.from_pretrained(saved)


@pytest.mark.parametrize(
    ("text", "got"),
    [
        ('{"encoder": {"type": "vit", "embed_dim"', r"got invalid JSON \(Expecting ':' delimiter at line 1"),
        ("", r"got invalid JSON \(Expecting value at line 1, column 1"),
        (
            "[1, 2]",
            r"expected a JSON object \(the model config written by save_pretrained\), got a JSON array",
        ),
        ('"config"', r"expected a JSON object .*, got a JSON string"),
        (
            '{"tokenizers": [1]}',
            r"expected 'tokenizers' to be an object \(input key -> tokenizer\), got a JSON array",
        ),
        ('{"encoder": "vit_tiny"}', r"expected 'tokenizers' to be an object .*, got no 'tokenizers'"),
    ],
)
def test_a_damaged_config_is_named(tmp_path: Path, text: str, got: str) -> None:
    saved, _ = _saved(tmp_path)
    (saved / "config.json").write_text(text)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(saved / 'config.json'))}: .*{got}"):
        polymodal.from_pretrained(saved)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(saved / 'config.json'))}: .*{got}"):
        polymodal.from_pretrained(saved, modalities=["a"])


def test_a_config_that_is_not_utf8_or_not_a_model_config_is_named(tmp_path: Path) -> None:
    saved, _ = _saved(tmp_path)
    (saved / "config.json").write_bytes(b'{"a": "\xff"}')
    with pytest.raises(
        ValueError, match=rf"^{re.escape(str(saved / 'config.json'))}: expected the UTF-8 JSON model config"
    ):
        polymodal.from_pretrained(saved)
    (saved / "config.json").write_text(json.dumps({"tokenizers": {"a": "test_lookup"}, "colour": "red"}))
    _rewrite_weights(saved, polymodal_config_sha256=None)  # no recorded hash: an old or foreign save
    with pytest.raises(
        ValueError, match=rf"(?s)^{re.escape(str(saved / 'config.json'))}: not a valid model config: .*colour"
    ):
        polymodal.from_pretrained(saved)
