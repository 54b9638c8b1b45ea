"""Whole models and encoder weights on the Hugging Face Hub, tested offline: never a network call.

Every test runs with ``socket`` blocked and recorded (a connection attempt fails the test), a Hugging Face cache in a
temporary folder laid out as ``huggingface_hub`` lays it out (``models--org--name/blobs/``, ``snapshots/<commit>/``
linking to the blobs, ``refs/<branch>``), and ``HF_HUB_OFFLINE=1``. Pushing goes to a local stand-in for ``HfApi``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from huggingface_hub import HfApi, constants
from huggingface_hub.repocard import metadata_load
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer

import polymodal
from polymodal.core.encoders import TransformerEncoder
from polymodal.model.hub import HUB_FILES, model_card

SMALL = {"type": "vit", "embed_dim": 16, "depth": 1, "num_heads": 2}
SAFETY_OFF = re.compile(r"weights_only\s*=\s*False|trust_remote_code|allow_pickle|unsafe", re.IGNORECASE)


# -- no network, and a Hugging Face cache of our own -------------------------------------------------------------


@pytest.fixture(autouse=True)
def network_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every socket a test opens (or name it resolves) is recorded and refused; the test fails if there was one."""
    calls: list[str] = []

    def refuse(name: str) -> Any:
        def blocked(*args: Any, **kwargs: Any) -> Any:
            calls.append(f"{name}{args[:2]}")
            raise OSError(f"network access in a test: {name}{args[:2]}")

        return blocked

    for name in ("socket", "create_connection", "getaddrinfo"):
        monkeypatch.setattr(socket, name, refuse(name))
    yield calls
    assert not calls, f"the test tried the network: {calls}"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache used by default (``HF_HUB_CACHE``), downloads off, and a working folder that
    holds no ``org/…`` folder."""
    hub = tmp_path / "hf" / "hub"
    hub.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))  # huggingface_hub reads the variable at import
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return hub


def put_in_cache(
    cache: Path, repo_id: str, folder: Path, revision: str = "main", commit: str | None = None
) -> Path:
    """Lay ``folder`` out in ``cache`` as ``huggingface_hub`` does after a download: each file's bytes in
    ``blobs/<sha256>``, ``snapshots/<commit>/<path>`` a relative link to it, ``refs/<revision>`` the commit."""
    commit = commit or hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()
    storage = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = storage / "snapshots" / commit
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / revision).write_text(commit)
    return snapshot


# -- models ------------------------------------------------------------------------------------------------------


def _model(
    table: Path, seed: int = 0, scales: tuple[float, ...] = (1.0, 2.0, 3.0)
) -> polymodal.MultimodalModel:
    table.parent.mkdir(parents=True, exist_ok=True)
    table.write_text("\n".join(map(str, scales)) + "\n")
    torch.manual_seed(seed)
    return polymodal.build_model(
        tokenizers={"a": {"type": "test_lookup", "table_file": str(table)}, "b": "tabular"},
        encoder=SMALL,
        heads={
            "a": {"type": "classification", "num_classes": 3},
            "b": {"type": "regression", "out_dim": 2},
            "tags": {"type": "classification", "num_classes": 4, "multi_label": True, "modality": "a"},
        },
    ).eval()


IDS = torch.tensor([[0, 2, 1], [1, 1, 0]])


def _outputs(model: polymodal.MultimodalModel) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return model({"a": IDS})


def _assert_same(loaded: polymodal.MultimodalModel, model: polymodal.MultimodalModel) -> None:
    assert loaded.config_json() != ""  # built
    want, got = model.state_dict(), loaded.state_dict()
    assert list(got) == list(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    out, ref = _outputs(loaded), _outputs(model)
    assert set(out) == set(ref) == {"a", "tags"}
    assert all(torch.equal(out[k], ref[k]) for k in ref)


def test_the_network_guard_is_not_vacuous(network_calls: list[str]) -> None:
    with pytest.raises(OSError, match="network access in a test"):
        socket.create_connection(("huggingface.co", 443))
    assert network_calls == ["create_connection(('huggingface.co', 443),)"]
    network_calls.clear()


# -- reading a repo from the cache -------------------------------------------------------------------------------


def test_a_cached_hub_repo_loads_equal_to_the_saved_model(tmp_path: Path, cache: Path) -> None:
    model = _model(tmp_path / "src" / "table.txt", scales=(1.0, -2.0, 0.5))
    saved = model.save_pretrained(tmp_path / "saved")
    snapshot = put_in_cache(cache, "org/name", saved)
    assert (snapshot / "files" / "table.txt").is_symlink()  # the cache's layout: links into blobs/

    loaded = polymodal.from_pretrained("org/name")
    _assert_same(loaded, model)
    assert loaded.config.tokenizers["a"].table_file == str(snapshot / "files" / "table.txt")
    assert torch.equal(loaded.tokenizers["a"].scale, torch.tensor([1.0, -2.0, 0.5]))
    assert not loaded.training
    only_a = polymodal.MultimodalModel.from_pretrained("org/name", modalities=["a"])
    assert set(only_a.tokenizers) == {"a"} and set(only_a.heads) == {"a", "tags"}


def test_a_local_folder_is_the_first_meaning_of_a_name(tmp_path: Path, cache: Path) -> None:
    hub_model = _model(tmp_path / "hub" / "table.txt", seed=1)
    put_in_cache(cache, "org/name", hub_model.save_pretrained(tmp_path / "hub_saved"))
    local_model = _model(tmp_path / "local" / "table.txt", seed=2)
    local_model.save_pretrained(Path("org/name"))  # relative to the working folder

    _assert_same(polymodal.from_pretrained("org/name"), local_model)
    shutil.rmtree("org")
    _assert_same(polymodal.from_pretrained("org/name"), hub_model)
    with pytest.raises(ValueError, match=r"a local folder, but revision='v1' was given"):
        polymodal.from_pretrained(tmp_path / "hub_saved", revision="v1")


def test_revision_and_cache_dir_select_the_snapshot(tmp_path: Path, cache: Path) -> None:
    main, tagged = _model(tmp_path / "m" / "t.txt", seed=3), _model(tmp_path / "v" / "t.txt", seed=4)
    put_in_cache(cache, "org/name", main.save_pretrained(tmp_path / "main"))
    commit = "a" * 40
    put_in_cache(cache, "org/name", tagged.save_pretrained(tmp_path / "v1"), revision="v1", commit=commit)

    _assert_same(polymodal.from_pretrained("org/name"), main)
    _assert_same(polymodal.from_pretrained("org/name", revision="v1"), tagged)
    _assert_same(polymodal.from_pretrained("org/name", revision=commit), tagged)

    other = tmp_path / "other_cache"
    put_in_cache(other, "org/elsewhere", tagged.save_pretrained(tmp_path / "again"))
    with pytest.raises(FileNotFoundError, match="'org/elsewhere'"):
        polymodal.from_pretrained("org/elsewhere")  # not in the default cache
    _assert_same(polymodal.from_pretrained("org/elsewhere", cache_dir=other), tagged)


def test_local_files_only_reads_the_cache_without_the_environment_variable(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    model = _model(tmp_path / "t.txt")
    put_in_cache(cache, "org/name", model.save_pretrained(tmp_path / "saved"))
    _assert_same(polymodal.from_pretrained("org/name", local_files_only=True), model)
    with pytest.raises(FileNotFoundError) as info:
        polymodal.from_pretrained("org/missing", local_files_only=True)
    message = str(info.value)
    assert "downloads are off (local_files_only=True)" in message
    assert "run once with downloads on (local_files_only=False)" in message


def test_offline_and_not_cached_names_the_repo_and_how_to_get_it(cache: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        polymodal.from_pretrained("org/missing", revision="v2")
    message = str(info.value)
    assert message.startswith(
        "Hub repo 'org/missing' at revision 'v2': expected config.json and model.safetensors"
    )
    assert f"in the Hugging Face cache ({cache})" in message
    assert "downloads are off (HF_HUB_OFFLINE is set)" in message
    assert "run once with downloads on (HF_HUB_OFFLINE unset)" in message
    assert "`hf download org/missing --revision v2`" in message
    assert not SAFETY_OFF.search(message)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("model", r"model: no such folder; expected a folder written by save_pretrained, or a Hub repo id"),
        ("a/b/c", r"a/b/c: no such folder"),
        ("./org/name", r"\./org/name: no such folder"),
    ],
)
def test_a_missing_name_that_is_no_repo_id_is_a_missing_folder(cache: Path, name: str, expected: str) -> None:
    with pytest.raises(FileNotFoundError, match=expected):
        polymodal.from_pretrained(name)


def test_online_fetches_only_the_config_weights_and_files(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked to download (local_files_only=False), the repo goes through snapshot_download with these patterns, revision, cache and token
    (stood in for here: it answers with a cached snapshot)."""
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    model = _model(tmp_path / "t.txt")
    snapshot = put_in_cache(cache, "org/name", model.save_pretrained(tmp_path / "saved"))
    calls: list[tuple[str, dict[str, Any]]] = []

    def snapshot_download(repo_id: str, **kwargs: Any) -> str:
        calls.append((repo_id, kwargs))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    # by default the cache only, even with downloads allowed by the environment: polymodal never downloads unasked
    _assert_same(polymodal.from_pretrained("org/name"), model)
    assert calls[0][1]["local_files_only"] is True
    calls.clear()
    loaded = polymodal.from_pretrained(
        "org/name", revision="main", cache_dir=cache, token="hf_x", local_files_only=False
    )
    _assert_same(loaded, model)
    assert calls == [
        (
            "org/name",
            {
                "revision": "main",
                "cache_dir": cache,
                "token": "hf_x",
                "local_files_only": False,
                "allow_patterns": ["config.json", "model.safetensors", "files/*"],
                "library_name": "polymodal",
            },
        )
    ]
    assert list(HUB_FILES) == calls[0][1]["allow_patterns"]


# -- the same checks as a local folder ------------------------------------------------------------------------------


def test_a_snapshot_with_mismatched_files_is_refused_like_a_local_folder(tmp_path: Path, cache: Path) -> None:
    saved = _model(tmp_path / "t.txt").save_pretrained(tmp_path / "saved")
    config = json.loads((saved / "config.json").read_text())
    config["heads"]["a"]["num_classes"] = 5
    (saved / "config.json").write_text(json.dumps(config))
    put_in_cache(cache, "org/edited", saved)
    with pytest.raises(ValueError, match=r"config.json and model.safetensors come from different saves"):
        polymodal.from_pretrained("org/edited")


def test_a_snapshot_file_must_link_into_the_repos_own_blobs(tmp_path: Path, cache: Path) -> None:
    saved = _model(tmp_path / "src" / "table.txt").save_pretrained(tmp_path / "saved")
    snapshot = put_in_cache(cache, "org/linked", saved)
    outside = tmp_path / "outside.txt"
    outside.write_bytes((saved / "files" / "table.txt").read_bytes())  # the same bytes: the hash would pass
    (snapshot / "files" / "table.txt").unlink()
    (snapshot / "files" / "table.txt").symlink_to(outside)
    with pytest.raises(
        ValueError, match=r"tokenizers\.a\.table_file is 'files/table\.txt', which leads out of"
    ):
        polymodal.from_pretrained("org/linked")


def test_a_repo_without_safetensors_weights_is_refused(tmp_path: Path, cache: Path) -> None:
    model = _model(tmp_path / "t.txt")
    folder = model.save_pretrained(tmp_path / "saved")
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    put_in_cache(cache, "org/pickled", folder)
    with pytest.raises(FileNotFoundError) as info:
        polymodal.from_pretrained("org/pickled")
    message = str(info.value)
    assert message.startswith(
        "Hub repo 'org/pickled': expected config.json and model.safetensors (a repo written by a polymodal "
        "model's push_to_hub), got no model.safetensors in "
    )
    assert "only safetensors weights are read" in message and not SAFETY_OFF.search(message)


# -- pushing -------------------------------------------------------------------------------------------------------


class LocalHub:
    """Stands in for the Hub: ``HfApi.create_repo`` / ``create_branch`` / ``upload_folder`` copy into folders."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        hub = self

        def create_repo(api: HfApi, repo_id: str, **kwargs: Any) -> str:
            hub.calls.append(("create_repo", {"repo_id": repo_id, "token": api.token, **kwargs}))
            (hub.root / repo_id).mkdir(parents=True, exist_ok=True)
            return f"https://huggingface.co/{repo_id}"

        def create_branch(api: HfApi, repo_id: str, **kwargs: Any) -> None:
            hub.calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

        def upload_folder(api: HfApi, *, repo_id: str, folder_path: Any, **kwargs: Any) -> str:
            hub.calls.append(("upload_folder", {"repo_id": repo_id, **kwargs}))
            shutil.copytree(folder_path, hub.root / repo_id, dirs_exist_ok=True)
            return f"https://huggingface.co/{repo_id}/commit/{'0' * 40}"

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "create_branch", create_branch)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)


def test_push_to_hub_uploads_the_saved_files_and_a_model_card(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = LocalHub(tmp_path / "remote")
    hub.install(monkeypatch)
    model = _model(tmp_path / "src" / "table.txt")
    commit = model.push_to_hub("org/demo", private=True, token="hf_write", card_metadata={"license": "mit"})
    assert commit == f"https://huggingface.co/org/demo/commit/{'0' * 40}"
    assert hub.calls == [
        ("create_repo", {"repo_id": "org/demo", "token": "hf_write", "private": True, "exist_ok": True,
                         "repo_type": "model"}),
        ("upload_folder", {"repo_id": "org/demo", "repo_type": "model", "commit_message": "Upload polymodal model",
                           "revision": None, "create_pr": False, "delete_patterns": ["files/*"]}),
    ]  # fmt: skip
    remote = tmp_path / "remote" / "org" / "demo"
    files = sorted(str(p.relative_to(remote)) for p in remote.rglob("*") if p.is_file())
    assert files == ["README.md", "config.json", "files/table.txt", "model.safetensors"]
    assert (
        json.loads((remote / "config.json").read_text())["tokenizers"]["a"]["table_file"] == "files/table.txt"
    )

    card = (remote / "README.md").read_text()
    meta = metadata_load(remote / "README.md")
    assert meta == {
        "library_name": "polymodal",
        "license": "mit",
        "tags": ["polymodal", "multimodal", "meta-transformer", "test_lookup", "tabular"],
    }
    assert "# demo\n" in card
    assert 'model = polymodal.from_pretrained("org/demo")' in card
    assert '| `a` | `test_lookup` | `max_tokens=8192`, `table_file="files/table.txt"` |' in card
    assert "| `b` | `tabular` | `max_tokens=8192`, `numeric=[]`, `categorical=[]`, `max_columns=64` |" in card
    assert "`vit`, width 16, 1 block, 2 attention heads" in card
    assert "| `a` | `classification` | `a` | 3 | accuracy ↑, macro_f1 ↑ |" in card
    assert "| `b` | `regression` | `b` | — | mse ↓, rmse ↓, mae ↓ | `loss_weight=1.0`, `out_dim=2`," in card
    assert "| `tags` | `classification` | `a` | 4 labels (multi-label) |" in card
    assert "- `files/`: the files the config refers to" in card
    assert str(tmp_path) not in card  # no local path leaks into a public card

    put_in_cache(cache, "org/demo", remote)  # what a download of the pushed repo gives
    _assert_same(polymodal.from_pretrained("org/demo"), model)


def test_push_to_a_branch_creates_it_and_a_pull_request_does_not(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = LocalHub(tmp_path / "remote")
    hub.install(monkeypatch)
    model = _model(tmp_path / "t.txt")
    model.push_to_hub("org/demo", revision="dev", commit_message="v2")
    assert [c[0] for c in hub.calls] == ["create_repo", "create_branch", "upload_folder"]
    assert hub.calls[1][1] == {"repo_id": "org/demo", "branch": "dev", "exist_ok": True, "repo_type": "model"}
    assert hub.calls[2][1]["revision"] == "dev" and hub.calls[2][1]["commit_message"] == "v2"
    hub.calls.clear()
    model.push_to_hub("org/demo", create_pr=True)
    assert [c[0] for c in hub.calls] == ["create_repo", "upload_folder"]
    assert hub.calls[1][1]["create_pr"] is True


def test_model_card_of_an_unsaved_model_shows_file_names_not_local_paths(tmp_path: Path) -> None:
    model = _model(tmp_path / "deep" / "folder" / "table.txt")
    card = model_card(model, metadata={"tags": ["mine", "polymodal"]})
    assert str(tmp_path) not in card
    assert '`table_file="table.txt"`' in card
    assert "# polymodal model\n" in card and 'polymodal.from_pretrained("org/name")' in card
    tags = re.search(r"tags:\n((?:- .*\n)+)", card)
    assert tags is not None
    assert tags.group(1).split("\n")[:-1] == [
        "- polymodal",
        "- multimodal",
        "- meta-transformer",
        "- test_lookup",
        "- tabular",
        "- mine",
    ]


# -- timm hf-hub ids for the encoder ---------------------------------------------------------------------------------


def _timm_repo(
    tmp_path: Path, filename: str = "model.safetensors", seed: int = 0
) -> tuple[VisionTransformer, Path]:
    """A timm ViT (random weights) as its Hub repo holds it: ``config.json`` and the safetensors state dict."""
    torch.manual_seed(seed)
    vit = VisionTransformer(
        img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=4, num_classes=5
    ).eval()
    folder = tmp_path / f"timm_{seed}_{filename}"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(folder / filename))
    (folder / "config.json").write_text(json.dumps({"architecture": "vit_test", "num_classes": 5}))
    return vit, folder


def _assert_blocks_equal(encoder: TransformerEncoder, vit: VisionTransformer) -> None:
    want = {k: v for k, v in vit.state_dict().items() if k.startswith(("blocks.", "norm."))}
    got = encoder.state_dict()
    assert len(want) == 2 * 12 + 2
    assert all(torch.equal(got[k], v) for k, v in want.items())


def test_an_hf_hub_id_loads_the_cached_timm_weights_into_the_encoder(tmp_path: Path, cache: Path) -> None:
    vit, folder = _timm_repo(tmp_path)
    put_in_cache(cache, "timm/vit_test.random", folder)
    encoder = TransformerEncoder(
        {"embed_dim": 32, "depth": 2, "num_heads": 4, "pretrained": "hf-hub:timm/vit_test.random"}
    )
    _assert_blocks_equal(encoder, vit)

    other, folder = _timm_repo(tmp_path, seed=1)
    put_in_cache(cache, "timm/vit_test.random", folder, revision="v2", commit="b" * 40)
    report = encoder.load_pretrained("hf_hub:timm/vit_test.random@v2")
    assert report.path == "hf_hub:timm/vit_test.random@v2" and report.layout == "timm"
    _assert_blocks_equal(encoder, other)


def test_an_hf_hub_id_loads_a_whole_vit_and_an_open_clip_file_name(tmp_path: Path, cache: Path) -> None:
    vit, folder = _timm_repo(tmp_path, filename="open_clip_model.safetensors")
    put_in_cache(cache, "laion/vit_test", folder)
    model = polymodal.build_model(
        tokenizers={"image": {"type": "image", "patch_size": 16, "img_size": 32}},
        encoder={"type": "vit", "embed_dim": 32, "depth": 2, "num_heads": 4},
    ).eval()
    report = model.load_pretrained_image("hf-hub:laion/vit_test")
    assert report.layout == "timm" and report.ignored == ["head.bias", "head.weight"]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.encode({"image": x})["image"].embeddings, vit.forward_features(x))


def test_an_uncached_hf_hub_id_names_the_repo_and_how_to_get_it(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        TransformerEncoder(
            {"embed_dim": 32, "depth": 2, "num_heads": 4, "pretrained": "hf-hub:timm/vit_missing"}
        )
    message = str(info.value)
    assert message.startswith(
        "Hub repo 'timm/vit_missing': expected model.safetensors or open_clip_model.safetensors in the Hugging Face "
        f"cache ({cache}), got none there, and downloads are off (encoder weights named by hf-hub: ids are read "
        "from the cache only). To get it: run `hf download timm/vit_missing model.safetensors` where the Hub is "
        "reachable"
    )
    assert "run once with downloads on" not in message  # no switch turns an encoder download on
    assert not SAFETY_OFF.search(message)


def test_an_hf_hub_repo_with_only_a_pickle_is_not_unpickled(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, folder = _timm_repo(tmp_path)
    torch.save(VisionTransformer(img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=4).state_dict(),
               folder / "pytorch_model.bin")  # fmt: skip
    (folder / "model.safetensors").unlink()
    put_in_cache(cache, "timm/vit_pickled", folder)

    def no_unpickling(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", no_unpickling)
    with pytest.raises(
        FileNotFoundError, match=r"^Hub repo 'timm/vit_pickled': expected model\.safetensors or "
    ):
        TransformerEncoder(
            {"embed_dim": 32, "depth": 2, "num_heads": 4, "pretrained": "hf-hub:timm/vit_pickled"}
        )


def test_an_hf_hub_model_saves_and_reloads_without_the_hub(tmp_path: Path, cache: Path) -> None:
    """The saved weights supersede the encoder's source: the reloaded model needs neither the Hub nor its cache."""
    _, folder = _timm_repo(tmp_path)
    put_in_cache(cache, "timm/vit_test.random", folder)
    model = polymodal.build_model(
        tokenizers={"image": {"type": "image", "patch_size": 16, "img_size": 32}},
        encoder={"type": "vit", "embed_dim": 32, "depth": 2, "num_heads": 4, "pretrained": "hf-hub:timm/vit_test.random"},
    ).eval()  # fmt: skip
    saved = model.save_pretrained(tmp_path / "saved")
    assert (
        json.loads((saved / "config.json").read_text())["encoder"]["pretrained"]
        == "hf-hub:timm/vit_test.random"
    )
    shutil.rmtree(cache / "models--timm--vit_test.random")
    loaded = polymodal.from_pretrained(saved)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


# -- with downloads on (huggingface_hub's download functions stood in for) -----------------------------------------


def _hub_http_error(cls: type[Exception], status: int) -> Exception:
    """An error of ``huggingface_hub`` as its HTTP layer raises it (with a response of ``status``)."""
    import httpx2  # huggingface_hub's HTTP client

    response = httpx2.Response(status, request=httpx2.Request("GET", "https://huggingface.co/api/x"))
    return cls(f"{status} Client Error", response=response)


@pytest.fixture
def online(cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return cache


def test_an_hf_hub_id_never_downloads_even_with_downloads_on(
    tmp_path: Path, online: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    def no_network(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("the encoder asked the Hub")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    vit, folder = _timm_repo(tmp_path, filename="open_clip_model.safetensors")
    put_in_cache(online, "laion/vit_test", folder, revision="v1")
    encoder = TransformerEncoder(
        {"embed_dim": 32, "depth": 2, "num_heads": 4, "pretrained": "hf-hub:laion/vit_test@v1"}
    )
    _assert_blocks_equal(encoder, vit)  # the cached OpenCLIP file name, read from the cache
    with pytest.raises(
        FileNotFoundError,
        match=r"^Hub repo 'laion/vit_test' at revision 'v2': expected model\.safetensors or "
        r"open_clip_model\.safetensors in the Hugging Face cache .* downloads are off \(encoder weights named by "
        r"hf-hub: ids are read from the cache only\)\. To get it: run `hf download laion/vit_test "
        r"model\.safetensors --revision v2`",
    ):
        encoder.load_pretrained("hf-hub:laion/vit_test@v2")


@pytest.mark.parametrize(
    ("error", "status", "expected"),
    [
        ("RepositoryNotFoundError", 404, r"^Hub repo 'org/nope' does not exist, or is private \(log in with"),
        ("GatedRepoError", 403, r"^Hub repo 'org/nope' is gated: accept its terms on the Hub"),
        ("RevisionNotFoundError", 404, r"^Hub repo 'org/nope' at revision 'v9': no such revision"),
    ],
)
def test_online_hub_errors_name_the_repo(
    online: Path, monkeypatch: pytest.MonkeyPatch, error: str, status: int, expected: str
) -> None:
    import huggingface_hub
    import huggingface_hub.errors

    def raising(*args: Any, **kwargs: Any) -> str:
        raise _hub_http_error(getattr(huggingface_hub.errors, error), status)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", raising)
    revision = "v9" if error == "RevisionNotFoundError" else None
    with pytest.raises((FileNotFoundError, PermissionError), match=expected):
        polymodal.from_pretrained("org/nope", revision=revision, local_files_only=False)
