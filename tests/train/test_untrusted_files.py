"""Hostile checkpoints never run code, whatever the environment says: ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` turns
``weights_only`` off for every ``torch.load`` that does not pass it, which is how mmengine calls it. Each path that
reads a checkpoint (``polymodal eval --checkpoint``, ``polymodal train --resume``, ``load_from``,
``init_cfg=dict(type="Pretrained")``, a pretrained encoder file) refuses a real malicious pickle, whose
``__reduce__`` would write a marker file, with our message: the file, the global it asked for, no advice to turn
``weights_only`` off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.runner.checkpoint import CheckpointLoader

import polymodal
from polymodal.cli import main
from polymodal.core.encoders.pretrained import PretrainedLoadError
from polymodal.train.serialization import CheckpointReadError, UnsafeCheckpointError, load_checkpoint_file

from .conftest import REPO, SMALL_ENCODER, image_config


class _WritesAMarker:
    """What a malicious checkpoint holds: unpickling it runs ``exec``, which creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def _evil_checkpoint(path: Path, marker: Path) -> Path:
    """An mmengine-looking checkpoint whose message hub is the payload."""
    torch.save(
        {
            "meta": {"epoch": 1, "iter": 2},
            "state_dict": {"encoder.norm.weight": torch.ones(32)},
            "message_hub": _WritesAMarker(marker),
        },
        path,
    )
    return path


@pytest.fixture
def evil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """``(checkpoint, marker)`` with ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` set; the payload is checked to be live."""
    marker = tmp_path / "PWNED"
    path = _evil_checkpoint(tmp_path / "evil.pth", marker)
    torch.load(path, weights_only=False)  # the payload works: unpickling it writes the marker
    assert marker.exists()
    marker.unlink()
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    return path, marker


def _assert_our_refusal(message: str, path: Path) -> None:
    assert f"{path}: refused to load: it holds code or objects outside the allow-list: the global " in message
    assert "exec" in message.split("the global ", 1)[1]
    assert "weights_only=False" not in message and "False" not in message  # never advise turning it off


@pytest.mark.parametrize("path_kind", ["eval", "resume", "load_from", "init_cfg"])
def test_the_cli_refuses_a_malicious_checkpoint_on_every_path(
    tmp_path: Path,
    evil: tuple[Path, Path],
    path_kind: str,
    capsys: pytest.CaptureFixture[str],
    one_thread: None,
) -> None:
    path, marker = evil
    extra = ""
    if path_kind == "init_cfg":
        extra = f"model = dict(model, init_cfg=dict(type='Pretrained', checkpoint={str(path)!r}))"
    config = image_config(tmp_path / "tiny.py", max_epochs=1, num_train=32, num_test=16, extra=extra)
    work = str(tmp_path / "work")
    args = {
        "eval": ["eval", str(config), "--checkpoint", str(path), "--work-dir", work],
        "resume": ["train", str(config), "--work-dir", work, "--resume", str(path)],
        "load_from": ["train", str(config), "--work-dir", work, "--cfg-options", f"load_from={path}"],
        "init_cfg": ["train", str(config), "--work-dir", work],
    }[path_kind]
    capsys.readouterr()
    assert main(args) == 2
    assert not marker.exists()
    err = capsys.readouterr().err
    assert err.startswith(f"polymodal: {path}: refused to load:"), err[-2000:]
    _assert_our_refusal(err, path)


def test_loading_functions_and_mmengine_schemes_refuse_it(tmp_path: Path, evil: tuple[Path, Path]) -> None:
    path, marker = evil
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_file(path)
    _assert_our_refusal(str(info.value), path)
    with pytest.raises(UnsafeCheckpointError):
        CheckpointLoader.load_checkpoint(str(path), map_location="cpu")
    with pytest.raises(
        UnsafeCheckpointError
    ):  # the s3:// / petrel:// scheme reads bytes, then loads them alike
        from mmengine import fileio

        class Storage:
            def get(self, filepath: str) -> bytes:
                return path.read_bytes()

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(fileio, "get_file_backend", lambda *a, **k: Storage())
            CheckpointLoader.load_checkpoint("s3://bucket/evil.pth", map_location="cpu")
    assert not marker.exists()


def test_download_schemes_are_refused_without_downloading() -> None:
    for url in ("https://example.com/evil.pth", "torchvision://resnet18", "open-mmlab://x"):
        with pytest.raises(
            CheckpointReadError, match=r"reads checkpoints from local files only and downloads"
        ):
            CheckpointLoader.load_checkpoint(url)


def test_a_model_built_without_the_training_package_loads_init_cfg_safely(tmp_path: Path) -> None:
    # in a fresh process that never imports polymodal.train: building a model is enough
    marker = tmp_path / "PWNED"
    path = _evil_checkpoint(tmp_path / "evil.pth", marker)
    script = f"""
import sys
import polymodal
model = polymodal.MultimodalModel(
    {{"encoder": {SMALL_ENCODER!r}, "tokenizers": {{"image": {{"type": "image", "patch_size": 8}}}}}},
    init_cfg=dict(type="Pretrained", checkpoint={str(path)!r}),
)
try:
    model.init_weights()
except Exception as exc:
    print(type(exc).__name__, exc)
assert "polymodal.train" not in sys.modules
"""
    env = {
        "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",
        "POLYMODAL_DISABLE_PLUGIN_AUTOLOAD": "1",
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not marker.exists()
    printed = [line for line in proc.stdout.splitlines() if line.startswith("UnsafeCheckpointError ")]
    assert len(printed) == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    _assert_our_refusal(printed[0], path)


def test_a_pretrained_encoder_file_is_refused_with_our_message(
    tmp_path: Path, evil: tuple[Path, Path]
) -> None:
    path, marker = evil
    with pytest.raises(PretrainedLoadError) as info:
        polymodal.build_model(
            {"encoder": {**SMALL_ENCODER, "pretrained": str(path)}, "tokenizers": {"image": "image"}}
        )
    assert not marker.exists()
    message = str(info.value)
    assert message.startswith(f"{path}: refused to unpickle:") and "exec" in message
    assert "False" not in message


def test_unreadable_checkpoints_are_named(tmp_path: Path) -> None:
    good = tmp_path / "good.pth"
    torch.save({"state_dict": {"w": torch.ones(4)}}, good)
    data = good.read_bytes()
    cases = {
        "empty.pth": (b"", "it ends early; it may be truncated or damaged"),
        "half.pth": (data[: len(data) // 2], "PytorchStreamReader failed reading zip archive"),
        "text.pth": (b"not a checkpoint at all", "no torch checkpoint inside"),
    }
    for name, (content, detail) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointReadError) as info:
            load_checkpoint_file(tmp_path / name)
        message = str(info.value)
        assert message.startswith(
            f"{tmp_path / name}: expected a checkpoint written by torch.save (e.g. by polymodal train), got a file "
            "that cannot be read ("
        ), message
        assert detail in message, message
    with pytest.raises(FileNotFoundError, match=r"checkpoint .*missing\.pth not found"):
        load_checkpoint_file(tmp_path / "missing.pth")
